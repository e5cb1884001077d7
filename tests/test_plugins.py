"""Third-party block kinds: ``--plugin module`` or the ``vitgraph.blocks`` entry points,
never imported because a spec names them. Run in subprocesses so the test process's
registry (and the committed schema check) stay untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''
from typing import Literal

import torch

from vitgraph.registry import Block, FunctionOp, register


def twice(x):
    return x * 2


@register
class Twice(Block):
    """Doubles its input."""

    kind: Literal["twice"] = "twice"
    family = "test"

    def infer(self, *inputs):
        return self, inputs[0]

    def build(self, *inputs):
        return FunctionOp(twice)
'''
SPEC = """vitgraph: 1
extends: vit
name: doubled
edits:
  - insert_after: norm
    node: {id: double, kind: twice}
"""


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "vitgraph.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plugin_named_on_the_command_line_adds_its_kinds(tmp_path):
    (tmp_path / "my_blocks.py").write_text(PLUGIN)
    (tmp_path / "doubled.yaml").write_text(SPEC)
    done = run(
        tmp_path, "validate", "doubled.yaml", "--plugin", "my_blocks", "--json", "--set", "depth=1"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == 823_912  # vit_ti_16 at depth 1: no params added
    refused = run(tmp_path, "validate", "doubled.yaml", "--set", "depth=1")
    assert refused.returncode == 2
    assert "unknown block kind 'twice'" in refused.stderr


def test_installed_entry_point_plugins_load_with_the_registry(tmp_path):
    (tmp_path / "my_blocks.py").write_text(PLUGIN)
    info = tmp_path / "my_blocks-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-blocks\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vitgraph.blocks]\nmy_blocks = my_blocks\n")
    done = run(tmp_path, "list", "blocks", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["kind"]: row for row in json.loads(done.stdout)}
    assert rows["twice"]["origin"] == "my_blocks.Twice"


def test_a_broken_entry_point_plugin_is_named(tmp_path):
    (tmp_path / "broken_blocks.py").write_text("raise ImportError('no such thing')\n")
    info = tmp_path / "broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[vitgraph.blocks]\nbroken = broken_blocks\n")
    done = run(tmp_path, "list", "blocks")
    assert done.returncode == 1
    assert (
        "block plugin 'broken' (broken_blocks, entry point group vitgraph.blocks) failed "
        "to import: ImportError: no such thing"
    ) in done.stderr
