"""timm's model API on every family with a timm twin (PiT, CaiT, Twins, Swin, TNT,
CrossViT, LeViT, BoTNet): the same names give timm's tensors and sets for the same
weights (re-drawn first), and grad checkpointing changes nothing but memory."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

import vitgraph
from tests.helpers import checkpoint_calls, outputs_and_grads, redraw_

timm = pytest.importorskip("timm")

#: timm model -> a reduced config (few layers, narrow, small images) keeping each
#: family's distinct structures: distillation (PiT, LeViT), class attention (CaiT),
#: LSA + GSA (Twins SVT), shifted windows (Swin), two streams (TNT), two branches
#: (CrossViT), BatchNorm heads (LeViT), relative-position BoT blocks (BoTNet)
FAMILIES: dict[str, dict] = {
    "pit_ti_224": {"img_size": 64, "depth": [1, 1, 1]},
    "pit_ti_distilled_224": {"img_size": 64, "depth": [1, 1, 1]},
    "cait_xxs24_224": {"depth": 2, "img_size": 32, "embed_dim": 32, "num_heads": 4},
    "twins_svt_small": {"depths": (2, 2, 2, 2), "embed_dims": (16, 32, 64, 128)},
    "twins_pcpvt_small": {"depths": (2, 2, 2, 2), "embed_dims": (8, 16, 40, 64)},
    "swin_tiny_patch4_window7_224": {
        "depths": (1, 2, 2, 1),
        "embed_dim": 32,
        "num_heads": (1, 2, 4, 8),
        "img_size": 112,
    },
    "tnt_s_patch16_224": {"depth": 2, "img_size": 64},
    "crossvit_tiny_240": {"depth": [[1, 1, 0]] * 2},
    "levit_128s": {"depth": (1, 1, 1), "img_size": 64},
    "botnet26t_256": {"img_size": 128},
}
#: prefix tokens where the model has them (timm's PiT does not declare the attribute)
PREFIX = {"pit_ti_224": 1, "pit_ti_distilled_224": 2, "cait_xxs24_224": 1, "tnt_s_patch16_224": 1}


def reference(name: str, **extra) -> torch.nn.Module:
    return redraw_(
        timm.create_model(name, pretrained=False, num_classes=10, **FAMILIES[name], **extra)
    )


@functools.cache
def _made(name: str):
    ref = reference(name).eval()
    return vitgraph.from_timm(ref).eval(), ref


def twins(name: str):
    """Ours and timm's with the same weights (fresh copies: tests change heads and modes)."""
    ours, ref = _made(name)
    return copy.deepcopy(ours), copy.deepcopy(ref)


def image(ref: torch.nn.Module, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *ref.pretrained_cfg["input_size"][:1], *size_of(ref))


def size_of(ref: torch.nn.Module) -> tuple[int, int]:
    name = ref.pretrained_cfg["architecture"]
    side = FAMILIES[name].get("img_size") or ref.pretrained_cfg["input_size"][-1]
    return side, side


def worst(a, b) -> float:
    """max |a - b| over tensors or sequences of them; inf if the shapes differ."""
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b)
        return max(worst(x, y) for x, y in zip(a, b, strict=True))
    return (a - b).abs().max().item() if a.shape == b.shape else float("inf")


def conversion_of(ref: torch.nn.Module):
    from vitgraph.interop.timm import converter_for

    return converter_for(ref)(ref)


def rename_of(ref: torch.nn.Module):
    return conversion_of(ref).rename


def mapped_state(ref: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm's state_dict under our names and layouts (from_timm's key mapping)."""
    conversion = conversion_of(ref)
    return {
        conversion.rename(k): conversion.convert(k, v).detach().clone()
        for k, v in ref.state_dict().items()
    }


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_forward_features_and_head_give_timms_tensors(name):
    ours, ref = twins(name)
    x = image(ref)
    with torch.no_grad():
        features, theirs = ours.forward_features(x), ref.forward_features(x)
        assert worst(features, theirs) <= 1e-5
        assert worst(ours.forward_head(theirs), ref.forward_head(theirs)) <= 1e-5
        assert (
            worst(
                ours.forward_head(theirs, pre_logits=True),
                ref.forward_head(theirs, pre_logits=True),
            )
            <= 1e-5
        )
        assert worst(ours.forward_head(features), ours(x)) == 0
    assert ours.num_features == ref.num_features
    assert ours.num_classes == ref.num_classes == 10
    if name in PREFIX:
        assert (
            ours.num_prefix_tokens
            == getattr(ref, "num_prefix_tokens", PREFIX[name])
            == (PREFIX[name])
        )


@pytest.mark.parametrize("name", ["pit_ti_distilled_224", "levit_128s"])
def test_distilled_heads_return_both_logits_in_distilled_training_like_timm(name):
    ours, ref = twins(name)
    ours.train().set_distilled_training(True)
    ref.train().set_distilled_training(True)
    x = image(ref, batch=4)
    with torch.no_grad():
        features = ref.forward_features(x)
        out, theirs = ours.forward_head(features), ref.forward_head(features)
    assert isinstance(out, tuple) and len(out) == 2
    assert worst(out, theirs) <= 1e-5


def heads(model) -> tuple[torch.nn.Module, ...]:
    found = model.get_classifier()
    return tuple(found) if isinstance(found, tuple | torch.nn.ModuleList) else (found,)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("classes", [0, 7])
def test_reset_classifier_gives_timms_heads_and_logits(name, classes):
    ours, ref = twins(name)
    ours.reset_classifier(classes)
    ref.reset_classifier(classes)
    ours_heads, ref_heads = heads(ours), heads(ref)
    assert [sum(p.numel() for p in h.parameters()) for h in ours_heads] == [
        sum(p.numel() for p in h.parameters()) for h in ref_heads
    ]
    for mine, theirs in zip(ours_heads, ref_heads, strict=True):
        mine.load_state_dict(theirs.state_dict())  # fresh draws differ; shapes must not
    x = image(ref)
    with torch.no_grad():
        assert worst(ours(x), ref(x)) <= 1e-5
    assert ours.num_classes == classes == ref.num_classes
    assert ours.pretrained_cfg["num_classes"] == classes


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_get_classifier_is_timms_classifier(name):
    ours, ref = twins(name)
    rename = rename_of(ref)
    ours_heads, ref_heads = heads(ours), heads(ref)
    assert len(ours_heads) == len(ref_heads)
    ref_names = {id(m): n for n, m in ref.named_modules()}
    ours_names = {id(m): n for n, m in ours.named_modules()}
    for mine, theirs in zip(ours_heads, ref_heads, strict=True):
        keys = [f"{ref_names[id(theirs)]}.{k}" for k in theirs.state_dict()]
        assert [rename(k) for k in keys] == [
            f"{ours_names[id(mine)]}.{k}" for k in mine.state_dict()
        ]


def no_decay_group(model, rename=lambda key: key) -> set[str]:
    """Names timm's optimizer factory puts in the weight-decay-free group."""
    from timm.optim import param_groups_weight_decay

    named = {id(p): n for n, p in model.named_parameters()}
    listed = getattr(model, "no_weight_decay", lambda: set())()
    groups = param_groups_weight_decay(model, 0.05, no_weight_decay_list=listed)
    return {rename(named[id(p)]) for g in groups if g["weight_decay"] == 0 for p in g["params"]}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_no_weight_decay_gives_timms_parameter_groups(name):
    ours, ref = twins(name)
    rename = rename_of(ref)
    assert no_decay_group(ours) == no_decay_group(ref, rename)
    # every name timm lists is in ours (ours adds norms and biases, which timm's
    # factory exempts anyway as 1-D)
    params = {n for n, _ in ref.named_parameters()}
    theirs = getattr(ref, "no_weight_decay", lambda: set())()
    assert {rename(n) for n in theirs if n in params} <= ours.no_weight_decay()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_grad_checkpointing_gives_the_same_logits_and_gradients(name):
    ours, ref = twins(name)
    ours.train()
    x = image(ref)

    def run():
        return outputs_and_grads(ours, x)

    plain_out, plain_grads = run()
    plain_features = ours.forward_features(x)
    ours.set_grad_checkpointing(True)
    ckpt_out, ckpt_grads = run()
    assert (plain_out - ckpt_out).abs().max().item() <= 1e-6
    assert worst(ours.forward_features(x), plain_features) <= 1e-6
    assert max((plain_grads[n] - ckpt_grads[n]).abs().max().item() for n in plain_grads) <= 1e-6
    ours.set_grad_checkpointing(False)
    assert (run()[0] - plain_out).abs().max().item() == 0


def test_grad_checkpointing_units_are_each_familys_blocks(monkeypatch):
    """Checkpointed segments: Swin, each of the 6 blocks (as timm's stages checkpoint
    their blocks) and the 3 patch mergings; TNT, its 2 layers; Twins, per stage its patch
    embedding, first layer (a composite used once), PEG and second layer."""
    calls = checkpoint_calls(monkeypatch)
    for name, units in (
        ("swin_tiny_patch4_window7_224", 9),
        ("tnt_s_patch16_224", 2),
        ("twins_svt_small", 16),
    ):
        ours, ref = twins(name)
        ours.set_grad_checkpointing(True)
        calls.clear()
        ours(image(ref, batch=1)).sum().backward()
        assert len(calls) == units, name


def test_crossvit_headless_forward_returns_timms_concatenated_features():
    ours, ref = twins("crossvit_tiny_240")
    ours.reset_classifier(0)
    ref.reset_classifier(0)
    x = image(ref)
    with torch.no_grad():
        out = ours(x)
        assert out.shape == (2, ref.num_features) and worst(out, ref(x)) <= 1e-5
    ours.set_grad_checkpointing(True)
    assert worst(ours(x).detach(), out) <= 1e-6


FULL_SIZE = [
    "pit_s_distilled_224",
    "cait_s24_224",
    "twins_svt_base",
    "twins_pcpvt_base",
    "swin_base_patch4_window7_224",
    "tnt_b_patch16_224",
    "crossvit_15_dagger_240",
    "levit_256",
    "botnet26t_256",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_no_weight_decay_groups_and_features_are_timms(name):
    ref = timm.create_model(name, pretrained=False).eval()
    ours = vitgraph.from_timm(ref).eval()
    assert no_decay_group(ours) == no_decay_group(ref, rename_of(ref))
    x = torch.randn(1, 3, *ref.pretrained_cfg["input_size"][1:])
    with torch.no_grad():
        theirs = ref.forward_features(x)
        scale = max(
            1.0, *(t.abs().max().item() for t in (theirs if isinstance(theirs, list) else [theirs]))
        )
        assert worst(ours.forward_features(x), theirs) <= 1e-4 * scale
    assert ours.num_features == ref.num_features
