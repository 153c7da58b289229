"""What every connection protocol of a server starts from, whatever it speaks (HTTP/1.1, HTTP/2,
WebSocket): the loaded configuration and application, the loop, and the server's shared state."""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fulmen.config import Config
    from fulmen.server import ServerState

access_logger = logging.getLogger("fulmen.access")


class ServerProtocol(asyncio.Protocol, metaclass=abc.ABCMeta):
    """Constructed as uvicorn's protocols are: ``cls(config, server_state, app_state, _loop)``."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.limit_concurrency: int | None = config.limit_concurrency
        self.reset_contextvars = bool(config.reset_contextvars)
        # Decided once per connection: the access line is only built when it is logged.
        self.access_log = bool(config.access_log) and access_logger.hasHandlers()
