"""The reload supervisor: one worker process, replaced whenever watched files change."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from fulmen.supervisors import signals
from fulmen.supervisors.multiprocess import Process

logger = logging.getLogger("fulmen.error")

HANDLED_SIGNALS = tuple(sig for sig in signals.EXIT_SIGNALS)
#: Without --timeout-graceful-shutdown a reloaded worker gets this long to stop before it is killed:
#: a slow request must not keep the developer's new code from running.
RELOAD_STOP_TIMEOUT = 5.0


class BaseReload:
    """Runs the target in a spawned process and restarts it when :meth:`should_restart` reports changes."""

    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.should_exit = threading.Event()
        self.pid = os.getpid()
        self.is_restarting = False
        self.reloader_name: str | None = None
        self.process: Process | None = None
        self._exit_signals = 0
        self._restore_signals: Callable[[], None] = lambda: None

    def signal_handler(self, sig: int, frame: FrameType | None) -> None:
        self._exit_signals += 1
        signals.set_soon(self.should_exit)

    def run(self) -> None:
        self.startup()
        try:
            while not self.should_exit.is_set():
                changes = self.should_restart()
                if changes and not self.should_exit.is_set():
                    logger.warning(
                        "%s detected changes in %s. Reloading...",
                        self.reloader_name,
                        ", ".join(_display_path(path) for path in changes),
                    )
                    self.restart()
        finally:
            self.shutdown()

    def pause(self) -> None:
        """Wait ``--reload-delay`` between checks (returns early when stopping)."""
        self.should_exit.wait(self.config.reload_delay)

    def startup(self) -> None:
        logger.info("Started reloader process [%d] using %s", self.pid, self.reloader_name)
        self._restore_signals = signals.install(HANDLED_SIGNALS, self.signal_handler)
        self._spawn()

    def _spawn(self) -> None:
        self.process = Process(self.config, self.target, self.sockets)
        self.process.start()

    def _stop_worker(self) -> None:
        """Stop the worker gracefully, killing it if it takes too long or a second signal arrives."""
        process = self.process
        if process is None:
            return
        process.terminate()
        graceful = getattr(self.config, "timeout_graceful_shutdown", None)
        deadline = time.monotonic() + (RELOAD_STOP_TIMEOUT if graceful is None else graceful + 1.0)
        signals_seen = self._exit_signals
        while process.is_running() and time.monotonic() < deadline:
            if self._exit_signals > max(signals_seen, 1):
                break
            time.sleep(0.05)
        if process.is_running():
            logger.warning("Worker %s did not stop in time; killing it.", process.name)
            process.kill()
        process.join(5.0)

    def restart(self) -> None:
        self.is_restarting = True
        try:
            self._stop_worker()
            if not self.should_exit.is_set():
                self._spawn()
        finally:
            self.is_restarting = False

    def shutdown(self) -> None:
        self._stop_worker()
        for sock in self.sockets:
            sock.close()
        self._restore_signals()
        logger.info("Stopping reloader process [%d]", self.pid)

    def should_restart(self) -> list[Path] | None:
        raise NotImplementedError("Reload strategies must implement should_restart()")


def _display_path(path: Path) -> str:
    try:
        return f"'{path.relative_to(Path.cwd())}'"
    except ValueError:
        return f"'{path}'"
