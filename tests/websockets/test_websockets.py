"""The ASGI WebSocket session against real servers on loopback, with both engines.

Clients are the ``websockets`` asyncio client, or raw sockets (:class:`RawClient`) where a test needs
to misbehave: not read, not answer pings, send bytes with the handshake.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, WebSocket, WebSocketException, status
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fulmen import Config
from tests.conftest import RunningServer, free_port, recv_all, run_server, wait_until
from tests.websockets.test_websockets_protocol import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    TEXT,
    WS_IMPLEMENTATIONS,
    RawClient,
    echo_app,
    ws_frame,
)


@pytest.fixture(params=WS_IMPLEMENTATIONS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(coro: Any, timeout: float = 15.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def session_of(server: RunningServer) -> Any:
    """The server's one open WebSocket session (the protocol object in ``server_state.connections``)."""
    from fulmen.websockets.session import WebSocketSession

    assert wait_until(
        lambda: any(isinstance(c, WebSocketSession) for c in server.server.server_state.connections)
    )
    return next(c for c in server.server.server_state.connections if isinstance(c, WebSocketSession))


def url(server: RunningServer, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- messages


def test_echo(ws_impl: str, http_impl: str, loop_impl: str) -> None:
    async def client(server: RunningServer) -> None:
        async with connect(url(server), max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01")
            assert await ws.recv() == b"\x00\x01"
            await ws.send(["frag", "men", "ted"])  # a fragmented message
            assert await ws.recv() == "fragmented"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big

    with run_server(echo_app, ws=ws_impl, http=http_impl, loop=loop_impl) as server:
        run(client(server))


def test_frames_sent_with_the_handshake(ws_impl: str, http_impl: str) -> None:
    """Bytes after the request head in the same packet reach the app once it accepts."""
    with run_server(echo_app, ws=ws_impl, http=http_impl) as server:
        raw = RawClient(server.port, extra=ws_frame(TEXT, b"early") + ws_frame(BINARY, b"bird"))
        assert raw.status == 101
        assert raw.recv_frame() == (TEXT, b"early", True)
        assert raw.recv_frame() == (BINARY, b"bird", True)
        raw.close()


def test_scope(ws_impl: str) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        assert await receive() == {"type": "websocket.connect"}
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    async def client(server: RunningServer) -> None:
        async with connect(url(server, "/chat%20room?a=1&b=2"), subprotocols=["one", "two"]) as ws:
            await ws.wait_closed()

    with run_server(app, ws=ws_impl, root_path="/base") as server:
        run(client(server))
    scope = scopes[0]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/base/chat room"
    assert scope["raw_path"] == b"/base/chat%20room"
    assert scope["root_path"] == "/base"
    assert scope["query_string"] == b"a=1&b=2"
    assert scope["subprotocols"] == ["one", "two"]
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert scope["http_version"] == "1.1"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["client"][0] == "127.0.0.1"
    assert scope["server"] == ("127.0.0.1", server.port)
    assert "method" not in scope
    headers = dict(scope["headers"])
    assert headers[b"upgrade"] == b"websocket"
    assert headers[b"sec-websocket-protocol"] == b"one, two"


def test_accept_with_subprotocol_and_headers(ws_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"x-custom", b"yes"), (b"set-cookie", b"a=1")]
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1], "headers": headers})
        await send({"type": "websocket.send", "text": "hi"})
        await receive()

    async def client(server: RunningServer) -> None:
        async with connect(url(server), subprotocols=["one", "two"]) as ws:
            assert ws.subprotocol == "two"
            assert ws.response is not None
            assert ws.response.headers["x-custom"] == "yes"
            assert ws.response.headers["set-cookie"] == "a=1"
            assert ws.response.headers["server"] == "fulmen"
            assert await ws.recv() == "hi"

    with run_server(app, ws=ws_impl) as server:
        run(client(server))


def test_app_closes_with_code_and_reason(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "done here"})
        seen.append(await receive())
        with pytest.raises(OSError):
            await send({"type": "websocket.send", "text": "too late"})
        seen.append({"raised": True})

    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "done here")

    with run_server(app, ws=ws_impl) as server:
        run(client(server))
        assert wait_until(lambda: len(seen) == 2)
    assert seen[0]["type"] == "websocket.disconnect"
    assert seen[0]["code"] == 4000


def test_client_close_reaches_the_app(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())
        seen.append(await receive())

    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            await ws.send("last words")
            await ws.close(4001, "bye now")

    with run_server(app, ws=ws_impl) as server:
        run(client(server))
        assert wait_until(lambda: len(seen) == 2)
    assert seen[0] == {"type": "websocket.receive", "text": "last words"}
    assert seen[1] == {"type": "websocket.disconnect", "code": 4001, "reason": "bye now"}


def test_lost_connection_is_1006(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    with run_server(app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 101
        raw.close()
        assert wait_until(lambda: bool(seen))
    assert seen[0]["type"] == "websocket.disconnect"
    assert seen[0]["code"] == 1006


@pytest.mark.parametrize("ending", ["raise", "return"])
def test_app_ending_after_accept_closes(ws_impl: str, ending: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if ending == "raise":
            raise RuntimeError("boom")

    with run_server(app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.recv_close() == (1011 if ending == "raise" else 1000)
        raw.send_frame(CLOSE, b"\x03\xe8")
        assert raw.wait_eof()
        raw.close()


def test_wss(ws_impl: str, loop_impl: str, tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    schemes: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        await echo_app(scope, receive, send)

    async def client(server: RunningServer) -> None:
        async with connect(f"wss://127.0.0.1:{server.port}/", ssl=context) as ws:
            await ws.send("secret")
            assert await ws.recv() == "secret"

    options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile), "loop": loop_impl}
    with run_server(app, ws=ws_impl, **options) as server:
        run(client(server))
    assert schemes == ["wss"]


# -- refusing the handshake


@pytest.mark.parametrize("refusal", ["close", "raise", "return"])
def test_refused_before_accept_is_403(ws_impl: str, http_impl: str, refusal: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        if refusal == "close":
            await send({"type": "websocket.close"})
        elif refusal == "raise":
            raise RuntimeError("no")

    with run_server(app, ws=ws_impl, http=http_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 403
        assert raw.wait_eof()
        raw.close()


def test_http_response_extension(ws_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        headers = [(b"content-type", b"text/plain"), (b"www-authenticate", b"Bearer")]
        await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": b"not ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"allowed"})

    with run_server(app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 401
        assert raw.response_headers[b"www-authenticate"] == b"Bearer"
        assert raw.response_headers[b"content-type"] == b"text/plain"
        assert raw.read_body() == b"not allowed"
        assert raw.eof
        raw.close()


BAD_HANDSHAKES = {
    "wrong version": b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 12\r\n",
    "missing key": b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
    "missing version": b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "no connection upgrade": b"Upgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
}


@pytest.mark.parametrize("case", list(BAD_HANDSHAKES))
def test_invalid_handshake_is_400(ws_impl: str, http_impl: str, case: str) -> None:
    called: list[bool] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        called.append(True)
        await echo_app(scope, receive, send)

    with run_server(app, ws=ws_impl, http=http_impl) as server:
        raw = RawClient(server.port, headers=BAD_HANDSHAKES[case])
        assert raw.status == 400
        assert raw.wait_eof()
        raw.close()
        good = RawClient(server.port)  # the server goes on serving
        assert good.status == 101
        good.close()
    assert called == [True]


# -- limits


def test_message_larger_than_max_size_closes_1009(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl, ws_max_size=1000) as server:
        raw = RawClient(server.port)
        raw.send_frame(BINARY, b"x" * 1000)
        assert raw.recv_frame() == (BINARY, b"x" * 1000, True)
        raw.send_frame(TEXT, b"x" * 1001)
        assert raw.recv_close() == 1009
        raw.close()

        raw = RawClient(server.port)  # the limit is on messages, not frames
        raw.send(b"".join(ws_frame(BINARY if i == 0 else CONT, b"x" * 400, fin=False) for i in range(3)))
        assert raw.recv_close() == 1009
        raw.close()


def test_max_queue_pauses_reading(ws_impl: str) -> None:
    """The app does not read: the server stops reading once ``--ws-max-queue`` messages wait."""
    release = threading.Event()
    received: list[int] = []
    count = 4000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        for _ in range(count):
            message = await receive()
            received.append(int(message["text"][:8]))

    with run_server(app, ws=ws_impl, ws_max_queue=4) as server:
        raw = RawClient(server.port)
        frames = b"".join(ws_frame(TEXT, b"%08d" % i + b"x" * 1016) for i in range(count))
        sender = threading.Thread(target=raw.send, args=(frames,), daemon=True)
        sender.start()
        session = session_of(server)
        assert wait_until(lambda: session.flow.read_paused)
        time.sleep(0.3)
        assert session.flow.read_paused
        assert len(session.queue) < 600  # at most one read's worth of frames, far from 4000
        assert sender.is_alive()  # the client is blocked: the server reads nothing more
        release.set()
        sender.join(10)
        assert wait_until(lambda: len(received) == count, 10)
        raw.close()
    assert received == list(range(count))


def test_slow_reader_keeps_memory_bounded(ws_impl: str, loop_impl: str) -> None:
    """The app sends 100 MB to a client that reads nothing: ``send`` blocks, memory stays flat."""
    chunk = b"x" * 65536
    total = 1600  # 100 MiB
    sent: list[int] = []
    outcome: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        try:
            for i in range(total):
                await send({"type": "websocket.send", "bytes": chunk})
                sent.append(i)
        except OSError:
            outcome.append("disconnected")
        else:
            outcome.append("finished")

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    with run_server(app, ws=ws_impl, loop=loop_impl) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(5)
        sock.connect(("127.0.0.1", server.port))
        before = rss()
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        peak = before
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            peak = max(peak, rss())
            time.sleep(0.05)
        assert len(sent) < 200, "send() should block while the client reads nothing"
        assert peak - before < 30 * 1024 * 1024
        sock.close()
        assert wait_until(lambda: bool(outcome))
    assert outcome == ["disconnected"]


def test_limit_concurrency_answers_503(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl, limit_concurrency=1) as server:
        first = RawClient(server.port)
        assert first.status == 101
        second = RawClient(server.port)
        assert second.status == 503
        second.close()
        first.close()


def test_handshake_counts_as_a_request(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 101
        assert server.server.server_state.total_requests == 1
        assert session_of(server) in server.server.server_state.connections
        raw.close()
        assert wait_until(lambda: not server.server.server_state.connections)


def test_limit_max_requests_counts_handshakes(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl, limit_max_requests=1) as server:
        raw = RawClient(server.port)
        assert raw.status == 101
        raw.close()
        assert wait_until(lambda: not server.thread.is_alive(), 5)


# -- keepalive


def test_no_pong_closes_1011(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    with run_server(app, ws=ws_impl, ws_ping_interval=0.1, ws_ping_timeout=0.2) as server:
        raw = RawClient(server.port)
        frame = raw.recv_frame(2)
        assert frame is not None and frame[0] == PING
        assert raw.recv_close(2) == 1011
        assert raw.wait_eof(2)
        raw.close()
        assert wait_until(lambda: bool(seen))
    assert seen[0]["code"] == 1011


def test_pongs_keep_the_connection_open(ws_impl: str) -> None:
    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            await asyncio.sleep(0.8)  # several ping intervals, each answered by the client
            await ws.send("still open")
            assert await ws.recv() == "still open"

    with run_server(echo_app, ws=ws_impl, ws_ping_interval=0.1, ws_ping_timeout=0.2) as server:
        run(client(server))


def test_a_slow_app_is_not_a_dead_peer(ws_impl: str) -> None:
    """While reading is paused for the app, an unread pong does not count as a missed pong."""
    release = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        while not release.is_set():
            await asyncio.sleep(0.01)
        await echo_app_loop(receive, send)

    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            for i in range(5):
                await ws.send(f"m{i}")
            await asyncio.sleep(0.8)  # several ping timeouts while the server reads nothing
            release.set()
            assert [await ws.recv() for _ in range(5)] == [f"m{i}" for i in range(5)]

    options = {"ws_ping_interval": 0.1, "ws_ping_timeout": 0.2, "ws_max_queue": 1}
    with run_server(app, ws=ws_impl, **options) as server:
        run(client(server))


async def echo_app_loop(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message["text"]})


# -- compression


@pytest.mark.parametrize("deflate", [True, False])
def test_per_message_deflate(ws_impl: str, deflate: bool) -> None:
    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            assert ws.response is not None
            offered = ws.response.headers.get("sec-websocket-extensions", "")
            assert ("permessage-deflate" in offered) is deflate
            text = "compressible " * 20000
            await ws.send(text)
            assert await ws.recv() == text
            await ws.send(["frag ", "mented"])
            assert await ws.recv() == "frag mented"

    with run_server(echo_app, ws=ws_impl, ws_per_message_deflate=deflate) as server:
        run(client(server))


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 9, "client_max_window_bits": 9},
        {"server_max_window_bits": 12, "client_max_window_bits": 10, "client_no_context_takeover": True},
    ],
    ids=["takeover", "no-takeover", "window-9", "window-12-10"],
)
def test_per_message_deflate_parameters(ws_impl: str, params: dict[str, Any]) -> None:
    """The websockets client with each parameter of RFC 7692: messages of every size, whole and
    fragmented, both ways, many in a row (so a context wrongly kept or dropped would show)."""
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

    async def client(server: RunningServer) -> None:
        factory = ClientPerMessageDeflateFactory(**params)
        async with connect(url(server), extensions=[factory], compression=None, max_size=None) as ws:
            assert ws.response is not None
            assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
            chunk = os.urandom(700).hex()
            for round in range(3):
                for text in ("hi", "x" * 200, json.dumps({"round": round, "chunk": chunk}), chunk * 40):
                    await ws.send(text)
                    assert await ws.recv() == text
                await ws.send([chunk[:300], "é" * 500, chunk])
                assert await ws.recv() == chunk[:300] + "é" * 500 + chunk

    with run_server(echo_app, ws=ws_impl, ws_compress_min_size=64) as server:
        run(client(server))


DEFLATE_OFFER = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
)


@pytest.mark.parametrize("min_size", [0, 128])
def test_small_messages_are_sent_uncompressed(ws_impl: str, min_size: int) -> None:
    """Under --ws-compress-min-size a message goes out plain (RSV1 clear), at or over it compressed;
    the client's frames may be either."""
    import zlib

    with run_server(echo_app, ws=ws_impl, ws_compress_min_size=min_size) as server:
        raw = RawClient(server.port, headers=DEFLATE_OFFER)
        assert raw.status == 101
        assert raw.response_headers[b"sec-websocket-extensions"] == b"permessage-deflate"
        inflater = zlib.decompressobj(-15)
        for size in (13, 127, 128, 1000):
            message = b"m" * size
            raw.send_frame(TEXT, message)
            opcode, payload, fin = raw.recv_frame() or (0, b"", False)
            assert (opcode, fin) == (TEXT, True)
            if size >= min_size:
                assert raw.last_rsv == 4
                assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message
            else:
                assert raw.last_rsv == 0
                assert payload == message
        raw.close()


def test_compressed_message_sent_with_the_handshake(ws_impl: str) -> None:
    import zlib

    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = compressor.compress(b"early " * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with run_server(echo_app, ws=ws_impl) as server:
        raw = RawClient(server.port, headers=DEFLATE_OFFER, extra=ws_frame(TEXT, data[:-4], rsv=4))
        assert raw.status == 101
        frame = raw.recv_frame()
        assert frame is not None and raw.last_rsv == 4
        assert zlib.decompressobj(-15).decompress(frame[1] + b"\x00\x00\xff\xff") == b"early " * 100
        raw.close()


# -- strictness


@pytest.mark.parametrize(
    ("violation", "code"),
    [
        (ws_frame(TEXT, b"bad", rsv=2), 1002),
        (ws_frame(0x5, b""), 1002),
        (ws_frame(CONT, b"lone"), 1002),
        (ws_frame(TEXT, b"\xff"), 1007),
    ],
    ids=["reserved-bits", "reserved-opcode", "continuation", "utf8"],
)
def test_messages_before_a_violation_are_delivered_first(ws_impl: str, violation: bytes, code: int) -> None:
    """The app gets (and echoes) what arrived before the bad frame; then the connection fails."""
    with run_server(echo_app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 101
        raw.send(ws_frame(TEXT, b"Hello") + ws_frame(TEXT, b"frag", fin=False) + ws_frame(CONT, b"ment"))
        raw.send(violation + ws_frame(PING, b"never answered"))
        assert raw.recv_frame() == (TEXT, b"Hello", True)
        assert raw.recv_frame() == (TEXT, b"fragment", True)
        frame = raw.recv_frame()
        assert frame is not None and frame[0] == CLOSE, frame
        assert int.from_bytes(frame[1][:2], "big") == code
        assert raw.wait_eof()
        raw.close()


def test_a_violation_waits_for_an_app_that_does_not_read_only_so_long(
    ws_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app that never takes its messages does not keep a failed connection open for ever."""

    from fulmen.websockets import session

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(2)

    monkeypatch.setattr(session, "CLOSE_TIMEOUT", 0.3)
    with run_server(app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        assert raw.status == 101
        raw.send(ws_frame(TEXT, b"queued") + ws_frame(TEXT, b"x", rsv=2))
        assert raw.recv_close(1.5) == 1002
        raw.close()


def test_invalid_utf8_fails_as_soon_as_it_arrives(ws_impl: str) -> None:
    """A text frame sent in pieces: the close comes after the bad bytes, before the frame's end."""
    valid, invalid, rest = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", b"\xf4\x90\x80\x80", b"edited"
    frame = ws_frame(TEXT, valid + invalid + rest)
    with run_server(echo_app, ws=ws_impl) as server:
        for pieces in (
            [frame[:17], frame[17:21]],
            [ws_frame(TEXT, valid, fin=False), ws_frame(CONT, invalid)],
        ):
            raw = RawClient(server.port)
            assert raw.status == 101
            raw.send(pieces[0])
            assert raw.recv_frame(0.3) is None  # nothing wrong yet
            raw.send(pieces[1])
            assert raw.recv_close(3) == 1007
            raw.close()


# -- shutdown


def test_shutdown_sends_1012(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        seen.append(await receive())

    async def client(server: RunningServer) -> None:
        async with connect(url(server)) as ws:
            server.server.should_exit = True
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1012

    with run_server(app, ws=ws_impl) as server:
        run(client(server))
        server.thread.join(5)
        assert not server.thread.is_alive()
    assert seen == [{"type": "websocket.disconnect", "code": 1012, "reason": ""}]


def test_shutdown_before_accept_answers_503(ws_impl: str) -> None:
    seen: list[dict[str, Any]] = []
    accepting = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        accepting.set()
        seen.append(await receive())  # the handshake is never answered by the app

    with run_server(app, ws=ws_impl) as server:
        sock = server.connect()
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert accepting.wait(5)
        server.stop()
        assert recv_all(sock).startswith(b"HTTP/1.1 503 ")
        sock.close()
    assert seen and seen[0]["type"] == "websocket.disconnect"


def test_http10_handshake_is_400(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                b"GET / HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert recv_all(sock).startswith(b"HTTP/1.1 400 ")


def test_shutdown_is_bounded_by_the_graceful_timeout(ws_impl: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await asyncio.sleep(60)  # ignores everything

    with run_server(app, ws=ws_impl, timeout_graceful_shutdown=0.5) as server:
        raw = RawClient(server.port)  # never answers the close frame
        assert raw.status == 101
        started = time.monotonic()
        server.stop(timeout=5)
        assert time.monotonic() - started < 3
        assert raw.recv_close() == 1012
        raw.close()


# -- access log


def test_access_log(ws_impl: str, caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
            return
        await echo_app(scope, receive, send)

    with caplog.at_level(logging.INFO, logger="fulmen.access"):
        with run_server(app, ws=ws_impl) as server:
            RawClient(server.port, path=b"/chat?room=1").close()
            RawClient(server.port, path=b"/no").close()
            assert wait_until(lambda: len([r for r in caplog.records if r.name == "fulmen.access"]) == 2)
    lines = [record.getMessage() for record in caplog.records if record.name == "fulmen.access"]
    assert any('"WebSocket /chat?room=1 HTTP/1.1" 101' in line for line in lines), lines
    assert any('"WebSocket /no HTTP/1.1" 403' in line for line in lines), lines
    assert all(line.startswith("127.0.0.1:") for line in lines)


def test_server_log_has_uvicorns_websocket_lines(ws_impl: str, caplog: pytest.LogCaptureFixture) -> None:
    """The lines uvicorn writes to its server log (``uvicorn.error``, here ``fulmen.error``), in its
    words, so that what reads uvicorn's logs reads fulmen's."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/no":
            await send({"type": "websocket.close"})
            return
        await echo_app(scope, receive, send)

    with caplog.at_level(logging.INFO, logger="fulmen.error"):
        with run_server(app, ws=ws_impl) as server:
            raw = RawClient(server.port, path=b"/chat?room=1")
            port = raw.sock.getsockname()[1]
            raw.close()
            RawClient(server.port, path=b"/no").close()
            assert wait_until(lambda: any("connection closed" in r.getMessage() for r in caplog.records))
    lines = [record.getMessage() for record in caplog.records if record.name == "fulmen.error"]
    accepted = lines.index(f'127.0.0.1:{port} - "WebSocket /chat?room=1" [accepted]')
    assert lines[accepted + 1] == "connection open"
    assert "connection closed" in lines[accepted + 2 :]
    refused = next(i for i, line in enumerate(lines) if line.endswith('"WebSocket /no" 403'))
    assert lines[refused + 1] == "connection rejected (403 Forbidden)"


# -- real applications


def test_starlette_websocket_route(ws_impl: str) -> None:
    disconnects: list[int] = []

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat.v1")
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"echo": data, "room": websocket.path_params["room"]})
        except WebSocketDisconnect as exc:
            disconnects.append(exc.code)

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("home")

    app = Starlette(routes=[Route("/", home), WebSocketRoute("/ws/{room}", chat)])

    async def client(server: RunningServer) -> None:
        async with connect(url(server, "/ws/lobby"), subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1"
            await ws.send(json.dumps({"n": 1}))
            assert json.loads(await ws.recv()) == {"echo": {"n": 1}, "room": "lobby"}
            await ws.close(1000)

    with run_server(app, ws=ws_impl) as server:
        run(client(server))
        assert httpx.get(server.url, timeout=5).text == "home"
        assert wait_until(lambda: disconnects == [1000])


def test_fastapi_websocket_endpoint(ws_impl: str) -> None:
    app = FastAPI()

    @app.websocket("/items/{item_id}")
    async def items(websocket: WebSocket, item_id: int, token: str | None = None) -> None:
        if token != "secret":
            raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"item {item_id}: {text}")
        await websocket.close(code=1000, reason="served")

    async def client(server: RunningServer) -> None:
        async with connect(url(server, "/items/7?token=secret")) as ws:
            await ws.send("hello")
            assert await ws.recv() == "item 7: hello"
            with pytest.raises(ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.reason == "served"
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url(server, "/items/7")):
                pass
        assert refused.value.response.status_code == 403

    with run_server(app, ws=ws_impl) as server:
        run(client(server))


# -- configuration


@pytest.mark.parametrize("reset", [False, True])
def test_contextvars_do_not_leak_between_connections(ws_impl: str, reset: bool) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(var.get())
        var.set(scope["path"])
        await echo_app(scope, receive, send)

    with run_server(app, ws=ws_impl, reset_contextvars=reset) as server:
        for path in (b"/one", b"/two"):
            raw = RawClient(server.port, path=path)
            assert raw.status == 101
            raw.close()
    assert seen == ["unset", "unset"]


def test_ws_option_selects_the_engine() -> None:
    from fulmen.websockets.websockets_impl import WebSocketProtocol
    from fulmen.websockets.wsproto_impl import WSProtocol

    for name, expected in [
        ("auto", WebSocketProtocol),
        ("websockets", WebSocketProtocol),
        ("wsproto", WSProtocol),
    ]:
        config = Config(echo_app, ws=name, log_config=None)
        config.load()
        assert config.ws_protocol_class is expected


def test_ping_frame_is_answered_while_fragmented(ws_impl: str) -> None:
    with run_server(echo_app, ws=ws_impl) as server:
        raw = RawClient(server.port)
        raw.send(ws_frame(TEXT, b"a", fin=False) + ws_frame(PING, b"!") + ws_frame(CONT, b"b"))
        frames = [raw.recv_frame(), raw.recv_frame()]
        assert frames[0] is not None and frames[0][0] == 0xA
        assert frames[1] == (TEXT, b"ab", True)
        raw.close()


def test_max_size_counts_utf8_bytes_not_characters(ws_impl: str) -> None:
    """500 three-byte characters are 1500 bytes: over a 1000-byte limit on both engines."""
    with run_server(echo_app, ws=ws_impl, ws_max_size=1000) as server:
        raw = RawClient(server.port)
        raw.send_frame(TEXT, ("€" * 500).encode())
        assert raw.recv_close(3) == 1009
        raw.close()


def _peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the server's peak RSS from /proc")
def test_compression_bomb_closes_1009_without_inflating_it(ws_impl: str, cli: Any) -> None:
    """A small compressed frame that inflates to 64 MiB, against --ws-max-size 1 MiB: closed with 1009,
    and the server's peak memory shows it was never inflated whole (both engines)."""
    import base64
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (64 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff") and len(bomb) < 100_000
    key = base64.b64encode(os.urandom(16))
    headers = (
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" % key
    )
    port = free_port()
    server = cli(
        "benchmarks.apps:websocket", "--port", str(port), "--ws", ws_impl, "--ws-max-size", str(1 << 20)
    )
    assert server.wait_for("running on", 20), server.output
    before = _peak_rss_kib(server.process.pid)
    raw = RawClient(port, headers=headers)
    assert raw.status == 101
    assert b"permessage-deflate" in raw.response_headers.get(b"sec-websocket-extensions", b"")
    raw.send_frame(BINARY, bomb[:-4], rsv=4)
    assert raw.recv_close(5) == 1009
    raw.close()
    assert _peak_rss_kib(server.process.pid) - before < 32 * 1024  # 64 MiB inflated would show
