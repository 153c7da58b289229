"""Which reloader ``--reload`` uses: watchfiles' when it is installed, polling file times otherwise.

Resolved on first use, so watchfiles (a native extension) is only loaded by a server that reloads and a
production worker does not carry it.
"""

from __future__ import annotations

from fulmen.supervisors.basereload import BaseReload
from fulmen.supervisors.statreload import StatReload


def change_reload_class() -> type[BaseReload]:
    """``WatchFilesReload`` when watchfiles imports, else ``StatReload``."""
    try:
        from fulmen.supervisors.watchfilesreload import WatchFilesReload
    except ImportError:  # pragma: no cover - watchfiles is optional
        return StatReload
    return WatchFilesReload
