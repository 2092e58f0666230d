"""/health and /ready on both ports, as a load balancer or Kubernetes probe sees them."""

import asyncio
import json

from tornado.httpclient import AsyncHTTPClient
from tornado.testing import AsyncTestCase, gen_test

from snorky.config import Config
from snorky.server import SnorkyServer
from tests.redis_server import RedisServer

TIMEOUT = 20


class HealthTests(AsyncTestCase):
    async def probe(self, port, path):
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}{path}", raise_error=False)
        return response.code, json.loads(response.body)

    async def until_ready_is(self, port, code):
        """Probe /ready as a load balancer does until it answers ``code``; return the body."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            status, body = await self.probe(port, "/ready")
            if status == code:
                return body
            self.assertLess(loop.time(), deadline, f"/ready stayed {status} {body}")
            await asyncio.sleep(0.05)

    @gen_test(timeout=30)
    async def test_health_and_ready_on_both_ports(self):
        """Both ports answer /health 200 and, on the in-memory broker, /ready 200."""
        config = Config.from_dict({"frontend": {"port": 0}, "backend": {"port": 0, "api_key": "k"}})
        server = SnorkyServer(config)
        await server.start()
        try:
            for port in (server.frontend_port, server.backend_port):
                self.assertEqual(await self.probe(port, "/health"), (200, {"status": "ok"}))
                self.assertEqual(await self.probe(port, "/ready"), (200, {"status": "ready"}))
        finally:
            await server.stop(grace=0.5)

    @gen_test(timeout=60)
    async def test_ready_follows_redis(self):
        """/ready answers 503 "broker unreachable" while Redis is down, and 200 again once it is back."""
        redis = RedisServer().start()
        config = Config.from_dict(
            {"broker": redis.url, "frontend": {"port": 0}, "redis": {"prefix": "health", "heartbeat": 0.2}}
        )
        server = SnorkyServer(config)
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            await self.until_ready_is(server.frontend_port, 200)
            await loop.run_in_executor(None, redis.stop)
            body = await self.until_ready_is(server.frontend_port, 503)
            self.assertEqual(body, {"status": "unready", "reasons": ["broker unreachable"]})
            self.assertEqual((await self.probe(server.frontend_port, "/health"))[0], 200)
            await loop.run_in_executor(None, redis.start)
            await self.until_ready_is(server.frontend_port, 200)
        finally:
            await server.stop(grace=0.5)
            redis.close()
