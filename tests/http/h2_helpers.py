"""HTTP/2 clients for the tests: httpx, an h2-driven client on a socket (h2 is the reference client
implementation), and raw frames (hyperframe) for what a well-behaved client never sends. Every read
is bounded by a deadline."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from tests.conftest import recv_until_closed

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_client(**kwargs: Any) -> httpx.Client:
    """httpx speaking HTTP/2 only: prior knowledge over cleartext."""
    return httpx.Client(http1=False, http2=True, timeout=5, **kwargs)


class RawH2:
    """An HTTP/2 client on a plain socket, driven by h2: every read is bounded by a deadline."""

    def __init__(self, port: int, settings: dict[int, int] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[Any] = []
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
        end: bool = True,
    ) -> int:
        stream_id: int = self.conn.get_next_available_stream_id()
        base = [
            (b":method", method.encode()),
            (b":path", path.encode()),
            (b":scheme", b"http"),
            (b":authority", b"t"),
        ]
        self.conn.send_headers(stream_id, base + (headers or []), end_stream=end)
        self.flush()
        return stream_id

    def read_until(self, done: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not done(self.events) and not self.closed and time.monotonic() < deadline:
            self.flush()  # what done() acknowledged
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:  # closed with bytes of ours unread
                self.closed = True
                break
            if not data:
                self.closed = True
                break
            self.events += self.conn.receive_data(data)
            self.flush()
        return self.events

    def of(self, kind: type, stream_id: int | None = None) -> list[Any]:
        return [
            e for e in self.events if isinstance(e, kind) and (stream_id is None or e.stream_id == stream_id)
        ]

    def response(self, stream_id: int, timeout: float = 5.0) -> tuple[dict[bytes, bytes], bytes]:
        """The headers and body of a stream's response, acknowledging the data as it arrives."""
        body = b""
        seen = 0

        def ended(events: list[Any]) -> bool:
            nonlocal seen, body
            for event in events[seen:]:
                if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            seen = len(events)
            return any(
                isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and e.stream_id == stream_id
                for e in events
            )

        self.read_until(ended, timeout)
        headers = next(
            e for e in self.events if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream_id
        )
        return dict(headers.headers), body

    def goaway(self) -> Any:
        events = self.of(h2.events.ConnectionTerminated)
        return events[0] if events else None

    def close(self) -> None:
        self.sock.close()


def read_frames(sock: socket.socket, timeout: float) -> tuple[list[Any], bool]:
    """Every frame until the server closes (True) or ``timeout`` passes. Parsed with hyperframe, not h2:
    h2 as a client processes nothing after a GOAWAY, even the responses to streams in flight."""
    data, closed = recv_until_closed(sock, timeout)
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames, closed


def parse_frames(data: bytes) -> tuple[list[Any], bytes]:
    """The whole frames in ``data``, and the bytes of an incomplete one."""
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        if len(data) < 9 + length:
            break
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames, data


def frames_until(sock: socket.socket, done: Callable[[list[Any]], bool], timeout: float = 5) -> list[Any]:
    """Frames read until ``done(frames)`` or ``timeout``; a RuntimeError if the server closes first."""
    frames: list[Any] = []
    rest = b""
    deadline = time.monotonic() + timeout
    while not done(frames):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"closed; frames: {frames}")
        new, rest = parse_frames(rest + chunk)
        frames += new
    return frames


def request_frame(
    stream_id: int,
    extra: list[tuple[bytes, bytes]] | None = None,
    end_stream: bool = True,
    path: bytes = b"/",
) -> bytes:
    """A GET's HEADERS frame, encoded by a fresh HPACK encoder (static table and literals only)."""
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", path)]
    block = Encoder().encode(fields + (extra or []))
    flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
    return HeadersFrame(stream_id, block, flags=flags).serialize()  # type: ignore[no-any-return]


def raw_connect(port: int, settings: dict[int, int] | None = None) -> socket.socket:
    """A socket that has sent the preface and SETTINGS."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(PREFACE + SettingsFrame(0, settings=settings or {}).serialize())
    return sock


def goaway_code(frames: list[Any]) -> int | None:
    goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
    return goaways[-1].error_code if goaways else None


def reset_codes(frames: list[Any]) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


class FrameReader:
    """The frames a server sends on a raw socket, kept across reads (a frame split between reads is
    completed by the next)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: list[Any] = []
        self.rest = b""
        self.closed = False

    def read(self, deadline: float) -> bool:
        """One read before ``deadline``; False when nothing came (timeout or closed)."""
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        new, self.rest = parse_frames(self.rest + chunk)
        self.frames += new
        return True

    def until(self, done: Callable[[list[Any]], bool], timeout: float = 5) -> list[Any]:
        """All frames so far, once ``done(frames)``; an AssertionError when it does not come in time."""
        deadline = time.monotonic() + timeout
        while not done(self.frames):
            if not self.read(deadline) and (self.closed or time.monotonic() >= deadline):
                raise AssertionError(f"not done after {timeout}s (closed: {self.closed}): {self.frames}")
        return self.frames

    def within(self, seconds: float) -> list[Any]:
        """All frames so far, after reading for ``seconds`` (or until the server closes)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            self.read(deadline)
        return self.frames
