"""Helpers for the supervisor and reload tests: a test application, a fulmen subprocess, a raw client.

Every wait here is bounded. Clients speak HTTP/1.1 over raw sockets with ``Connection: close`` so that
each request is one fresh connection, accepted by whichever worker the kernel picks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, wait_until

__all__ = ["free_port"]  # one definition for every test (tests.conftest)

SRC = Path(__file__).resolve().parents[2] / "src"

APP = """
import asyncio, os, threading, time

VERSION = "v1"
CRASH_AFTER = float(os.environ.get("TEST_CRASH_AFTER", "0"))


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if CRASH_AFTER:
                    asyncio.get_running_loop().call_later(CRASH_AFTER, os._exit, 1)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    query = scope["query_string"].decode() or "0"
    if path == "/block":  # block the event loop, as a badly written app would
        time.sleep(float(query))
    elif path == "/slow":
        await asyncio.sleep(float(query))
    elif path == "/threads":  # worker threads of a thread pool, in this process
        alive = [t for t in threading.enumerate() if t.name == "fulmen-worker"]
        body = str(len(alive)).encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    elif path == "/stop-loop":  # end this worker's event loop abruptly (a crashed thread worker)
        asyncio.get_running_loop().stop()
    body = f"{VERSION} {os.getpid()} {threading.get_native_id()}".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


def request(port: int, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
    """One GET on a new connection: (status, body). Raises OSError on a connection failure."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise OSError(f"bad response: {raw[:80]!r}")
    return int(head.split(b" ", 2)[1]), body.decode()


def write_app(directory: Path, version: str = "v1", name: str = "app.py") -> Path:
    path = directory / name
    previous = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(APP.replace('VERSION = "v1"', f'VERSION = "{version}"'))
    # Cached bytecode is checked against the source's mtime in whole seconds (and its size): move the
    # mtime on, or a rewrite within the same second would run the old code.
    mtime = max(time.time(), previous + 2)
    os.utime(path, (mtime, mtime))
    return path


def env_for(directory: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(directory)])
    env.pop("WEB_CONCURRENCY", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Fulmen:
    """A running ``python -m fulmen`` (or script) subprocess, its output captured in a file."""

    def __init__(self, args: list[str], cwd: Path, port: int, env: dict[str, str]) -> None:
        self.port = port
        self.log_path = cwd / f"fulmen-{port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.output().count(text)

    def wait_log(self, text: str, timeout: float, count: int = 1) -> bool:
        return wait_until(lambda: self.count(text) >= count, timeout)

    def get(self, path: str = "/", timeout: float = 5.0) -> tuple[int, str]:
        return request(self.port, path, timeout)

    def try_get(self, path: str = "/", timeout: float = 5.0) -> tuple[int, str] | None:
        try:
            return self.get(path, timeout)
        except OSError:
            return None

    def wait_serving(self, timeout: float = 20.0, path: str = "/") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.try_get(path, timeout=2.0)
            if result is not None and result[0] == 200:
                return result[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"fulmen did not serve within {timeout} s:\n{self.output()}")

    def worker_pids(self) -> set[int]:
        """The supervisor's spawned worker processes (not multiprocessing's resource tracker)."""
        pids = set()
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                try:
                    cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"spawn_main" in cmdline:
                    pids.add(int(child))
        return pids

    def serving_pids(self, attempts: int = 40) -> set[int]:
        """Worker pids seen answering ``attempts`` concurrent-ish requests."""
        seen = set()
        for _ in range(attempts):
            result = self.try_get()
            if result is not None and result[0] == 200:
                seen.add(int(result[1].split()[1]))
        return seen

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"fulmen did not stop within {timeout} s:\n{self.output()}") from None
        finally:
            self._log.close()
        return code


@contextmanager
def fulmen(
    cwd: Path,
    *args: str,
    port: int | None = None,
    env: dict[str, str] | None = None,
    script: str | None = None,
) -> Iterator[Fulmen]:
    """Run fulmen (``-m fulmen app:app --port P ARGS``, or ``script`` with the port as argument)."""
    port = port or free_port()
    if script is not None:
        (cwd / "serve.py").write_text(script)
        argv = [sys.executable, str(cwd / "serve.py"), str(port), *args]
    else:
        argv = [sys.executable, "-m", "fulmen", "app:app", "--port", str(port), *args]
    server = Fulmen(argv, cwd, port, env or env_for(cwd))
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)
        # A stopped supervisor must not leave workers behind.
        for pid in _orphans(server):
            os.kill(pid, signal.SIGKILL)


def _orphans(server: Fulmen) -> list[int]:
    """Worker processes started for this test (their PYTHONPATH names its own directory)."""
    marker = str(server.log_path.parent).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes() if b"spawn_main" in cmdline else b""
        except OSError:
            continue
        if environ and marker in environ:
            found.append(int(entry.name))
    return found
