"""How evenly fulmen's workers share the requests, with and without ``--reuse-port``.

Runs fulmen with N worker processes serving a tiny application that names the worker in an
``x-worker`` header, drives it with wrk (``benchmarks/wrk/workers.lua`` counts the responses of each
worker), and prints each worker's share, interleaving the two settings over several rounds. Two kinds
of load: keep-alive connections opened once (``keep-alive``), and a new connection for every request
(``close``)::

    .venv/bin/python benchmarks/reuse_port_spread.py --workers 2 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "benchmarks" / "wrk" / "workers.lua"
HOST = "127.0.0.1"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``ok``, naming the worker process in ``x-worker``."""
    if scope["type"] != "http":
        return
    headers = [(b"x-worker", str(os.getpid()).encode()), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def serve(workers: int, reuse_port: bool) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "fulmen", "benchmarks.reuse_port_spread:app", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    command += ["--reuse-port"] if reuse_port else []
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("fulmen did not start")
        time.sleep(0.1)
    time.sleep(1.0)  # every worker up
    return process, port


def shares(port: int, mode: str, connections: int, duration: int) -> list[float]:
    """Each worker's share of the responses, largest first."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(LUA), f"http://{HOST}:{port}/"]
    output = subprocess.run(
        [*command, "--", mode], capture_output=True, text=True, timeout=duration + 60
    ).stdout
    counts = [int(line.split()[2]) for line in output.splitlines() if line.startswith("worker ")]
    total = sum(counts) or 1
    return sorted((count / total for count in counts), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    print(f"{args.workers} workers, {args.connections} connections, {args.duration} s per run")
    print("setting          load         round  shares of the responses, largest first")
    for round_number in range(1, args.rounds + 1):
        for reuse_port in (False, True):
            process, port = serve(args.workers, reuse_port)
            try:
                for mode in ("keep-alive", "close"):
                    found = shares(port, mode, args.connections, args.duration)
                    found += [0.0] * (args.workers - len(found))
                    setting = "--reuse-port" if reuse_port else "shared socket"
                    text = " ".join(f"{share:6.1%}" for share in found)
                    print(f"{setting:16} {mode:12} {round_number:5}  {text}", flush=True)
            finally:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)


if __name__ == "__main__":
    main()
