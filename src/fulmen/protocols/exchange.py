"""What every HTTP request does with the application, whatever carries it (an HTTP/1.1 connection or
an HTTP/2 stream): run it, and answer the ways it can fail, by one policy."""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any

logger = logging.getLogger("fulmen.error")


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    """The application that answers requests over ``--limit-concurrency`` or after the request limit."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})


class ASGIExchange(abc.ABC):
    """One request and its response as the application sees them.

    Subclasses give ``scope``, the ASGI ``receive`` and ``send``, the three flags, and the two ways
    out of a failed exchange: :meth:`send_500` before the response started, :meth:`abort` after.
    """

    __slots__ = ("task",)

    task: asyncio.Task[None] | None  # the application's task, set when the server starts it
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

    @abc.abstractmethod
    def app_done(self) -> None:
        """The application's task is ending, whichever way (a hook: no done-callback, no extra frame)."""

    async def call_app(self, app: Any) -> None:
        """The coroutine of the request's task: the application, and the answers to its failures."""
        try:
            try:
                result = await app(self.scope, self.receive, self.send)
            except asyncio.CancelledError:
                self.abort()
                raise
            except BaseException as exc:
                logger.error("Exception in ASGI application\n", exc_info=exc)
                if not self.response_started:
                    self.send_500()
                elif not self.response_complete:  # a complete response (Starlette re-raises after 500)
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
        finally:
            self.app_done()
