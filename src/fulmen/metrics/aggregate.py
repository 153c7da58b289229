"""One report for every worker of a server, including the workers that have ended.

A supervisor holds the latest :class:`~fulmen.metrics.recorder.Snapshot` of each worker: a process
worker's comes with each answer to a health-check ping (about twice a second) and once more when it
stops gracefully; a thread worker's is read directly. When a worker ends, its last snapshot is added to
the totals of the ended workers, so a scrape is the sum of those totals and of the live workers'
snapshots. Every counter of a worker only grows, and the supervisor never forgets what it has seen
of one, so no counter goes backwards when a worker is replaced (one killed by SIGKILL loses at most
what it counted since its last answer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fulmen.metrics.process import cpu_seconds, resident_bytes
from fulmen.metrics.recorder import Snapshot

#: How often, at most, the supervisor's loop takes its workers' snapshots while none starts or ends.
TRACK_EVERY = 0.5
#: The ``cause`` label of ``fulmen_worker_restarts_total``.
RESTART_CAUSES = ("crashed", "unhealthy", "exited", "rolling")


@dataclass
class WorkerReport:
    """One live worker's gauges, labelled by its place in the pool."""

    label: str
    snapshot: Snapshot


@dataclass
class Report:
    """Everything one scrape shows."""

    totals: Snapshot
    workers: list[WorkerReport]
    #: Worker restarts by cause; None when no supervisor runs (a single server).
    restarts: dict[str, int] | None = None
    #: Whether the workers are processes (their CPU and memory are then reported apart).
    process_workers: bool = True
    process_cpu_seconds: float = 0.0
    process_resident_bytes: int = 0


def single_server_report(metrics: Any, connections: Any) -> Report:
    """The report of a server without a supervisor: it is its only worker."""
    snapshot = metrics.snapshot(connections)
    return Report(
        totals=snapshot,
        workers=[WorkerReport("0", snapshot)],
        process_cpu_seconds=cpu_seconds(),
        process_resident_bytes=resident_bytes(),
    )


class PoolMetrics:
    """The totals of a worker pool; the pool calls :meth:`track` every loop turn and
    :meth:`count_restart` when it replaces a worker."""

    def __init__(self, serving: Callable[[], list[Any]], draining: Callable[[], list[Any]]) -> None:
        #: The pool's serving workers (in slot order) and those still draining after being asked to stop.
        self._serving = serving
        self._draining = draining
        self._lock = threading.Lock()
        self._tracked_at = 0.0
        self._known: set[Any] = set()  # the worker handles the pool holds, as of the last track()
        self._seen: dict[Any, Snapshot] = {}  # worker handle -> the latest snapshot taken from it
        self._ended = Snapshot()
        self.restarts = dict.fromkeys(RESTART_CAUSES, 0)
        self.process_workers = True

    def count_restart(self, cause: str) -> None:
        with self._lock:
            self.restarts[cause] = self.restarts.get(cause, 0) + 1

    def track(self, force: bool = True) -> None:
        """Note the pool's workers and take their latest snapshots; add the last counts of the workers
        that are gone to the totals of the ended ones.

        The pool calls this every loop turn, so every worker that served is noted, however short its
        life. Unless ``force``, snapshots are taken at most every :data:`TRACK_EVERY` seconds while the
        same workers run.
        """
        with self._lock:
            current = self._serving() + self._draining()
            now = time.monotonic()
            if not force and now - self._tracked_at < TRACK_EVERY and self._known == set(current):
                return
            self._tracked_at = now
            self._known.update(current)
            for worker in current:
                snapshot = worker_snapshot(worker)
                if snapshot is not None:
                    self._seen[worker] = snapshot
            for worker in self._known.difference(current):
                last = worker_snapshot(worker) or self._seen.get(worker)
                if last is not None:
                    self._ended.add_counters(last)
                self._known.discard(worker)
                self._seen.pop(worker, None)

    def report(self) -> Report:
        self.track()
        with self._lock:
            totals = Snapshot()
            totals.add_counters(self._ended)
            for snapshot in self._seen.values():
                totals.add_counters(snapshot)
                totals.connections += snapshot.connections
                totals.websockets += snapshot.websockets
            workers = []
            for index, worker in enumerate(self._serving()):
                latest = self._seen.get(worker)
                if latest is not None:
                    workers.append(WorkerReport(str(index), latest))
            restarts = dict(self.restarts)
        return Report(
            totals=totals,
            workers=workers,
            restarts=restarts,
            process_workers=self.process_workers,
            process_cpu_seconds=cpu_seconds(),
            process_resident_bytes=resident_bytes(),
        )


def worker_snapshot(worker: Any) -> Snapshot | None:
    """The latest snapshot a worker handle holds (``Worker.metrics_snapshot()``), if any."""
    read = getattr(worker, "metrics_snapshot", None)
    return read() if callable(read) else None
