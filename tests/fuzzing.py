"""Shared helpers for the fuzz tests (``tests/test_fuzz_*.py``) and ``benchmarks/fuzz_long.py``.

- :class:`FuzzApp`: an ASGI app that records every call per client port (so a test can count app calls
  against what it sent on one connection), echoes request bodies and WebSocket messages.
- :class:`ErrorLog`: collects ERROR records of ``fulmen.error`` and ``asyncio`` ("Exception in
  callback", "Task exception was never retrieved") while a fuzz run goes on.
- Hypothesis strategies for valid HTTP/1.1 pipelines, mutated ones, and WebSocket frame streams.
- Strict parsers of what the server sends back (HTTP/1.1 responses, WebSocket server frames): anything
  not well-formed raises :class:`Malformed`.
- :func:`http_exchange` / :func:`ws_exchange`: one case against a real server on loopback, every socket
  operation bounded, and the invariants checked; a violation raises :class:`Finding`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.apps import echo_messages


def fuzz_settings(examples: int) -> Any:
    """Hypothesis settings of the fuzz tests: reproducible runs, no example database, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
    )


# ---------------------------------------------------------------------------------------------------
# Statistics: how many cases ran, printed as one line at the end of the pytest run.


class FuzzStats:
    """Counts cases per fuzz target; a pytest plugin that prints the summary line."""

    def __init__(self) -> None:
        self.cases: dict[str, int] = {}
        self.findings: list[str] = []
        self.started = time.monotonic()

    def count(self, target: str) -> None:
        self.cases[target] = self.cases.get(target, 0) + 1

    def summary(self) -> str:
        total = sum(self.cases.values())
        parts = ", ".join(f"{name} {count}" for name, count in sorted(self.cases.items()))
        return (
            f"fuzz: {total} cases in {time.monotonic() - self.started:.1f} s "
            f"({parts}); {len(self.findings)} findings"
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.cases:
            terminalreporter.write_line(self.summary())


STATS = FuzzStats()


def register_stats(config: Any) -> FuzzStats:
    """Register :data:`STATS` as a plugin once, so pytest prints the summary line."""
    if not config.pluginmanager.is_registered(STATS):
        config.pluginmanager.register(STATS, "fulmen-fuzz-stats")
    return STATS


# ---------------------------------------------------------------------------------------------------
# Errors the server logs


class Finding(AssertionError):
    """An invariant the server broke."""


class Malformed(Finding):
    """The server sent bytes that are not well-formed HTTP/1.1 or WebSocket."""


class ErrorLog(logging.Handler):
    """ERROR (and worse) records of the server's loggers, and uncaught exceptions of its threads."""

    LOGGERS = ("fulmen.error", "asyncio")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._previous_hook: Any = None
        self._levels: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> ErrorLog:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if logger.level == logging.NOTSET or logger.level > logging.ERROR:
                logger.setLevel(logging.ERROR)
            logger.addHandler(self)
        self._previous_hook = threading.excepthook

        def hook(args: Any) -> None:
            record = logging.LogRecord(
                "thread",
                logging.ERROR,
                "",
                0,
                "Exception in thread",
                None,
                (args.exc_type, args.exc_value, None),
            )
            self.records.append(record)
            self._previous_hook(args)

        threading.excepthook = hook
        return self

    def uninstall(self) -> None:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(self._levels.get(name, logging.NOTSET))
        if self._previous_hook is not None:
            threading.excepthook = self._previous_hook

    def take(self) -> list[str]:
        """Descriptions of the records since the last call (and forget them)."""
        records, self.records = self.records, []
        texts = []
        for record in records:
            text = f"{record.name}: {record.getMessage()}"
            if record.exc_info and record.exc_info[1] is not None:
                text += f" [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
            texts.append(text)
        return texts


# ---------------------------------------------------------------------------------------------------
# The application


@dataclass
class Call:
    id: int
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    state: str = "receiving"  # receiving -> done | disconnected


class FuzzApp:
    """HTTP: echo the body back (chunked when the query has ``stream``), with ``x-call: <id>``.
    WebSocket: accept and echo every message. Every HTTP call is recorded by client port."""

    def __init__(self) -> None:
        self.calls: dict[int, list[Call]] = {}
        self.next_id = 0
        self.ws_sessions = 0

    def calls_for(self, port: int) -> list[Call]:
        """A snapshot (copies) of the calls made for a client port."""
        return [replace(call) for call in self.calls.get(port, ())]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await self.websocket(receive, send)
            return
        if scope["type"] != "http":
            return
        self.next_id += 1
        call = Call(
            self.next_id, scope["method"], scope["path"], scope["query_string"], list(scope["headers"])
        )
        port = scope["client"][1] if scope.get("client") else 0
        self.calls.setdefault(port, []).append(call)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                call.state = "disconnected"
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        call.body = body = b"".join(chunks)
        headers = [(b"content-type", b"application/octet-stream"), (b"x-call", b"%d" % call.id)]
        if b"stream" in call.query:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for start in range(0, len(body), 7):
                await send({"type": "http.response.body", "body": body[start : start + 7], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            headers.append((b"content-length", b"%d" % len(body)))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        call.state = "done"

    async def websocket(self, receive: Any, send: Any) -> None:
        self.ws_sessions += 1
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await echo_messages(receive, send)


# ---------------------------------------------------------------------------------------------------
# Requests: the model, its bytes, and the strategies

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
#: Status codes with which the server itself refuses a request (then closes the connection).
REJECTIONS = frozenset({400, 408, 413, 414, 431, 501, 505})


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]  # the extra x- headers, as sent
    body: bytes
    framing: str  # none | length | chunked
    chunks: list[tuple[int, bytes]] = field(default_factory=list)  # (size digits padding, ext)
    chunk_sizes: list[int] = field(default_factory=list)
    upper_hex: bool = False
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    expect_continue: bool = False
    close: bool = False
    http10: bool = False

    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def encode(self) -> bytes:
        version = b"HTTP/1.0" if self.http10 else b"HTTP/1.1"
        lines = [b"%s %s %s" % (self.method.encode(), self.target().encode(), version), b"Host: fuzz"]
        lines += [name + b": " + value for name, value in self.headers]
        if self.http10 and not self.close:
            lines.append(b"Connection: keep-alive")
        if self.close:
            lines.append(b"Connection: close")
        if self.expect_continue:
            lines.append(b"Expect: 100-continue")
        body = self.body
        if self.framing == "length":
            lines.append(b"Content-Length: %d" % len(body))
            payload = body
        elif self.framing == "chunked":
            lines.append(b"Transfer-Encoding: chunked")
            parts = []
            offset = 0
            for (padding, ext), size in zip(self.chunks, self.chunk_sizes, strict=True):
                digits = ("%X" if self.upper_hex else "%x") % size
                parts.append(
                    b"0" * padding + digits.encode() + ext + b"\r\n" + body[offset : offset + size] + b"\r\n"
                )
                offset += size
            parts.append(b"0\r\n")
            parts += [name + b": " + value + b"\r\n" for name, value in self.trailers]
            parts.append(b"\r\n")
            payload = b"".join(parts)
        else:
            payload = b""
        return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _case_mix(draw: Any, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(text, flips, strict=True))


header_names = st.text(TOKEN, min_size=1, max_size=12).map(lambda s: ("x-" + s).encode())
# Visible ASCII and obs-text, with spaces and tabs inside (parsers strip them at the ends).
_VALUE_BYTES = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
header_values = (
    st.lists(st.sampled_from([bytes([b]) for b in _VALUE_BYTES] + [b" ", b"\t"]), max_size=24)
    .map(b"".join)
    .map(lambda value: value.strip(b" \t"))
)
chunk_exts = st.sampled_from([b"", b"", b"", b";a", b";a=b", b';name="quoted value"', b";x=1;y=2"])


@st.composite
def requests(draw: Any, *, allow_head: bool = True) -> Request:
    methods = METHODS if allow_head else [m for m in METHODS if m != "HEAD"]
    method = draw(st.sampled_from(methods))
    path = "/" + draw(st.text(PATH_CHARS, max_size=20))
    query = draw(st.sampled_from(["", "", "a=1", "stream", "q=x&stream=1", "%41=%42"]))
    http10 = draw(st.integers(0, 9)) == 0
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    headers = [(_case_mix(draw, name.decode()).encode(), value) for name, value in headers]
    big = draw(st.integers(0, 30)) == 0
    body = draw(st.binary(min_size=20000, max_size=70000)) if big else draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked"] if body else ["none", "length", "chunked"]))
    request = Request(method, path, query, headers, body, framing)
    request.http10 = http10 and framing != "chunked" and "stream" not in query
    if framing == "chunked":
        sizes: list[int] = []
        remaining = len(body)
        while remaining:
            size = draw(st.integers(1, max(1, min(remaining, 9000))))
            sizes.append(size)
            remaining -= size
        request.chunk_sizes = sizes
        request.chunks = [(draw(st.integers(0, 2)), draw(chunk_exts)) for _ in sizes]
        request.upper_hex = draw(st.booleans())
        request.trailers = draw(st.lists(st.tuples(header_names, header_values.filter(bool)), max_size=2))
    request.expect_continue = bool(body) and not request.http10 and draw(st.integers(0, 5)) == 0
    return request


@st.composite
def pipelines(draw: Any, *, max_requests: int = 4, allow_head: bool = True) -> list[Request]:
    pipeline = draw(st.lists(requests(allow_head=allow_head), min_size=1, max_size=max_requests))
    if draw(st.integers(0, 4)) == 0:
        pipeline[-1].close = True
    return pipeline


def split_points(data_size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, max(0, data_size)), max_size=6).map(lambda points: sorted(set(points)))


def split(data: bytes, points: list[int]) -> list[bytes]:
    pieces = []
    previous = 0
    for point in points:
        if previous < point < len(data):
            pieces.append(data[previous:point])
            previous = point
    pieces.append(data[previous:])
    return [piece for piece in pieces if piece]


#: Bytes a mutation inserts: separators, framing keywords and smuggling classics.
INSERTIONS = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"\x7f",
    b"\xff",
    b"0",
    b"0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 7\r\n",
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Host: other\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"Upgrade: websocket\r\n",
    b"\r\n ",
    b"GET /inner HTTP/1.1\r\nHost: x\r\n\r\n",
    b"FFFFFFFFFFFFFFFFFF",
    b"HTTP/1.0",
    b"-1",
    b"+",
    b"%00",
]


@st.composite
def mutations(draw: Any) -> list[tuple[str, int, int, bytes]]:
    ops = st.tuples(
        st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "swapcase"]),
        st.integers(0, 1 << 20),
        st.integers(1, 16),
        st.one_of(st.sampled_from(INSERTIONS), st.binary(min_size=1, max_size=3)),
    )
    return draw(st.lists(ops, min_size=1, max_size=4))


def mutate(data: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    buf = bytearray(data)
    for kind, position, size, inserted in ops:
        pos = position % (len(buf) + 1)
        if kind == "flip" and buf:
            pos %= len(buf)
            buf[pos] ^= inserted[0] or 1
        elif kind == "insert":
            buf[pos:pos] = inserted
        elif kind == "delete":
            del buf[pos : pos + size]
        elif kind == "duplicate":
            buf[pos:pos] = buf[pos : pos + size]
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "swapcase":
            buf[pos : pos + size] = bytes(buf[pos : pos + size]).swapcase()
    return bytes(buf)


# ---------------------------------------------------------------------------------------------------
# Strict parsing of responses

_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\x20-\x7e]*")
_HEADER_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ?([\t\x20-\x7e\x80-\xff]*)")
_CHUNK_LINE = re.compile(rb"([0-9a-fA-F]{1,16})\r\n")


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_response(buffer: bytes, method: str, closed: bool) -> tuple[Response, int] | None:
    """The first response in ``buffer`` and its size; None when incomplete. Raises :class:`Malformed`."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > 65536 or (closed and buffer):
            raise Malformed(f"incomplete or endless response head: {buffer[:200]!r}")
        return None
    lines = buffer[:end].split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise Malformed(f"bad status line {lines[0][:200]!r}")
    status = int(match.group(1))
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        header = _HEADER_LINE.fullmatch(line)
        if header is None:
            raise Malformed(f"bad header line {line[:200]!r}")
        headers.append((header.group(1).lower(), header.group(2)))
    names = [name for name, _ in headers]
    if names.count(b"content-length") > 1 or names.count(b"transfer-encoding") > 1:
        raise Malformed(f"duplicate framing headers: {headers}")
    response = Response(status, headers, b"")
    length = response.header(b"content-length")
    chunked = response.header(b"transfer-encoding")
    if length is not None and chunked is not None:
        raise Malformed("both Content-Length and Transfer-Encoding")
    if chunked is not None and chunked.lower() != b"chunked":
        raise Malformed(f"unknown Transfer-Encoding {chunked!r}")
    start = end + 4
    if status < 200 or status in (204, 304) or method == "HEAD":
        if status < 200 and (length is not None or chunked is not None):
            raise Malformed("1xx response with framing headers")
        return response, start
    if length is not None:
        if not length.isdigit():
            raise Malformed(f"bad Content-Length {length!r}")
        size = int(length)
        if len(buffer) - start < size:
            if closed:
                raise Malformed("connection closed in the middle of a Content-Length body")
            return None
        response.body = buffer[start : start + size]
        return response, start + size
    if chunked is not None:
        body = []
        position = start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                if closed:
                    raise Malformed("connection closed in the middle of a chunked body")
                if len(buffer) - position > 20:
                    raise Malformed(f"bad chunk size line {buffer[position : position + 40]!r}")
                return None
            chunk = _CHUNK_LINE.fullmatch(buffer[position : line_end + 2])
            if chunk is None:
                raise Malformed(f"bad chunk size line {buffer[position : line_end + 2][:40]!r}")
            size = int(chunk.group(1), 16)
            data_start = line_end + 2
            if len(buffer) < data_start + size + 2:
                if closed:
                    raise Malformed("connection closed in the middle of a chunk")
                return None
            if buffer[data_start + size : data_start + size + 2] != b"\r\n":
                raise Malformed("chunk not followed by CRLF")
            if size == 0:
                response.body = b"".join(body)
                return response, data_start + 2
            body.append(buffer[data_start : data_start + size])
            position = data_start + size + 2
    # Delimited by the end of the connection: only allowed with "connection: close".
    if (response.header(b"connection") or b"").lower() != b"close":
        raise Malformed(f"response without framing on a persistent connection: {headers}")
    if not closed:
        return None
    response.body = buffer[start:]
    return response, len(buffer)


# ---------------------------------------------------------------------------------------------------
# One HTTP case against a server


@dataclass
class Outcome:
    responses: list[Response]
    calls: list[Call]
    closed: bool
    reset: bool
    raw: bytes
    sock: socket.socket | None = None


def _connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _send_pieces(sock: socket.socket, pieces: list[bytes], pause: float) -> bool:
    """Send the pieces (pausing between them); False when the server closed first."""
    for index, piece in enumerate(pieces):
        try:
            sock.sendall(piece)
        except OSError:
            return False
        if pause and index < len(pieces) - 1:
            time.sleep(pause)
    return True


def _settled(
    app: FuzzApp, local_port: int, known: int, responses: list[Response], calls: list[Call]
) -> list[Call]:
    """The app's calls once each answered one has marked itself done (bounded): the app marks a call
    after its last send, so the client can read the answer first when both really run at once."""
    answered = sum(1 for r in responses if r.status == 200)
    deadline = time.monotonic() + 1.0
    while sum(1 for c in calls if c.state == "done") < answered and time.monotonic() < deadline:
        time.sleep(0.005)
        calls = app.calls_for(local_port)[known:]
    return calls


def http_exchange(
    port: int,
    pieces: list[bytes],
    app: FuzzApp,
    *,
    expect: int | None = None,
    idle: float = 0.1,
    deadline: float = 5.0,
    pause: float = 0.0005,
    keep_open: bool = False,
    sock: socket.socket | None = None,
) -> Outcome:
    """Send ``pieces`` on a new connection and read what comes back until: the server closes, or
    ``expect`` responses arrived, or nothing came for ``idle`` seconds while the app is quiet (every
    call answered, or waiting for more body). Raises :class:`Finding` when nothing settles in time."""
    if sock is None:
        sock = _connect(port, deadline)
    local_port = sock.getsockname()[1]
    known = len(app.calls.get(local_port, ()))
    _send_pieces(sock, pieces, pause)
    buffer = b""
    responses: list[Response] = []
    closed = reset = False
    give_up = time.monotonic() + deadline
    last_data = time.monotonic()
    try:
        while True:
            calls = app.calls_for(local_port)[known:]
            finals = [r for r in responses if r.status >= 200]
            final_calls = calls
            if expect is not None and len(finals) >= expect:
                break
            now = time.monotonic()
            if now > give_up:
                raise Finding(
                    f"no progress after {deadline} s: {len(finals)} responses, calls "
                    f"{[(c.id, c.state) for c in calls]}, buffer {buffer[:200]!r}"
                )
            if closed:
                final_calls = app.calls_for(local_port)[known:]
                break
            answered = sum(1 for c in calls if c.state == "done")
            quiet = all(c.state != "receiving" or c is calls[-1] for c in calls)
            # A response that announced "connection: close" is followed by the close: wait for it up
            # to the deadline (on a loaded machine it can come later than ``idle``), so that a server
            # that leaves the connection open is still found, as "no progress".
            closing = bool(finals) and (finals[-1].header(b"connection") or b"").lower() == b"close"
            settled = quiet and answered <= len(finals) and not closing
            if expect is None and now - last_data > idle and settled:
                final_calls = calls
                break
            sock.settimeout(0.02)
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                chunk = None
            except ConnectionResetError:
                closed = reset = True
                chunk = b""
            if chunk == b"":
                closed = True
            elif chunk:
                buffer += chunk
                last_data = time.monotonic()
            calls = app.calls_for(local_port)[known:]  # an app call is recorded before its answer is sent
            while buffer:
                index = sum(1 for r in responses if r.status >= 200)
                method = calls[index].method if index < len(calls) else "GET"
                parsed = parse_response(buffer, method, closed and not reset)
                if parsed is None:
                    break
                response, size = parsed
                responses.append(response)
                buffer = buffer[size:]
                calls = app.calls_for(local_port)[known:]
        if buffer and not reset:
            parse_response(buffer, "GET", True)  # raises: bytes that are no response
        final_calls = _settled(app, local_port, known, responses, final_calls)
        outcome = Outcome(responses, final_calls, closed, reset, buffer)
        if keep_open and not closed:
            outcome.sock = sock
            sock = None  # type: ignore[assignment]
        return outcome
    finally:
        if sock is not None:
            sock.close()


def check_outcome(outcome: Outcome) -> None:
    """The invariants for any input: answers are the app's (each call once, in order) or one final
    rejection after which the connection is closed."""
    finals = [r for r in outcome.responses if r.status >= 200]
    for response in outcome.responses:
        if response.status < 200 and response.status != 100:
            raise Finding(f"unexpected interim status {response.status}")
    for index, response in enumerate(finals):
        if response.status in REJECTIONS:
            if index != len(finals) - 1:
                raise Finding(f"a response after the rejection {response.status}")
            if (response.header(b"connection") or b"").lower() != b"close":
                raise Finding(f"rejection {response.status} without connection: close")
            if not outcome.closed:
                raise Finding(f"connection left open after the rejection {response.status}")
        elif response.status != 200:
            raise Finding(f"unexpected status {response.status}: {response.body[:200]!r}")
    answered = [r.header(b"x-call") for r in finals if r.status == 200]
    done = [b"%d" % c.id for c in outcome.calls if c.state == "done"]
    if outcome.reset:  # the reset may have destroyed responses the server wrote: a prefix is enough
        if answered != done[: len(answered)]:
            raise Finding(f"responses {answered} are not the app calls {done}")
    elif answered != done:
        raise Finding(f"responses {answered} do not match the app calls {done} (each call answered once)")
    if len({c.id for c in outcome.calls}) != len(outcome.calls):
        raise Finding("an app call recorded twice")
    disconnected = [c for c in outcome.calls if c.state == "disconnected"]
    if len(disconnected) > 1 or (disconnected and not outcome.closed):
        raise Finding(f"calls cut by a disconnect: {disconnected}")


def check_pipeline(outcome: Outcome, pipeline: list[Request]) -> None:
    """A valid pipeline: every request reached the app exactly once, in order, intact, and was answered."""
    check_outcome(outcome)
    finals = [r for r in outcome.responses if r.status >= 200]
    if len(outcome.calls) != len(pipeline) or len(finals) != len(pipeline):
        raise Finding(
            f"{len(pipeline)} requests sent, {len(outcome.calls)} app calls, {len(finals)} responses: "
            f"{[r.status for r in finals]}"
        )
    for request, call, response in zip(pipeline, outcome.calls, finals, strict=True):
        if response.status != 200:
            raise Finding(f"valid request answered {response.status}: {response.body[:200]!r}")
        if (call.method, call.path, call.query.decode("latin-1")) != (
            request.method,
            _unquote(request.path),
            request.query,
        ):
            raise Finding(
                f"app saw {call.method} {call.path}?{call.query!r} for {request.method} {request.target()}"
            )
        if call.body != request.body:
            raise Finding(f"app got a body of {len(call.body)} bytes instead of {len(request.body)}")
        received = [(name, value) for name, value in call.headers if name.startswith(b"x-")]
        sent = [(name.lower(), value.strip(b" \t")) for name, value in request.headers]
        if received != sent:
            raise Finding(f"app saw headers {received} for {sent}")
        expected_body = b"" if request.method == "HEAD" else request.body
        if response.body != expected_body:
            raise Finding("response body is not the echo of the request body")


def _unquote(path: str) -> str:
    from urllib.parse import unquote

    return unquote(path) if "%" in path else path


class FuzzedServer:
    """A server under fuzzing, and its health check after each case: nothing logged at ERROR, a
    normal exchange (``probe``) still served, the server thread alive."""

    def __init__(self, running: Any, log: ErrorLog, name: str, probe: Callable[[], None]) -> None:
        self.running = running
        self.port: int = running.port
        self.log = log
        self.name = name
        self.probe = probe

    def check_health(self) -> None:
        for step in (None, self.probe):
            if step is not None:
                step()
            errors = self.log.take()
            if errors:
                raise Finding(f"the server logged errors: {errors}")
        if not self.running.thread.is_alive():
            raise Finding("the server thread died")


def probe_http(port: int, app: FuzzApp, timeout: float = 5.0) -> None:
    """The server still serves a normal request on a new connection."""
    outcome = http_exchange(
        port, [b"GET /probe?stream HTTP/1.1\r\nHost: probe\r\n\r\n"], app, expect=1, deadline=timeout
    )
    if [r.status for r in outcome.responses] != [200]:
        raise Finding(f"the server no longer serves normal requests: {outcome.responses}")


# ---------------------------------------------------------------------------------------------------
# WebSocket frames

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def ws_frame(
    opcode: int, payload: bytes, *, fin: bool = True, key: bytes = b"\x00\x00\x00\x00", rsv: int = 0
) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if any(key) else payload
    return head + key + masked


@dataclass
class WSMessage:
    text: bool
    payload: bytes
    fragments: list[int]  # sizes of the fragments (sum = len(payload))
    controls: list[tuple[int, int, bytes]]  # (after fragment index, opcode, payload): pings and pongs


@st.composite
def ws_messages(draw: Any) -> WSMessage:
    text = draw(st.booleans())
    if text:
        payload = draw(st.text(max_size=200)).encode()
    else:
        big = draw(st.integers(0, 20)) == 0
        payload = draw(st.binary(min_size=126, max_size=70000)) if big else draw(st.binary(max_size=200))
    count = draw(st.integers(1, 4))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), min_size=count - 1, max_size=count - 1)))
    bounds = [0, *cuts, len(payload)]
    fragments = [bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)]
    controls = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(fragments) - 1), st.sampled_from([PING, PONG]), st.binary(max_size=125)
            ),
            max_size=2,
        )
    )
    return WSMessage(text, payload, fragments, controls)


def encode_messages(messages: list[WSMessage], keys: Iterator[bytes], close: bool = True) -> bytes:
    out = []
    for message in messages:
        offset = 0
        for index, size in enumerate(message.fragments):
            opcode = (TEXT if message.text else BINARY) if index == 0 else CONT
            fin = index == len(message.fragments) - 1
            out.append(ws_frame(opcode, message.payload[offset : offset + size], fin=fin, key=next(keys)))
            offset += size
            for after, control, payload in message.controls:
                if after == index and not fin:
                    out.append(ws_frame(control, payload, key=next(keys)))
        for after, control, payload in message.controls:
            if after >= len(message.fragments) - 1:
                out.append(ws_frame(control, payload, key=next(keys)))
    if close:
        out.append(ws_frame(CLOSE, struct.pack("!H", 1000) + b"bye", key=next(keys)))
    return b"".join(out)


def parse_server_frames(buffer: bytes) -> tuple[list[tuple[bool, int, bytes]], bytes]:
    """Complete server frames (fin, opcode, payload) at the start of ``buffer``, and the rest."""
    frames = []
    while len(buffer) >= 2:
        first, second = buffer[0], buffer[1]
        fin, rsv, opcode = bool(first & 0x80), first & 0x70, first & 0x0F
        if second & 0x80:
            raise Malformed("masked server frame")
        if rsv:
            raise Malformed("reserved bits set in a server frame")
        if opcode not in (CONT, TEXT, BINARY, CLOSE, PING, PONG):
            raise Malformed(f"server frame with opcode {opcode}")
        size, start = second & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            (size,) = struct.unpack("!H", buffer[2:4])
            start = 4
        elif size == 127:
            if len(buffer) < 10:
                break
            (size,) = struct.unpack("!Q", buffer[2:10])
            start = 10
        if opcode >= CLOSE and (not fin or size > 125):
            raise Malformed("fragmented or oversized server control frame")
        if len(buffer) < start + size:
            break
        payload = buffer[start : start + size]
        if opcode == CLOSE:
            if len(payload) == 1:
                raise Malformed("close frame with a 1-byte payload")
            if payload:
                (code,) = struct.unpack("!H", payload[:2])
                if code not in VALID_CLOSE_CODES and not 3000 <= code <= 4999:  # 3000-4999: apps, private
                    raise Malformed(f"server close code {code}")
                try:
                    payload[2:].decode()
                except UnicodeDecodeError:
                    raise Malformed("close reason not UTF-8") from None
        frames.append((fin, opcode, payload))
        buffer = buffer[start + size :]
    return frames, buffer


def ws_handshake(port: int, timeout: float = 5.0) -> tuple[socket.socket, bytes]:
    """Open a WebSocket (no extensions); the socket and any frame bytes already received."""
    sock = _connect(port, timeout)
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key
    )
    buffer = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buffer:
        if time.monotonic() > deadline:
            sock.close()
            raise Finding(f"no handshake answer: {buffer[:200]!r}")
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise Finding(f"connection closed during the handshake: {buffer[:200]!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        sock.close()
        raise Finding(f"handshake refused: {head[:200]!r}")
    return sock, rest


@dataclass
class WSOutcome:
    frames: list[tuple[bool, int, bytes]]
    closed: bool


def ws_exchange(
    port: int,
    pieces: list[bytes],
    *,
    until_close: bool,
    idle: float = 0.15,
    deadline: float = 5.0,
    expect_messages: int | None = None,
    close_frame: bytes = b"",
) -> WSOutcome:
    """Send frame bytes after a handshake; read server frames until EOF (or ``idle`` when not
    ``until_close``). With ``expect_messages``, ``close_frame`` is sent once that many data messages
    came back (a close sent earlier may rightly cut echoes still on their way). After the server's
    close frame only the end of the connection may follow."""
    sock, buffer = ws_handshake(port)
    try:
        _send_pieces(sock, pieces, 0.0005)
        frames: list[tuple[bool, int, bytes]] = []
        closed = False
        give_up = time.monotonic() + deadline
        last_data = time.monotonic()
        close_sent = expect_messages is None
        while not closed:
            if not close_sent and len(ws_data_messages(frames)) >= (expect_messages or 0):
                _send_pieces(sock, [close_frame], 0)
                close_sent = True
            now = time.monotonic()
            if now > give_up:
                raise Finding(f"WebSocket connection still open after {deadline} s; frames {frames[-3:]}")
            if not until_close and now - last_data > idle:
                break
            sock.settimeout(0.02)
            try:
                chunk = sock.recv(262144)
            except TimeoutError:
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed = True
            else:
                last_data = time.monotonic()
                buffer += chunk
            new, buffer = parse_server_frames(buffer)
            for frame in new:
                if frames and frames[-1][1] == CLOSE:
                    raise Malformed(f"a frame after the server's close frame: {frame[:2]}")
                frames.append(frame)
        if closed and buffer:
            raise Malformed(f"connection closed in the middle of a server frame: {buffer[:40]!r}")
        return WSOutcome(frames, closed)
    finally:
        sock.close()


def ws_data_messages(frames: list[tuple[bool, int, bytes]]) -> list[tuple[int, bytes]]:
    """The complete data messages among server frames (opcode of the first frame, payload)."""
    messages = []
    current: list[bytes] = []
    opcode = 0
    for fin, frame_opcode, payload in frames:
        if frame_opcode in (TEXT, BINARY, CONT):
            if frame_opcode != CONT:
                if current:
                    raise Malformed("new data frame before the previous message ended")
                opcode = frame_opcode
            elif not current and not opcode:
                raise Malformed("continuation frame without a message")
            current.append(payload)
            if fin:
                messages.append((opcode, b"".join(current)))
                current = []
                opcode = 0
    return messages


def probe_ws(port: int) -> None:
    """A new WebSocket still gets its message echoed."""
    keys = iter(lambda: os.urandom(4), None)
    message = encode_messages([WSMessage(True, b"probe", [5], [])], keys, close=False)
    close = ws_frame(CLOSE, struct.pack("!H", 1000), key=os.urandom(4))
    outcome = ws_exchange(port, [message], until_close=True, expect_messages=1, close_frame=close)
    if ws_data_messages(outcome.frames) != [(TEXT, b"probe")]:
        raise Finding(f"the WebSocket server no longer echoes: {outcome.frames}")


def random_keys(seed: bytes) -> Iterator[bytes]:
    """Deterministic masking keys (derived from the example, so failures replay)."""
    counter = 0
    while True:
        counter += 1
        value = (
            int.from_bytes(seed.ljust(4, b"\x01")[:4], "big") * 2654435761 + counter * 40503
        ) & 0xFFFFFFFF
        yield struct.pack("!I", value or 1)


def running_loop_tasks() -> int:  # pragma: no cover - debugging aid
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0
