"""Applications that fail at every point of the ASGI exchange, on both parsers.

For each fault the server logs exactly one ERROR (and asyncio none: no "Exception in callback"), the
client gets a 500 when nothing was sent yet, a cut response (then a closed connection) when the
response had started, or the complete response when it had ended; and the server keeps serving. What
tests/test_app_errors.py covers already (an exception before the response, a return without one, an
exception or a return in the middle of a chunked body, a status that is a string, body before start,
a returned value) is not repeated here.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningServer, read_response, recv_all, run_server
from tests.fuzzing import ErrorLog, parse_response

START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
SIZED = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]}


def body(data: Any, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def faulty(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    fault = scope["path"].strip("/")
    if fault == "ok":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send(body(b"ok"))
    # -- exceptions
    elif fault == "raise-after-start":
        await send(START)
        raise ValueError("fault between start and body")
    elif fault == "raise-after-start-later":
        await send(START)
        await asyncio.sleep(0.05)  # the head is on the wire by now
        raise ValueError("fault between start and body")
    elif fault == "raise-in-sized-stream":
        await send(SIZED)
        await send(body(b"12345", more=True))
        raise ValueError("fault in the middle of a stream")
    elif fault == "raise-after-receive":
        await receive()
        raise ValueError("fault during receive")
    elif fault == "raise-in-body-stream":
        await receive()  # only the first part of a streamed request body
        raise ValueError("fault while the request body streams in")
    elif fault == "raise-after-complete":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send(body(b"done"))
        raise ValueError("fault after the response")
    # -- returning early
    elif fault == "return-after-start":
        await send(SIZED)
    elif fault == "return-after-receive":
        await receive()
    # -- invalid messages
    elif fault == "wrong-type-first":
        await send({"type": "http.response.bogus"})
    elif fault == "start-twice":
        await send(START)
        await send(START)
    elif fault == "body-after-end":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send(body(b"done"))
        await send(body(b"more"))
    elif fault == "bad-header-name":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"bad name", b"x")]})
    elif fault == "bad-header-value":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"a\r\nSet-Cookie: evil=1")]}
        )
    elif fault == "nul-header-value":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"a\x00b")]})
    elif fault == "str-headers":
        await send({"type": "http.response.start", "status": 200, "headers": [("x-a", "b")]})
    elif fault == "status-99":
        await send({"type": "http.response.start", "status": 99, "headers": []})
    elif fault == "status-600":
        await send({"type": "http.response.start", "status": 600, "headers": []})
    elif fault == "status-none":
        await send({"type": "http.response.start", "headers": []})
    elif fault == "str-body":
        await send(START)
        await send(body("not bytes"))
    elif fault == "str-body-streamed":
        await send(START)
        await send(body("not bytes", more=True))
        await send(body(b"the end"))
    elif fault == "str-body-streamed-later":
        await send(START)
        await send(body("not bytes", more=True))
        await asyncio.sleep(0.05)
        await send(body(b"the end"))
    elif fault == "none-body":
        await send(START)
        await send(body(None))
    elif fault == "longer-than-content-length":
        await send(SIZED)
        await send(body(b"12345678901"))
    elif fault == "shorter-than-content-length":
        await send(SIZED)
        await send(body(b"12345"))
    elif fault == "chunked-204":
        await send(
            {"type": "http.response.start", "status": 204, "headers": [(b"transfer-encoding", b"chunked")]}
        )
    elif fault == "missing-type":
        await send({"status": 200})
    else:  # pragma: no cover - a typo in a test
        raise AssertionError(fault)


#: fault: what the client gets. "500": an Internal Server Error, then a closed connection. "cut": the
#: response that started (or nothing), never completed, then a closed connection. "kept": the complete
#: response, and the connection serves the next request.
FAULTS: dict[str, str] = {
    "raise-after-start": "cut",
    "raise-after-start-later": "cut",
    "raise-in-sized-stream": "cut",
    "raise-after-receive": "500",
    "raise-in-body-stream": "500",
    "raise-after-complete": "kept",
    "return-after-start": "cut",
    "return-after-receive": "500",
    "wrong-type-first": "500",
    "start-twice": "cut",
    "body-after-end": "kept",
    "bad-header-name": "500",
    "bad-header-value": "500",
    "nul-header-value": "500",
    "str-headers": "500",
    "status-99": "500",
    "status-600": "500",
    "status-none": "500",
    "str-body": "cut",
    "str-body-streamed": "cut",
    "str-body-streamed-later": "cut",
    "none-body": "cut",
    "longer-than-content-length": "cut",
    "shorter-than-content-length": "cut",
    "chunked-204": "500",
    "missing-type": "500",
}


class Server:
    def __init__(self, running: RunningServer, log: ErrorLog) -> None:
        self.running = running
        self.log = log


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    log = ErrorLog().install()
    try:
        with run_server(faulty, http=request.param) as running:
            yield Server(running, log)
    finally:
        log.uninstall()


def _request(path: str) -> bytes:
    if path in ("/raise-in-body-stream",):
        # A body that streams in: only its first part has arrived when the app fails.
        return (
            b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n" % path.encode()
        )
    if "receive" in path:
        return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" % path.encode()
    return b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()


def _ok(sock: socket.socket) -> None:
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(sock)[:3:2] == (200, b"ok")


@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_is_logged_once_and_answered(server: Server, fault: str) -> None:
    server.log.take()
    expected = FAULTS[fault]
    with server.running.connect() as sock:
        sock.sendall(_request("/" + fault))
        if expected == "kept":
            status, _, data = read_response(sock)
            assert status == 200 and data in (b"done",)
            _ok(sock)  # the same connection goes on
        else:
            data = recv_all(sock, timeout=5)
            if expected == "500":
                parsed = parse_response(data, "GET", closed=True)
                assert parsed is not None, data
                response, size = parsed
                assert response.status == 500 and response.body == b"Internal Server Error", data
                assert response.header(b"connection") == b"close"
                assert data[size:] == b"", "nothing after the 500"
            else:
                # Never a complete response: the client must be able to tell it was cut.
                assert b"HTTP/1.1 500" not in data
                if data:
                    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data
                    assert not data.endswith(b"0\r\n\r\n"), data
                    head, _, rest = data.partition(b"\r\n\r\n")
                    if b"content-length: 10" in head:
                        assert len(rest) < 10
    errors = server.log.take()
    fulmen_errors = [e for e in errors if e.startswith("fulmen.error")]
    assert len(fulmen_errors) == 1, errors
    assert len(errors) == 1, f"asyncio logged errors too: {errors}"
    with server.running.connect() as sock:  # and the server keeps serving
        _ok(sock)
    assert not server.log.take()


def test_many_faults_in_a_row_leave_nothing_behind(server: Server) -> None:
    """Every fault, twice over, then the server's state is clean: no task or connection left."""
    for _ in range(2):
        for fault in FAULTS:
            with server.running.connect() as sock:
                sock.sendall(_request("/" + fault))
                if FAULTS[fault] == "kept":
                    read_response(sock)
                else:
                    recv_all(sock, timeout=5)
    state = server.running.server.server_state
    end = time.monotonic() + 5
    while (state.tasks or state.connections) and time.monotonic() < end:
        time.sleep(0.02)
    assert not state.tasks and not state.connections
    assert len(server.log.take()) == 2 * len(FAULTS)
