"""Re-importing an application in the running process, for thread workers on reload.

Process workers get a fresh interpreter; threads share this one, so the application's modules are
dropped from ``sys.modules`` and a new Config is loaded. Threads still draining keep the old Config.
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

logger = logging.getLogger("fulmen.error")


def _installed_roots() -> list[Path]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(path for path in sysconfig.get_paths().values() if path)
    return [Path(root).resolve() for root in roots]


def application_modules(import_str: str, roots: list[Path]) -> list[str]:
    """Modules to forget: the application's own, and any module loaded from under ``roots``.

    Modules from the interpreter or installed packages, and fulmen itself, are kept.
    """
    app_module = import_str.partition(":")[0]
    installed = _installed_roots()
    names = []
    for name, module in list(sys.modules.items()):
        if name == "fulmen" or name.startswith("fulmen."):
            continue
        if name == app_module or name.startswith(app_module + "."):
            names.append(name)
            continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if any(root in path.parents for root in installed):
            continue
        if any(root in path.parents for root in roots):
            names.append(name)
    return names


def reloaded_config(config: Any) -> Any:
    """A copy of ``config`` loaded from the application's current code (``config`` itself is untouched)."""
    if not isinstance(config.app, str):
        logger.warning("The application was given as an object, not an import string; it cannot be reloaded.")
        return config
    roots = [Path(getattr(config, "app_dir", None) or os.getcwd()).resolve()]
    roots += [Path(d).resolve() for d in getattr(config, "reload_dirs", None) or []]
    for name in application_modules(config.app, roots):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    fresh = copy.copy(config)
    fresh.loaded = False
    fresh.load()
    return fresh
