"""The WebSocket session in memory, on both engines: the hand-over from the HTTP/1.1 connection, a
frame in, a frame out, and the HTTP answers to a handshake the application does not accept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.apps import echo_messages
from tests.memory import MemoryConnection, split_response
from tests.websockets.test_websockets_protocol import CLOSE, TEXT, WS_IMPLEMENTATIONS, ws_frame

HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
#: RFC 6455 section 1.3's example: the accept value of the key above.
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.fixture(params=WS_IMPLEMENTATIONS)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def serve(engine: str) -> Iterator[Any]:
    connections: list[MemoryConnection] = []

    def start(app: Any) -> MemoryConnection:
        connections.append(MemoryConnection(app, http="h11", ws=engine, ws_per_message_deflate=False))
        return connections[-1]

    yield start
    for connection in connections:
        connection.close()


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert (await receive())["type"] == "websocket.connect"
    await echo_messages(receive, send)


def answering(*messages: dict[str, Any]) -> Any:
    """A WebSocket application that answers the handshake with ``messages``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        for message in messages:
            await send(message)

    return app


def test_the_handshake_is_handed_over_and_accepted(serve: Any) -> None:
    connection = serve(echo)
    status, headers, rest = split_response(connection.feed(HANDSHAKE))
    assert status == 101 and rest == b""
    assert headers[b"sec-websocket-accept"] == ACCEPT and headers[b"upgrade"].lower() == b"websocket"
    assert type(connection.protocol).__module__.startswith("fulmen.websockets.")


def test_a_frame_in_and_its_echo_out(serve: Any) -> None:
    connection = serve(echo)
    connection.feed(HANDSHAKE)
    assert connection.feed(ws_frame(TEXT, b"hello")) == b"\x81\x05hello"
    assert connection.feed(ws_frame(CLOSE, b"\x03\xe8")) == b"\x88\x02\x03\xe8"  # the close echoed
    assert connection.transport.closed


def test_bytes_right_after_the_handshake_are_not_lost(serve: Any) -> None:
    connection = serve(echo)
    data = connection.feed(HANDSHAKE + ws_frame(TEXT, b"early"))
    assert data.endswith(b"\r\n\r\n\x81\x05early")


def test_the_application_answers_the_handshake_with_its_own_response(serve: Any) -> None:
    app = answering(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"WWW-Authenticate", b"Basic")],
        },
        {"type": "websocket.http.response.body", "body": b"who", "more_body": True},
        {"type": "websocket.http.response.body", "body": b" are you"},
    )
    connection = serve(app)
    data = connection.feed(HANDSHAKE)
    assert (
        data
        == b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic\r\nconnection: close\r\n\r\nwho are you"
    )
    assert connection.transport.closed


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.http.response.start", "status": 99, "headers": []},
        {"type": "websocket.http.response.start", "status": 400, "headers": [(b"x", b"a\r\nInjected: 1")]},
        {"type": "websocket.http.response.start", "status": 400, "headers": [(b"bad name", b"a")]},
        {"type": "websocket.close"},
    ],
)
def test_a_refused_handshake_gets_403(serve: Any, message: dict[str, Any]) -> None:
    connection = serve(answering(message))
    status, _, body = split_response(connection.feed(HANDSHAKE))
    assert (status, body) == (403, b"Forbidden")
    assert connection.transport.closed
