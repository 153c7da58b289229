"""Several listeners (--bind), systemd socket activation and --reuse-port, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fulmen.listeners import BindAddress, BindError, parse_bind
from tests.apps import worker_pid
from tests.conftest import free_port, ipv6_loopback, run_server, short_socket_path, wait_until
from tests.system_tools import require_command

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sockets and /proc")

APP = "tests.apps:worker_pid"


# -- parsing


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8000", BindAddress("tcp", host="127.0.0.1", port=8000)),
        ("localhost:0", BindAddress("tcp", host="localhost", port=0)),
        (":8080", BindAddress("tcp", host="0.0.0.0", port=8080)),
        ("[::1]:9000", BindAddress("tcp", host="::1", port=9000)),
        ("[::]:80", BindAddress("tcp", host="::", port=80)),
        ("unix:/run/app.sock", BindAddress("unix", path="/run/app.sock")),
        ("fd://3", BindAddress("fd", fd=3)),
    ],
)
def test_parse_bind(value: str, expected: BindAddress) -> None:
    assert parse_bind(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("127.0.0.1", "has no port"),
        ("127.0.0.1:http", "must be a number"),
        ("127.0.0.1:70000", "must be a number"),
        ("::1:8000", "in brackets"),
        ("[::1]8000", "[ADDRESS]:PORT"),
        ("[127.0.0.1]:80", "[ADDRESS]:PORT"),
        ("unix:", "no path"),
        ("fd://three", "must be a number"),
    ],
)
def test_parse_bind_rejects(value: str, message: str) -> None:
    with pytest.raises(BindError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_bind(value)


# -- helpers


def _get(url: str, uds: str | None = None, timeout: float = 5.0) -> httpx.Response:
    transport = httpx.HTTPTransport(uds=uds) if uds else None
    with httpx.Client(transport=transport, timeout=timeout) as client:
        return client.get(url)


def _wait_serving(url: str, process: Any, timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(url, timeout=2)
        except httpx.TransportError:
            assert process.process.poll() is None, process.output
            assert time.monotonic() < deadline, f"{url} did not answer in time\n{process.output}"
            time.sleep(0.1)


def _listening_sockets(port: int) -> int:
    """How many TCP sockets listen on ``port`` (both address families), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                count += 1
    return count


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for entry in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def _environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def _started_pids(output: str, marker: str = "Started server process [") -> list[int]:
    return [int(line.split(marker)[1].split("]")[0]) for line in output.splitlines() if marker in line]


# -- --bind


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bind_tcp_and_unix_both_answer(cli: Any, tmp_path: Path, workers: str) -> None:
    port = free_port()
    path = short_socket_path(tmp_path, f"bind{workers}.sock")
    process = cli(APP, "--bind", f"127.0.0.1:{port}", "--bind", f"unix:{path}", "--workers", workers)
    assert process.wait_for("Application startup complete", timeout=20), process.output
    assert _wait_serving(f"http://127.0.0.1:{port}/", process).status_code == 200
    assert _get("http://localhost/", uds=path).status_code == 200
    assert f"Fulmen running on http://127.0.0.1:{port} (Press CTRL+C to quit)" in process.output
    assert f"Fulmen running on unix socket {path} (Press CTRL+C to quit)" in process.output
    # --host/--port are replaced, not added: nothing listens on the default port for this server.
    assert "http://127.0.0.1:8000" not in process.output
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert not os.path.exists(path), "the UNIX socket file is removed at exit"


def test_bind_through_the_api(tmp_path: Path) -> None:
    """Server(Config(bind=...)).run() binds the listeners itself (no supervisor), and removes its
    UNIX socket file when it stops."""
    port = free_port()
    path = short_socket_path(tmp_path, "api.sock")
    with run_server(worker_pid, bind=[f"127.0.0.1:{port}", f"unix:{path}"]):
        assert _get(f"http://127.0.0.1:{port}/").text == str(os.getpid())
        assert _get("http://localhost/", uds=path).text == str(os.getpid())
    assert not os.path.exists(path)
    with run_server(worker_pid, bind=f"127.0.0.1:{port}"):  # one string
        assert _get(f"http://127.0.0.1:{port}/").status_code == 200


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
def test_bind_ipv6_and_ipv4(cli: Any) -> None:
    port4, port6 = free_port(), free_port()
    process = cli(APP, "--bind", f"127.0.0.1:{port4}", "--bind", f"[::1]:{port6}")
    assert process.wait_for(f"Fulmen running on http://[::1]:{port6}", timeout=20), process.output
    assert _wait_serving(f"http://[::1]:{port6}/", process).status_code == 200
    assert _get(f"http://127.0.0.1:{port4}/").status_code == 200


def test_bind_fd(cli: Any) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fd = sock.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "fulmen", APP, "--bind", f"fd://{fd}", "--workers", "2"],
        pass_fds=[fd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sock.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert f"Fulmen running on http://127.0.0.1:{port}" in output.decode()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--bind", "127.0.0.1"], "Invalid --bind value '127.0.0.1' has no port"),
        (["--bind", "fd://x"], "Invalid --bind value 'fd://x'"),
        (["--bind", "unix:/nonexistent-dir/app.sock"], "Cannot bind to unix:/nonexistent-dir/app.sock"),
        (["--bind", "fd://97"], "Cannot bind to fd://97"),
        (["--metrics-bind", "unix:/tmp/m.sock"], "Invalid --metrics-bind value"),
        (["--metrics-bind", "nonsense"], "Invalid --metrics-bind value 'nonsense' has no port"),
    ],
)
def test_bad_listener_values_exit_3_with_one_line(cli: Any, args: list[str], expected: str) -> None:
    process = cli(APP, *args)
    assert process.wait(20) == 3, process.output
    errors = [line for line in process.lines if line.startswith("ERROR")]
    assert len(errors) == 1 and expected in errors[0], process.output
    assert "Traceback" not in process.output


def test_bind_in_use_exits_3(cli: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = cli(APP, "--bind", f"127.0.0.1:{port}", "--workers", "2")
        assert process.wait(20) == 3, process.output
    assert f"Cannot bind to 127.0.0.1:{port}" in process.output


# -- --reuse-port


def test_reuse_port_gives_each_worker_its_socket(cli: Any) -> None:
    port = free_port()
    process = cli(APP, "--port", str(port), "--workers", "2", "--reuse-port", "--no-access-log")
    _wait_serving(f"http://127.0.0.1:{port}/", process)
    assert wait_until(lambda: len(_started_pids(process.output)) == 2, 20), process.output
    assert _listening_sockets(port) == 2, "one SO_REUSEPORT socket per worker"
    served = {_get(f"http://127.0.0.1:{port}/").text for _ in range(60)}  # a new connection each
    assert served == {str(pid) for pid in _started_pids(process.output)}, "the kernel spreads connections"

    # A rolling restart: each replacement takes its slot's socket; no request fails, no socket is added.
    failures: list[str] = []
    stop = threading.Event()
    threading.Thread(target=_hammer, args=(f"http://127.0.0.1:{port}/", stop, failures), daemon=True).start()
    process.process.send_signal(signal.SIGHUP)
    assert wait_until(lambda: len(_started_pids(process.output)) == 4, 60), process.output
    assert wait_until(lambda: process.output.count("Finished server process") == 2, 60), process.output
    stop.set()
    time.sleep(0.3)
    assert failures == []
    assert _listening_sockets(port) == 2


def test_without_reuse_port_workers_share_one_socket(cli: Any) -> None:
    port = free_port()
    process = cli(APP, "--port", str(port), "--workers", "2", "--no-access-log")
    _wait_serving(f"http://127.0.0.1:{port}/", process)
    assert _listening_sockets(port) == 1


def _hammer(url: str, stop: threading.Event, failures: list[str]) -> None:
    """Requests on new connections until ``stop``; every failure is kept."""
    while not stop.is_set():
        try:
            response = _get(url, timeout=10)
            if response.status_code != 200:
                failures.append(f"status {response.status_code}")
        except httpx.TransportError as exc:
            failures.append(repr(exc))


# -- systemd socket activation


def _activate(cli: Any, port: int, *args: str, extra_listen: list[str] | None = None) -> Any:
    launcher = require_command("systemd-socket-activate", "systemd")
    prefix = [launcher, "-l", f"127.0.0.1:{port}"]
    for address in extra_listen or []:
        prefix += ["-l", address]
    return cli(APP, *args, prefix=prefix)


def _fulmen_pid(process: Any) -> int:
    """The pid of fulmen itself (the launcher execs it in a child: LISTEN_PID is that child's pid)."""
    assert wait_until(
        lambda: "Started parent process [" in process.output or "Started server process [" in process.output,
        20,
    ), process.output
    parents = _started_pids(process.output, "Started parent process [")
    return parents[0] if parents else _started_pids(process.output)[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation_serves(cli: Any, workers: str) -> None:
    port = free_port()
    process = _activate(cli, port, "--workers", workers, "--port", "1")  # --port is not used
    # systemd-socket-activate starts fulmen on the first connection, which then waits in the backlog.
    assert _get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200, process.output
    assert "socket(s) passed by systemd" in process.output
    assert "--host/--port are not used" in process.output
    pid = _fulmen_pid(process)
    activated = os.readlink(f"/proc/{pid}/fd/3")
    assert wait_until(lambda: len(_started_pids(process.output)) == int(workers), 20), process.output
    for worker in _started_pids(process.output):
        assert activated in _socket_inodes(worker), "every worker serves systemd's socket"
        if worker != pid:
            assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & set(_environment(worker))
    served = {_get(f"http://127.0.0.1:{port}/").text for _ in range(20)}
    assert served <= {str(worker) for worker in _started_pids(process.output)}


def test_socket_activation_rolling_restart_keeps_the_socket(cli: Any) -> None:
    port = free_port()
    # Process workers, whose pids show the restart (free-threaded Python's default would be threads).
    process = _activate(cli, port, "--workers", "2", "--worker-class", "process", "--no-access-log")
    assert _get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200, process.output
    pid = _fulmen_pid(process)
    activated = os.readlink(f"/proc/{pid}/fd/3")
    assert wait_until(lambda: len(_started_pids(process.output)) == 2, 20), process.output
    old = set(_started_pids(process.output))

    failures: list[str] = []
    stop = threading.Event()
    threading.Thread(target=_hammer, args=(f"http://127.0.0.1:{port}/", stop, failures), daemon=True).start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGHUP)
    assert wait_until(lambda: len(_started_pids(process.output)) == 4, 60), process.output
    assert wait_until(lambda: process.output.count("Finished server process") == 2, 60), process.output
    stop.set()
    time.sleep(0.3)
    assert failures == []
    new = set(_started_pids(process.output)) - old
    assert len(new) == 2
    for worker in new:
        assert activated in _socket_inodes(worker), "the new workers serve the same socket"
    assert os.readlink(f"/proc/{pid}/fd/3") == activated
    assert {_get(f"http://127.0.0.1:{port}/").text for _ in range(20)} <= {str(worker) for worker in new}


def test_socket_activation_several_named_sockets(cli: Any, tmp_path: Path) -> None:
    port = free_port()
    path = short_socket_path(tmp_path, "activated.sock")
    launcher = require_command("systemd-socket-activate", "systemd")
    prefix = [launcher, "-l", f"127.0.0.1:{port}", "-l", path, "--fdname=web:local"]
    process = cli(APP, "--reuse-port", prefix=prefix)
    assert _get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200, process.output
    assert _get("http://localhost/", uds=path).status_code == 200
    assert "Serving on 2 socket(s) passed by systemd (web, local)" in process.output
    assert "--reuse-port does not apply to sockets passed by systemd" in process.output
    assert f"Fulmen running on unix socket {path}" in process.output
    process.process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert os.path.exists(path), "systemd's socket file is systemd's to remove"


def test_activation_for_another_process_is_ignored(cli: Any) -> None:
    """LISTEN_PID names another process (a parent's leftovers): fulmen binds --port as usual."""
    port = free_port()
    process = cli(APP, "--port", str(port), env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert _wait_serving(f"http://127.0.0.1:{port}/", process).status_code == 200
    assert "passed by systemd" not in process.output
