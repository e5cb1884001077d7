"""The option audit (issue #22): every constructor argument of every reference class a
converter accepts is in ``vitgraph.interop.options``'s table, and every example there
converts to a twin computing the reference's function (eval and train logits, gradients,
BatchNorm statistics; weights re-drawn) or is refused by a SpecError naming the option
and the model."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, redraw_
from tests.interop.parity import compare, hf_logits, hf_state_map, timm_state_map
from vitgraph import SpecError
from vitgraph.interop.options import tables
from vitgraph.interop.timm import model_name

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

TABLES = tables()

#: the small configuration each class's examples override
BASES: dict[str, dict[str, Any]] = {
    "timm.models.vision_transformer.VisionTransformer": dict(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10
    ),
    "timm.models.deit.VisionTransformerDistilled": dict(
        img_size=32, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10
    ),
    "timm.models.cait.Cait": dict(
        img_size=32,
        patch_size=16,
        embed_dim=32,
        depth=2,
        num_heads=2,
        depth_token_only=1,
        num_classes=10,
    ),
    "timm.models.twins.Twins": dict(
        img_size=64,
        patch_size=4,
        embed_dims=(8, 16, 24, 32),
        num_heads=(1, 2, 2, 4),
        mlp_ratios=(2, 2, 2, 2),
        depths=(2, 2, 2, 2),
        sr_ratios=(4, 2, 1, 1),
        wss=(4, 4, 2, 2),
        num_classes=10,
    ),
    "timm.models.swin_transformer.SwinTransformer": dict(
        img_size=64,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=10,
        drop_path_rate=0.0,
    ),
    "timm.models.swin_transformer_v2.SwinTransformerV2": dict(
        img_size=64,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(1, 2),
        window_size=4,
        num_classes=10,
        drop_path_rate=0.0,
    ),
    "timm.models.eva.Eva": dict(
        img_size=56,
        patch_size=14,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=10,
        mlp_ratio=4 * 2 / 3,
        swiglu_mlp=True,
        use_rot_pos_emb=True,
        ref_feat_shape=(6, 6),
    ),
    "timm.models.vision_transformer_relpos.VisionTransformerRelPos": dict(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=10,
    ),
    "timm.models.tnt.TNT": dict(
        img_size=32,
        patch_size=16,
        embed_dim=32,
        inner_dim=8,
        depth=2,
        num_heads_inner=2,
        num_heads_outer=2,
        num_classes=10,
    ),
    "timm.models.crossvit.CrossVit": dict(
        img_size=48,
        patch_size=(8, 16),
        embed_dim=(16, 32),
        depth=((1, 1, 0), (1, 1, 0)),
        num_heads=(2, 2),
        mlp_ratio=(2.0, 2.0, 4.0),
        num_classes=10,
    ),
    "timm.models.levit.Levit": dict(
        img_size=64,
        embed_dim=(32, 48),
        key_dim=8,
        depth=(1, 1),
        num_heads=(2, 3),
        num_classes=10,
    ),
    "timm.models.levit.LevitDistilled": dict(
        img_size=64,
        embed_dim=(32, 48),
        key_dim=8,
        depth=(1, 1),
        num_heads=(2, 3),
        num_classes=10,
    ),
    "timm.models.pit.PoolingVisionTransformer": dict(
        img_size=64,
        patch_size=16,
        stride=8,
        base_dims=(8, 8, 8),
        depth=(1, 1, 1),
        heads=(1, 2, 4),
        num_classes=10,
    ),
}


def _import(path: str) -> Any:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError:  # a class path: module.Class.attribute
        return getattr(_import(module), name)


def _resolve(value: Any) -> Any:
    """``"@module.Name"`` strings become that object, inside tuples and dicts too."""
    if isinstance(value, str) and value.startswith("@"):
        return _import(value[1:])
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(_resolve(v) for v in value)
    return value


#: ByobNet's base: a tiered stem, two bottlenecks, two bottleneck-attention blocks
_BYOB = timm.models.byobnet
BYOBNET_BASE = dict(
    cfg=_BYOB.ByoModelCfg(
        blocks=(
            _BYOB.ByoBlockCfg(type="bottle", d=2, c=32, s=1, br=0.25),
            _BYOB.ByoBlockCfg(type="self_attn", d=2, c=64, s=2, br=0.25),
        ),
        stem_chs=16,
        stem_type="tiered",
        stem_pool="maxpool",
        fixed_input_size=True,
        self_attn_layer="bottleneck",
        self_attn_kwargs={},
    ),
    img_size=64,
    num_classes=10,
)
for _path in (
    "timm.models.byobnet.ByobNet",
    "timm.models.byobnet.ByoModelCfg",
    "timm.models.byobnet.ByoBlockCfg",
    "timm.models.byobnet.BottleneckBlock",
    "timm.models.byobnet.SelfAttnBlock",
    "timm.layers.bottleneck_attn.BottleneckAttn",
):
    BASES[_path] = BYOBNET_BASE


BASES["transformers.PvtConfig"] = dict(
    image_size=64,
    hidden_sizes=[8, 16, 24, 32],
    num_attention_heads=[1, 2, 2, 4],
    depths=[1, 1, 1, 1],
    sequence_reduction_ratios=[4, 2, 1, 1],
    mlp_ratios=[2, 2, 2, 2],
    num_labels=10,
)
BASES["transformers.CvtConfig"] = dict(
    embed_dim=[16, 32, 48],
    num_heads=[1, 2, 3],
    depth=[1, 2, 3],
    drop_path_rate=[0.0, 0.0, 0.0],
    num_labels=10,
)
#: the model class each config builds
MODELS = {
    "transformers.PvtConfig": "transformers.PvtForImageClassification",
    "transformers.CvtConfig": "transformers.CvtForImageClassification",
    # its examples run in tests/blocks/test_sequence.py (ids in, the start-id shift)
    "transformers.ImageGPTConfig": "transformers.ImageGPTForCausalImageModeling",
    # its examples run in tests/interop/test_hf_detr.py (a detector: logits and boxes)
    "transformers.DetrConfig": "transformers.DetrForObjectDetection",
    # its examples run in tests/interop/test_hf_deformable_detr.py
    "transformers.DeformableDetrConfig": "transformers.DeformableDetrForObjectDetection",
}


def build(path: str, example: dict[str, Any]) -> torch.nn.Module:
    """The reference of one example: the base configuration with the example's arguments
    (or the registered timm model the example names). A ByobNet example's ``"@bottle"``
    and ``"@self_attn"`` entries replace fields of the base's blocks of that type."""
    kwargs = _resolve(dict(example))
    name = kwargs.pop("@name", None)
    torch.manual_seed(0)
    if name is not None:
        return timm.create_model(name, pretrained=False, **kwargs)
    base = dict(BASES[path])
    changes = {kind: kwargs.pop(f"@{kind}", None) for kind in ("bottle", "self_attn")}
    if any(changes.values()):
        blocks = tuple(
            dataclasses.replace(b, **(changes[b.type] or {})) for b in base["cfg"].blocks
        )
        base["cfg"] = dataclasses.replace(base["cfg"], blocks=blocks)
    if base is BYOBNET_BASE or "cfg" in base:
        return _BYOB.ByobNet(**{**base, **kwargs})
    if path in MODELS:
        model = _import(MODELS[path])(_import(path)(**{**base, **kwargs}))
        return model.to(kwargs["dtype"]) if "dtype" in kwargs else model
    return _import(path)(**{**base, **kwargs})


def convert(path: str, reference: torch.nn.Module) -> torch.nn.Module:
    return vitgraph.from_hf(reference) if path in MODELS else vitgraph.from_timm(reference)


def drop_path_rates(model: torch.nn.Module) -> list[float]:
    """The distinct rates of the drop-path modules (a reference may call one module on
    both branches where the twin has two)."""
    rates = []
    for module in model.modules():
        if "DropPath" in type(module).__name__:
            rates.append(float(getattr(module, "drop_prob", getattr(module, "rate", 0.0))))
    return sorted({round(r, 6) for r in rates if r})


def arguments(path: str) -> set[str]:
    """The constructor arguments (or config fields) of a reference class today."""
    cls = _import(path)
    if dataclasses.is_dataclass(cls):
        return {f.name for f in dataclasses.fields(cls)}
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters.values()
        named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        if named - {"self"}:
            return named - {"self"}
    raise AssertionError(f"{path} takes no named arguments")


def _cases(which: str) -> list[Any]:
    cases = []
    for path, table in TABLES.items():
        if path not in BASES:
            continue
        for option, entry in table.items():
            for index, example in enumerate(getattr(entry, which)):
                short = path.rsplit(".", 1)[1]
                cases.append(pytest.param(path, option, example, id=f"{short}-{option}-{index}"))
    return cases


@pytest.mark.parametrize("path", sorted(TABLES))
def test_every_constructor_argument_of_the_reference_is_in_the_table(path):
    assert arguments(path) == set(TABLES[path])


@pytest.mark.parametrize("path", sorted(TABLES))
def test_every_option_has_an_example_of_what_it_honours_or_refuses(path):
    for option, entry in TABLES[path].items():
        assert entry.honoured or entry.refused, option
        assert not entry.refused or entry.refuse, f"{option}: no refused example"
        assert entry.equal or entry.refuse, f"{option}: no example"


@pytest.mark.parametrize(("path", "option", "example"), _cases("equal"))
def test_honoured_option_converts_to_the_same_function(path, option, example):
    example = dict(example)
    backward = example.pop("@no_backward", None) is None  # the reference's own fails
    eval_only = example.pop("@eval_only", None) is not None  # masks drawn otherwise
    reference = redraw_(build(path, example)).eval()
    ours = convert(path, reference)
    shape = ours.pretrained_cfg["input_size"]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    x = x.to(next(reference.parameters()).dtype)
    if path in MODELS:
        state_map, logits = hf_state_map(reference), hf_logits
    else:
        state_map, logits = timm_state_map(reference), (lambda out: out)
    if eval_only:
        with torch.no_grad():
            assert_same_logits(ours, _Logits(reference), x)
        assert drop_path_rates(ours) == pytest.approx(drop_path_rates(reference))
        return
    problems = compare(ours, reference, state_map, x, backward=backward, logits=logits)
    assert problems == []


@pytest.mark.parametrize(("path", "option", "example"), _cases("refuse"))
def test_refused_option_is_named_in_the_error(path, option, example):
    reference = build(path, example)
    with pytest.raises(SpecError) as error:
        convert(path, reference)
    message = str(error.value)
    name = type(reference).__name__ if path in MODELS else model_name(reference)
    assert option in message and name in message, message


class _Logits(torch.nn.Module):
    """An HF model returning a plain logits tensor."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return hf_logits(self.model(x))


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is faster than two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: the transformers model class each audited config belongs to
CONFIG_OF = {model.rsplit(".", 1)[1]: config for config, model in MODELS.items()}
#: a second model class of one config (its head differs, its options do not)
CONFIG_OF["ImageGPTForImageClassification"] = "transformers.ImageGPTConfig"


def test_every_class_a_converter_accepts_has_an_audit_table():
    from vitgraph.interop import hf as hf_interop
    from vitgraph.interop import timm as timm_interop

    timm_interop.load_converters()
    hf_interop.load_converters()
    audited = {path.rsplit(".", 1)[1] for path in TABLES}
    assert sorted(set(timm_interop._CONVERTERS) - audited) == []
    assert sorted(n for n in hf_interop._CONVERTERS if CONFIG_OF.get(n) not in TABLES) == []


def test_a_refusal_finds_its_entry_and_issue_in_the_class_table_or_its_parts():
    from vitgraph.interop.options import option_of

    assert option_of("VisionTransformer", "attn_layer=AttentionRope").issue == 23  # type: ignore[union-attr]
    assert option_of("SwinTransformer", "always_partition=True").issue == 20  # type: ignore[union-attr]
    # ByobNet's options live in the ByoModelCfg its entrypoints pass
    byo = TABLES["timm.models.byobnet.ByoModelCfg"]
    assert option_of("ByobNet", "stem_pool=AvgPool2d(2)") is byo["stem_pool"]
    assert option_of("ByobNet", "no_such_option=1") is None
