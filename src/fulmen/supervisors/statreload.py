"""Reload by polling file modification times: no dependency, works on any file system."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fulmen.supervisors.basereload import BaseReload
from fulmen.supervisors.filefilter import FileFilter


class StatReload(BaseReload):
    def __init__(self, config: Any, target: Callable[..., Any], sockets: list[socket.socket]) -> None:
        super().__init__(config, target, sockets)
        self.reloader_name = "StatReload"
        self.mtimes: dict[Path, float] = {}
        self.file_filter = FileFilter(config)

    def should_restart(self) -> list[Path] | None:
        self.pause()
        changed = []
        for file in self.iter_py_files():
            try:
                mtime = file.stat().st_mtime
            except OSError:
                continue
            old = self.mtimes.get(file)
            self.mtimes[file] = mtime
            if old is not None and mtime != old:
                changed.append(file)
        return changed or None

    def restart(self) -> None:
        self.mtimes = {}
        super().restart()

    def iter_py_files(self) -> Iterator[Path]:
        """The watched files (``*.py`` unless --reload-include says more), skipping excluded directories."""
        for root in self.file_filter.reload_dirs:
            for dirpath, dirnames, filenames in os.walk(root):
                base = Path(dirpath)
                dirnames[:] = [d for d in dirnames if not self.file_filter.is_excluded_dir(base / d)]
                for filename in filenames:
                    path = base / filename
                    if self.file_filter(path):
                        yield path.resolve()
