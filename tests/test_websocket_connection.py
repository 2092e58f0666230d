"""RFC 6455 (and RFC 7692) as snorky.websocket.ServerConnection applies them: bytes in, events and bytes out.

Pure: no socket. Every case is fed in every chunking (whole, one byte at a time, and
split at each frame's header boundaries) and must give the same events and output
each time. Classes follow the RFC's sections; together they cover what the
Autobahn|Testsuite cases 1-7, 9, 10, 12 and 13 check.
"""

import struct
import unittest
import zlib

from snorky.websocket import CLOSED, CLOSING, OPEN, SEND_EOF, DeflateParams, Ping, Pong, ServerConnection
from snorky.websocket.deflate import Inflater, compress_message, negotiate_deflate, parse_extensions
from snorky.websocket.frames import (
    FrameError,
    close_code_allowed,
    close_payload,
    parse_close,
    unmask,
    websocket_frame,
)

MASK = b"\x37\xfa\x21\x3d"


def cframe(payload=b"", opcode=0x1, fin=True, rsv=0, masked=True, length_bytes=None):
    """One client frame; ``length_bytes`` forces the 2- or 8-byte length form."""
    payload = payload.encode() if isinstance(payload, str) else payload
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    mask_bit = 0x80 if masked else 0
    if length_bytes == 8 or (length_bytes is None and length >= 0x10000):
        header = struct.pack("!BBQ", first, mask_bit | 127, length)
    elif length_bytes == 2 or (length_bytes is None and length >= 126):
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:
        header = struct.pack("!BB", first, mask_bit | length)
    if not masked:
        return header + payload
    return header + MASK + unmask(MASK, payload)


def close_frame(code=None, reason=b""):
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return cframe(payload, opcode=0x8)


def header_points(data):
    """Offsets just after each frame's first two bytes and after its whole header."""
    points, pos = set(), 0
    while pos + 2 <= len(data):
        length = data[pos + 1] & 0x7F
        head = pos + 2 + (2 if length == 126 else 8 if length == 127 else 0)
        if length == 126:
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif length == 127:
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        head += 4 if data[pos + 1] & 0x80 else 0
        points.update((pos + 2, min(head, len(data))))
        pos = head + length
    return sorted(p for p in points if 0 < p < len(data))


def chunkings(data, bytewise=True):
    yield "whole", [data]
    if bytewise:
        yield "one byte at a time", [data[i : i + 1] for i in range(len(data))]
    points = [0, *header_points(data), len(data)]
    yield "split at header boundaries", [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def feed(data, bytewise=True, eof=False, limit=1 << 20, deflate=None):
    """Feed ``data`` in every chunking; check they agree; return (connection, events, writes)."""
    results = []
    for name, chunks in chunkings(data, bytewise):
        conn = ServerConnection(limit, deflate)
        events, writes = [], []
        for chunk in chunks:
            conn.receive_data(chunk)
            events += conn.events_received()
            writes += conn.data_to_send()
        if eof:
            conn.receive_eof()
        results.append((name, conn, normalize(events), writes))
    first = results[0]
    for name, _conn, events, writes in results[1:]:
        assert events == first[2], f"{name}: events {events!r} differ from {first[2]!r}"
        assert writes == first[3], f"{name}: writes differ"
    return first[1], first[2], first[3]


def normalize(events):
    return [(type(e).__name__, e.data) if isinstance(e, (Ping, Pong)) else e for e in events]


def server_close(code=None):
    return websocket_frame(close_payload(code), 0x8)


class Section5_2BaseFraming(unittest.TestCase):
    """5.2: lengths, masking, reserved bits, opcodes (Autobahn 1, 3, 4)."""

    def test_text_of_every_length_form(self):
        """Text payloads across the 7-bit, 16-bit and 64-bit length forms are delivered whole."""
        for size in (0, 1, 125, 126, 127, 128, 65535, 65536):
            with self.subTest(size=size):
                _conn, events, writes = feed(cframe("*" * size), bytewise=size < 200)
                self.assertEqual(events, ["*" * size])
                self.assertEqual(writes, [])

    def test_binary_of_every_length_form(self):
        """Binary payloads come out as bytes, whatever their length."""
        for size in (0, 125, 126, 65535, 65536):
            with self.subTest(size=size):
                payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
                _conn, events, _ = feed(cframe(payload, opcode=0x2), bytewise=size < 200)
                self.assertEqual(events, [payload])

    def test_longer_length_form_than_needed_is_accepted(self):
        """A short payload sent with a 16- or 64-bit length is read correctly."""
        for form in (2, 8):
            _conn, events, _ = feed(cframe("hi", length_bytes=form))
            self.assertEqual(events, ["hi"])

    def test_several_frames_in_one_read(self):
        """Frames that arrive together come out in order."""
        data = cframe("a") + cframe(b"\x00", opcode=0x2) + cframe("c")
        _conn, events, _ = feed(data)
        self.assertEqual(events, ["a", b"\x00", "c"])

    def test_unmasked_frame_fails_with_1002(self):
        """A client frame without a mask fails the connection with 1002 and nothing is delivered."""
        conn, events, writes = feed(cframe("hi", masked=False))
        self.assertEqual(events, [])
        self.assertEqual(writes, [server_close(1002), SEND_EOF])
        self.assertEqual(conn.failure.code, 1002)
        self.assertEqual(conn.state, CLOSING)

    def test_length_with_top_bit_set_fails(self):
        """A 64-bit length with its most significant bit set is a protocol error."""
        data = struct.pack("!BBQ", 0x81, 0xFF, 1 << 63) + MASK
        _conn, _events, writes = feed(data)
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_reserved_bits_fail_with_1002(self):
        """RSV1, RSV2 or RSV3 without an extension that defines them fails with 1002 (Autobahn 3.*)."""
        for rsv in range(1, 8):
            for opcode in (0x1, 0x2, 0x9):
                with self.subTest(rsv=rsv, opcode=opcode):
                    conn, events, writes = feed(cframe("x", opcode=opcode, rsv=rsv))
                    self.assertEqual(writes, [server_close(1002), SEND_EOF])
                    self.assertIn("reserved bits", conn.failure.why)

    def test_message_before_a_bad_frame_is_delivered(self):
        """A valid message before a bad frame is delivered; what follows is not (Autobahn 3.2, 4.1.3)."""
        data = cframe("first") + cframe("bad", rsv=2) + cframe("after")
        _conn, events, writes = feed(data)
        self.assertEqual(events, ["first"])
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_reserved_opcodes_fail_with_1002(self):
        """Opcodes 3-7 and 0xB-0xF fail with 1002, even with a payload (Autobahn 4.*)."""
        for opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
            for payload in (b"", b"reserved"):
                with self.subTest(opcode=opcode, payload=payload):
                    conn, _events, writes = feed(cframe("ok") + cframe(payload, opcode=opcode) + cframe("no"))
                    self.assertEqual(writes, [server_close(1002), SEND_EOF])
                    self.assertIn(f"unknown opcode {opcode}", conn.failure.why)

    def test_failure_is_detected_from_the_header(self):
        """A bad frame fails the connection as soon as its header arrives, before its payload."""
        conn = ServerConnection(1 << 20)
        conn.receive_data(cframe(b"x" * 1000, rsv=4)[:8])
        self.assertEqual(conn.data_to_send(), [server_close(1002), SEND_EOF])

    def test_nothing_is_parsed_after_a_failure(self):
        """After failing, further bytes are ignored (7.1.7)."""
        conn = ServerConnection(1 << 20)
        conn.receive_data(cframe("x", masked=False))
        conn.data_to_send()
        conn.receive_data(cframe("later") + close_frame(1000))
        self.assertEqual(conn.events_received(), [])
        self.assertEqual(conn.data_to_send(), [])


class Section5_4Fragmentation(unittest.TestCase):
    """5.4: fragmented messages, control frames between fragments (Autobahn 5)."""

    def test_text_in_fragments(self):
        """A text message in several fragments, empty ones included, is one message."""
        data = cframe("frag", fin=False) + cframe("", opcode=0, fin=False) + cframe("ment", opcode=0)
        _conn, events, _ = feed(data)
        self.assertEqual(events, ["fragment"])

    def test_binary_in_fragments(self):
        """A binary message in fragments is one bytes message."""
        data = cframe(b"\x01", opcode=0x2, fin=False) + cframe(b"\x02\x03", opcode=0)
        _conn, events, _ = feed(data)
        self.assertEqual(events, [b"\x01\x02\x03"])

    def test_many_fragments(self):
        """A message in 100 one-byte fragments is assembled (Autobahn 5.19, 10.1.1)."""
        data = b"".join(cframe("x", opcode=0x1 if i == 0 else 0, fin=i == 99) for i in range(100))
        _conn, events, _ = feed(data, bytewise=False)
        self.assertEqual(events, ["x" * 100])

    def test_ping_between_fragments_is_answered(self):
        """A ping between two fragments is answered at once; the message comes out whole (5.4)."""
        data = cframe("one ", fin=False) + cframe(b"p", opcode=0x9) + cframe("two", opcode=0)
        _conn, events, writes = feed(data)
        self.assertEqual(events, [("Ping", b"p"), "one two"])
        self.assertEqual(writes, [websocket_frame(b"p", 0xA)])

    def test_pong_between_fragments(self):
        """An unsolicited pong between fragments is reported and answers nothing."""
        data = cframe("a", fin=False) + cframe(b"q", opcode=0xA) + cframe("b", opcode=0)
        _conn, events, writes = feed(data)
        self.assertEqual(events, [("Pong", b"q"), "ab"])
        self.assertEqual(writes, [])

    def test_continuation_without_a_start_fails(self):
        """A continuation frame outside a fragmented message fails with 1002 (Autobahn 5.9-5.14)."""
        for fin in (True, False):
            with self.subTest(fin=fin):
                _conn, events, writes = feed(cframe("x", opcode=0, fin=fin) + cframe("y"))
                self.assertEqual(events, [])
                self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_new_message_inside_a_fragmented_one_fails(self):
        """A text frame while a message is being fragmented fails with 1002."""
        _conn, events, writes = feed(cframe("a", fin=False) + cframe("b"))
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_fragmented_control_frames_fail(self):
        """A ping or pong without FIN fails with 1002 (Autobahn 5.1, 5.2)."""
        for opcode in (0x9, 0xA):
            with self.subTest(opcode=opcode):
                _conn, _events, writes = feed(cframe(b"p", opcode=opcode, fin=False) + cframe(b"", opcode=0))
                self.assertEqual(writes, [server_close(1002), SEND_EOF])


class Section5_5ControlFrames(unittest.TestCase):
    """5.5: pings, pongs, control frame limits (Autobahn 2)."""

    def test_ping_is_answered_with_the_same_payload(self):
        """Each ping gets a pong with its payload, empty, text, binary or 125 bytes."""
        for payload in (b"", b"Hello", bytes([0, 0xFF, 0xFE, 0xFD, 0xFC]), b"*" * 125):
            with self.subTest(size=len(payload)):
                _conn, events, writes = feed(cframe(payload, opcode=0x9))
                self.assertEqual(writes, [websocket_frame(payload, 0xA)])
                self.assertEqual(events, [("Ping", payload)])

    def test_ten_pings_get_ten_pongs(self):
        """Pings sent in a row are each answered, in order (Autobahn 2.10, 2.11)."""
        data = b"".join(cframe(b"%d" % i, opcode=0x9) for i in range(10))
        _conn, _events, writes = feed(data)
        self.assertEqual(writes, [websocket_frame(b"%d" % i, 0xA) for i in range(10)])

    def test_control_frame_over_125_bytes_fails(self):
        """A ping of 126 bytes fails with 1002 (Autobahn 2.5)."""
        _conn, events, writes = feed(cframe(b"*" * 126, opcode=0x9))
        self.assertEqual(writes, [server_close(1002), SEND_EOF])
        self.assertEqual(events, [])

    def test_unsolicited_pong_is_ignored(self):
        """An unsolicited pong, then a ping: only the ping is answered (Autobahn 2.7, 2.8)."""
        _conn, events, writes = feed(cframe(b"x", opcode=0xA) + cframe(b"y", opcode=0x9))
        self.assertEqual(writes, [websocket_frame(b"y", 0xA)])
        self.assertEqual(events, [("Pong", b"x"), ("Ping", b"y")])


class Section5_6DataFramesUTF8(unittest.TestCase):
    """5.6 and 8.1: text messages are UTF-8 (Autobahn 6)."""

    def test_valid_utf8_split_anywhere(self):
        """Multi-byte characters split across fragments are reassembled (Autobahn 6.2)."""
        text = "κόσμε 𝄞 €".encode()
        for cut in range(1, len(text)):
            with self.subTest(cut=cut):
                data = cframe(text[:cut], fin=False) + cframe(text[cut:], opcode=0)
                _conn, events, _ = feed(data, bytewise=False)
                self.assertEqual(events, [text.decode()])

    def test_invalid_utf8_fails_with_1007(self):
        """Invalid sequences fail with 1007: bad bytes, overlong, surrogates, beyond U+10FFFF (6.3-6.23)."""
        cases = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe0\x80\x80", b"abc\xce"]
        for bad in cases:
            with self.subTest(bad=bad):
                conn, events, writes = feed(cframe(bad))
                self.assertEqual(writes, [server_close(1007), SEND_EOF])
                self.assertEqual(events, [])
                self.assertIn("not UTF-8", conn.failure.why)

    def test_invalid_utf8_in_a_fragment_fails_fast(self):
        """An invalid sequence in the first fragment fails before the message ends (Autobahn 6.4.1)."""
        conn = ServerConnection(1 << 20)
        conn.receive_data(cframe(b"\xce\xba\xe1\xbd\xb9", fin=False) + cframe(b"\xf4\x90\x80\x80", opcode=0, fin=False))
        self.assertEqual(conn.data_to_send(), [server_close(1007), SEND_EOF])

    def test_truncated_character_at_the_end_fails(self):
        """A message whose last fragment ends inside a character fails with 1007."""
        _conn, _events, writes = feed(cframe(b"ok", fin=False) + cframe(b"\xe2\x82", opcode=0))
        self.assertEqual(writes, [server_close(1007), SEND_EOF])

    def test_binary_is_not_checked(self):
        """Binary messages may hold any bytes."""
        _conn, events, _ = feed(cframe(b"\xff\xfe", opcode=0x2))
        self.assertEqual(events, [b"\xff\xfe"])


class Section7ClosingHandshake(unittest.TestCase):
    """7.1 and 5.5.1: who closes, what is echoed, what comes after (Autobahn 7.1-7.3)."""

    def test_peer_close_is_echoed_and_tcp_closed(self):
        """A close frame is answered with the same code; the server then closes TCP (7.1.1)."""
        conn, _events, writes = feed(close_frame(1000, b"bye"))
        self.assertEqual(writes, [server_close(1000), SEND_EOF])
        self.assertEqual(conn.close_rcvd, (1000, "bye"))
        self.assertTrue(conn.close_expected())

    def test_empty_close_is_echoed_empty(self):
        """A close frame without a payload is answered with an empty one (Autobahn 7.3.1)."""
        conn, _events, writes = feed(close_frame())
        self.assertEqual(writes, [websocket_frame(b"", 0x8), SEND_EOF])
        self.assertEqual(conn.close_rcvd, (None, ""))

    def test_one_byte_close_payload_fails(self):
        """A close payload of one byte is answered with 1002, not echoed (Autobahn 7.3.2)."""
        _conn, _events, writes = feed(cframe(b"\x03", opcode=0x8))
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_longest_reason_is_accepted(self):
        """A close reason of 123 bytes (the most that fits) is accepted (Autobahn 7.3.5)."""
        conn, _events, writes = feed(close_frame(1000, b"*" * 123))
        self.assertEqual(writes, [server_close(1000), SEND_EOF])

    def test_close_over_125_bytes_fails(self):
        """A close frame over 125 bytes fails with 1002 (Autobahn 7.3.6)."""
        _conn, _events, writes = feed(close_frame(1000, b"*" * 124))
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_frames_after_close_are_ignored(self):
        """After the peer's close, text, pings and another close are ignored (Autobahn 7.1.2-7.1.4)."""
        data = close_frame(1000) + cframe("late") + cframe(b"p", opcode=0x9) + close_frame(1001)
        _conn, events, writes = feed(data)
        self.assertEqual(events, [])
        self.assertEqual(writes, [server_close(1000), SEND_EOF])

    def test_message_before_close_is_delivered(self):
        """A message sent before the close frame is delivered (Autobahn 7.1.6)."""
        _conn, events, writes = feed(cframe("last words") + close_frame(1000))
        self.assertEqual(events, ["last words"])
        self.assertEqual(writes, [server_close(1000), SEND_EOF])

    def test_close_in_the_middle_of_a_fragmented_message(self):
        """A close between fragments ends the connection normally; the fragment after is ignored (7.1.5)."""
        data = cframe("frag", fin=False) + close_frame(1000) + cframe("ment", opcode=0)
        _conn, events, writes = feed(data)
        self.assertEqual(events, [])
        self.assertEqual(writes, [server_close(1000), SEND_EOF])

    def test_server_close_waits_for_the_peer(self):
        """The server's close is sent; messages that still arrive are not delivered; the
        peer's close frame ends it and the server closes TCP."""
        conn = ServerConnection(1 << 20)
        conn.send_close(4001, "invalid token")
        self.assertEqual(conn.data_to_send(), [websocket_frame(close_payload(4001, "invalid token"), 0x8)])
        self.assertEqual(conn.state, CLOSING)
        self.assertTrue(conn.close_expected())
        conn.receive_data(cframe("still sending") + cframe(b"p", opcode=0x9))
        self.assertEqual(conn.events_received(), [])
        self.assertEqual(conn.data_to_send(), [])
        conn.receive_data(close_frame(4001))
        self.assertEqual(conn.data_to_send(), [SEND_EOF])
        self.assertEqual(conn.close_rcvd, (4001, ""))
        conn.receive_eof()
        self.assertEqual(conn.state, CLOSED)

    def test_server_close_then_bad_close_reply(self):
        """A malformed close reply to the server's close still ends the connection."""
        conn = ServerConnection(1 << 20)
        conn.send_close(1001)
        conn.data_to_send()
        conn.receive_data(cframe(b"\x03", opcode=0x8))
        self.assertEqual(conn.data_to_send(), [SEND_EOF])
        self.assertEqual(conn.failure.code, 1002)

    def test_send_close_is_once(self):
        """Closing twice sends one close frame; nothing is sent once closing."""
        conn = ServerConnection(1 << 20)
        conn.send_close(1000)
        conn.send_close(1001)
        conn.send_text(b"late")
        conn.send_ping()
        self.assertEqual(conn.data_to_send(), [server_close(1000)])

    def test_eof_without_close_is_abnormal(self):
        """The TCP connection ending without a close frame leaves no close code (1006)."""
        conn, events, writes = feed(cframe("hi"), eof=True)
        self.assertEqual(conn.state, CLOSED)
        self.assertIsNone(conn.close_rcvd)
        self.assertEqual(events, ["hi"])


class Section7_4CloseCodes(unittest.TestCase):
    """7.4: which close codes a peer may send (Autobahn 7.5, 7.7, 7.9)."""

    VALID = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999)
    INVALID = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)

    def test_valid_codes_are_echoed(self):
        """Every code a peer may send is echoed (Autobahn 7.7.*)."""
        for code in self.VALID:
            with self.subTest(code=code):
                _conn, _events, writes = feed(close_frame(code, b"ok"))
                self.assertEqual(writes, [server_close(code), SEND_EOF])

    def test_invalid_codes_are_answered_1002(self):
        """Reserved and unassigned codes are answered with 1002 (Autobahn 7.9.*)."""
        for code in self.INVALID:
            with self.subTest(code=code):
                conn, _events, writes = feed(close_frame(code))
                self.assertEqual(writes, [server_close(1002), SEND_EOF])
                self.assertIn(str(code), conn.failure.why)

    def test_reason_that_is_not_utf8_is_answered_1007(self):
        """A close reason that is not UTF-8 is answered with 1007 (Autobahn 7.5.1)."""
        _conn, _events, writes = feed(close_frame(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
        self.assertEqual(writes, [server_close(1007), SEND_EOF])

    def test_close_helpers(self):
        """close_payload cuts a long reason at a character boundary; parse_close reads it back."""
        payload = close_payload(1000, "é" * 100)
        self.assertLessEqual(len(payload), 125)
        self.assertEqual(parse_close(payload), (1000, "é" * 61))
        self.assertEqual(close_payload(None), b"")
        self.assertTrue(close_code_allowed(4999))
        self.assertFalse(close_code_allowed(1005))
        with self.assertRaises(FrameError):
            parse_close(b"\x03")


class Section10_4Limits(unittest.TestCase):
    """10.4: messages over the size limit, and large messages (Autobahn 9, 10)."""

    def test_frame_over_the_limit_fails_from_its_header(self):
        """A frame announcing more than max_message_size fails with 1009 before its payload comes."""
        conn = ServerConnection(1000)
        conn.receive_data(cframe(b"x" * 1001)[:8])
        self.assertEqual(conn.data_to_send(), [server_close(1009), SEND_EOF])
        self.assertIn("too big", conn.failure.why)

    def test_fragments_over_the_limit_fail(self):
        """Fragments that add up to more than the limit fail with 1009."""
        conn = ServerConnection(1000)
        conn.receive_data(cframe(b"x" * 600, fin=False) + cframe(b"x" * 600, opcode=0))
        self.assertEqual(conn.data_to_send(), [server_close(1009), SEND_EOF])

    def test_message_at_the_limit_is_accepted(self):
        """A message of exactly max_message_size is delivered."""
        conn = ServerConnection(1000)
        conn.receive_data(cframe(b"x" * 500, fin=False) + cframe(b"x" * 500, opcode=0))
        self.assertEqual(conn.events_received(), ["x" * 1000])

    def test_large_message_in_small_reads_is_joined_once(self):
        """A 4 MiB frame read 4 KiB at a time is parsed once it is complete, not once per read
        (joining every read to the whole buffer again is quadratic; Autobahn 9.1.6 is 16 MiB)."""
        size = 4 << 20
        data = cframe(b"x" * size, opcode=0x2)
        parsed = []

        class Counting(ServerConnection):
            __slots__ = ()

            def _parse(self, chunk):  # counts the bytes parsed
                parsed.append(len(chunk))
                super()._parse(chunk)

        conn = Counting(8 << 20)
        for start in range(0, len(data), 4096):
            conn.receive_data(data[start : start + 4096])
        self.assertEqual(conn.events_received(), [b"x" * size])
        self.assertLess(sum(parsed), 2 * len(data), "the frame was parsed over and over")

    def test_many_large_frames(self):
        """Several 1 MiB messages in 64 KiB reads, fragmented and not, all arrive (Autobahn 9.3, 9.4)."""
        part = b"y" * (256 << 10)
        data = cframe(b"x" * (1 << 20)) + b"".join(
            cframe(part, opcode=0x1 if i == 0 else 0, fin=i == 3) for i in range(4)
        )
        conn = ServerConnection(2 << 20)
        events = []
        for start in range(0, len(data), 65536):
            conn.receive_data(data[start : start + 65536])
            events += conn.events_received()
        self.assertEqual(events, ["x" * (1 << 20), "y" * (1 << 20)])


def deflate_raw(data, wbits=15):
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_frame(frame):
    """Decode a server frame: (rsv1, opcode, payload decompressed if rsv1)."""
    first, length = frame[0], frame[1] & 0x7F
    head = 2 + (2 if length == 126 else 8 if length == 127 else 0)
    payload = frame[head:]
    if first & 0x40:
        payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
    return bool(first & 0x40), first & 0x0F, payload


class RFC7692PerMessageDeflate(unittest.TestCase):
    """RFC 7692: negotiation, compressed messages both ways (Autobahn 12, 13)."""

    def test_negotiation_default_offer(self):
        """A plain offer is accepted with server_no_context_takeover."""
        params = negotiate_deflate(["permessage-deflate; client_max_window_bits"])
        self.assertEqual(params.response, "permessage-deflate; server_no_context_takeover")
        self.assertEqual((params.server_max_window_bits, params.client_max_window_bits), (15, 15))

    def test_negotiation_parameters(self):
        """Window sizes are echoed and honoured; client_no_context_takeover is accepted (Autobahn 13.*)."""
        params = negotiate_deflate(
            ['permessage-deflate; server_max_window_bits="10"; client_max_window_bits=9; client_no_context_takeover']
        )
        self.assertEqual(
            params.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
            " server_max_window_bits=10; client_max_window_bits=9",
        )
        self.assertTrue(params.client_no_context_takeover)
        self.assertEqual((params.server_max_window_bits, params.client_max_window_bits), (10, 9))

    def test_negotiation_takes_the_first_acceptable_offer(self):
        """Bad offers are declined and the next one taken (Autobahn 13.7)."""
        params = negotiate_deflate(
            ["x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=7", "permessage-deflate; foo=1"]
            + ["permessage-deflate; server_max_window_bits=9"]
        )
        self.assertEqual(params.server_max_window_bits, 9)

    def test_negotiation_declines(self):
        """Repeated, unknown or badly valued parameters, or an unparsable header, decline."""
        for header in (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; =",
            "x-other",
            "",
        ):
            with self.subTest(header=header):
                self.assertIsNone(negotiate_deflate([header]))
        self.assertEqual(parse_extensions(['a; b="c,d", e']), [("a", [("b", "c,d")]), ("e", [])])

    def test_compressed_text_is_decompressed(self):
        """A compressed text message, whole or fragmented, comes out as text."""
        text = "Hello, compressed world! " * 20
        body = deflate_raw(text.encode())
        params = DeflateParams()
        _conn, events, _ = feed(cframe(body, rsv=4), deflate=params)
        self.assertEqual(events, [text])
        data = cframe(body[:10], rsv=4, fin=False) + cframe(body[10:], opcode=0)
        _conn, events, _ = feed(data, deflate=params)
        self.assertEqual(events, [text])

    def test_context_takeover_from_the_client(self):
        """Messages compressed with one running context (the client's default) decompress in turn."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        frames = b""
        for word in ("alpha " * 10, "alpha " * 10 + "beta", "beta " * 10):
            out = compressor.compress(word.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
            frames += cframe(out[:-4], rsv=4)
        _conn, events, _ = feed(frames, deflate=DeflateParams())
        self.assertEqual(events, ["alpha " * 10, "alpha " * 10 + "beta", "beta " * 10])

    def test_uncompressed_message_on_a_compressing_connection(self):
        """A message without RSV1 is not compressed, even once deflate is negotiated."""
        _conn, events, _ = feed(cframe("plain"), deflate=DeflateParams())
        self.assertEqual(events, ["plain"])

    def test_rsv1_where_it_may_not_be(self):
        """RSV1 on a continuation or control frame, or without negotiation, fails with 1002."""
        body = deflate_raw(b"abc")
        cases = [
            (cframe(body, rsv=4, fin=False) + cframe(b"x", opcode=0, rsv=4), DeflateParams()),
            (cframe(b"p", opcode=0x9, rsv=4), DeflateParams()),
            (cframe(body, rsv=4), None),
        ]
        for data, params in cases:
            with self.subTest(params=params):
                _conn, _events, writes = feed(data, deflate=params)
                self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_decompression_bomb_fails_with_1009(self):
        """A small frame that inflates past max_message_size fails with 1009."""
        body = deflate_raw(b"\x00" * (1 << 20))
        self.assertLess(len(body), 2000)
        _conn, _events, writes = feed(
            cframe(body, rsv=4, opcode=0x2), bytewise=False, deflate=DeflateParams(), limit=65536
        )
        self.assertEqual(writes, [server_close(1009), SEND_EOF])

    def test_invalid_compressed_data_fails_with_1002(self):
        """Bytes that are not DEFLATE data fail with 1002."""
        _conn, _events, writes = feed(cframe(b"\xff\xff\xff\xff", rsv=4), deflate=DeflateParams())
        self.assertEqual(writes, [server_close(1002), SEND_EOF])

    def test_sent_messages_are_compressed(self):
        """send_text compresses what is long enough, and the result decompresses to it."""
        conn = ServerConnection(1 << 20, DeflateParams(), compression_min_size=64)
        conn.send_text(b"short")
        conn.send_text(b"a long message, " * 20)
        short, long = conn.data_to_send()
        self.assertEqual(inflate_frame(short), (False, 0x1, b"short"))
        self.assertEqual(inflate_frame(long), (True, 0x1, b"a long message, " * 20))

    def test_window_of_8_bits_sends_plain_frames(self):
        """zlib cannot compress with an 8-bit window: such a client gets uncompressed messages."""
        params = negotiate_deflate(["permessage-deflate; server_max_window_bits=8"])
        conn = ServerConnection(1 << 20, params)
        conn.send_binary(b"z" * 1000)
        self.assertEqual(inflate_frame(conn.data_to_send()[0]), (False, 0x2, b"z" * 1000))

    def test_incompressible_message_is_sent_plain(self):
        """A message that compression would not shrink goes uncompressed."""
        self.assertIsNone(compress_message(bytes(range(256)), 9, 6))

    def test_shared_deflater_compresses_each_frame_once(self):
        """A fan-out's plain frame is compressed once; the same object comes back for it."""
        from snorky.websocket.deflate import SharedDeflater

        deflater = SharedDeflater(15, 6, 64)
        plain = websocket_frame(b"news " * 40)
        compressed = deflater.frame_for(plain)
        self.assertIs(deflater.frame_for(plain), compressed)
        self.assertEqual(inflate_frame(compressed), (True, 0x1, b"news " * 40))
        short = websocket_frame(b"hi")
        self.assertIs(deflater.frame_for(short), short)
        long_frame = websocket_frame(b"z" * 70000, 0x2)
        self.assertEqual(inflate_frame(deflater.frame_for(long_frame)), (True, 0x2, b"z" * 70000))

    def test_inflater_resets_without_context_takeover(self):
        """With client_no_context_takeover each message starts a new context."""
        inflater = Inflater(DeflateParams(client_no_context_takeover=True))
        for _ in range(2):
            self.assertEqual(inflater.inflate(deflate_raw(b"same"), True, 100), b"same")


class OrderTests(unittest.TestCase):
    """Answers of the protocol's own keep their place among the messages (Autobahn 5.6, 5.19, 3.2)."""

    def in_order(self, data):
        results = []
        for _name, chunks in chunkings(data):
            conn = ServerConnection(1 << 20)
            items = []
            for chunk in chunks:
                conn.receive_data(chunk)
                items += [(w, x if w else normalize([x])[0]) for w, x in conn.take_in_order()]
            results.append(items)
        self.assertTrue(all(r == results[0] for r in results))
        return results[0]

    def test_ping_inside_a_fragmented_message_is_answered_first(self):
        """The pong of a ping between fragments comes before the message it interrupts."""
        data = cframe("frag", fin=False) + cframe(b"p", opcode=0x9) + cframe("ment", opcode=0)
        items = self.in_order(data)
        self.assertEqual(items, [(True, websocket_frame(b"p", 0xA)), (False, ("Ping", b"p")), (False, "fragment")])

    def test_message_then_ping_keeps_the_message_first(self):
        """A message, then a ping: the message comes first, then the pong."""
        items = self.in_order(cframe("hello") + cframe(b"p", opcode=0x9))
        self.assertEqual(items[0], (False, "hello"))
        self.assertEqual(items[1], (True, websocket_frame(b"p", 0xA)))

    def test_message_then_bad_frame(self):
        """A message, then a bad frame: the message first, then the close frame and the end."""
        items = self.in_order(cframe("ok") + cframe("x", rsv=2))
        self.assertEqual(items, [(False, "ok"), (True, server_close(1002)), (True, SEND_EOF)])


class StateTests(unittest.TestCase):
    """The connection's states, and sending while open."""

    def test_open_connection_sends_frames(self):
        """send_text, send_binary and send_ping queue frames in order while open."""
        conn = ServerConnection(100)
        self.assertEqual(conn.state, OPEN)
        conn.send_text(b"t")
        conn.send_binary(b"b")
        conn.send_ping(b"p")
        self.assertEqual(
            conn.data_to_send(), [websocket_frame(b"t"), websocket_frame(b"b", 0x2), websocket_frame(b"p", 0x9)]
        )
        self.assertFalse(conn.close_expected())

    def test_fail_is_once(self):
        """fail() sends one close frame and one end of stream, whatever happens next."""
        conn = ServerConnection(100)
        conn.fail(1011, "bug")
        conn.fail(1002, "again")
        self.assertEqual(conn.data_to_send(), [server_close(1011), SEND_EOF])
        self.assertEqual(conn.failure.why, "bug")
