"""Process workers: :class:`Process`, a handle on one spawned worker, and :class:`Multiprocess`."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from fulmen.supervisors.heartbeat import stale_after
from fulmen.supervisors.pool import WorkerPool
from fulmen.supervisors.spawn import main_module_hidden, needs_main_module, spawn, stdin_fileno, worker_main
from fulmen.supervisors.worker import Worker

logger = logging.getLogger("fulmen.error")

#: How often a healthy worker is pinged.
PING_INTERVAL = 0.5
#: A fresh interpreter importing fulmen (and unpickling the target) may be slow on a busy machine:
#: until its first answer a worker gets this long, rather than the health-check timeout.
STARTUP_ALLOWANCE = 30.0


class Process(Worker):
    """A worker process started with the ``spawn`` method, probed by ping over a pipe."""

    kind = "process"

    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        super().__init__()
        self.config = config
        self.target = target
        self.sockets = sockets
        self.parent_conn, self.child_conn = spawn.Pipe()
        self.process = spawn.Process(
            target=worker_main,
            kwargs={
                "config": config,
                "target": target,
                "sockets": sockets,
                "conn": self.child_conn,
                "stdin_fileno": stdin_fileno(),
            },
            name="fulmen-worker",
        )
        self._seq = 0
        self._pending: dict[int, float] = {}  # unanswered pings: seq -> time sent
        self._last_ping = 0.0
        self._answered = False
        self._started: bool | None = None
        self._heartbeat: float | None = None  # monotonic time of the loop's last tick, as reported
        self._metrics: Any = None  # the latest metrics snapshot the worker sent (--metrics-bind)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode

    def start(self) -> None:
        with main_module_hidden(not needs_main_module(self.config, self.target)):
            self.process.start()
        self.started_at = time.monotonic()
        self.child_conn.close()  # the child has its copy; ours would hide the child's death from recv

    def is_running(self) -> bool:
        return self.process.is_alive()

    # -- health checks

    def _ping(self) -> int:
        self._seq += 1
        try:
            self.parent_conn.send(self._seq)
        except (OSError, ValueError):
            return self._seq
        self._last_ping = time.monotonic()
        self._pending[self._seq] = self._last_ping
        return self._seq

    def _drain(self, until_seq: int | None = None, wait: float = 0.0) -> None:
        """Read the replies that arrived; with ``until_seq``, wait up to ``wait`` s for that one."""
        deadline = time.monotonic() + wait
        try:
            while not self.parent_conn.closed:
                remaining = deadline - time.monotonic()
                waiting = until_seq is not None and until_seq in self._pending
                if not self.parent_conn.poll(max(0.0, remaining) if waiting else 0.0):
                    return
                seq, started, age, metrics = self.parent_conn.recv()
                self._metrics = metrics if metrics is not None else self._metrics
                if not seq:
                    continue  # the final metrics of a worker that stops
                self._answered = True
                self._started = started
                self._heartbeat = None if age is None else time.monotonic() - age
                for answered in [s for s in self._pending if s <= seq]:
                    del self._pending[answered]
        except (EOFError, OSError, ValueError):
            pass

    def _loop_problem(self, timeout: float) -> str | None:
        if self._heartbeat is not None:
            age = time.monotonic() - self._heartbeat
            if age > stale_after(timeout):
                return f"has a blocked event loop (no heartbeat for {age:.1f} s)"
        return None

    def health(self, timeout: float) -> str | None:
        if not self.is_running():
            return "exited"
        self._drain()
        now = time.monotonic()
        if self._pending:
            limit = timeout if self._answered else max(timeout, STARTUP_ALLOWANCE)
            if now - min(self._pending.values()) > limit:
                return f"did not answer a health check within {limit:g} s"
        elif now - self._last_ping >= PING_INTERVAL:
            self._ping()
        return self._loop_problem(timeout)

    def is_alive(self, timeout: float = 5) -> bool:
        """Alive, answering a fresh ping within ``timeout`` s, with a turning event loop (blocks)."""
        if not self.is_running():
            return False
        seq = self._ping()
        self._drain(until_seq=seq, wait=timeout)
        return seq not in self._pending and self._loop_problem(timeout) is None

    def metrics_snapshot(self) -> Any:
        return self._metrics

    def is_ready(self) -> bool:
        self._drain()
        if not self._pending:
            self._ping()
        if self._started is not None:
            return self._started or self._heartbeat is not None
        return self._answered  # a custom target: answering is all we can know

    # -- stopping

    def terminate(self) -> None:
        if self.process.exitcode is None and self.process.pid is not None:
            try:
                if os.name == "nt":  # pragma: no cover
                    self.process.terminate()
                else:
                    os.kill(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover - ended meanwhile
                pass

    def kill(self) -> None:
        if self.process.exitcode is None and self.process.pid is not None:
            self.process.kill()

    def join(self, timeout: float | None = None) -> None:
        if self.process.pid is None:
            return
        self.process.join(timeout)
        if self.process.exitcode is not None:
            self._drain()  # a last metrics snapshot may wait in the pipe
            self.parent_conn.close()


class Multiprocess(WorkerPool):
    """Supervises ``--workers`` processes sharing the listening sockets (the seed's names are kept)."""

    kind = "process"

    def create_worker(self, sockets: list[socket.socket] | None = None) -> Process:
        return Process(self.config, self.target, self.sockets if sockets is None else sockets)

    @property
    def processes(self) -> list[Worker]:
        return self.workers

    @property
    def processes_num(self) -> int:
        return self.workers_num

    @processes_num.setter
    def processes_num(self, value: int) -> None:
        self.workers_num = value

    def init_processes(self) -> None:
        self.init_workers()

    def keep_subprocess_alive(self) -> None:
        self.keep_workers_alive()
