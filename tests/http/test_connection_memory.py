"""The HTTP/1.1 connection in memory (both parsers): request bytes in, the bytes it writes out.

No socket: :mod:`tests.memory` records what the connection writes. These tests pin the connection's
own behaviour byte for byte (pipelining, keep-alive, rejections, the WebSocket and HTTP/2 hand-overs);
the tests against a real server in ``test_http.py`` check the same through the kernel.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import apps
from tests.memory import MemoryConnection, memory_connection, split_response

GET = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"


@pytest.fixture
def hello(http_impl: str) -> Iterator[MemoryConnection]:
    yield from memory_connection(apps.hello, http=http_impl)


async def headers_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the request's headers, one ``name=value|`` each, as the application got them."""
    body = b"".join(b"%s=%s|" % (name, value) for name, value in scope["headers"])
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_a_request_gets_its_response_and_the_connection_stays(hello: MemoryConnection) -> None:
    data = hello.feed(GET)
    assert data == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        b"d\r\nHello, world!\r\n0\r\n\r\n"
    )
    assert not hello.transport.closed
    assert split_response(hello.feed(GET))[0] == 200


def test_pipelined_requests_are_answered_in_order(http_impl: str) -> None:
    for connection in memory_connection(apps.scope_json, http=http_impl):
        data = connection.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.count(b"HTTP/1.1 200 OK") == 2
        assert data.index(b'"path": "/a"') < data.index(b'"path": "/b"')


def test_connection_close_is_honoured(hello: MemoryConnection) -> None:
    data = hello.feed(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert b"\r\nconnection: close\r\n" in data
    assert hello.transport.closed


def test_a_malformed_request_gets_400_and_a_close(hello: MemoryConnection) -> None:
    data = hello.feed(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert split_response(data)[0] == 400
    assert hello.transport.closed


def test_a_bad_request_after_a_good_one_is_answered_after_it(hello: MemoryConnection) -> None:
    data = hello.feed(GET + b"GET / HTTP/1.1\r\n\r\n")  # the second has no Host
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert data.index(b"HTTP/1.1 400 Bad Request") > data.index(b"Hello, world!")
    assert hello.transport.closed


def test_header_values_reach_the_app_without_surrounding_whitespace(http_impl: str) -> None:
    """RFC 9110 section 5.5: spaces and tabs around a value are not part of it, on both parsers."""
    for connection in memory_connection(headers_app, http=http_impl):
        data = connection.feed(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: \t value\t \r\nX-Mid: a b\t\r\nX-Empty: \t\r\n\r\n"
        )
        assert split_response(data)[2] == b"host=x|x-pad=value|x-mid=a b|x-empty=|"


def test_expect_100_continue_is_written_when_the_body_is_read(http_impl: str) -> None:
    for connection in memory_connection(apps.echo, http=http_impl):
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        assert connection.feed(head) == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert split_response(connection.feed(b"ping"))[2] == b"ping"


def test_the_app_sees_a_disconnect_when_the_peer_goes(http_impl: str) -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    for connection in memory_connection(app, http=http_impl):
        connection.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        connection.lose()
        assert seen == [
            {"type": "http.request", "body": b"12345", "more_body": True},
            {"type": "http.disconnect"},
        ]


async def websocket_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()  # websocket.connect
    await apps.echo_messages(receive, send)


def test_a_websocket_upgrade_hands_the_connection_over(http_impl: str) -> None:
    for connection in memory_connection(websocket_echo, http=http_impl, ws="wsproto"):
        http_protocol = connection.protocol
        data = connection.feed(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert connection.protocol is not http_protocol
        assert type(connection.protocol).__name__ == "WSProtocol"
        assert http_protocol not in connection.state.connections
        assert connection.protocol in connection.state.connections
        assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")


def test_http2_prior_knowledge_hands_the_connection_over(http_impl: str) -> None:
    for connection in memory_connection(apps.hello, http=http_impl, http2=True):
        http_protocol = connection.protocol
        data = connection.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        assert type(connection.protocol).__name__ == "H2Protocol"
        assert http_protocol not in connection.state.connections
        assert data[3:4] == b"\x04"  # the server's SETTINGS frame first


def test_shutdown_closes_an_idle_connection_after_the_response_in_flight(hello: MemoryConnection) -> None:
    hello.protocol.shutdown()
    data = hello.feed(GET)  # already on its way when the server began to shut down
    assert b"\r\nconnection: close\r\n" in data
    assert hello.transport.closed
