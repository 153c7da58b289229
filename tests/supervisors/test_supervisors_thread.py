"""Thread workers (Multithread, Thread, the automatic Supervisor) on a normal, GIL-enabled interpreter.

The command line refuses thread workers unless the GIL is off, but the classes run anywhere; the tests
drive them through the API in a subprocess and poke the process with real signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.supervisors.support import Fulmen, env_for, free_port, fulmen, request, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SCRIPT = """
import sys
from fulmen import Config, Server
from fulmen.supervisors import Multithread

config = Config(app="app:app", port=int(sys.argv[1]), workers=2, timeout_worker_healthcheck=1)
sock = config.bind_socket()
Multithread(config, target=Server(config).run, sockets=[sock]).run()
"""


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def threads(server: Fulmen) -> int:
    return int(server.get("/threads")[1])


def test_thread_workers_serve_roll_grow_shrink_and_stop(app_dir: Path) -> None:
    with fulmen(app_dir, script=SCRIPT) as server:
        server.wait_serving()
        assert wait_until(lambda: threads(server) == 2, 10)
        failures: list[str] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                try:
                    if request(server.port, "/slow?0.01", timeout=10)[0] != 200:
                        failures.append("status")
                except OSError as exc:
                    failures.append(repr(exc))

        client = threading.Thread(target=load, daemon=True)
        client.start()
        server.send(signal.SIGHUP)
        assert server.wait_log("Finished server process", 15, count=2), server.output()
        stop.set()
        client.join(10)
        assert not failures, failures[:5]
        assert server.output().count("Application startup complete") == 4

        server.send(signal.SIGTTIN)
        assert wait_until(lambda: threads(server) == 3, 10), server.output()
        for count in (1, 2):  # one at a time: a signal sent twice before delivery arrives once
            server.send(signal.SIGTTOU)
            assert server.wait_log("Received SIGTTOU, decreasing", 5, count=count)
        assert wait_until(lambda: threads(server) == 1, 10), server.output()
        server.send(signal.SIGTTOU)
        assert server.wait_log("there is already only one worker", 5)
        assert server.stop(sig=signal.SIGINT) == 0
        assert "Stopping parent process" in server.output()


def test_thread_with_blocked_loop_is_asked_to_stop_and_replaced(app_dir: Path) -> None:
    with fulmen(app_dir, script=SCRIPT) as server:
        server.wait_serving()
        assert wait_until(lambda: threads(server) == 2, 10)
        blocker = threading.Thread(target=lambda: server.try_get("/block?6", timeout=20), daemon=True)
        blocker.start()
        assert server.wait_log("missed its heartbeat", 10), server.output()
        # The stale thread drains (its blocking call ends) while a replacement serves.
        assert server.wait_log("Application startup complete", 10, count=3), server.output()
        assert server.get()[0] == 200
        blocker.join(15)
        assert wait_until(lambda: threads(server) == 2, 10), server.output()
        assert server.stop() == 0


def test_crashed_thread_is_replaced(app_dir: Path) -> None:
    with fulmen(app_dir, script=SCRIPT) as server:
        server.wait_serving()
        assert wait_until(lambda: threads(server) == 2, 10)
        server.try_get("/stop-loop", timeout=3)
        assert server.wait_log("died (status 1)", 10), server.output()
        assert server.wait_log("Application startup complete", 10, count=3), server.output()
        assert wait_until(lambda: threads(server) == 2, 10)
        assert server.stop() == 0


def test_supervisor_restart_workers_reimports_the_app_in_thread_mode(app_dir: Path) -> None:
    script = """
import sys, threading, time
from pathlib import Path
from fulmen import Config
from fulmen.supervisors import Supervisor

config = Config(app="app:app", port=int(sys.argv[1]), workers=2)
supervisor = Supervisor(config, mode="thread")
assert supervisor.mode == "thread" and supervisor.worker_count == 2

def reload_when_asked():
    flag = Path("reload-now")
    while not flag.exists():
        time.sleep(0.05)
    # One string: print() writes its arguments one by one, and the workers (threads) log in between.
    print(f"restart done: {supervisor.restart_workers(timeout=30)}", flush=True)

threading.Thread(target=reload_when_asked, daemon=True).start()
supervisor.run()
sys.exit(supervisor.returncode)
"""
    with fulmen(app_dir, script=script) as server:
        assert server.wait_serving().startswith("v1")
        write_app(app_dir, version="v2")
        (app_dir / "reload-now").touch()
        assert server.wait_log("restart done: True", 20), server.output()
        # Retired threads may finish a request or two; then only the new code answers.
        assert wait_until(lambda: all(server.get()[1].startswith("v2") for _ in range(10)), 10)
        assert server.stop() == 0


def test_cli_refuses_thread_workers_when_the_gil_is_enabled(app_dir: Path) -> None:
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("free-threaded interpreter with the GIL disabled")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulmen",
            "app:app",
            "--workers",
            "2",
            "--worker-class",
            "thread",
            "--port",
            str(free_port()),
        ],
        cwd=app_dir,
        env=env_for(app_dir),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "free-threaded" in line]
    assert len(lines) == 1, proc.stdout + proc.stderr


def test_auto_mode_picks_processes_when_the_gil_is_enabled() -> None:
    from fulmen import Config
    from fulmen.supervisors import Supervisor

    supervisor = Supervisor(Config(app="app:app", workers=3))
    expected = "process" if getattr(sys, "_is_gil_enabled", lambda: True)() else "thread"
    assert supervisor.mode == expected
    assert supervisor.worker_count == 3
