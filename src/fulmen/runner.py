"""``fulmen.run()``: choose reload, several workers or a single server, as uvicorn does."""

from __future__ import annotations

import inspect
import logging
import os
import sys
from typing import Any

from fulmen.config import Config
from fulmen.options import API_OPTIONS, STARTUP_FAILURE
from fulmen.server import Server

logger = logging.getLogger("fulmen.error")


def run(app: Any, **kwargs: Any) -> None:
    """Serve ``app`` (an ASGI application or an import string) with the options of :class:`Config`."""
    run_config(Config(app, **kwargs))


def run_config(config: Config) -> None:
    """Serve as ``config`` says; exits with status 3 when the server could not start."""
    if (config.reload or config.workers > 1) and not isinstance(config.app, str):
        logger.warning("You must pass the application as an import string to enable 'reload' or 'workers'.")
        sys.exit(STARTUP_FAILURE)
    config.check_or_exit()
    server = Server(config=config)

    from fulmen.supervisors import choose_and_run

    try:
        status = choose_and_run(config, server)
    except KeyboardInterrupt:
        status = 0
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)
    if status:
        sys.exit(status)


run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("app", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [
        inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default)
        for option in API_OPTIONS
    ]
)
