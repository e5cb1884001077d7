"""timm's current contract on every shipped spec: ``forward_intermediates``,
``feature_info``, ``prune_intermediate_layers``, ``reset_classifier(0, '')``,
``head_hidden_size``, ``output_fmt`` and the ``pretrained_cfg`` keys timm's tests read;
twins compared with timm (re-drawn weights) where timm has the method."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

import vitgraph
from tests.families import FAMILIES
from tests.helpers import redraw_
from tests.model.timm_contract import _fx_model, assert_close
from vitgraph.model.features import features_only
from vitgraph.model.intermediates import intermediate_units


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def small(family: str):
    row = FAMILIES[family]
    variant = row.variants[0]
    graph = vitgraph.load(variant, overrides=row.small.overrides_for(variant))
    torch.manual_seed(0)
    return graph, graph.build().eval()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_shipped_spec_returns_the_intermediates_its_feature_info_describes(family):
    graph, model = small(family)
    info = model.feature_info
    assert [d["module"] for d in info] == intermediate_units(graph)
    x = graph.example_input(2, seed=0)
    final, maps = model.forward_intermediates(x)
    size = x.shape[-2:] if x.ndim == 4 else graph.input_type.grid  # ids: their grid
    assert [m.shape[:2] for m in maps] == [(2, d["num_chs"]) for d in info]
    for m, d in zip(maps, info, strict=True):
        assert -(-size[0] // d["reduction"]) >= m.shape[2] >= size[0] // d["reduction"] // 2
    for ours, theirs in zip(_flat(final), _flat(model.forward_features(x)), strict=True):
        assert torch.equal(ours, theirs)
    tokens = model.forward_intermediates(x, indices=1, output_fmt="NLC", intermediates_only=True)
    assert tokens[0].shape == (2, maps[-1].shape[2] * maps[-1].shape[3], maps[-1].shape[1])
    assert torch.equal(tokens[0].transpose(1, 2).reshape(maps[-1].shape), maps[-1])


def _flat(out) -> list[torch.Tensor]:
    """The tensors of a feature output (CrossViT's list, DETR's (logits, boxes))."""
    return [t for o in out for t in _flat(o)] if isinstance(out, list | tuple) else [out]


#: the intermediates of each full-size default, as timm takes its twin's
UNITS = {
    "vit_ti_16": [f"blocks.{i}" for i in range(12)],
    "cait_xxs24": [f"blocks.{i}" for i in range(24)],  # not the class-attention layers
    "swin_t": [f"layers.{i}" for i in range(4)],
    "pvt_tiny": [f"stages.{i}" for i in range(4)],
    "twins_svt_s": ["stage1", "stage2", "stage3", "stage4"],
    "pit_ti": ["transformers.0", "transformers.1", "transformers.2"],
    "levit_128s": ["stage0.1", "stage1.2", "stage2.3"],  # each stage's last block
    "tnt_s": [f"blocks.{i}" for i in range(12)],
    "t2t_vit_7": [f"blocks.{i}" for i in range(7)],  # not the tokens-to-token module
    "bot50": ["stage0.2", "stage1.3", "stage2.5", "stage3.2"],
    "cvt_13": ["stage0", "stage1", "stage2"],
}


@pytest.mark.parametrize(("variant", "units"), list(UNITS.items()))
def test_the_intermediates_are_the_units_timm_takes_of_the_twin(variant, units):
    assert intermediate_units(vitgraph.load(variant)) == units


def test_swin_feature_info_gives_timms_nominal_strides_where_a_stage_padded():
    model = vitgraph.build("swin_t", overrides={"image_size": 112}, device="meta")
    assert [d["reduction"] for d in model.feature_info] == [4, 8, 16, 32]
    assert model.feature_info.channels() == [96, 192, 384, 768]


def test_forward_intermediates_names_the_range_of_an_index_out_of_it():
    _, model = small("vit")
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"feature index 5 is out of range \(0 to 0\)"):
        model.forward_intermediates(x, indices=[5])
    with pytest.raises(ValueError, match="output_fmt must be one of NCHW, NLC, got 'NHWC'"):
        model.forward_intermediates(x, output_fmt="NHWC")


NO_UNITS = """
vitgraph: 1
name: linear_probe
input: {channels: 3, size: 32}
graph:
  - {id: patch_embed, kind: patch_embed, patch: 16, dim: 8}
  - {id: pool, kind: mean_pool}
  - {id: head, kind: linear_head, classes: 3}
"""


def test_a_model_without_repeated_units_on_a_grid_says_so():
    model = vitgraph.load("probe.yaml", text=NO_UNITS).build()
    assert model.feature_info == []
    message = "linear_probe: this model has no repeated units on a spatial grid"
    with pytest.raises(NotImplementedError, match=message):
        model.forward_intermediates(torch.randn(1, 3, 32, 32))
    with pytest.raises(NotImplementedError, match="features_only needs repeated units"):
        features_only(model)


# -- twins against timm ------------------------------------------------------------------

TWINS = {
    "vit": ("vit_small_patch16_224", {"depth": 3, "img_size": 64}),
    "cait": ("cait_xxs24_224", {"depth": 3, "img_size": 64}),
    "swin": (
        "swin_tiny_patch4_window7_224",
        {"depths": (1, 2, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8), "img_size": 112},
    ),
    "pit": ("pit_ti_distilled_224", {"img_size": 64, "depth": [1, 1, 1]}),
    "levit": ("levit_128s", {"depth": (1, 1, 1), "img_size": 64}),
    # timm refuses reset_classifier(0, '') on a distilled PiT
    "pit_ti": ("pit_ti_224", {"img_size": 64, "depth": [1, 1, 1]}),
    "vit_reg": ("vit_small_patch16_224", {"depth": 3, "img_size": 64, "reg_tokens": 4}),
    "deit3": ("deit3_small_patch16_224", {"depth": 3, "img_size": 64}),
    "deit_distilled": ("deit_tiny_distilled_patch16_224", {"depth": 3, "img_size": 64}),
    "twins": (
        "twins_pcpvt_small",
        {"depths": (2, 2, 2, 2), "embed_dims": (8, 16, 40, 64), "img_size": 64},
    ),
}


def twin(family: str, **extra):
    timm = pytest.importorskip("timm")
    name, kwargs = TWINS[family]
    torch.manual_seed(0)
    reference = redraw_(timm.create_model(name, **kwargs, **extra).eval())
    size = kwargs["img_size"]
    return reference, vitgraph.from_timm(reference).eval(), torch.randn(2, 3, size, size)


def _first(out):
    return out[0] if isinstance(out, tuple) else out


PRUNES = {
    "last one": ((1,), {}),
    "first only": (([0],), {}),
    "head kept": (([1],), {"prune_head": False}),
    "norm pruned": (([1],), {"prune_norm": True}),
}


@pytest.mark.parametrize("how", list(PRUNES))
@pytest.mark.parametrize("family", ["vit", "cait", "swin", "pit", "levit"])
def test_prune_intermediate_layers_leaves_timms_model(family, how):
    reference, ours, x = twin(family)
    args, kwargs = PRUNES[how]
    assert ours.prune_intermediate_layers(*args, **kwargs) == reference.prune_intermediate_layers(
        *args, **kwargs
    )
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    with torch.no_grad():
        theirs, mine = _first(reference(x)), _first(ours(x))
        assert mine.shape == theirs.shape
        assert_close(mine, theirs)
        kept = ours.forward_intermediates(x, indices=args[0], intermediates_only=True)
        expected = reference.forward_intermediates(x, indices=args[0], intermediates_only=True)
    for a, b in zip(kept, expected, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("family", ["vit", "swin", "pit_ti", "levit"])
def test_reset_classifier_to_no_pooling_returns_timms_unpooled_features(family):
    reference, ours, x = twin(family)
    reference.reset_classifier(0, "")
    ours.reset_classifier(0, "")
    with torch.no_grad():
        theirs, mine = reference(x), ours(x)
    assert mine.shape == theirs.shape  # ViT (B, N, C) tokens, Swin (B, H, W, C) maps
    assert_close(mine, theirs)
    assert ours.num_classes == 0
    assert ours.num_features == reference.num_features


@pytest.mark.parametrize("pool", [None, ""])
def test_from_timm_of_a_headless_dinov2_gives_its_features(pool):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    kwargs = {"num_classes": 0, "depth": 3, "img_size": 56}
    if pool is not None:
        kwargs["global_pool"] = pool
    reference = redraw_(timm.create_model("vit_small_patch14_dinov2", **kwargs).eval())
    ours = vitgraph.from_timm(reference)
    x = torch.randn(2, 3, 56, 56)
    with torch.no_grad():
        theirs, mine = reference(x), ours(x)
    assert mine.shape == ((2, 384) if pool is None else (2, 17, 384))
    assert_close(mine, theirs)
    assert reference.num_classes == 0 and isinstance(reference.head, torch.nn.Identity)


def test_head_hidden_size_output_fmt_and_pretrained_cfg_are_timms():
    reference, ours, _ = twin("levit")
    assert ours.head_hidden_size == reference.head_hidden_size
    assert ours.pretrained_cfg["classifier"] == ("head.linear", "head_dist.linear")
    assert ours.pretrained_cfg["first_conv"] == "stem.conv1.linear"
    _, swin, _ = twin("swin")
    assert swin.output_fmt == "NHWC"
    assert swin.pretrained_cfg["pool_size"] == (4, 4)
    assert swin.pretrained_cfg["fixed_input_size"] is True


def test_features_only_returns_the_last_three_blocks_of_a_plain_model_as_timm():
    reference, ours, x = twin("vit")
    taps = features_only(copy.deepcopy(ours))
    assert taps.feature_info.out_indices == (0, 1, 2)
    assert taps.feature_info.channels() == [384] * 3
    for a, b in zip(
        taps(x), reference.forward_intermediates(x, intermediates_only=True), strict=True
    ):
        assert_close(a, b)


def _cat(out) -> torch.Tensor:
    return torch.cat([t.flatten(1) for t in _flat(out)], dim=1)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_timms_model_checks_that_need_no_reference_pass_on_every_shipped_spec(family):
    """timm's forward (with grad checkpointing), backward with 42 classes, features_only
    and torchvision fx checks, on each spec's reduced default variant."""
    pytest.importorskip("torchvision.models.feature_extraction")
    graph, model = small(family)
    x = graph.example_input(2, seed=0)
    with torch.no_grad():
        out = _cat(model(x))
        model.set_grad_checkpointing()
        assert torch.allclose(out, _cat(model(x)), rtol=1e-4, atol=1e-5)
        model.set_grad_checkpointing(False)
        if not graph.extra_inputs:  # torchvision's tracer drops DETR's pixel_mask=None default
            traced = _fx_model(model)  # timm's own torchvision feature extractor
            assert torch.equal(_cat(tuple(traced(x).values())), out)
    taps = features_only(model)
    assert [t.shape[1] for t in taps(x)] == taps.feature_info.channels()
    if model.num_classes:
        model.reset_classifier(42)
        model.train()
        logits = model(x)
        _cat(logits).mean().backward()
        free = FAMILIES[family].small.no_grad_for(graph.variant)  # off-path by design
        assert [n for n, p in model.named_parameters() if p.grad is None and n not in free] == []
        assert _flat(logits)[0].shape[-1] == 42


# -- timm's ViT arguments: prefix tokens, the dict, a stopped run --------------------------


def assert_same_structure(ours, theirs) -> None:
    """Equal nesting (lists, pairs, dicts with the same keys) and tensors within 1e-4."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and set(ours) == set(theirs)
        for key in theirs:
            assert_same_structure(ours[key], theirs[key])
    elif isinstance(theirs, list | tuple):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            assert_same_structure(a, b)
    else:
        assert ours.shape == theirs.shape
        assert_close(ours, theirs)


VIT_ARGUMENTS = {
    "prefix tokens": {"indices": 2, "return_prefix_tokens": True},
    "prefix tokens, normed, NLC": {
        "indices": [0, 2],
        "return_prefix_tokens": True,
        "norm": True,
        "output_fmt": "NLC",
    },
    "prefix tokens, only": {
        "indices": [1],
        "return_prefix_tokens": True,
        "intermediates_only": True,
    },
    "dict": {"indices": [0, 1], "output_dict": True},
    "dict with prefix tokens, stopped": {
        "indices": [1],
        "output_dict": True,
        "return_prefix_tokens": True,
        "stop_early": True,
    },
    "dict, only": {"output_dict": True, "return_prefix_tokens": True, "intermediates_only": True},
}


@pytest.mark.parametrize("arguments", list(VIT_ARGUMENTS))
@pytest.mark.parametrize("family", ["vit_reg", "deit3", "deit_distilled"])
def test_prefix_tokens_and_the_dict_output_are_timms(family, arguments):
    """Register tokens (4 + class), DeiT-III's table without the class token, DeiT's
    distillation token."""
    reference, ours, x = twin(family)
    kwargs = VIT_ARGUMENTS[arguments]
    with torch.no_grad():
        assert_same_structure(
            ours.forward_intermediates(x, **kwargs), reference.forward_intermediates(x, **kwargs)
        )


def test_a_model_without_prefix_tokens_returns_plain_intermediates_with_return_prefix_tokens():
    reference, ours, x = twin("swin")
    with torch.no_grad():
        plain = ours.forward_intermediates(x, indices=[1], intermediates_only=True)
        asked = ours.forward_intermediates(
            x, indices=[1], intermediates_only=True, return_prefix_tokens=True
        )
    assert_same_structure(asked, plain)


def test_swin_gives_its_tuple_as_a_dict_where_timms_swin_has_no_dict():
    reference, ours, x = twin("swin")
    with torch.no_grad():
        features, intermediates = reference.forward_intermediates(x, indices=[1, 3])
        found = ours.forward_intermediates(x, indices=[1, 3], output_dict=True)
    assert_same_structure(found, {"image_features": features, "image_intermediates": intermediates})


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize(
    "family", ["vit_reg", "deit3", "cait", "swin", "twins", "pit", "pit_ti", "levit"]
)
def test_a_stopped_run_returns_the_features_timm_returns(family, norm):
    """Without intermediates_only, stop_early ends the trunk at the last unit asked for:
    a plain model's final norm (CaiT's class attention too) runs on it; a hierarchical
    model stopped before its last stage returns that stage's output without the final
    norm, as timm's Swin, Twins, PiT and LeViT do."""
    reference, ours, x = twin(family)
    for index in range(len(ours.feature_info)):
        kwargs = {"indices": [index], "stop_early": True, "norm": norm}
        with torch.no_grad():
            assert_same_structure(
                ours.forward_intermediates(x, **kwargs),
                reference.forward_intermediates(x, **kwargs),
            )
