"""The vitgraph command line: JSON contract, exit codes, weights out, listings."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest
from safetensors import safe_open

from vitgraph.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vitgraph.cli", *args], capture_output=True, text=True
    )


def test_build_json_reports_the_contract_keys(capsys):
    assert main(["build", "deit_ti_distilled", "--json", "--set", "image_size=64"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spec"] == "deit" and data["variant"] == "deit_ti_distilled"
    assert data["input_shape"] == [3, 64, 64] and data["output_shape"] == [1000]
    assert data["flops"] == 2 * data["macs"] and data["forward_output_shape"] == [1, 1000]


def test_build_prints_a_summary_table(capsys):
    assert main(["build", "vit_ti_16", "--set", "depth=2", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "blocks ×2" in out and "encoder_layer" in out and "total" in out
    assert "forward of batch 2 -> [2, 1000]" in out


def test_spec_errors_exit_2_and_json_lists_them(capsys):
    assert main(["validate", "vit_ti_16", "--set", "heads=5", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    (error,) = data["errors"]
    assert error["path"] == "blocks.0.attn" and error["line"] > 0
    assert error["message"] == "heads 5 must divide the token width 192"


@pytest.mark.parametrize(
    "args",
    [
        ["build", "no_such_model"],
        ["build", "vit", "--set", "depth"],
        ["validate", "vit", "--variant", "vit_s16"],
    ],
)
def test_unknown_names_and_bad_overrides_exit_2(args, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err.count(":") >= 1


def test_other_failures_exit_1(capsys):
    assert (
        main(
            [
                "build",
                "vit_ti_16",
                "--set",
                "depth=1",
                "--set",
                "image_size=32",
                "--set",
                "patch=8",
                "--device",
                "nonexistent_device",
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("error:")


def test_out_writes_safetensors_with_the_spec_in_its_metadata(tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    assert main(["build", "vit_ti_16", "--set", "depth=1", "--out", str(path)]) == 0
    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
        assert "blocks.0.attn.qkv.weight" in handle.keys()
    assert meta["variant"] == "vit_ti_16" and json.loads(meta["overrides"]) == {"depth": 1}
    assert meta["spec"].startswith("# yaml-language-server")


def test_list_json_names_every_spec_and_block(capsys):
    assert main(["list", "--json"]) == 0
    specs = {row["spec"]: row for row in json.loads(capsys.readouterr().out)}
    assert (
        specs["vit"]["default"] == "vit_ti_16" and "deit_b_distilled" in specs["deit"]["variants"]
    )
    assert main(["list", "blocks", "--json"]) == 0
    blocks = {row["kind"]: row for row in json.loads(capsys.readouterr().out)}
    assert blocks["encoder_layer"]["composite"] and "heads" in blocks["mhsa"]["params"]


def test_validate_of_vit_l_allocates_no_weights():
    # ViT-L has 304M parameters (1.2 GB in fp32); validating it must stay far below that.
    code = (
        "import resource, vitgraph; base = resource.getrusage(resource.RUSAGE_SELF)"
        ".ru_maxrss; s = vitgraph.load('vit_l_16').summary(); "
        "print(s.params, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert int(out[0]) == 304_326_632 and int(out[1]) < 200_000  # KiB
    assert resource


def test_installed_console_script_runs():
    import shutil

    script = shutil.which("vitgraph", path=str(__import__("pathlib").Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run([script, "validate", "vit_ti_16"], capture_output=True, text=True)
    assert done.returncode == 0 and "valid" in done.stdout


def test_build_optimize_reports_what_each_pass_did(capsys):
    args = ["build", "levit_128s", "--set", "image_size=64", "--set", "depths=[1,1,1]"]
    assert main([*args, "--optimize", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["optimized"]["fold_batchnorm"] == 28  # every LeViT BatchNorm of that copy
    # LeViT's stem convs run over feature maps: auto times both layouts, keeps the faster
    assert data["optimized"]["memory_format"] in ("contiguous", "channels_last")
    assert data["compile_seconds"] is None and data["forward_output_shape"] == [1, 1000]


def test_build_compile_times_the_compilation_apart_from_the_forward(capsys):
    args = ["build", "vit_ti_16", "--set", "depth=1", "--set", "image_size=32", "--compile"]
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["compile_seconds"] > 0 and data["optimized"] is not None
    assert data["forward_seconds"] < data["compile_seconds"]


def test_validate_imports_neither_the_compiler_nor_the_model_api_nor_the_weights_loader():
    code = (
        "import sys\n"
        "from vitgraph.cli import main\n"
        "assert main(['validate', 'vit_ti_16', '--set', 'depth=1']) == 0\n"
        "mods = ('vitgraph.compiler', 'vitgraph.model.api', 'vitgraph.weights.loader')\n"
        "print('LOADED', [m for m in mods if m in sys.modules], file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stderr.strip().splitlines()[-1] == "LOADED []", done.stderr


def test_build_dynamic_img_size_makes_the_table_resize_and_is_refused_by_name_without_one(
    capsys,
):
    assert main(["build", "vit_ti_16", "--set", "depth=1", "--dynamic-img-size", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["forward_output_shape"] == [1, 1000]
    assert main(["validate", "levit_128s", "--dynamic-img-size"]) == 2
    assert "levit_128s: dynamic_img_size=True resizes the one absolute position table" in (
        capsys.readouterr().err
    )
