"""Backend HTTP port: a real server, real HTTP requests, every refusal."""

import asyncio
import json

from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

from snorky import ServiceRegistry
from snorky.request_handlers.http import BackendHTTPHandler
from snorky.services.base import RPCService, rpc_asynchronous, rpc_command
from snorky.services.pubsub import PubSubBackend, PubSubService
from tests.utils import RecordingClient, call, expect_log

KEY = "s3cret-key"


class Slow(RPCService):
    @rpc_asynchronous
    @rpc_command
    def later(self, req):
        asyncio.get_running_loop().call_soon(req.reply, "done")

    @rpc_asynchronous
    @rpc_command
    def never(self, req):
        pass


class BackendHTTPTests(AsyncHTTPTestCase):
    def get_app(self):
        self.pubsub = PubSubService("pubsub")
        public = ServiceRegistry([self.pubsub])
        backend = ServiceRegistry([PubSubBackend("pubsub", self.pubsub), Slow("slow")], broker=public.broker)
        route = BackendHTTPHandler.get_route(backend, "/backend", api_key=KEY, max_message_size=2000, timeout=0.5)
        return Application([route])

    def post(self, body, key=KEY, method="POST"):
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["X-Backend-Key"] = key
        if not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        response = self.fetch("/backend", method=method, body=body if method == "POST" else None, headers=headers)
        return response.code, json.loads(response.body) if response.body else None

    def test_publish_reaches_subscribers(self):
        """A publish POSTed to the backend reaches a frontend subscriber; the reply is the answer envelope."""
        browser = RecordingClient()
        call(self.pubsub, browser, "subscribe", channel="news")
        status, body = self.post(
            {"service": "pubsub", "message": {"command": "publish", "params": {"channel": "news", "message": 5}}}
        )
        self.assertEqual((status, body), (200, {"service": "pubsub", "message": {"type": "response", "data": None}}))
        self.assertEqual(browser.notifications(), [{"type": "message", "channel": "news", "message": 5}])

    def test_asynchronous_command_answers_later(self):
        """An @rpc_asynchronous command's later reply becomes the HTTP response."""
        status, body = self.post({"service": "slow", "message": {"command": "later", "params": {}, "callId": 3}})
        self.assertEqual((status, body["message"]), (200, {"type": "response", "callId": 3, "data": "done"}))

    def test_rpc_errors_are_answered_in_the_body(self):
        """An RPC error is a 200 with the error envelope, as the connector expects."""
        with expect_log(self, "Invalid params"):
            status, body = self.post({"service": "pubsub", "message": {"command": "publish", "params": {}}})
        self.assertEqual((status, body["message"]["code"]), (200, "invalid_params"))

    def test_missing_key(self):
        """No X-Backend-Key: 401 unauthorized."""
        with expect_log(self, "refused: 401"):
            self.assertEqual(
                self.post({}, key=None),
                (401, {"type": "error", "code": "unauthorized", "message": "Missing X-Backend-Key header"}),
            )

    def test_wrong_key(self):
        """A wrong key: 401 unauthorized, and nothing is published."""
        browser = RecordingClient()
        call(self.pubsub, browser, "subscribe", channel="news")
        for key in ["wrong", KEY + "x", KEY[:-1], ""]:
            with self.subTest(key=key), expect_log(self, "refused: 401"):
                status, body = self.post(
                    {
                        "service": "pubsub",
                        "message": {"command": "publish", "params": {"channel": "news", "message": 1}},
                    },
                    key=key,
                )
            self.assertEqual((status, body["code"]), (401, "unauthorized"))
        self.assertEqual(browser.notifications(), [])

    def test_bad_json(self):
        """A body that is not JSON: 400 invalid_json."""
        with expect_log(self, "refused: 400"):
            self.assertEqual(
                self.post("{nope"), (400, {"type": "error", "code": "invalid_json", "message": "Invalid JSON"})
            )

    def test_bad_envelope(self):
        """JSON that is not an envelope: 400 invalid_message."""
        for body in [[1], {"service": "pubsub"}, '"text"']:
            with self.subTest(body=body), expect_log(self, "refused: 400"):
                self.assertEqual(self.post(body)[0:1] + (self.post(body)[1]["code"],), (400, "invalid_message"))

    def test_unknown_service(self):
        """An unknown service: 404 unknown_service."""
        with expect_log(self, "refused: 404"):
            status, body = self.post({"service": "nope", "message": {}})
        self.assertEqual((status, body["code"]), (404, "unknown_service"))

    def test_too_large(self):
        """A body over max_message_size: 413 message_too_large."""
        with expect_log(self, "refused: 413"):
            status, body = self.post(
                {
                    "service": "pubsub",
                    "message": {"command": "publish", "params": {"channel": "c", "message": "x" * 3000}},
                }
            )
        self.assertEqual((status, body["code"]), (413, "message_too_large"))

    def test_no_answer_times_out(self):
        """A service that never answers: 504 timeout, not a hung request."""
        with expect_log(self, "refused: 504"):
            status, body = self.post({"service": "slow", "message": {"command": "never", "params": {}}})
        self.assertEqual((status, body["code"]), (504, "timeout"))

    def test_get_is_not_allowed(self):
        """Only POST is served: 405 with a JSON body."""
        response = self.fetch("/backend", headers={"X-Backend-Key": KEY})
        self.assertEqual((response.code, json.loads(response.body)["code"]), (405, "method_not_allowed"))
