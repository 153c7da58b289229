"""Benchmark fulmen against uvicorn (and granian, when installed).

One command::

    python benchmarks/run.py                 # full run, see --help for the knobs
    python benchmarks/run.py --quick         # smoke check: 1 round, 3 s per run

For every (workload, connection count, round, server) the harness starts a
fresh server subprocess on a free loopback port with the access log off,
pinned to one CPU (``taskset -c 0``), waits until it answers (bounded), checks
that the response is correct, warms it up, then measures it with ``wrk`` (or
the WebSocket client in ``ws_client.py``) pinned to the other CPU, while
sampling the resident memory of the server's whole process tree from /proc.
Servers are interleaved (A B A B ...) so slow drifts of the machine hit all of
them alike.  The report gives, per workload, the median requests/s over the
rounds, its spread, the median p50/p99 latency, the peak RSS and the ratio of
each server's median to the baseline's (uvicorn).

Every wait is bounded and every server is killed at the end, also on Ctrl+C.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as _dt
import http.client
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import apps  # noqa: E402
from benchmarks.chart import draw_ratio_chart  # noqa: E402

HOST = "127.0.0.1"
ALL_SERVERS = ("fulmen", "uvicorn", "granian")
ALL_WORKLOADS = (
    "plaintext",
    "json",
    "headers",
    "echo",
    "stream",
    "websocket",
    "websocket-1k",
    "websocket-plain",
    "websocket-plain-1k",
    "fastapi",
)
#: WebSocket workloads: (message, permessage-deflate offered). ``websocket`` is what browsers do: the
#: client offers permessage-deflate as Chromium does and compresses its messages; the ``-plain`` ones
#: do not offer it. ``hello`` is 13 bytes of text, ``json1k`` about 1 KiB of JSON (ws_client.py).
WS_WORKLOADS = {
    "websocket": ("hello", True),
    "websocket-1k": ("json1k", True),
    "websocket-plain": ("hello", False),
    "websocket-plain-1k": ("json1k", False),
}
WRK_SCRIPTS: dict[str, str] = {"headers": "headers.lua", "echo": "echo.lua"}
ECHO_BODY = b"0123456789abcdef" * 1024  # must match benchmarks/wrk/echo.lua
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
RSS_INTERVAL = 0.1
CLIENT_BOUND_PCT = 90.0

# --------------------------------------------------------------------------- data


@dataclass
class RunResult:
    server: str
    workload: str
    connections: int
    round: int
    ok: bool = False
    error: str = ""
    requests_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests: int = 0
    peak_rss_mib: float = 0.0
    server_cpu_pct: float = 0.0
    client_cpu_pct: float | None = None
    core_busy_pct: dict[str, float] = field(default_factory=dict)
    background_busy_pct: float = 0.0
    foreign_cpu_pct: float = 0.0
    attempts: int = 1
    socket_errors: int = 0
    non_2xx: int = 0
    started_in_s: float = 0.0


@dataclass
class Summary:
    server: str
    workload: str
    connections: int
    rounds_ok: int
    median_rps: float
    min_rps: float
    max_rps: float
    stdev_rps: float
    p50_ms: float | None
    p99_ms: float | None
    peak_rss_mib: float
    server_cpu_pct: float
    client_cpu_pct: float | None = None
    ratio: float | None = None
    noisy_rounds: int = 0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- process control

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session: SIGTERM its group, then SIGKILL (bounded)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # Workers may outlive a supervisor that exited; the group id is still ours.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_TIMEOUT)
    with _LIVE_LOCK:
        _LIVE.pop(proc.pid, None)


def _kill_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in procs:
        _kill_tree(proc)


atexit.register(_kill_all)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _server_env(name: str = "") -> dict[str, str]:
    """The environment of a server: this checkout's ``src`` first, or for ``fulmen@PATH`` the ``src``
    of another checkout of fulmen (an earlier commit, measured interleaved with this one)."""
    env = dict(os.environ)
    _, _, other_checkout = name.partition("@")
    source = Path(other_checkout).resolve() / "src" if other_checkout else REPO_ROOT / "src"
    extra = [str(source), str(REPO_ROOT)]
    if env.get("PYTHONPATH"):
        extra.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


@dataclass
class Config:
    servers: list[str]
    workloads: list[str]
    rounds: int
    duration: int
    warmup: int
    connections: list[int]
    workers: int
    http: str
    loop: str
    baseline: str
    pin: bool
    server_cpu: int
    client_cpu: int
    ws_message_size: int | None
    ws_depth: int
    ws_client: str
    quiet_threshold: float
    quiet_wait: float
    foreign_threshold: float
    retries: int
    json_path: str | None
    chart_path: str | None
    quick: bool
    access_log: bool = False


def server_kind(name: str) -> str:
    """``uvicorn#2`` runs uvicorn under another label (an A/A run shows the noise floor);
    ``fulmen+log`` runs fulmen with its access log on, beside servers without; ``fulmen+metrics``
    runs fulmen with ``--metrics-bind`` (the cost of counting); ``fulmen@../other`` runs the fulmen of
    another checkout (before and after a change, in one interleaved run)."""
    return re.split(r"[#+@]", name, maxsplit=1)[0]


def access_log_on(name: str, cfg: Config) -> bool:
    return cfg.access_log or "+log" in name


def server_command(name: str, workload: str, port: int, cfg: Config) -> list[str]:
    access_log = access_log_on(name, cfg)
    with_metrics = "+metrics" in name
    name = server_kind(name)
    target = apps.workload_target(workload)
    py = sys.executable
    if name in ("fulmen", "uvicorn"):
        # Identical CLI for both: fulmen is a drop-in replacement.
        cmd = [
            py, "-m", name, target,
            "--host", HOST, "--port", str(port),
            "--http", cfg.http, "--loop", cfg.loop,
            "--workers", str(cfg.workers),
        ]  # fmt: skip
        # The access log as both servers write it by default (to a file here), or off.
        cmd += ["--log-level", "info"] if access_log else ["--no-access-log", "--log-level", "warning"]
        if with_metrics:
            cmd += ["--metrics-bind", f"{HOST}:{free_port()}"]
        if cfg.ws_client == "node" and workload in WS_WORKLOADS and not WS_WORKLOADS[workload][1]:
            # Node's client always offers permessage-deflate: the servers decline it instead.
            cmd += ["--ws-per-message-deflate", "false"]
    elif name == "granian":
        # Granian has its own HTTP stack (no --http httptools|h11); its access log is off by default.
        cmd = [
            py, "-m", "granian", "--interface", "asgi",
            "--host", HOST, "--port", str(port),
            "--workers", str(cfg.workers), "--loop", cfg.loop,
            "--log-level", "warning", target,
        ]  # fmt: skip
        if access_log:
            cmd.insert(-1, "--access-log")
    else:
        raise ValueError(f"unknown server {name!r}")
    if cfg.pin:
        cmd = ["taskset", "-c", str(cfg.server_cpu), *cmd]
    return cmd


def server_available(name: str) -> tuple[bool, str]:
    module = {"fulmen": "fulmen.__main__", "uvicorn": "uvicorn", "granian": "granian"}[server_kind(name)]
    probe = f"import importlib.util, sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    try:
        res = subprocess.run(
            [sys.executable, "-c", probe],
            env=_server_env(name),
            cwd=REPO_ROOT,
            timeout=30,
            capture_output=True,
        )
    except subprocess.TimeoutExpired:
        return False, f"probing {module} timed out"
    if res.returncode != 0:
        return False, f"module {module} is not importable"
    return True, ""


@contextlib.contextmanager
def running_server(name: str, workload: str, cfg: Config) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start a server, wait until it answers, yield (process, port); always stop it."""
    port = free_port()
    with running_process(server_command(name, workload, port, cfg), port, env=_server_env(name)) as proc:
        yield proc, port


def answers_http(port: int) -> bool:
    """Whether a server on ``port`` answers an HTTP/1.1 request."""
    status, _ = http_request(port, "GET", "/", timeout=1.0)
    return status > 0


@contextlib.contextmanager
def running_process(
    command: list[str],
    port: int,
    ready: Callable[[int], bool] = answers_http,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server's ``command``, wait until ``ready(port)``, yield the process; always stop it."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env if env is not None else _server_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
    try:
        _wait_ready(proc, port, log, ready)
        yield proc
    finally:
        _kill_tree(proc)
        log.close()


def _log_tail(log: Any, limit: int = 1500) -> str:
    with contextlib.suppress(OSError, ValueError):
        log.flush()
        log.seek(0)
        text: str = log.read().decode(errors="replace")
        return text[-limit:].strip()
    return ""


def _wait_ready(
    proc: subprocess.Popen[bytes], port: int, log: Any, ready: Callable[[int], bool] = answers_http
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last_error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}: {_log_tail(log)}")
        try:
            if ready(port):
                return
        except (OSError, http.client.HTTPException) as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT:.0f}s ({last_error}): {_log_tail(log)}")


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def validate(workload: str, port: int) -> None:
    """Check the server gives the right answer before timing it."""
    if workload in WS_WORKLOADS:
        return  # the WebSocket client counts mismatched echoes itself
    expected: bytes
    if workload == "plaintext":
        status, body = http_request(port, "GET", "/")
        expected = apps.PLAINTEXT_BODY
    elif workload in ("json", "fastapi"):
        status, body = http_request(port, "GET", "/")
        if status == 200 and json.loads(body) == apps.JSON_OBJECT:
            return
        expected = apps.JSON_BODY
    elif workload == "headers":
        status, body = http_request(port, "GET", "/", headers={"User-Agent": "fulmen-bench"})
        expected = apps.HEADERS_BODY
    elif workload == "echo":
        status, body = http_request(
            port, "POST", "/", body=ECHO_BODY, headers={"Content-Type": "application/octet-stream"}
        )
        expected = ECHO_BODY
    elif workload == "stream":
        status, body = http_request(port, "GET", "/")
        expected = apps.STREAM_CHUNK * apps.STREAM_CHUNKS
    else:
        raise ValueError(workload)
    if status != 200 or body != expected:
        raise RuntimeError(f"wrong response for {workload}: status {status}, {len(body)} bytes {body[:60]!r}")


# ------------------------------------------------------------------ RSS sampling


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(x) for x in fh.read().split())
        except (OSError, ValueError):
            continue
    return kids


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def _cpu_stat() -> dict[int, list[int]]:
    """Per-CPU jiffies from /proc/stat: {cpu: [user, nice, system, idle, iowait, irq, softirq, steal]}."""
    out: dict[int, list[int]] = {}
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/stat") as fh:
            for line in fh:
                name, _, rest = line.partition(" ")
                if name.startswith("cpu") and name[3:].isdigit():
                    out[int(name[3:])] = [int(x) for x in rest.split()]
    return out


def _busy_pct(before: dict[int, list[int]], after: dict[int, list[int]]) -> dict[int, float]:
    """Share of each CPU's time not idle (idle + iowait) between two /proc/stat readings."""
    busy: dict[int, float] = {}
    for cpu, b in after.items():
        a = before.get(cpu)
        if not a or len(a) < 5 or len(b) < 5:
            continue
        total = sum(b[:8]) - sum(a[:8])
        idle = (b[3] + b[4]) - (a[3] + a[4])
        if total > 0:
            busy[cpu] = round(100.0 * (total - idle) / total, 1)
    return busy


def background_busy(cpus: Sequence[int], window: float = 0.5) -> float:
    """Highest busy share of ``cpus`` over ``window`` seconds, with no server running."""
    before = _cpu_stat()
    time.sleep(window)
    busy = _busy_pct(before, _cpu_stat())
    return max((busy.get(c, 0.0) for c in cpus), default=0.0)


def wait_for_quiet(cfg: Config) -> float:
    """Wait (bounded by cfg.quiet_wait) until the benchmark CPUs are idle; return the last busy %.

    Other work on the machine (a test suite, a build) skews the figures; the
    harness cannot stop it, but it can wait a little and record how busy the
    CPUs were just before each run.
    """
    cpus = [cfg.server_cpu, cfg.client_cpu] if cfg.pin else list(range(os.cpu_count() or 1))
    deadline = time.monotonic() + cfg.quiet_wait
    busy = background_busy(cpus)
    while busy > cfg.quiet_threshold and time.monotonic() < deadline:
        busy = background_busy(cpus)
    return busy


class ProcessTreeSampler:
    """Samples a process tree from /proc in a background thread.

    Tracks the peak of the summed VmRSS and the CPU time (user + system) the
    tree used while the sampler ran, as a percentage of one CPU.
    """

    def __init__(self, pid: int, interval: float = RSS_INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.cpu_pct = 0.0
        self.core_busy_pct: dict[int, float] = {}
        self.stat_delta: dict[int, list[int]] = {}
        self.elapsed = 0.0
        self.cpu_s = 0.0
        self._stat0: dict[int, list[int]] = {}
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler", daemon=True)

    def _tree(self) -> list[int]:
        pids: list[int] = []
        stack = [self.pid]
        while stack and len(pids) < 4096:
            pid = stack.pop()
            if pid not in pids:
                pids.append(pid)
                stack.extend(_children(pid))
        return pids

    def sample(self) -> None:
        total = 0
        for pid in self._tree():
            total += _rss_kib(pid)
            ticks = _cpu_ticks(pid)
            if ticks is not None:
                self._first.setdefault(pid, ticks)
                self._last[pid] = ticks
        self.peak_kib = max(self.peak_kib, total)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ProcessTreeSampler:
        self._stat0 = _cpu_stat()
        self._t0 = time.monotonic()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        elapsed = time.monotonic() - self._t0
        used = sum(self._last[p] - self._first[p] for p in self._last)
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.elapsed = elapsed
        self.cpu_s = used / hz
        self.cpu_pct = 100.0 * self.cpu_s / elapsed if elapsed > 0 else 0.0
        stat1 = _cpu_stat()
        self.core_busy_pct = _busy_pct(self._stat0, stat1)
        self.stat_delta = {
            cpu: [x - y for x, y in zip(after, self._stat0[cpu], strict=False)]
            for cpu, after in stat1.items()
            if cpu in self._stat0
        }


# ------------------------------------------------------------------ load drivers

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    """Extract throughput, latency percentiles and errors from ``wrk --latency`` output."""
    out: dict[str, Any] = {"requests_per_s": 0.0, "requests": 0, "socket_errors": 0, "non_2xx": 0}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if m:
        out["requests_per_s"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", output, re.M)
    if m:
        out["requests"] = int(m.group(1))
    dist = output.split("Latency Distribution", 1)[1] if "Latency Distribution" in output else ""
    for pct, value, unit in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\b", dist, re.M):
        out[f"p{int(float(pct))}_ms"] = _to_ms(value, unit)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if m:
        out["socket_errors"] = sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if m:
        out["non_2xx"] = int(m.group(1))
    return out


def _client_prefix(cfg: Config) -> list[str]:
    return ["taskset", "-c", str(cfg.client_cpu)] if cfg.pin else []


def run_wrk(workload: str, port: int, connections: int, seconds: int, cfg: Config) -> dict[str, Any]:
    cmd = [
        *_client_prefix(cfg), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
        "--timeout", "5s", "--latency",
    ]  # fmt: skip
    script = WRK_SCRIPTS.get(workload)
    if script:
        cmd += ["-s", str(BENCH_DIR / "wrk" / script)]
    cmd.append(f"http://{HOST}:{port}/")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    if res.returncode != 0:
        raise RuntimeError(f"wrk failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")
    parsed = parse_wrk(res.stdout)
    if parsed["requests"] == 0:
        raise RuntimeError(f"wrk completed no request: {res.stdout.strip()[-400:]}")
    return parsed


def run_ws(workload: str, port: int, connections: int, seconds: int, cfg: Config) -> dict[str, Any]:
    message, deflate = WS_WORKLOADS[workload]
    if cfg.ws_client == "node":
        return _parse_ws_client(run_node_ws(message, port, connections, seconds, cfg))
    cmd = [
        *_client_prefix(cfg), sys.executable, str(BENCH_DIR / "ws_client.py"), f"ws://{HOST}:{port}/",
        "--connections", str(connections), "--duration", str(seconds), "--depth", str(cfg.ws_depth),
    ]  # fmt: skip
    cmd += ["--size", str(cfg.ws_message_size)] if cfg.ws_message_size else ["--message", message]
    if deflate:
        cmd.append("--deflate")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 40, env=_server_env())
    return _parse_ws_client(res)


def run_node_ws(message: str, port: int, connections: int, seconds: int, cfg: Config) -> Any:
    """The same run with Node's built-in WebSocket client (benchmarks/ws_client.mjs): it offers
    permessage-deflate as Chromium does but sends uncompressed, and inflates in JavaScript, so it
    saturates its CPU before the server on 1 KiB messages."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("--ws-client node needs Node.js (20 or later) on the PATH")
    cmd = [
        *_client_prefix(cfg), node, "--experimental-websocket", "--no-warnings",
        str(BENCH_DIR / "ws_client.mjs"), f"ws://{HOST}:{port}/",
        "--connections", str(connections), "--duration", str(seconds), "--depth", str(cfg.ws_depth),
        "--message", message,
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 40)


def _parse_ws_client(res: Any) -> dict[str, Any]:
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"ws_client printed nothing (rc {res.returncode}): {res.stderr.strip()[-400:]}")
    data = json.loads(lines[-1])
    if data["messages"] == 0:
        why = data.get("first_error") or f"{data['errors']} error(s)"
        raise RuntimeError(f"WebSocket client exchanged no message ({data['connections']} connected): {why}")
    return {
        "requests_per_s": data["messages_per_s"],
        "requests": data["messages"],
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "socket_errors": data["errors"],
        "non_2xx": data["mismatches"],
        "client_cpu_pct": data.get("client_cpu_pct"),
    }


def drive(workload: str, port: int, connections: int, seconds: int, cfg: Config) -> dict[str, Any]:
    if workload in WS_WORKLOADS:
        return run_ws(workload, port, connections, seconds, cfg)
    return run_wrk(workload, port, connections, seconds, cfg)


@dataclass(frozen=True)
class Harness:
    """How a family of workloads starts its servers, checks their answers and loads them: wrk and the
    WebSocket client here, h2load in ``h2.py``. The rest (interleaving, sampling, retries, the report
    and the chart) is shared."""

    #: (server, workload, cfg) -> a context giving the running server's process and port
    start: Callable[[str, str, Config], AbstractContextManager[tuple[subprocess.Popen[bytes], int]]]
    #: (server, workload, port): raise unless the server answers right
    validate: Callable[[str, str, int], None]
    #: (server, workload, port, connections, seconds, cfg) -> the load generator's figures
    drive: Callable[[str, str, int, int, int, Config], dict[str, Any]]
    #: Whether a server takes part in a workload (all of them here).
    applies: Callable[[str, str], bool] = lambda server, workload: True


WRK_HARNESS = Harness(
    start=running_server,
    validate=lambda server, workload, port: validate(workload, port),
    drive=lambda server, *load: drive(*load),
)


def measure(
    server: str, workload: str, connections: int, rnd: int, cfg: Config, harness: Harness = WRK_HARNESS
) -> RunResult:
    result = RunResult(server, workload, connections, rnd)
    result.background_busy_pct = round(wait_for_quiet(cfg), 1)
    t0 = time.monotonic()
    try:
        with harness.start(server, workload, cfg) as (proc, port):
            result.started_in_s = round(time.monotonic() - t0, 3)
            harness.validate(server, workload, port)
            if cfg.warmup > 0:
                harness.drive(server, workload, port, connections, cfg.warmup, cfg)
            known0 = _rusage_cpu(resource.RUSAGE_CHILDREN) + _rusage_cpu(resource.RUSAGE_SELF)
            with ProcessTreeSampler(proc.pid) as sampler:
                data = harness.drive(server, workload, port, connections, cfg.duration, cfg)
            known = _rusage_cpu(resource.RUSAGE_CHILDREN) + _rusage_cpu(resource.RUSAGE_SELF) - known0
            if proc.poll() is not None:
                raise RuntimeError(f"server died during the run (exit {proc.returncode})")
        if data["non_2xx"]:
            # A fast wrong answer must not win: the apps only ever answer 200 / the same message.
            what = "wrong echoes" if workload in WS_WORKLOADS else "non-2xx responses"
            raise RuntimeError(f"{data['non_2xx']} {what} out of {data['requests']}")
        result.requests_per_s = round(float(data["requests_per_s"]), 2)
        result.requests = int(data["requests"])
        result.p50_ms = _round_opt(data.get("p50_ms"))
        result.p99_ms = _round_opt(data.get("p99_ms"))
        result.socket_errors = int(data["socket_errors"])
        result.non_2xx = int(data["non_2xx"])
        result.peak_rss_mib = round(sampler.peak_kib / 1024, 2)
        result.server_cpu_pct = round(sampler.cpu_pct, 1)
        result.core_busy_pct = {str(k): v for k, v in sampler.core_busy_pct.items()}
        result.client_cpu_pct = _round_opt(data.get("client_cpu_pct"))
        cpus = [cfg.server_cpu, cfg.client_cpu] if cfg.pin else sorted(sampler.stat_delta)
        result.foreign_cpu_pct = round(foreign_cpu_pct(sampler, known, cpus), 1)
        result.ok = True
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, http.client.HTTPException) as exc:
        result.error = str(exc).strip()[:2000] or type(exc).__name__
    return result


def _rusage_cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def foreign_cpu_pct(sampler: ProcessTreeSampler, known_s: float, cpus: Sequence[int]) -> float:
    """CPU time on the benchmark CPUs not explained by the benchmark, in % of one CPU.

    busy time of the CPUs (including time stolen by a hypervisor), minus the
    kernel's interrupt work (loopback traffic), the server tree, the load
    generator and the harness itself.  What is left is other work on the machine.
    """
    hz = os.sysconf("SC_CLK_TCK")
    busy = irq = 0
    for cpu in cpus:
        d = sampler.stat_delta.get(cpu)
        if not d or len(d) < 7:
            continue
        busy += sum(d[:8]) - d[3] - d[4]
        irq += d[5] + d[6]
    if sampler.elapsed <= 0:
        return 0.0
    foreign = (busy - irq) / hz - sampler.cpu_s - known_s
    return max(0.0, 100.0 * foreign / sampler.elapsed)


def measure_with_retries(
    server: str, workload: str, connections: int, rnd: int, cfg: Config, harness: Harness = WRK_HARNESS
) -> RunResult:
    """Measure; when other work on the machine disturbed the run, measure again (bounded).

    Of the attempts, the least disturbed one is kept.
    """
    best: RunResult | None = None
    for attempt in range(1, cfg.retries + 2):
        result = measure(server, workload, connections, rnd, cfg, harness)
        result.attempts = attempt
        if not result.ok:
            return best or result
        if best is None or result.foreign_cpu_pct < best.foreign_cpu_pct:
            best = result
        if result.foreign_cpu_pct <= cfg.foreign_threshold:
            break
        if attempt <= cfg.retries:
            print(
                f"        {workload} {server} round {rnd}: others used {result.foreign_cpu_pct:.0f}% "
                f"of a CPU during the run ({result.requests_per_s:,.0f}/s); measuring again",
                flush=True,
            )
    assert best is not None
    best.attempts = attempt
    return best


def _cores(r: RunResult, cfg: Config) -> str:
    busy = r.core_busy_pct
    srv, cli = busy.get(str(cfg.server_cpu)), busy.get(str(cfg.client_cpu))
    if not cfg.pin or srv is None or cli is None:
        return ""
    return f"  cores busy {srv:.0f}/{cli:.0f}%"


def _disturbed(r: RunResult, cfg: Config) -> bool:
    return r.foreign_cpu_pct > cfg.foreign_threshold


def _round_opt(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


# ----------------------------------------------------------------- aggregation


def summarize(results: Sequence[RunResult], cfg: Config) -> list[Summary]:
    summaries: list[Summary] = []
    keys: list[tuple[str, int, str]] = []
    for r in results:
        key = (r.workload, r.connections, r.server)
        if key not in keys:
            keys.append(key)
    for workload, conns, server in keys:
        runs = [r for r in results if (r.workload, r.connections, r.server) == (workload, conns, server)]
        good = [r for r in runs if r.ok]
        rps = [r.requests_per_s for r in good]
        p50 = [r.p50_ms for r in good if r.p50_ms is not None]
        p99 = [r.p99_ms for r in good if r.p99_ms is not None]
        ccpu = [r.client_cpu_pct for r in good if r.client_cpu_pct is not None]
        summaries.append(
            Summary(
                server=server,
                workload=workload,
                connections=conns,
                rounds_ok=len(good),
                median_rps=round(statistics.median(rps), 2) if rps else 0.0,
                min_rps=min(rps) if rps else 0.0,
                max_rps=max(rps) if rps else 0.0,
                stdev_rps=round(statistics.stdev(rps), 2) if len(rps) > 1 else 0.0,
                p50_ms=round(statistics.median(p50), 3) if p50 else None,
                p99_ms=round(statistics.median(p99), 3) if p99 else None,
                peak_rss_mib=max((r.peak_rss_mib for r in good), default=0.0),
                server_cpu_pct=round(statistics.median([r.server_cpu_pct for r in good]), 1) if good else 0.0,
                client_cpu_pct=round(statistics.median(ccpu), 1) if ccpu else None,
                noisy_rounds=sum(1 for r in good if _disturbed(r, cfg)),
                errors=[r.error for r in runs if not r.ok],
            )
        )
    for s in summaries:
        base = next(
            (
                b
                for b in summaries
                if (b.workload, b.connections, b.server) == (s.workload, s.connections, cfg.baseline)
            ),
            None,
        )
        if base and base.median_rps > 0 and s.rounds_ok:
            s.ratio = round(s.median_rps / base.median_rps, 3)
    return summaries


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:.3f}" if v < 10 else f"{v:.1f}")


def format_table(summaries: Sequence[Summary], cfg: Config) -> str:
    head = (
        f"{'workload':<10} {'conns':>5} {'server':<10} {'req/s (median)':>15} {'min..max':>19} {'stdev':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'srv CPU':>7} {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    prev: tuple[str, int] | None = None
    for s in summaries:
        group = (s.workload, s.connections)
        if prev is not None and group != prev:
            lines.append("")
        prev = group
        if s.rounds_ok == 0:
            lines.append(f"{s.workload:<10} {s.connections:>5} {s.server:<10} FAILED: {s.errors[0][:90]}")
            continue
        unit = " msg/s" if s.workload in WS_WORKLOADS else ""
        spread = f"{s.min_rps:,.0f}..{s.max_rps:,.0f}"
        ratio = "-" if s.ratio is None else f"{s.ratio:.2f}x"
        lines.append(
            f"{s.workload:<10} {s.connections:>5} {s.server:<10} {s.median_rps:>15,.0f} {spread:>19} "
            f"{s.stdev_rps:>8,.0f} {_fmt_ms(s.p50_ms):>8} {_fmt_ms(s.p99_ms):>8} {s.peak_rss_mib:>8.1f} "
            f"{s.server_cpu_pct:>6.0f}% {ratio:>6}{unit}{' *' if s.noisy_rounds else ''}"
        )
        if s.client_cpu_pct is not None and s.client_cpu_pct >= CLIENT_BOUND_PCT:
            lines.append(
                f"{'':<17} ^ load generator at {s.client_cpu_pct:.0f}% CPU: client-bound, ratio understated"
            )
    if any(s.noisy_rounds for s in summaries):
        lines.append("")
        lines.append(
            f"* some rounds were disturbed (other processes used over {cfg.foreign_threshold:.0f}% of a CPU "
            "even after retries): treat those rows with care"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------- metadata


def _git(*args: str) -> str:
    try:
        res = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return res.stdout.strip() if res.returncode == 0 else ""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fulmen_version() -> str | None:
    installed = _version("fulmen")
    if installed:
        return installed
    try:
        text = (REPO_ROOT / "pyproject.toml").read_text()
    except OSError:
        return None
    m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return f"{m.group(1)} (source tree)" if m else None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        res = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
        first = (res.stdout or res.stderr).strip().splitlines()
        return first[0] if first else None
    return None


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "wrk": _wrk_version(),
        "packages": {
            "fulmen": _fulmen_version(),
            **{
                name: _version(name)
                for name in ("uvicorn", "granian", "httptools", "uvloop", "h11", "websockets", "wsproto")
            },
        },
    }


def git_info() -> dict[str, Any]:
    return {
        "revision": _git("rev-parse", "HEAD") or None,
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


# ----------------------------------------------------------------------- main


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark fulmen against uvicorn (and granian) with wrk; see benchmarks/README.md.",
    )
    p.add_argument("--servers", default="fulmen,uvicorn,granian",
                   help="comma list among fulmen,uvicorn,granian (missing ones are skipped); "
                        "default: %(default)s")  # fmt: skip
    p.add_argument("--workloads", default=",".join(ALL_WORKLOADS), help="comma list; default: %(default)s")
    p.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 5, --quick 1)")
    p.add_argument("--duration", type=int, help="seconds per measured run (default 6, --quick 3)")
    p.add_argument(
        "--warmup", type=int, help="warm-up seconds before each measured run (default 2, --quick 1)"
    )
    p.add_argument("--connections", default="64", help="comma list of concurrent connections; default: 64")
    p.add_argument("--workers", type=int, default=1, choices=(1, 2), help="server worker processes")
    p.add_argument("--http", default="httptools", choices=("httptools", "h11"))
    p.add_argument("--loop", default="uvloop", choices=("uvloop", "asyncio"))
    p.add_argument("--pure-python", action="store_true", help="shorthand for --http h11 --loop asyncio")
    p.add_argument(
        "--access-log",
        action="store_true",
        help="servers write their access log, as by default (off otherwise: --no-access-log)",
    )
    p.add_argument("--baseline", default="uvicorn", help="server the ratios are relative to")
    p.add_argument("--json", dest="json_path", metavar="OUT.json", help="write full results to this file")
    p.add_argument("--chart", dest="chart_path", metavar="OUT.png",
                   help="write a bar chart of the ratios (default: beside --json, as .png)")  # fmt: skip
    p.add_argument("--no-pin", action="store_true", help="do not pin server/client with taskset")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument(
        "--ws-message-size",
        type=int,
        help="WebSocket message size in bytes, in place of each WebSocket workload's own message",
    )
    p.add_argument(
        "--ws-client",
        choices=("python", "node"),
        default="python",
        help="WebSocket load generator: ws_client.py (default) or Node's built-in client (ws_client.mjs)",
    )
    p.add_argument(
        "--ws-depth", type=int, default=1, help="WebSocket messages in flight per connection (default 1)"
    )
    p.add_argument(
        "--quiet-threshold",
        type=float,
        default=15.0,
        help="before each run, wait while a benchmark CPU is busier than this %% (default 15)",
    )
    p.add_argument("--quiet-wait", type=float, default=20.0, help="longest such wait, seconds (default 20)")
    p.add_argument(
        "--foreign-threshold",
        type=float,
        default=15.0,
        help="a run during which other processes used more than this %% of a CPU is disturbed (default 15)",
    )
    p.add_argument(
        "--retries", type=int, default=2, help="times a disturbed run is measured again (default 2)"
    )
    p.add_argument("--quick", action="store_true", help="smoke check: 1 round, 3 s per run, 1 s warm-up")
    return p.parse_args(argv)


def build_config(ns: argparse.Namespace) -> Config:
    servers = _csv(ns.servers)
    if len(set(servers)) != len(servers):
        raise SystemExit("--servers lists a server twice; label a second copy, e.g. uvicorn,uvicorn#2")
    for s in servers:
        if server_kind(s) not in ALL_SERVERS:
            raise SystemExit(f"unknown server {s!r}; choose among {', '.join(ALL_SERVERS)}")
    workloads = _csv(ns.workloads)
    for w in workloads:
        if w not in ALL_WORKLOADS:
            raise SystemExit(f"unknown workload {w!r}; choose among {', '.join(ALL_WORKLOADS)}")
    try:
        connections = [int(c) for c in _csv(ns.connections)]
    except ValueError:
        raise SystemExit(f"--connections wants integers, got {ns.connections!r}") from None
    if not connections or min(connections) < 1:
        raise SystemExit("--connections wants positive integers")
    rounds = ns.rounds if ns.rounds is not None else (1 if ns.quick else 5)
    duration = ns.duration if ns.duration is not None else (3 if ns.quick else 6)
    warmup = ns.warmup if ns.warmup is not None else (1 if ns.quick else 2)
    if rounds < 1 or duration < 1 or warmup < 0:
        raise SystemExit("--rounds and --duration must be >= 1, --warmup >= 0")
    http_impl, loop = ("h11", "asyncio") if ns.pure_python else (ns.http, ns.loop)
    chart_path = ns.chart_path
    if chart_path is None and ns.json_path:
        chart_path = str(Path(ns.json_path).with_suffix(".png"))
    pin = not ns.no_pin
    if pin:
        ncpu = os.cpu_count() or 1
        if shutil.which("taskset") is None:
            print("note: taskset not found (util-linux); running unpinned", file=sys.stderr)
            pin = False
        elif ncpu < 2 or max(ns.server_cpu, ns.client_cpu) >= ncpu or ns.server_cpu == ns.client_cpu:
            print(f"note: cannot pin server/client to CPUs {ns.server_cpu}/{ns.client_cpu} "
                  f"on {ncpu} CPU(s); running unpinned", file=sys.stderr)  # fmt: skip
            pin = False
    return Config(
        servers=servers,
        workloads=workloads,
        rounds=rounds,
        duration=duration,
        warmup=warmup,
        connections=connections,
        workers=ns.workers,
        http=http_impl,
        loop=loop,
        baseline=ns.baseline,
        pin=pin,
        server_cpu=ns.server_cpu,
        client_cpu=ns.client_cpu,
        ws_message_size=ns.ws_message_size,
        ws_depth=max(1, ns.ws_depth),
        ws_client=ns.ws_client,
        quiet_threshold=ns.quiet_threshold,
        quiet_wait=max(0.0, ns.quiet_wait),
        foreign_threshold=ns.foreign_threshold,
        retries=max(0, ns.retries),
        json_path=ns.json_path,
        chart_path=chart_path,
        quick=ns.quick,
        access_log=ns.access_log,
    )


WRK_MISSING = """\
error: wrk is not installed (it generates the HTTP load).
  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y wrk
  macOS:          brew install wrk
Or run only the WebSocket workload:  python benchmarks/run.py --workloads websocket"""


def _check_prereqs(cfg: Config) -> list[str]:
    if any(w not in WS_WORKLOADS for w in cfg.workloads) and shutil.which("wrk") is None:
        print(WRK_MISSING, file=sys.stderr)
        raise SystemExit(2)
    servers: list[str] = []
    for name in cfg.servers:
        ok, why = server_available(name)
        if ok:
            servers.append(name)
        else:
            print(f"note: skipping {name}: {why}", file=sys.stderr)
    if not servers:
        raise SystemExit("error: none of the requested servers can be started")
    return servers


def write_outputs(
    cfg: Config, results: list[RunResult], summaries: list[Summary], started: float, complete: bool
) -> None:
    if cfg.json_path:
        doc = {
            "schema": 1,
            "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "complete": complete,
            "elapsed_s": round(time.monotonic() - started, 1),
            "git": git_info(),
            "machine": machine_info(),
            "config": asdict(cfg),
            "command": [os.path.relpath(sys.argv[0], REPO_ROOT) if sys.argv else "run.py", *sys.argv[1:]],
            "runs": [asdict(r) for r in results],
            "summary": [asdict(s) for s in summaries],
        }
        Path(cfg.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.json_path).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"results written to {cfg.json_path}")
    if cfg.chart_path and summaries:
        groups: list[tuple[str, int]] = []
        for s in summaries:
            if (s.workload, s.connections) not in groups:
                groups.append((s.workload, s.connections))
        servers = [n for n in cfg.servers if any(s.server == n for s in summaries)]
        servers.sort(key=lambda n: n != cfg.baseline)
        series: list[tuple[str, list[float | None]]] = []
        for name in servers:
            vals: list[float | None] = []
            for w, c in groups:
                match = [s.ratio for s in summaries if (s.workload, s.connections, s.server) == (w, c, name)]
                vals.append(match[0] if match else None)
            series.append((name, vals))
        labels = [f"{w} c{c}" for w, c in groups]
        title = f"req/s ratio vs {cfg.baseline} ({cfg.http}, {cfg.loop}, {cfg.workers} worker(s))"
        Path(cfg.chart_path).parent.mkdir(parents=True, exist_ok=True)
        backend = draw_ratio_chart(cfg.chart_path, labels, series, title)
        print(f"chart written to {cfg.chart_path} ({backend})")


def main(argv: Sequence[str] | None = None) -> int:
    cfg = build_config(parse_args(argv))
    cfg.servers = _check_prereqs(cfg)
    return run_plan(cfg, WRK_HARNESS)


def run_plan(cfg: Config, harness: Harness, notes: Callable[[list[Summary]], list[str]] | None = None) -> int:
    """Measure every (workload, connections, round, server) of ``cfg``, interleaved, then report;
    ``notes`` adds lines under the table. The exit status: 0 when every run succeeded."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if cfg.pin:
        # Keep the harness (and its RSS sampler) off the server's CPU.
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cfg.client_cpu})
    if cfg.baseline not in cfg.servers:
        print(f"note: baseline {cfg.baseline!r} not in the run; ratios are relative to {cfg.servers[0]!r}")
        cfg.baseline = cfg.servers[0]

    plan = [
        (workload, conns, rnd, server)
        for workload in cfg.workloads
        for conns in cfg.connections
        for rnd in range(1, cfg.rounds + 1)
        for server in cfg.servers
        if harness.applies(server, workload)
    ]
    per_run = cfg.duration + cfg.warmup + 2
    pinning = f"pinned server=CPU{cfg.server_cpu} client=CPU{cfg.client_cpu}" if cfg.pin else "unpinned"
    print(
        f"{len(plan)} runs ({', '.join(cfg.servers)} x {', '.join(cfg.workloads)} x c={cfg.connections} "
        f"x {cfg.rounds} round(s)), --http {cfg.http} --loop {cfg.loop} --workers {cfg.workers}"
        f"{', access log on' if cfg.access_log else ''}, "
        f"{pinning}; "
        f"about {len(plan) * per_run // 60 + 1} min",
        flush=True,
    )
    started = time.monotonic()
    results: list[RunResult] = []
    complete = False
    try:
        for i, (workload, conns, rnd, server) in enumerate(plan, 1):
            r = measure_with_retries(server, workload, conns, rnd, cfg, harness)
            results.append(r)
            tag = f"[{i:>3}/{len(plan)}] {workload:<9} c={conns:<4} round {rnd}/{cfg.rounds} {server:<8}"
            if r.ok:
                extra = ""
                if _disturbed(r, cfg):
                    extra += f"  [disturbed: others used {r.foreign_cpu_pct:.0f}% CPU]"
                if r.socket_errors or r.non_2xx:
                    extra += f"  (socket errors {r.socket_errors}, bad responses {r.non_2xx})"
                print(
                    f"{tag} {r.requests_per_s:>11,.0f}/s  p50 {_fmt_ms(r.p50_ms)} ms"
                    f"  p99 {_fmt_ms(r.p99_ms)} ms  RSS {r.peak_rss_mib:.1f} MiB  CPU {r.server_cpu_pct:.0f}%"
                    f"{'' if r.client_cpu_pct is None else f' (client {r.client_cpu_pct:.0f}%)'}"
                    f"{_cores(r, cfg)}  others {r.foreign_cpu_pct:.0f}%{extra}",
                    flush=True,
                )
            else:
                print(f"{tag} FAILED: {r.error[:300]}", flush=True)
        complete = True
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, reporting what was measured", file=sys.stderr)
    finally:
        _kill_all()

    summaries = summarize(results, cfg)
    print()
    print(format_table(summaries, cfg))
    print(f"\nratio = median req/s over median req/s of {cfg.baseline} (same workload and connections)")
    for line in notes(summaries) if notes is not None else ():
        print(line)
    write_outputs(cfg, results, summaries, started, complete)
    if not complete:
        return 130
    return 0 if all(s.rounds_ok for s in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
