"""The broker contract through Redis Sentinel: a master and a sentinel the tests start."""

import os
import socket
import subprocess
import time
import unittest

from snorky.brokers.redis import RedisBroker
from tests.brokers.contract import BrokerContract
from tests.brokers.test_redis import RedisBrokerTestCase
from tests.redis_server import RedisServer, free_port


class Sentinel:
    """One redis-server in sentinel mode, watching ``master`` as ``mymaster``."""

    def __init__(self, master: RedisServer) -> None:
        self.port = free_port()
        self.config = os.path.join(master.folder.name, "sentinel.conf")
        with open(self.config, "w") as f:
            f.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {master.folder.name}\n"
                f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            )
        self.process = subprocess.Popen(
            [master.binary, self.config, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n")
                    if str(master.port).encode() in sock.recv(1024):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis sentinel did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


class SentinelBrokerContractTests(RedisBrokerTestCase, BrokerContract):
    @classmethod
    def setUpClass(cls):
        cls.master = RedisServer().start()
        cls.sentinel = Sentinel(cls.master)

    @classmethod
    def tearDownClass(cls):
        cls.sentinel.close()
        cls.master.close()

    async def make_node(self, **options):
        url = f"redis+sentinel://127.0.0.1:{self.sentinel.port}/mymaster/0"
        node = RedisBroker(url, prefix=self.prefix, heartbeat=0.2, **options)
        await node.start()
        self.nodes.append(node)
        return node


del RedisBrokerTestCase  # only the Sentinel variant runs from this module

if __name__ == "__main__":
    unittest.main()
