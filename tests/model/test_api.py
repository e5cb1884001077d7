"""timm's model API on compiled models: the same names give the same tensors as timm's
ViT / DeiT with the same weights (re-drawn first), and grad checkpointing changes
nothing but memory."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import checkpoint_calls, outputs_and_grads, redraw_

timm = pytest.importorskip("timm")

TWINS = {  # timm model -> reduced config covering class token, distillation, avg pooling
    "vit_small_patch16_224": {"depth": 2, "img_size": 32},
    "deit_tiny_distilled_patch16_224": {"depth": 2, "img_size": 32},
    "vit_small_patch16_224_avg": {
        "depth": 2,
        "img_size": 32,
        "global_pool": "avg",
        "class_token": False,
        "fc_norm": True,
    },
}


def twins(name: str):
    kwargs = dict(TWINS[name])
    base = name.removesuffix("_avg")
    reference = redraw_(timm.create_model(base, pretrained=False, **kwargs)).eval()
    return vitgraph.from_timm(reference).eval(), reference


def close(a, b, tol=1e-5):
    if isinstance(a, tuple):
        return all(close(x, y, tol) for x, y in zip(a, b, strict=True))
    return a.shape == b.shape and (a - b).abs().max().item() <= tol


@pytest.mark.parametrize("name", sorted(TWINS))
def test_forward_features_and_head_give_timms_tensors(name):
    ours, reference = twins(name)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = ours.forward_features(x)
        assert close(features, reference.forward_features(x))
        assert close(ours.forward_head(features), reference.forward_head(features))
        assert close(
            ours.forward_head(features, pre_logits=True),
            reference.forward_head(features, pre_logits=True),
        )
        assert close(ours.forward_head(features), ours(x))
    assert ours.num_features == reference.num_features
    assert ours.num_classes == reference.num_classes
    assert ours.num_prefix_tokens == reference.num_prefix_tokens


def test_distilled_forward_head_returns_both_heads_in_training_like_timm():
    ours, reference = twins("deit_tiny_distilled_patch16_224")
    ours.train()
    reference.train()
    reference.set_distilled_training(True)
    ours.set_distilled_training(True)
    features = torch.randn(2, 6, 192)
    with torch.no_grad():
        assert close(ours.forward_head(features), reference.forward_head(features))


@pytest.mark.parametrize("name", sorted(TWINS))
@pytest.mark.parametrize("classes", [0, 7])
def test_reset_classifier_matches_timm(name, classes):
    ours, reference = twins(name)
    ours.reset_classifier(classes)
    reference.reset_classifier(classes)
    ours_heads, ref_heads = ours.get_classifier(), reference.get_classifier()
    if not isinstance(ref_heads, tuple):
        ours_heads, ref_heads = (ours_heads,), (ref_heads,)
    assert [sum(p.numel() for p in h.parameters()) for h in ours_heads] == [
        sum(p.numel() for p in h.parameters()) for h in ref_heads
    ]
    for ours_head, ref_head in zip(ours_heads, ref_heads, strict=True):
        ours_head.load_state_dict(ref_head.state_dict())  # fresh draws differ; shapes must not
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert close(ours(x), reference(x))
    assert ours.num_classes == classes == reference.num_classes
    assert ours.pretrained_cfg["num_classes"] == classes


HEADLESS = {  # how the distilled DeiT loses its heads, on timm's model and on ours
    "num_classes=0 at build": None,
    "reset_classifier(0)": (0,),
    "reset_classifier(0, '')": (0, ""),
}


def _headless_distilled(how: str):
    if HEADLESS[how] is None:
        name = "deit_tiny_distilled_patch16_224"
        kwargs = {**TWINS[name], "num_classes": 0}
        reference = redraw_(timm.create_model(name, pretrained=False, **kwargs)).eval()
        built = vitgraph.create_model("deit_ti_distilled", num_classes=0, depth=2, img_size=32)
        built.load_state_dict(reference.state_dict())  # the same keys: no head weights
        return (vitgraph.from_timm(reference).eval(), built.eval()), reference
    ours, reference = twins("deit_tiny_distilled_patch16_224")
    ours.reset_classifier(*HEADLESS[how])
    reference.reset_classifier(*HEADLESS[how])
    return (ours,), reference


@pytest.mark.parametrize("how", list(HEADLESS))
def test_a_headless_distilled_deit_returns_what_timms_returns(how):
    """timm's VisionTransformerDistilled keeps reading its two tokens headless (its
    reset_classifier ignores global_pool): forward gives their mean, forward_head too,
    and in distilled training the pair."""
    models, reference = _headless_distilled(how)
    x = torch.randn(2, 3, 32, 32)
    for ours in models:
        with torch.no_grad():
            features = reference.forward_features(x)
            assert torch.equal(ours.forward_features(x), features)
            assert torch.equal(ours(x), reference(x))
            assert ours(x).shape == (2, 192)
            assert torch.equal(ours.forward_head(features), reference.forward_head(features))
            assert torch.equal(
                ours.forward_head(features, pre_logits=True),
                reference.forward_head(features, pre_logits=True),
            )
            for model in (ours, reference):
                model.train().set_distilled_training(True)
            pair, expected = ours.forward_head(features), reference.forward_head(features)
            assert isinstance(pair, tuple) and len(pair) == 2
            assert all(torch.equal(a, b) for a, b in zip(pair, expected, strict=True))
            for model in (ours, reference):
                model.eval().set_distilled_training(False)
        assert ours.num_classes == reference.num_classes == 0
        assert ours.num_features == ours.head_hidden_size == reference.num_features


def test_distilled_get_classifier_is_both_heads():
    ours, _ = twins("deit_tiny_distilled_patch16_224")
    head, head_dist = ours.get_classifier()
    assert head is ours.head and head_dist is ours.head_dist


def test_no_weight_decay_gives_timms_parameter_groups():
    from timm.optim import param_groups_weight_decay

    for name in TWINS:
        ours, reference = twins(name)
        groups = []
        for model in (ours, reference):
            named = {id(p): n for n, p in model.named_parameters()}
            found = param_groups_weight_decay(
                model, 0.05, no_weight_decay_list=(model.no_weight_decay())
            )
            groups.append(
                {g["weight_decay"]: sorted(named[id(p)] for p in g["params"]) for g in found}
            )
        assert groups[0] == groups[1]
        assert {"pos_embed", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= (
            ours.no_weight_decay()
        )


def test_no_weight_decay_names_tokens_tables_norms_and_layer_scale():
    graph = vitgraph.load(
        "deit_ti_distilled", overrides={"depth": 1, "image_size": 32, "blocks.layer_scale": 1e-5}
    )
    names = graph.build().no_weight_decay()
    assert {
        "cls_token",
        "dist_token",
        "pos_embed",
        "norm.weight",
        "norm.bias",
        "blocks.0.ls1.gamma",
        "blocks.0.ls2.gamma",
        "head.bias",
    } <= names
    assert "blocks.0.attn.qkv.weight" not in names and "head.weight" not in names


def test_pretrained_cfg_feeds_timms_data_config():
    from timm.data import resolve_data_config

    model = vitgraph.load("deit_ti", overrides={"depth": 1, "image_size": 48}).build()
    config = resolve_data_config({}, model=model)
    data = model.vitgraph_graph.source.document.data
    assert config["input_size"] == (3, 48, 48)
    assert config["mean"] == tuple(data.mean) and config["std"] == tuple(data.std)
    assert config["crop_pct"] == data.crop_pct
    assert config["interpolation"] == data.interpolation
    assert model.pretrained_cfg["classifier"] == "head"
    assert model.pretrained_cfg["first_conv"] == "patch_embed.proj"


@pytest.mark.parametrize("spec", ["vit_s_16", "deit_ti_distilled", "simplevit_s_16"])
def test_grad_checkpointing_gives_the_same_logits_and_gradients(spec):
    overrides = {"depth": 3, "image_size": 32}
    if spec.startswith("vit"):
        overrides |= {"drop_path_rate": 0.2, "dropout": 0.1}  # RNG must replay in recompute
    model = vitgraph.load(spec, overrides=overrides).build().train()
    x = torch.randn(2, 3, 32, 32)

    def run():
        return outputs_and_grads(model, x)

    plain_out, plain_grads = run()
    model.set_grad_checkpointing(True)
    assert model.grad_checkpointing
    ckpt_out, ckpt_grads = run()
    assert (plain_out - ckpt_out).abs().max().item() <= 1e-6
    assert max((plain_grads[n] - ckpt_grads[n]).abs().max().item() for n in plain_grads) <= 1e-6
    model.set_grad_checkpointing(False)
    assert (run()[0] - plain_out).abs().max().item() == 0


def test_grad_checkpointing_runs_each_encoder_layer_under_checkpoint(monkeypatch):
    calls = checkpoint_calls(monkeypatch)
    model = vitgraph.load("vit_ti_16", overrides={"depth": 3, "image_size": 32}).build()
    model.set_grad_checkpointing(True)
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert len(calls) == 3
    model.forward_features(torch.randn(1, 3, 32, 32)).sum().backward()
    assert len(calls) == 6


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("vit_s_16", "vit_small_patch16_224.augreg_in21k_ft_in1k"),
        ("deit_s_distilled", "deit_small_distilled_patch16_224.fb_in1k"),
    ],
)
def test_pretrained_cfg_declares_timms_preprocessing(ours, theirs):
    from timm.models import get_pretrained_cfg

    expected = get_pretrained_cfg(theirs).to_dict()
    cfg = vitgraph.load(ours).build(device="meta").pretrained_cfg
    for key in (
        "input_size",
        "mean",
        "std",
        "crop_pct",
        "interpolation",
        "num_classes",
        "first_conv",
        "classifier",
    ):
        assert cfg[key] == expected[key], key


def test_deep_copy_keeps_the_api_as_timms_ema_needs():
    from timm.utils import ModelEmaV3

    model = vitgraph.load("deit_ti_distilled", overrides={"depth": 1, "image_size": 32}).build()
    model.reset_classifier(5)
    model.set_grad_checkpointing(True)
    ema = ModelEmaV3(model, decay=0.9).module
    assert ema.vitgraph_graph is model.vitgraph_graph and ema.grad_checkpointing
    assert ema.num_classes == 5 and ema.get_classifier()[1].out_features == 5
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ema.eval()(x), model.eval()(x))
        assert torch.equal(ema.forward_features(x), model.forward_features(x))


def test_reset_classifier_refuses_a_new_pooling_by_pointing_to_a_graph_edit():
    model = vitgraph.load("vit_ti_16", overrides={"depth": 1, "image_size": 32}).build()
    with pytest.raises(NotImplementedError, match="edit the spec"):
        model.reset_classifier(10, global_pool="avg")


def saved_for_backward(model, x) -> int:
    """Bytes of activations autograd keeps for the backward pass (weights excluded)."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    skip = {p.untyped_storage().data_ptr() for p in model.parameters()}
    skip.add(x.untyped_storage().data_ptr())
    return sum(n for ptr, n in storages.items() if ptr not in skip)


def test_grad_checkpointing_keeps_as_few_activations_as_timms():
    reference = timm.create_model(
        "vit_small_patch16_224", pretrained=False, depth=4, img_size=64
    ).train()
    ours = vitgraph.from_timm(reference).train()
    x = torch.randn(4, 3, 64, 64)
    full = saved_for_backward(ours, x)
    assert full == saved_for_backward(reference, x)
    ours.set_grad_checkpointing(True)
    reference.set_grad_checkpointing(True)
    kept = saved_for_backward(ours, x)
    assert kept == saved_for_backward(reference, x)
    assert kept < full / 5


def test_torchscript_is_refused_in_one_message_that_names_torch_export():
    """timm's test_model_forward_torchscript cannot pass: the blocks use Python that
    TorchScript cannot compile (variadic tuples, optional caches). ``torch.jit.script``
    says so before compiling anything; torch.export is the path."""
    from vitgraph.model.features import features_only

    model = vitgraph.load("vit_ti_16", overrides={"depth": 1, "image_size": 32}).build().eval()
    for scripted in (model, features_only(model)):
        with pytest.raises(NotImplementedError) as refused:
            torch.jit.script(scripted)
        first, hint = str(refused.value).splitlines()
        assert (
            first == "torch.jit.script(vit_ti_16): TorchScript is not supported for vitgraph models"
        )
        assert "torch.export.export(model, (x,))" in hint and "vitgraph export" in hint
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(model, (x,)).module()
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))
