"""The automatic supervisor: threads when the GIL is off (and stays off once the application is
loaded, see :mod:`fulmen.supervisors.gil`), processes otherwise.

The caller says how many workers and what they run; :class:`Supervisor` picks the kind of worker
and delegates to :class:`~fulmen.supervisors.multithread.Multithread` or
:class:`~fulmen.supervisors.multiprocess.Multiprocess`, which share one supervision policy.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any, Literal

from fulmen.options import STARTUP_FAILURE
from fulmen.supervisors.gil import threads_or_processes
from fulmen.supervisors.multiprocess import Multiprocess
from fulmen.supervisors.multithread import Multithread, gil_enabled
from fulmen.supervisors.pool import WorkerPool, workers_from_config

WorkerMode = Literal["thread", "process"]


def auto_mode() -> WorkerMode:
    """``thread`` when the GIL is disabled at run time, else ``process``."""
    return "process" if gil_enabled() else "thread"


class Supervisor:
    """Spawn and supervise ``config.workers`` workers as threads or processes."""

    def __init__(
        self,
        config: Any,
        target: Callable[..., Any] | None = None,
        *,
        mode: WorkerMode | None = None,
        app_path: str | None = None,
    ) -> None:
        self.config = config
        if target is None:
            from fulmen.server import Server

            target = Server(config).run
        self.target = target
        self._mode: WorkerMode = mode if mode is not None else auto_mode()
        self.app_path = app_path
        if app_path is not None and not isinstance(config.app, str):
            config.app = app_path
        self.pool: WorkerPool | None = None
        self.returncode = 0
        self._shutdown_requested = threading.Event()

    @property
    def mode(self) -> WorkerMode:
        return self._mode

    @property
    def worker_count(self) -> int:
        return self.pool.workers_num if self.pool is not None else workers_from_config(self.config)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the workers and block until they have all stopped."""
        if sockets is None:
            sockets = [self.config.bind_socket()]
        if self._mode == "thread":
            mode = threads_or_processes(self.config)  # the application may turn the GIL back on
            if mode is None:
                self.returncode = STARTUP_FAILURE
                return
            self._mode = mode
        pool_class = Multithread if self._mode == "thread" else Multiprocess
        self.pool = pool_class(self.config, self.target, sockets)
        if self._shutdown_requested.is_set():
            return
        self.pool.run()
        self.returncode = self.pool.returncode

    def shutdown(self) -> None:
        """Ask every worker to stop (does not wait); safe from any thread."""
        self._shutdown_requested.set()
        if self.pool is not None:
            self.pool.should_exit.set()

    def restart_workers(self, timeout: float | None = 60.0) -> bool:
        """Replace every worker gracefully, thread workers re-importing the application first.

        Blocks until done (or ``timeout``) when called from another thread than the one running the
        supervisor; returns whether the restart completed.
        """
        if self.pool is None:
            return False
        wait = None if threading.current_thread() is threading.main_thread() else timeout
        return self.pool.request_restart(reload_app=self._mode == "thread", wait=wait)
