"""Debian tools some tests need (systemd-socket-activate, promtool, prometheus, systemd-analyze).

A missing tool is installed with apt-get (CI runs on a fresh machine as root); a test is skipped, with
the reason, only when that cannot be done.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_attempted: dict[str, str | None] = {}


def require_command(command: str, package: str) -> str:
    """The path of ``command``, installing Debian's ``package`` first when it is missing."""
    path = shutil.which(command)
    if path is not None:
        return path
    if package not in _attempted:
        _attempted[package] = _apt_install(package)
    path = shutil.which(command)
    if path is None:
        pytest.skip(f"{command} is missing and {package} could not be installed: {_attempted[package]}")
    return path


def _apt_install(package: str) -> str | None:
    """Install ``package``; None on success, else why not."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this system"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "not root"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", package]):
        try:
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return lines[-1] if lines else f"{' '.join(command)} failed"
    return None
