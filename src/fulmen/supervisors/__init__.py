"""Supervisors: several workers (processes or threads), and reloading on code changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fulmen.supervisors.auto import Supervisor
from fulmen.supervisors.basereload import BaseReload
from fulmen.supervisors.change_reload import change_reload_class
from fulmen.supervisors.entry import choose_and_run
from fulmen.supervisors.multiprocess import Multiprocess
from fulmen.supervisors.multithread import Multithread
from fulmen.supervisors.statreload import StatReload

if TYPE_CHECKING:
    ChangeReload: type[BaseReload]


def __getattr__(name: str) -> type[BaseReload]:
    """``ChangeReload``, resolved on first use (see :mod:`fulmen.supervisors.change_reload`)."""
    if name != "ChangeReload":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return change_reload_class()


__all__ = [
    "BaseReload",
    "ChangeReload",
    "Multiprocess",
    "Multithread",
    "StatReload",
    "Supervisor",
    "choose_and_run",
]
