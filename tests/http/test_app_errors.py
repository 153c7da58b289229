"""Applications that fail: 500 before the response, a closed connection after it, and the server goes on."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import read_response, recv_all, run_server, wait_until


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def error_log() -> Iterator[ListHandler]:
    handler = ListHandler()
    logger = logging.getLogger("fulmen.error")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path = scope["path"]
    if path == "/ok":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif path == "/raise-before":
        raise ValueError("broken before the response")
    elif path == "/no-response":
        return
    elif path == "/raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("broken in the middle of the body")
    elif path == "/incomplete":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    elif path == "/bad-status":
        await send({"type": "http.response.start", "status": "200", "headers": []})
    elif path == "/bad-message":
        await send({"type": "http.response.body", "body": b"no start"})
    elif path == "/returns-value":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return "something"  # type: ignore[return-value]


def test_exception_before_response_is_500_with_traceback(http_impl: str, error_log: ListHandler) -> None:
    with run_server(failing, http=http_impl) as server:
        response = httpx.get(server.url + "/raise-before", timeout=5)
        assert response.status_code == 500
        assert response.text == "Internal Server Error"
        assert response.headers["connection"] == "close"
        records = [r for r in error_log.records if r.getMessage().startswith("Exception in ASGI")]
        assert len(records) == 1 and records[0].exc_info is not None
        assert "broken before the response" in str(records[0].exc_info[1])
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_app_returning_without_response_is_500(http_impl: str, error_log: ListHandler) -> None:
    with run_server(failing, http=http_impl) as server:
        assert httpx.get(server.url + "/no-response", timeout=5).status_code == 500
        assert "ASGI callable returned without starting response." in error_log.messages()
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


@pytest.mark.parametrize("path", ["/raise-after", "/incomplete"])
def test_failure_after_response_started_closes_connection(
    http_impl: str, error_log: ListHandler, path: str
) -> None:
    with run_server(failing, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = recv_all(sock)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"partial" in data
        assert not data.endswith(b"0\r\n\r\n")  # the chunked body never ended: the client knows it is cut
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"
    if path == "/raise-after":
        assert any(message.startswith("Exception in ASGI application") for message in error_log.messages())
    else:
        assert "ASGI callable returned without completing response." in error_log.messages()


@pytest.mark.parametrize("path", ["/bad-status", "/bad-message"])
def test_invalid_messages_are_500(http_impl: str, error_log: ListHandler, path: str) -> None:
    with run_server(failing, http=http_impl) as server:
        assert httpx.get(server.url + path, timeout=5).status_code == 500
        assert httpx.get(server.url + "/ok", timeout=5).text == "ok"


def test_app_returning_a_value_is_logged(http_impl: str, error_log: ListHandler) -> None:
    with run_server(failing, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(b"GET /returns-value HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, _ = read_response(sock)
        assert status == 204
        # The app returns after its last send: the client may read the response before the log line
        # is written (on free-threaded Python, the test and the server really run at once).
        assert wait_until(lambda: any("should return None" in m for m in error_log.messages()), 5)


def test_server_keeps_serving_many_failures(error_log: ListHandler) -> None:
    with run_server(failing) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            for _ in range(20):
                assert client.get("/raise-before").status_code == 500
                assert client.get("/no-response").status_code == 500
                assert client.get("/ok").text == "ok"
        assert server.server.server_state.total_requests == 60
