"""The wire format: decoding, envelopes, error bodies, frames encoded once."""

import struct
import unittest

from snorky.errors import ERROR_CODES, ProtocolError
from snorky.hashable import HashableDict, HashableList, make_hashable
from snorky.protocol import Outbound, decode, encode, error_body, parse_envelope
from snorky.websocket.frames import websocket_frame


class DecodeTests(unittest.TestCase):
    def test_objects_become_hashable(self):
        """A decoded JSON object can key a dict, as in Snorky 0.1."""
        value = decode(b'{"room": {"id": [1, 2]}}')
        self.assertIsInstance(value, HashableDict)
        self.assertIsInstance(value["room"]["id"], HashableList)
        self.assertEqual({value: 1}[decode('{"room": {"id": [1, 2]}}')], 1)

    def test_key_order_does_not_change_the_hash(self):
        """Equal objects hash alike whatever their key order."""
        self.assertEqual(hash(decode('{"a": 1, "b": 2}')), hash(decode('{"b": 2, "a": 1}')))

    def test_hashable_input_is_copied_not_shared(self):
        """make_hashable copies lists and dicts that are hashable already, nested ones too,
        so that a value kept as a key is not the caller's object."""
        inner = HashableList([1, {"b": 2}])
        outer = HashableDict({"a": inner, "s": "text"})
        copy = make_hashable(outer)
        self.assertEqual(copy, outer)
        self.assertIsNot(copy, outer)
        self.assertIsNot(copy["a"], inner)
        self.assertIsInstance(copy["a"][1], HashableDict)
        self.assertIs(copy["s"], outer["s"])

    def test_invalid_json(self):
        """Bytes that are not JSON raise ProtocolError with code invalid_json."""
        with self.assertRaises(ProtocolError) as caught:
            decode(b"{nope")
        self.assertEqual((caught.exception.code, caught.exception.message), ("invalid_json", "Invalid JSON"))

    def test_invalid_utf8(self):
        """Bytes that are not UTF-8 are invalid JSON, not a crash."""
        with self.assertRaises(ProtocolError):
            decode(b'"\xff"')

    def test_scalars_unchanged(self):
        """Strings, numbers, booleans and null come back as they are."""
        self.assertEqual(make_hashable(["a", 1, 2.5, True, None]), ["a", 1, 2.5, True, None])


class EnvelopeTests(unittest.TestCase):
    def test_parse(self):
        """An envelope splits into its service name and message."""
        self.assertEqual(parse_envelope(decode('{"service": "s", "message": [1]}')), ("s", [1]))

    def test_rejects_non_envelopes(self):
        """Anything but {"service": str, "message": ...} is invalid_message."""
        for raw in ['"text"', "[1]", '{"service": "s"}', '{"message": 1}', '{"service": 5, "message": 1}']:
            with self.subTest(raw=raw), self.assertRaises(ProtocolError) as caught:
                parse_envelope(decode(raw))
            self.assertEqual(caught.exception.code, "invalid_message")

    def test_error_body_uses_01_text(self):
        """Error bodies carry 0.1's text and the stable code."""
        self.assertEqual(
            error_body("unknown_command", 7),
            {"type": "error", "callId": 7, "message": "Unknown command", "code": "unknown_command"},
        )

    def test_every_code_has_a_message(self):
        """Each documented code has its message text."""
        for code, message in ERROR_CODES.items():
            self.assertTrue(message, code)


class OutboundTests(unittest.TestCase):
    def test_json_is_encoded_once(self):
        """Every wire form of an Outbound is computed once and reused."""
        out = Outbound({"service": "s", "message": "hi"})
        self.assertIs(out.json, out.json)
        self.assertIs(out.ws_frame, out.ws_frame)
        self.assertIs(out.sockjs, out.sockjs)
        self.assertEqual(out.json, b'{"service":"s","message":"hi"}')

    def test_from_json_decodes_for_dict_clients(self):
        """An Outbound built from bytes decodes once for clients that want a dict."""
        out = Outbound.from_json(encode({"service": "s", "message": 1}))
        self.assertEqual(out.value, {"service": "s", "message": 1})
        self.assertIs(out.value, out.value)

    def test_sockjs_form_is_a_quoted_string(self):
        """The SockJS form is the JSON text quoted as a JSON string."""
        out = Outbound({"service": "s", "message": 'a"b'})
        self.assertEqual(decode(out.sockjs), out.json.decode())

    def test_frames_for_each_length_class(self):
        """Frames use the 7-bit, 16-bit and 64-bit length forms of RFC 6455."""
        for size, header_len in [(5, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]:
            with self.subTest(size=size):
                frame = websocket_frame(b"x" * size)
                self.assertEqual(frame[0], 0x81)
                self.assertEqual(len(frame), size + header_len)
                if header_len == 4:
                    self.assertEqual(struct.unpack("!H", frame[2:4])[0], size)
                if header_len == 10:
                    self.assertEqual(struct.unpack("!Q", frame[2:10])[0], size)


class DeflatedFrameTests(unittest.TestCase):
    """Outbound.ws_frame_deflated: one compressed frame per window size, shared."""

    def test_built_once_per_window_and_shared(self):
        """The same frame object comes back for the same window; it inflates to the JSON."""
        import zlib

        out = Outbound({"service": "s", "message": "x" * 500})
        frame = out.ws_frame_deflated(15)
        self.assertIs(out.ws_frame_deflated(15), frame)
        self.assertEqual(frame[0], 0xC1)  # FIN, RSV1, text
        payload = frame[4:] if frame[1] == 126 else frame[2:]
        self.assertEqual(zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff"), out.json)

    def test_short_message_is_the_plain_frame(self):
        """Under min_size, or with an 8-bit window, the plain frame is shared instead."""
        out = Outbound({"service": "s", "message": "hi"})
        self.assertIs(out.ws_frame_deflated(15, min_size=128), out.ws_frame)
        eight = Outbound({"m": "y" * 500})
        self.assertIs(eight.ws_frame_deflated(8), eight.ws_frame)


class NestingTests(unittest.TestCase):
    """Lists and objects nested deeper than MAX_DEPTH are refused up front."""

    def test_depth_limit(self):
        """128 levels decode; 129 are invalid_params; the service and callId are kept for the reply."""
        from snorky.hashable import MAX_DEPTH, NestingTooDeep

        deepest = decode("[" * MAX_DEPTH + "]" * MAX_DEPTH)
        for _ in range(MAX_DEPTH - 1):
            deepest = deepest[0]
        self.assertEqual(deepest, [])
        with self.assertRaises(ProtocolError) as caught:
            decode('{"service": "pubsub", "message": {"callId": 3, "p": %s}}' % ("[" * 200 + "]" * 200))
        error = caught.exception
        self.assertEqual((error.code, error.service, error.content), ("invalid_params", "pubsub", {"callId": 3}))
        with self.assertRaises(NestingTooDeep):
            make_hashable([[1]], max_depth=1)
