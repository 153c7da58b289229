"""The counters of one server (one worker), updated as it serves, and snapshots of them.

The hot path only adds to plain ints and floats of one :class:`WorkerMetrics` owned by the server's
event loop: no lock, no dict, no object per request. Gauges (open connections and WebSockets, CPU,
memory) cost nothing per request: they are read when a :class:`Snapshot` is taken, about twice a second
for a supervisor and at each scrape of a single server.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from fulmen.metrics.process import cpu_seconds, resident_bytes

#: The ``protocol`` label of each request counter, and its offset in :attr:`WorkerMetrics.statuses`.
PROTOCOLS = ("http/1.1", "http/2", "websocket")
HTTP1, HTTP2, WEBSOCKET = 0, 600, 1200
#: The ``status`` label. A snapshot's ``requests`` has 6 counters per protocol, one per class (``1xx`` at
#: 1, ``5xx`` at 5; 0 unused): ``requests[6 * protocol_index + status // 100]``.
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
#: Upper bounds of the request-duration histogram, in seconds (a last bucket takes the rest).
DURATION_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

monotonic = time.monotonic


@dataclass
class Snapshot:
    """The values of one worker at one moment (picklable: it travels from a worker process)."""

    requests: list[int] = field(default_factory=lambda: [0] * 18)
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS) + 1))
    duration_sum: float = 0.0
    received_bytes: int = 0
    sent_bytes: int = 0
    #: Gauges: open connections (all protocols) and, among them, WebSockets.
    connections: int = 0
    websockets: int = 0
    #: Gauge: the longest lateness of the event loop over about the last second, in seconds.
    loop_lag: float = 0.0
    #: The process's CPU seconds and resident bytes (0 for a thread worker: the process reports them).
    cpu_seconds: float = 0.0
    resident_bytes: int = 0

    def add_counters(self, other: Snapshot) -> None:
        """Add ``other``'s counters (not its gauges) to this one's."""
        self.requests = [a + b for a, b in zip(self.requests, other.requests, strict=True)]
        self.duration_buckets = [
            a + b for a, b in zip(self.duration_buckets, other.duration_buckets, strict=True)
        ]
        self.duration_sum += other.duration_sum
        self.received_bytes += other.received_bytes
        self.sent_bytes += other.sent_bytes
        self.cpu_seconds += other.cpu_seconds


class WorkerMetrics:
    """What one server counts while ``--metrics-bind`` is set (``ServerState.metrics``)."""

    __slots__ = (
        "statuses",
        "duration_buckets",
        "duration_sum",
        "received_bytes",
        "sent_bytes",  # HTTP response bodies
        "lag_window",
        "loop_lag",
        "last_tick",
        "process_stats",
    )

    def __init__(self, process_stats: bool = True) -> None:
        self.statuses = [0] * (3 * 600)  # by protocol offset + status: no division per request
        self.duration_buckets = [0] * (len(DURATION_BOUNDS) + 1)
        self.duration_sum = 0.0
        self.received_bytes = 0
        self.sent_bytes = 0
        self.lag_window = 0.0  # the longest lag of the current second
        self.loop_lag = 0.0  # the longest lag of the last complete second
        self.last_tick = monotonic()
        #: Whether snapshots carry the process's CPU and memory (not for a thread worker).
        self.process_stats = process_stats

    # -- the hot path

    def record(self, protocol_status: int, started_at: float, sent: int) -> None:
        """An HTTP response is complete: ``protocol_status`` is the protocol's offset plus the status; the
        request started at ``started_at`` (monotonic) and its response body had ``sent`` bytes."""
        elapsed = monotonic() - started_at
        self.statuses[protocol_status] += 1
        self.duration_buckets[bisect_left(DURATION_BOUNDS, elapsed)] += 1
        self.duration_sum += elapsed
        self.sent_bytes += sent

    def count(self, protocol_status: int) -> None:
        """A response without a duration: a WebSocket handshake's (101 when accepted), or one the server
        made for a request it rejected."""
        self.statuses[protocol_status] += 1

    # -- the server's clock (Server.main_loop, every 100 ms)

    def tick(self, lag: float, new_window: bool) -> None:
        """The main loop woke ``lag`` seconds late; ``new_window`` once a second."""
        self.last_tick = monotonic()
        if new_window:
            self.loop_lag = max(self.lag_window, lag)
            self.lag_window = 0.0
        elif lag > self.lag_window:
            self.lag_window = lag

    # -- reading

    def snapshot(self, connections: Any = ()) -> Snapshot:
        """The values now; ``connections`` is the server's set of open connections (copied first, as
        the event loop may change it meanwhile)."""
        open_connections = list(connections)
        # ServerProtocol.is_websocket: read, not imported, since the protocols stand above this module.
        websockets = sum(1 for connection in open_connections if getattr(connection, "is_websocket", False))
        # A blocked loop does not tick: the time since its last tick is then the lag that matters.
        stalled = monotonic() - self.last_tick - TICK
        return Snapshot(
            requests=status_classes(self.statuses),
            duration_buckets=list(self.duration_buckets),
            duration_sum=self.duration_sum,
            received_bytes=self.received_bytes,
            sent_bytes=self.sent_bytes,
            connections=len(open_connections),
            websockets=websockets,
            loop_lag=max(self.loop_lag, self.lag_window, stalled, 0.0),
            cpu_seconds=cpu_seconds() if self.process_stats else 0.0,
            resident_bytes=resident_bytes() if self.process_stats else 0,
        )


#: The server's main loop period, in seconds (``Server.main_loop``).
TICK = 0.1


def status_classes(statuses: list[int]) -> list[int]:
    """Counters by protocol and status (see :attr:`WorkerMetrics.statuses`) summed by status class."""
    classes = [0] * 18
    for protocol_index, offset in enumerate((HTTP1, HTTP2, WEBSOCKET)):
        for status_class in range(1, 6):
            start = offset + 100 * status_class
            classes[6 * protocol_index + status_class] = sum(statuses[start : start + 100])
    return classes


def server_snapshot(server: Any) -> Snapshot | None:
    """A snapshot of ``server``'s counts, or None when it counts nothing (no ``--metrics-bind``)."""
    state = getattr(server, "server_state", None)
    metrics: WorkerMetrics | None = getattr(state, "metrics", None)
    return None if metrics is None else metrics.snapshot(state.connections)  # type: ignore[union-attr]
