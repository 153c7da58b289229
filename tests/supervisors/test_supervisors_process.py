"""Process workers under real signals: fulmen runs as ``python -m fulmen`` on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.supervisors.support import env_for, free_port, fulmen, request, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# Process workers asked for: on free-threaded Python the automatic worker class picks threads.
FAST = ("--timeout-worker-healthcheck", "1", "--worker-class", "process")


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in state T (``/proc/PID/stat`` shows the main thread's only)."""
    states = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.add((task / "stat").read_text().rpartition(")")[2].split()[0])
        except OSError:  # the thread ended meanwhile
            continue
    return states == {"T"}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def test_killed_worker_is_replaced(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        assert server.wait_log("died (signal SIGKILL)", 10), server.output()
        assert wait_until(lambda: len(server.worker_pids() - {victim}) == 2, 10), server.output()
        assert victim not in server.serving_pids()
        assert server.get()[0] == 200
        assert server.stop() == 0


def test_stopped_worker_fails_health_check_and_is_replaced(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGSTOP)
        started = time.monotonic()
        assert server.wait_log("did not answer a health check", 8), server.output()
        assert time.monotonic() - started < 5
        assert wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2, 10)
        assert server.stop() == 0


def test_blocked_event_loop_is_replaced(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        before = server.worker_pids()
        blocker = threading.Thread(target=lambda: server.try_get("/block?30", timeout=20), daemon=True)
        blocker.start()
        assert server.wait_log("has a blocked event loop", 12), server.output()
        assert wait_until(lambda: len(server.worker_pids()) == 2 and server.worker_pids() != before, 10)
        assert server.get()[0] == 200
        assert server.stop() == 0


def test_sighup_replaces_every_worker_without_failed_requests(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        original = server.worker_pids()
        failures: list[str] = []
        done = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal done
            while not stop.is_set():
                try:
                    status, _ = request(server.port, "/slow?0.02", timeout=10)
                    if status != 200:
                        failures.append(f"status {status}")
                except OSError as exc:
                    failures.append(repr(exc))
                done += 1

        clients = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for client in clients:
            client.start()
        for round_ in range(2):
            previous = server.worker_pids()
            server.send(signal.SIGHUP)
            assert server.wait_log("Received SIGHUP", 5, count=round_ + 1)
            # The rolling restart is done when every worker process is a new one.
            assert wait_until(
                lambda p=previous: (
                    len(server.worker_pids() - p) == 2  # type: ignore[misc]
                    and len(server.worker_pids()) == 2
                ),
                30,
            ), server.output()
        stop.set()
        for client in clients:
            client.join(15)
        assert not failures, failures[:5]
        assert done > 50
        assert not (server.worker_pids() & original)
        assert server.stop() == 0


def test_ttin_adds_and_ttou_removes_a_worker(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        server.send(signal.SIGTTIN)
        assert wait_until(lambda: len(server.worker_pids()) == 3, 10), server.output()
        assert server.wait_log("Application startup complete", 15, count=3)
        for count in (1, 2):  # one at a time: a signal sent twice before delivery arrives once
            server.send(signal.SIGTTOU)
            assert server.wait_log("Received SIGTTOU, decreasing", 5, count=count)
        server.send(signal.SIGTTOU)
        assert server.wait_log("there is already only one worker", 10), server.output()
        assert wait_until(lambda: len(server.worker_pids()) == 1, 10), server.output()
        assert server.get()[0] == 200
        assert server.stop() == 0


def test_worker_startup_failure_stops_the_server_with_status_3(app_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fulmen", "missing_module:app", "--workers", "2", "--port", str(free_port())]
        + ["--worker-class", "process"],
        cwd=app_dir,
        env=env_for(app_dir),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "failed to start (status 3)" in proc.stdout + proc.stderr


def test_crash_loop_is_throttled_by_the_restart_budget(app_dir: Path) -> None:
    env = env_for(app_dir, TEST_CRASH_AFTER="0.1")
    with fulmen(app_dir, "--workers", "2", *FAST, env=env) as server:
        assert server.wait_log("Restarting worker in 2.0 s", 15), server.output()
        time.sleep(1.0)
        output = server.output()
        # Each slot backs off 0.5 s, 1 s, 2 s...: a handful of starts, not hundreds.
        assert output.count("Restarting worker in 0.5 s") == 2, output
        assert output.count("Application startup complete") <= 2 * 4, output
        assert "died (status 1)" in output
        assert server.stop() == 0


def test_limit_max_requests_recycles_workers_without_failed_requests(app_dir: Path) -> None:
    args = ("--workers", "2", *FAST, "--limit-max-requests", "4", "--limit-max-requests-jitter", "2")
    with fulmen(app_dir, *args) as server:
        server.wait_serving()
        pids = set()
        for _ in range(30):
            status, body = request(server.port, timeout=10)
            assert status == 200
            pids.add(int(body.split()[1]))
        assert len(pids) >= 4
        assert server.wait_log("exited; starting a new one", 5), server.output()
        assert "died" not in server.output()
        assert server.stop() == 0


def test_seed_form_multiprocess_with_server_run(app_dir: Path) -> None:
    script = """
import sys
from fulmen import Config, Server
from fulmen.supervisors import Multiprocess

config = Config(app="app:app", port=int(sys.argv[1]), workers=2)
sock = config.bind_socket()
Multiprocess(config, target=Server(config).run, sockets=[sock]).run()
"""
    with fulmen(app_dir, script=script) as server:
        server.wait_serving()
        assert wait_until(lambda: len(server.worker_pids()) == 2, 10)
        assert server.wait_log("Application startup complete", 20, count=2)  # both answer health checks
        assert server.stop(sig=signal.SIGINT) == 0
        assert "Stopping parent process" in server.output()


def test_process_handle_health_check_detects_a_stopped_worker(app_dir: Path) -> None:
    from fulmen import Config, Server
    from fulmen.supervisors.multiprocess import Process

    config = Config("app:app", port=free_port(), app_dir=str(app_dir), log_level="warning")
    sock = config.bind_socket()
    process = Process(config, target=Server(config).run, sockets=[sock])
    process.start()
    try:
        assert process.pid is not None
        assert process.wait_until_ready(20)
        assert process.is_alive(timeout=5)
        assert request(config.port)[0] == 200
        os.kill(process.pid, signal.SIGSTOP)
        # kill() returns before every thread of the worker has stopped: a thread running on the
        # other core (a free-threaded worker's, or any on a loaded machine) may still answer a ping
        # sent at once. So wait for the stop to be complete, and allow the check a second ping.
        assert wait_until(lambda: all_threads_stopped(process.pid), 5)
        started = time.monotonic()
        assert wait_until(lambda: not process.is_alive(timeout=1), 5)
        assert time.monotonic() - started < 4
        os.kill(process.pid, signal.SIGCONT)
        assert process.is_alive(timeout=5)
        process.terminate()
        process.join(10)
        assert process.exitcode == 0
    finally:
        process.kill()
        process.join(5)
        sock.close()


def test_graceful_stop_is_bounded_by_the_graceful_timeout(app_dir: Path) -> None:
    with fulmen(app_dir, "--workers", "2", *FAST, "--timeout-graceful-shutdown", "1") as server:
        server.wait_serving()
        slow = threading.Thread(target=lambda: server.try_get("/slow?60", timeout=30), daemon=True)
        slow.start()
        time.sleep(0.5)  # the request is in flight (its access log line comes with the response)
        started = time.monotonic()
        assert server.stop(timeout=15) == 0
        assert time.monotonic() - started < 8, server.output()
