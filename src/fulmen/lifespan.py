"""The ASGI lifespan protocol: startup and shutdown events, and the ``state`` shared with requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fulmen.config import Config

STATE_TRANSITION_ERROR = "Got invalid state transition on lifespan protocol."


class LifespanOff:
    """``--lifespan off``: no events; requests still get an (empty) ``state``."""

    def __init__(self, config: Config) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class LifespanOn:
    """``--lifespan on`` and ``auto``: runs the application's lifespan coroutine beside the server.

    With ``auto`` an application that raises before answering startup simply does not support
    lifespan, and the server goes on; with ``on`` that is a startup failure.
    """

    def __init__(self, config: Config) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.logger = logging.getLogger("fulmen.error")
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error_occured = False
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error_occured and self.config.lifespan == "on"):
            self.logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occured:
            return
        self.logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error_occured and self.config.lifespan == "on"):
            self.logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            self.logger.info("Application shutdown complete.")

    async def main(self) -> None:
        try:
            app = self.config.loaded_app
            scope = {
                "type": "lifespan",
                "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
                "state": self.state,
            }
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            self.error_occured = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                self.logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                self.logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if message_type not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise RuntimeError(f"Unexpected ASGI lifespan message type '{message_type}'.")
        if message_type.startswith("lifespan.startup"):
            if self.startup_event.is_set():
                raise RuntimeError(STATE_TRANSITION_ERROR)
            self.startup_event.set()
            if message_type == "lifespan.startup.failed":
                self.startup_failed = True
                if message.get("message"):
                    self.logger.error(message["message"])
        else:
            if not self.startup_event.is_set() or self.shutdown_event.is_set():
                raise RuntimeError(STATE_TRANSITION_ERROR)
            self.shutdown_event.set()
            if message_type == "lifespan.shutdown.failed":
                self.shutdown_failed = True
                if message.get("message"):
                    self.logger.error(message["message"])

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()
