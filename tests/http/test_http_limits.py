"""Limits, timeouts and request-smuggling defences, the same on both parsers."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import read_response, recv_all, run_server


def _send(server: Any, data: bytes) -> bytes:
    with server.connect() as sock:
        sock.sendall(data)
        return recv_all(sock, timeout=5)


def test_head_too_large_gets_431(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        assert _send(server, big).startswith(b"HTTP/1.1 431 ")
        # Sent in small pieces, the head never completes: still 431, not a hang.
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(40):
                try:
                    sock.sendall(b"a" * 1000)
                except OSError:
                    break
            assert recv_all(sock).startswith(b"HTTP/1.1 431 ")
        assert httpx.get(server.url).status_code == 200


def test_head_limit_is_configurable(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, h11_max_incomplete_event_size=1024) as server:
        request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
        assert _send(server, request).startswith(b"HTTP/1.1 431 ")
        assert httpx.get(server.url, headers={"x-small": "a" * 500}).status_code == 200


def test_too_many_headers_gets_431(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, limit_request_headers=20) as server:
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(25))
        assert _send(server, b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431 ")
        few = b"".join(b"X-H%d: v\r\n" % i for i in range(10))
        assert _send(
            server, b"GET / HTTP/1.1\r\nHost: x\r\n" + few + b"Connection: close\r\n\r\n"
        ).startswith(b"HTTP/1.1 200 ")


def test_missing_host_gets_400(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        assert _send(server, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert _send(server, b"GET / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n"
        b"hello" + b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["cl-and-te", "conflicting-cl", "chunked-not-last", "xchunked", "negative-cl"],
)
def test_smuggling_attempts_rejected(http_impl: str, request_bytes: bytes) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await apps.hello(scope, receive, send)

    with run_server(app, http=http_impl) as server:
        response = _send(server, request_bytes)
        assert response.startswith(b"HTTP/1.1 400 "), response
        assert response.count(b"HTTP/1.1") == 1
        assert seen == []
        assert httpx.get(server.url).status_code == 200


def test_garbage_gets_400_and_server_goes_on(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl) as server:
        assert _send(server, b"\x00\x01\x02 not http\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        assert httpx.get(server.url).status_code == 200


def test_idle_connection_closed_after_keep_alive_timeout(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, timeout_keep_alive=1) as server:
        with server.connect() as sock:
            started = time.monotonic()
            assert recv_all(sock, timeout=5) == b""
            assert 0.8 < time.monotonic() - started < 3
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
            started = time.monotonic()
            assert recv_all(sock, timeout=5) == b""
            assert 0.8 < time.monotonic() - started < 3


def test_stalled_head_closed_after_request_header_timeout(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, timeout_request_header=1, timeout_keep_alive=30) as server:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            data = recv_all(sock, timeout=5)
            assert 0.8 < time.monotonic() - started < 3
            assert data == b"" or data.startswith(b"HTTP/1.1 408 ")


def test_limit_concurrency_admits_exactly_n(http_impl: str) -> None:
    with run_server(apps.slow, http=http_impl, limit_concurrency=3) as server:
        with ThreadPoolExecutor(5) as pool:
            results = list(
                pool.map(lambda _: httpx.get(server.url + "/?1.0", timeout=10).status_code, range(5))
            )
        assert sorted(results) == [200, 200, 200, 503, 503]
        assert httpx.get(server.url + "/?0").status_code == 200


def test_limit_max_requests_serves_exactly_n(http_impl: str) -> None:
    with run_server(apps.hello, http=http_impl, limit_max_requests=3) as server:
        statuses = []
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
            for _ in range(5):
                try:
                    statuses.append(read_response(sock)[0])
                except (ConnectionError, OSError, IndexError):
                    break
        assert statuses.count(200) == 3
        assert server.server.server_state.total_requests == 3
        server.thread.join(5)
        assert not server.thread.is_alive()


def test_graceful_shutdown_finishes_requests_in_flight(http_impl: str) -> None:
    with run_server(apps.slow, http=http_impl, timeout_graceful_shutdown=5) as server:
        idle = server.connect()
        idle.sendall(b"GET /?0 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle)[0] == 200
        result: dict[str, Any] = {}

        def slow_request() -> None:
            result["response"] = httpx.get(server.url + "/?1.0", timeout=10)

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.3)
        server.server.should_exit = True
        assert recv_all(idle, timeout=3) == b""  # the idle keep-alive connection is closed at once
        thread.join(10)
        assert result["response"].status_code == 200
        assert result["response"].headers.get("connection") == "close"
        server.thread.join(5)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_graceful_shutdown_is_bounded(http_impl: str) -> None:
    with run_server(apps.slow, http=http_impl, timeout_graceful_shutdown=1) as server:
        thread = threading.Thread(
            target=lambda: pytest.raises(httpx.HTTPError, httpx.get, server.url + "/?30", timeout=10)
        )
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        server.server.should_exit = True
        server.thread.join(10)
        assert time.monotonic() - started < 4
        thread.join(10)
