"""Supervisors: several workers (processes or threads), and reloading on code changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen.supervisors.auto import Supervisor
from fulmen.supervisors.basereload import BaseReload
from fulmen.supervisors.entry import choose_and_run
from fulmen.supervisors.multiprocess import Multiprocess
from fulmen.supervisors.multithread import Multithread
from fulmen.supervisors.statreload import StatReload

if TYPE_CHECKING:
    ChangeReload: type[BaseReload]


def __getattr__(name: str) -> type[BaseReload]:
    """``ChangeReload``, resolved on first use: watchfiles (a native extension) is only loaded by a
    server that reloads, so a production worker does not carry it."""
    if name != "ChangeReload":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        from fulmen.supervisors.watchfilesreload import WatchFilesReload
    except ImportError:  # pragma: no cover - watchfiles is optional
        return StatReload
    return WatchFilesReload


__all__ = [
    "BaseReload",
    "ChangeReload",
    "Multiprocess",
    "Multithread",
    "StatReload",
    "Supervisor",
    "choose_and_run",
]
