"""A :class:`~fulmen.metrics.aggregate.Report` in the Prometheus text format (version 0.0.4).

Written directly rather than through ``prometheus-client``: the values are already aggregated plain
numbers with a fixed set of label values (nothing to escape), so the format is a few lines of code, and
``--metrics-bind`` works with ``pip install fulmen`` alone. ``promtool check metrics`` checks the output
in the tests.
"""

from __future__ import annotations

from fulmen.metrics.aggregate import Report
from fulmen.metrics.process import START_TIME
from fulmen.metrics.recorder import DURATION_BOUNDS, PROTOCOLS, STATUS_CLASSES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, labels: str = "") -> None:
        self.lines.append(f"{name}{{{labels}}} {_number(value)}" if labels else f"{name} {_number(value)}")


def render(report: Report) -> str:
    """The text of one scrape."""
    out = _Writer()
    totals = report.totals

    out.family("fulmen_requests_total", "counter", "Responses sent, by protocol and status class.")
    for protocol_index, protocol in enumerate(PROTOCOLS):
        for status_class, status in enumerate(STATUS_CLASSES, start=1):
            labels = f'protocol="{protocol}",status="{status}"'
            out.sample("fulmen_requests_total", totals.requests[6 * protocol_index + status_class], labels)

    name = "fulmen_request_duration_seconds"
    out.family(name, "histogram", "HTTP request duration, from its head to the end of its response.")
    cumulative = 0
    for bound, count in zip(DURATION_BOUNDS, totals.duration_buckets, strict=False):
        cumulative += count
        out.sample(f"{name}_bucket", cumulative, f'le="{bound!r}"')
    cumulative += totals.duration_buckets[-1]
    out.sample(f"{name}_bucket", cumulative, 'le="+Inf"')
    out.sample(f"{name}_sum", totals.duration_sum)
    out.sample(f"{name}_count", cumulative)

    out.family("fulmen_connections", "gauge", "Open client connections, all protocols.")
    out.sample("fulmen_connections", totals.connections)
    out.family("fulmen_websockets", "gauge", "Open WebSocket connections.")
    out.sample("fulmen_websockets", totals.websockets)
    received_help = "Bytes read from client connections, all protocols (after TLS decryption)."
    out.family("fulmen_received_bytes_total", "counter", received_help)
    out.sample("fulmen_received_bytes_total", totals.received_bytes)
    sent_help = "Bytes of HTTP response bodies sent (HTTP/1.1 and HTTP/2)."
    out.family("fulmen_response_body_bytes_total", "counter", sent_help)
    out.sample("fulmen_response_body_bytes_total", totals.sent_bytes)

    out.family("fulmen_workers", "gauge", "Workers serving.")
    out.sample("fulmen_workers", len(report.workers))
    if report.restarts is not None:
        out.family("fulmen_worker_restarts_total", "counter", "Workers replaced, by cause.")
        for cause, count in report.restarts.items():
            out.sample("fulmen_worker_restarts_total", count, f'cause="{cause}"')
    out.family(
        "fulmen_event_loop_lag_seconds",
        "gauge",
        "Longest lateness of each worker's event loop in the last second.",
    )
    for worker in report.workers:
        out.sample("fulmen_event_loop_lag_seconds", worker.snapshot.loop_lag, f'worker="{worker.label}"')
    if report.process_workers:
        out.family(
            "fulmen_worker_cpu_seconds_total",
            "counter",
            "CPU time of the worker processes, ended ones included.",
        )
        out.sample("fulmen_worker_cpu_seconds_total", totals.cpu_seconds)
        out.family("fulmen_worker_resident_memory_bytes", "gauge", "Resident memory of each worker process.")
        for worker in report.workers:
            labels = f'worker="{worker.label}"'
            out.sample("fulmen_worker_resident_memory_bytes", worker.snapshot.resident_bytes, labels)

    this = "of the process serving these metrics"
    out.family("process_cpu_seconds_total", "counter", f"CPU time {this}.")
    out.sample("process_cpu_seconds_total", report.process_cpu_seconds)
    out.family("process_resident_memory_bytes", "gauge", f"Resident memory {this}.")
    out.sample("process_resident_memory_bytes", report.process_resident_bytes)
    out.family("process_start_time_seconds", "gauge", f"Start time {this}, in seconds since the epoch.")
    out.sample("process_start_time_seconds", START_TIME)
    return "\n".join(out.lines) + "\n"
