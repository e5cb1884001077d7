"""Round-trip: every shipped spec and variant, written back with ``to_yaml`` and loaded
again, builds the same model (state_dict keys and shapes, outputs for the same weights)."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from vitgraph.spec.catalog import shipped_specs, variant_index

VARIANTS = sorted(variant_index())


def _shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _small(variant: str) -> vitgraph.Graph:
    """The variant with its depth and layer-count args (and per-stage depth lists) down to 1
    and the smallest image of 64, 96 or 128 pixels the spec allows (so building for real
    stays quick)."""
    graph = vitgraph.load(variant)
    depths: dict[str, object] = {}
    for name, value in graph.args.items():
        if not ("depth" in name or name.endswith("_layers")) or isinstance(value, bool):
            continue
        if isinstance(value, int):
            depths[name] = 1
        elif isinstance(value, list) and all(isinstance(v, int) for v in value):
            depths[name] = [1] * len(value)  # per-stage depths (Swin, PVT, CvT, Twins)
    sizes = [{"input.size": 64}] + [{"image_size": n} for n in (64, 96, 128)]
    for overrides in (*({**depths, **size} for size in sizes), depths):
        try:
            return vitgraph.load(variant, overrides=overrides)
        except vitgraph.SpecError:
            continue
    return graph


@pytest.mark.parametrize("variant", VARIANTS)
def test_full_size_variant_round_trips_to_the_same_keys_shapes_and_count(variant):
    graph = vitgraph.load(variant)
    again = vitgraph.load("roundtrip.yaml", text=graph.to_yaml())
    assert again.variant == variant
    assert _shapes(again.build(device="meta")) == _shapes(graph.build(device="meta"))
    assert again.summary().params == graph.summary().params
    assert again.summary().macs == graph.summary().macs


@pytest.mark.parametrize("variant", VARIANTS)
def test_small_variant_round_trips_to_equal_outputs_for_the_same_weights(variant):
    graph = _small(variant)
    again = vitgraph.load("roundtrip.yaml", text=graph.to_yaml())
    original, rebuilt = graph.build().eval(), again.build().eval()
    assert _shapes(rebuilt) == _shapes(original)
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x = graph.example_input(1)
    with torch.no_grad():
        ours, theirs = rebuilt(x), original(x)
    ours, theirs = (o if isinstance(o, tuple) else (o,) for o in (ours, theirs))  # detection
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_round_trip_keeps_repeat_args_and_expressions():
    text = vitgraph.load("vit").to_yaml()
    assert "repeat: $depth" in text
    assert "stochastic_depth: {rate: $drop_path_rate}" in text
    assert "inputs: [blocks.small]" in vitgraph.load("crossvit").to_yaml()
    assert "when: $distilled}" in vitgraph.load("deit").to_yaml()
    assert "  vit_l_16: {dim: 1024, depth: 24, heads: 16}" in text
    assert "default: vit_ti_16" in text


def test_overrides_are_written_into_the_chosen_variant():
    graph = vitgraph.load("vit_s_16", overrides={"depth": 2, "head.classes": 10, "input.size": 96})
    again = vitgraph.load("roundtrip.yaml", text=graph.to_yaml())
    assert again.variant == "vit_s_16"
    assert again.summary().params == graph.summary().params
    assert again.input_shape == (3, 96, 96)
    assert again.output_shape == (10,)


def test_edited_graph_round_trips(tmp_path):
    graph = vitgraph.load("vit_ti_16", overrides={"depth": 3, "input.size": 64})
    graph.update("blocks.1.attn", qkv_bias=False)
    graph.insert_after("blocks.0", {"id": "extra_norm", "kind": "layernorm"})
    path = tmp_path / "edited.yaml"
    graph.save(path)
    again = vitgraph.load(path)
    original, rebuilt = graph.build().eval(), again.build().eval()
    rebuilt.load_state_dict(original.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = rebuilt(x), original(x)
    ours, theirs = (o if isinstance(o, tuple) else (o,) for o in (ours, theirs))  # detection
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert "blocks.1.attn.qkv.bias" not in original.state_dict()
    assert "extra_norm.weight" in original.state_dict()


def test_every_shipped_spec_is_covered():
    assert {"vit", "deit", "simplevit"} <= set(shipped_specs())
