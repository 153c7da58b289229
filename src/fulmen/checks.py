"""Option values checked before the server starts.

A mistake in an option is found here, at startup, and reported as one line naming the option; it
never becomes a traceback, a failure of every request (an access-log format naming an unknown field)
or a value the server quietly misreads (a port above 65535). The command line reports it as a usage
error (status 2), :class:`fulmen.Config` as a startup failure (status 3).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fulmen.logging import LOG_LEVELS, check_access_format
from fulmen.options import OPTIONS_BY_NAME

#: Values of uvicorn's options that name its own implementations, and what to use with fulmen.
UVICORN_ONLY_VALUES: dict[tuple[str, str], str] = {
    ("http", "zttp"): "zttp is uvicorn's own HTTP/2 implementation; fulmen serves HTTP/2 with --http2 "
    "(the hpack package) on either HTTP/1.1 parser: use --http auto with --http2",
    ("loop", "zuvloop"): "zuvloop is not built in; with the zuvloop package installed, name its loop "
    "factory: --loop zuvloop:new_event_loop",
}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LOOKS_LIKE_NETWORK = re.compile(r"[0-9A-Fa-f.:]+(/[0-9]+)?")


@dataclass(frozen=True)
class Problem:
    """What is wrong with one option's value."""

    option: str
    message: str

    @property
    def flag(self) -> str:
        """The option as the command line spells it (``--access-log-format``)."""
        return OPTIONS_BY_NAME[self.option].cli_name.split("/")[0]

    def __str__(self) -> str:
        return f"Invalid value for {self.option!r} ({self.flag}): {self.message}"


def find_problems(values: Mapping[str, Any]) -> list[Problem]:
    """Every problem of the option ``values`` (keyword names), in the option table's order."""
    found: list[Problem] = []
    for name, value in values.items():
        option = OPTIONS_BY_NAME.get(name)
        if option is None or value is None:
            continue
        message = _bounds_problem(name, value) or _choice_problem(name, value)
        check = _CHECKS.get(name)
        if message is None and check is not None:
            message = check(value, values)
        if message is not None:
            found.append(Problem(name, message))
    found.sort(key=lambda problem: list(OPTIONS_BY_NAME).index(problem.option))
    return found


def _bounds_problem(name: str, value: Any) -> str | None:
    bounds = OPTIONS_BY_NAME[name].bounds
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if bounds.allows(value) else f"{value!r} is not {bounds.describe()}."


def _choice_problem(name: str, value: Any) -> str | None:
    option = OPTIONS_BY_NAME[name]
    if not option.choices:
        return None
    hint = UVICORN_ONLY_VALUES.get((name, value)) if isinstance(value, str) else None
    if hint is not None:
        return f"{hint}."
    if name == "log_level":
        if isinstance(value, int) or (isinstance(value, str) and value.lower() in LOG_LEVELS):
            return None
    elif value in option.choices:
        return None
    elif option.open_choices and (not isinstance(value, str) or ":" in value):
        return None  # an import string, or the class or factory itself
    extra = " or an import string ('module:attribute')" if option.open_choices else ""
    return f"{value!r} is not one of {', '.join(option.choices)}{extra}."


def _access_log_format(value: Any, values: Mapping[str, Any]) -> str | None:
    return check_access_format(str(value))


def _headers(value: Any, values: Mapping[str, Any]) -> str | None:
    for header in value:
        if isinstance(header, str):
            name, colon, text = header.partition(":")
            if not colon:
                return f"{header!r} is not 'Name: Value'."
        elif isinstance(header, (tuple, list)) and len(header) == 2:
            name, text = (str(part) for part in header)
        else:
            return f"{header!r} is not 'Name: Value' nor a (name, value) pair."
        if not _TOKEN.fullmatch(name.strip()):
            return f"{name.strip()!r} in {header!r} is not a valid header name."
        try:
            text.encode("latin-1")
        except UnicodeEncodeError:
            return f"the value of {header!r} has characters outside Latin-1."
        if "\r" in text or "\n" in text:
            return f"the value of {header!r} contains a line break."
    return None


def _forwarded_allow_ips(value: Any, values: Mapping[str, Any]) -> str | None:
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    for item in (item.strip() for item in items):
        # Anything else is a literal (a UNIX socket path, a name); what looks like an address must be one.
        if item and item != "*" and _LOOKS_LIKE_NETWORK.fullmatch(item) and any(c in item for c in ".:"):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                return f"{item!r} is neither an IP address nor a network."
    return None


def _uses_tls(values: Mapping[str, Any]) -> bool:
    return bool(values.get("ssl_certfile") or values.get("ssl_keyfile"))


def _tls_file(kind: str) -> Callable[[Any, Mapping[str, Any]], str | None]:
    def check(value: Any, values: Mapping[str, Any]) -> str | None:
        path = os.fspath(value)
        if not os.path.exists(path):
            return f"{kind} file {path!r} does not exist."
        if not os.path.isfile(path):
            return f"{kind} file {path!r} is not a file."
        return None

    return check


def _ssl_keyfile(value: Any, values: Mapping[str, Any]) -> str | None:
    if not values.get("ssl_certfile") and values.get("ssl_context_factory") is None:
        return "a TLS key needs its certificate: give --ssl-certfile (ssl_certfile) too."
    return _tls_file("TLS key")(value, values)


def _ssl_version(value: Any, values: Mapping[str, Any]) -> str | None:
    if not _uses_tls(values):
        return None
    try:
        ssl.SSLContext(value)
    except (ValueError, TypeError, OSError):
        default = int(ssl.PROTOCOL_TLS_SERVER)
        return f"{value!r} is not a protocol of Python's ssl module (default: {default})."
    return None


def _ssl_ciphers(value: Any, values: Mapping[str, Any]) -> str | None:
    if not _uses_tls(values):
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(value)
    except ssl.SSLError:
        return f"no cipher matches {value!r} (see 'openssl ciphers')."
    return None


_CHECKS: dict[str, Callable[[Any, Mapping[str, Any]], str | None]] = {
    "access_log_format": _access_log_format,
    "headers": _headers,
    "forwarded_allow_ips": _forwarded_allow_ips,
    "ssl_keyfile": _ssl_keyfile,
    "ssl_certfile": _tls_file("TLS certificate"),
    "ssl_ca_certs": _tls_file("CA certificates"),
    "ssl_version": _ssl_version,
    "ssl_ciphers": _ssl_ciphers,
}
