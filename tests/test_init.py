"""A freshly built model is initialised as timm initialises its twin: per parameter group
(the same key with the layer index folded), the same mean and std, and exact constants
(norm weights 1, zero biases) where timm sets them."""

from __future__ import annotations

import re

import pytest
import torch

import vitgraph

timm = pytest.importorskip("timm")

TWINS = [  # (our variant, timm model); full width so the statistics are tight
    ("vit_s_16", "vit_small_patch16_224"),
    ("deit_ti_distilled", "deit_tiny_distilled_patch16_224"),
]


def group_stats(model: torch.nn.Module) -> dict[str, tuple[int, float, float]]:
    groups: dict[str, list[torch.Tensor]] = {}
    for name, param in model.named_parameters():
        groups.setdefault(re.sub(r"\.\d+\.", ".*.", name), []).append(param.detach().flatten())
    stats = {}
    for name, tensors in groups.items():
        values = torch.cat(tensors).double()
        stats[name] = (values.numel(), values.mean().item(), values.std().item())
    return stats


@pytest.mark.parametrize(("ours_name", "timm_name"), TWINS)
def test_fresh_model_has_timms_init_statistics_per_parameter_group(ours_name, timm_name):
    torch.manual_seed(0)
    ours = group_stats(vitgraph.load(ours_name, overrides={"depth": 2}).build())
    reference = group_stats(timm.create_model(timm_name, pretrained=False, depth=2))
    assert set(ours) == set(reference)
    for name, (count, mean, std) in reference.items():
        ours_count, ours_mean, ours_std = ours[name]
        assert ours_count == count, name
        if std == 0:  # a constant: norm weights, zero biases
            assert (ours_mean, ours_std) == (mean, std), name
            continue
        # sampling error of a std estimate is std / sqrt(2n); allow 6 of those, at least 5%
        assert abs(ours_std - std) <= max(0.05, 6 / (2 * count) ** 0.5) * std, (name, ours_std, std)
        assert abs(ours_mean - mean) <= 6 * std / count**0.5, (name, ours_mean, mean)


def test_attention_and_mlp_linears_are_truncated_normal_with_zero_bias():
    model = vitgraph.load("vit_ti_16", overrides={"depth": 1}).build()
    for name in ("blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"):
        layer = model.get_submodule(name)
        assert layer.weight.abs().max().item() <= 2.0  # the cut of trunc_normal_
        assert abs(layer.weight.std().item() - 0.02) < 0.002
        assert torch.count_nonzero(layer.bias) == 0


def test_a_new_kind_declares_its_init_scheme():
    from typing import Literal

    from vitgraph.block import Block
    from vitgraph.init import SCHEMES, scheme_of
    from vitgraph.vocabulary import INIT_SCHEMES

    block = vitgraph.load("vit_ti_16", overrides={"depth": 1}).node("blocks.0.attn").params
    assert scheme_of(block) == "trunc_normal_linear" == type(block).weight_init
    with pytest.raises(KeyError, match="unknown init scheme 'xavier'"):

        class Misdeclared(Block):  # a kind naming a scheme vitgraph.init does not have
            kind: Literal["misdeclared"] = "misdeclared"
            weight_init = "xavier"

    assert tuple(SCHEMES) == INIT_SCHEMES  # every nameable scheme is implemented
