"""Applying ``--log-config``: a dict, or a JSON, YAML or INI file, including one written for uvicorn.

A configuration written for uvicorn names the loggers ``uvicorn``, ``uvicorn.error`` and
``uvicorn.access`` and the formatters of ``uvicorn.logging``. Its logger settings are applied to
fulmen's loggers of the same role as well (unless it configures those itself), and its formatters
are fulmen's own of the same name, so that switching needs no change to the file (and no uvicorn
installed).
"""

from __future__ import annotations

import configparser
import copy
import json
import logging.config
import os
from typing import Any

#: uvicorn's loggers, and fulmen's logger of the same role.
UVICORN_LOGGERS: dict[str, str] = {
    "uvicorn": "fulmen",
    "uvicorn.error": "fulmen.error",
    "uvicorn.access": "fulmen.access",
    "uvicorn.asgi": "fulmen.asgi",
}
_UVICORN_FORMATTERS = "uvicorn.logging."
_FULMEN_FORMATTERS = "fulmen.logging."


class LogConfigError(Exception):
    """A log configuration that cannot be read or applied (the message names the file)."""


def apply_log_config(log_config: dict[str, Any] | str | os.PathLike[str]) -> list[str]:
    """Apply ``log_config``; return the uvicorn loggers whose settings now also apply to fulmen's."""
    if isinstance(log_config, dict):
        return _apply_dict(log_config, "the log config")
    path = os.fspath(log_config)
    try:
        if path.endswith(".json"):
            with open(path) as file:
                return _apply_dict(json.load(file), repr(path))
        if path.endswith((".yaml", ".yml")):
            import yaml

            with open(path) as file:
                return _apply_dict(yaml.safe_load(file), repr(path))
        return _apply_ini(path)
    except LogConfigError:
        raise
    except ImportError as exc:
        raise LogConfigError(f"Cannot read the log config {path!r}: {exc} (pip install PyYAML)") from exc
    except Exception as exc:
        raise LogConfigError(f"Cannot read the log config {path!r}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """The exception and its causes on one line (dictConfig wraps the real error)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 4:
        text = " ".join(str(current).split())
        parts.append(text or type(current).__name__)
        current = current.__cause__ or current.__context__
    return ": ".join(dict.fromkeys(parts))


def _apply_dict(config: Any, source: str) -> list[str]:
    if not isinstance(config, dict):
        raise LogConfigError(f"The log config {source} is not a mapping of logging settings.")
    config = copy.deepcopy(config)
    for section in ("formatters", "handlers", "filters"):
        for entry in (config.get(section) or {}).values():
            for key in ("()", "class"):
                if isinstance(entry, dict) and key in entry:
                    entry[key] = _fulmen_class(entry[key])
    loggers = config.get("loggers")
    mirrored = []
    if isinstance(loggers, dict):
        for uvicorn_name, fulmen_name in UVICORN_LOGGERS.items():
            if uvicorn_name in loggers and fulmen_name not in loggers:
                loggers[fulmen_name] = copy.deepcopy(loggers[uvicorn_name])
                mirrored.append(uvicorn_name)
    try:
        logging.config.dictConfig(config)
    except Exception as exc:
        raise LogConfigError(f"Cannot apply the log config {source}: {_reason(exc)}") from exc
    return mirrored


def _fulmen_class(name: Any) -> Any:
    if isinstance(name, str) and name.startswith(_UVICORN_FORMATTERS):
        return _FULMEN_FORMATTERS + name[len(_UVICORN_FORMATTERS) :]
    return name


def _apply_ini(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise LogConfigError(f"The log config file {path!r} does not exist.")
    parser = configparser.ConfigParser()
    parser.read(path)
    for key in _keys(parser, "formatters"):
        section = f"formatter_{key}"
        if parser.has_option(section, "class"):
            parser.set(section, "class", _fulmen_class(parser.get(section, "class", raw=True)))
    keys = _keys(parser, "loggers")
    qualnames = {parser.get(f"logger_{key}", "qualname", fallback=key): key for key in keys}
    mirrored = []
    for uvicorn_name, fulmen_name in UVICORN_LOGGERS.items():
        label = qualnames.get(uvicorn_name)
        if label is None or fulmen_name in qualnames:
            continue
        new_key = fulmen_name.replace(".", "_")
        parser.add_section(f"logger_{new_key}")
        for option, value in parser.items(f"logger_{label}", raw=True):
            parser.set(f"logger_{new_key}", option, value)
        parser.set(f"logger_{new_key}", "qualname", fulmen_name)
        keys.append(new_key)
        mirrored.append(uvicorn_name)
    if mirrored:
        parser.set("loggers", "keys", ",".join(keys))
    try:
        logging.config.fileConfig(parser, disable_existing_loggers=False)
    except Exception as exc:
        raise LogConfigError(f"Cannot apply the log config {path!r}: {_reason(exc)}") from exc
    return mirrored


def _keys(parser: configparser.ConfigParser, section: str) -> list[str]:
    if not parser.has_option(section, "keys"):
        return []
    return [key.strip() for key in parser.get(section, "keys", raw=True).split(",") if key.strip()]
