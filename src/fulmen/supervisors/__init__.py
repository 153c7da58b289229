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
else:
    try:
        from fulmen.supervisors.watchfilesreload import WatchFilesReload as ChangeReload
    except ImportError:  # pragma: no cover - watchfiles is optional
        ChangeReload = StatReload

__all__ = [
    "BaseReload",
    "ChangeReload",
    "Multiprocess",
    "Multithread",
    "StatReload",
    "Supervisor",
    "choose_and_run",
]
