"""At ``--log-level trace``, logs every ASGI message between the server and the application."""

from __future__ import annotations

import logging
from typing import Any

from fulmen.logging import TRACE_LOG_LEVEL

PLACEHOLDER_FORMAT = {
    "body": "<{length} bytes>",
    "bytes": "<{length} bytes>",
    "text": "<{length} chars>",
    "headers": "<...>",
}


def _summary(message: Any) -> Any:
    """The message (or scope) with bodies and headers replaced by placeholders, as uvicorn logs them."""
    if not isinstance(message, dict):
        return message
    shown = message.copy()
    for key, placeholder in PLACEHOLDER_FORMAT.items():
        if message.get(key) is not None:
            shown[key] = placeholder.format(length=len(message[key]))
    return shown


class MessageLoggerMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.task_counter = 0
        self.logger = logging.getLogger("fulmen.asgi")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        self.task_counter += 1
        task_counter = self.task_counter
        client = scope.get("client")
        prefix = f"{client[0]}:{client[1]} - ASGI" if client else "ASGI"
        log = self.logger.log

        async def inner_receive() -> Any:
            message = await receive()
            log(TRACE_LOG_LEVEL, "%s [%d] Receive %s", prefix, task_counter, _summary(message))
            return message

        async def inner_send(message: Any) -> None:
            log(TRACE_LOG_LEVEL, "%s [%d] Send %s", prefix, task_counter, _summary(message))
            await send(message)

        log(TRACE_LOG_LEVEL, "%s [%d] Started scope=%s", prefix, task_counter, _summary(scope))
        try:
            result = await self.app(scope, inner_receive, inner_send)
        except BaseException:
            log(TRACE_LOG_LEVEL, "%s [%d] Raised exception", prefix, task_counter)
            raise
        log(TRACE_LOG_LEVEL, "%s [%d] Completed", prefix, task_counter)
        return result
