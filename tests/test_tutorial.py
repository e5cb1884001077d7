"""The tutorial runs: its python blocks in order (one namespace, from an empty
directory), and its `$ vitgraph ...` lines through the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from vitgraph.cli import main

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(TUTORIAL.read_text())]


def test_the_tutorial_has_code_for_each_part():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 6 and kinds.count("console") >= 2


def test_tutorial_code_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    pytest.importorskip("timm")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for n, (kind, code) in enumerate(blocks()):
        if kind == "python":
            exec(compile(code, f"{TUTORIAL.name}[block {n}]", "exec"), namespace)
            continue
        for line in code.splitlines():
            if line.startswith("$ vitgraph "):
                assert main(shlex.split(line)[2:]) == 0, line
    out = capsys.readouterr().out
    assert "flowchart TD" in out and "+385,768" in out
