"""HTTP/2 in memory: an ``h2`` client-side connection makes the frames, the server's come back to it.

The server's stream (:class:`fulmen.http.h2_impl.H2Stream`) follows the same ASGI response rules as
the HTTP/1.1 cycle (:mod:`fulmen.protocols.response_rules`): these tests show them on HTTP/2 frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from tests.memory import MemoryConnection

Message = dict[str, Any]


class H2Client:
    """An h2 client on a :class:`MemoryConnection` that serves ``app`` with ``--http2``."""

    def __init__(self, app: Any) -> None:
        self.server = MemoryConnection(app, http="h11", http2=True)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.exchange()

    def exchange(self) -> list[Any]:
        """Send what the client has to send; the events of what the server answers."""
        return list(self.h2.receive_data(self.server.feed(self.h2.data_to_send())))

    def request(self, method: bytes = b"GET", body: bytes = b"") -> list[Any]:
        stream_id = self.h2.get_next_available_stream_id()
        headers = [(b":method", method), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")]
        self.h2.send_headers(stream_id, headers, end_stream=not body)
        if body:
            self.h2.send_data(stream_id, body, end_stream=True)
        return [event for event in self.exchange() if getattr(event, "stream_id", None) == stream_id]


@pytest.fixture
def serve() -> Iterator[Any]:
    clients: list[H2Client] = []

    def start(app: Any) -> H2Client:
        clients.append(H2Client(app))
        return clients[-1]

    yield start
    for client in clients:
        client.server.close()


def sending(*messages: Message, fail: bool = False) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)
        if fail:
            raise ValueError("boom")

    return app


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes = b"", more: bool = False) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


def response(events: list[Any]) -> tuple[dict[bytes, bytes], bytes, bool]:
    """Headers, body, and whether the stream ended normally (not reset)."""
    headers: dict[bytes, bytes] = {}
    data = b""
    ended = False
    for event in events:
        if isinstance(event, h2.events.ResponseReceived):
            headers = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            data += event.data
        elif isinstance(event, h2.events.StreamEnded):
            ended = True
    return headers, data, ended


def reset_code(events: list[Any]) -> ErrorCodes | None:
    return next((event.error_code for event in events if isinstance(event, h2.events.StreamReset)), None)


def test_a_request_and_its_response(serve: Any) -> None:
    client = serve(
        sending(start(200, [(b"Content-Type", b"text/plain")]), body(b"hi", more=True), body(b"!"))
    )
    headers, data, ended = response(client.request())
    assert headers[b":status"] == b"200" and headers[b"content-type"] == b"text/plain"
    assert (data, ended) == (b"hi!", True)


def test_the_server_caches_are_filled(serve: Any) -> None:
    """HTTP/2 looks targets and response headers up in the server's own caches (fulmen.caches), as
    HTTP/1.1 does."""
    headers = [(b"Content-Type", b"text/plain"), (b"content-length", b"2")]
    client = serve(sending(start(200, headers), body(b"hi")))
    assert response(client.request())[1] == b"hi"
    caches = client.server.state.caches
    assert caches.targets == {b"/": ("/", b"/", b"")}
    assert caches.header_names == {b"Content-Type": b"content-type", b"content-length": b"content-length"}
    assert b"text/plain" in caches.header_values and caches.content_lengths == {b"2": 2}


def test_the_request_body_reaches_the_app(serve: Any) -> None:
    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = await receive()
        await send(start())
        await send(body(scope["method"].encode() + b" " + message["body"]))

    assert response(serve(echo).request(b"POST", b"payload"))[1] == b"POST payload"


@pytest.mark.parametrize(("method", "status"), [(b"HEAD", 200), (b"GET", 204), (b"GET", 304)])
def test_responses_without_a_body(serve: Any, method: bytes, status: int) -> None:
    client = serve(sending(start(status, [(b"content-length", b"7")]), body(b"dropped")))
    headers, data, ended = response(client.request(method))
    assert headers[b":status"] == str(status).encode() and (data, ended) == (b"", True)


def test_connection_headers_of_http11_are_dropped(serve: Any) -> None:
    client = serve(
        sending(start(200, [(b"connection", b"close"), (b"transfer-encoding", b"chunked")]), body())
    )
    headers = response(client.request())[0]
    assert b"connection" not in headers and b"transfer-encoding" not in headers


@pytest.mark.parametrize(
    "messages",
    [
        [body(b"x")],  # a body before the start
        [start(103)],  # an informational status as the final one
        [start(200, [(b"x", b"a\nb")])],
        [start(200, [(b"bad name", b"a")])],
        [],  # no response at all
    ],
)
def test_a_broken_rule_before_the_start_gets_500(serve: Any, messages: list[Message]) -> None:
    headers, data, ended = response(serve(sending(*messages)).request())
    assert (headers[b":status"], data, ended) == (b"500", b"Internal Server Error", True)


@pytest.mark.parametrize(
    ("messages", "fail"),
    [
        ([start(), body(b"part", more=True)], True),  # the app fails after the start
        ([start(200, [(b"content-length", b"2")]), body(b"toolong")], False),
        ([start(200, [(b"content-length", b"9")]), body(b"short")], False),
    ],
)
def test_a_failure_after_the_start_resets_the_stream(serve: Any, messages: list[Message], fail: bool) -> None:
    client = serve(sending(*messages, fail=fail))
    events = client.request()
    assert response(events)[0][b":status"] == b"200"
    assert reset_code(events) == ErrorCodes.INTERNAL_ERROR
    assert not client.server.transport.closed  # the connection's other streams go on


def test_response_heads_are_remembered_but_not_from_iterators(serve: Any) -> None:
    """A repeated head is looked up, not checked again; headers given as an iterator, or with values
    that cannot be a key, are checked every time and still sent whole."""
    kinds = iter(["list", "generator", "bytearray", "list"])

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = next(kinds)
        fields = [(b"x-kind", b"same"), (b"content-length", b"2")]
        if kind == "generator":
            headers: Any = (field for field in fields)
        elif kind == "bytearray":
            headers = [(b"x-kind", bytearray(b"same")), (b"content-length", b"2")]
        else:
            headers = fields
        await send(start(200, headers))
        await send(body(b"ok"))

    client = serve(app)
    for _ in range(4):
        headers, data, ended = response(client.request())
        assert headers[b"x-kind"] == b"same" and headers[b"content-length"] == b"2" and data == b"ok"
    assert len(client.server.state.caches.h2_heads) == 1
