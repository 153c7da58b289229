"""Thread workers: :class:`Thread`, a handle on one worker thread, and :class:`Multithread`.

Each thread runs its own server on its own event loop, on duplicates of the listening sockets (a
server closes its sockets when it stops; duplicates keep the others listening). Only a free-threaded
interpreter runs them in parallel, which is why the command line refuses ``--worker-class thread``
elsewhere, but the classes work on any interpreter.
"""

from __future__ import annotations

import logging
import socket
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from typing import Any

from fulmen.metrics.recorder import server_snapshot
from fulmen.options import STARTUP_FAILURE
from fulmen.supervisors.heartbeat import Heartbeats, install_heartbeats, stale_after
from fulmen.supervisors.pool import WorkerPool
from fulmen.supervisors.reimport import reloaded_config
from fulmen.supervisors.target import fresh_server
from fulmen.supervisors.worker import Worker

logger = logging.getLogger("fulmen.error")


def gil_enabled() -> bool:
    """Whether the GIL is on right now (always, before Python 3.13)."""
    is_enabled: Callable[[], bool] | None = getattr(sys, "_is_gil_enabled", None)
    return True if is_enabled is None else bool(is_enabled())


def thread_workers_problem() -> str | None:
    """Why ``--worker-class thread`` cannot be used here, or None. Warns when it is only experimental."""
    free_threaded_build = sysconfig.get_config_var("Py_GIL_DISABLED") == 1
    if not free_threaded_build or gil_enabled():
        return (
            "--worker-class thread needs a free-threaded Python (3.14t) running with the GIL disabled; "
            "this interpreter has the GIL enabled. Use --worker-class process."
        )
    if sys.version_info < (3, 14):
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        logger.warning("Thread workers on free-threaded Python %s are experimental.", version)
    return None


class Thread(Worker):
    """A worker thread running its own server. Threads cannot be killed: :meth:`kill` only insists."""

    kind = "thread"

    def __init__(
        self,
        config: Any,
        target: Callable[..., Any],
        sockets: list[socket.socket],
        heartbeats: Heartbeats | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.sockets = sockets
        self.heartbeats = heartbeats if heartbeats is not None else install_heartbeats(config)
        self.server = fresh_server(target, config)
        self.target = self.server.run if self.server is not None else target
        self.thread = threading.Thread(target=self._main, name="fulmen-worker", daemon=True)
        self._exitcode: int | None = None
        self._stop_requests = 0

    def _main(self) -> None:
        ident = threading.get_ident()
        self.heartbeats.forget(ident)
        own_sockets = [sock.dup() for sock in self.sockets]
        code = 1
        try:
            self.target(sockets=own_sockets)
            # Returned without ever serving (its lifespan startup failed): a startup failure, which
            # stops the pool, unlike a worker that served its --limit-max-requests.
            code = STARTUP_FAILURE if self.server is not None and not self.server.started else 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            logger.exception("Worker thread [%d] crashed.", threading.get_native_id())
        finally:
            for sock in own_sockets:
                sock.close()
            self.heartbeats.forget(ident)
            self._exitcode = code

    @property
    def pid(self) -> int | None:
        return self.thread.native_id

    @property
    def exitcode(self) -> int | None:
        return None if self.thread.is_alive() else self._exitcode

    def start(self) -> None:
        self.thread.start()
        self.started_at = time.monotonic()

    def is_running(self) -> bool:
        return self.thread.is_alive()

    def _beat_age(self) -> float | None:
        beat = self.heartbeats.get(self.thread.ident)
        return None if beat is None else time.monotonic() - beat.at

    def health(self, timeout: float) -> str | None:
        if not self.is_running():
            return "exited"
        age = self._beat_age()
        if age is not None and age > stale_after(timeout):
            return f"missed its heartbeat (none for {age:.1f} s)"
        return None

    def metrics_snapshot(self) -> Any:
        return server_snapshot(self.server)

    def is_ready(self) -> bool:
        if self.server is not None and self.server.started:
            return True
        return self._beat_age() is not None

    def _request_stop(self, force: bool) -> None:
        server = self.server
        if server is None:
            logger.warning("Worker thread [%s] runs a custom target and cannot be asked to stop.", self.pid)
            return

        def stop() -> None:
            server.should_exit = True
            if force:
                server.force_exit = True

        beat = self.heartbeats.get(self.thread.ident)
        loop = None if beat is None else beat.loop
        try:
            if loop is None or loop.is_closed():
                raise RuntimeError
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # no loop yet, or already closed: its next check of the flags sees them
            stop()

    def terminate(self) -> None:
        if self.is_running():
            self._request_stop(force=False)

    def kill(self) -> None:
        if self.is_running():
            self._request_stop(force=True)

    def join(self, timeout: float | None = None) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)


class Multithread(WorkerPool):
    """Supervises ``--workers`` threads in this process, each serving on its own event loop."""

    kind = "thread"

    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        super().__init__(config, target, sockets)
        self.heartbeats = install_heartbeats(config)

    def prepare(self) -> None:
        # Load once here: concurrent loads of one Config from several threads would race.
        if not self.config.loaded:
            self.config.load()

    def reload_app(self) -> bool:
        """Re-import the application so that the next threads run the code now on disk."""
        try:
            self.config = reloaded_config(self.config)
        except (Exception, SystemExit):
            logger.exception("Could not reload the application; the workers keep the previous code.")
            return False
        return True

    def create_worker(self, sockets: list[socket.socket] | None = None) -> Thread:
        return Thread(self.config, self.target, self.sockets if sockets is None else sockets, self.heartbeats)

    @property
    def threads(self) -> list[Worker]:
        return self.workers

    @property
    def threads_num(self) -> int:
        return self.workers_num

    @threads_num.setter
    def threads_num(self, value: int) -> None:
        self.workers_num = value

    def init_threads(self) -> None:
        self.init_workers()

    def keep_threads_alive(self) -> None:
        self.keep_workers_alive()
