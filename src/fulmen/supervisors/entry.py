"""Choosing how to run the server, as uvicorn does: reload, else several workers, else one server."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from fulmen.listeners import open_listeners, wants_listeners
from fulmen.options import STARTUP_FAILURE
from fulmen.supervisors.auto import Supervisor, WorkerMode, auto_mode
from fulmen.supervisors.change_reload import change_reload_class
from fulmen.supervisors.multithread import thread_workers_problem
from fulmen.supervisors.pool import workers_from_config
from fulmen.supervisors.target import server_of

logger = logging.getLogger("fulmen.error")


def worker_mode(config: Any) -> WorkerMode | None:
    """The kind of worker ``--worker-class`` asks for, or None (after logging why) if it cannot be used."""
    worker_class = getattr(config, "worker_class", "auto") or "auto"
    if worker_class == "auto":
        return auto_mode()
    if worker_class == "thread":
        problem = thread_workers_problem()
        if problem is not None:
            logger.error(problem)
            return None
        return "thread"
    return "process"


def choose_and_run(
    config: Any,
    server_target: Callable[..., Any] | Any | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Run the server as configured and return the exit status (0, or 3 when it could not start).

    ``server_target`` is what each worker runs: ``Server(config).run`` (the default), a ``Server``
    (its ``run`` is used) or any callable taking ``sockets``. Sockets are bound here when a
    supervisor needs them and none are given.
    """
    if server_target is None:
        from fulmen.server import Server

        server_target = Server(config).run
    elif not callable(server_target) and callable(getattr(server_target, "run", None)):
        server_target = server_target.run
    mode = worker_mode(config)
    if mode is None:
        return STARTUP_FAILURE
    if sockets is not None or not wants_listeners(config):
        return _choose_and_run(config, server_target, mode, sockets)
    listeners = open_listeners(config)  # --bind, --reuse-port, systemd's sockets
    try:
        return _choose_and_run(config, server_target, mode, listeners.sockets)
    finally:
        listeners.close()


def _choose_and_run(
    config: Any, server_target: Callable[..., Any], mode: WorkerMode, sockets: list[socket.socket] | None
) -> int:
    if config.should_reload:
        change_reload_class()(config, target=server_target, sockets=sockets or [config.bind_socket()]).run()
        return 0

    if workers_from_config(config) > 1:
        if mode == "process" and not isinstance(config.app, str):
            logger.error("Pass the application as an import string to run several worker processes.")
            return STARTUP_FAILURE
        supervisor = Supervisor(config, server_target, mode=mode)
        supervisor.run(sockets or [config.bind_socket()])
        return supervisor.returncode

    server_target(sockets=sockets)
    server = server_of(server_target)
    if server is not None and not server.started:
        return STARTUP_FAILURE
    return 0
