"""Property-based fuzzing of both HTTP/1.1 parsers through a real server connection on loopback.

Valid pipelines (random methods, targets, headers, Content-Length and chunked bodies with random chunk
framing, extensions and trailers, ``Expect: 100-continue``, HTTP/1.0 keep-alive) are split at random
points; mutated ones and random bytes follow. The invariants (see :mod:`tests.fuzzing`): no ERROR
logged by the server or asyncio, no hang, every response well-formed HTTP/1.1, every app call answered
exactly once and in order, a rejection (4xx) only as the last answer and followed by a close, and a
normal request served afterwards. For valid pipelines, every request reaches the app exactly once,
intact. One server per parser serves every case; the run is bounded and derandomized for CI
(``benchmarks/fuzz_long.py`` runs the same properties for longer, with fresh seeds).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import RunningServer, run_server
from tests.fuzzing import (
    ErrorLog,
    FuzzApp,
    FuzzedServer,
    check_outcome,
    check_pipeline,
    fuzz_settings,
    http_exchange,
    mutate,
    mutations,
    pipelines,
    probe_http,
    register_stats,
    split,
    split_points,
)

pytestmark = pytest.mark.timeout(180)


class FuzzServer(FuzzedServer):
    def __init__(self, running: RunningServer, app: FuzzApp, log: ErrorLog, name: str) -> None:
        super().__init__(running, log, name, lambda: probe_http(running.port, app))
        self.app = app


@pytest.fixture(scope="module", params=["httptools", "h11"])
def fuzz_server(request: pytest.FixtureRequest) -> Iterator[FuzzServer]:
    register_stats(request.config)
    app = FuzzApp()
    log = ErrorLog().install()
    try:
        with run_server(app, http=request.param, ws="none") as running:
            yield FuzzServer(running, app, log, f"http/{request.param}")
    finally:
        log.uninstall()


@fuzz_settings(60)
@given(pipeline=pipelines(), data=st.data())
def test_valid_pipelines_reach_the_app_exactly_once(
    fuzz_server: FuzzServer, pipeline: list[Any], data: st.DataObject
) -> None:
    from tests.fuzzing import STATS

    STATS.count(fuzz_server.name + "/valid")
    raw = b"".join(request.encode() for request in pipeline)
    pieces = split(raw, data.draw(split_points(len(raw)), label="splits"))
    outcome = http_exchange(
        fuzz_server.port, pieces, fuzz_server.app, expect=len(pipeline), keep_open=not pipeline[-1].close
    )
    try:
        check_pipeline(outcome, pipeline)
        if outcome.sock is not None:  # the connection is still good for one more request
            after = http_exchange(
                fuzz_server.port,
                [b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n"],
                fuzz_server.app,
                expect=1,
                sock=outcome.sock,
            )
            check_outcome(after)
            assert [r.status for r in after.responses] == [200], after.responses
    finally:
        if outcome.sock is not None:
            outcome.sock.close()
    fuzz_server.check_health()


@fuzz_settings(70)
@given(pipeline=pipelines(max_requests=3, allow_head=False), ops=mutations(), data=st.data())
def test_mutated_requests_are_answered_or_rejected(
    fuzz_server: FuzzServer, pipeline: list[Any], ops: Any, data: st.DataObject
) -> None:
    from tests.fuzzing import STATS

    STATS.count(fuzz_server.name + "/mutated")
    raw = mutate(b"".join(request.encode() for request in pipeline), ops)
    pieces = split(raw, data.draw(split_points(len(raw)), label="splits"))
    check_outcome(http_exchange(fuzz_server.port, pieces, fuzz_server.app))
    fuzz_server.check_health()


@fuzz_settings(25)
@given(
    prefix=st.sampled_from(
        [b"", b"GET / HTTP/1.1\r\n", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"]
    ),
    garbage=st.binary(max_size=200),
)
def test_random_bytes_never_break_the_server(fuzz_server: FuzzServer, prefix: bytes, garbage: bytes) -> None:
    from tests.fuzzing import STATS

    STATS.count(fuzz_server.name + "/random")
    check_outcome(http_exchange(fuzz_server.port, [prefix + garbage], fuzz_server.app))
    fuzz_server.check_health()


# ---------------------------------------------------------------------------------------------------
# Regressions: what the fuzzers found, one test each, on both parsers.


async def _scope_headers_after_body(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, then answers with the request headers as the app sees them."""
    while (await receive()).get("more_body"):
        pass
    body = b"\n".join(name + b"=" + value for name, value in scope["headers"])
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_trailers_never_become_request_headers(http_impl: str) -> None:
    """httptools passed trailer fields to ``on_header``: they were appended to the scope's headers
    while the app ran (a header the proxy in front never saw), and without any size bound."""
    from tests.conftest import read_response, recv_all

    with run_server(_scope_headers_after_body, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"1\r\na\r\n0\r\nX-Injected: yes\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n"
            )
            status, _, body = read_response(sock)
        assert status == 200
        assert body == b"host=x\ntransfer-encoding=chunked"
        with server.connect() as sock:
            trailers = b"X-T: " + b"a" * 100 + b"\r\n"
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n")
            for _ in range(400):  # 40 KiB of trailers: more than a head may have
                try:
                    sock.sendall(trailers)
                except OSError:
                    break
            assert recv_all(sock).startswith(b"HTTP/1.1 431 ")


async def _sized(scope: Any, receive: Any, send: Any) -> None:
    body = scope["path"].encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def test_http10_keep_alive_requests_pipeline_on_both_parsers(http_impl: str) -> None:
    """h11 never keeps an HTTP/1.0 connection alive: the h11 path answered the first of two pipelined
    ``Connection: keep-alive`` requests with ``connection: keep-alive``, then dropped the second (400)."""
    import time

    from tests.conftest import read_response

    first = b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with run_server(_sized, http=http_impl) as server:
        with server.connect() as sock:
            sock.sendall(
                first
                + b"GET /two HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /three HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            assert [read_response(sock)[2] for _ in range(3)] == [b"/one", b"/two", b"/three"]
        with server.connect() as sock:  # the next request in a later packet
            sock.sendall(first)
            assert read_response(sock)[2] == b"/one"
            time.sleep(0.05)
            sock.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[2] == b"/two"
