"""What every HTTP request does with the application, whatever carries it (an HTTP/1.1 connection or
an HTTP/2 stream): run it, and answer the ways it can fail, by one policy."""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any

logger = logging.getLogger("fulmen.error")


class ASGIExchange(abc.ABC):
    """One request and its response as the application sees them.

    Subclasses give ``scope``, the ASGI ``receive`` and ``send``, the three flags, and the two ways
    out of a failed exchange: :meth:`send_500` before the response started, :meth:`abort` after.
    """

    __slots__ = ()

    scope: dict[str, Any]
    response_started: bool
    response_complete: bool
    disconnected: bool

    @abc.abstractmethod
    async def receive(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    async def send(self, message: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def send_500(self) -> None:
        """Answer 500 in place of a response the application did not start."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Cut a response the application started but did not finish, so the client sees it cut."""

    async def call_app(self, app: Any) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.abort()
            raise
        except BaseException as exc:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started:
                self.send_500()
            elif not self.response_complete:  # a complete response (Starlette re-raises after 500) stays
                self.abort()
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
                self.abort()
            elif not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                self.send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self.abort()
