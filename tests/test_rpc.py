"""RPCService: commands, the three kinds of command, and every error."""

import asyncio
import functools
import unittest

from snorky.services.base import RPCError, RPCService, rpc_asynchronous, rpc_command
from tests.utils import PlainClient, RecordingClient, call, call_error, call_raw, expect_log


class Calculator(RPCService):
    @rpc_command
    def sum(self, req, a, b):
        return a + b

    @rpc_command
    def nothing(self, req):
        pass

    @rpc_command
    def refuse(self, req):
        raise RPCError("Not authorized")

    @rpc_command
    def own_error(self, req):
        raise RPCError("Out of range")

    @rpc_command
    def coded_error(self, req):
        raise RPCError("Nope", "nope_code")

    @rpc_command
    def crash(self, req):
        return {}["missing"]

    @rpc_command
    def inner_type_error(self, req, a):
        return a + "text"

    def not_a_command(self, req):
        return "hidden"


class Extended(Calculator):
    @rpc_command
    def difference(self, req, a, b):
        return a - b


def logged(function):
    @functools.wraps(function)
    def wrapper(self, req, *args, **kwargs):
        return function(self, req, *args, **kwargs)

    return wrapper


class Decorated(RPCService):
    @rpc_command
    @logged
    def echo(self, req, value):
        return value


class ProducerConsumer(RPCService):
    @rpc_asynchronous
    @rpc_command
    def consumer(self, req):
        self.waiting = req

    @rpc_command
    def producer(self, req, data):
        self.waiting.reply(data)


class AsyncService(RPCService):
    @rpc_command
    async def slow_echo(self, req, value):
        await asyncio.sleep(0)
        return value

    @rpc_command
    async def slow_refuse(self, req):
        await asyncio.sleep(0)
        raise RPCError("Not authorized")

    @rpc_command
    async def slow_crash(self, req):
        await asyncio.sleep(0)
        raise ValueError("boom")


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.calc = Calculator("calc")
        self.client = RecordingClient("alice")

    def test_commands_collected(self):
        """Decorated methods, and only they, are commands; subclasses inherit them."""
        self.assertEqual(
            Calculator.rpc_commands,
            {"sum", "nothing", "refuse", "own_error", "coded_error", "crash", "inner_type_error"},
        )
        self.assertEqual(Extended.rpc_commands, Calculator.rpc_commands | {"difference"})

    def test_reply_is_sent_before_process_request_returns(self):
        """A plain command's reply has been sent when the call returns."""
        self.assertEqual(call(self.calc, self.client, "sum", a=5, b=12), 17)

    def test_none_replies_null(self):
        """A plain command returning None answers null."""
        self.assertIsNone(call(self.calc, self.client, "nothing"))

    def test_subclass_command(self):
        """A subclass's new command works beside the inherited ones."""
        ext = Extended("ext")
        self.assertEqual(call(ext, self.client, "difference", a=5, b=12), -7)
        self.assertEqual(call(ext, self.client, "sum", a=5, b=12), 17)

    def test_reply_envelope(self):
        """The answer is {"type": "response", "callId", "data"} in the service's envelope."""
        self.calc.process_message_from(self.client, {"command": "sum", "params": {"a": 1, "b": 2}, "callId": 9})
        self.assertEqual(
            self.client.sent, [{"service": "calc", "message": {"type": "response", "callId": 9, "data": 3}}]
        )

    def test_no_call_id_no_call_id_in_response(self):
        """Without a callId the response has none, as in 0.1."""
        self.calc.process_message_from(self.client, {"command": "sum", "params": {"a": 1, "b": 2}})
        self.assertEqual(self.client.sent[0]["message"], {"type": "response", "data": 3})

    def test_missing_params_means_none(self):
        """A call without params is a call with no parameters."""
        self.calc.process_message_from(self.client, {"command": "nothing", "callId": 1})
        self.assertEqual(self.client.sent[0]["message"]["type"], "response")

    def test_plain_send_clients(self):
        """Objects that only implement send(dict), as 0.1 test doubles, get dicts."""
        client = PlainClient()
        self.calc.process_message_from(client, {"command": "sum", "params": {"a": 1, "b": 1}, "callId": 1})
        self.assertEqual(client.sent[0]["message"]["data"], 2)


class ErrorTests(unittest.TestCase):
    def setUp(self):
        self.calc = Calculator("calc")
        self.client = RecordingClient("alice")

    def test_unknown_command(self):
        """A name that is not a command answers Unknown command."""
        with expect_log(self, "unknown command", "INFO"):
            self.assertEqual(call_error(self.calc, self.client, "difference"), ("Unknown command", "unknown_command"))

    def test_methods_that_are_not_commands_are_unknown(self):
        """An undecorated method cannot be called."""
        with expect_log(self, "unknown command", "INFO"):
            self.assertEqual(call_error(self.calc, self.client, "not_a_command")[1], "unknown_command")

    def test_invalid_params(self):
        """Missing, extra or wrongly named parameters answer Invalid params."""
        for params in [{}, {"a": 1}, {"a": 1, "b": 2, "c": 3}, {"req": 1, "a": 1, "b": 2}]:
            with self.subTest(params=params), expect_log(self, "Invalid params"):
                self.assertEqual(
                    call_error(self.calc, self.client, "sum", **params), ("Invalid params", "invalid_params")
                )

    def test_params_not_an_object(self):
        """params that are not an object answer Invalid params."""
        with expect_log(self, "Invalid params"):
            self.calc.process_message_from(self.client, {"command": "sum", "params": [1, 2], "callId": 1})
        self.assertEqual(self.client.sent[0]["message"]["code"], "invalid_params")

    def test_invalid_params_through_a_decorator(self):
        """Signatures are checked through functools.wraps decorators too."""
        service = Decorated("d")
        self.assertEqual(call(service, self.client, "echo", value=3), 3)
        with expect_log(self, "Invalid params"):
            self.assertEqual(call_error(service, self.client, "echo", other=3)[1], "invalid_params")

    def test_type_error_inside_is_internal(self):
        """A TypeError raised inside a command is our bug, not Invalid params."""
        with expect_log(self, "Unhandled exception"):
            self.assertEqual(
                call_error(self.calc, self.client, "inner_type_error", a=1), ("Internal error", "internal_error")
            )

    def test_rpc_error_known_text(self):
        """RPCError("Not authorized") keeps its text and gets code forbidden."""
        with expect_log(self, "Not authorized", "INFO"):
            self.assertEqual(call_error(self.calc, self.client, "refuse"), ("Not authorized", "forbidden"))

    def test_rpc_error_own_text(self):
        """An RPCError with a service's own text gets code rpc_error."""
        with expect_log(self, "Out of range", "INFO"):
            self.assertEqual(call_error(self.calc, self.client, "own_error"), ("Out of range", "rpc_error"))

    def test_rpc_error_own_code(self):
        """An RPCError may set its own code."""
        with expect_log(self, "Nope", "INFO"):
            self.assertEqual(call_error(self.calc, self.client, "coded_error"), ("Nope", "nope_code"))

    def test_internal_error_hides_the_traceback(self):
        """Any other exception is logged with its traceback and answered Internal error only."""
        with expect_log(self, "Unhandled exception"):
            answer = call_raw(self.calc, self.client, "crash")
        self.assertEqual(
            answer, {"type": "error", "callId": answer["callId"], "message": "Internal error", "code": "internal_error"}
        )

    def test_malformed_rpc_message(self):
        """A message without a command is answered invalid_message, with its callId."""
        for message in [{"params": {}, "callId": 4}, "text", [1, 2]]:
            client = RecordingClient()
            with self.subTest(message=message), expect_log(self, "Invalid format"):
                self.calc.process_message_from(client, message)
            body = client.sent[0]["message"]
            self.assertEqual((body["type"], body["code"]), ("error", "invalid_message"))
            self.assertEqual(body["callId"], 4 if isinstance(message, dict) else None)

    def test_debug_requests_propagate(self):
        """With request.debug set (0.1's test mode), exceptions propagate."""
        from snorky.services.base import Request

        request = Request(self.calc, self.client, {"command": "crash", "params": {}})
        request.debug = True
        with self.assertRaises(KeyError):
            self.calc.process_request(request)


class AsynchronousTests(unittest.TestCase):
    def test_rpc_asynchronous_replies_later(self):
        """An @rpc_asynchronous command answers when another call resolves it."""
        service = ProducerConsumer("pc")
        waiting, producer = RecordingClient(), RecordingClient()
        service.process_message_from(waiting, {"command": "consumer", "params": {}, "callId": 1})
        self.assertEqual(waiting.sent, [])
        self.assertIsNone(call(service, producer, "producer", data="Hello"))
        self.assertEqual(
            waiting.sent, [{"service": "pc", "message": {"type": "response", "callId": 1, "data": "Hello"}}]
        )

    def test_double_reply_is_refused(self):
        """A request answers once; a second answer raises."""
        service = ProducerConsumer("pc")
        service.process_message_from(RecordingClient(), {"command": "consumer", "params": {}})
        service.waiting.reply(1)
        with self.assertRaises(RuntimeError):
            service.waiting.error("again")


class CoroutineTests(unittest.IsolatedAsyncioTestCase):
    async def run_call(self, command, **params):
        service, client = AsyncService("a"), RecordingClient()
        service.process_message_from(client, {"command": command, "params": params, "callId": 1})
        self.assertEqual(client.sent, [])
        await asyncio.gather(*service._tasks)
        return client.sent[0]["message"]

    async def test_async_def_returns_reply(self):
        """An async def command's return value is the reply."""
        self.assertEqual(await self.run_call("slow_echo", value=[1]), {"type": "response", "callId": 1, "data": [1]})

    async def test_async_rpc_error(self):
        """An RPCError from a coroutine answers its text."""
        with expect_log(self, "Not authorized", "INFO"):
            answer = await self.run_call("slow_refuse")
        self.assertEqual((answer["message"], answer["code"]), ("Not authorized", "forbidden"))

    async def test_async_crash(self):
        """Any other exception from a coroutine answers Internal error."""
        with expect_log(self, "Unhandled exception"):
            answer = await self.run_call("slow_crash")
        self.assertEqual(answer["code"], "internal_error")

    async def test_async_invalid_params(self):
        """A coroutine called with wrong parameters answers Invalid params at once."""
        service, client = AsyncService("a"), RecordingClient()
        with expect_log(self, "Invalid params"):
            self.assertEqual(call_error(service, client, "slow_echo", wrong=1)[1], "invalid_params")
        self.assertEqual(service._tasks, set())
