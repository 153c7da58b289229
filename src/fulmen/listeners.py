"""Where the server listens: ``--bind`` addresses, systemd socket activation and ``--reuse-port``.

uvicorn's ``--host/--port/--uds/--fd`` keep their own code path (:meth:`fulmen.Config.bind_socket`);
this module takes over when one of the options below is in use:

- ``--bind`` (repeatable): ``HOST:PORT``, ``[IPv6]:PORT``, ``unix:PATH`` or ``fd://N``, all served by
  every worker;
- systemd socket activation: ``LISTEN_PID``/``LISTEN_FDS`` (and ``LISTEN_FDNAMES``) name sockets
  passed from descriptor 3 on; they replace every address option, and the variables are removed from
  the environment so that no process started from here takes them for its own;
- ``--reuse-port``: TCP sockets bound with ``SO_REUSEPORT``; a supervisor then gives each worker slot
  its own copy (:class:`SlotSockets`), so that the kernel spreads connections over the workers.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from fulmen.options import STARTUP_FAILURE

logger = logging.getLogger("fulmen.error")

#: The first descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3
ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
BIND_FORMS = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"


class BindError(ValueError):
    """A ``--bind`` value that names no listener."""


def bind_failure(address: str, exc: BaseException) -> str:
    """The one line that says which address could not be bound, and why (for every way of binding)."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"Cannot bind to {address}: {reason}"


@dataclass(frozen=True)
class BindAddress:
    """One parsed ``--bind`` value."""

    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1


def parse_bind(value: str) -> BindAddress:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` (every IPv4 interface), ``unix:PATH`` or ``fd://N``."""
    text = value.strip()
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path:
            raise BindError(f"{value!r} has no path after 'unix:'")
        return BindAddress("unix", path=path)
    if text.startswith("fd://"):
        number = text[len("fd://") :]
        if not number.isdigit():
            raise BindError(f"{value!r}: the descriptor after 'fd://' must be a number")
        return BindAddress("fd", fd=int(number))
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":") or ":" not in host:
            raise BindError(f"{value!r}: an IPv6 address is written [ADDRESS]:PORT")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise BindError(f"{value!r} has no port (expected {BIND_FORMS})")
        if ":" in host:
            raise BindError(f"{value!r}: put an IPv6 address in brackets, as [{host}]:{port_text}")
        host = host or "0.0.0.0"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise BindError(f"{value!r}: the port must be a number from 0 to 65535")
    return BindAddress("tcp", host=host, port=int(port_text))


def parse_binds(values: list[str] | tuple[str, ...] | None) -> list[BindAddress]:
    """Every ``--bind`` value (the API also takes one string), or one error line and exit status 3."""
    if isinstance(values, str):
        values = [values]
    try:
        return [parse_bind(value) for value in values or ()]
    except BindError as exc:
        logger.error("Invalid --bind value %s", exc)
        sys.exit(STARTUP_FAILURE)


# -- systemd socket activation


def activation_pending(environ: Any = None) -> bool:
    """Whether systemd passed sockets to this very process (``LISTEN_PID`` is our pid)."""
    environ = os.environ if environ is None else environ
    return environ.get("LISTEN_PID", "").strip() == str(os.getpid()) and "LISTEN_FDS" in environ


def take_activated_sockets(environ: Any = None) -> list[tuple[socket.socket, str]] | None:
    """The sockets systemd passed to this process with their names (``LISTEN_FDNAMES``), or None.

    The variables are removed in every case, as ``sd_listen_fds(1)`` does: a process started from here
    (a worker, a reloaded server) has another pid and must not read them. Descriptors that are not
    stream sockets are a startup failure (one line, exit status 3).
    """
    environ = os.environ if environ is None else environ
    pending = activation_pending(environ)
    count_text = environ.get("LISTEN_FDS", "")
    names_text = environ.get("LISTEN_FDNAMES", "")
    for name in ACTIVATION_VARIABLES:
        environ.pop(name, None)
    if not pending:
        return None
    if not count_text.strip().isdigit():
        logger.error("LISTEN_FDS=%r is not a number of sockets.", count_text)
        sys.exit(STARTUP_FAILURE)
    count = int(count_text)
    names = names_text.split(":") if names_text else []
    activated = []
    for index in range(count):
        fd = LISTEN_FDS_START + index
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            logger.error("Descriptor %d passed by systemd is not a socket: %s", fd, exc)
            sys.exit(STARTUP_FAILURE)
        if sock.type != socket.SOCK_STREAM:
            logger.error("Socket %d passed by systemd is not a stream socket (ListenStream=).", fd)
            sys.exit(STARTUP_FAILURE)
        sock.set_inheritable(False)
        activated.append((sock, names[index] if index < len(names) else f"fd{fd}"))
    return activated


# -- binding


def wants_listeners(config: Any) -> bool:
    """Whether this module binds the listeners (else ``Config.bind_socket`` or asyncio does)."""
    return (
        bool(getattr(config, "bind", None))
        or bool(getattr(config, "reuse_port", False))
        or activation_pending()
    )


@dataclass
class Listeners:
    """The listening sockets of a server, and the UNIX socket files it created (removed by :meth:`close`)."""

    sockets: list[socket.socket]
    created_paths: list[str] = field(default_factory=list)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        for path in self.created_paths:
            try:
                if stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
            except OSError:
                pass
        self.created_paths.clear()


def open_listeners(config: Any) -> Listeners:
    """Bind (or take from systemd) every listener of ``config``, log each, and return them.

    A listener that cannot be bound is a startup failure: one line, exit status 3.
    """
    activated = take_activated_sockets()
    if activated is not None:
        ignored = [f"--{name}" for name in ("bind", "uds", "fd") if getattr(config, name, None)]
        logger.info(
            "Serving on %d socket(s) passed by systemd (%s); --host/--port%s are not used.",
            len(activated),
            ", ".join(name for _, name in activated),
            "".join("/" + name for name in ignored),
        )
        if getattr(config, "reuse_port", False):
            logger.info("--reuse-port does not apply to sockets passed by systemd; serving them as they are.")
            config.reuse_port = False
        sockets = [sock for sock, _ in activated]
        for sock in sockets:
            log_listener(sock, config)
        return Listeners(sockets)

    addresses = parse_binds(getattr(config, "bind", None))
    if config.uds:
        addresses.append(BindAddress("unix", path=config.uds))
    if config.fd is not None:
        addresses.append(BindAddress("fd", fd=config.fd))
    if not addresses:
        addresses.append(BindAddress("tcp", host=config.host or "0.0.0.0", port=config.port))
    reuse_port = bool(getattr(config, "reuse_port", False))
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        logger.warning("--reuse-port needs SO_REUSEPORT, which this system lacks; workers share sockets.")
        config.reuse_port = reuse_port = False
    listeners = Listeners([])
    try:
        for address in addresses:
            sock = _bind(address, config.backlog, reuse_port)
            listeners.sockets.append(sock)
            if address.kind == "unix":
                listeners.created_paths.append(address.path)
            log_listener(sock, config)
    except OSError as exc:
        logger.error("%s", bind_failure(_describe(address), exc))
        listeners.close()
        sys.exit(STARTUP_FAILURE)
    return listeners


def _describe(address: BindAddress) -> str:
    if address.kind == "unix":
        return f"unix:{address.path}"
    if address.kind == "fd":
        return f"fd://{address.fd}"
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"


def _bind(address: BindAddress, backlog: int, reuse_port: bool) -> socket.socket:
    if address.kind == "fd":
        sock = socket.socket(fileno=address.fd)
        if sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise OSError(f"descriptor {address.fd} is not a stream socket")
        return sock
    if address.kind == "unix":
        path = address.path
        if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)  # left behind by a server that did not stop cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            os.chmod(path, 0o666)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return sock
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return bind_tcp(family, sockaddr, backlog, reuse_port)


def bind_tcp(family: int, sockaddr: Any, backlog: int, reuse_port: bool) -> socket.socket:
    """A listening TCP socket on ``sockaddr`` (IPv6 sockets are IPv6 only, as asyncio makes them)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def log_listener(sock: socket.socket, config: Any) -> None:
    """The startup line of one listener, in uvicorn's form."""
    scheme = "https" if config.is_ssl else "http"
    address = sock.getsockname()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = address[0], address[1]
        shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
        url = f"{scheme}://{shown}:{port}"
        message = f"Fulmen running on {url} (Press CTRL+C to quit)"
        color_message = "Fulmen running on " + click.style(url, bold=True) + " (Press CTRL+C to quit)"
    elif sock.family == getattr(socket, "AF_UNIX", None) and address:
        path = address if isinstance(address, str) else address.decode(errors="replace")
        message = color_message = f"Fulmen running on unix socket {path} (Press CTRL+C to quit)"
    else:
        message = color_message = f"Fulmen running on socket {address!r} (Press CTRL+C to quit)"
    logger.info(message, extra={"color_message": color_message})


# -- SO_REUSEPORT: one set of sockets per worker slot


def has_reuse_port(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except OSError:
        return False


class SlotSockets:
    """The sockets each worker slot of a supervisor serves.

    Without ``--reuse-port`` every slot shares the pool's sockets. With it, the first slot takes the
    pool's sockets and every other slot a copy of each ``SO_REUSEPORT`` socket, bound to the same
    address (UNIX sockets and inherited descriptors stay shared). A slot keeps its copies across its
    workers' restarts: a replacement, started while the worker it replaces still runs, accepts from
    the same queue, so a rolling restart drops no connection.
    """

    def __init__(self, sockets: list[socket.socket], reuse_port: bool, backlog: int = 2048) -> None:
        self.sockets = sockets
        self.reuse_port = reuse_port and any(has_reuse_port(sock) for sock in sockets)
        self.backlog = backlog
        self._originals_taken = False
        self._copies: list[socket.socket] = []

    def take(self) -> list[socket.socket]:
        """The sockets of a new slot (see the class docstring); binding failures fall back to sharing."""
        if not self.reuse_port or not self._originals_taken:
            self._originals_taken = True
            return self.sockets
        taken = []
        for sock in self.sockets:
            if not has_reuse_port(sock):
                taken.append(sock)
                continue
            try:
                copy = bind_tcp(sock.family, sock.getsockname(), self.backlog, reuse_port=True)
            except OSError as exc:
                logger.warning("Cannot bind another SO_REUSEPORT socket (%s); this worker shares one.", exc)
                taken.append(sock)
                continue
            copy.set_inheritable(True)
            self._copies.append(copy)
            taken.append(copy)
        return taken

    def release(self, sockets: list[socket.socket]) -> None:
        """Close the copies among ``sockets`` (a slot removed); the pool's own sockets stay open."""
        for sock in sockets:
            if sock in self._copies:
                self._copies.remove(sock)
                sock.close()

    def close(self) -> None:
        self.release(list(self._copies))
