"""The worker side of a spawned worker process.

Runs first in the child: restores stdin and logging (a spawned interpreter starts blank), starts the
health-check responder, then calls the target with the inherited sockets.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from fulmen.metrics.recorder import server_snapshot
from fulmen.options import STARTUP_FAILURE
from fulmen.supervisors.heartbeat import Heartbeats, install_heartbeats
from fulmen.supervisors.target import server_of

# Sockets travel to spawned children by pickling; this registers how.
multiprocessing.allow_connection_pickling()
spawn = multiprocessing.get_context("spawn")


class Pong:
    """Answers the supervisor's pings from a thread, reporting on the event loop.

    The reply is ``(seq, started, heartbeat_age, metrics)``: the thread answering proves the process
    runs, the heartbeat age proves (or disproves) that its event loop still turns, and ``metrics`` is a
    snapshot of the server's counts with ``--metrics-bind`` (else None). A last message with ``seq`` 0
    carries the final counts of a worker that stops.
    """

    def __init__(self, conn: Connection, heartbeats: Heartbeats, server: Any | None) -> None:
        self.conn = conn
        self.heartbeats = heartbeats
        self.server = server
        self.sending = threading.Lock()  # the replies and the last message, from two threads

    def status(self) -> tuple[bool | None, float | None]:
        beat = self.heartbeats.latest()
        age = None if beat is None else time.monotonic() - beat.at
        started = None if self.server is None else bool(self.server.started)
        return started, age

    def metrics(self) -> Any:
        return server_snapshot(self.server)

    def serve_forever(self) -> None:
        try:
            while True:
                seq = self.conn.recv()
                reply = (seq, *self.status(), self.metrics())
                with self.sending:
                    self.conn.send(reply)
        except (EOFError, OSError):
            return  # the supervisor is gone or closed the pipe

    def send_final_metrics(self) -> None:
        snapshot = self.metrics()
        if snapshot is not None:
            with self.sending, contextlib.suppress(OSError, ValueError):
                self.conn.send((0, None, None, snapshot))

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="fulmen-pong", daemon=True).start()


def worker_main(
    config: Any,
    target: Callable[..., Any],
    sockets: list[socket.socket],
    conn: Connection,
    stdin_fileno: int | None,
) -> None:
    """Entry point of a spawned worker process."""
    if stdin_fileno is not None:  # debuggers (pdb, breakpoint()) in the worker want the terminal
        try:
            sys.stdin = os.fdopen(stdin_fileno)
        except OSError:  # pragma: no cover
            pass
    for name in ("SIGTTIN", "SIGTTOU"):  # meant for the supervisor; their default action stops a process
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    config.configure_logging()

    server = server_of(target)  # this process's own copy of the server, when the target is Server.run
    heartbeats = install_heartbeats(server.config if server is not None else config)
    pong = Pong(conn, heartbeats, server)
    pong.start()
    interrupted = False
    try:
        target(sockets=sockets)
    except KeyboardInterrupt:  # the supervisor stops us with signals; a traceback would be noise
        interrupted = True
    pong.send_final_metrics()
    if not interrupted and server is not None and not server.started:
        # The server returned without ever serving (its lifespan startup failed): tell the supervisor
        # it failed to start, as an import or bind error does, rather than exiting like a worker that
        # served its --limit-max-requests.
        sys.exit(STARTUP_FAILURE)


def stdin_fileno() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def needs_main_module(*objects: Any) -> bool:
    """Whether unpickling ``objects`` in a child needs this program's ``__main__`` module."""
    try:
        return b"__main__" in pickle.dumps(objects)
    except Exception:
        return True


@contextlib.contextmanager
def main_module_hidden(hide: bool) -> Iterator[None]:
    """Keep a spawned child from re-running the main script, when it does not need it.

    ``spawn`` re-imports the parent's main script in the child so that objects defined there can be
    unpickled; a script without an ``if __name__ == "__main__"`` guard (as in the documented
    ``Multiprocess(config, target=Server(config).run, ...)`` example) would then start a second
    server in the child. Without ``__file__`` the main module is treated like an interactive one.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not hide or main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path
