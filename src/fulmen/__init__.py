"""fulmen: a lightning-fast ASGI server, a drop-in for uvicorn."""

from fulmen._version import __version__
from fulmen.config import Config
from fulmen.main import main, run
from fulmen.server import HANDLED_SIGNALS, Server, ServerState

# As in uvicorn, ``fulmen.main`` is the command (the name also shadows the ``fulmen.main`` module as
# an attribute of the package; ``from fulmen.main import run`` still finds the module).
__all__ = ["HANDLED_SIGNALS", "Config", "Server", "ServerState", "__version__", "main", "run"]
