"""Resolve ``--reload-dir``, ``--reload-include`` and ``--reload-exclude`` into what the reloaders use.

Called by ``Config.__init__``. Afterwards ``config.reload_dirs`` is a list of absolute directories
(default: the current directory), ``config.reload_includes`` and ``config.reload_excludes`` are the
glob patterns in force (the defaults merged with the user's), and ``config.reload_dirs_excludes``
lists the excluded patterns that name existing directories.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("fulmen.error")

DEFAULT_INCLUDES: tuple[str, ...] = ("*.py",)
DEFAULT_EXCLUDES: tuple[str, ...] = (".*", ".py[cod]", ".sw.*", "~*")


@dataclass(frozen=True)
class ReloadPatterns:
    dirs: list[Path]
    includes: list[str]
    excludes: list[str]
    exclude_dirs: list[Path]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(item) for item in value]


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def _is_dir(pattern: str) -> bool:
    try:
        return Path(pattern).is_dir()
    except OSError:  # pragma: no cover - a pattern the platform cannot stat
        return False


def _outermost(dirs: list[Path]) -> list[Path]:
    """Drop directories inside another watched directory: watching the outer one covers them."""
    return [d for d in dirs if not any(other != d and other in d.parents for other in dirs)]


def resolve_reload_patterns(config: Any) -> ReloadPatterns:
    """Resolve the reload options of ``config`` in place (idempotent) and return them."""
    dir_values = _as_list(getattr(config, "reload_dirs", None))
    user_includes = _as_list(getattr(config, "reload_includes", None))
    user_excludes = _as_list(getattr(config, "reload_excludes", None))
    previous_exclude_dirs = [Path(p) for p in _as_list(getattr(config, "reload_dirs_excludes", None))]

    dirs: list[Path] = []
    for value in dir_values:
        path = Path(value).expanduser().resolve()
        if path.is_dir():
            dirs.append(path)
        else:
            logger.warning("Reload directory %r does not exist; it is not watched.", value)
    dirs = _outermost(_unique(dirs)) or [Path.cwd().resolve()]

    includes = _unique([*(p for p in DEFAULT_INCLUDES if p not in user_excludes), *user_includes])
    exclude_dirs = list(previous_exclude_dirs)
    excludes = [p for p in DEFAULT_EXCLUDES if p not in user_includes]
    for pattern in user_excludes:
        if pattern in includes:
            continue  # an include wins over the same pattern excluded
        if _is_dir(pattern):
            exclude_dirs.append(Path(pattern).resolve())
        else:
            excludes.append(pattern)
    patterns = ReloadPatterns(dirs, includes, _unique(excludes), _unique(exclude_dirs))

    config.reload_dirs = patterns.dirs
    config.reload_includes = patterns.includes
    config.reload_excludes = patterns.excludes
    config.reload_dirs_excludes = patterns.exclude_dirs
    return patterns


def reload_patterns_of(config: Any) -> ReloadPatterns:
    """The resolved patterns of ``config``, resolving them if ``Config`` has not."""
    if getattr(config, "reload_dirs_excludes", None) is None:
        return resolve_reload_patterns(config)
    return ReloadPatterns(
        [Path(d) for d in config.reload_dirs],
        list(config.reload_includes),
        list(config.reload_excludes),
        [Path(d) for d in config.reload_dirs_excludes],
    )
