"""The training guide runs: its python blocks and its `$ vitgraph ...` lines in order,
from an empty directory; its `$ torchrun ...` line under torchrun (slow: two processes)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch

from vitgraph.cli import main

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "training.md"
BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(GUIDE.read_text())]


def commands(prefix: str) -> list[str]:
    return [
        line
        for kind, code in blocks()
        if kind == "console"
        for line in code.splitlines()
        if line.startswith(prefix)
    ]


def test_the_guide_covers_digits_folders_files_resume_recipes_distillation_threads_torchrun():
    headings = re.findall(r"^## \d+\. (.+)$", GUIDE.read_text(), re.M)
    assert headings == [
        "Digits, the first run",
        "Your own images",
        "The files a run writes",
        "Stop and resume",
        "Recipes",
        "Distillation",
        "CPU threads",
        "Several processes or GPUs",
        "Fine-tuning and evaluation",
    ]
    assert len(commands("$ torchrun ")) == 1


def test_the_guide_s_commands_run_in_order(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    namespace: dict[str, object] = {"__name__": "training_guide"}
    for n, (kind, code) in enumerate(blocks()):
        if kind == "python":
            exec(compile(code, f"{GUIDE.name}[block {n}]", "exec"), namespace)
            continue
        for line in code.splitlines():
            if line.startswith("$ vitgraph "):
                assert main(shlex.split(line)[2:]) == 0, line
    torch.set_num_threads(threads)
    out = capsys.readouterr().out
    # what section 1 says the first run prints
    assert "batch 4, lr 6.25e-05: 1 epoch of 1438 images at batch 64 would be 22" in out
    # the resumed run went on from epoch 1 to 2; the files section's files exist
    assert "epoch 2/2" in out
    files = {"last.safetensors", "model.safetensors", "metrics.csv", "metrics.jsonl"}
    for run in ("run1", "run2", "run3"):
        assert {p.name for p in (tmp_path / run).iterdir()} == files
    assert {p.name for p in (tmp_path / "run5").iterdir()} == files | {"model_ema.safetensors"}
    assert "fine-tuning from pretrained.safetensors" in out and "top1 " in out


@pytest.mark.slow
def test_the_guide_s_torchrun_line_trains_on_two_processes(tmp_path, monkeypatch):
    from tests.helpers import torchrun

    (line,) = commands("$ torchrun ")
    args = shlex.split(line)[2:]
    assert args[0] == "--nproc_per_node=2"
    monkeypatch.chdir(tmp_path)
    torchrun(*args[1:])
    assert (tmp_path / "run4" / "model.safetensors").is_file()
