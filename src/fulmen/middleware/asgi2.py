"""Runs an ASGI 2 (double-callable) application as ASGI 3."""

from __future__ import annotations

from typing import Any


class ASGI2Middleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        instance = self.app(scope)
        await instance(receive, send)
