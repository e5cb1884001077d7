"""CCT (arXiv:2104.05704): the conv tokenizer, sequence pooling and the cct spec, against
vit-pytorch's ``cct`` (an exact match to the official code)."""

from __future__ import annotations

import re

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_

PAPER = {  # params, GMACs (official README / paper Table 1 and 3)
    "cct_2_3x2": (284_000, 0.033),
    "cct_7_3x1": (3_760_000, 0.947),
    "cct_14_7x2": (22_360_000, 5.11),
}
# vit-pytorch's keyword arguments for each variant (CCT-L/PxC).
REFERENCE = {
    "cct_2_3x2": ("cct_2", dict(img_size=32, kernel_size=3, n_conv_layers=2, num_classes=10)),
    "cct_7_3x1": ("cct_7", dict(img_size=32, kernel_size=3, n_conv_layers=1, num_classes=10)),
    "cct_7_7x2": ("cct_7", dict(img_size=224, kernel_size=7, n_conv_layers=2, num_classes=102)),
    "cct_14_7x2": ("cct_14", dict(img_size=224, kernel_size=7, n_conv_layers=2)),
}
POOLING = dict(
    pooling_kernel_size=3, pooling_stride=2, pooling_padding=1, positional_embedding="learnable"
)


WIDTHS = {  # vit-pytorch's cct_L factories: num_layers, num_heads, mlp_ratio, embedding_dim
    "cct_2": dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    "cct_7": dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    "cct_14": dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
}


def reference(variant: str, **changes) -> torch.nn.Module:
    """vit-pytorch's model (through its ``_cct`` helper so depth can be reduced; built on
    CPU: its stochastic-depth schedule calls ``.item()``, which the meta device refuses)."""
    cct = pytest.importorskip("vit_pytorch.cct")
    factory, kwargs = REFERENCE[variant]
    return cct._cct(**{**WIDTHS[factory], **kwargs, **POOLING, **changes})


def to_ours(key: str) -> str:
    key = key.removeprefix("classifier.")
    key = re.sub(r"\.linear1\.", ".mlp.fc1.", key)
    return re.sub(r"\.linear2\.", ".mlp.fc2.", key)


def test_cct_7_3x1_has_the_official_count_to_the_unit():
    assert vitgraph.load("cct_7_3x1").summary().params == 3_760_139


@pytest.mark.parametrize("variant", sorted(REFERENCE))
def test_cct_count_equals_vit_pytorch_to_the_unit(variant):
    expected = sum(p.numel() for p in reference(variant).parameters())
    assert vitgraph.load(variant).summary().params == expected


@pytest.mark.parametrize("variant", sorted(PAPER))
def test_cct_params_within_one_percent_and_macs_within_ten_percent_of_the_paper(variant):
    summary = vitgraph.load(variant).summary()
    params, gmacs = PAPER[variant]
    assert abs(summary.params - params) / params < 0.01
    # counting tools disagree on CCT-7/3x1 (paper 0.947 G, torch's counter 1.18 G; see
    # shared/reference/architectures.md): the same counter run on the reference is the
    # exact check below
    if variant != "cct_7_3x1":
        assert abs(summary.macs / 1e9 - gmacs) / gmacs < 0.10


def test_cct_7_3x1_macs_equal_the_same_counter_run_on_vit_pytorch():
    from torch.utils.flop_counter import FlopCounterMode

    model = reference("cct_7_3x1").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert vitgraph.load("cct_7_3x1").summary().macs == counter.get_total_flops() // 2


@pytest.mark.parametrize(
    "variant,depth,size",
    [("cct_7_3x1", 7, 32), ("cct_2_3x2", 2, 32), ("cct_14_7x2", 2, 64), ("cct_7_7x2", 2, 64)],
)
def test_cct_gives_vit_pytorch_logits_after_weight_transfer(variant, depth, size):
    theirs = redraw_(reference(variant, num_layers=depth, img_size=size)).eval()
    overrides = {"depth": depth, "image_size": size}
    ours = vitgraph.load(variant, overrides=overrides).build()
    state = {to_ours(k): v for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    assert_same_logits(ours, theirs, torch.randn(2, 3, size, size))


@pytest.mark.parametrize("variant", sorted(REFERENCE))
def test_cct_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.load(variant, overrides={"depth": 1, "image_size": 32}).build()
    out = model(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert model.get_parameter("attention_pool.weight").grad is not None
