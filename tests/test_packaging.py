"""The wheel ships blocks/ and specs/ inside the package (vitgraph.blocks, vitgraph.specs)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("vitgraph-*.whl"))


def test_wheel_ships_every_spec_and_block_file_under_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for spec in (ROOT / "specs").glob("*.yaml"):
        assert f"vitgraph/specs/{spec.name}" in names
    for block in (ROOT / "blocks").glob("*.*"):
        if block.suffix in (".py", ".yaml"):
            assert f"vitgraph/blocks/{block.name}" in names
    assert not any(n.startswith(("blocks/", "specs/")) for n in names)


def test_wheel_ships_every_module_of_the_core(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "vitgraph").rglob("*.py")
        if str(path.relative_to(ROOT)) not in names
    ]
    assert missing == []
