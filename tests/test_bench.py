"""``vitgraph bench`` and vitgraph.bench: the arguments, the output formats (table, JSON,
Markdown, PNG), the machine's load and the one-line refusals — never the numbers, which
depend on the machine (benchmarks/ holds the measured comparisons)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from vitgraph import bench, bench_run
from vitgraph.bench import Load, LoadMeter, Measurement, PeakMemory, percentile, set_threads
from vitgraph.cli import main
from vitgraph.passes import CompileError, compile_model

TINY = ["vit_ti_16", "--set", "depth=1", "--set", "image_size=32"]
FAST = ["--repeats", "1", "--iters", "1", "--threads", "1"]
#: a spec with two tiny variants, for the family sweep
FAMILY = """
vitgraph: 1
name: tiny
input: {channels: 3, size: 32}
args: {dim: 32, heads: 2}
default: tiny_a
variants:
  tiny_a: {}
  tiny_b: {dim: 64}
graph:
  - {id: embed, kind: patch_embed, patch: 16, dim: $dim}
  - {id: blocks, kind: encoder_layer, repeat: 1, heads: $heads}
  - {id: norm, kind: layernorm}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 10}
"""
KEYS = {
    "model",
    "side",
    "mode",
    "batch",
    "dtype",
    "optimized",
    "compiled",
    "images_per_s",
    "p50_ms",
    "p90_ms",
    "peak_mib",
    "compile_s",
    "params",
    "gmacs",
    "gflops",
    "extra",
}


def test_json_has_the_machine_and_one_row_per_batch_and_dtype(capsys):
    args = [*TINY, *FAST, "--batch", "1", "2", "--dtype", "fp32", "bf16", "--json"]
    assert main(["bench", *args]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"] == "vit_ti_16"
    machine = data["machine"]
    assert machine["threads"] == 1 and machine["device"] == "cpu"
    assert set(machine) >= {"cpus", "other_processes_cpus", "busy", "matmul_gflops", "torch"}
    rows = data["results"]
    assert [(r["batch"], r["dtype"]) for r in rows] == [
        (1, "fp32"),
        (1, "bf16"),
        (2, "fp32"),
        (2, "bf16"),
    ]
    assert all(set(r) == KEYS and r["side"] == "vitgraph" for r in rows)
    assert all(r["p50_ms"] <= r["p90_ms"] and r["peak_mib"] > 0 for r in rows)
    # the matmul that sets the GFLOP/s ceiling is timed in turns with each setting
    assert all(r["extra"]["matmul_gflops"] > 0 for r in rows)
    assert data["ratios"] == []  # no twin


def test_against_plain_times_the_optimized_model_and_the_model_as_built(capsys):
    assert main(["bench", *TINY, *FAST, "--optimize", "--against", "plain"]) == 0
    out = capsys.readouterr().out
    header, table = out.split("\n", 1)
    assert header.startswith("vitgraph bench vit_ti_16: forward on cpu, 1 thread(s); ")
    assert "other processes kept" in header
    assert "| vit_ti_16 | vitgraph | 8 | fp32 | yes | no |" in table
    assert "| vit_ti_16 | plain | 8 | fp32 | no | no |" in table
    assert "vit_ti_16 batch 8 fp32: vitgraph / twin images/s x" in out


def test_against_timm_converts_the_timm_model_so_both_carry_the_same_weights():
    pytest.importorskip("timm")
    pair = bench_run.resolve("deit_ti", against="timm")
    assert pair.library == "timm" and pair.same_weights
    assert pair.reference.default_cfg["architecture"] == "deit_tiny_patch16_224"
    ours = dict(pair.ours.named_parameters())["pos_embed"]
    torch.testing.assert_close(ours, pair.reference.pos_embed)


def test_a_timm_name_is_benchmarked_through_its_vitgraph_twin():
    pytest.importorskip("timm")
    pair = bench_run.resolve("deit_tiny_patch16_224")
    assert pair.reference is None and pair.label == "deit_tiny_patch16_224"
    assert pair.ours.vitgraph_graph.summary().params == 5_717_416  # timm's count


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimize", "--mode", "train"], "--optimize makes an inference-only model"),
        (["--plot", "x.png"], "--plot draws a family: add --sweep"),
        (["--against", "hf"], "no HF transformers twin known for vit_ti_16"),
    ],
)
def test_a_setting_that_cannot_run_is_one_line_and_exit_1(args, message, capsys):
    assert main(["bench", *TINY, *FAST, *args]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_generative_spec_is_refused_in_one_line(capsys):
    sets = ["--set", "depth=1", "--set", "positions=16", "--set", "palette=17"]
    assert main(["bench", "igpt", *sets, *FAST]) == 1
    err = capsys.readouterr().err.strip()
    assert "bench times image models; igpt takes ids 16 of 17" in err and "\n" not in err


def test_an_unknown_name_is_a_spec_error(capsys):
    assert main(["bench", "no_such_model_anywhere", *FAST]) == 2


def test_a_family_sweep_writes_the_table_and_the_pareto_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(FAMILY)
    png, table = tmp_path / "tiny.png", tmp_path / "tiny.md"
    args = [str(spec), *FAST, "--batch", "2", "--sweep", "--plot", str(png), "--table", str(table)]
    assert main(["bench", *args, "--x", "params"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| model | side | batch |") and len(lines) == 4
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| tiny_a", "| tiny_b"]


def test_the_plot_without_matplotlib_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    row = Measurement("a", "vitgraph", "forward", 1, "fp32", False, False, 1.0, 1.0, 1.0)
    with pytest.raises(bench.BenchError, match=r"pip install 'vitgraph\[plot\]'"):
        bench_run.plot([row], "x.png")


def test_compile_without_a_cpu_compiler_says_what_to_install(monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(CompileError, match="needs a C\\+\\+ compiler .*apt-get install g\\+\\+"):
        compile_model(torch.nn.Linear(2, 2))


def test_the_load_of_other_processes_is_described_and_flagged_when_busy():
    assert Load(2, 1.6, 3.0).busy
    assert Load(2, 1.6, 3.0).describe() == (
        "other processes kept 1.6 of 2 CPUs busy (from /proc/stat): timings are "
        "disturbed, compare ratios only"
    )
    assert Load(2, 0.1, 3.0).describe() == "other processes kept 0.1 of 2 CPUs busy"
    assert Load(2, None, 3.0).describe() == "machine load unknown (no /proc/stat)"
    with LoadMeter() as meter:
        sum(range(10**5))
    assert meter.load.cpus >= 1 and meter.load.seconds > 0


def test_set_threads_sets_torch_threads_explicitly():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_percentile_and_peak_memory_count_what_they_say():
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.9) == 5.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    counter = PeakMemory()
    with counter:
        a = torch.ones(1024)  # 4 KiB
        b = torch.ones(1024)
        del a, b
    assert counter.peak == 8192 and counter.current == 0
