"""Numerics and determinism over every shipped variant, at reduced size
(tests/export_sizes.py): bf16 autocast gives finite logits and gradients, and the same seed
gives bit-identical weights. ``make test`` runs each family's default variant; the other
variants are marked slow (``make parity-all``)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vitgraph
from tests.export_sizes import reduced, shipped
from vitgraph.cli import main

VARIANTS = [
    pytest.param(family, variant, id=variant, marks=() if default else pytest.mark.slow)
    for family, variant, default in shipped()
]
DEFAULTS = [
    pytest.param(family, variant, id=family) for family, variant, default in shipped() if default
]


#: parameters that do not reach the logits by design: family -> (name part, why)
OFF_THE_LOGITS_PATH = {
    "vt": (
        "vt.1.projector",
        "the last VT module (of 2 at reduced size) refines the feature map, "
        "the model's feature output (specs/vt.yaml), which the classifier does not read",
    ),
}


def _outputs(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


@pytest.mark.parametrize(("family", "variant"), VARIANTS)
def test_bf16_autocast_forward_and_backward_are_finite(family, variant):
    graph = vitgraph.load(variant, overrides=reduced(family, variant))
    model = graph.build().train()  # train mode: distilled models return both heads
    x = graph.example_input(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = _outputs(model(x))
    assert outputs[0].shape == (2, *graph.output_shape)  # LV-ViT adds token logits
    for out in outputs:
        assert out.dtype == torch.bfloat16
        assert torch.isfinite(out).all(), f"non-finite logits: {out}"
    sum(out.float().square().mean() for out in outputs).backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    missing = [name for name, p in trainable.items() if p.grad is None]
    off_path = OFF_THE_LOGITS_PATH.get(family)
    assert all(off_path and off_path[0] in name for name in missing), (
        f"parameters without a gradient: {missing}"
    )
    bad = [
        name
        for name, p in trainable.items()
        if p.grad is not None and not torch.isfinite(p.grad).all()
    ]
    assert not bad, f"non-finite gradients: {bad}"


@pytest.mark.parametrize(("family", "variant"), VARIANTS)
def test_the_same_seed_gives_bit_identical_weights_and_another_seed_does_not(family, variant):
    graph = vitgraph.load(variant, overrides=reduced(family, variant))

    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        return graph.build().state_dict()

    first, again, other = weights(7), weights(7), weights(8)
    assert list(first) == list(again)
    unequal = [key for key in first if not torch.equal(first[key], again[key])]
    assert not unequal, f"same seed, different weights: {unequal}"
    assert any(not torch.equal(first[key], other[key]) for key in first)


def test_cli_build_seed_writes_the_same_weights_twice_and_others_for_another_seed(tmp_path):
    small = ["--set", "depth=1", "--set", "image_size=32", "--json"]
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        paths[name] = tmp_path / f"{name}.safetensors"
        assert (
            main(["build", "vit_ti_16", *small, "--seed", str(seed), "--out", str(paths[name])])
            == 0
        )
    a, b, c = (load_file(paths[name]) for name in "abc")
    assert list(a) == list(b) == list(c)
    assert all(torch.equal(a[key], b[key]) for key in a)  # bit-identical, every tensor
    assert not torch.equal(a["blocks.0.attn.qkv.weight"], c["blocks.0.attn.qkv.weight"])
