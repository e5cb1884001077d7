"""Weights files: safetensors with the resolved spec in the metadata, every mismatch listed,
broken files refused with what is wrong with them (issue #9)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import vitgraph
from vitgraph.cli import main
from vitgraph.weights import WeightsError, read_header

SMALL = {"depth": 1, "input.size": 32}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """vit_ti_16 (one layer, 32 px) saved with save_weights."""
    path = tmp_path_factory.mktemp("w") / "vit.safetensors"
    graph = vitgraph.load("vit_ti_16", overrides=SMALL)
    vitgraph.save_weights(graph.build(), graph, path)
    return path


def refused(path: Path, spec: str = "vit_ti_16", overrides: dict | None = None) -> str:
    graph = vitgraph.load(spec, overrides=SMALL if overrides is None else overrides)
    with pytest.raises(WeightsError) as info:
        graph.build(weights=path)
    return str(info.value).replace(str(path), "{file}")


def test_weights_round_trip_through_build_and_carry_the_resolved_spec(saved):
    graph = vitgraph.load("vit_ti_16", overrides=SMALL)
    torch.manual_seed(1)
    model = graph.build(weights=saved)
    with safe_open(str(saved), "pt") as handle:
        meta = handle.metadata()
        for key, value in model.state_dict().items():
            assert torch.equal(value, handle.get_tensor(key)), key
    assert meta["spec_name"] == "vit" and meta["variant"] == "vit_ti_16"
    assert json.loads(meta["overrides"]) == SMALL
    # the resolved spec alone rebuilds a model the same weights load into
    again = vitgraph.load("resolved.yaml", text=meta["resolved_spec"])
    assert again.summary().params == graph.summary().params == 787_048
    rebuilt = again.build(weights=saved)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_weights_of_another_spec_list_every_mismatch(saved):
    message = refused(saved, "deit_ti_distilled")
    assert message == (
        "{file} does not fit the model (deit / deit_ti_distilled): it holds the weights of "
        'vit / vit_ti_16 with overrides {"depth": 1, "input.size": 32}; 4 of 23 tensors '
        "differ\n"
        "  missing: dist_token (1, 1, 192)\n"
        "  missing: head_dist.weight (1000, 192)\n"
        "  missing: head_dist.bias (1000,)\n"
        "  mismatched: pos_embed is (1, 5, 192) in the file, (1, 6, 192) in the model"
    )


def test_weights_of_another_width_list_every_tensor(saved):
    message = refused(saved, "vit_s_16")
    lines = message.splitlines()
    assert lines[0].endswith("; 19 of 20 tensors differ")  # all but head.bias (1000,)
    assert lines[1] == (
        "  mismatched: cls_token is (1, 1, 192) in the file, (1, 1, 384) in the model"
    )
    assert len(lines) == 20 and all(" in the file, " in line for line in lines[1:])
    assert not any("head.bias" in line for line in lines)


def test_extra_and_missing_keys_are_all_named(saved, tmp_path):
    with safe_open(str(saved), "pt") as handle:
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    state["extra.weight"] = torch.zeros(3)
    del state["norm.bias"], state["head.weight"]
    state["head.bias"] = state["head.bias"].long()
    path = tmp_path / "edited.safetensors"
    save_file(state, str(path))
    assert refused(path) == (
        "{file} does not fit the model (vit / vit_ti_16): it holds the weights of a file "
        "without vitgraph metadata; 4 of 20 tensors differ\n"
        "  missing: norm.bias (192,)\n"
        "  missing: head.weight (1000, 192)\n"
        "  unexpected: extra.weight (3,)\n"
        "  mismatched: head.bias is I64 in the file, F32 in the model"
    )


def test_a_truncated_file_is_refused_naming_the_tensors_past_its_end(saved, tmp_path):
    data = saved.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) - 1000])
    message = refused(path)
    assert message.startswith("{file} is not a whole safetensors file:\n  ")
    assert "(the file is truncated)" in message
    path.write_bytes(data[:20])
    assert refused(path) == (
        f"{{file}} is not a safetensors file: its first 8 bytes give a header of "
        f"{struct.unpack('<Q', data[:8])[0]:,} bytes, but 12 bytes follow (truncated, or "
        "another format)"
    )


def test_a_corrupted_header_is_refused(saved, tmp_path):
    data = bytearray(saved.read_bytes())
    data[9] = ord("}")  # inside the JSON header
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bytes(data))
    assert refused(path).startswith("{file} has a corrupted safetensors header: it is not JSON (")
    header = json.loads(saved.read_bytes()[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    key = next(k for k in header if k != "__metadata__")
    header[key]["data_offsets"][1] += 4
    raw = json.dumps(header).encode()
    path.write_bytes(
        struct.pack("<Q", len(raw))
        + raw
        + saved.read_bytes()[8 + struct.unpack("<Q", data[:8])[0] :]
    )
    assert refused(path).startswith(f"{{file}} is not a whole safetensors file:\n  {key}: offsets ")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"",
            "{file} is 0 bytes long: too short for a safetensors file (an 8-byte header "
            "length comes first)",
        ),
        (
            b"vitgraph: 1\nname: not weights\n",
            "{file} is not a safetensors file: its first 8 "
            "bytes give a header of 7,525,622,121,325,947,254 bytes, but 22 bytes follow "
            "(truncated, or another format)",
        ),
    ],
)
def test_empty_and_text_files_are_refused(tmp_path, content, expected):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    assert refused(path) == expected


def test_random_bytes_and_a_torch_save_file_are_refused(tmp_path):
    path = tmp_path / "random.safetensors"
    path.write_bytes(os.urandom(4096))
    assert refused(path).startswith(
        "{file} is not a safetensors file: its first 8 bytes give a header of "
    )
    pth = tmp_path / "model.pth"  # a zip of pickles: never unpickled here
    torch.save({"w": torch.zeros(2)}, pth)
    assert refused(pth).startswith("{file} is not a safetensors file: its first 8 bytes give")


def test_a_bad_file_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"\x00" * 4)
    graph = vitgraph.load("vit_ti_16", overrides=SMALL)
    monkeypatch.setattr("vitgraph.compiler.compile_nodes", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(WeightsError, match="too short for a safetensors file"):
        graph.build(weights=path)


def test_load_weights_reports_broken_safetensors_clearly(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(os.urandom(64))
    model = vitgraph.load("vit_ti_16", overrides=SMALL).build()
    with pytest.raises(WeightsError, match="is not a safetensors file"):
        vitgraph.load_weights(model, path)


def test_cli_build_out_then_weights(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    args = ["build", "vit_ti_16", "--set", "depth=1", "--set", "input.size=32"]
    assert main([*args, "--out", str(out), "--seed", "3"]) == 0
    assert main([*args, "--weights", str(out), "--json"]) == 0
    assert (
        main(
            [
                "build",
                "vit_s_16",
                "--set",
                "depth=1",
                "--set",
                "input.size=32",
                "--weights",
                str(out),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "does not fit the model (vit / vit_s_16)" in err and "19 of 20 tensors" in err
    assert read_header(out)[0]["variant"] == "vit_ti_16"
