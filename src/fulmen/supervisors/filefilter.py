"""Which changed files trigger a reload.

A file is watched when it matches an include pattern, is not inside an excluded directory (an
excluded path, or a directory whose name matches an exclude pattern, such as ``.git`` or ``.venv``),
and its name does not match an exclude pattern. A file matched by an include pattern the user gave
(``--reload-include '.env'``) escapes the default excludes (hidden files, editor swap files).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from fulmen.reload_patterns import DEFAULT_EXCLUDES, DEFAULT_INCLUDES, reload_patterns_of


class FileFilter:
    def __init__(self, config: Any) -> None:
        patterns = reload_patterns_of(config)
        self.includes = patterns.includes
        self.excludes = patterns.excludes
        self.exclude_dirs = patterns.exclude_dirs
        self.reload_dirs = patterns.dirs

    def _relative(self, path: Path) -> Path:
        for root in self.reload_dirs:
            if root in path.parents:
                return path.relative_to(root)
        return Path(path.name)

    def is_excluded_dir(self, path: Path) -> bool:
        """Whether nothing under directory ``path`` is watched (used to prune directory walks)."""
        path = Path(path)
        if any(d == path or d in path.parents for d in self.exclude_dirs):
            return True
        return any(fnmatch.fnmatch(path.name, pattern) for pattern in self.excludes)

    def __call__(self, path: Path) -> bool:
        path = Path(path)
        if any(d in path.parents for d in self.exclude_dirs):
            return False
        matched = [pattern for pattern in self.includes if path.match(pattern)]
        if not matched:
            return False
        for part in self._relative(path).parts[:-1]:
            if any(fnmatch.fnmatch(part, pattern) for pattern in self.excludes):
                return False
        explicit = any(pattern not in DEFAULT_INCLUDES for pattern in matched)
        for pattern in self.excludes:
            if explicit and pattern in DEFAULT_EXCLUDES:
                continue
            if path.match(pattern):
                return False
        return True
