"""Soak test: a long keep-alive load on one fulmen worker, counting failures and watching its memory.

HTTP: ``wrk`` sends ``--requests`` (default 1,000,000) keep-alive requests over ``--connections``
(default 256) connections to ``python -m fulmen benchmarks.apps:plaintext --no-access-log``, in
segments of ``--segment`` seconds until the count is reached. Failures are wrk's non-2xx responses and
socket errors (connect, read, write, timeout): there must be none.

WebSocket: ``benchmarks/ws_client.py`` echoes small messages over ``--ws-connections`` connections to
``benchmarks.apps:websocket`` for ``--ws-seconds``; errors and mismatches must be 0.

The server's RSS is read from /proc every second; the report gives it at the start (after a warm-up),
the middle and the end, and the growth after warm-up (must stay under ``--max-growth``, 5 %).

    .venv/bin/python benchmarks/soak.py                       # both, about 2-4 minutes
    .venv/bin/python benchmarks/soak.py --requests 200000 --ws-seconds 20 --json soak.json

Exit status 0 when every check holds, 1 otherwise, 2 when wrk is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    """``python -m fulmen APP`` as a subprocess, with its RSS sampled every second."""

    def __init__(self, app: str, extra: list[str]) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fulmen", app, "--port", str(self.port), "--no-access-log", *extra],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.samples: list[tuple[float, int]] = []
        self.stderr = b""
        self._stop = threading.Event()
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {self.process.stderr.read()!r}") from None  # type: ignore[union-attr]
                time.sleep(0.1)
        self.started = time.monotonic()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic() - self.started, rss_kib(self.process.pid)))

    def rss(self) -> int:
        return rss_kib(self.process.pid)

    def stop(self) -> None:
        self._stop.set()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        assert self.process.stderr is not None
        self.stderr = self.process.stderr.read()


def run_wrk(port: int, connections: int, seconds: float, threads: int) -> dict[str, int]:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        f"http://127.0.0.1:{port}/",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60).stdout
    figures = {"requests": 0, "non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    match = re.search(r"(\d+) requests in", output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output: {output}")
    figures["requests"] = int(match.group(1))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        figures["non2xx"] = int(match.group(1))
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        for key, value in zip(("connect", "read", "write", "timeout"), match.groups(), strict=True):
            figures[key] = int(value)
    return figures


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def growth(start: int, end: int) -> float:
    return (end - start) / start * 100 if start else 0.0


def soak_http(args: argparse.Namespace) -> dict[str, Any]:
    server = Server("benchmarks.apps:plaintext", args.server_args)
    try:
        run_wrk(server.port, args.connections, args.warmup, args.threads)  # warm-up: caches, buffers
        rss_start = server.rss()
        totals = {"requests": 0, "non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
        rss_middle = 0
        segments = 0
        started = time.monotonic()
        while totals["requests"] < args.requests:
            figures = run_wrk(server.port, args.connections, args.segment, args.threads)
            segments += 1
            for key, value in figures.items():
                totals[key] += value
            if not rss_middle and totals["requests"] >= args.requests / 2:
                rss_middle = server.rss()
            failed = sum(value for key, value in totals.items() if key != "requests")
            print(
                f"  http: {totals['requests']:>9,} requests, {failed} failures, RSS {mib(server.rss())}",
                flush=True,
            )
        elapsed = time.monotonic() - started
        rss_end = server.rss()
        alive = server.process.poll() is None
    finally:
        server.stop()
    failures = sum(value for key, value in totals.items() if key != "requests")
    return {
        "requests": totals["requests"],
        "seconds": round(elapsed, 1),
        "requests_per_s": round(totals["requests"] / elapsed),
        "connections": args.connections,
        "segments": segments,
        "non2xx": totals["non2xx"],
        "socket_errors": {key: totals[key] for key in ("connect", "read", "write", "timeout")},
        "failures": failures,
        "rss_kib": {"start": rss_start, "middle": rss_middle, "end": rss_end},
        "rss_growth_pct": round(growth(rss_start, rss_end), 2),
        "rss_samples": server.samples[:: max(1, len(server.samples) // 20)],
        "server_alive": alive,
        "server_errors": [
            line for line in server.stderr.decode(errors="replace").splitlines() if "ERROR" in line
        ][:10],
    }


def soak_ws(args: argparse.Namespace) -> dict[str, Any]:
    server = Server("benchmarks.apps:websocket", args.server_args)
    client = [sys.executable, str(ROOT / "benchmarks" / "ws_client.py"), f"ws://127.0.0.1:{server.port}/"]
    try:

        def run(seconds: float) -> dict[str, Any]:
            result = subprocess.run(
                [*client, "--connections", str(args.ws_connections), "--duration", str(seconds)],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
            )
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if not lines:
                raise RuntimeError(f"ws_client failed: {result.stdout} {result.stderr}")
            return dict(json.loads(lines[-1]))

        run(args.warmup)
        rss_start = server.rss()
        halves = [run(args.ws_seconds / 2)]
        rss_middle = server.rss()
        halves.append(run(args.ws_seconds / 2))
        rss_end = server.rss()
        alive = server.process.poll() is None
    finally:
        server.stop()
    messages = sum(int(half["messages"]) for half in halves)
    errors = sum(int(half["errors"]) for half in halves)
    mismatches = sum(int(half["mismatches"]) for half in halves)
    print(
        f"  ws: {messages:,} messages, {errors} errors, {mismatches} mismatches, RSS {mib(rss_end)}",
        flush=True,
    )
    return {
        "messages": messages,
        "seconds": args.ws_seconds,
        "connections": args.ws_connections,
        "errors": errors,
        "mismatches": mismatches,
        "failures": errors + mismatches,
        "rss_kib": {"start": rss_start, "middle": rss_middle, "end": rss_end},
        "rss_growth_pct": round(growth(rss_start, rss_end), 2),
        "server_alive": alive,
        "server_errors": [
            line for line in server.stderr.decode(errors="replace").splitlines() if "ERROR" in line
        ][:10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--segment", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--ws-connections", type=int, default=64)
    parser.add_argument("--ws-seconds", type=float, default=60.0)
    parser.add_argument("--max-growth", type=float, default=5.0, help="allowed RSS growth after warm-up, %%")
    parser.add_argument("--skip", choices=["http", "ws"], action="append", default=[])
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("server_args", nargs="*", help="extra fulmen options, after --")
    args = parser.parse_args(argv)
    if "http" not in args.skip and shutil.which("wrk") is None:
        print("soak: wrk is required (apt-get install wrk)", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    report: dict[str, Any] = {}
    ok = True
    if "http" not in args.skip:
        print(
            f"HTTP soak: {args.requests:,} keep-alive requests over {args.connections} connections",
            flush=True,
        )
        http = report["http"] = soak_http(args)
        http_ok = http["failures"] == 0 and http["rss_growth_pct"] < args.max_growth and http["server_alive"]
        ok &= http_ok
        rss = http["rss_kib"]
        print(
            f"HTTP: {http['requests']:,} requests in {http['seconds']} s ({http['requests_per_s']:,}/s), "
            f"non-2xx {http['non2xx']}, socket errors {http['socket_errors']}; "
            f"RSS start {mib(rss['start'])}, middle {mib(rss['middle'])}, end {mib(rss['end'])} "
            f"({http['rss_growth_pct']:+.2f} %) "
            f"-> {'OK' if http_ok else 'FAILED'}",
            flush=True,
        )
    if "ws" not in args.skip:
        print(
            f"WebSocket soak: echo over {args.ws_connections} connections for {args.ws_seconds} s", flush=True
        )
        ws = report["ws"] = soak_ws(args)
        ws_ok = ws["failures"] == 0 and ws["rss_growth_pct"] < args.max_growth and ws["server_alive"]
        ok &= ws_ok
        rss = ws["rss_kib"]
        print(
            f"WebSocket: {ws['messages']:,} messages in {ws['seconds']} s, errors {ws['errors']}, "
            f"mismatches {ws['mismatches']}; RSS start {mib(rss['start'])}, middle {mib(rss['middle'])}, "
            f"end {mib(rss['end'])} ({ws['rss_growth_pct']:+.2f} %) -> {'OK' if ws_ok else 'FAILED'}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
