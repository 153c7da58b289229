"""WebSocket protocol conformance with raw frames over a socket, for both engines.

The cases follow the Autobahn fuzzing suite's groups: framing, pings, reserved bits and opcodes,
fragmentation with interleaved control frames, UTF-8 (also incrementally, across fragments), close
codes and reasons. One echo server per engine serves every case, which also shows that a client
breaking the protocol does not disturb the others.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.frames import apply_mask

from tests.apps import echo_messages
from tests.conftest import RunningServer, run_server

WS_IMPLEMENTATIONS = ["websockets", "wsproto"]

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One client frame, masked unless told otherwise."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    mask_bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + apply_mask(payload, key)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


class RawClient:
    """A WebSocket client on a plain socket: sends any bytes, reads server frames one by one."""

    def __init__(
        self, port: int, path: bytes = b"/", headers: bytes | None = None, extra: bytes = b""
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if headers is None:
            key = base64.b64encode(os.urandom(16))
            headers = (
                b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % key
            )
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n%s" % (path, headers, extra))
        self.buffer = b""
        self.eof = False
        self.last_rsv = 0
        head = self._read_until(b"\r\n\r\n")
        self.head = head
        self.status = int(head.split(b" ", 2)[1]) if head else 0
        self.response_headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or self.eof:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            # Closed too: the kernel resets instead of ending the stream when the server closes with
            # client bytes still unread (a frame sent after the close frame, as some tests do).
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            if not self._fill(deadline):
                return b""
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _take(self, size: int, deadline: float) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_body(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        body, self.buffer = self.buffer, b""
        return body

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        self.sock.sendall(ws_frame(opcode, payload, **options))

    def recv_frame(self, timeout: float = 5.0) -> tuple[int, bytes, bool] | None:
        """(opcode, payload, fin) of the next server frame; None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        head = self._take(2, deadline)
        if head is None:
            return None
        assert not head[1] & 0x80, "server frames are never masked"
        size = head[1] & 0x7F
        if size == 126:
            extended = self._take(2, deadline)
            assert extended is not None
            (size,) = struct.unpack("!H", extended)
        elif size == 127:
            extended = self._take(8, deadline)
            assert extended is not None
            (size,) = struct.unpack("!Q", extended)
        payload = self._take(size, deadline)
        assert payload is not None
        self.last_rsv = head[0] >> 4 & 0x7  # the reserved bits of this frame (4: compressed)
        return head[0] & 0x0F, payload, bool(head[0] & 0x80)

    def recv_close(self, timeout: float = 5.0) -> int | None:
        """Skip data frames up to the server's close frame; its code (1005 when empty), or None."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if frame is None:
                return None
            if frame[0] == CLOSE:
                return struct.unpack("!H", frame[1][:2])[0] if frame[1] else 1005

    def wait_eof(self, timeout: float = 5.0) -> bool:
        """True once the server closed the TCP connection."""
        deadline = time.monotonic() + timeout
        while not self.eof and self._fill(deadline):
            self.buffer = b""
        return self.eof

    def close(self) -> None:
        self.sock.close()


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await echo_messages(receive, send)


@pytest.fixture(scope="module", params=WS_IMPLEMENTATIONS)
def echo_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    with run_server(echo_app, ws=request.param, ws_ping_interval=None) as server:
        yield server


@pytest.fixture
def client(echo_server: RunningServer) -> Iterator[RawClient]:
    raw = RawClient(echo_server.port)
    assert raw.status == 101
    yield raw
    raw.close()


def assert_echo_still_works(server: RunningServer) -> None:
    other = RawClient(server.port)
    try:
        other.send_frame(TEXT, b"still here")
        assert other.recv_frame() == (TEXT, b"still here", True)
    finally:
        other.close()


# -- framing and pings


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 1 << 20])
def test_echo_sizes(client: RawClient, size: int) -> None:
    payload = os.urandom(size)
    client.send_frame(BINARY, payload)
    assert client.recv_frame() == (BINARY, payload, True)
    client.send_frame(TEXT, b"a" * size)
    assert client.recv_frame() == (TEXT, b"a" * size, True)


def test_ping_gets_pong_with_same_payload(client: RawClient) -> None:
    for payload in (b"", b"x" * 125, bytes(range(100))):
        client.send_frame(PING, payload)
        assert client.recv_frame() == (PONG, payload, True)


def test_ten_pings_in_one_packet(client: RawClient) -> None:
    client.send(b"".join(ws_frame(PING, b"%d" % i) for i in range(10)))
    assert [client.recv_frame() for _ in range(10)] == [(PONG, b"%d" % i, True) for i in range(10)]


def test_unsolicited_pong_is_ignored(client: RawClient) -> None:
    client.send_frame(PONG, b"hello")
    client.send_frame(TEXT, b"after")
    assert client.recv_frame() == (TEXT, b"after", True)


def test_fragmented_message_with_interleaved_pings(client: RawClient) -> None:
    client.send_frame(TEXT, b"frag", fin=False)
    client.send_frame(PING, b"p1")
    assert client.recv_frame() == (PONG, b"p1", True)
    client.send_frame(CONT, b"men", fin=False)
    client.send_frame(PING, b"p2")
    client.send_frame(CONT, b"ted", fin=True)
    assert client.recv_frame() == (PONG, b"p2", True)
    assert client.recv_frame() == (TEXT, b"fragmented", True)


def test_many_small_fragments(client: RawClient) -> None:
    payload = os.urandom(64 * 1024)
    pieces = [payload[i : i + 64] for i in range(0, len(payload), 64)]
    frames = [ws_frame(BINARY if i == 0 else CONT, piece, fin=False) for i, piece in enumerate(pieces)]
    client.send(b"".join(frames) + ws_frame(CONT, b"", fin=True))
    assert client.recv_frame() == (BINARY, payload, True)


def test_utf8_split_across_fragments_is_valid(client: RawClient) -> None:
    text = "κόσμε, 𝄞 and €".encode()
    for cut in range(1, len(text)):
        client.send_frame(TEXT, text[:cut], fin=False)
        client.send_frame(CONT, text[cut:], fin=True)
        assert client.recv_frame() == (TEXT, text, True)


VALID_UTF8 = [
    "\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff".encode(),
    "\ufffe\uffff\ufeff".encode(),  # noncharacters and the BOM are valid UTF-8
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
]
INVALID_UTF8 = [
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xed\xa0\x80",  # a surrogate
    b"\xed\xbf\xbf",
    b"\xc0\x80",  # overlong forms
    b"\xe0\x80\x80",
    b"\xf0\x80\x80\x80",
    b"\x80",  # lone continuation bytes
    b"\xbf",
    b"\xfe",
    b"\xff",
    b"ok\xc2",  # truncated at the end of the message
    b"ok\xe0\xa0",
    b"ok\xf0\x90\x80",
]


@pytest.mark.parametrize("payload", VALID_UTF8)
def test_valid_utf8_whole_and_byte_per_fragment(client: RawClient, payload: bytes) -> None:
    client.send_frame(TEXT, payload)
    assert client.recv_frame() == (TEXT, payload, True)
    frames = [ws_frame(TEXT if i == 0 else CONT, payload[i : i + 1], fin=False) for i in range(len(payload))]
    client.send(b"".join(frames) + ws_frame(CONT, b""))
    assert client.recv_frame() == (TEXT, payload, True)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_closes_1007(client: RawClient, payload: bytes, split: bool) -> None:
    if split:
        pieces = [payload[i : i + 1] for i in range(len(payload))]
        frames = [ws_frame(TEXT if i == 0 else CONT, piece, fin=False) for i, piece in enumerate(pieces)]
        client.send(b"".join(frames) + ws_frame(CONT, b""))
    else:
        client.send_frame(TEXT, payload)
    assert client.recv_close() == 1007


def test_frame_sent_byte_by_byte(client: RawClient) -> None:
    for byte in ws_frame(TEXT, b"slowly"):
        client.send(bytes([byte]))
    assert client.recv_frame() == (TEXT, b"slowly", True)


# -- violations: the server closes with the right code and goes on serving others

VIOLATIONS: dict[str, tuple[list[bytes], int]] = {
    "unmasked frame": ([ws_frame(TEXT, b"hi", mask=False)], 1002),
    "reserved bit 1": ([ws_frame(TEXT, b"hi", rsv=4)], 1002),
    "reserved bits 2 and 3": ([ws_frame(BINARY, b"hi", rsv=3)], 1002),
    "reserved bits on a ping": ([ws_frame(PING, b"hi", rsv=7)], 1002),
    "reserved opcode 3": ([ws_frame(0x3)], 1002),
    "reserved opcode 7": ([ws_frame(0x7, b"x")], 1002),
    "reserved control opcode 11": ([ws_frame(0xB)], 1002),
    "reserved control opcode 15": ([ws_frame(0xF, b"x")], 1002),
    "ping payload of 126 bytes": ([ws_frame(PING, b"x" * 126)], 1002),
    "fragmented ping": ([ws_frame(PING, b"a", fin=False), ws_frame(CONT, b"b")], 1002),
    "continuation without start": ([ws_frame(CONT, b"lost")], 1002),
    "new message inside a fragmented one": (
        [ws_frame(TEXT, b"a", fin=False), ws_frame(TEXT, b"b")],
        1002,
    ),
    "invalid UTF-8 text": ([ws_frame(TEXT, "κόσμε".encode() + b"\xed\xa0\x80")], 1007),
    "invalid UTF-8 across fragments": ([ws_frame(TEXT, b"\xce", fin=False), ws_frame(CONT, b"x")], 1007),
    "overlong UTF-8": ([ws_frame(TEXT, b"\xc0\xaf")], 1007),
    "close with one byte": ([ws_frame(CLOSE, b"\x03")], 1002),
    "close reason of 124 bytes": ([ws_frame(CLOSE, close_payload(1000, b"r" * 124))], 1002),
    "close reason not UTF-8": ([ws_frame(CLOSE, close_payload(1000, b"\xff\xfe"))], 1007),
}
INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_protocol_violation_closes(echo_server: RunningServer, client: RawClient, case: str) -> None:
    frames, code = VIOLATIONS[case]
    client.send(b"".join(frames))
    assert client.recv_close() == code
    assert client.wait_eof()
    assert_echo_still_works(echo_server)


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_is_a_protocol_error(client: RawClient, code: int) -> None:
    client.send_frame(CLOSE, close_payload(code))
    assert client.recv_close() == 1002
    assert client.wait_eof()


def test_invalid_utf8_fails_before_the_message_ends(client: RawClient) -> None:
    """Incremental validation: a bad fragment fails at once, not when the final fragment arrives."""
    client.send_frame(TEXT, "κόσμε".encode(), fin=False)
    client.send_frame(CONT, b"\xed\xa0\x80", fin=False)
    assert client.recv_close() == 1007


def test_violation_after_a_valid_frame(client: RawClient) -> None:
    # The echo of "first" may or may not make it before the close: the app runs after the parser.
    client.send(ws_frame(TEXT, b"first") + ws_frame(TEXT, b"x", rsv=2))
    assert client.recv_close() == 1002


# -- the close handshake


VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_is_echoed(client: RawClient, code: int) -> None:
    client.send_frame(CLOSE, close_payload(code, b"bye"))
    frame = client.recv_frame()
    assert frame is not None and frame[0] == CLOSE
    assert struct.unpack("!H", frame[1][:2])[0] == code
    assert client.wait_eof()


def test_empty_close_is_echoed_empty(client: RawClient) -> None:
    client.send_frame(CLOSE)
    assert client.recv_frame() == (CLOSE, b"", True)
    assert client.wait_eof()


def test_close_inside_a_fragmented_message_is_a_normal_close(client: RawClient) -> None:
    client.send(ws_frame(TEXT, b"fragment1", fin=False) + ws_frame(CLOSE, close_payload(1000)))
    client.send_frame(CONT, b"fragment2")
    assert client.recv_close() == 1000
    assert client.wait_eof()


def test_close_with_longest_reason(client: RawClient) -> None:
    client.send_frame(CLOSE, close_payload(1000, b"r" * 123))
    assert client.recv_close() == 1000


def test_frames_after_close_are_ignored(client: RawClient) -> None:
    client.send(ws_frame(TEXT, b"before") + ws_frame(CLOSE, close_payload(1000)) + ws_frame(TEXT, b"after"))
    frames = []
    while (frame := client.recv_frame()) is not None:
        frames.append(frame)
    assert (CLOSE, close_payload(1000), True) in frames
    assert frames[-1][0] == CLOSE  # nothing after the close, and the connection ends
    assert (TEXT, b"after", True) not in frames
    assert client.eof
