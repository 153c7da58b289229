"""``Server``: binds, serves, ticks once every 100 ms and shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator
from email.utils import formatdate
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from fulmen.access_log import AccessLogBuffer
from fulmen.caches import HTTPCaches
from fulmen.config import Config
from fulmen.heap import settle_heap_thresholds
from fulmen.listeners import Listeners, bind_failure, open_listeners, wants_listeners
from fulmen.options import STARTUP_FAILURE

if TYPE_CHECKING:
    from fulmen.lifespan import LifespanOff, LifespanOn
    from fulmen.metrics.aggregate import Report
    from fulmen.metrics.exporter import MetricsExporter
    from fulmen.metrics.recorder import WorkerMetrics

HANDLED_SIGNALS: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
if sys.platform == "win32":  # pragma: no cover
    HANDLED_SIGNALS += (signal.SIGBREAK,)

logger = logging.getLogger("fulmen.error")


class ServerState:
    """State shared by every connection of one server."""

    def __init__(self) -> None:
        self.total_requests = 0
        self.completed_requests = 0
        self.connections: set[Any] = set()  # each a fulmen.protocols.server_protocol.ServerProtocol
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []
        #: What the hot path remembers: this server's own, so thread workers share none of it.
        self.caches = HTTPCaches()
        #: Writes access lines without the logging machinery while the access logger is set up as
        #: by default (None: through logging); the server refreshes it once a second.
        self.access_buffer: AccessLogBuffer | None = None
        #: ``--limit-max-requests`` (with its jitter): on reaching it, ``on_max_requests`` is called.
        self.max_requests: int | None = None
        self.on_max_requests: Callable[[], None] | None = None
        #: ``--metrics-bind``: what the connections count (None: nothing is counted).
        self.metrics: WorkerMetrics | None = None

    def count_request(self) -> None:
        """Count a request the application is about to see (HTTP request or WebSocket handshake)."""
        self.total_requests += 1
        if self.total_requests == self.max_requests:
            self.request_limit_reached()

    def request_limit_reached(self) -> None:
        if self.on_max_requests is not None:
            self.on_max_requests()


def _http_date() -> bytes:
    return formatdate(usegmt=True).encode()


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState()
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.last_notified = 0.0
        self.servers: list[asyncio.base_events.Server] = []
        self.lifespan: LifespanOn | LifespanOff | None = None
        self._captured_signals: list[int] = []
        self.own_listeners: Listeners | None = None
        self.metrics_exporter: MetricsExporter | None = None
        #: ``--limit-max-requests`` plus its jitter, drawn in :meth:`startup` so that every worker
        #: process (each gets a copy of one Server) draws its own.
        self.limit_max_requests: int | None = None
        self._draw_request_limit()

    # -- running

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until stopped, on a new event loop of ``--loop``'s kind."""
        loop_factory = self.config.get_loop_factory()
        try:
            if loop_factory is None:
                asyncio.run(self.serve(sockets=sockets))
            elif sys.version_info >= (3, 12):
                with asyncio.Runner(loop_factory=loop_factory) as runner:
                    runner.run(self.serve(sockets=sockets))
            else:
                loop = loop_factory()
                asyncio.set_event_loop(loop)
                try:
                    loop.run_until_complete(self.serve(sockets=sockets))
                finally:
                    _cancel_remaining(loop)
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    asyncio.set_event_loop(None)
                    loop.close()
        except KeyboardInterrupt:
            pass

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            config.load()
        self.lifespan = config.lifespan_class(config)
        message = "Started server process [%d]"
        color_message = "Started server process [" + click.style("%d", fg="cyan") + "]"
        logger.info(message, process_id, extra={"color_message": color_message})
        await self.startup(sockets=sockets)
        if not self.should_exit:
            await self.main_loop()
        if not self.started:
            return
        await self.shutdown(sockets=sockets)
        message = "Finished server process [%d]"
        color_message = "Finished server process [" + click.style("%d", fg="cyan") + "]"
        logger.info(message, process_id, extra={"color_message": color_message})

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        if not config.loaded:
            config.load()  # uvicorn requires load() before startup(); fulmen does it when it was not
        if self.lifespan is None:
            self.lifespan = config.lifespan_class(config)
        if config.metrics_bind:
            self.start_metrics()
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            self.stop_metrics()
            return
        settle_heap_thresholds()

        loop = asyncio.get_running_loop()
        # Made by the thread that serves: see fulmen.caches.
        self.server_state.caches = HTTPCaches()
        self.update_default_headers()
        self._draw_request_limit()
        self.server_state.max_requests = self.limit_max_requests
        self.server_state.on_max_requests = self._on_max_requests
        self.refresh_access_buffer()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            assert self.lifespan is not None
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop or loop,
            )

        backlog = config.backlog
        listeners: list[socket.socket]
        if sockets is None and wants_listeners(config):
            # --bind, --reuse-port or systemd's sockets: bound (and logged) here, closed at shutdown.
            self.own_listeners = open_listeners(config)
            sockets = self.own_listeners.sockets
        try:
            if sockets is not None:
                # Pre-bound sockets (supervisors, gunicorn-style embedding): bind_socket() logged them.
                for sock in sockets:
                    server = await loop.create_server(
                        create_protocol, sock=sock, ssl=config.ssl, backlog=backlog
                    )
                    self.servers.append(server)
                listeners = list(sockets)
            elif config.fd is not None:
                sock = socket.fromfd(config.fd, socket.AF_UNIX, socket.SOCK_STREAM)
                server = await loop.create_server(create_protocol, sock=sock, ssl=config.ssl, backlog=backlog)
                self.servers.append(server)
                listeners = list(server.sockets)
            elif config.uds is not None:
                uds_perms = 0o666
                if os.path.exists(config.uds):
                    uds_perms = os.stat(config.uds).st_mode
                server = await loop.create_unix_server(
                    create_protocol, path=config.uds, ssl=config.ssl, backlog=backlog
                )
                os.chmod(config.uds, uds_perms)
                self.servers.append(server)
                listeners = list(server.sockets)
            else:
                server = await loop.create_server(
                    create_protocol, host=config.host, port=config.port, ssl=config.ssl, backlog=backlog
                )
                self.servers.append(server)
                listeners = list(server.sockets)
        except (OSError, ValueError, OverflowError) as exc:  # a bad host name is a UnicodeError on uvloop
            if sockets is not None:
                address = "the inherited sockets"
            elif config.fd is not None:
                address = f"file descriptor {config.fd}"
            elif config.uds is not None:
                address = f"unix socket {config.uds}"
            else:
                address = f"{config.host}:{config.port}"
            logger.error("%s", bind_failure(address, exc))
            for server in self.servers:
                server.close()
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)

        if sockets is None:
            self._log_started_message(listeners)
        self.started = True

    def start_metrics(self) -> None:
        """Count for ``--metrics-bind``; serve the metrics too unless a supervisor does (it sums its
        workers' counts)."""
        from fulmen.metrics.recorder import WorkerMetrics

        # A thread worker's process is described by its supervisor: no CPU or memory of its own.
        self.server_state.metrics = WorkerMetrics(threading.current_thread() is threading.main_thread())
        if not getattr(self.config, "metrics_served_elsewhere", False):
            from fulmen.metrics.exporter import start_exporter

            self.metrics_exporter = start_exporter(self.config.metrics_bind, self.metrics_report)

    def metrics_report(self) -> Report:
        from fulmen.metrics.aggregate import single_server_report

        state = self.server_state
        return single_server_report(state.metrics, state.connections)

    def stop_metrics(self) -> None:
        if self.metrics_exporter is not None:
            self.metrics_exporter.stop()
            self.metrics_exporter = None

    def _log_started_message(self, listeners: list[socket.socket]) -> None:
        config = self.config
        if config.fd is not None:
            sockname = listeners[0].getsockname() if listeners else config.fd
            logger.info("Fulmen running on socket %s (Press CTRL+C to quit)", sockname)
        elif config.uds is not None:
            logger.info("Fulmen running on unix socket %s (Press CTRL+C to quit)", config.uds)
        else:
            host = "0.0.0.0" if config.host is None else config.host
            addr_format = "%s://[%s]:%d" if ":" in host else "%s://%s:%d"
            port = config.port
            if port == 0 and listeners:
                port = listeners[0].getsockname()[1]
            scheme = "https" if config.ssl else "http"
            message = f"Fulmen running on {addr_format} (Press CTRL+C to quit)"
            color_message = (
                "Fulmen running on " + click.style(addr_format, bold=True) + " (Press CTRL+C to quit)"
            )
            logger.info(message, scheme, host, port, extra={"color_message": color_message})

    def refresh_access_buffer(self) -> None:
        """Access lines without the logging machinery while ``fulmen.access`` is set up as by default;
        through logging as soon as that changes (a handler, filter or level set at run time)."""
        state = self.server_state
        if self.config.access_log:
            state.access_buffer = AccessLogBuffer.refresh(state.access_buffer, asyncio.get_running_loop())

    def update_default_headers(self) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if self.config.date_header:
            headers.append((b"date", _http_date()))
        self.server_state.default_headers = headers + self.config.encoded_headers

    async def main_loop(self) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        metrics = self.server_state.metrics
        while not should_exit:
            counter = (counter + 1) % 864000
            due = time.monotonic() + 0.1
            await asyncio.sleep(0.1)
            if metrics is not None:  # how late the loop woke: its lag
                metrics.tick(max(time.monotonic() - due, 0.0), counter % 10 == 0)
            should_exit = await self.on_tick(counter)

    async def on_tick(self, counter: int) -> bool:
        # Once a second: refresh the date header, report progress to a supervisor.
        if counter % 10 == 0:
            self.update_default_headers()
            self.refresh_access_buffer()
            progress = self.config.callback_progress
            if progress is not None:
                progress()
            notify = self.config.callback_notify
            if notify is not None and time.monotonic() - self.last_notified > self.config.timeout_notify:
                self.last_notified = time.monotonic()
                await notify()

        if self.should_exit:
            return True
        limit = self.limit_max_requests
        return limit is not None and self.server_state.total_requests >= limit

    def _draw_request_limit(self) -> None:
        limit = self.config.limit_max_requests
        if limit is not None:
            jitter = max(self.config.limit_max_requests_jitter or 0, 0)
            self.limit_max_requests = limit + random.randint(0, jitter)

    def _on_max_requests(self) -> None:
        """The request limit is reached: stop accepting now, and let open connections close after the
        responses in flight, so no request beyond those already sent is served and none is dropped."""
        logger.info("Maximum request limit of %d exceeded. Terminating process.", self.limit_max_requests)
        self.should_exit = True
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.stop_keep_alive()  # HTTP: no request after the ones in flight

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        if self.own_listeners is not None:
            self.own_listeners.close()

        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.01)

        timeout = self.config.timeout_graceful_shutdown
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=timeout)
        except asyncio.TimeoutError:
            logger.error(
                "Cancel %s running task(s), timeout graceful shutdown exceeded", len(self.server_state.tasks)
            )
            for task in self.server_state.tasks:
                task.cancel()
            for connection in list(self.server_state.connections):
                connection.transport.abort()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1)

        if self.lifespan is not None and not self.force_exit:
            await self.lifespan.shutdown()
        if self.server_state.access_buffer is not None:
            self.server_state.access_buffer.flush()
        self.stop_metrics()

    async def _wait_tasks_to_complete(self) -> None:
        state = self.server_state
        if state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while state.connections and not self.force_exit:
                await asyncio.sleep(0.05)
        if state.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while state.tasks and not self.force_exit:
                await asyncio.sleep(0.05)

    # -- signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT/SIGTERM while serving; afterwards restore the previous handlers and hand
        them the signals received, so that a program embedding the server sees them too."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        # Hand the signals received back to the handlers that were there before (LIFO, as uvicorn
        # does), so that a program embedding the server sees them. SIG_DFL and SIG_IGN are not
        # re-raised: a server stopped gracefully by SIGTERM exits normally, with status 0.
        for captured in reversed(self._captured_signals):
            handler = original.get(captured)
            if callable(handler):
                signal.raise_signal(captured)
        self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    # uvicorn kept this name for code that installed handlers itself.
    def install_signal_handlers(self) -> None:
        """Deprecated: signals are handled by :meth:`capture_signals`."""


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
