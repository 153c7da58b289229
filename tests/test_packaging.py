"""The wheel ``pip wheel .`` builds: the licence, the metadata PyPI shows, no development extra.

Built offline and quickly from a copy of the project (the venv's setuptools, no build isolation), so
that the build leaves nothing behind in the source tree.
"""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_wheel_carries_the_licence_and_the_metadata(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "src" / "fulmen", project / "src" / "fulmen")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, project / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
    subprocess.run([*command, "-w", str(tmp_path / "dist"), str(project)], check=True, timeout=120)
    (wheel,) = (tmp_path / "dist").glob("fulmen-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(name.split("/")[0] for name in names if ".dist-info/" in name)
        licence = archive.read(f"{dist_info}/licenses/LICENSE").decode()
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    assert licence == (ROOT / "LICENSE").read_text()
    assert licence.startswith("BSD 3-Clause License") and "the fulmen authors" in licence
    assert "fulmen/py.typed" in names

    assert metadata["License-Expression"] == "BSD-3-Clause"
    assert metadata["Requires-Python"] == ">=3.10"
    urls = dict(value.split(", ", 1) for value in metadata.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    classifiers = metadata.get_all("Classifier", [])
    for minor in range(10, 15):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    assert "Typing :: Typed" in classifiers
    # The development tools are a dependency group, not an extra users could install.
    assert set(metadata.get_all("Provides-Extra", [])) == {"standard", "http2", "deflate"}
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert str(metadata.get_payload()).startswith("# fulmen")  # the README
