"""HTTP/1.1 behaviour on both parsers and both loops, against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import read_response, recv_all, recv_until, run_server


def test_get_and_keep_alive(http_impl: str, loop_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, loop=loop_impl) as server:
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                response = client.get("/")
                assert response.status_code == 200
                assert response.text == "Hello, world!"
                assert response.headers["server"] == "fulmen"
                assert "date" in response.headers
                assert response.headers["transfer-encoding"] == "chunked"
        assert server.server.server_state.total_requests == 3


def test_scope(http_impl: str) -> None:
    with run_server(apps.scope_json, http=http_impl, root_path="/api") as server:
        response = httpx.get(server.url + "/caf%C3%A9/x?a=1&b=%20", headers={"X-Custom": "One"})
        scope = response.json()
        assert scope["type"] == "http"
        assert scope["http_version"] == "1.1"
        assert scope["method"] == "GET"
        assert scope["scheme"] == "http"
        assert scope["path"] == "/api/café/x"
        assert scope["raw_path"] == "/api/caf%C3%A9/x"
        assert scope["query_string"] == "a=1&b=%20"
        assert scope["root_path"] == "/api"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["server"] == ["127.0.0.1", server.port]
        assert scope["client"][0] == "127.0.0.1"
        assert ["x-custom", "One"] in scope["headers"]
        assert all(name == name.lower() for name, _ in scope["headers"])
        assert scope["state"] == {}
        assert sorted(scope["extensions"]) == [  # tests/http/test_response_extensions.py
            "http.response.early_hint",
            "http.response.pathsend",
            "http.response.trailers",
            "http.response.zerocopysend",
        ]


def test_pipelined_requests_answered_in_order(http_impl: str) -> None:
    with run_server(apps.scope_json, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
            paths = []
            for _ in range(5):
                status, _, body = read_response(sock)
                assert status == 200
                paths.append(httpx.Response(200, content=body).json()["path"])
        assert paths == ["/0", "/1", "/2", "/3", "/4"]


@pytest.mark.parametrize("size", [0, 10, 200_000])
def test_content_length_body(http_impl: str, size: int) -> None:
    with run_server(apps.echo, http=http_impl) as server:
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        response = httpx.post(server.url, content=payload)
        assert response.status_code == 200
        assert response.content == payload


def test_chunked_request_body(http_impl: str) -> None:
    with run_server(apps.echo, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nHello\r\n7\r\n, world\r\n0\r\n\r\n"
            )
            status, _, body = read_response(sock)
        assert (status, body) == (200, b"Hello, world")


def test_expect_100_continue(http_impl: str) -> None:
    with run_server(apps.echo, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
            assert recv_until(sock).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(b"data")
            status, _, body = read_response(sock)
        assert (status, body) == (200, b"data")


def test_head_has_no_body(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            data = recv_until(sock, b"Hello, world!")
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert rest.startswith(b"HTTP/1.1 200 OK")  # nothing between the two heads


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses(http_impl: str, status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            data = recv_all(sock)
        first, second = data.split(b"\r\n\r\n")[:2]
        assert b"transfer-encoding" not in first and b"content-length" not in first
        assert second.startswith(b"HTTP/1.1 %d" % status)
        assert data.endswith(b"\r\n\r\n")  # no body bytes after either head


#: path: the headers the application sends, and the head lines fulmen must write for them (besides the
#: status line and the date). Each is asked for twice: the second response comes from the caches of
#: checked names, values and lengths, and must be the same.
_RESPONSE_HEADS: dict[str, tuple[list[tuple[Any, Any]], bytes, list[bytes]]] = {
    "/mixed-case": (
        [(b"Content-Type", b"text/plain"), (b"Content-Length", b"5"), (b"Server", b"app")],
        b"hello",
        [b"content-type: text/plain", b"content-length: 5", b"server: app"],
    ),
    "/lower": (
        [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        b"hello",
        [b"content-type: text/plain", b"content-length: 5", b"server: fulmen"],
    ),
    "/bytearray": (
        [(b"x-a", bytearray(b"one")), (b"content-length", bytearray(b"5"))],
        b"hello",
        [b"x-a: one", b"content-length: 5", b"server: fulmen"],
    ),
    "/app-chunked": (
        [(b"Transfer-Encoding", b"Chunked")],
        b"5\r\nhello\r\n0\r\n\r\n",
        [b"transfer-encoding: Chunked", b"server: fulmen"],
    ),
    "/close": (
        [(b"CONNECTION", b"Close"), (b"content-length", b"5")],
        b"hello",
        [b"connection: Close", b"content-length: 5", b"server: fulmen", b"connection: close"],
    ),
}


async def _heads_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers, body, _ = _RESPONSE_HEADS[scope["path"]]
    if scope["path"] == "/app-chunked":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("path", sorted(_RESPONSE_HEADS))
def test_response_head_as_the_application_gives_it(http_impl: str, path: str) -> None:
    _, body, expected = _RESPONSE_HEADS[path]
    with run_server(_heads_app, http=http_impl) as server:
        for _ in range(2):
            with server.connect() as sock:
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
                data = recv_until(sock, body)
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            assert lines[0] == b"HTTP/1.1 200 OK"
            assert [line for line in lines[1:] if not line.startswith(b"date: ")] == expected
            assert rest == body


def test_response_content_length_is_checked_each_time(http_impl: str) -> None:
    """Lengths come from a cache once seen; a response longer or shorter than one is still cut."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = scope["path"][1:].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": body})

    with run_server(app, http=http_impl) as server:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/abc").text == "abc"
            assert client.get("/xyz").text == "xyz"
        for path in (b"/ab", b"/abcd"):
            with server.connect() as sock:
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path)
                data = recv_all(sock)
            # Cut: fewer body bytes than the 3 announced, then the connection closed (recv_all got EOF).
            assert len(data.partition(b"\r\n\r\n")[2]) < 3


#: target: what the application sees as (path, raw_path, query_string).
_TARGET_CASES = {
    b"/": ("/", b"/", b""),
    b"/a%20b/c?x=1&y=%20": ("/a b/c", b"/a%20b/c", b"x=1&y=%20"),
    b"/p?q#frag": ("/p", b"/p", b"q"),
    b"http://example.org/abs/path?k=v": ("/abs/path", b"/abs/path", b"k=v"),
    b"http://example.org?only=query": ("/", b"/", b"only=query"),
}


async def _target_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = repr((scope["path"], scope["raw_path"], scope["query_string"])).encode()
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_request_targets_parsed_alike_when_repeated(http_impl: str) -> None:
    """Parsed targets are cached: the second request for a target must see what the first saw."""
    with run_server(_target_app, http=http_impl) as server:
        with server.connect() as sock:
            for _ in range(2):
                for target, expected in _TARGET_CASES.items():
                    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target)
                    status, _, body = read_response(sock)
                    assert status == 200
                    assert body == repr(expected).encode(), target


async def _header_values_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b"|".join(value for name, value in scope["headers"] if name.startswith(b"x-"))
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_header_values_without_surrounding_whitespace(http_impl: str) -> None:
    """RFC 9110 section 5.5: the spaces and tabs around a field value are not part of it."""
    with run_server(_header_values_app, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: value\t\r\nX-Both: \t a b \t\r\n\r\n")
            assert read_response(sock)[2] == b"value|a b"


def test_target_cache_stays_bounded() -> None:
    from fulmen.caches import MAX_ENTRIES, MAX_KEY_SIZE, remember
    from fulmen.http.target import parse_target

    cache: dict[bytes, tuple[str, bytes, bytes]] = {}
    for number in range(MAX_ENTRIES * 2 + 10):
        target = b"/item/%d?n=%d" % (number, number)
        parsed = parse_target(target)
        assert parsed == (f"/item/{number}", b"/item/%d" % number, b"n=%d" % number)
        remember(cache, target, parsed)
        assert len(cache) <= MAX_ENTRIES
    long_target = b"/" + b"x" * MAX_KEY_SIZE
    remember(cache, long_target, parse_target(long_target))
    assert long_target not in cache


def test_each_server_caches_targets_and_headers_of_its_own(http_impl: str) -> None:
    """Two servers in one process (as thread workers are) fill caches of their own: on free-threaded
    Python a lookup in a cache another thread filled takes a lock (fulmen.caches)."""
    with run_server(_target_app, http=http_impl) as first, run_server(_target_app, http=http_impl) as second:
        with first.connect() as sock:
            sock.sendall(b"GET /only-first?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_response(sock)[0] == 200
        with second.connect() as sock:
            sock.sendall(b"GET /caf%C3%A9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert read_response(sock)[0] == 200
        first_caches = first.server.server_state.caches
        second_caches = second.server.server_state.caches
        assert set(first_caches.targets) == {b"/only-first?x=1"}
        assert set(second_caches.targets) == {b"/caf%C3%A9"}
        assert set(first_caches.header_lines) == set(second_caches.header_lines) == {b"content-length"}
        assert first_caches.header_lines is not second_caches.header_lines
        if http_impl == "httptools":
            assert first_caches.methods == {b"GET": "GET"}


def _send_on_many(server: Any, request: bytes, count: int = 32) -> list[bytes]:
    """Send ``request`` on ``count`` connections at once and read each until the server closes it.

    Many requests arriving together are answered in one loop turn, where a complete response waits
    for the turn's end (protocols/output.py): what the connection writes or closes after comes after it.
    """
    sockets = [server.connect() for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(request)
        return [recv_all(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_responses_of_one_loop_turn_keep_their_order(http_impl: str) -> None:
    """Two good pipelined requests and a bad one, on many connections at once: 200, 200, 400, closed."""
    bad = b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"  # two Host headers: 400
    good = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with run_server(apps.hello, http=http_impl) as server:
        for answer in _send_on_many(server, good + good + bad):
            lines = answer.split(b"\r\n")
            statuses = [line.split(b" ")[1] for line in lines if line.startswith(b"HTTP/1.1 ")]
            assert statuses == [b"200", b"200", b"400"], answer


def test_response_before_close_for_an_unread_body(http_impl: str) -> None:
    """The application answers without reading the body: the connection closes after the whole
    response, on many connections at once."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10
    with run_server(app, http=http_impl) as server:
        for answer in _send_on_many(server, request):
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert answer.endswith(b"\r\n\r\nok"), answer


def test_http10_gets_no_chunked_response(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = recv_all(sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"transfer-encoding" not in data.lower()
        assert b"connection: close" in data
        assert data.endswith(b"\r\n\r\nHello, world!")


# Each case: what one send() carries, and the HTTP version the application must see for each request
# in it. They probe where the httptools path reads the version from the data instead of asking llhttp:
# a request that does not start the data, a request line split over two reads, bytes that look like
# "HTTP/1.1" in a body or a target.
_VERSION_CASES = {
    "pipelined-1.1-then-1.0": (
        [b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n"],
        ["1.1", "1.0"],
    ),
    "body-looks-like-request-line": (
        [b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nGET / HTTP/1.1\r\nGET / HTTP/1.0\r\n\r\n"],
        ["1.1", "1.0"],
    ),
    "body-then-request-in-next-read": (
        [
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n",
            b"GET / HTTP/1.1\r\nGET / HTTP/1.0\r\n\r\n",
        ],
        ["1.1", "1.0"],
    ),
    "request-line-split": ([b"GET / HTTP/1.", b"0\r\n\r\n"], ["1.0"]),
    "target-contains-version": ([b"GET /HTTP/1.1\r\n HTTP/1.0\r\n\r\n"], []),  # a CR in the target: 400
    "query-looks-like-version": ([b"GET /?v=HTTP/1.1 HTTP/1.0\r\n\r\n"], ["1.0"]),
    "leading-crlf-1.0": ([b"\r\nGET / HTTP/1.0\r\n\r\n"], ["1.0"]),
    "leading-crlf-1.1": ([b"\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], ["1.1"]),
    "plain-1.1": ([b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], ["1.1"]),
}


async def _version_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole request body, then answers with the request's HTTP version."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = scope["http_version"].encode()
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize("case", sorted(_VERSION_CASES))
def test_http_version_seen_by_the_app(http_impl: str, case: str) -> None:
    sends, versions = _VERSION_CASES[case]
    if case.startswith("leading-crlf") and http_impl == "h11":
        versions = []  # h11 refuses an empty line before a request line (400); llhttp skips it
    with run_server(_version_app, http=http_impl) as server:
        with server.connect() as sock:
            for index, data in enumerate(sends):
                if index:
                    time.sleep(0.05)  # a separate read on the server
                sock.sendall(data)
            seen = []
            for _ in versions:
                status, _, body = read_response(sock)
                assert status == 200
                seen.append(body.decode())
            if not versions:
                status, _, _ = read_response(sock)
                assert status == 400
            assert recv_all(sock) == b""  # and the connection closes (HTTP/1.0, or an error)
        assert seen == versions


def test_connection_close(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = recv_all(sock)
        assert b"connection: close" in data
        assert data.endswith(b"0\r\n\r\n")


def test_disconnect_reaches_the_app(http_impl: str) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        seen.append(await asyncio.wait_for(receive(), 5))

    with run_server(app, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen == [{"type": "http.disconnect"}]


def test_large_body_pauses_reading(http_impl: str) -> None:
    """The app reads slowly: the server must not buffer the whole upload (flow control)."""
    received: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        total = 0
        while True:
            message = await receive()
            total += len(message["body"])
            received.append(total)
            await asyncio.sleep(0.001)
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % total})

    with run_server(app, http=http_impl) as server:
        payload = b"x" * (8 * 1024 * 1024)
        response = httpx.post(server.url, content=payload, timeout=30)
        assert response.text == str(len(payload))
        assert len(received) > 10  # delivered in many pieces, not all at once


def test_streaming_response_waits_for_slow_reader(http_impl: str) -> None:
    """``send`` blocks while the client does not read (write flow control)."""
    sent: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(2000):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            sent.append(i)
        await send({"type": "http.response.body", "body": b""})

    with run_server(app, http=http_impl) as server:
        with server.connect() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(1.0)
            assert len(sent) < 200  # far less than the 128 MiB the app wants to send
            sock.close()


def test_non_get_websocket_upgrade_is_plain_http(http_impl: str) -> None:
    with run_server(apps.scope_json, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                b"POST /x HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                b"Content-Length: 0\r\n\r\n"
            )
            status, _, body = read_response(sock)
        assert status == 200
        assert httpx.Response(200, content=body).json()["type"] == "http"
