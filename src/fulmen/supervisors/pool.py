"""The supervision loop shared by process and thread workers.

One policy for both kinds of worker: replace dead or unhealthy workers within a restart budget, stop
everything when a worker cannot start, roll every worker on SIGHUP (the replacement serves before
the old worker is asked to stop, so no request is dropped), grow on SIGTTIN, shrink on SIGTTOU, and
stop gracefully on SIGINT/SIGTERM. Subclasses only say how to create a worker.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from fulmen.listeners import SlotSockets
from fulmen.metrics.aggregate import PoolMetrics
from fulmen.metrics.exporter import serve_metrics
from fulmen.options import STARTUP_FAILURE
from fulmen.supervisors import signals
from fulmen.supervisors.budget import RestartBudget
from fulmen.supervisors.worker import Worker

logger = logging.getLogger("fulmen.error")

#: How often the loop looks at signals; health checks run every other tick.
TICK = 0.1
HEALTH_EVERY = 0.5
#: Longest wait for a new worker to serve during a rolling restart, at least.
MIN_READY_TIMEOUT = 30.0
#: Extra time, beyond --timeout-graceful-shutdown, for a worker to run its lifespan shutdown and exit.
STOP_MARGIN = 3.0
#: Internal command queued by :meth:`WorkerPool.request_restart` (not a signal number).
RESTART_COMMAND = -1


def workers_from_config(config: Any) -> int:
    """``--workers``, else ``$WEB_CONCURRENCY``, else 1."""
    workers = getattr(config, "workers", None)
    if workers is None:
        workers = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    return max(1, int(workers))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown status"
    if code < 0:
        try:
            import signal

            return f"signal {signal.Signals(-code).name}"
        except ValueError:  # pragma: no cover
            return f"signal {-code}"
    return f"status {code}"


@dataclass
class Slot:
    """A place for one worker: the worker, its restart budget and, after a crash, when to restart it."""

    worker: Worker
    budget: RestartBudget = field(default_factory=RestartBudget)
    restart_at: float | None = None
    #: What this slot's workers serve: the pool's sockets, or this slot's own with --reuse-port.
    sockets: list[socket.socket] | None = None


@dataclass
class Retiring:
    """A worker asked to stop that may still be draining requests."""

    worker: Worker
    deadline: float | None
    killed: bool = False


class WorkerPool(abc.ABC):
    """Keeps ``workers_num`` workers serving ``sockets`` until told to stop."""

    kind = "worker"

    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        self.config = config
        self.target = target
        self.sockets = sockets
        self.workers_num = workers_from_config(config)
        #: --metrics-bind: every worker's counts, the ended workers' included, and restarts by cause.
        self.metrics = PoolMetrics(lambda: self.workers, lambda: [entry.worker for entry in self.retiring])
        if getattr(config, "metrics_bind", None):
            config.metrics_served_elsewhere = True  # the workers count; the supervisor serves the sum
        self.slot_sockets = SlotSockets(
            sockets, bool(getattr(config, "reuse_port", False)), getattr(config, "backlog", 2048)
        )
        self.slots: list[Slot] = []
        self.retiring: list[Retiring] = []
        self.should_exit = threading.Event()
        self.signal_queue: list[int] = []
        #: The exit status the program should end with: 0, or STARTUP_FAILURE.
        self.returncode = 0
        self._exit_signals = 0
        self._restart_done = threading.Condition()
        self._restarts_completed = 0
        self._last_health = 0.0
        self._reload_requested = False

    # -- what subclasses provide

    @abc.abstractmethod
    def create_worker(self, sockets: list[socket.socket] | None = None) -> Worker:
        """A new, not yet started, worker serving ``sockets`` (default: the pool's)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Runs once before the first worker starts."""

    def reload_app(self) -> bool:
        """Make the next workers run the application's current code; False if that code cannot load."""
        return True

    # -- views

    @property
    def workers(self) -> list[Worker]:
        return [slot.worker for slot in self.slots]

    @property
    def timeout(self) -> float:
        return float(getattr(self.config, "timeout_worker_healthcheck", 5) or 5)

    @property
    def ready_timeout(self) -> float:
        return max(self.timeout * 2, MIN_READY_TIMEOUT)

    def _stop_deadline(self) -> float | None:
        graceful = getattr(self.config, "timeout_graceful_shutdown", None)
        return None if graceful is None else time.monotonic() + graceful + STOP_MARGIN

    def _stopping(self) -> bool:
        return self.should_exit.is_set() or self._exit_signals > 0

    # -- the loop

    def run(self) -> None:
        restore = signals.install(signals.POOL_SIGNALS, self._on_signal)
        logger.info(
            "Started parent process [%d] with %d %s workers", os.getpid(), self.workers_num, self.kind
        )
        exporter = None
        try:
            exporter = serve_metrics(self.config, self.metrics, self.kind == "process")
            self.prepare()
            self.init_workers()
            while not self.should_exit.wait(TICK):
                self.handle_signals()
                if self.should_exit.is_set():
                    break
                self.keep_workers_alive()
                self.reap_retiring()
                self.metrics.track(force=False)
        finally:
            self.terminate_all()
            self.join_all()
            if exporter is not None:
                exporter.stop()
            self.slot_sockets.close()
            restore()
            logger.info("Stopping parent process [%d]", os.getpid())

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signal_queue.append(sig)
        if sig in signals.EXIT_SIGNALS:
            self._exit_signals += 1

    def init_workers(self) -> None:
        for _ in range(self.workers_num - len(self.slots)):
            self.slots.append(self._new_slot())

    def _new_slot(self) -> Slot:
        sockets = self.slot_sockets.take()
        return Slot(self._start_worker(sockets), sockets=sockets)

    def _start_worker(self, sockets: list[socket.socket] | None = None) -> Worker:
        worker = self.create_worker(sockets)
        worker.start()
        return worker

    def keep_workers_alive(self) -> None:
        """Replace dead and unhealthy workers, within each slot's restart budget."""
        if self.should_exit.is_set():
            return
        now = time.monotonic()
        check_health = now - self._last_health >= HEALTH_EVERY
        if check_health:
            self._last_health = now
        for slot in self.slots:
            worker = slot.worker
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    slot.worker = self._start_worker(slot.sockets)
                    slot.restart_at = None
                    slot.budget.record_restart(now)
                continue
            if worker.is_running():
                reason = worker.health(self.timeout) if check_health else None
                if reason is None:
                    continue
                logger.warning("Worker %s %s; replacing it.", worker.name, reason)
                self.metrics.count_restart("unhealthy")
                worker.kill()
                self.retiring.append(Retiring(worker, deadline=None, killed=True))
            else:
                worker.join(0)
                code = worker.exitcode
                if code == STARTUP_FAILURE and not self._stopping():
                    # It failed before serving (import, lifespan or bind error): every new worker
                    # would fail the same way, so the server stops rather than restart it.
                    logger.error(
                        "Worker %s failed to start (status %d); stopping the server.", worker.name, code
                    )
                    self.returncode = STARTUP_FAILURE
                    self.should_exit.set()
                    return
                if code == 0:
                    # A normal exit, e.g. after --limit-max-requests: replace it at once, no crash.
                    logger.info("Worker %s exited; starting a new one.", worker.name)
                    self.metrics.count_restart("exited")
                    slot.worker = self._start_worker(slot.sockets)
                    continue
                logger.warning("Worker %s died (%s).", worker.name, describe_exit(code))
                self.metrics.count_restart("crashed")
            self._schedule_restart(slot, now)

    def _schedule_restart(self, slot: Slot, now: float) -> None:
        delay = slot.budget.on_crash(slot.worker.uptime, now)
        slot.restart_at = now + delay
        recent = slot.budget.recent_restarts(now)
        if slot.budget.exhausted(now):
            logger.error(
                "Worker crash loop: %d restarts in the last %d s; next restart in %.1f s.",
                recent,
                int(slot.budget.window),
                delay,
            )
        else:
            logger.warning(
                "Restarting worker in %.1f s (%d of %d restarts allowed per %d s).",
                delay,
                recent + 1,
                slot.budget.max_restarts,
                int(slot.budget.window),
            )

    def reap_retiring(self) -> None:
        """Forget retired workers that have ended; force those past their deadline."""
        now = time.monotonic()
        for entry in list(self.retiring):
            if not entry.worker.is_running():
                entry.worker.join(0)
                self.retiring.remove(entry)
            elif not entry.killed and entry.deadline is not None and now >= entry.deadline:
                logger.warning("Worker %s did not stop in time; forcing it.", entry.worker.name)
                entry.worker.kill()
                entry.killed = True

    def retire(self, worker: Worker) -> None:
        """Ask ``worker`` to stop gracefully and let it drain in the background."""
        worker.terminate()
        self.retiring.append(Retiring(worker, self._stop_deadline()))

    # -- stopping

    def terminate_all(self) -> None:
        for slot in self.slots:
            slot.worker.terminate()
        for entry in self.retiring:
            entry.worker.terminate()

    def join_all(self) -> None:
        """Wait for every worker to end, at most --timeout-graceful-shutdown (or until a second signal)."""
        pending = [slot.worker for slot in self.slots] + [entry.worker for entry in self.retiring]
        deadline = self._stop_deadline()
        signals_seen = self._exit_signals
        while any(worker.is_running() for worker in pending):
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning("Workers did not stop within the graceful shutdown timeout; forcing them.")
                break
            if self._exit_signals > signals_seen:
                logger.warning("Second stop signal; forcing the workers to stop.")
                break
            time.sleep(0.05)
        for worker in pending:
            if worker.is_running():
                worker.kill()
        for worker in pending:
            worker.join(1.0)
        self.retiring.clear()

    # -- signals and commands

    def handle_signals(self) -> None:
        """Act on the signals (and internal commands) queued since the last call."""
        queued = tuple(self.signal_queue)
        for item in queued:
            self.signal_queue.remove(item)
        done: set[int] = set()
        for item in queued:
            if item in done and item != RESTART_COMMAND:
                continue  # SIGHUPs queued together need one rolling restart
            if item == RESTART_COMMAND:
                self._run_restart_command()
                continue
            name = signals.POOL_SIGNALS.get(item, str(item))
            if name == "HUP":
                done.add(item)
            handler = getattr(self, f"handle_{name.lower()}", None)
            if handler is not None:
                handler()
            if self.should_exit.is_set():
                return

    def handle_int(self) -> None:
        logger.info("Received SIGINT, stopping the workers.")
        self.should_exit.set()

    def handle_term(self) -> None:
        logger.info("Received SIGTERM, stopping the workers.")
        self.should_exit.set()

    def handle_break(self) -> None:  # pragma: no cover - Windows
        logger.info("Received SIGBREAK, stopping the workers.")
        self.should_exit.set()

    def handle_hup(self) -> None:
        logger.info("Received SIGHUP, replacing every worker.")
        self.restart_all()

    def handle_ttin(self) -> None:
        self.workers_num += 1
        logger.info("Received SIGTTIN, increasing the number of workers to %d.", self.workers_num)
        self.slots.append(self._new_slot())

    def handle_ttou(self) -> None:
        if self.workers_num <= 1:
            logger.info("Received SIGTTOU, but there is already only one worker.")
            return
        self.workers_num -= 1
        logger.info("Received SIGTTOU, decreasing the number of workers to %d.", self.workers_num)
        slot = self.slots.pop()
        self.retire(slot.worker)
        self.slot_sockets.release(slot.sockets or [])

    def request_restart(self, reload_app: bool = False, wait: float | None = None) -> bool:
        """Ask the loop (from any thread) to replace every worker, after :meth:`reload_app` if asked.

        With ``wait``, block up to that many seconds for the restart to finish; returns whether it did.
        """
        with self._restart_done:
            target = self._restarts_completed + 1
            self._reload_requested = self._reload_requested or reload_app
            self.signal_queue.append(RESTART_COMMAND)
            if wait is None:
                return False
            return self._restart_done.wait_for(lambda: self._restarts_completed >= target, wait)

    def _run_restart_command(self) -> None:
        if self._reload_requested:
            self._reload_requested = False
            if self.reload_app():
                self.restart_all()
        else:
            self.restart_all()
        with self._restart_done:
            self._restarts_completed += 1
            self._restart_done.notify_all()

    def restart_all(self) -> None:
        """Replace every worker, one at a time: the new one serves before the old one stops."""
        for slot in list(self.slots):
            if self._stopping():
                return
            if slot not in self.slots:
                continue  # removed by a SIGTTOU meanwhile
            new = self._start_worker(slot.sockets)
            if not new.wait_until_ready(self.ready_timeout, self._stopping):
                new.kill()
                new.join(5.0)
                if not self._stopping():
                    logger.error(
                        "New worker %s did not start serving (%s); keeping the current workers.",
                        new.name,
                        describe_exit(new.exitcode) if new.exitcode is not None else "timed out",
                    )
                return
            old, slot.worker, slot.restart_at = slot.worker, new, None
            self.metrics.count_restart("rolling")
            if old.is_running():
                self.retire(old)
            self.reap_retiring()
