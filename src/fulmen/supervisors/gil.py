"""Keeping thread workers honest: the GIL must still be off once the application is loaded.

On a free-threaded build, CPython turns the GIL back on when it imports a C extension that has not
declared that it can run without it (and warns). Thread workers would then run one at a time. So
before starting thread workers the supervisor loads the application (and the protocol and event-loop
modules) itself and looks again: with ``--worker-class auto`` it falls back to process workers, with
``--worker-class thread`` it stops with the reason.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import Any, Literal

from fulmen.supervisors.multithread import gil_enabled

logger = logging.getLogger("fulmen.error")

#: CPython's warning names the module: "... enabled to load module 'name', which has not declared ...".
_MODULE_NAMED = re.compile(r"to load module '([^']+)'")


def load_watching_the_gil(config: Any) -> str | None:
    """Load ``config`` (application, protocols, event loop) here; what turned the GIL on, or None.

    The answer names the module CPython's warning named (``module 'x'``), else says it vaguely.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        if not config.loaded:
            config.load()
        config.get_loop_factory()  # uvloop, or the --loop given, is imported here, not by load()
    if not gil_enabled():
        return None
    for warning in caught:
        found = _MODULE_NAMED.search(str(warning.message))
        if found is not None:
            return f"module '{found.group(1)}' has not declared that it can run without it"
    return "a module it imports has not declared that it can run without it"


def threads_or_processes(config: Any) -> Literal["thread", "process"] | None:
    """The kind of worker to start where threads were chosen, once the application is loaded.

    ``thread`` while the GIL stays off; else, in one line of log, ``process`` for
    ``--worker-class auto`` (when the application is an import string, as process workers need) and
    None, meaning stop, for ``--worker-class thread``. Threads chosen with the GIL already on (through
    the API: the command line refuses them) stay threads.
    """
    if gil_enabled():
        return "thread"
    reason = load_watching_the_gil(config)
    if reason is None:
        return "thread"
    if (getattr(config, "worker_class", "auto") or "auto") == "thread":
        logger.error(
            "--worker-class thread: loading the application turned the GIL back on (%s), so thread "
            "workers would run one at a time. Use --worker-class process or auto, or PYTHON_GIL=0 to "
            "keep the GIL off at your own risk.",
            reason,
        )
        return None
    if not isinstance(config.app, str):
        logger.warning(
            "Loading the application turned the GIL back on (%s): thread workers will run one at a "
            "time (process workers need the application as an import string).",
            reason,
        )
        return "thread"
    logger.warning("Loading the application turned the GIL back on (%s): using process workers.", reason)
    return "process"
