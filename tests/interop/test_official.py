"""``vitgraph convert`` of the official DeepViT and Refiner checkpoint layouts (#20).

Two checks per family. Always: a state_dict in the official key layout, its names and
shapes written here from the official model code (zhoudaquan/dvit_repo
``models/deep_vision_transformer.py`` and ``models/layers.py``; zhoudaquan/Refiner_ViT
``models/refined_transformer.py`` and ``models/refiner_utils.py``), converts with every
key placed and every shape matching, each tensor where the official code reads it. Where
the official code is given (``DEEPVIT_OFFICIAL`` / ``REFINER_VIT_OFFICIAL``: checkouts,
never committed), its re-drawn model saved as a ``.pth`` converts to weights that give
its logits.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import vitgraph
from tests.references import DEEPVIT_REDUCED, deepvit_parity, refiner_parity
from vitgraph.cli import main

Layout = dict[str, tuple[int, ...]]


def _norm(prefix: str, width: int) -> Layout:
    return {f"{prefix}.weight": (width,), f"{prefix}.bias": (width,)}


def _batchnorm(prefix: str, width: int) -> Layout:
    return {
        **_norm(prefix, width),
        f"{prefix}.running_mean": (width,),
        f"{prefix}.running_var": (width,),
        f"{prefix}.num_batches_tracked": (),
    }


def _linear(prefix: str, out: int, into: int) -> Layout:
    return {f"{prefix}.weight": (out, into), f"{prefix}.bias": (out,)}


def _tokens(dim: int, patches: int, classes: int) -> Layout:
    return {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, patches + 1, dim),
        **_norm("norm", dim),
        **_linear("head", classes, dim),
    }


def deepvit_layout(dim: int, reattention: list[bool], size: int, classes: int) -> Layout:
    """DeepVisionTransformer with ``use_cnn_embed`` (PatchEmbed_CNN: two 64-channel convs
    with BatchNorm, then a patch/2 projection), ReAttention in every block (its
    ``reatten_matrix`` and ``var_norm`` only where ``apply_transform``), heads 12, mlp
    ratio 3, qkv bias."""
    heads, hidden = 12, 3 * dim
    layout = {
        **_tokens(dim, (size // 16) ** 2, classes),
        "patch_embed.conv1.weight": (64, 3, 7, 7),
        **_batchnorm("patch_embed.bn1", 64),
        "patch_embed.conv2.weight": (64, 64, 3, 3),
        **_batchnorm("patch_embed.bn2", 64),
        "patch_embed.proj.weight": (dim, 64, 8, 8),
        "patch_embed.proj.bias": (dim,),
    }
    for i, transform in enumerate(reattention):
        block = f"blocks.{i}"
        layout |= _norm(f"{block}.norm1", dim) | _norm(f"{block}.norm2", dim)
        layout |= _linear(f"{block}.attn.qkv", 3 * dim, dim)
        layout |= _linear(f"{block}.attn.proj", dim, dim)
        layout |= _linear(f"{block}.mlp.fc1", hidden, dim)
        layout |= _linear(f"{block}.mlp.fc2", dim, hidden)
        if transform:
            layout[f"{block}.attn.reatten_matrix.weight"] = (heads, heads, 1, 1)
            layout[f"{block}.attn.reatten_matrix.bias"] = (heads,)
            layout |= _batchnorm(f"{block}.attn.var_norm", heads)
    return layout


def refiner_layout(dim: int, depth: int, size: int, classes: int) -> Layout:
    """Refiner_ViT as its factories build it: PatchEmbed_cnn (32, 64, 128 channels),
    layers alternating plain (``attn.qkv`` of 3·dim rows) and shared (``attn.qkv`` of dim
    rows, ``attn.DLA`` with expansion 3 and ``attn.adapt_bn``), an MLP with
    ``scale_channel``, heads 12, and the token-labeling ``aux_head``."""
    heads, hidden, wide = 12, 3 * dim, 3 * 12
    layout = {
        **_tokens(dim, (size // 16) ** 2, classes),
        **_linear("aux_head", classes, dim),
        "patch_embed.conv1.weight": (32, 3, 7, 7),
        **_batchnorm("patch_embed.bn1", 32),
        "patch_embed.conv2.weight": (64, 32, 3, 3),
        **_batchnorm("patch_embed.bn2", 64),
        "patch_embed.conv3.weight": (128, 64, 3, 3),
        **_batchnorm("patch_embed.bn3", 128),
        "patch_embed.proj.weight": (dim, 128, 8, 8),
        "patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        block, shared = f"blocks.{i}", i % 2 == 1
        layout |= _norm(f"{block}.norm1", dim) | _norm(f"{block}.norm2", dim)
        layout |= _linear(f"{block}.attn.qkv", dim if shared else 3 * dim, dim)
        layout |= _linear(f"{block}.attn.proj", dim, dim)
        layout |= _linear(f"{block}.mlp.fc1", hidden, dim)
        layout |= _linear(f"{block}.mlp.fc2", dim, hidden)
        layout[f"{block}.mlp.scale_channel"] = (dim,)
        if shared:
            dla = f"{block}.attn.DLA"
            layout[f"{dla}.conv_exp.weight"] = (wide, heads, 1, 1)
            layout |= _batchnorm(f"{dla}.bn1", wide)
            layout[f"{dla}.depth_sep_conv.weight"] = (wide, 1, 3, 3)
            layout |= _batchnorm(f"{dla}.bn2", wide)
            layout[f"{dla}.conv_pro.weight"] = (heads, wide, 1, 1)
            layout |= _batchnorm(f"{dla}.bn3", heads)
            layout |= _batchnorm(f"{block}.attn.adapt_bn", heads)
    return layout


def _filled(layout: Layout) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        key: torch.tensor(3) if not shape else torch.randn(shape, generator=gen)
        for key, shape in layout.items()
    }


def _convert(tmp_path, state, spec: str, overrides: dict) -> dict[str, torch.Tensor]:
    torch.save({"model": state}, tmp_path / "official.pth")
    out = tmp_path / "converted.safetensors"
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    argv = ["convert", str(tmp_path / "official.pth"), "--spec", spec, *sets, "--out", str(out)]
    assert main(argv) == 0
    return load_file(out)


def test_the_official_deepvit_layout_converts_every_key_with_its_shape(tmp_path):
    overrides = {"depth": 4, "reattention_layers": 2, "image_size": 64, "classes": 10}
    official = _filled(deepvit_layout(396, [False, False, True, True], 64, 10))
    ours = _convert(tmp_path, official, "deepvit_s", overrides)
    # the spec names its nodes as the official code: every tensor under its own name
    assert set(ours) == set(official)
    assert all(torch.equal(ours[key], official[key]) for key in official)


def test_the_official_refiner_layout_converts_every_key_with_its_shape(tmp_path):
    overrides = {"depth": 4, "image_size": 64, "classes": 10}
    official = _filled(refiner_layout(384, 4, 64, 10))
    ours = _convert(tmp_path, official, "refiner_vit_s", overrides)
    model = vitgraph.load("refiner_vit_s", overrides=overrides).build()
    assert set(ours) == set(model.state_dict())
    # one fused qkv per plain layer becomes the map's q, k rows and the layer's v rows
    qkv = official["blocks.2.attn.qkv.weight"]
    assert torch.equal(ours["blocks.2.map.qk.weight"], qkv[:768])
    assert torch.equal(ours["blocks.2.attn.v.weight"], qkv[768:])
    assert torch.equal(ours["blocks.2.map.qk.bias"], official["blocks.2.attn.qkv.bias"][:768])
    # a shared layer's qkv is its values alone; its DLA and adapt_bn are our refiner
    assert torch.equal(ours["blocks.3.attn.v.weight"], official["blocks.3.attn.qkv.weight"])
    assert torch.equal(
        ours["blocks.3.attn.refiner.conv_exp.weight"], official["blocks.3.attn.DLA.conv_exp.weight"]
    )
    assert torch.equal(
        ours["blocks.3.attn.refiner.adapt_bn.running_var"],
        official["blocks.3.attn.adapt_bn.running_var"],
    )
    assert torch.equal(ours["blocks.1.ls.gamma"], official["blocks.1.mlp.scale_channel"])
    # every official tensor lands somewhere: as many numbers in as out
    assert sum(t.numel() for t in ours.values()) == sum(t.numel() for t in official.values())


@pytest.mark.parametrize(
    ("spec", "parity", "overrides"),
    [
        pytest.param(
            variant,
            lambda v=variant: deepvit_parity(v),
            {**DEEPVIT_REDUCED[variant][2], "image_size": 64, "classes": 10},
            id=variant,
        )
        for variant in DEEPVIT_REDUCED
    ]
    + [
        pytest.param(
            "refiner_vit_s",
            refiner_parity,
            {"depth": 4, "image_size": 64, "classes": 10},
            id="refiner_vit_s",
        )
    ],
)
def test_an_official_checkpoint_converts_to_weights_that_give_its_logits(
    tmp_path, spec, parity, overrides
):
    reference = parity().reference  # the official code's model, re-drawn (skips without it)
    converted = tmp_path / "converted.safetensors"
    torch.save(reference.state_dict(), tmp_path / "official.pth")
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    argv = ["convert", str(tmp_path / "official.pth"), "--spec", spec, *sets]
    assert main([*argv, "--out", str(converted)]) == 0
    ours = vitgraph.load(spec, overrides=overrides).build(weights=converted).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.eval()(x), atol=1e-4, rtol=0)
