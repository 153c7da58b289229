"""Reloading on real file changes, with both reloaders, in real subprocesses."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.supervisors.support import fulmen, write_app

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SCRIPT = """
import sys
from fulmen import Config, Server
from fulmen.supervisors.statreload import StatReload
from fulmen.supervisors.watchfilesreload import WatchFilesReload

reloader = {"stat": StatReload, "watchfiles": WatchFilesReload}[sys.argv[2]]
config = Config(app="app:app", port=int(sys.argv[1]), reload=True, reload_delay=0.1)
sock = config.bind_socket()
reloader(config, target=Server(config).run, sockets=[sock]).run()
"""

BROKEN_APP = "async def app(scope, receive, send:\n    return\n"


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_app(tmp_path)
    return tmp_path


def serves(server: object, version: str) -> bool:
    result = server.try_get(timeout=2)  # type: ignore[attr-defined]
    return result is not None and result[1].startswith(version)


@pytest.mark.parametrize("reloader", ["stat", "watchfiles"])
def test_reload_on_change_and_recover_from_a_broken_change(app_dir: Path, reloader: str) -> None:
    with fulmen(app_dir, reloader, script=SCRIPT) as server:
        assert server.wait_serving().startswith("v1")
        write_app(app_dir, version="v2")
        assert wait_until(lambda: serves(server, "v2"), 15), server.output()
        assert "detected changes in 'app.py'. Reloading..." in server.output()

        # A change that breaks the app: the error is shown, and the next change is picked up.
        path = app_dir / "app.py"
        path.write_text(BROKEN_APP)
        write_app(app_dir, version="v2", name="unused.txt")  # not watched: no reload
        mtime = path.stat().st_mtime + 4
        os.utime(path, (mtime, mtime))
        assert server.wait_log("SyntaxError", 15), server.output()
        write_app(app_dir, version="v3")
        assert wait_until(lambda: serves(server, "v3"), 15), server.output()
        assert "unused.txt" not in server.output()
        assert server.stop(sig=signal.SIGINT) == 0
        assert "Stopping reloader process" in server.output()


def test_cli_reload_with_watchfiles_ignores_workers(app_dir: Path) -> None:
    with fulmen(app_dir, "--reload", "--reload-delay", "0.1", "--workers", "2") as server:
        assert server.wait_serving().startswith("v1")
        assert "ignored when reloading" in server.output()
        assert "using WatchFiles" in server.output()
        write_app(app_dir, version="v2")
        assert wait_until(lambda: serves(server, "v2"), 15), server.output()
        assert server.stop() == 0


def test_change_during_slow_graceful_shutdown_does_not_hang_the_reloader(app_dir: Path) -> None:
    with fulmen(app_dir, "--reload", "--reload-delay", "0.1") as server:
        assert server.wait_serving().startswith("v1")
        slow = threading.Thread(target=lambda: server.try_get("/slow?60", timeout=30), daemon=True)
        slow.start()
        assert wait_until(lambda: "GET /slow" in server.output() or slow.is_alive(), 2)
        write_app(app_dir, version="v2")
        assert wait_until(lambda: serves(server, "v2"), 20), server.output()
        assert "did not stop in time; killing it" in server.output()
        write_app(app_dir, version="v3")
        assert wait_until(lambda: serves(server, "v3"), 15), server.output()
        assert server.stop() == 0
