"""fulmen: a lightning-fast ASGI server, a drop-in for uvicorn."""

from fulmen._version import __version__
from fulmen.config import Config
from fulmen.main import run
from fulmen.server import HANDLED_SIGNALS, Server, ServerState

__all__ = ["HANDLED_SIGNALS", "Config", "Server", "ServerState", "__version__", "run"]
