"""Event-loop heartbeats.

A worker process or thread can be alive yet useless: its event loop stuck in a blocking call. The
server calls ``config.callback_progress`` from its loop about once a second, so the time since that
call is a direct measure of whether the loop is turning.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The server beats about once a second; a shorter limit would report healthy workers as blocked.
MIN_STALE_AFTER = 3.0


def stale_after(timeout: float) -> float:
    """Heartbeat age beyond which a worker's loop counts as blocked, for a health-check timeout."""
    return max(float(timeout), MIN_STALE_AFTER)


@dataclass
class Beat:
    at: float
    loop: asyncio.AbstractEventLoop | None


class Heartbeats:
    """The ``callback_progress`` that records, per thread, when its event loop last ticked.

    Keyed by thread so that one Config can be shared by several thread workers; a callback that was
    already configured is still called.
    """

    def __init__(self, chained: Callable[..., Any] | None = None) -> None:
        self.chained = chained
        self._beats: dict[int, Beat] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._beats[threading.get_ident()] = Beat(time.monotonic(), loop)
        if self.chained is not None:
            return self.chained(*args, **kwargs)
        return None

    def get(self, ident: int | None) -> Beat | None:
        return None if ident is None else self._beats.get(ident)

    def forget(self, ident: int | None) -> None:
        """Drop a thread's beat: thread idents are reused once a thread ends."""
        if ident is not None:
            self._beats.pop(ident, None)

    def latest(self) -> Beat | None:
        beats = list(self._beats.values())
        return max(beats, key=lambda beat: beat.at) if beats else None

    def __reduce__(self) -> tuple[Any, ...]:
        # A Config is pickled for spawned workers: its heartbeats start afresh there.
        return (Heartbeats, (self.chained,))


def install_heartbeats(config: Any) -> Heartbeats:
    """Make ``config.callback_progress`` a :class:`Heartbeats`, keeping a configured callback."""
    current = getattr(config, "callback_progress", None)
    if isinstance(current, Heartbeats):
        return current
    heartbeats = Heartbeats(chained=current)
    config.callback_progress = heartbeats
    return heartbeats
