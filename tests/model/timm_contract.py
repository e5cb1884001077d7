"""timm's own model checks (timm 1.0.31 ``tests/test_models.py``), written for a vitgraph
twin: ``from_timm`` of a reduced, re-drawn timm model stands where timm's test calls
``create_model(name)``. Each check asserts what timm's asserts, on the same inputs
(``default_cfg['input_size']``: vitgraph's sizes are fixed), and where the twin has a
reference output to equal (the forward, the intermediates, the features) it equals it
within DESIGN.md's tolerance.

Which models: every timm model of a family the table (``tests/families.py``) checks
against timm (its ``names`` and ``timm_models``), reduced as the parity sweep reduces them
(``tests.interop.sweep_timm.reduced_kwargs``), with at least three blocks in plain
models, as timm's feature checks need three levels.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import math

import pytest
import torch
from torch import nn

import vitgraph
from tests.families import FAMILIES
from tests.helpers import assert_same_logits, redraw_

#: timm's patterns of the models whose features are not NCHW maps (its default-cfg
#: check for them reads tokens: ``test_model_default_cfgs_non_std``)
NON_STD_FILTERS = [
    "vit_*", "tnt_*", "pit_*", "cait_*", "twins_*", "levit*", "deit*", "crossvit_*",
    "eva_*", "eva02*",
]  # fmt: skip

#: timm modules with ``forward_intermediates`` (timm's FEAT_INTER_FILTERS, those of the
#: families vitgraph converts): the twin's intermediates must equal the reference's
INTERMEDIATES_IN_TIMM = (
    *("vit", "deit", "deit3", "dinov2", "siglip", "clip_vit", "vit_relpos", "eva02", "cait"),
    *("twins", "swin", "swinv2", "levit", "tnt", "pit", "botnet"),
)
#: timm intermediates before vitgraph's first: ByobNet's first is inside its stem (before
#: the stem's max-pool), which vitgraph's stem kind does not split; the four stages follow
LEADING_TIMM_ONLY = {"botnet": 1}


#: timm's per-check sizes for a model without a fixed input size (its test_models.py)
TARGET_FWD_SIZE = 384
TARGET_BWD_SIZE = 128
TARGET_FFEAT_SIZE = 96
TARGET_FWD_FX_SIZE = 128
TARGET_BWD_FX_SIZE = 128

#: twins of timm models created with a dynamic size (``name+option``): the checks above
#: run them at timm's per-check sizes, not the default one. DINOv2's patch 14 divides
#: none of those sizes (384, 128, 96): without dynamic_img_pad timm's model and the twin
#: both refuse them (tests/model/test_dynamic_size.py), so only its padded twin is here
DYNAMIC = {
    "vit_small_patch16_224+dynamic": ("vit_small_patch16_224", {"dynamic_img_size": True}),
    "deit3_small_patch16_224+dynamic": ("deit3_small_patch16_224", {"dynamic_img_size": True}),
    "vit_small_patch14_reg4_dinov2+dynamic_pad": (
        "vit_small_patch14_reg4_dinov2",
        {"dynamic_img_size": True, "dynamic_img_pad": True},
    ),
    "swin_tiny_patch4_window7_224+dynamic": (
        "swin_tiny_patch4_window7_224",
        {"strict_img_size": False},
    ),
    "swinv2_tiny_window8_256+dynamic": ("swinv2_tiny_window8_256", {"strict_img_size": False}),
}


def timm_names() -> list[str]:
    """Every timm model of a family checked against timm, as the table lists them."""
    names: list[str] = []
    for family in FAMILIES.values():
        if family.reference != "timm":
            continue
        for name in [*family.names.values(), *family.timm_models]:
            if name not in names:
                names.append(name)
    return names


def family_of(name: str) -> str:
    name = DYNAMIC.get(name, (name, {}))[0]
    return next(
        f.family
        for f in FAMILIES.values()
        if f.reference == "timm" and (name in f.names.values() or name in f.timm_models)
    )


def contract_kwargs(meta: nn.Module) -> dict[str, object]:
    """The parity sweep's reduction, with three blocks in a plain model."""
    from tests.interop.sweep_timm import reduced_kwargs

    kwargs = reduced_kwargs(meta)
    cls = type(meta).__name__
    if cls in (
        "VisionTransformer",
        "VisionTransformerDistilled",
        "Cait",
        "TNT",
        "VisionTransformerRelPos",
        "Eva",
    ):
        kwargs["depth"] = min(len(meta.blocks), 3)
    return kwargs


@functools.lru_cache(maxsize=1)  # the tests run name by name: one pair held at a time
def _pair(name: str) -> tuple[nn.Module, nn.Module]:
    timm = pytest.importorskip("timm")
    name, options = DYNAMIC.get(name, (name, {}))
    with torch.device("meta"):
        meta = timm.create_model(name, pretrained=False)
    kwargs = {**contract_kwargs(meta), **options}
    if options:  # timm's declared size: its per-check sizes are then other sizes
        kwargs.pop("img_size", None)
    torch.manual_seed(0)
    reference = redraw_(timm.create_model(name, pretrained=False, **kwargs)).eval()
    return reference, vitgraph.from_timm(reference).eval()


def pair(name: str) -> tuple[nn.Module, nn.Module]:
    """(the reduced timm model, its twin), fresh copies."""
    reference, ours = _pair(name)
    return copy.deepcopy(reference), copy.deepcopy(ours)


def input_for(model: nn.Module, batch: int, target: int | None = None) -> torch.Tensor:
    """timm's ``_get_input_size``: the default size of a fixed-size model; a dynamic
    one's sides clamped to the check's ``target`` (so its twin runs at another size)."""
    torch.manual_seed(1)
    cfg = model.default_cfg
    size = tuple(cfg["input_size"])
    if not cfg.get("fixed_input_size", None) and target and max(size) > target:
        size = tuple(min(side, target) for side in size)
    return torch.randn(batch, *size)


def _cat(outputs):
    return torch.cat(outputs) if isinstance(outputs, tuple) else outputs


def _channel_axis(model: nn.Module) -> int:
    return -1 if getattr(model, "output_fmt", "NCHW") == "NHWC" else 1


def _spatial_axes(model: nn.Module) -> tuple[int, int]:
    return (1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else (2, 3)


# -- the checks, one per test of timm's test_models.py -----------------------------------


def check_forward(name: str) -> None:
    """test_model_forward: one forward; grad checkpointing gives the same output."""
    reference, model = pair(name)
    x = input_for(model, 1, TARGET_FWD_SIZE)
    outputs = model(x)
    assert outputs.shape[0] == 1
    assert not torch.isnan(outputs).any()
    assert_same_logits(model, reference, x)
    model.set_grad_checkpointing()
    assert torch.allclose(outputs, _cat(model(x)), rtol=1e-4, atol=1e-5)


def check_backward(name: str) -> None:
    """test_model_backward: 42 classes, every parameter gets a gradient."""
    _, model = pair(name)
    model.reset_classifier(42)
    model.train()
    outputs = _cat(model(input_for(model, 2, TARGET_BWD_SIZE)))
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_params = sum(x.numel() for x in model.parameters())
    num_grad = sum(x.grad.numel() for x in model.parameters() if x.grad is not None)
    assert outputs.shape[-1] == 42
    assert num_params == num_grad
    assert not torch.isnan(outputs).any()


def _assert_cfg_names(model: nn.Module, cfg: dict, state_dict: dict) -> None:
    if cfg.get("num_classes", None):
        classifier = cfg["classifier"]
        for c in classifier if isinstance(classifier, tuple | list) else (classifier,):
            assert c + ".weight" in state_dict, f"{c} not in model params"
    first_conv = cfg["first_conv"]
    for fc in (first_conv,) if isinstance(first_conv, str) else first_conv:
        assert fc + ".weight" in state_dict, f"{fc} not in model params"


def _headless_twin(name: str, pool: str | None) -> nn.Module:
    """timm's ``create_model(name, num_classes=0[, global_pool=''])``, as a twin: from_timm
    of the reference made headless the same way."""
    reference, _ = pair(name)
    reference.reset_classifier(0, pool)
    return vitgraph.from_timm(reference).eval()


def check_default_cfgs(name: str) -> None:
    """test_model_default_cfgs (NCHW / NHWC maps) or test_model_default_cfgs_non_std
    (tokens), as timm's patterns file the model."""
    _, model = pair(name)
    assert model.num_classes >= 0
    assert model.num_features > 0
    assert model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg
    x = input_for(model, 1)
    outputs = model.forward_features(x)
    outputs_pre = model.forward_head(outputs, pre_logits=True)
    non_std = any(fnmatch.fnmatch(name, p) for p in NON_STD_FILTERS)
    if non_std:
        if not isinstance(outputs, tuple | list):  # timm cannot check several (CrossViT)
            feat_dim = -1 if outputs.ndim == 3 else 1
            assert outputs.shape[feat_dim] == model.num_features
            assert outputs_pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        pooled = pooled[0] if isinstance(pooled, tuple | list) else pooled
        assert pooled.shape[-1 if pooled.ndim == 3 else 1] == model.head_hidden_size
        assert pooled.shape == outputs_pre.shape
        headless = _headless_twin(name, None)(x)
        headless = headless[0] if isinstance(headless, tuple | list) else headless
        assert headless.shape[-1 if headless.ndim == 3 else 1] == model.num_features
    else:
        pool_size = cfg["pool_size"]
        spatial, feat = _spatial_axes(model), _channel_axis(model)
        assert outputs.shape[spatial[0]] == pool_size[0]
        assert outputs.shape[spatial[1]] == pool_size[1]
        assert outputs.shape[feat] == model.num_features
        assert outputs_pre.shape[1] == model.head_hidden_size
        model.reset_classifier(0)
        assert model.num_classes == 0
        pooled = model(x)
        assert pooled.ndim == 2 and pooled.shape[1] == model.head_hidden_size
        assert pooled.shape == outputs_pre.shape
        model.reset_classifier(0, "")
        unpooled = model(x)
        assert unpooled.ndim == 4
        assert (unpooled.shape[spatial[0]], unpooled.shape[spatial[1]]) == tuple(pool_size)
        unpooled = _headless_twin(name, "")(x)
        assert unpooled.ndim == 4
        assert (unpooled.shape[spatial[0]], unpooled.shape[spatial[1]]) == tuple(pool_size)
    _assert_cfg_names(model, cfg, state_dict)


def _check_maps(outputs, channels, reductions, size, batch) -> None:
    assert len(channels) == len(outputs)
    for e, r, o in zip(channels, reductions, outputs, strict=True):
        assert e == o.shape[1]
        assert o.shape[2] <= math.ceil(size[0] / r) + 1
        assert o.shape[3] <= math.ceil(size[1] / r) + 1
        assert o.shape[0] == batch
        assert not torch.isnan(o).any()


def check_forward_intermediates(name: str) -> None:
    """test_model_forward_intermediates, and the intermediates equal the reference's."""
    timm = pytest.importorskip("timm")
    reference, model = pair(name)
    info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    channels, reductions = info.channels(), info.reduction()
    assert len(channels) >= 3
    x = input_for(model, 1, TARGET_FFEAT_SIZE)
    output, intermediates = model.forward_intermediates(x, output_fmt="NCHW")
    _check_maps(intermediates, channels, reductions, x.shape[-2:], 1)
    features = model.forward_features(x)
    if isinstance(features, tuple | list):  # one per branch (CrossViT)
        assert all(torch.allclose(a, b) for a, b in zip(output, features, strict=True))
        return  # timm has no forward_intermediates for it: nothing more to compare
    assert torch.allclose(output, features)
    if family_of(name) in INTERMEDIATES_IN_TIMM:
        theirs_final, theirs = reference.forward_intermediates(x, output_fmt="NCHW")
        theirs = theirs[LEADING_TIMM_ONLY.get(family_of(name), 0) :]
        assert [tuple(t.shape) for t in theirs] == [tuple(t.shape) for t in intermediates]
        for ours_t, theirs_t in zip(intermediates, theirs, strict=True):
            assert_close(ours_t, theirs_t)
        if theirs_final.ndim == 4 and output.ndim == 3:  # timm's conv LeViT: NCHW maps
            theirs_final = theirs_final.flatten(2).transpose(1, 2)  # of our tokens' values
        assert_close(output, theirs_final)
        ours_last = model.forward_intermediates(x, indices=2, intermediates_only=True)
        theirs_last = reference.forward_intermediates(x, indices=2, intermediates_only=True)
        for ours_t, theirs_t in zip(ours_last, theirs_last, strict=True):
            assert_close(ours_t, theirs_t)
    model.set_grad_checkpointing()
    output3, _ = model.forward_intermediates(x, output_fmt="NCHW")
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5)


def assert_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    diff = (ours - theirs).abs().max().item()
    allowed = 1e-4 * max(1.0, theirs.abs().max().item())
    assert diff <= allowed, f"differs by {diff:.2e} (allowed {allowed:.2e})"


def check_features_only(name: str) -> None:
    """test_model_forward_features (and _intermediates_features): the features-only model
    returns NCHW maps as its feature_info says, equal to the reference's intermediates."""
    from vitgraph.model.features import features_only

    reference, model = pair(name)
    taps = features_only(model)
    channels, reductions = taps.feature_info.channels(), taps.feature_info.reduction()
    assert len(channels) >= 3
    x = input_for(taps, 1, TARGET_FFEAT_SIZE)
    outputs = taps(x)
    _check_maps(outputs, channels, reductions, x.shape[-2:], 1)
    expected = model.forward_intermediates(
        x, indices=list(taps.feature_info.out_indices), intermediates_only=True
    )
    for ours_t, theirs_t in zip(outputs, expected, strict=True):
        assert torch.equal(ours_t, theirs_t)
    if family_of(name) in INTERMEDIATES_IN_TIMM:
        lead = LEADING_TIMM_ONLY.get(family_of(name), 0)
        theirs = reference.forward_intermediates(
            x, indices=[i + lead for i in taps.feature_info.out_indices], intermediates_only=True
        )
        for ours_t, theirs_t in zip(outputs, theirs, strict=True):
            assert_close(ours_t, theirs_t)


def _fx_model(model: nn.Module, train: bool = False) -> nn.Module:
    """timm's ``_create_fx_model``: torchvision's feature extractor on the last node."""
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    from timm.models import get_notrace_functions, get_notrace_modules

    tracer_kwargs = {
        "leaf_modules": get_notrace_modules(),
        "autowrap_functions": get_notrace_functions(),
        "param_shapes_constant": True,
    }
    train_nodes, eval_nodes = fx.get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
    eval_return_nodes = [eval_nodes[-1]]
    train_return_nodes = [train_nodes[-1]]
    if train:
        tracer = fx.NodePathTracer(**tracer_kwargs)
        graph = tracer.trace(model)
        graph_nodes = list(reversed(graph.nodes))
        output_node_names = [n.name for n in graph_nodes[0]._input_nodes]
        graph_node_names = [n.name for n in graph_nodes]
        indices = [-graph_node_names.index(node_name) for node_name in output_node_names]
        train_return_nodes = [train_nodes[ix] for ix in indices]
    return fx.create_feature_extractor(
        model,
        train_return_nodes=train_return_nodes,
        eval_return_nodes=eval_return_nodes,
        tracer_kwargs=tracer_kwargs,
    )


def check_fx_forward(name: str) -> None:
    """test_model_forward_fx: torchvision's fx feature extraction computes the forward."""
    _, model = pair(name)
    x = input_for(model, 1, TARGET_FWD_FX_SIZE)
    with torch.inference_mode():
        outputs = _cat(model(x))
        fx_outputs = torch.cat(tuple(_fx_model(model)(x).values()))
    assert torch.all(fx_outputs == outputs)
    assert not torch.isnan(outputs).any()


def check_fx_backward(name: str) -> None:
    """test_model_backward_fx: the traced model trains with 42 classes."""
    _, model = pair(name)
    model.reset_classifier(42)
    model.train()
    num_params = sum(x.numel() for x in model.parameters())
    fx_model = _fx_model(model, train=True)
    outputs = torch.cat(tuple(fx_model(input_for(model, 2, TARGET_BWD_FX_SIZE)).values()))
    outputs.mean().backward()
    for n, x in fx_model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum(x.grad.numel() for x in fx_model.parameters() if x.grad is not None)
    assert outputs.shape[-1] == 42
    assert num_params == num_grad
    assert not torch.isnan(outputs).any()


CHECKS = {
    "forward": check_forward,
    "backward": check_backward,
    "default_cfgs": check_default_cfgs,
    "forward_intermediates": check_forward_intermediates,
    "features_only": check_features_only,
    "fx_forward": check_fx_forward,
    "fx_backward": check_fx_backward,
}
