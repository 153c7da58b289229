"""The one table of fulmen's options.

The command line (:mod:`fulmen.cli`), the :class:`fulmen.Config` keywords, the keywords of
:func:`fulmen.run` and ``docs/settings.md`` are all generated from :data:`OPTIONS`, so that an
option is described exactly once.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, NamedTuple

from fulmen.logging import LOGGING_CONFIG

#: Exit status for a server that could not start (the same as uvicorn's and gunicorn's).
STARTUP_FAILURE = 3

LOOP_CHOICES = ("auto", "asyncio", "uvloop", "none")
HTTP_CHOICES = ("auto", "h11", "httptools")
WS_CHOICES = ("auto", "none", "websockets", "websockets-sansio", "wsproto")
LIFESPAN_CHOICES = ("auto", "on", "off")
INTERFACE_CHOICES = ("auto", "asgi3", "asgi2", "wsgi")
LOG_LEVEL_CHOICES = ("critical", "error", "warning", "info", "debug", "trace")
LOG_FORMAT_CHOICES = ("default", "json")
WORKER_CLASS_CHOICES = ("auto", "process", "thread")


@dataclass(frozen=True)
class Option:
    """One option: its name, default, help text and how the command line spells it.

    ``kind`` is the Python type of a value given on the command line (``bool`` for flags).
    ``choices`` lists the allowed values; ``open_choices`` also allows an import string
    (``module:attr``). ``cli`` is False for options that only the API takes (objects such as
    ``ssl_context_factory``); ``api`` is False for options that only the command line has.
    """

    name: str
    default: Any
    help: str
    kind: type = str
    choices: tuple[str, ...] = ()
    open_choices: bool = False
    multiple: bool = False
    flag: str | None = None  # the command line's spelling when not "--name" ("--x/--no-x", "--header")
    existing_path: bool = False  # the command line checks that the file or directory exists
    cli: bool = True
    api: bool = True
    section: str = "Server"
    shown_default: str | None = None  # what --help shows as the default when ``default`` is None

    @property
    def envvar(self) -> str:
        return "FULMEN_" + self.name.upper()

    @property
    def uvicorn_envvar(self) -> str:
        """``UVICORN_<NAME>``, read when no ``FULMEN_*`` variable of the option is set."""
        return "UVICORN_" + self.name.upper()

    @property
    def bounds(self) -> Bounds | None:
        """The allowed range of a numeric option (see :data:`BOUNDS`)."""
        return BOUNDS.get(self.name)

    @property
    def envvars(self) -> list[str]:
        """``FULMEN_<NAME>``, and also the flag's spelling when it differs (``FULMEN_HEADER``)."""
        names = [self.envvar]
        spelled = "FULMEN_" + self.cli_name.split("/")[0].lstrip("-").replace("-", "_").upper()
        if spelled not in names:
            names.append(spelled)
        return names

    @property
    def cli_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _o(*args: Any, **kwargs: Any) -> Option:
    return Option(*args, **kwargs)


OPTIONS: tuple[Option, ...] = (
    # -- where to listen
    _o("host", "127.0.0.1", "Bind socket to this host. Use 0.0.0.0 (or ::) to listen on every interface."),
    _o("port", 8000, "Bind socket to this port. 0 picks a free port.", kind=int),
    _o("uds", None, "Bind to a UNIX domain socket at this path."),
    _o("fd", None, "Serve on an inherited file descriptor (an already bound socket).", kind=int),
    _o("backlog", 2048, "Maximum number of connections waiting to be accepted.", kind=int),
    # -- several listeners, SO_REUSEPORT, metrics (see docs/deployment.md)
    _o(
        "bind",
        None,
        "Listen on HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N, in place of --host/--port (with "
        "--uds and --fd if given). Sockets passed by systemd (LISTEN_FDS) replace every address option.",
        multiple=True,
    ),
    _o(
        "reuse_port",
        False,
        "Give each worker its own SO_REUSEPORT socket (Linux), so that the kernel spreads connections "
        "evenly over the workers.",
        kind=bool,
    ),
    _o(
        "metrics_bind",
        None,
        "Serve Prometheus metrics of every worker at http://HOST:PORT/metrics (off by default).",
    ),
    # -- development
    _o(
        "reload",
        False,
        "Restart the server when files change (development only).",
        kind=bool,
        section="Development",
    ),
    _o(
        "reload_dirs",
        None,
        "Directories to watch for --reload. Defaults to the current directory.",
        multiple=True,
        flag="--reload-dir",
        existing_path=True,
        section="Development",
    ),
    _o(
        "reload_includes",
        None,
        "Glob patterns of files to watch for --reload (default '*.py').",
        multiple=True,
        flag="--reload-include",
        section="Development",
    ),
    _o(
        "reload_excludes",
        None,
        "Glob patterns of files to ignore for --reload (default '.*, .py[cod], .sw.*, ~*').",
        multiple=True,
        flag="--reload-exclude",
        section="Development",
    ),
    _o("reload_delay", 0.25, "Seconds between checks for changed files.", kind=float, section="Development"),
    # -- workers
    _o(
        "workers",
        None,
        "Number of worker processes or threads. Defaults to $WEB_CONCURRENCY, or 1. Not valid with --reload.",
        kind=int,
        section="Workers",
    ),
    _o(
        "worker_class",
        "auto",
        "Kind of worker: processes, threads (free-threaded Python only), or "
        "auto (threads when the GIL is disabled and loading the application leaves it so).",
        choices=WORKER_CLASS_CHOICES,
        section="Workers",
    ),
    _o(
        "timeout_worker_healthcheck",
        5,
        "Seconds a worker may take to answer a health check before it is replaced.",
        kind=int,
        section="Workers",
    ),
    # -- implementations
    _o(
        "loop",
        "auto",
        "Event loop implementation, or an import string of a loop factory.",
        choices=LOOP_CHOICES,
        open_choices=True,
        section="Implementation",
    ),
    _o(
        "http",
        "auto",
        "HTTP/1.1 implementation, or an import string of a protocol class.",
        choices=HTTP_CHOICES,
        open_choices=True,
        section="Implementation",
    ),
    _o(
        "http2",
        False,
        "Also serve HTTP/2: over TLS by ALPN, in cleartext with prior knowledge or Upgrade: h2c. "
        "Needs hpack (pip install 'fulmen[http2]').",
        kind=bool,
        section="Implementation",
    ),
    _o(
        "ws",
        "auto",
        "WebSocket implementation, or an import string of a protocol class.",
        choices=WS_CHOICES,
        open_choices=True,
        section="Implementation",
    ),
    _o(
        "ws_max_size",
        16777216,
        "Largest WebSocket message accepted, in bytes.",
        kind=int,
        section="Implementation",
    ),
    _o(
        "ws_max_queue",
        32,
        "Most WebSocket messages queued for the app before reading pauses.",
        kind=int,
        section="Implementation",
    ),
    _o("ws_ping_interval", 20.0, "Seconds between WebSocket pings.", kind=float, section="Implementation"),
    _o(
        "ws_ping_timeout", 20.0, "Seconds to wait for a WebSocket pong.", kind=float, section="Implementation"
    ),
    _o(
        "ws_per_message_deflate",
        True,
        "Offer WebSocket permessage-deflate compression.",
        kind=bool,
        section="Implementation",
    ),
    _o(
        "ws_compress_min_size",
        128,
        "With permessage-deflate, WebSocket messages smaller than this many bytes are sent "
        "uncompressed (compressing them costs more time than the bytes it saves).",
        kind=int,
        section="Implementation",
    ),
    _o(
        "lifespan",
        "auto",
        "Lifespan protocol: auto, on or off.",
        choices=LIFESPAN_CHOICES,
        section="Application",
    ),
    _o(
        "interface",
        "auto",
        "Application interface: ASGI 3, ASGI 2 or WSGI.",
        choices=INTERFACE_CHOICES,
        section="Application",
    ),
    _o(
        "h11_max_incomplete_event_size",
        None,
        "Largest request line plus header block, in bytes (both "
        "parsers; default 16 KiB). Larger heads get 431.",
        kind=int,
        section="Limits",
    ),
    # -- application
    _o(
        "env_file",
        None,
        "Environment file to load before the application (needs python-dotenv).",
        existing_path=True,
        section="Application",
    ),
    _o(
        "app_dir",
        "",
        "Directory added to sys.path before importing the application. Defaults to the current directory.",
        section="Application",
    ),
    _o(
        "factory",
        False,
        "Treat APP as a factory: call it with no arguments to get the application.",
        kind=bool,
        section="Application",
    ),
    _o(
        "root_path",
        "",
        "ASGI root_path, for an application mounted below a path prefix.",
        section="Application",
    ),
    _o(
        "reset_contextvars",
        False,
        "Run every request in a fresh context, so context variables do not "
        "leak from the lifespan or from other requests.",
        kind=bool,
        section="Application",
    ),
    # -- logging
    _o(
        "log_config",
        LOGGING_CONFIG,
        "Logging configuration file (.json, .yaml or .ini). The API also "
        "takes a dict, or None to leave logging alone.",
        existing_path=True,
        section="Logging",
    ),
    _o("log_level", None, "Log level.", choices=LOG_LEVEL_CHOICES, section="Logging", shown_default="info"),
    _o(
        "access_log",
        True,
        "Log every request on the fulmen.access logger.",
        kind=bool,
        flag="--access-log/--no-access-log",
        section="Logging",
    ),
    _o(
        "access_log_format",
        None,
        "Access log line with named fields, either '{client} {method} "
        "{path} {status}' or '%(client)s %(status)s'. Fields: client, method, path, query, "
        "http_version, status, bytes, duration_ms, user_agent, referer, request_id.",
        section="Logging",
    ),
    _o(
        "log_format",
        "default",
        "Log line format: 'default' text, or 'json' (one object per line).",
        choices=LOG_FORMAT_CHOICES,
        section="Logging",
    ),
    _o(
        "use_colors",
        None,
        "Colour the log level names (default: when the output is a terminal).",
        kind=bool,
        flag="--use-colors/--no-use-colors",
        section="Logging",
    ),
    # -- proxies and headers
    _o(
        "proxy_headers",
        True,
        "Trust X-Forwarded-Proto, X-Forwarded-For and Forwarded from --forwarded-allow-ips.",
        kind=bool,
        flag="--proxy-headers/--no-proxy-headers",
        section="Proxy",
    ),
    _o(
        "forwarded_allow_ips",
        None,
        "Comma separated addresses or networks trusted for proxy headers, "
        "or '*'. Defaults to $FORWARDED_ALLOW_IPS, or '127.0.0.1,::1'.",
        section="Proxy",
    ),
    _o(
        "server_header",
        True,
        "Send a 'server: fulmen' header.",
        kind=bool,
        flag="--server-header/--no-server-header",
        section="Proxy",
    ),
    _o(
        "date_header",
        True,
        "Send a 'date' header.",
        kind=bool,
        flag="--date-header/--no-date-header",
        section="Proxy",
    ),
    _o(
        "headers",
        None,
        "Extra response header 'Name: Value'; may be repeated.",
        multiple=True,
        flag="--header",
        section="Proxy",
    ),
    # -- limits and timeouts
    _o(
        "limit_concurrency",
        None,
        "Most requests (and WebSockets) served at once; more get 503.",
        kind=int,
        section="Limits",
    ),
    _o(
        "limit_max_requests",
        None,
        "Stop gracefully after serving this many requests (workers are then replaced).",
        kind=int,
        section="Limits",
    ),
    _o(
        "limit_max_requests_jitter",
        0,
        "Add a random 0..N to --limit-max-requests so workers do not all restart at once.",
        kind=int,
        section="Limits",
    ),
    _o(
        "limit_request_headers",
        100,
        "Most header lines in a request; more get 431.",
        kind=int,
        section="Limits",
    ),
    _o(
        "timeout_keep_alive",
        5,
        "Close an idle connection after this many seconds.",
        kind=int,
        section="Limits",
    ),
    _o(
        "timeout_request_header",
        10.0,
        "Close a connection whose request head is not complete after this many seconds.",
        kind=float,
        section="Limits",
    ),
    _o(
        "timeout_notify",
        30,
        "Seconds a worker may go without notifying the supervisor.",
        kind=int,
        section="Limits",
    ),
    _o(
        "timeout_graceful_shutdown",
        None,
        "Most seconds to wait for requests in flight at shutdown.",
        kind=int,
        section="Limits",
    ),
    # -- TLS
    _o("ssl_keyfile", None, "TLS key file.", section="TLS"),
    _o("ssl_certfile", None, "TLS certificate file.", section="TLS"),
    _o("ssl_keyfile_password", None, "Password of the TLS key file.", section="TLS"),
    _o(
        "ssl_version",
        int(ssl.PROTOCOL_TLS_SERVER),
        "TLS protocol version (see the ssl module).",
        kind=int,
        section="TLS",
    ),
    _o(
        "ssl_cert_reqs",
        int(ssl.CERT_NONE),
        "Whether a client certificate is required (see the ssl module).",
        kind=int,
        section="TLS",
    ),
    _o("ssl_ca_certs", None, "CA certificates file.", section="TLS"),
    _o(
        "ssl_ciphers",
        None,
        "Ciphers to use (see the ssl module). Defaults to OpenSSL's safe defaults.",
        section="TLS",
    ),
    # -- API only
    _o(
        "ssl_context_factory",
        None,
        "A callable returning an ssl.SSLContext, called as factory(config, default_factory) "
        "(or factory(config)); default_factory() builds the context of the --ssl-* options (API only).",
        cli=False,
        section="TLS",
    ),
    _o(
        "callback_notify",
        None,
        "Coroutine function called every --timeout-notify seconds (API only).",
        cli=False,
        section="Workers",
    ),
    _o(
        "callback_progress",
        None,
        "Function called about once a second from the server's loop, used for worker heartbeats (API only).",
        cli=False,
        section="Workers",
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


class Bounds(NamedTuple):
    """The range of a numeric option: ``minimum`` (excluded when ``above``), and ``maximum`` if any."""

    minimum: float
    maximum: float | None = None
    above: bool = False

    def describe(self) -> str:
        low = f"above {self.minimum:g}" if self.above else f"at least {self.minimum:g}"
        return low if self.maximum is None else f"from {self.minimum:g} to {self.maximum:g}"

    def allows(self, value: float) -> bool:
        low_ok = value > self.minimum if self.above else value >= self.minimum
        return low_ok and (self.maximum is None or value <= self.maximum)


#: Allowed ranges of numeric options: the command line refuses other values (status 2), and
#: ``Config`` refuses them at startup (status 3), instead of failing later or per request.
BOUNDS: dict[str, Bounds] = {
    "port": Bounds(0, 65535),
    "fd": Bounds(0),
    "backlog": Bounds(1),
    "reload_delay": Bounds(0),
    "workers": Bounds(0),  # 0: as if not given, as uvicorn takes it
    "timeout_worker_healthcheck": Bounds(1),
    "ws_max_size": Bounds(1),
    "ws_max_queue": Bounds(1),
    "ws_compress_min_size": Bounds(0),
    "ws_ping_interval": Bounds(0),  # 0: no pings
    "ws_ping_timeout": Bounds(0),
    "h11_max_incomplete_event_size": Bounds(1),
    "limit_concurrency": Bounds(1),
    "limit_max_requests": Bounds(1),
    "limit_max_requests_jitter": Bounds(0),
    "limit_request_headers": Bounds(1),
    "timeout_keep_alive": Bounds(0),
    "timeout_request_header": Bounds(0, above=True),
    "timeout_notify": Bounds(0),
    "timeout_graceful_shutdown": Bounds(0),
    "ssl_cert_reqs": Bounds(0, 2),
}

#: Options of :class:`fulmen.Config` and :func:`fulmen.run` (everything the API takes).
API_OPTIONS: tuple[Option, ...] = tuple(option for option in OPTIONS if option.api)


def defaults() -> dict[str, Any]:
    """A fresh dict of every API option's default."""
    return {option.name: option.default for option in API_OPTIONS}


def render_settings_markdown() -> str:
    """The text of ``docs/settings.md``, generated from :data:`OPTIONS`."""
    lines = [
        "# Settings",
        "",
        "Generated from `src/fulmen/options.py` by `make docs`; do not edit by hand.",
        "",
        "Every option is a command-line flag, an environment variable (`FULMEN_<NAME>`) and a keyword of",
        "`fulmen.Config` and `fulmen.run()`. `WEB_CONCURRENCY` and `FORWARDED_ALLOW_IPS` are read as",
        "uvicorn reads them. The command line also reads uvicorn's `UVICORN_<NAME>` when no `FULMEN_`",
        "variable of the option is set, and says so at startup.",
        "",
    ]
    sections: dict[str, list[Option]] = {}
    for option in OPTIONS:
        sections.setdefault(option.section, []).append(option)
    for section, options in sections.items():
        lines += [
            f"## {section}",
            "",
            "| Flag | Keyword | Environment | Default | Description |",
            "|---|---|---|---|---|",
        ]
        for option in options:
            flag = option.cli_name if option.cli else "(API only)"
            env = ", ".join(f"`{name}`" for name in option.envvars) if option.cli else ""
            default = (
                "fulmen.logging.LOGGING_CONFIG" if option.default is LOGGING_CONFIG else repr(option.default)
            )
            if option.shown_default is not None:
                default = option.shown_default
            if option.choices:
                extra = " or an import string" if option.open_choices else ""
                description = f"{option.help} One of {', '.join(option.choices)}{extra}."
            else:
                description = option.help
            if option.multiple:
                description += " Repeatable."
            if option.bounds is not None:
                description += f" {option.bounds.describe().capitalize()}."
            lines.append(f"| `{flag}` | `{option.name}` | {env} | `{default}` | {description} |")
        lines.append("")
    lines += DIFFERENCES
    return "\n".join(lines)


#: Deliberate differences from uvicorn (0.54), listed at the end of ``docs/settings.md``.
DIFFERENCES = [
    "## Differences from uvicorn",
    "",
    "Every difference, with the setting that restores uvicorn's behaviour where there is one, is in",
    "[migration.md](migration.md). As far as options go:",
    "",
    "- Options uvicorn does not have: `--worker-class`, `--access-log-format`, `--log-format`,",
    "  `--limit-request-headers`, `--timeout-request-header`; `--timeout-notify` is also on the command",
    "  line; `app_dir` is also a `Config` keyword.",
    "- `--bind`, `--reuse-port`, `--metrics-bind` and systemd socket activation (`LISTEN_FDS`) are",
    "  fulmen's own; see [deployment.md](deployment.md).",
    "- Stricter defaults: a request head is limited to 16 KiB (`--h11-max-incomplete-event-size`, both",
    "  parsers), 100 header lines and 10 s (uvicorn's httptools path has no such limits).",
    "- Numbers outside their range (given above), an access-log format naming an unknown field, a",
    "  header that is not `Name: Value`, a TLS key without its certificate or a missing TLS file are",
    "  refused at startup with one line (status 2 on the command line, 3 through the API).",
    "- `--http zttp` is uvicorn's own HTTP/2 implementation: fulmen serves HTTP/2 with `--http2`.",
    "- `ssl_context_factory` may take `(config, default_factory)`, as uvicorn's, or just `(config)`.",
    "- `--forwarded-allow-ips` networks may have host bits set (`10.0.0.1/8`), and RFC 7239",
    "  `Forwarded` is understood besides `X-Forwarded-For` and `X-Forwarded-Proto`.",
    "- Each `FULMEN_<NAME>` variable also has the flag's spelling where it differs (`FULMEN_HEADER`).",
    "",
]
