"""The systemd units of docs/deployment.md pass ``systemd-analyze verify``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.system_tools import require_command

DOC = ROOT / "docs" / "deployment.md"
#: An ```ini block whose first line names the unit file: "# /etc/systemd/system/NAME".
UNIT_BLOCK = re.compile(r"```ini\n# /etc/systemd/system/(?P<name>[\w@.-]+)\n(?P<body>.*?)```", re.DOTALL)
#: The documented interpreter path does not exist here: systemd-analyze checks that ExecStart's
#: command is executable, so the test points it at this checkout's fulmen.
DOCUMENTED_FULMEN = "/srv/app/.venv/bin/fulmen"


def units() -> dict[str, str]:
    return {match["name"]: match["body"] for match in UNIT_BLOCK.finditer(DOC.read_text())}


def test_the_doc_has_a_socket_and_service_pair() -> None:
    names = set(units())
    assert {"fulmen.socket", "fulmen.service"} <= names, names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_command("systemd-analyze", "systemd")
    fulmen = shutil.which("fulmen", path=str(Path(sys.executable).parent))
    assert fulmen is not None, "the fulmen command of this environment"
    paths = []
    for name, body in units().items():
        assert DOCUMENTED_FULMEN in body or not name.endswith(".service"), name
        path = tmp_path / name
        path.write_text(body.replace(DOCUMENTED_FULMEN, fulmen))
        paths.append(str(path))
    try:
        result = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, timeout=60)
    except OSError as exc:  # pragma: no cover - a broken install
        pytest.skip(f"systemd-analyze cannot run here: {exc}")
    # Unknown keys are only warned about (status 0): any output is a failure too.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )
