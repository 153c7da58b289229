"""SIGHUP under load: ``--workers 2`` serving continuous traffic while every worker is replaced each second.

Usage: ``python benchmarks/sighup_under_load.py [--duration 20] [--connections 32] [--python-client]``

Runs ``python -m fulmen`` on a free port, drives it with wrk (or, without wrk, a small Python client
with keep-alive connections), sends SIGHUP every second for the duration and prints the number of
failed requests: socket errors plus non-2xx answers. Every SIGHUP replaces both workers (the new one
serves before the old one stops), so the figure must be 0; the exit status is 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"fulmen did not start serving on port {port}")


def run_wrk(port: int, duration: float, connections: int) -> tuple[int, int, str]:
    """(requests, failures, wrk's report)."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(duration)}s",
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    failures = 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        failures += sum(int(n) for n in errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        failures += int(non_2xx.group(1))
    return requests, failures, out


def run_python_client(port: int, duration: float, connections: int) -> tuple[int, int, str]:
    """Keep-alive clients; a connection the server closes is reopened (not a failure, as in wrk)."""
    import http.client

    counts = {"ok": 0, "failed": 0}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.monotonic() < deadline:
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                ok = False
                errors.append(repr(exc))
                conn.close()
            with lock:
                counts["ok" if ok else "failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = f"{counts['ok'] + counts['failed']} requests, errors: {sorted(set(errors))[:5]}"
    return counts["ok"] + counts["failed"], counts["failed"], report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of SIGHUPs (one a second)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--python-client", action="store_true", help="do not use wrk even if installed")
    args = parser.parse_args()

    use_wrk = shutil.which("wrk") is not None and not args.python_client
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "bench_app.py").write_text(APP)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), directory]))
        env.pop("WEB_CONCURRENCY", None)
        log = open(Path(directory, "fulmen.log"), "wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fulmen",
                "bench_app:app",
                "--workers",
                "2",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_serving(port)
            result: dict[str, tuple[int, int, str]] = {}
            load_time = args.duration + 2  # load runs a little before the first and after the last SIGHUP
            runner = run_wrk if use_wrk else run_python_client
            load = threading.Thread(target=lambda: result.update(r=runner(port, load_time, args.connections)))
            load.start()
            time.sleep(1.0)
            hups = 0
            while hups < int(args.duration):
                server.send_signal(signal.SIGHUP)
                hups += 1
                time.sleep(1.0)
            load.join(args.duration + 60)
            requests, failures, report = result["r"]
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                status = server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
                status = server.wait()
            log.close()
            server_log = Path(directory, "fulmen.log").read_text(errors="replace")
    print(report.rstrip())
    print(server_log.rstrip()[-2000:] if failures else "")
    print(
        f"client: {'wrk' if use_wrk else 'python'}; SIGHUPs sent: {hups}; requests: {requests}; "
        f"failed requests: {failures}; server exit status: {status}"
    )
    return 0 if failures == 0 and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
