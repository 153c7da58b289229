"""Shared helpers: real servers on 127.0.0.1 (in a thread, or as a subprocess) and raw-socket clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fulmen import Config, Server

ROOT = Path(__file__).resolve().parent.parent
HTTP_IMPLEMENTATIONS = ["httptools", "h11"]
LOOPS = ["asyncio", "uvloop"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    def __init__(self, server: Server, port: int, thread: threading.Thread) -> None:
        self.server = server
        self.port = port
        self.thread = thread
        self.url = f"http://127.0.0.1:{port}"

    @property
    def config(self) -> Config:
        return self.server.config

    def connect(self, timeout: float = 5.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "server did not stop in time"


@contextlib.contextmanager
def run_server(app: Any, **options: Any) -> Iterator[RunningServer]:
    """Serve ``app`` in a background thread on a free port; stop it on exit (bounded)."""
    options.setdefault("port", free_port())
    options.setdefault("host", "127.0.0.1")
    options.setdefault("log_config", None)
    options.setdefault("lifespan", "off")
    config = Config(app, **options)
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    running = RunningServer(server, options["port"], thread)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(params=HTTP_IMPLEMENTATIONS)
def http_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=LOOPS)
def loop_impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ipv6_loopback() -> bool:
    """Whether this machine has ``::1`` to bind to."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def short_socket_path(tmp_path: Path, name: str) -> str:
    """A UNIX socket path in ``tmp_path``, or in /tmp when that one is too long for AF_UNIX."""
    path = str(tmp_path / name)
    if len(path) > 100:  # AF_UNIX paths are limited to about 108 bytes
        path = f"/tmp/fulmen-{os.getpid()}-{name}"
    return path


def recv_until(sock: socket.socket, marker: bytes = b"\r\n\r\n", timeout: float = 5.0) -> bytes:
    """Read until ``marker`` is seen, the peer closes, or ``timeout`` passes."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def recv_until_closed(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Read until the peer closes the connection (True) or ``timeout`` passes (False)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            return data, True
        data += chunk
    return data, False


def recv_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Read until the peer closes the connection (or ``timeout`` passes)."""
    return recv_until_closed(sock, timeout)[0]


def wait_until(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class ResponseReader:
    """Reads successive responses from one socket, keeping bytes that belong to the next one."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        self.buffer = b""
        self.timeout = timeout
        self.closed = False

    def _fill(self, deadline: float) -> bool:
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return False
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def _take_until(self, marker: bytes, deadline: float) -> bytes | None:
        while marker not in self.buffer:
            if time.monotonic() > deadline or not self._fill(deadline):
                return None
        data, _, self.buffer = self.buffer.partition(marker)
        return data

    def _take(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size and time.monotonic() < deadline and self._fill(deadline):
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self, head_only: bool = False) -> tuple[int, dict[bytes, bytes], bytes]:
        deadline = time.monotonic() + self.timeout
        head = self._take_until(b"\r\n\r\n", deadline)
        if head is None:
            raise ConnectionError(f"no complete response head; got {self.buffer[:200]!r}")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if b"content-length" in headers:
            return status, headers, self._take(int(headers[b"content-length"]), deadline)
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_line = self._take_until(b"\r\n", deadline)
                if size_line is None:
                    return status, headers, body
                size = int(size_line.split(b";")[0], 16)
                chunk = self._take(size + 2, deadline)
                if size == 0:
                    return status, headers, body
                body += chunk[:size]
        while self._fill(deadline):
            pass
        body, self.buffer = self.buffer, b""
        return status, headers, body


_readers: weakref.WeakKeyDictionary[socket.socket, ResponseReader] = weakref.WeakKeyDictionary()


def read_response(
    sock: socket.socket, timeout: float = 5.0, head_only: bool = False
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Read the next response on ``sock`` (bytes read past it are kept for the next call)."""
    reader = _readers.get(sock)
    if reader is None:
        reader = _readers[sock] = ResponseReader(sock, timeout)
    reader.timeout = timeout
    return reader.response(head_only=head_only)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when the process has not ended within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class CLIProcess:
    """``python -m fulmen ...`` as a subprocess, with its combined output collected in a thread."""

    def __init__(
        self,
        args: list[str],
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "fulmen", *args],  # prefix: a launcher, as systemd's
            cwd=str(cwd or ROOT),
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the workers too
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.process.poll() is not None:
                self._reader.join(2)
                return text in self.output
            time.sleep(0.05)
        return False

    def wait(self, timeout: float = 15.0) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise
        self._reader.join(2)
        return code

    def stop(self) -> None:
        """Kill the process and every process of its group: worker processes of a supervisor killed
        outright would otherwise live on."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._reader.join(2)


@pytest.fixture
def cli() -> Iterator[Any]:
    """Start ``python -m fulmen`` subprocesses; every one is killed at the end of the test."""
    started: list[CLIProcess] = []

    def start(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> CLIProcess:
        process = CLIProcess(list(args), cwd=cwd, env=env, prefix=prefix)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
