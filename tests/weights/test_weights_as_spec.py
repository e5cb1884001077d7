"""A weights file or checkpoint written by vitgraph stands wherever a spec does (#24
item 4): its metadata holds the spec text, the variant and the overrides."""

from __future__ import annotations

import vitgraph
from vitgraph.cli import main

SMALL = {"depth": 2, "input.size": 32}


def _weights(tmp_path):
    path = tmp_path / "w.safetensors"
    graph = vitgraph.load("vit_ti_16", overrides=SMALL)
    vitgraph.save_weights(graph.build(device="cpu"), graph, path)
    return path


def test_a_weights_file_loads_as_its_spec_variant_and_overrides(tmp_path):
    path = _weights(tmp_path)
    graph = vitgraph.load(str(path))
    assert (graph.name, graph.variant, graph.overrides) == ("vit", "vit_ti_16", SMALL)
    again = vitgraph.load(str(path), overrides={"head.classes": 10})
    assert again.output_shape == (10,) and again.overrides["depth"] == 2


def test_validate_and_diff_take_a_weights_file(tmp_path, capsys):
    path = str(_weights(tmp_path))
    assert main(["validate", path, "--json"]) == 0
    assert '"variant": "vit_ti_16"' in capsys.readouterr().out
    result = vitgraph.diff(vitgraph.load("vit_ti_16", overrides=SMALL), path)
    assert not result.added and not result.removed and not result.changed


def test_show_prints_what_a_weights_file_holds(tmp_path, capsys):
    path = _weights(tmp_path)
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        f'{path}: vit / vit_ti_16 with overrides {{"depth": 2, "input.size": 32}}',
        "  weights: 32 tensors, 1,231,912 values",
    ]
    assert "# the spec it was made from:\n" in out and "name: vit\n" in out


def test_a_safetensors_file_without_a_spec_is_a_located_error(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    assert main(["validate", str(path)]) == 2
    assert "holds no vitgraph spec (a file without vitgraph metadata)" in capsys.readouterr().err


def test_the_weights_of_an_edited_graph_load_back_as_the_edited_graph(tmp_path):
    # before, the metadata held the unedited spec file: 1000 classes came back
    graph = vitgraph.load("vit_ti_16", overrides=SMALL).update("head", classes=10)
    path = tmp_path / "edited.safetensors"
    vitgraph.save_weights(graph.build(), graph, path)
    again = vitgraph.load(str(path))
    assert (again.name, again.variant, again.output_shape) == ("vit_edited", "vit_ti_16", (10,))
    again.build(weights=path)  # every key and shape fits
