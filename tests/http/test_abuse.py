"""Abusive clients: slowloris heads, thousands of idle connections, a client that never reads, WebSocket
handshakes that never complete; and the limits that hold them (``--timeout-request-header``,
``--timeout-keep-alive``, ``--limit-concurrency``, ``--backlog``) while a normal client goes on being
served. Bounded: the whole module takes well under a minute.
"""

from __future__ import annotations

import asyncio
import resource
import selectors
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import free_port, read_response, run_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True, scope="module")
def more_file_descriptors() -> Iterator[None]:
    """Thousands of sockets, client and server side, in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 16384) if hard != resource.RLIM_INFINITY else 16384
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 5000:
        pytest.skip(f"the file descriptor limit ({hard}) is too low for the abuse tests")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_many(port: int, count: int) -> list[socket.socket]:
    """``count`` connected sockets (non-blocking connects, then all waited for together)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        sockets.append(sock)
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_WRITE)
    pending = len(sockets)
    deadline = time.monotonic() + 20
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(0.5):
            selector.unregister(key.fileobj)
            pending -= 1
    selector.close()
    assert pending == 0, f"{pending} connections never opened"
    return sockets


def wait_closed(sockets: list[socket.socket], timeout: float) -> tuple[int, list[bytes]]:
    """How many of ``sockets`` the server closed within ``timeout`` (reading what it sent first)."""
    selector = selectors.DefaultSelector()
    received: dict[socket.socket, bytes] = {}
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        received[sock] = b""
    closed = 0
    deadline = time.monotonic() + timeout
    while closed < len(sockets) and time.monotonic() < deadline:
        for key, _ in selector.select(0.2):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                data = b""
            if data:
                received[sock] += data
            else:
                selector.unregister(sock)
                closed += 1
    selector.close()
    return closed, [data for data in received.values() if data]


def served_quickly(url: str, limit: float = 2.0) -> float:
    """A normal request on a new connection: answered 200 within ``limit`` seconds."""
    started = time.monotonic()
    response = httpx.get(url, timeout=limit)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < limit
    return elapsed


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def test_slowloris_heads_are_closed_by_the_request_header_timeout(http_impl: str) -> None:
    """500 connections trickle their heads one byte a second; a normal client is served all along,
    and every slow one is closed (408) by --timeout-request-header, not by the keep-alive timeout."""
    with run_server(apps.hello, http=http_impl, timeout_request_header=3, timeout_keep_alive=30) as server:
        slow = open_many(server.port, 500)
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        try:
            started = time.monotonic()
            latencies = []
            for index in range(6):  # one byte a second, for longer than the timeout
                for sock in slow:
                    try:
                        sock.send(head[index : index + 1])
                    except OSError:
                        pass
                latencies.append(served_quickly(server.url))
                time.sleep(max(0.0, started + index + 1 - time.monotonic()))
            closed, answers = wait_closed(slow, timeout=5)
            assert closed == 500, f"only {closed} of 500 slowloris connections were closed"
            assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
            assert time.monotonic() - started < 12
            assert max(latencies) < 1.0, latencies
        finally:
            close_all(slow)
        served_quickly(server.url)


def test_thousands_of_idle_connections_are_closed_by_the_keep_alive_timeout(http_impl: str) -> None:
    """2,000 connections opened and held without a byte: a normal client is served meanwhile, and
    --timeout-keep-alive closes them all."""
    with run_server(apps.hello, http=http_impl, timeout_keep_alive=2) as server:
        started = time.monotonic()
        idle = open_many(server.port, 2000)
        try:
            for _ in range(3):
                served_quickly(server.url)
            closed, answers = wait_closed(idle, timeout=10)
            assert closed == 2000, f"only {closed} of 2000 idle connections were closed"
            assert answers == []  # closed quietly: nothing was asked
            assert time.monotonic() - started < 12
            deadline = time.monotonic() + 5
            while server.server.server_state.connections and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not server.server.server_state.connections
        finally:
            close_all(idle)
        served_quickly(server.url)


# -- a client that never reads: the app is back-pressured, the server's memory stays bounded

CHUNK = b"x" * 65536


class StreamStats:
    sent = 0
    streams = 0
    finished = 0


async def endless_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/stream``: 64 KiB chunks until the client goes away. ``/stats``: bytes sent so far, streams."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/stats":
        body = b"%d %d %d" % (StreamStats.sent, StreamStats.streams, StreamStats.finished)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return
    StreamStats.streams += 1
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        while not gone.is_set():
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            StreamStats.sent += len(CHUNK)
    finally:
        watcher.cancel()
        StreamStats.streams -= 1
        StreamStats.finished += 1


def _stats(port: int) -> tuple[int, int, int]:
    text = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).text
    sent, streams, finished = (int(value) for value in text.split())
    return sent, streams, finished


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_a_client_that_never_reads_back_pressures_the_app(cli: Any, http: str) -> None:
    port = free_port()
    server = cli(
        "tests.http.test_abuse:endless_stream", "--port", str(port), "--http", http, "--no-access-log"
    )
    assert server.wait_for("running on", 15), server.output
    pid = server.process.pid
    rss_before = _rss_kib(pid)
    readers = []
    for _ in range(4):  # four clients that ask for the stream and never read a byte
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append(sock)
    try:
        time.sleep(1.5)
        sent_early, streams, _ = _stats(port)
        time.sleep(1.5)
        sent_late, streams_late, _ = _stats(port)
        rss_during = _rss_kib(pid)
        assert streams == streams_late == 4
        # send() blocks: the app is stuck at what the socket buffers hold, and not a byte more.
        assert sent_late == sent_early, (sent_early, sent_late)
        assert sent_late < 4 * 16 * 1024 * 1024, sent_late
        assert rss_during - rss_before < 64 * 1024, (
            rss_before,
            rss_during,
        )  # KiB: bounded, not 4 streams' worth
    finally:
        close_all(readers)
    # Gone clients: the app sees the disconnect, its streams end, the server goes on.
    deadline = time.monotonic() + 10
    while _stats(port)[1] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _stats(port)[1:] == (0, 4)
    assert httpx.get(f"http://127.0.0.1:{port}/stats", timeout=5).status_code == 200


def test_websocket_handshakes_that_never_complete(http_impl: str) -> None:
    """300 connections send part of an upgrade request and stop: closed by --timeout-request-header,
    while a normal WebSocket and a normal request are served."""
    from tests.fuzzing import FuzzApp, probe_ws

    with run_server(
        FuzzApp(), http=http_impl, ws="websockets", timeout_request_header=2, timeout_keep_alive=30
    ) as server:
        stuck = open_many(server.port, 300)
        try:
            for sock in stuck:
                sock.send(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
            probe_ws(server.port)
            started = time.monotonic()
            closed, answers = wait_closed(stuck, timeout=8)
            assert closed == 300
            assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
            assert time.monotonic() - started < 6
            probe_ws(server.port)
        finally:
            close_all(stuck)


def test_limit_concurrency_holds_under_a_flood(http_impl: str) -> None:
    """50 slow requests at once against --limit-concurrency 10: at most 10 run, the rest get 503 at
    once; WebSockets count against the same limit."""
    running = {"now": 0, "most": 0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await receive()
            return
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.5)
        running["now"] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    with run_server(app, http=http_impl, limit_concurrency=10) as server:
        with ThreadPoolExecutor(50) as pool:
            statuses = list(pool.map(lambda _: httpx.get(server.url, timeout=10).status_code, range(50)))
        assert running["most"] <= 10
        assert statuses.count(200) >= 10 and set(statuses) <= {200, 503}
        assert httpx.get(server.url, timeout=5).status_code == 200


def test_backlog_is_the_listen_queue(http_impl: str) -> None:
    """--backlog is what the kernel queues: ``ss`` shows it on the listening socket, and connections
    queued while the loop is blocked are all served once it is free."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed")

    async def blocking(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/block":
            time.sleep(1.0)  # blocks the event loop: new connections wait in the listen queue
        await apps.hello(scope, receive, send)

    with run_server(blocking, http=http_impl, backlog=64) as server:
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, timeout=5
        ).stdout
        assert listing.split()[2] == "64", listing  # Send-Q of a listening socket is its backlog
        blocker = server.connect()
        blocker.sendall(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        queued = open_many(server.port, 40)  # within the backlog: the kernel completes them
        try:
            for sock in queued:
                sock.setblocking(True)
                sock.settimeout(10)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_response(blocker)[0] == 200
            assert [read_response(sock, timeout=10)[0] for sock in queued] == [200] * 40
        finally:
            close_all(queued)
            blocker.close()
