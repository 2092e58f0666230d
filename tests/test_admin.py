"""The admin page (/admin on the backend port): its sign-in, its JSON API with real clients
connected, publish and disconnect seen by real WebSocket clients, a disconnect across two
nodes on a real Redis, and the page itself in headless Chromium.

Set ``SNORKY_UPDATE_SCREENSHOTS=1`` to write the page's screenshot into
``docs/_static/screenshots/admin.png`` instead of a temporary folder.
"""

import asyncio
import json
import math
import os
import tempfile
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncTestCase, gen_test
from tornado.websocket import websocket_connect

from snorky.auth import sign_token
from snorky.config import Config
from snorky.server import SnorkyServer
from tests.chromium import Chromium, find_chromium
from tests.redis_server import RedisServer

TIMEOUT = 20
PASSWORD = "correct horse battery staple"
SECRET = "admin-test-secret-" + "x" * 20
SCREENSHOT = Path(__file__).parent.parent / "docs" / "_static" / "screenshots" / "admin.png"


def frame(command, call_id, service="pubsub", **params):
    return json.dumps({"service": service, "message": {"command": command, "params": params, "callId": call_id}})


def config(**sections):
    data = {
        "frontend": {"port": 0, "drain_window": 0},
        "backend": {"port": 0, "api_key": "admin-test-key"},
        "auth": {"secret": SECRET},
        "admin": {"password": PASSWORD},
        "namespaces": {"allow_publish": "anyone"},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            data.setdefault(name, {}).update(values)
        else:
            data[name] = values
    return Config.from_dict(data, "admin-test.toml")


class AdminTestCase(AsyncTestCase):
    async def serve(self, **sections):
        server = SnorkyServer(config(**sections))
        await server.start()
        self.servers.append(server)
        return server

    def setUp(self):
        super().setUp()
        self.servers = []
        self.sockets = []

    async def stop_all(self):
        for ws in self.sockets:
            ws.close()
        for server in self.servers:
            await server.stop(grace=0.5)

    def url(self, server, path):
        return f"http://127.0.0.1:{server.backend_port}{path}"

    async def request(self, server, path, body=None, cookie=None, headers=None):
        """(status, decoded JSON body or text, response) of a request to the admin page."""
        headers = dict(headers or {})
        if cookie:
            headers["Cookie"] = cookie
        options = {"method": "GET"}
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
            options = {"method": "POST", "body": body if isinstance(body, str) else json.dumps(body)}
        response = await AsyncHTTPClient().fetch(
            self.url(server, path), headers=headers, raise_error=False, follow_redirects=False, **options
        )
        text = response.body.decode() if response.body else ""
        try:
            content = json.loads(text)
        except ValueError:
            content = text
        return response.code, content, response

    async def sign_in(self, server, password=PASSWORD):
        status, content, response = await self.request(server, "/admin/api/login", {"password": password})
        self.assertEqual((status, content), (200, {"signed_in": True}))
        return response.headers["Set-Cookie"].split(";")[0]

    async def connect(self, server, identity=None):
        url = f"ws://127.0.0.1:{server.frontend_port}/ws"
        if identity is not None:
            url += "?token=" + sign_token(identity, SECRET, info={"name": identity.title()})
        ws = await websocket_connect(url)
        self.sockets.append(ws)
        return ws

    async def read(self, ws):
        raw = await asyncio.wait_for(ws.read_message(), TIMEOUT)
        self.assertIsNotNone(raw, f"closed with {ws.close_code}")
        return json.loads(raw)["message"]

    async def subscribe(self, ws, channel, call_id=1):
        ws.write_message(frame("subscribe", call_id, channel=channel))
        answer = await self.read(ws)
        self.assertEqual((answer["type"], answer["callId"]), ("response", call_id))


class AdminAuthTests(AdminTestCase):
    @gen_test(timeout=30)
    async def test_not_served_without_a_password(self):
        """Without [admin] password every admin address answers 404, even with the right header and body."""
        server = await self.serve(admin={"password": ""})
        try:
            for path in ("/admin", "/admin/admin.js", "/admin/admin.css", "/admin/api/stats", "/admin/api/channels"):
                self.assertEqual((await self.request(server, path))[0], 404, path)
            self.assertEqual((await self.request(server, "/admin/api/login", {"password": ""}))[0], 404)
            self.assertEqual((await self.request(server, "/admin/api/login", {"password": PASSWORD}))[0], 404)
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_sign_in_and_sessions(self):
        """A wrong password is 401 and logged without it; the right one gives a strict HttpOnly session cookie."""
        server = await self.serve()
        try:
            status, content, _ = await self.request(server, "/admin")
            self.assertEqual(status, 200)
            self.assertIn('<script src="/admin/admin.js" defer></script>', content)
            self.assertEqual((await self.request(server, "/admin/api/stats"))[:2], (401, {"error": "sign in first"}))
            with self.assertLogs("snorky.admin", "WARNING") as logs:
                status, content, response = await self.request(server, "/admin/api/login", {"password": "guess"})
            self.assertEqual((status, content), (401, {"error": "wrong password"}))
            self.assertNotIn("Set-Cookie", response.headers)
            self.assertNotIn("guess", "\n".join(logs.output))
            self.assertEqual((await self.request(server, "/admin/api/login", {"password": PASSWORD[:-1]}))[0], 401)
            self.assertEqual((await self.request(server, "/admin/api/login", {"password": 12}))[0], 401)
            form = f"password={PASSWORD}"
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            self.assertEqual((await self.request(server, "/admin/api/login", form, headers=headers))[0], 415)

            status, _, response = await self.request(server, "/admin/api/login", {"password": PASSWORD})
            self.assertEqual(status, 200)
            cookie_header = response.headers["Set-Cookie"]
            for flag in ("HttpOnly", "SameSite=Strict", "Path=/admin"):
                self.assertIn(flag, cookie_header)
            self.assertNotIn(PASSWORD.split()[0], cookie_header)
            cookie = cookie_header.split(";")[0]
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=cookie))[0], 200)
            name, _, value = cookie.partition("=")
            forged = f"{name}={value[:-4]}abcd"
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=forged))[0], 401)
            later = f"{name}={int(time.time()) + 10**6}.{value.partition('.')[2]}"  # a longer life, same signature
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=later))[0], 401)
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_security_headers(self):
        """The page forbids framing, inline script and foreign sources, and is never cached."""
        server = await self.serve()
        try:
            for path in ("/admin", "/admin/admin.js", "/admin/api/stats"):
                _, _, response = await self.request(server, path)
                csp = response.headers["Content-Security-Policy"]
                self.assertIn("script-src 'self'", csp)
                self.assertIn("frame-ancestors 'none'", csp)
                self.assertEqual(response.headers["X-Frame-Options"], "DENY")
                self.assertEqual(response.headers["Cache-Control"], "no-store")
            _, content, response = await self.request(server, "/admin/admin.js")
            self.assertTrue(response.headers["Content-Type"].startswith("text/javascript"))
            self.assertNotIn("innerHTML", content)
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_cross_origin_posts_are_refused(self):
        """A POST from another origin is 403 and does nothing, even with a valid session."""
        server = await self.serve()
        try:
            cookie = await self.sign_in(server)
            alice = await self.connect(server, "alice")
            await self.subscribe(alice, "news")
            evil = {"Origin": "http://evil.example"}
            for path, body in (
                ("/admin/api/disconnect", {"identity": "alice"}),
                ("/admin/api/publish", {"channel": "news", "message": "pwned"}),
                ("/admin/api/login", {"password": PASSWORD}),
            ):
                status, content, _ = await self.request(server, path, body, cookie=cookie, headers=evil)
                self.assertEqual((status, content), (403, {"error": "cross-origin request refused"}), path)
            same = {"Origin": f"http://127.0.0.1:{server.backend_port}"}
            status, content, _ = await self.request(
                server, "/admin/api/publish", {"channel": "news", "message": "ok"}, cookie=cookie, headers=same
            )
            self.assertEqual((status, content), (200, {"published": True}))
            self.assertEqual((await self.read(alice))["message"], "ok")  # not "pwned": that one never went out
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_password_change_ends_sessions(self):
        """A reload with a new password ends the sessions of the old one; removing it hides the page."""
        server = await self.serve()
        try:
            cookie = await self.sign_in(server)
            server.reload(config(admin={"password": "a new password"}))
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=cookie))[0], 401)
            self.assertEqual((await self.request(server, "/admin/api/login", {"password": PASSWORD}))[0], 401)
            cookie = await self.sign_in(server, "a new password")
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=cookie))[0], 200)
            server.reload(config(admin={"password": ""}))
            self.assertEqual((await self.request(server, "/admin/api/stats", cookie=cookie))[0], 404)
        finally:
            await self.stop_all()


class AdminAPITests(AdminTestCase):
    @gen_test(timeout=30)
    async def test_stats_channels_presence(self):
        """Connections by transport (WebSocket, SockJS), channels with their counts, presence and the totals,
        from real clients."""
        server = await self.serve()
        try:
            cookie = await self.sign_in(server)
            alice, bob, anonymous = [await self.connect(server, who) for who in ("alice", "bob", None)]
            for ws in (alice, bob, anonymous):
                await self.subscribe(ws, "news")
            await self.subscribe(bob, "sports", 2)
            await self.subscribe(anonymous, {"room": 5}, 2)
            sockjs = await websocket_connect(f"ws://127.0.0.1:{server.frontend_port}/sockjs/000/admintst/websocket")
            self.sockets.append(sockjs)
            self.assertEqual(await asyncio.wait_for(sockjs.read_message(), TIMEOUT), "o")

            status, before, _ = await self.request(server, "/admin/api/stats", cookie=cookie)
            self.assertEqual(status, 200)
            self.assertEqual(before["connections"], {"total": 4, "websocket": 3, "sockjs": 1})
            self.assertEqual(before["identities"], 2)
            self.assertEqual(before["nodes"], [server.broker.node_id])
            self.assertEqual((before["node"], before["ready"]), (server.broker.node_id, True))
            self.assertEqual([s["name"] for s in before["services"]], ["pubsub", "auth"])
            pubsub = before["services"][0]
            self.assertEqual(
                pubsub,
                {
                    "name": "pubsub",
                    "class": "PubSubService",
                    "channels": 3,
                    "subscriptions": 5,
                    "publish": True,
                    "presence": True,
                },
            )
            for i in range(4):
                anonymous.write_message(frame("publish", 10 + i, channel="news", message=i))
            for ws in (alice, bob):
                for i in range(4):
                    self.assertEqual((await self.read(ws))["message"], i)
            for _ in range(8):  # four answers and four messages, in any order
                await self.read(anonymous)
            _, after, _ = await self.request(server, "/admin/api/stats", cookie=cookie)
            moved = {key: after["totals"][key] - before["totals"][key] for key in before["totals"]}
            self.assertEqual((moved["received"], moved["sent"], moved["deliveries"]), (4, 4, 12))
            self.assertGreater(after["time"], before["time"])

            _, channels, _ = await self.request(server, "/admin/api/channels?service=pubsub", cookie=cookie)
            self.assertEqual(
                channels,
                {
                    "service": "pubsub",
                    "total": 3,
                    "matching": 3,
                    "channels": [
                        {"channel": "news", "subscribers": 3},
                        {"channel": "sports", "subscribers": 1},
                        {"channel": {"room": 5}, "subscribers": 1},
                    ],
                },
            )
            _, found, _ = await self.request(server, "/admin/api/channels?q=ROOM&limit=5", cookie=cookie)
            self.assertEqual((found["matching"], found["channels"]), (1, [{"channel": {"room": 5}, "subscribers": 1}]))
            _, top, _ = await self.request(server, "/admin/api/channels?limit=1", cookie=cookie)
            self.assertEqual((top["matching"], len(top["channels"])), (3, 1))
            status, content, _ = await self.request(server, "/admin/api/channels?service=nope", cookie=cookie)
            self.assertEqual((status, content), (404, {"error": "no service named 'nope'"}))

            _, presence, _ = await self.request(server, '/admin/api/presence?channel="news"', cookie=cookie)
            members = sorted((m["identity"], m["info"]["name"], m["connections"]) for m in presence["presence"])
            self.assertEqual(members, [("alice", "Alice", 1), ("bob", "Bob", 1)])
            status, _, _ = await self.request(server, "/admin/api/presence?channel=news", cookie=cookie)
            self.assertEqual(status, 400)  # not JSON: a string channel is sent in quotes
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_publish_reaches_subscribers(self):
        """The publish form's request reaches a real subscriber; bad requests are answered and change nothing."""
        server = await self.serve(services={"pubsub": {"class": "pubsub"}, "chat": {"class": "chat"}})
        try:
            cookie = await self.sign_in(server)
            ws = await self.connect(server)
            await self.subscribe(ws, "news")
            body = {"service": "pubsub", "channel": "news", "message": {"text": "from the admin page"}}
            status, content, _ = await self.request(server, "/admin/api/publish", body, cookie=cookie)
            self.assertEqual((status, content), (200, {"published": True}))
            self.assertEqual(
                await self.read(ws),
                {"type": "message", "channel": "news", "message": {"text": "from the admin page"}},
            )
            for bad, expected in (
                ({"service": "chat", "channel": "news", "message": 1}, (400, "chat is not a PubSub service")),
                ({"service": "nope", "channel": "news", "message": 1}, (404, "no service named 'nope'")),
                ({"channel": "news"}, (400, "give channel and message")),
                ([1, 2], (400, "the body must be a JSON object")),
            ):
                status, content, _ = await self.request(server, "/admin/api/publish", bad, cookie=cookie)
                self.assertEqual((status, content), (expected[0], {"error": expected[1]}))
            status, _, _ = await self.request(server, "/admin/api/publish", "{not json", cookie=cookie)
            self.assertEqual(status, 400)
            self.assertEqual((await self.request(server, "/admin/api/publish", body))[0], 401)  # no session
            body["message"] = "last"
            await self.request(server, "/admin/api/publish", body, cookie=cookie)
            self.assertEqual((await self.read(ws))["message"], "last")  # nothing came in between
        finally:
            await self.stop_all()

    @gen_test(timeout=30)
    async def test_disconnect_closes_every_connection_of_an_identity(self):
        """Every connection of the identity is closed with 4004; the others stay."""
        server = await self.serve()
        try:
            cookie = await self.sign_in(server)
            alice_1, alice_2, bob = [await self.connect(server, who) for who in ("alice", "alice", "bob")]
            status, content, _ = await self.request(
                server, "/admin/api/disconnect", {"identity": "alice"}, cookie=cookie
            )
            self.assertEqual((status, content), (200, {"disconnected": 2, "cluster": True}))
            for ws in (alice_1, alice_2):
                self.assertIsNone(await asyncio.wait_for(ws.read_message(), TIMEOUT))
                self.assertEqual(ws.close_code, 4004)
            await self.subscribe(bob, "news")
            status, content, _ = await self.request(server, "/admin/api/disconnect", {"identity": ""}, cookie=cookie)
            self.assertEqual((status, content), (400, {"error": "give an identity"}))
        finally:
            await self.stop_all()

    @gen_test(timeout=60)
    async def test_disconnect_across_the_cluster(self):
        """On a real Redis, the page lists both nodes, and a disconnect from one node's page closes the
        identity's connection on the other node."""
        redis = RedisServer().start()
        try:
            common = {"broker": redis.url, "redis": {"prefix": "admin-test", "heartbeat": 0.2}}
            first = await self.serve(**common)
            second = await self.serve(**common)
            cookie = await self.sign_in(first)
            carol = await self.connect(second, "carol")
            await self.subscribe(carol, "news")
            deadline = asyncio.get_running_loop().time() + TIMEOUT
            while True:
                _, stats, _ = await self.request(first, "/admin/api/stats", cookie=cookie)
                if stats["nodes"] is not None and len(stats["nodes"]) == 2:
                    break
                self.assertLess(asyncio.get_running_loop().time(), deadline, stats["nodes"])
                await asyncio.sleep(0.05)
            self.assertEqual(sorted(stats["nodes"]), sorted([first.broker.node_id, second.broker.node_id]))
            _, presence, _ = await self.request(first, '/admin/api/presence?channel="news"', cookie=cookie)
            self.assertEqual([m["identity"] for m in presence["presence"]], ["carol"])
            status, content, _ = await self.request(
                first, "/admin/api/disconnect", {"identity": "carol"}, cookie=cookie
            )
            self.assertEqual((status, content), (200, {"disconnected": 0, "cluster": True}))
            self.assertIsNone(await asyncio.wait_for(carol.read_message(), TIMEOUT))
            self.assertEqual(carol.close_code, 4004)
        finally:
            await self.stop_all()
            redis.close()


class AdminBrowserTests(AdminTestCase):
    @gen_test(timeout=120)
    async def test_page_in_chromium(self):
        """Sign in, see a real client's channel with its count and presence, see the live rate move,
        publish from the form: a real subscriber gets the message."""
        executable = find_chromium()
        self.assertIsNotNone(executable, "Chromium is missing: apt-get install -y chromium")
        server = await self.serve(services={"pubsub": {"class": "pubsub"}, "chat": {"class": "chat"}})
        browser = None
        try:
            alice = await self.connect(server, "alice")
            await self.subscribe(alice, "news")
            crowd = []
            for i, who in enumerate(["bob", "carol", "dave", None, None]):
                ws = await self.connect(server, who)
                await self.subscribe(ws, "news")
                if i < 3:
                    await self.subscribe(ws, "orders.eu", 2)
                if i == 0:
                    await self.subscribe(ws, "alerts", 3)
                crowd.append(ws)

            browser = await Chromium.launch(executable)
            page = await browser.new_page(self.url(server, "/admin"))
            await page.send(
                "Emulation.setDeviceMetricsOverride", width=1360, height=1000, deviceScaleFactor=1, mobile=False
            )
            await page.wait_for("!document.getElementById('login').hidden")
            await page.type("#password", "not it")
            await page.click("#login-button")
            await page.wait_for("document.getElementById('login-error').textContent === 'Wrong password.'")
            await page.evaluate("document.getElementById('password').value = ''")
            await page.type("#password", PASSWORD)
            await page.click("#login-button")
            await page.wait_for("!document.getElementById('app').hidden")

            # The real client's channel, with its count, first; its presence on a click.
            first_row = "document.querySelector('#channels tbody tr')"
            await page.wait_for(f"{first_row} && {first_row}.cells[0].textContent === 'news'")
            self.assertEqual(await page.evaluate(f"{first_row}.cells[1].textContent"), "6")
            await page.evaluate(f"{first_row}.click()")
            await page.wait_for("document.querySelectorAll('#presence tbody tr').length === 4")
            identities = await page.evaluate(
                "[...document.querySelectorAll('#presence tbody tr')].map((r) => r.cells[0].textContent)"
            )
            self.assertEqual(sorted(identities), ["alice", "bob", "carol", "dave"])
            self.assertEqual(await page.evaluate("document.getElementById('k-connections').textContent"), "6")

            # The live rate: a first sample, then messages published by a real client move it.
            await page.wait_for("document.getElementById('k-in').textContent !== '–'")
            for i in range(30):
                crowd[0].write_message(frame("publish", 100 + i, channel="alerts", message=i))
            await page.wait_for("parseFloat(document.getElementById('k-in').textContent) > 0")

            # Publish from the form: the real subscriber gets it.
            await page.type("#publish-channel", "news")
            await page.type("#publish-message", '{"text": "Hello from the admin page"}')
            await page.click("#publish-button")
            await page.wait_for("document.getElementById('publish-result').textContent === 'Published to news.'")
            message = await self.read(alice)
            self.assertEqual(
                message, {"type": "message", "channel": "news", "message": {"text": "Hello from the admin page"}}
            )

            await page.type("#disconnect-identity", "dave")
            await page.click("#disconnect-button")
            await page.wait_for("document.getElementById('disconnect-result').textContent.startsWith('1 connection')")
            await page.wait_for("document.getElementById('k-connections').textContent === '5'")

            await self.screenshot(page, server, crowd)
            await page.click("#logout")
            await page.wait_for("!document.getElementById('login').hidden")
            self.assertEqual(await page.evaluate("document.cookie"), "")  # HttpOnly: never visible to scripts
        finally:
            if browser is not None:
                await browser.close()
            await self.stop_all()

    async def screenshot(self, page, server, crowd):
        if os.environ.get("SNORKY_UPDATE_SCREENSHOTS"):
            # For the docs: a minute of varying traffic, so that the chart has something to show.
            await self.traffic(page, server, crowd, seconds=60)
        await page.evaluate("document.activeElement.blur()")
        height = await page.evaluate("document.documentElement.scrollHeight")
        await page.send(
            "Emulation.setDeviceMetricsOverride", width=1360, height=height, deviceScaleFactor=1, mobile=False
        )
        if os.environ.get("SNORKY_UPDATE_SCREENSHOTS"):
            await page.screenshot(str(SCREENSHOT))
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "admin.png"
            await page.screenshot(str(path))
            self.assertGreater(path.stat().st_size, 10_000)

    async def traffic(self, page, server, crowd, seconds):
        """Clients publish (messages in) and the server publishes too (messages out only), at a varying rate."""
        loop = asyncio.get_running_loop()
        pubsub = server.registry.registered_services["pubsub"]
        readers = [asyncio.ensure_future(self.drain(ws)) for ws in self.sockets]  # no slow client here
        start = loop.time()
        call = 1000
        try:
            while (elapsed := loop.time() - start) < seconds:
                rate = 12 + 9 * math.sin(elapsed / 7) + 4 * math.sin(elapsed / 2.3)
                for ws in crowd[:2]:
                    call += 1
                    ws.write_message(frame("publish", call, channel="news" if call % 3 else "alerts", message=call))
                pubsub.do_publish("orders.eu", {"order": call})
                await asyncio.sleep(2 / rate)
            await page.wait_for("document.getElementById('line-in').getAttribute('points').split(' ').length > 25")
        finally:
            for reader in readers:
                reader.cancel()

    @staticmethod
    async def drain(ws):
        while await ws.read_message() is not None:
            pass
