"""The HTTP/1.1 cycle's ASGI response rules in memory: what the application sends, the bytes written.

Message order, HEAD/1xx/204/304 bodies, Content-Length against the body, a 500 before the response
started and a cut response after (the rules are :mod:`fulmen.protocols.response_rules`; the framing
is :mod:`fulmen.http.cycle`'s). Both parsers, since both feed the same cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.memory import MemoryConnection, split_response

Message = dict[str, Any]


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes = b"", more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def sending(*messages: Message, then: Callable[[], None] | None = None) -> Any:
    """An application that sends ``messages`` in order, then calls ``then`` (to fail, say)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        if then is not None:
            then()

    return app


def serve(app: Any, http: str, request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> tuple[bytes, bool]:
    """The bytes written for ``request``, and whether the connection was closed."""
    connection = MemoryConnection(app, http=http)
    try:
        return connection.feed(request), connection.transport.closed
    finally:
        connection.close()


def boom() -> None:
    raise ValueError("boom")


def test_a_sized_response_goes_out_as_given(http_impl: str) -> None:
    app = sending(start(201, [(b"content-length", b"5"), (b"X-Thing", b"a")]), body(b"hello"))
    data = serve(app, http_impl)[0]
    assert data == b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\nx-thing: a\r\n\r\nhello"


def test_a_response_without_length_is_chunked(http_impl: str) -> None:
    data = serve(sending(start(), body(b"ab", more=True), body(b"c")), http_impl)[0]
    assert data.endswith(b"transfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n")


def test_http10_gets_the_body_until_the_close(http_impl: str) -> None:
    data, closed = serve(sending(start(), body(b"ab")), http_impl, b"GET / HTTP/1.0\r\n\r\n")
    assert data == b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nab" and closed


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_send_no_body(http_impl: str, status: int) -> None:
    data = serve(sending(start(status), body(b"dropped")), http_impl)[0]
    assert data.endswith(b"\r\n\r\n") and b"dropped" not in data and b"transfer-encoding" not in data


def test_head_keeps_the_length_and_drops_the_body(http_impl: str) -> None:
    app = sending(start(200, [(b"content-length", b"7")]), body(b"dropped"))
    data = serve(app, http_impl, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")[0]
    assert data == b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"


def test_an_informational_status_has_no_body(http_impl: str) -> None:
    data = serve(sending(start(103, [(b"link", b"</a>")]), body(b"x")), http_impl)[0]
    assert data == b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n"


@pytest.mark.parametrize(
    "messages",
    [
        [body(b"x")],  # a body before the start
        [start(999)],  # no such status
        [start(200, [(b"x", b"a\r\nInjected: 1")])],  # a header value that ends the line
        [start(200, [(b"bad name", b"a")])],
        [start(200, [(b"content-length", b"five")])],
        [start(204, [(b"transfer-encoding", b"chunked")])],
    ],
)
def test_a_broken_rule_before_anything_is_written_gets_500(http_impl: str, messages: list[Message]) -> None:
    data, closed = serve(sending(*messages), http_impl)
    status, headers, payload = split_response(data)
    assert (status, payload) == (500, b"Internal Server Error")
    assert headers[b"connection"] == b"close" and closed


@pytest.mark.parametrize(
    "messages",
    [
        [start(200, [(b"content-length", b"10")]), body(b"12345", more=True)],  # then the app fails
        [start(200, [(b"content-length", b"10")]), body(b"12345", more=True), start()],
        [start(200, [(b"content-length", b"10")]), body(b"12345", more=True), body("text")],  # type: ignore[arg-type]
    ],
)
def test_a_failure_after_the_start_cuts_the_response(http_impl: str, messages: list[Message]) -> None:
    data, closed = serve(sending(*messages, then=boom), http_impl)
    assert data.endswith(b"\r\n\r\n12345") and closed


@pytest.mark.parametrize(
    "messages",
    [
        [start(200, [(b"content-length", b"3")]), body(b"toolong")],
        [start(200, [(b"content-length", b"3")]), body(b"ab", more=True), body(b"cd")],
        [start(200, [(b"content-length", b"9")]), body(b"short")],
    ],
)
def test_a_body_that_breaks_its_content_length_is_cut(http_impl: str, messages: list[Message]) -> None:
    data, closed = serve(sending(*messages), http_impl)
    status, headers, payload = split_response(data)
    assert status == 200 and len(payload) < int(headers[b"content-length"])  # the client sees it cut
    assert closed


def test_a_message_after_the_response_is_an_error_the_client_does_not_see(http_impl: str) -> None:
    data, closed = serve(sending(start(200, [(b"content-length", b"1")]), body(b"a"), body(b"b")), http_impl)
    assert data.endswith(b"\r\n\r\na")
    assert not closed  # the response was complete: the connection goes on


def test_returning_without_a_response_gets_500(http_impl: str) -> None:
    assert split_response(serve(sending(), http_impl)[0])[0] == 500


def test_responses_ending_in_one_loop_turn_are_written_together(http_impl: str) -> None:
    """Two connections answer in the same loop turn: the first at once, the second held for the turn's
    end (a client waiting on both is woken once). What a connection writes while it holds a response
    (here, the answer to a bad request) comes after it."""
    app = sending(start(200, [(b"content-length", b"2")]), body(b"ok"))
    first = MemoryConnection(app, http=http_impl)
    second = MemoryConnection(app, http=http_impl, shared_loop=first)
    third = MemoryConnection(app, http=http_impl, shared_loop=first)
    try:
        for connection in (first, second, third):
            connection.protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first.run_once()  # the three applications run
        assert first.transport.data.endswith(b"\r\n\r\nok")
        assert second.transport.data == third.transport.data == b""  # held
        third.protocol.data_received(b"NOT HTTP\r\n\r\n")
        data = third.transport.data
        assert data.startswith(b"HTTP/1.1 200 OK") and data.index(b"ok") < data.index(b"HTTP/1.1 400")
        assert third.transport.closed
        first.run_once()  # the end of the turn
        assert second.transport.data.endswith(b"\r\n\r\nok") and len(second.transport.writes) == 1
    finally:
        for connection in (third, second, first):
            connection.close()
