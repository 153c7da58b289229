"""WebSockets over HTTP/2 (RFC 8441): extended CONNECT on a real server, raw HTTP/2 frames carrying
WebSocket frames, with both WebSocket engines."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests import apps
from tests.conftest import run_server
from tests.websockets.test_websockets_protocol import CLOSE, TEXT, WS_IMPLEMENTATIONS, ws_frame

pytest.importorskip("hyperframe")

from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame

from tests.http.h2_helpers import FrameReader, raw_connect


def connect_frame(stream_id: int, extra: list[tuple[bytes, bytes]] | None = None) -> bytes:
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/chat?room=1"),
        (b":authority", b"t"),
        (b"sec-websocket-version", b"13"),
        *(extra or []),
    ]
    return HeadersFrame(stream_id, Encoder().encode(fields), flags=["END_HEADERS"]).serialize()  # type: ignore[no-any-return]


def server_messages(frames: list[Any], stream_id: int = 1) -> bytes:
    return b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


def response_headers(frames: list[Any], decoder: Decoder) -> dict[bytes, bytes]:
    head = next(f for f in frames if isinstance(f, HeadersFrame))
    return dict(decoder.decode(head.data, raw=True))


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
def test_websocket_over_http2_echoes_and_closes(ws: str) -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scopes.append(scope)
            assert (await receive())["type"] == "websocket.connect"
            await apps.echo_messages(receive, send)
        else:
            await apps.hello(scope, receive, send)

    with run_server(app, http2=True, ws=ws) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        settings = reader.until(lambda fs: any(isinstance(f, SettingsFrame) and f.settings for f in fs))
        assert next(f for f in settings if isinstance(f, SettingsFrame)).settings.get(0x8) == 1
        sock.sendall(connect_frame(1, [(b"sec-websocket-protocol", b"chat")]))
        sock.sendall(DataFrame(1, ws_frame(TEXT, b"hello over h2")).serialize())
        reader.until(lambda fs: b"hello over h2" in server_messages(fs))
        headers = response_headers(reader.frames, Decoder())
        assert headers[b":status"] == b"200" and b"sec-websocket-accept" not in headers
        assert b"upgrade" not in headers and b"connection" not in headers
        assert server_messages(reader.frames)[:2] == bytes([0x80 | TEXT, len(b"hello over h2")])
        # The connection's other streams go on beside the WebSocket.
        request = Encoder().encode(
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")]
        )
        sock.sendall(HeadersFrame(3, request, flags=["END_HEADERS", "END_STREAM"]).serialize())
        reader.until(lambda fs: server_messages(fs, 3) == b"Hello, world!")
        sock.sendall(DataFrame(1, ws_frame(CLOSE, b"\x03\xe8")).serialize())
        frames = reader.until(
            lambda fs: any(
                isinstance(f, DataFrame) and f.stream_id == 1 and "END_STREAM" in f.flags for f in fs
            )
        )
        assert server_messages(frames)[-4:] == bytes([0x80 | CLOSE, 2]) + b"\x03\xe8"
        sock.close()
    scope = scopes[0]
    assert scope["http_version"] == "2" and scope["scheme"] == "ws" and scope["path"] == "/chat"
    assert scope["query_string"] == b"room=1" and scope["subprotocols"] == ["chat"]
    assert (b"sec-websocket-key", b"AAAAAAAAAAAAAAAAAAAAAA==") not in scope["headers"]


@pytest.mark.parametrize("ws", WS_IMPLEMENTATIONS)
def test_websocket_refused_by_the_app_gets_403_on_its_stream(ws: str) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.close"})

    with run_server(app, http2=True, ws=ws) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        sock.sendall(connect_frame(1))
        frames = reader.until(
            lambda fs: any("END_STREAM" in f.flags for f in fs if getattr(f, "stream_id", 0) == 1)
        )
        assert response_headers(frames, Decoder())[b":status"] == b"403"
        assert not any(isinstance(f, RstStreamFrame) for f in frames)
        sock.close()


def test_connect_without_websocket_support_is_not_served() -> None:
    with run_server(apps.hello, http2=True, ws="none") as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        settings = reader.until(lambda fs: any(isinstance(f, SettingsFrame) and f.settings for f in fs))
        assert 0x8 not in next(f for f in settings if isinstance(f, SettingsFrame)).settings
        sock.sendall(connect_frame(1))
        frames = reader.until(lambda fs: any(isinstance(f, RstStreamFrame) for f in fs))
        assert [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)] == [(1, 0x1)]
        sock.close()


def test_plain_connect_is_answered_501() -> None:
    with run_server(apps.hello, http2=True) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        fields = [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
        sock.sendall(HeadersFrame(1, Encoder().encode(fields), flags=["END_HEADERS"]).serialize())
        frames = reader.until(lambda fs: any(isinstance(f, HeadersFrame) for f in fs))
        assert response_headers(frames, Decoder())[b":status"] == b"501"
        sock.close()


def test_scope_json_is_unchanged_for_http_streams() -> None:
    """The WebSocket support leaves plain requests alone."""
    with run_server(apps.scope_json, http2=True) as server:
        sock = raw_connect(server.port)
        reader = FrameReader(sock)
        request = Encoder().encode(
            [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/s")]
        )
        sock.sendall(HeadersFrame(1, request, flags=["END_HEADERS", "END_STREAM"]).serialize())
        frames = reader.until(
            lambda fs: any(isinstance(f, DataFrame) and "END_STREAM" in f.flags for f in fs)
        )
        assert json.loads(server_messages(frames))["type"] == "http"
        sock.close()


def test_large_websocket_messages_both_ways_under_flow_control() -> None:
    """A 1 MiB message from the server: the client's 16 KiB window holds its frames until the client
    sends WINDOW_UPDATEs; a 200 KB message from the client, within the server's windows."""
    big = bytes(range(256)) * 4096
    upload = big[:200_000]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "bytes": b"%d" % len(message["bytes"])})
        await send({"type": "websocket.send", "bytes": big})
        await receive()

    with run_server(app, http2=True, ws_max_size=4 << 20) as server:
        sock = raw_connect(server.port, {0x4: 16384})
        reader = FrameReader(sock)
        sock.sendall(connect_frame(1))
        reader.until(lambda fs: any(isinstance(f, HeadersFrame) for f in fs))
        frame = ws_frame(0x2, upload)
        for start in range(0, len(frame), 16384):
            sock.sendall(DataFrame(1, frame[start : start + 16384]).serialize())
        expected = 2 + len(b"%d" % len(upload)) + 10 + len(big)  # two frame heads (2 and 10 bytes)
        received = 0
        while received < expected:
            reader.until(lambda fs, have=received: len(server_messages(fs)) > have)
            data = len(server_messages(reader.frames)) - received
            received += data
            sock.sendall(WindowUpdateFrame(1, window_increment=data).serialize())
            sock.sendall(WindowUpdateFrame(0, window_increment=data).serialize())
        messages = server_messages(reader.frames)
        assert messages[2 : 2 + len(b"%d" % len(upload))] == b"%d" % len(upload)
        assert messages.endswith(big)
        sock.close()
