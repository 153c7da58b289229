"""``Config``: every option, and the resolution of those options into objects the server runs."""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
import logging.config
import os
import socket
import ssl
import stat
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from fulmen import options as _options
from fulmen.checks import Problem, find_problems
from fulmen.forwarding import TrustedHosts
from fulmen.importer import ImportFromStringError, import_from_string
from fulmen.listeners import bind_failure
from fulmen.log_config import UVICORN_LOGGERS, LogConfigError, apply_log_config
from fulmen.logging import LOG_LEVELS, LOGGING_CONFIG, TRACE_LOG_LEVEL, AccessFormatter, logging_config
from fulmen.options import STARTUP_FAILURE
from fulmen.reload_patterns import resolve_reload_patterns

logger = logging.getLogger("fulmen.error")

#: The default request-head limit (request line plus headers), in bytes.
DEFAULT_MAX_HEAD_SIZE = 16 * 1024

_HTTP_IMPLEMENTATIONS = {
    "h11": "fulmen.http.h11_impl:H11Protocol",
    "httptools": "fulmen.http.httptools_impl:HttpToolsProtocol",
}
_WS_IMPLEMENTATIONS = {
    "none": None,
    "websockets": "fulmen.websockets.websockets_impl:WebSocketProtocol",
    # uvicorn's name for the library's sans-I/O API, which the websockets engine already uses.
    "websockets-sansio": "fulmen.websockets.websockets_impl:WebSocketProtocol",
    "wsproto": "fulmen.websockets.wsproto_impl:WSProtocol",
}
_LIFESPAN = {
    "auto": "fulmen.lifespan:LifespanOn",
    "on": "fulmen.lifespan:LifespanOn",
    "off": "fulmen.lifespan:LifespanOff",
}


def _has_module(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def create_ssl_context(
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str] | None,
    password: str | None,
    ssl_version: int,
    cert_reqs: int,
    ca_certs: str | os.PathLike[str] | None,
    ciphers: str | None,
) -> ssl.SSLContext:
    """A server-side TLS context from the ``--ssl-*`` options."""
    context = ssl.SSLContext(ssl_version)
    get_password = (lambda: password) if password else None
    context.load_cert_chain(certfile, keyfile, get_password)
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if ca_certs:
        context.load_verify_locations(ca_certs)
    if ciphers:
        context.set_ciphers(ciphers)
    return context


def _load_env_file(path: str) -> None:
    if not os.path.isfile(path):
        return
    try:
        from dotenv import load_dotenv
    except ImportError:
        logger.warning("Cannot load '%s': install python-dotenv (pip install 'fulmen[standard]').", path)
        return
    logger.info("Loading environment from '%s'", path)
    load_dotenv(dotenv_path=path)


class Config:
    """All of the server's settings. The keywords are the options of :mod:`fulmen.options`.

    ``Config(app, **options)`` only records the settings (and configures logging, as uvicorn does);
    :meth:`load` imports the application and resolves the implementations, once, in the process that
    serves.
    """

    # Options whose values __init__ or load() normalise; every other option is read through __getattr__.
    headers: list[tuple[str, str]]
    workers: int
    forwarded_allow_ips: str | list[str]
    h11_max_incomplete_event_size: int
    reload_dirs: list[str]
    reload_includes: list[str]
    reload_excludes: list[str]
    interface: str

    def __init__(self, app: Any, **kwargs: Any) -> None:
        unknown = set(kwargs) - _API_NAMES
        if unknown:
            raise TypeError(f"Config() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        values = _options.defaults()
        values.update(kwargs)
        self.__dict__.update(values)
        self.app = app
        self.loaded = False
        self.loaded_app: Any = None
        self.ssl: ssl.SSLContext | None = None
        self.encoded_headers: list[tuple[bytes, bytes]] = []

        mirrored = self.configure_logging()
        if mirrored:
            logger.info(
                "The log config is written for uvicorn: its settings of %s also apply to %s.",
                ", ".join(mirrored),
                ", ".join(UVICORN_LOGGERS[name] for name in mirrored),
            )
        if self.env_file is not None:
            _load_env_file(os.fspath(self.env_file))

        #: What is wrong with the options, found now and reported at startup (:meth:`check_or_exit`).
        self.problems: list[Problem] = []
        if self.workers is None:
            web_concurrency = os.environ.get("WEB_CONCURRENCY", "1")
            try:
                self.workers = int(web_concurrency)
            except ValueError:
                self.workers = 1
                message = f"$WEB_CONCURRENCY is {web_concurrency!r}, not a whole number."
                self.problems.append(Problem("workers", message))
        if self.forwarded_allow_ips is None:
            self.forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
        values.update(workers=self.workers, forwarded_allow_ips=self.forwarded_allow_ips)
        self.problems += find_problems(values)
        headers = [] if any(problem.option == "headers" for problem in self.problems) else self.headers
        self.headers = [_split_header(header) for header in (headers or [])]
        if self.h11_max_incomplete_event_size is None:
            self.h11_max_incomplete_event_size = DEFAULT_MAX_HEAD_SIZE
        self._resolve_reload()
        if self.reload and self.workers > 1:
            logger.warning('"workers" flag is ignored when reloading is enabled.')

    def check_or_exit(self) -> None:
        """Log the first problem of the options (one line) and exit with status 3, if there is one."""
        if self.problems:
            logger.error("%s", self.problems[0])
            sys.exit(STARTUP_FAILURE)

    # Options set from the table are plain attributes; this tells the type checker so.
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"'Config' object has no attribute {name!r}")

    def _resolve_reload(self) -> None:
        self.reload_dirs = list(self.reload_dirs or [])
        self.reload_includes = list(self.reload_includes or [])
        self.reload_excludes = list(self.reload_excludes or [])
        if (self.reload_dirs or self.reload_includes or self.reload_excludes) and not self.should_reload:
            logger.warning(
                "Current configuration will not reload as not all conditions are met, "
                "please refer to documentation."
            )
        resolve_reload_patterns(self)
        if self.should_reload:
            directories = sorted(str(directory) for directory in self.reload_dirs)
            logger.info("Will watch for changes in these directories: %s", directories)

    @property
    def asgi_version(self) -> str:
        return "2.0" if self.interface == "asgi2" else "3.0"

    @property
    def is_ssl(self) -> bool:
        return bool(self.ssl_keyfile or self.ssl_certfile or self.ssl_context_factory)

    @property
    def use_subprocess(self) -> bool:
        """Whether the server runs in child processes (reload, or several process workers)."""
        if self.reload:
            return True
        return bool(self.workers > 1 and self.worker_class != "thread")

    @property
    def should_reload(self) -> bool:
        return isinstance(self.app, str) and bool(self.reload)

    def configure_logging(self) -> list[str]:
        """Apply ``log_config``, ``log_format``, ``log_level``, ``access_log`` and ``use_colors``.

        Returns the uvicorn loggers named by the log config, whose settings now also apply to
        fulmen's. A log config that cannot be applied ends the program (status 3) with one line.
        """
        logging.addLevelName(TRACE_LOG_LEVEL, "TRACE")
        log_config = self.log_config
        mirrored: list[str] = []
        if isinstance(log_config, dict):
            if log_config == LOGGING_CONFIG:
                log_config = logging_config(self.log_format)
            log_config = copy.deepcopy(log_config)
            if self.use_colors in (True, False):
                for name in ("default", "access"):
                    formatter = log_config.get("formatters", {}).get(name)
                    if formatter is not None and "JSONFormatter" not in str(formatter.get("()", "")):
                        formatter["use_colors"] = self.use_colors
        if log_config is not None:
            try:
                mirrored = apply_log_config(log_config)
            except LogConfigError as exc:
                sys.stderr.write(f"ERROR:    {exc}\n")
                sys.exit(STARTUP_FAILURE)

        fulmen_and_uvicorn = (*UVICORN_LOGGERS.values(), *UVICORN_LOGGERS)
        level = self.log_level
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            level = LOG_LEVELS[level.lower()]
        if isinstance(level, int):
            for name in fulmen_and_uvicorn:
                logging.getLogger(name).setLevel(level)
        if self.access_log is False:
            for name in ("fulmen.access", "uvicorn.access"):
                access = logging.getLogger(name)
                access.handlers = []
                access.propagate = False
        AccessFormatter.custom_format = self.access_log_format
        return mirrored

    def load(self) -> None:
        """Import the application and resolve the protocol, loop and lifespan implementations."""
        assert not self.loaded
        self.check_or_exit()
        if self.app_dir is not None:
            app_dir = os.path.abspath(self.app_dir)
            if app_dir not in sys.path:
                sys.path.insert(0, app_dir)

        if self.http2 and not _has_module("hpack"):
            logger.error("HTTP/2 needs the hpack package: pip install 'fulmen[http2]' (or drop --http2).")
            sys.exit(STARTUP_FAILURE)

        try:
            self.ssl = self._create_ssl()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            files = [
                f"{label} {os.fspath(path)!r}"
                for label, path in (
                    ("certificate", self.ssl_certfile),
                    ("key", self.ssl_keyfile),
                    ("CA certificates", self.ssl_ca_certs),
                )
                if path
            ]
            named = f" ({', '.join(files)})" if files else ""
            logger.error("Error loading TLS certificate or key%s: %s", named, exc)
            sys.exit(STARTUP_FAILURE)
        if self.http2 and self.ssl is not None:
            # Clients that speak HTTP/2 choose it in the handshake; the others keep HTTP/1.1.
            self.ssl.set_alpn_protocols(["h2", "http/1.1"])

        encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers]
        if self.server_header and b"server" not in {name for name, _ in encoded}:
            encoded.insert(0, (b"server", b"fulmen"))
        self.encoded_headers = encoded

        self.http_protocol_class = self._resolve_http()
        self.ws_protocol_class = self._resolve_ws()
        self.lifespan_class = import_from_string(_LIFESPAN[self.lifespan])

        self.loaded_app = self._load_app()
        self.loaded = True

    def default_ssl_context(self) -> ssl.SSLContext:
        """The TLS context of the ``--ssl-*`` options (the ``default_factory`` of ``ssl_context_factory``)."""
        if not self.ssl_certfile:
            raise RuntimeError(
                "The default TLS context needs ssl_certfile: pass ssl_certfile (and ssl_keyfile), or build "
                "the SSLContext inside ssl_context_factory without calling the default factory."
            )
        return create_ssl_context(
            keyfile=self.ssl_keyfile,
            certfile=self.ssl_certfile,
            password=self.ssl_keyfile_password,
            ssl_version=self.ssl_version,
            cert_reqs=self.ssl_cert_reqs,
            ca_certs=self.ssl_ca_certs,
            ciphers=self.ssl_ciphers,
        )

    def _create_ssl(self) -> ssl.SSLContext | None:
        factory = self.ssl_context_factory
        if factory is None:
            return self.default_ssl_context() if self.is_ssl else None
        if _positional_arity(factory) >= 2:
            context = factory(self, self.default_ssl_context)
        else:
            context = factory(self)
        if not isinstance(context, ssl.SSLContext):
            raise TypeError(
                f"ssl_context_factory must return an ssl.SSLContext, got {type(context).__name__}"
            )
        return context

    def _resolve_http(self) -> type[asyncio.Protocol]:
        name = self.http
        if isinstance(name, str):
            if name == "auto":
                name = "httptools" if _has_module("httptools") else "h11"
            target = _HTTP_IMPLEMENTATIONS.get(name, name)
            try:
                return import_from_string(target)  # type: ignore[no-any-return]
            except (ImportError, ImportFromStringError) as exc:
                logger.error("Error loading HTTP implementation %r: %s", self.http, exc)
                sys.exit(STARTUP_FAILURE)
        return name  # type: ignore[no-any-return]

    def _resolve_ws(self) -> type[asyncio.Protocol] | None:
        name = self.ws
        if not isinstance(name, str):
            return name  # type: ignore[no-any-return]
        if name == "auto":
            if _has_module("websockets"):
                name = "websockets"
            elif _has_module("wsproto"):
                name = "wsproto"
            else:
                return None
        target = _WS_IMPLEMENTATIONS.get(name, name)
        if target is None:
            return None
        try:
            return import_from_string(target)  # type: ignore[no-any-return]
        except (ImportError, ImportFromStringError) as exc:
            if self.ws == "auto":
                return None
            logger.error("Error loading WebSocket implementation %r: %s", self.ws, exc)
            sys.exit(STARTUP_FAILURE)

    def _load_app(self) -> Any:
        try:
            app = import_from_string(self.app)
        except ImportFromStringError as exc:
            logger.error("Error loading ASGI app. %s", exc)
            sys.exit(STARTUP_FAILURE)
        except Exception:
            logger.exception("Error loading ASGI app: the module raised while being imported.")
            sys.exit(STARTUP_FAILURE)

        if self.factory or _looks_like_factory(app):
            if not self.factory:
                logger.warning(
                    "ASGI app factory detected. Using it, "
                    "but please consider setting the --factory flag explicitly."
                )
            try:
                app = app()
            except TypeError as exc:
                logger.error("Error loading ASGI app factory: %s", exc)
                sys.exit(STARTUP_FAILURE)
            except Exception:
                logger.exception("Error loading ASGI app factory: the factory raised.")
                sys.exit(STARTUP_FAILURE)

        if not callable(app):
            logger.error("Error loading ASGI app. %r is not callable.", self.app)
            sys.exit(STARTUP_FAILURE)

        if self.interface == "auto":
            self.interface = "asgi3" if _is_asgi3(app) else "asgi2"

        if self.interface == "wsgi":
            from fulmen.middleware.wsgi import WSGIMiddleware

            app = WSGIMiddleware(app)
            self.ws_protocol_class = None
        elif self.interface == "asgi2":
            from fulmen.middleware.asgi2 import ASGI2Middleware

            app = ASGI2Middleware(app)

        if logging.getLogger("fulmen.error").getEffectiveLevel() <= TRACE_LOG_LEVEL:
            from fulmen.middleware.message_logger import MessageLoggerMiddleware

            app = MessageLoggerMiddleware(app)
        # Proxy headers are applied by the protocols as they read each request head (no middleware).
        self.proxy_trust: TrustedHosts | None = None
        if self.proxy_headers:
            self.proxy_trust = TrustedHosts(self.forwarded_allow_ips)
        return app

    def setup_event_loop(self) -> None:
        """Kept for uvicorn compatibility: loops are now created by :meth:`get_loop_factory`."""

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """The factory of the event loop to run on, or None to use asyncio's default."""
        loop = self.loop
        if loop == "none":
            return None
        if loop == "auto":
            loop = "uvloop" if _has_module("uvloop") else "asyncio"
        if loop == "asyncio":
            return asyncio.new_event_loop
        if loop == "uvloop":
            try:
                import uvloop
            except ImportError:
                logger.error("--loop uvloop needs the uvloop package: pip install 'fulmen[standard]'.")
                sys.exit(STARTUP_FAILURE)
            return uvloop.new_event_loop
        try:
            factory = import_from_string(loop)
        except (ImportError, ImportFromStringError) as exc:
            logger.error("Error loading event loop %r: %s", loop, exc)
            sys.exit(STARTUP_FAILURE)
        return factory  # type: ignore[no-any-return]

    def bind_socket(self) -> socket.socket:
        """Bind the listening socket (UNIX path, inherited descriptor, or host and port) and log it."""
        scheme = "https" if self.is_ssl else "http"
        if self.uds:
            path = self.uds
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode):
                    os.unlink(path)
                sock.bind(path)
                os.chmod(path, 0o666)
            except OSError as exc:
                sock.close()
                _exit_cannot_bind(f"unix socket {path}", exc)
            message = f"Fulmen running on unix socket {path} (Press CTRL+C to quit)"
        elif self.fd is not None:
            try:
                sock = socket.fromfd(self.fd, socket.AF_UNIX, socket.SOCK_STREAM)
                sock = socket.socket(fileno=sock.detach())
            except OSError as exc:
                _exit_cannot_bind(f"file descriptor {self.fd}", exc)
            message = f"Fulmen running on socket {sock.getsockname()} (Press CTRL+C to quit)"
        else:
            family = socket.AF_INET6 if self.host and ":" in self.host else socket.AF_INET
            sock = socket.socket(family=family)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except (OSError, OverflowError) as exc:
                sock.close()
                _exit_cannot_bind(f"{self.host}:{self.port}", exc)
            port = sock.getsockname()[1]
            host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
            message = f"Fulmen running on {scheme}://{host}:{port} (Press CTRL+C to quit)"
        logger.info(message, extra={"color_message": message})
        sock.set_inheritable(True)
        return sock

    def __getstate__(self) -> dict[str, Any]:
        # The resolved objects are rebuilt by load() in the process that serves.
        state = self.__dict__.copy()
        state.update(loaded=False, loaded_app=None, ssl=None)
        for name in ("http_protocol_class", "ws_protocol_class", "lifespan_class"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


_API_NAMES = frozenset(option.name for option in _options.API_OPTIONS)


def _exit_cannot_bind(address: str, exc: BaseException) -> NoReturn:
    logger.error("%s", bind_failure(address, exc))
    sys.exit(STARTUP_FAILURE)


def _split_header(header: Any) -> tuple[str, str]:
    if isinstance(header, str):
        name, _, value = header.partition(":")
        return name.strip(), value.strip()
    name, value = header
    return str(name), str(value)


def _positional_arity(func: Any) -> int:
    """How many positional arguments ``func`` accepts (a large number for ``*args``)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 1
    count = 0
    for parameter in parameters:
        if parameter.kind == inspect.Parameter.VAR_POSITIONAL:
            return 1 << 16
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _looks_like_factory(app: Any) -> bool:
    """A plain function that takes no arguments is an app factory, not an app."""
    if not inspect.isfunction(app):
        return False
    try:
        return len(inspect.signature(app).parameters) == 0
    except (TypeError, ValueError):
        return False


def _is_asgi3(app: Any) -> bool:
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.isfunction(app) or inspect.ismethod(app):
        return inspect.iscoroutinefunction(app)
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the method itself
    return inspect.iscoroutinefunction(call)


# Shown by help(Config) and inspect.signature(Config): the keywords come from the option table.
Config.__init__.__doc__ = "Keywords: " + ", ".join(sorted(_API_NAMES))
Config.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("app", inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    + [
        inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default)
        for option in _options.API_OPTIONS
    ]
)
