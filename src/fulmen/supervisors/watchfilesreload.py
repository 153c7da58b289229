"""Reload on file system notifications (inotify, FSEvents, ...) through the watchfiles package."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchfiles import watch

from fulmen.supervisors.basereload import BaseReload
from fulmen.supervisors.filefilter import FileFilter

__all__ = ["FileFilter", "WatchFilesReload"]


class WatchFilesReload(BaseReload):
    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "WatchFiles"
        self.watch_filter = FileFilter(config)
        self.reload_dirs: list[Path] = list(self.watch_filter.reload_dirs)
        self.watcher = watch(
            *self.reload_dirs,
            watch_filter=None,
            stop_event=self.should_exit,
            yield_on_timeout=True,  # come back regularly, so that a stop is never missed
            rust_timeout=1000,
            ignore_permission_denied=True,
        )

    def should_restart(self) -> list[Path] | None:
        self.pause()
        if self.should_exit.is_set():
            return None
        changes = next(self.watcher, None)
        if not changes:
            return None
        changed = {Path(path) for _, path in changes}
        return sorted(path for path in changed if self.watch_filter(path)) or None
