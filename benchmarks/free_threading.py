"""Thread workers against process workers on free-threaded Python (``make bench-ft``).

Throughput: a CPU-bound application (about 1-2 ms of pure Python per request) and the plaintext one,
each served by one worker, two thread workers and two process workers, interleaved (every round runs
the three, in a rotating order) and measured with ``wrk``. Nothing is pinned: the workers need both
cores, and ``wrk`` shares them (for the CPU-bound application it needs little).

Memory: the whole server (the supervisor and every worker process) serving an application that holds
about 50 MB of Python objects, with four thread workers and with four process workers, after every
worker has served: the sum of RSS (which counts shared pages once per process) and of PSS (which
splits them) over the process tree.

Writes a Markdown table to stdout, and the figures (JSON) and a chart (PNG) when asked::

    make bench-ft ARGS="--rounds 5 --json benchmarks/reference/free-threading.json"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import run  # noqa: E402
from benchmarks.chart import draw_ratio_chart  # noqa: E402

#: Worker settings compared for throughput, with the one ratios are taken against first.
LAYOUTS: dict[str, list[str]] = {
    "1 worker": ["--workers", "1"],
    "2 threads": ["--workers", "2", "--worker-class", "thread"],
    "2 processes": ["--workers", "2", "--worker-class", "process"],
}
#: Workload: (application, wrk connections).
WORKLOADS: dict[str, tuple[str, int]] = {
    "cpu-bound": ("benchmarks.free_threading_apps:cpu_bound", 8),
    "plaintext": ("benchmarks.apps:plaintext", 64),
}
MEMORY_APP = "benchmarks.free_threading_apps:big_state"
MEMORY_WORKERS = 4


def ensure_wrk() -> None:
    """Install wrk from Debian's packages when it is missing (as root, or through sudo)."""
    if shutil.which("wrk"):
        return
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if prefix and not shutil.which("sudo"):
        sys.exit("wrk is missing and cannot be installed without root: apt-get install wrk")
    subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, timeout=600)
    subprocess.run([*prefix, "apt-get", "install", "-y", "-q", "wrk"], check=True, timeout=600)


@contextlib.contextmanager
def serving(app: str, worker_args: Sequence[str]) -> Iterator[tuple[int, int]]:
    """A fulmen server (its own session, access log off); yields (pid, port), then stops it."""
    port = run.free_port()
    command = [sys.executable, "-m", "fulmen", app, "--host", run.HOST, "--port", str(port)]
    command += ["--no-access-log", "--log-level", "warning", *worker_args]
    with run.running_process(command, port) as proc:
        yield proc.pid, port


def wrk(port: int, connections: int, seconds: float) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "--latency"]
    result = subprocess.run(
        [*command, f"http://{run.HOST}:{port}/"], capture_output=True, text=True, timeout=seconds + 30
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr.strip() or result.stdout.strip()}")
    parsed = run.parse_wrk(result.stdout)
    if parsed["requests"] == 0 or parsed["socket_errors"] or parsed["non_2xx"]:
        raise RuntimeError(f"wrk saw errors: {result.stdout.strip()[-400:]}")
    return parsed


def cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a server, its threads and worker processes, so far."""
    ticks = sum(run._cpu_ticks(p) or 0 for p in process_tree(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def throughput(workload: str, layout: str, seconds: float) -> dict[str, Any]:
    """req/s, and the server's CPU time per request: the second does not depend on how many cores
    other work on the machine left free, so it shows what sharing costs the workers."""
    app, connections = WORKLOADS[workload]
    busy_before = run.background_busy(range(os.cpu_count() or 1))
    with serving(app, LAYOUTS[layout]) as (pid, port):
        wrk(port, connections, 1.0)  # warm-up: every worker has accepted and answered
        cpu_before = cpu_seconds(pid)
        result = wrk(port, connections, seconds)
        cpu = cpu_seconds(pid) - cpu_before
    result["cpu_us_per_request"] = round(cpu / result["requests"] * 1e6, 1)
    result["busy_before_pct"] = round(busy_before, 1)
    return result


def _pss_kib(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def process_tree(pid: int) -> list[int]:
    pids, pending = [], [pid]
    while pending:
        current = pending.pop()
        pids.append(current)
        pending.extend(run._children(current))
    return pids


def memory(kind: str) -> dict[str, Any]:
    args = ["--workers", str(MEMORY_WORKERS), "--worker-class", kind]
    with serving(MEMORY_APP, args) as (pid, port):
        wrk(port, 16, 2.0)  # every worker has imported the application and served
        time.sleep(1.0)
        pids = [p for p in process_tree(pid) if b"resource_tracker" not in _cmdline(p)]
        return {
            "processes": len(pids),
            "rss_mib": round(sum(run._rss_kib(p) for p in pids) / 1024, 1),
            "pss_mib": round(sum(_pss_kib(p) for p in pids) / 1024, 1),
        }


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def cpu_ms_per_request() -> dict[str, float]:
    """What the CPU-bound application's work costs alone (best of 20 runs), in the thread that
    imported it and in another one: on free-threaded CPython only the thread that created an object
    (the module's constants, here) counts its references without atomic operations."""
    from benchmarks.free_threading_apps import burn

    def best() -> float:
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            burn()
            timings.append(time.perf_counter() - start)
        return round(min(timings) * 1000, 2)

    other: list[float] = []
    thread = threading.Thread(target=lambda: other.append(best()))
    thread.start()
    thread.join()
    return {"importing_thread": best(), "other_thread": other[0]}


def table(results: dict[str, Any]) -> str:
    lines = [
        "| workload | layout | median req/s | ratio to 1 worker | CPU µs per request | req/s per round |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for workload, layouts in results["throughput"].items():
        for layout, summary in layouts.items():
            rounds = ", ".join(f"{value:.0f}" for value in summary["rounds"])
            lines.append(
                f"| {workload} | {layout} | {summary['median']:.0f} | {summary['ratio']:.2f} "
                f"| {summary['cpu_us_per_request']:.0f} | {rounds} |"
            )
    mem = results["memory"]
    threads, processes = mem["thread"], mem["process"]
    lines += [
        "",
        f"| {MEMORY_WORKERS} workers, 50 MB application | processes | RSS, MiB | PSS, MiB |",
        "| --- | ---: | ---: | ---: |",
        f"| threads | {threads['processes']} | {threads['rss_mib']} | {threads['pss_mib']} |",
        f"| processes | {processes['processes']} | {processes['rss_mib']} | {processes['pss_mib']} |",
        f"| threads / processes | | {mem['rss_ratio']:.2f} | {mem['pss_ratio']:.2f} |",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="wrk duration of each run")
    parser.add_argument("--json", help="write the figures here, and the chart beside it (.png)")
    ns = parser.parse_args(argv)
    if sysconfig.get_config_var("Py_GIL_DISABLED") != 1 or getattr(sys, "_is_gil_enabled", lambda: True)():
        sys.exit("run on a free-threaded Python with the GIL off: make bench-ft")
    ensure_wrk()

    layouts = list(LAYOUTS)
    raw: dict[str, dict[str, list[float]]] = {w: {layout: [] for layout in layouts} for w in WORKLOADS}
    cpu: dict[str, dict[str, list[float]]] = {w: {layout: [] for layout in layouts} for w in WORKLOADS}
    busy: list[float] = []
    for rnd in range(ns.rounds):
        order = layouts[rnd % len(layouts) :] + layouts[: rnd % len(layouts)]
        for workload in WORKLOADS:
            for layout in order:
                result = throughput(workload, layout, ns.seconds)
                raw[workload][layout].append(result["requests_per_s"])
                cpu[workload][layout].append(result["cpu_us_per_request"])
                busy.append(result["busy_before_pct"])
                print(f"round {rnd + 1} {workload:9} {layout:11} {result['requests_per_s']:9.0f} req/s "
                      f"{result['cpu_us_per_request']:8.1f} us CPU/request", file=sys.stderr)  # fmt: skip
    results: dict[str, Any] = {"throughput": {}, "memory": {}}
    for workload, by_layout in raw.items():
        base = statistics.median(by_layout[layouts[0]])
        results["throughput"][workload] = {
            layout: {"rounds": values, "median": statistics.median(values),
                     "ratio": statistics.median(values) / base,
                     "cpu_us_per_request": statistics.median(cpu[workload][layout])}
            for layout, values in by_layout.items()
        }  # fmt: skip
    for kind in ("thread", "process"):
        results["memory"][kind] = memory(kind)
    mem = results["memory"]
    mem["rss_ratio"] = mem["thread"]["rss_mib"] / mem["process"]["rss_mib"]
    mem["pss_ratio"] = mem["thread"]["pss_mib"] / mem["process"]["pss_mib"]
    results["cpu_ms_per_request"] = cpu_ms_per_request()
    results["cpu_busy_before_runs_pct"] = {"median": statistics.median(busy), "max": max(busy)}
    results["machine"] = run.machine_info()
    results["git"] = run.git_info()
    results["command"] = "make bench-ft ARGS='" + " ".join(argv if argv is not None else sys.argv[1:]) + "'"

    print(table(results))
    alone = results["cpu_ms_per_request"]
    print(f"\nCPU-bound application alone: {alone['importing_thread']} ms of Python per request in the "
          f"thread that imported it, {alone['other_thread']} ms in another thread; "
          f"CPUs busy before the runs: median {results['cpu_busy_before_runs_pct']['median']:.0f} %, "
          f"max {results['cpu_busy_before_runs_pct']['max']:.0f} %.")  # fmt: skip
    if ns.json:
        path = Path(ns.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n")
        groups = list(WORKLOADS) + [f"RSS {MEMORY_WORKERS} workers"]
        # Throughput: 2 workers over 1; memory: each kind over 4 processes.
        series = [
            (kind, [*(results["throughput"][w][layout]["ratio"] for w in WORKLOADS), memory_ratio])
            for kind, layout, memory_ratio in (
                ("threads", "2 threads", mem["rss_ratio"]),
                ("processes", "2 processes", 1.0),
            )
        ]
        version = f"{sys.version_info[0]}.{sys.version_info[1]}t"
        title = f"python {version}: 2 workers / 1 (req/s), 4 workers / 4 processes (RSS)"
        draw_ratio_chart(str(path.with_suffix(".png")), groups, series, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
