"""--metrics-bind: the Prometheus page of one server and of a supervisor's workers, checked by promtool
and scraped by a real Prometheus server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulmen.metrics.aggregate import PoolMetrics
from fulmen.metrics.exposition import render
from fulmen.metrics.recorder import HTTP1, Snapshot, WorkerMetrics
from tests.apps import worker_pid
from tests.conftest import ROOT, free_port, run_server, stop_process, wait_until
from tests.system_tools import require_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

APP = "tests.apps:worker_pid"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """The samples of a page in the text format: (name, labels) -> value."""
    found: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = [pair.split("=", 1) for pair in labels.rstrip("}").split(",") if pair]
        found[(name, frozenset((key, raw.strip('"')) for key, raw in pairs))] = float(value)
    return found


def value(page: Samples, name: str, **labels: str) -> float:
    return page[(name, frozenset(labels.items()))]


def total(page: Samples, name: str, **labels: str) -> float:
    """The sum of every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in page.items() if n == name and wanted <= series)


def scrape(port: int) -> tuple[str, Samples]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text, samples(response.text)


def promtool_check(text: str) -> None:
    promtool = require_command("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the page


def test_empty_and_busy_pages_pass_promtool() -> None:
    metrics = WorkerMetrics()
    pool = PoolMetrics(lambda: [], lambda: [])
    promtool_check(render(pool.report()))
    for status, elapsed in [(200, 0.0001), (404, 0.003), (500, 2.0), (101, 0.0)]:
        metrics.record(HTTP1 + status, time.monotonic() - elapsed, 10)
    report = pool.report()
    report.totals = metrics.snapshot()
    promtool_check(render(report))


def test_histogram_buckets_are_cumulative() -> None:
    metrics = WorkerMetrics()
    now = time.monotonic()
    for elapsed in (0.0001, 0.0002, 0.003, 0.2, 100.0):
        metrics.record(HTTP1 + 200, now - elapsed, 0)
    pool = PoolMetrics(lambda: [], lambda: [])
    report = pool.report()
    report.totals = metrics.snapshot()
    page = samples(render(report))
    bucket = "fulmen_request_duration_seconds_bucket"
    assert value(page, bucket, le="0.0005") == 2
    assert value(page, bucket, le="0.005") == 3
    assert value(page, bucket, le="0.25") == 4
    assert value(page, bucket, le="30.0") == 4
    assert value(page, bucket, le="+Inf") == value(page, "fulmen_request_duration_seconds_count") == 5
    assert value(page, "fulmen_requests_total", protocol="http/1.1", status="2xx") == 5


class FakeWorker:
    """A worker handle whose snapshot the test sets (the aggregation only reads metrics_snapshot())."""

    def __init__(self, requests: int) -> None:
        self.snapshot = Snapshot()
        self.set(requests)

    def set(self, requests: int) -> None:
        self.snapshot = Snapshot(requests=[0, 0, requests] + [0] * 15, received_bytes=requests)

    def metrics_snapshot(self) -> Snapshot:
        return self.snapshot


def test_pool_totals_keep_the_counts_of_ended_workers() -> None:
    serving = [FakeWorker(5), FakeWorker(7)]
    draining: list[FakeWorker] = []
    pool = PoolMetrics(lambda: list(serving), lambda: list(draining))

    def requests() -> int:
        return pool.report().totals.requests[2]

    assert requests() == 12
    serving[0].set(9)
    assert requests() == 16
    draining.append(serving.pop(0))  # retired: still counted while it drains
    serving.append(FakeWorker(1))
    assert requests() == 17
    draining[0].set(11)  # it served two more before ending
    draining.clear()
    assert requests() == 19, "an ended worker's last counts stay in the totals"
    # Workers that come and go between two scrapes are still counted: the pool tracks every turn.
    short_lived = FakeWorker(3)
    short_lived.snapshot = None  # type: ignore[assignment]  # no health-check answer yet
    serving.append(short_lived)
    pool.track()
    short_lived.set(3)  # its last message, read as it ended
    serving.remove(short_lived)
    assert requests() == 22


# -- one server


def test_single_server_counts_what_it_serves() -> None:
    port = free_port()
    with run_server(worker_pid, metrics_bind=f"127.0.0.1:{port}", http="h11") as server:
        with httpx.Client(timeout=5) as client:
            for _ in range(3):
                assert client.get(f"{server.url}/").status_code == 200
            assert client.get(f"{server.url}/missing").status_code == 404
            body_bytes = 4 * len(str(os.getpid()))
            # A malformed request gets the server's own 400, counted too.
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
                raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n")
                assert raw.recv(100).startswith(b"HTTP/1.1 400")
            text, page = scrape(port)
            promtool_check(text)
            assert value(page, "fulmen_requests_total", protocol="http/1.1", status="2xx") == 3
            assert value(page, "fulmen_requests_total", protocol="http/1.1", status="4xx") == 2
            assert value(page, "fulmen_request_duration_seconds_count") == 4
            assert value(page, "fulmen_response_body_bytes_total") == body_bytes
            assert value(page, "fulmen_received_bytes_total") > 4 * len("GET / HTTP/1.1\r\n")
            assert value(page, "fulmen_connections") == 1, "the client's keep-alive connection"
            assert value(page, "fulmen_workers") == 1
            assert value(page, "fulmen_event_loop_lag_seconds", worker="0") < 1
            assert value(page, "process_resident_memory_bytes") > 10_000_000
            assert ("fulmen_worker_restarts_total", frozenset({("cause", "crashed")})) not in page
        missing = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert missing.status_code == 404, "the metrics listener serves /metrics and nothing else"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)  # closed with the server


def test_http2_and_websocket_are_counted() -> None:
    port = free_port()
    with run_server(worker_pid, metrics_bind=f"127.0.0.1:{port}", http2=True) as server:
        with httpx.Client(http1=False, http2=True, timeout=5) as client:
            response = client.get(f"{server.url}/")
            assert response.http_version == "HTTP/2" and response.status_code == 200
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{server.port}/", open_timeout=5) as websocket:
            websocket.send("hi")
            assert websocket.recv(timeout=5) == "hi"
            _, page = scrape(port)
            assert value(page, "fulmen_websockets") == 1
        _, page = scrape(port)
        assert value(page, "fulmen_requests_total", protocol="http/2", status="2xx") == 1
        assert value(page, "fulmen_requests_total", protocol="websocket", status="1xx") == 1
        assert wait_until(lambda: value(scrape(port)[1], "fulmen_websockets") == 0, 5)


def test_the_servers_own_answers_are_counted() -> None:
    """Requests the server answers itself, without the application, on each protocol: an HTTP/1.1
    head not complete in time (408), an HTTP/2 request with too many headers (431)."""
    port = free_port()
    options = {"http2": True, "limit_request_headers": 3, "timeout_request_header": 0.3}
    with run_server(worker_pid, metrics_bind=f"127.0.0.1:{port}", **options) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 408")
        with httpx.Client(http1=False, http2=True, timeout=5) as client:
            response = client.get(f"{server.url}/", headers={"a": "1", "b": "2", "c": "3", "d": "4"})
            assert response.http_version == "HTTP/2" and response.status_code == 431
        _, page = scrape(port)
        assert value(page, "fulmen_requests_total", protocol="http/1.1", status="4xx") == 1
        assert value(page, "fulmen_requests_total", protocol="http/2", status="4xx") == 1
        assert value(page, "fulmen_request_duration_seconds_count") == 0, "no request reached the app"


def test_metrics_bind_in_use_exits_3(cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = cli(APP, "--port", str(free_port()), "--metrics-bind", f"127.0.0.1:{port}")
        assert process.wait(20) == 3, process.output
    assert f"Cannot serve metrics on 127.0.0.1:{port}" in process.output
    assert "Traceback" not in process.output


# -- a supervisor's workers


def _worker_pids(process: Any) -> list[int]:
    marker = "Started server process ["
    return [int(line.split(marker)[1].split("]")[0]) for line in process.lines if marker in line]


def _get_all(port: int, count: int, path: str = "/") -> None:
    for _ in range(count):
        with httpx.Client(timeout=5) as client:  # a new connection each: every worker gets some
            client.get(f"http://127.0.0.1:{port}{path}")


def test_workers_summed_and_counters_never_go_backwards(cli: Any) -> None:
    port, metrics_port = free_port(), free_port()
    # Process workers (free-threaded Python's default would be threads): each has its own CPU counter.
    process = cli(
        APP, "--port", str(port), "--workers", "2", "--worker-class", "process",
        "--metrics-bind", f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    assert process.wait_for("Metrics at http://127.0.0.1:", 20), process.output
    assert wait_until(lambda: len(_worker_pids(process)) == 2, 20), process.output
    assert wait_until(lambda: value(scrape(metrics_port)[1], "fulmen_workers") == 2, 20), process.output
    _get_all(port, 30)
    _get_all(port, 5, "/missing")

    def requests() -> float:
        return total(scrape(metrics_port)[1], "fulmen_requests_total")

    assert wait_until(lambda: requests() == 35, 10), f"{requests()} requests counted, 35 made"
    text, page = scrape(metrics_port)
    promtool_check(text)
    assert value(page, "fulmen_requests_total", protocol="http/1.1", status="4xx") == 5
    assert value(page, "fulmen_worker_cpu_seconds_total") > 0
    assert {("worker", "0"), ("worker", "1")} == {
        label
        for (name, labels), _ in page.items()
        if name == "fulmen_worker_resident_memory_bytes"
        for label in labels
    }

    # SIGKILL one worker between two scrapes: no counter may go backwards.
    before = page
    os.kill(_worker_pids(process)[0], signal.SIGKILL)
    assert wait_until(lambda: "died (signal SIGKILL)" in process.output, 10), process.output
    assert wait_until(lambda: len(_worker_pids(process)) == 3, 30), process.output
    _get_all(port, 10)
    assert wait_until(lambda: requests() == 45, 10), f"{requests()} requests counted, 45 made"
    after = scrape(metrics_port)[1]
    for (name, labels), old in before.items():
        if name.endswith(("_total", "_bucket", "_count", "_sum")) and not name.startswith("process_"):
            assert after[(name, labels)] >= old, (name, labels, old, after[(name, labels)])
    assert value(after, "fulmen_worker_restarts_total", cause="crashed") == 1

    # A rolling restart: the stopping workers send their last counts, so none is lost.
    process.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: process.output.count("Finished server process") >= 2, 60), process.output
    assert wait_until(lambda: value(scrape(metrics_port)[1], "fulmen_workers") == 2, 20), process.output
    _get_all(port, 5)
    assert wait_until(lambda: requests() == 50, 10), f"{requests()} requests counted, 50 made"
    assert value(scrape(metrics_port)[1], "fulmen_worker_restarts_total", cause="rolling") == 2


def test_workers_that_stop_send_their_last_counts(cli: Any) -> None:
    """Workers ending after --limit-max-requests: the counts since their last health-check answer come
    with a last message, so the totals are exact (without it, most runs lose some)."""
    port, metrics_port = free_port(), free_port()
    args = ["--port", str(port), "--workers", "2", "--limit-max-requests", "4", "--no-access-log"]
    process = cli(APP, *args, "--metrics-bind", f"127.0.0.1:{metrics_port}")
    assert wait_until(lambda: process.output.count("Application startup complete") == 2, 20), process.output
    served = 0
    for _ in range(16):
        try:
            _get_all(port, 1)
            served += 1
        except httpx.TransportError:
            pass  # a worker past its limit may close before answering; that request is not counted
    assert wait_until(lambda: process.output.count("exited; starting a new one") >= 2, 20), process.output
    counted = 0.0

    def exact() -> bool:
        nonlocal counted
        counted = total(scrape(metrics_port)[1], "fulmen_requests_total")
        return counted == served

    assert wait_until(exact, 10), f"{counted} requests counted, {served} served\n{process.output}"


THREAD_SCRIPT = """
import sys
from fulmen import Config, Server
from fulmen.supervisors import Multithread

config = Config(app="tests.apps:worker_pid", port=int(sys.argv[1]), workers=2, metrics_bind=sys.argv[2])
Multithread(config, target=Server(config).run, sockets=[config.bind_socket()]).run()
"""


def test_thread_workers_summed() -> None:
    """Thread workers (the classes run on any interpreter; the command line wants a free-threaded one)."""
    port, metrics_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", THREAD_SCRIPT, str(port), f"127.0.0.1:{metrics_port}"],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait_until(
            lambda: _answers(metrics_port) and value(scrape(metrics_port)[1], "fulmen_workers") == 2, 20
        )
        _get_all(port, 12)
        _, page = scrape(metrics_port)
        assert total(page, "fulmen_requests_total") == 12, "thread workers are read directly: no delay"
        assert ("fulmen_worker_cpu_seconds_total", frozenset()) not in page
        assert value(page, "process_cpu_seconds_total") > 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    except httpx.TransportError:
        return False
    return True


# -- a real Prometheus server


def test_prometheus_scrapes_fulmen(cli: Any, tmp_path: Path) -> None:
    prometheus = require_command("prometheus", "prometheus")
    port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
    process = cli(APP, "--port", str(port), "--workers", "2", "--metrics-bind", f"127.0.0.1:{metrics_port}")
    assert process.wait_for("Metrics at", 20), process.output
    assert wait_until(lambda: process.output.count("Application startup complete") == 2, 20), process.output
    _get_all(port, 20)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        textwrap.dedent(
            f"""
            global:
              scrape_interval: 1s
            scrape_configs:
              - job_name: fulmen
                static_configs:
                  - targets: ["127.0.0.1:{metrics_port}"]
            """
        )
    )
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    query = urllib.parse.quote('sum(fulmen_requests_total{status="2xx"})')
    url = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}"
    try:
        deadline = time.monotonic() + 60
        result: list[Any] = []
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stderr.read().decode()[-2000:] if server.stderr else ""
            try:
                answer = json.loads(httpx.get(url, timeout=5).text)
                result = answer["data"]["result"]
                if result and float(result[0]["value"][1]) > 0:
                    break
            except (httpx.TransportError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert result and float(result[0]["value"][1]) >= 20, result
    finally:
        stop_process(server, 20)
