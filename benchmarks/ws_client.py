"""Small WebSocket load generator: N connections, each echoing small messages.

Each connection runs a closed loop: send one message, wait for its echo, send the
next, until the deadline.  The WebSocket protocol itself (opening handshake,
framing, masking, closing handshake) is done by the ``websockets`` package's
client protocol (``websockets.client.ClientProtocol``, its sans-I/O layer),
driven from a plain ``asyncio.Protocol``.  That keeps the per-message cost of
the client low: the load generator gets a single CPU, and a client slower than
the server would measure itself instead of the server.

The result is printed as one JSON object on stdout::

    {"messages": ..., "seconds": ..., "messages_per_s": ..., "p50_ms": ..., "p99_ms": ...,
     "connections": ..., "errors": ..., "mismatches": ..., "client_cpu_pct": ...}

``client_cpu_pct`` is the client's own CPU use during the measured window: near
100 % means the client, not the server, set the pace.

With ``--deflate`` the client offers ``permessage-deflate; client_max_window_bits``, the offer every
Chromium browser makes, and once it is accepted it sends every message compressed, as Chromium does,
and inflates the replies (with zlib-ng when installed, so the client stays cheaper than the server).
``--message json1k`` sends about 1 KiB of JSON (varied keys and values) instead of ``--size`` bytes.

Usage::

    python benchmarks/ws_client.py ws://127.0.0.1:8000/ --connections 64 --duration 10
    python benchmarks/ws_client.py ws://127.0.0.1:8000/ --deflate --message json1k

Everything is bounded: the opening of the connections, each reply, and the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from typing import Any, cast

try:
    from zlib_ng import zlib_ng as zlib
except ImportError:  # pragma: no cover - the standard zlib, slower
    import zlib  # type: ignore[no-redef]

try:
    from websockets.client import ClientProtocol
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri
except ImportError:  # pragma: no cover - websockets too old or missing
    print("ws_client: the 'websockets' package (>= 13) is required", file=sys.stderr)
    raise SystemExit(2) from None

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        return bytes(byte ^ mask[i % 4] for i, byte in enumerate(data))


REPLY_TIMEOUT = 5.0
TAIL = b"\x00\x00\xff\xff"


def json_message(size: int = 1024) -> bytes:
    """Valid JSON of at most ``size`` bytes (1,000 to 1,024 by default) as a chat or a dashboard sends
    it: varied keys and values, so it compresses as such JSON does, not as one repeated byte."""
    items: list[dict[str, object]] = []
    while True:
        i = len(items)
        item = {
            "id": 1000 + i,
            "user": f"user-{i * 7919 % 1000}",
            "score": i * 37.5 % 101,
            "online": i % 3 == 0,
        }
        if len(json.dumps({"type": "update", "items": [*items, item]})) > size:
            return json.dumps({"type": "update", "items": items}).encode()
        items.append(item)


MESSAGES = {"hello": b"Hello, World!", "json1k": json_message()}


class Shared:
    """State shared by all connections of one run."""

    def __init__(
        self,
        payload: bytes,
        depth: int,
        start_at: float,
        deadline: float,
        prebuilt: bool = True,
        deflate: bool = False,
    ) -> None:
        self.payload = payload
        self.deflate = deflate  # offer permessage-deflate as Chromium does, and compress as it does
        self.extensions: set[str] = set()
        # With prebuilt frames, data frames bypass the client protocol after the handshake: each
        # connection sends one masked frame built once and compares the echo byte for byte, so the
        # client costs far less per message than the server and the figure measures the server.
        self.prebuilt = prebuilt
        self.echo_frame = _frame_head(len(payload), masked=False) + payload
        self.depth = depth  # messages in flight per connection
        self.start_at = start_at  # loop.time() at which measuring starts
        self.deadline = deadline  # loop.time() after which no new message is sent
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""
        self.mismatches = 0
        self.opened = 0


class EchoConnection(asyncio.Protocol):
    """One client connection doing send/receive ping-pong until the deadline."""

    def __init__(self, url: str, shared: Shared, loop: asyncio.AbstractEventLoop) -> None:
        factories = [ClientPerMessageDeflateFactory(client_max_window_bits=True)] if shared.deflate else None
        self.ws = ClientProtocol(parse_uri(url), extensions=factories, max_size=2**20)
        self.shared = shared
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.in_flight: deque[float] = deque()
        self.last_reply = 0.0
        self.closing = False
        self.watchdog: asyncio.TimerHandle | None = None
        key = os.urandom(4)
        masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(shared.payload))
        self.out_frame = _frame_head(len(shared.payload), masked=True) + key + masked
        self.fast = False  # data frames read and written directly (see Shared.prebuilt)
        self.rbuf = b""
        self.compressor: Any = None  # permessage-deflate, once accepted
        self.decompressor: Any = None
        self.flush_mode = 0
        self.window = 15
        self.remote_no_context_takeover = False
        self.frames: dict[bytes, bytes] = {}  # compressed payload -> masked frame, for repeated messages

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.ws.send_request(self.ws.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.fast and self.compressor is not None:
            data = self._read_compressed(data)
            if not data:
                return
        elif self.fast:
            buffer = self.rbuf + data if self.rbuf else data
            expected = self.shared.echo_frame
            size = len(expected)
            position = 0
            while len(buffer) - position >= size:
                if buffer[position : position + size] != expected:
                    # Not the echo (a ping, a close...): the client protocol takes over from here.
                    self.fast = False
                    data = buffer[position:]
                    break
                position += size
                self._on_echo_payload(self.shared.payload)
            else:
                self.rbuf = buffer[position:]
                return
            self.rbuf = b""
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Response):
                if event.status_code != 101 and not self.opened.done():
                    self.opened.set_exception(ConnectionError(f"handshake answered {event.status_code}"))
                elif not self.opened.done():
                    self.shared.opened += 1
                    self.opened.set_result(None)
                    self.loop.call_at(self.shared.start_at, self._start)
                    self.fast = self.shared.prebuilt
                    self._start_deflate(event.headers.get("Sec-WebSocket-Extensions", ""))
                    self.watchdog = self.loop.call_later(0.5, self._check_stalled)
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self._on_echo(event)
        self._flush()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.watchdog:
            self.watchdog.cancel()
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"closed during the handshake: {exc}"))
        if self.in_flight and not self.closing:
            self.shared.errors += 1  # lost with a message in flight
        if not self.closed.done():
            self.closed.set_result(None)

    # -- echo loop
    def _start(self) -> None:
        for _ in range(self.shared.depth):
            self._send_next()

    def _on_echo(self, frame: Frame) -> None:
        self._on_echo_payload(frame.data)

    def _on_echo_payload(self, data: bytes) -> None:
        if not self.in_flight:
            return
        now = time.perf_counter()
        self.shared.latencies.append(now - self.in_flight.popleft())
        if data != self.shared.payload:
            self.shared.mismatches += 1
        self.last_reply = now
        self._send_next()

    def _send_next(self) -> None:
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        if self.loop.time() >= self.shared.deadline:
            if not self.in_flight:
                self.close()
            return
        self.in_flight.append(time.perf_counter())
        if self.fast and self.compressor is not None:
            compressed = self.compressor.compress(self.shared.payload) + self.compressor.flush(
                self.flush_mode
            )
            frame = self.frames.get(compressed)
            if frame is None:
                key = os.urandom(4)
                body = compressed[:-4]
                frame = _frame_head(len(body), masked=True, first=0xC1) + key + apply_mask(body, key)
                if len(self.frames) < 16:
                    self.frames[compressed] = frame
            self.transport.write(frame)
            return
        if self.fast:
            self.transport.write(self.out_frame)
            return
        self.ws.send_text(self.shared.payload)
        self._flush()

    def _start_deflate(self, accepted: str) -> None:
        """Once permessage-deflate is accepted: this connection's own compressor and decompressor,
        with the parameters the server answered."""
        extensions = [e for e in self.ws.extensions if isinstance(e, PerMessageDeflate)]
        self.shared.extensions.add(accepted or "none")
        if not extensions or not self.fast:
            return
        extension = extensions[0]
        self.window = -max(9, extension.remote_max_window_bits or 15)
        self.decompressor = zlib.decompressobj(self.window)
        self.compressor = zlib.compressobj(6, zlib.DEFLATED, -max(9, extension.local_max_window_bits or 15))
        self.flush_mode = zlib.Z_FULL_FLUSH if extension.local_no_context_takeover else zlib.Z_SYNC_FLUSH
        self.remote_no_context_takeover = bool(extension.remote_no_context_takeover)

    def _read_compressed(self, data: bytes) -> bytes:
        """Read whole data frames (compressed or not) and answer pings; return the bytes from the first
        other frame on (handed to the client protocol), or b"" when all was read."""
        buffer = self.rbuf + data if self.rbuf else data
        position = 0
        size = len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                header = 10
            end = position + header + length
            if end > size:
                break
            payload = buffer[position + header : end]
            if first in (0xC1, 0xC2):
                if self.remote_no_context_takeover:
                    self.decompressor = zlib.decompressobj(self.window)
                self._on_echo_payload(self.decompressor.decompress(payload + TAIL))
            elif first in (0x81, 0x82):
                self._on_echo_payload(payload)
            elif first == 0x89:  # a ping: the pong, masked
                key = os.urandom(4)
                assert self.transport is not None
                self.transport.write(bytes((0x8A, 0x80 | length)) + key + apply_mask(payload, key))
            elif first != 0x8A:
                self.fast = False
                self.rbuf = b""
                return buffer[position:]
            position = end
        self.rbuf = buffer[position:]
        return b""

    def _check_stalled(self) -> None:
        """Watchdog: a connection with a message unanswered for REPLY_TIMEOUT is aborted."""
        if self.closing:
            return
        if self.in_flight and time.perf_counter() - max(self.last_reply, self.in_flight[0]) > REPLY_TIMEOUT:
            self.shared.errors += 1
            self.abort()
            return
        if self.loop.time() >= self.shared.deadline and not self.in_flight:
            self.close()
        self.watchdog = self.loop.call_later(0.5, self._check_stalled)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.fast = False
        try:
            self.ws.send_close(1000)
            self._flush()
        except Exception:  # the peer already went away
            self.abort()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        chunks = self.ws.data_to_send()
        if chunks:
            self.transport.write(b"".join(chunks))
        if self.ws.close_expected() and not self.transport.is_closing():
            # Closing handshake finished: the client may close TCP after a grace period.
            self.loop.call_later(1.0, self.abort)


def _frame_head(size: int, masked: bool, first: int = 0x81) -> bytes:
    """The header of a final text frame of ``size`` bytes (RFC 6455 section 5.2); ``first`` 0xC1 for a
    compressed one."""
    mask_bit = 0x80 if masked else 0
    if size < 126:
        return bytes((first, mask_bit | size))
    if size < 65536:
        return bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    return bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(
    url: str,
    connections: int,
    duration: float,
    size: int,
    ramp: float,
    depth: int = 1,
    prebuilt: bool = True,
    deflate: bool = False,
    message: str | None = None,
) -> dict[str, float | int | str]:
    loop = asyncio.get_running_loop()
    uri = parse_uri(url)
    payload = MESSAGES[message] if message else b"m" * size
    shared = Shared(payload, depth, loop.time() + ramp, loop.time() + ramp + duration, prebuilt, deflate)
    conns: list[EchoConnection] = []

    async def open_one() -> None:
        conn = EchoConnection(url, shared, loop)
        conns.append(conn)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: conn, uri.host, uri.port), timeout=ramp + 4)
            await asyncio.wait_for(conn.opened, timeout=ramp + 4)
        except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
            shared.errors += 1
            shared.first_error = shared.first_error or f"{type(exc).__name__}: {exc}"[:300]
            conn.abort()

    await asyncio.wait_for(asyncio.gather(*(open_one() for _ in range(connections))), timeout=ramp + 10)
    # The run ends by itself at the deadline; wait for it (bounded) plus the closing handshakes.
    await asyncio.sleep(max(0.0, shared.start_at - loop.time()))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(max(0.0, shared.deadline - loop.time()))
    cpu_pct = 100 * (time.process_time() - cpu0) / max(1e-9, time.perf_counter() - wall0)
    pending = [c.closed for c in conns if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=REPLY_TIMEOUT + 3)
    for c in conns:
        if not c.closed.done():
            c.abort()
    lat = sorted(shared.latencies)
    return {
        "messages": len(lat),
        "seconds": duration,
        "messages_per_s": len(lat) / duration if duration > 0 else 0.0,
        "p50_ms": _percentile(lat, 50) * 1000,
        "p99_ms": _percentile(lat, 99) * 1000,
        "connections": shared.opened,
        "errors": shared.errors,
        "mismatches": shared.mismatches,
        "client_cpu_pct": round(cpu_pct, 1),
        "first_error": shared.first_error,
        "message_bytes": len(payload),
        "extensions": " | ".join(sorted(shared.extensions)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=32, help="message size in bytes (default 32)")
    parser.add_argument("--ramp", type=float, default=1.0, help="seconds allowed for all connections to open")
    parser.add_argument(
        "--depth", type=int, default=1, help="messages in flight per connection (default 1: strict ping-pong)"
    )
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument(
        "--parse-frames",
        action="store_true",
        help="parse and build every frame with the websockets client protocol (slower client)",
    )
    parser.add_argument(
        "--deflate", action="store_true", help="offer permessage-deflate as Chromium does, send compressed"
    )
    parser.add_argument("--message", choices=sorted(MESSAGES), help="a fixed message in place of --size")
    args = parser.parse_args(argv)

    coro = run(
        args.url,
        args.connections,
        args.duration,
        args.size,
        args.ramp,
        max(1, args.depth),
        not args.parse_frames,
        args.deflate,
        args.message,
    )
    result: dict[str, float | int | str]
    try:
        if args.no_uvloop:
            raise ImportError
        import uvloop
    except ImportError:
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result))
    return 0 if result["messages"] != 0 else 1


if __name__ == "__main__":
    sys.exit(main())
