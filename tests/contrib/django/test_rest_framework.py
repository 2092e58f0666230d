"""Django REST framework views over real HTTP: X-Snorky: Subscribe, tokens, deltas on a real WebSocket."""

import logging

import requests

from tests.contrib.django.harness import Browser, LiveEnvironment, free_port, setup_django

setup_django()

from django.test import LiveServerTestCase, override_settings  # noqa: E402

from snorky.backend.django import stats  # noqa: E402
from tests.contrib.django.project.todos import views  # noqa: E402
from tests.contrib.django.project.todos.models import Todo, TodoList  # noqa: E402

env = LiveEnvironment()

SUBSCRIBE = {"X-Snorky": "Subscribe"}


def setUpModule():
    env.start()


def tearDownModule():
    env.stop()


class APITestCase(LiveServerTestCase):
    def setUp(self):
        self.inbox = TodoList.objects.create(name="Inbox")
        self.http = requests.Session()
        self.browsers = []
        env.recorder.clear()
        stats.reset()

    def tearDown(self):
        for browser in self.browsers:
            browser.close()
        self.http.close()

    def url(self, path):
        return f"{self.live_server_url}/{path}"

    def get(self, path, **headers):
        return self.http.get(self.url(path), headers=headers, timeout=10)

    def page(self, token):
        browser = Browser(env.snorky.websocket_url)
        self.browsers.append(browser)
        browser.subscribe(token)
        return browser


class ListSubscribeTests(APITestCase):
    def test_round_trip(self):
        """A subscribed list gets a token; creating, editing and deleting through the API reach the page."""
        response = self.get(f"lists/{self.inbox.pk}/todos/", **SUBSCRIBE)
        self.assertEqual((response.status_code, response.json()), (200, []))
        page = self.page(response.headers["X-Subscription-Token"])

        created = self.http.post(self.url(f"lists/{self.inbox.pk}/todos/"), json={"title": "Write docs"}, timeout=10)
        self.assertEqual(created.status_code, 201)
        self.assertEqual(page.next_delta(), {"type": "insert", "model": "Todo", "data": created.json()})

        todo = created.json()
        patched = self.http.patch(self.url(f"todos/{todo['id']}/"), json={"done": True}, timeout=10)
        delta = page.next_delta()
        self.assertEqual((delta["type"], delta["oldData"], delta["newData"]), ("update", todo, patched.json()))

        self.assertEqual(self.http.delete(self.url(f"todos/{todo['id']}/"), timeout=10).status_code, 204)
        self.assertEqual(page.next_delta(), {"type": "delete", "model": "Todo", "data": patched.json()})

    def test_token_response_headers(self):
        """The token response is never cached, varies on X-Snorky, and exposes the token header to CORS."""
        response = self.get(f"lists/{self.inbox.pk}/todos/", **{"x-snorky": "SUBSCRIBE"})
        self.assertIn("X-Subscription-Token", response.headers)
        self.assertIn("no-store", response.headers["Cache-Control"])
        self.assertIn("X-Snorky", response.headers["Vary"])
        self.assertEqual(response.headers["Access-Control-Expose-Headers"], "X-Subscription-Token")
        [(service, command, params)] = env.recorder.calls()
        self.assertEqual(
            (service, command, params),
            (
                "datasync",
                "authorizeSubscription",
                {"items": [{"dealer": "todos", "query": ["==", "list", self.inbox.pk]}]},
            ),
        )

    def test_without_the_header(self):
        """Without X-Snorky: Subscribe nothing is authorized and no token is sent."""
        response = self.get(f"lists/{self.inbox.pk}/todos/")
        self.assertEqual(response.status_code, 200)
        self.assertNotIn("X-Subscription-Token", response.headers)
        self.assertIn("X-Snorky", response.headers["Vary"])
        self.assertEqual(env.recorder.calls(), [])

    def test_authorized_before_the_query(self):
        """The subscription is authorized before the list is queried."""
        views.events.clear()
        self.get(f"ordered/{self.inbox.pk}/", **SUBSCRIBE)
        self.assertEqual(views.events, ["authorize", "query"])

    def test_changes_before_acquisition_are_not_lost(self):
        """A row created after the list was read but before the page acquired its token still arrives."""
        response = self.get(f"lists/{self.inbox.pk}/todos/", **SUBSCRIBE)
        todo = Todo.objects.create(list=self.inbox, title="meanwhile")
        page = self.page(response.headers["X-Subscription-Token"])
        self.assertEqual(page.next_delta()["data"]["id"], todo.pk)

    def test_snorky_down_serves_the_list_without_a_token(self):
        """With Snorky unreachable the list is served without a token; the failure is counted."""
        Todo.objects.create(list=self.inbox, title="still listed")
        with override_settings(SNORKY_BACKEND_URL=f"http://127.0.0.1:{free_port()}/backend"):
            with self.assertLogs("snorky.backend.django", "ERROR"):
                response = self.get(f"lists/{self.inbox.pk}/todos/", **SUBSCRIBE)
        self.assertEqual([t["title"] for t in response.json()], ["still listed"])
        self.assertNotIn("X-Subscription-Token", response.headers)
        self.assertEqual(stats.failures, 1)

    def test_refused_subscription_is_an_error(self):
        """A dealer Snorky lacks is a bug: the request fails. Without `dealer`, the model's name is asked for."""
        with self.assertLogs("django.request", logging.ERROR):
            response = self.get("memos/", **SUBSCRIBE)
        self.assertEqual(response.status_code, 500)
        [(_, _, params)] = env.recorder.calls("authorizeSubscription")
        self.assertEqual(params["items"], [{"dealer": "Memo", "query": None}])


class RetrieveSubscribeTests(APITestCase):
    def test_one_object(self):
        """A retrieved object's subscription (query ["==", "id", pk]) gets its changes and no other row's."""
        watched = Todo.objects.create(list=self.inbox, title="watched")
        other = Todo.objects.create(list=self.inbox, title="other")
        response = self.get(f"todos/{watched.pk}/live/", **SUBSCRIBE)
        self.assertEqual(response.json()["title"], "watched")
        [(_, _, params)] = env.recorder.calls("authorizeSubscription")
        self.assertEqual(params["items"], [{"dealer": "todos", "query": ["==", "id", watched.pk]}])
        page = self.page(response.headers["X-Subscription-Token"])
        other.title = "changed"
        other.save()
        watched.done = True
        watched.save()
        self.assertEqual(
            page.next_delta()["newData"], {"id": watched.pk, "list": self.inbox.pk, "title": "watched", "done": True}
        )

    def test_not_found_gets_no_token(self):
        """A 404 carries no token."""
        response = self.get("todos/999/live/", **SUBSCRIBE)
        self.assertEqual(response.status_code, 404)
        self.assertNotIn("X-Subscription-Token", response.headers)


class ViewSetTests(APITestCase):
    def test_list_and_retrieve(self):
        """A SubscribeModelViewSet's list uses dealer_query; its retrieve the object's id."""
        todo = Todo.objects.create(list=self.inbox, title="t")
        self.assertIn("X-Subscription-Token", self.get("viewset/", **SUBSCRIBE).headers)
        self.assertIn("X-Subscription-Token", self.get(f"viewset/{todo.pk}/", **SUBSCRIBE).headers)
        queries = [params["items"][0]["query"] for _, _, params in env.recorder.calls("authorizeSubscription")]
        self.assertEqual(queries, [["==", "done", False], ["==", "id", todo.pk]])

    def test_created_through_the_viewset(self):
        """Rows the viewset creates reach the page subscribed through its list."""
        page = self.page(self.get("viewset/", **SUBSCRIBE).headers["X-Subscription-Token"])
        created = self.http.post(self.url("viewset/"), json={"title": "via viewset", "list": self.inbox.pk}, timeout=10)
        self.assertEqual(page.next_delta()["data"], created.json())
