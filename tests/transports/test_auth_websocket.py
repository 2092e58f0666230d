"""Identity over real WebSockets: tokens at connect, the authenticate command, expiry."""

import asyncio
import json

from tornado.testing import AsyncHTTPTestCase, gen_test
from tornado.web import Application

from snorky import ServiceRegistry
from snorky.auth import sign_token
from snorky.request_handlers.websocket import SnorkyWebSocketHandler
from snorky.services.auth import AuthService
from snorky.services.base import RPCService, rpc_command
from tests.utils import ClosesSockets, expect_log, rpc_frame

SECRET = "end-to-end-secret-long-enough-for-hs256!"
TIMEOUT = 10


class WhoAmI(RPCService):
    @rpc_command
    def whoami(self, req):
        return {"identity": req.client.identity, "info": req.client.info}


class AuthOverWebSocketTests(ClosesSockets, AsyncHTTPTestCase):
    def get_app(self):
        self.registry = ServiceRegistry([AuthService("auth", secret=SECRET), WhoAmI("who")])
        return Application([SnorkyWebSocketHandler.get_route(self.registry, "/ws")])

    async def connect(self, token=None):
        url = self.get_url("/ws").replace("http", "ws") + (f"?token={token}" if token else "")
        return await self.open_ws(url)

    async def read(self, ws):
        raw = await asyncio.wait_for(ws.read_message(), TIMEOUT)
        return None if raw is None else json.loads(raw)

    async def whoami(self, ws):
        ws.write_message(rpc_frame("who", "whoami"))
        return (await self.read(ws))["message"]["data"]

    @gen_test(timeout=TIMEOUT)
    async def test_token_at_connect(self):
        """A valid ?token= gives the connection its identity and info."""
        ws = await self.connect(sign_token("alice", SECRET, info={"name": "Alice"}))
        self.assertEqual(await self.whoami(ws), {"identity": "alice", "info": {"name": "Alice"}})

    @gen_test(timeout=TIMEOUT)
    async def test_anonymous_connection(self):
        """Without a token the connection is anonymous."""
        ws = await self.connect()
        self.assertEqual(await self.whoami(ws), {"identity": None, "info": None})

    @gen_test(timeout=TIMEOUT)
    async def test_forged_token_at_connect_closes_4001(self):
        """A forged token is answered invalid_token and the socket closed with 4001."""
        with expect_log(self, "refused token"):
            ws = await self.connect(sign_token("alice", SECRET + "-forged"))
            answer = await self.read(ws)
            self.assertIsNone(await self.read(ws))
        self.assertEqual(answer["message"]["code"], "invalid_token")
        self.assertEqual(ws.close_code, 4001)

    @gen_test(timeout=TIMEOUT)
    async def test_expired_token_at_connect_closes_4002(self):
        """An expired token is answered token_expired and the socket closed with 4002."""
        import time

        with expect_log(self, "refused token"):
            ws = await self.connect(sign_token("alice", SECRET, ttl=5, now=time.time() - 60))
            self.assertEqual((await self.read(ws))["message"]["code"], "token_expired")
            self.assertIsNone(await self.read(ws))
        self.assertEqual(ws.close_code, 4002)

    @gen_test(timeout=TIMEOUT)
    async def test_authenticate_command(self):
        """The authenticate command gives an anonymous connection its identity."""
        ws = await self.connect()
        ws.write_message(rpc_frame("auth", "authenticate", token=sign_token("bob", SECRET)))
        self.assertEqual((await self.read(ws))["message"]["data"]["identity"], "bob")
        self.assertEqual((await self.whoami(ws))["identity"], "bob")

    @gen_test(timeout=TIMEOUT)
    async def test_expiry_during_the_connection_closes_4002(self):
        """A token that expires while connected closes the socket with 4002."""
        ws = await self.connect(sign_token("alice", SECRET, ttl=1))
        self.assertEqual((await self.whoami(ws))["identity"], "alice")
        with expect_log(self, "expired", "INFO"):
            self.assertIsNone(await self.read(ws))
        self.assertEqual(ws.close_code, 4002)
