"""The ``--metrics-bind`` listener: ``GET /metrics`` answers the Prometheus text, any other path 404.

It runs in its own thread of the process that sees every worker (the supervisor, or a single server),
on the standard library's HTTP server: a scrape every few seconds needs nothing faster, and a worker's
blocked event loop cannot block it.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fulmen.listeners import BindError, bind_tcp, parse_bind
from fulmen.metrics.aggregate import PoolMetrics, Report
from fulmen.metrics.exposition import CONTENT_TYPE, render
from fulmen.options import STARTUP_FAILURE

logger = logging.getLogger("fulmen.error")

METRICS_PATH = "/metrics"
#: Seconds a scraper may take to send its request.
READ_TIMEOUT = 10.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = READ_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "fulmen"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        if self.path.partition("?")[0] != METRICS_PATH:
            status, content_type, body = 404, "text/plain; charset=utf-8", b"Not Found\n"
        else:
            try:
                status, content_type, body = 200, CONTENT_TYPE, render(self.server.collect()).encode()
            except Exception:
                logger.exception("Error while collecting metrics")
                status, content_type, body = 500, "text/plain; charset=utf-8", b"Internal Server Error\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def version_string(self) -> str:
        return "fulmen"

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged (the access log is for the application's requests)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, collect: Callable[[], Report]) -> None:
        super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.collect = collect


class MetricsExporter:
    """The metrics listener, serving from a daemon thread until :meth:`stop`."""

    def __init__(self, sock: socket.socket, collect: Callable[[], Report]) -> None:
        self.server = _Server(sock, collect)
        self.address = sock.getsockname()
        self.thread = threading.Thread(target=self.server.serve_forever, name="fulmen-metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def metrics_socket(value: str) -> socket.socket:
    """The listening socket of ``--metrics-bind`` (``HOST:PORT`` or ``[IPv6]:PORT``), or one error
    line and exit status 3."""
    try:
        address = parse_bind(value)
        if address.kind != "tcp":
            raise BindError(f"{value!r}: Prometheus scrapes over TCP, give HOST:PORT")
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return bind_tcp(family, sockaddr, backlog=64, reuse_port=False)
    except BindError as exc:
        logger.error("Invalid --metrics-bind value %s", exc)
    except OSError as exc:
        logger.error("Cannot serve metrics on %s: %s", value, exc)
    sys.exit(STARTUP_FAILURE)


def start_exporter(value: str, collect: Callable[[], Report]) -> MetricsExporter:
    """Serve ``collect()``'s report at ``http://<value>/metrics`` from now on, and log where."""
    exporter = MetricsExporter(metrics_socket(value), collect)
    exporter.start()
    host, port = exporter.address[0], exporter.address[1]
    shown = f"[{host}]" if ":" in host else host
    logger.info("Metrics at http://%s:%d%s", shown, port, METRICS_PATH)
    return exporter


def serve_metrics(config: Any, metrics: PoolMetrics, process_workers: bool) -> MetricsExporter | None:
    """Start the ``--metrics-bind`` listener of a supervisor (None when the option is not set)."""
    value = getattr(config, "metrics_bind", None)
    if not value:
        return None
    metrics.process_workers = process_workers
    return start_exporter(value, metrics.report)
