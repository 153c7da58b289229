"""``fulmen.main``, as ``uvicorn.main``: the command (``main``), ``run()`` and the startup-failure status.

``fulmen.main`` itself is the command, as ``uvicorn.main`` is: ``fulmen.main(["app:app"])`` and
``fulmen.main.main(["app:app"])`` both run it, and ``fulmen.main.run`` is :func:`fulmen.run`.
"""

from __future__ import annotations

from fulmen.cli import main
from fulmen.config import Config
from fulmen.options import STARTUP_FAILURE
from fulmen.runner import run
from fulmen.server import Server

__all__ = ["STARTUP_FAILURE", "Config", "Server", "main", "run"]

if __name__ == "__main__":  # pragma: no cover
    main()
