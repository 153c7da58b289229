"""Where the server listens: UNIX sockets (--uds), inherited descriptors (--fd), IPv6 (--host ::1)."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import apps
from tests.conftest import ROOT, free_port, ipv6_loopback, run_server, short_socket_path

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX sockets")


def _uds_get(path: str, url: str = "http://localhost/") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=5) as client:
        return client.get(url)


def test_uds_in_process(tmp_path: Path) -> None:
    path = short_socket_path(tmp_path, "api.sock")
    with run_server(apps.scope_json, uds=path) as server:
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        scope = _uds_get(path).json()
        assert scope["path"] == "/"
        assert server.server.started


def test_uds_cli_message_and_cleanup(cli: Any, tmp_path: Path) -> None:
    path = short_socket_path(tmp_path, "cli.sock")
    process = cli("tests.apps:hello", "--uds", path)
    assert process.wait_for(f"Fulmen running on unix socket {path} (Press CTRL+C to quit)"), process.output
    assert _uds_get(path).text == "Hello, world!"
    curl = subprocess.run(
        ["curl", "-s", "--unix-socket", path, "http://localhost/"], capture_output=True, timeout=10
    )
    if curl.returncode == 0:
        assert curl.stdout == b"Hello, world!"
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    assert not os.path.exists(path)


def test_uds_replaces_a_stale_socket_file(cli: Any, tmp_path: Path) -> None:
    path = short_socket_path(tmp_path, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays behind, as after a crash
    process = cli("tests.apps:hello", "--uds", path)
    assert process.wait_for("Fulmen running on unix socket"), process.output
    assert _uds_get(path).text == "Hello, world!"


def test_fd_in_process() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        with run_server(apps.hello, fd=sock.fileno()):
            assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text == "Hello, world!"
    finally:
        sock.close()


def test_fd_inherited_by_the_cli() -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fd = sock.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "fulmen", "tests.apps:hello", "--fd", str(fd)],
        cwd=str(ROOT),
        pass_fds=[fd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sock.close()  # only the child has it now
    try:
        deadline = time.monotonic() + 10
        while True:
            assert process.poll() is None and time.monotonic() < deadline
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.ConnectError:
                time.sleep(0.05)
        assert response.text == "Hello, world!"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0
    assert f"Fulmen running on socket ('127.0.0.1', {port}) (Press CTRL+C to quit)" in output


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 on loopback")
def test_ipv6(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:scope_json", "--host", "::1", "--port", str(port))
    assert process.wait_for(f"Fulmen running on http://[::1]:{port} (Press CTRL+C to quit)"), process.output
    scope = httpx.get(f"http://[::1]:{port}/", timeout=5).json()
    assert scope["client"][0] == "::1"
    assert scope["server"][0] == "::1"
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 on loopback")
def test_ipv6_bind_socket_in_process() -> None:
    with run_server(apps.hello, host="::1") as server:
        assert httpx.get(f"http://[::1]:{server.port}/", timeout=5).text == "Hello, world!"


def test_host_localhost_is_logged_as_given(cli: Any) -> None:
    port = free_port()
    process = cli("tests.apps:hello", "--host", "localhost", "--port", str(port))
    assert process.wait_for(f"Fulmen running on http://localhost:{port} (Press CTRL+C to quit)"), (
        process.output
    )
