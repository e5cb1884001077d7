"""The reference implementations the family table (tests/families.py) compares against:
how each is built at full size, how a reduced copy is built next to ours with the same
weights (``Parity``), and the key renames of the transplants.

Every builder imports its reference lazily and skips when it is not installed (timm,
transformers, vit-pytorch, tlt) or not given (the official CeiT and T2T-ViT code is not
pip-installable and never committed: ``VITGRAPH_CEIT_OFFICIAL`` names a local copy of
``ceit_model.py``, ``T2T_VIT_OFFICIAL`` a checkout of yitu-opensource/T2T-ViT,
``DEEPVIT_OFFICIAL`` one of zhoudaquan/dvit_repo, ``REFINER_VIT_OFFICIAL`` one of
zhoudaquan/Refiner_ViT). The
order of the random draws inside each builder (reference, re-draw, ours, then the input)
is the one the parity numbers were first taken with.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from torch import nn

import vitgraph
from tests.helpers import max_logit_diff, redraw_
from vitgraph.interop.official import OFFICIAL, cct_key, simplevit_key, t2t_key


@dataclass
class Parity:
    """Our model and the reference with the same weights, and the input to compare them on
    (logits within the DESIGN.md tolerance, fp32, eval mode)."""

    ours: nn.Module
    reference: nn.Module
    x: torch.Tensor
    #: ours' state_dict keys as a function of the reference's (None: not compared)
    keys: Callable[[set[str]], set[str]] | None = None
    #: ours and the reference hold as many state_dict entries
    same_key_count: bool = False
    #: both models hold exactly this many parameters (full-size copies)
    params: int | None = None
    #: a family's own follow-up check, run after the logits compare
    then: Callable[[Parity], None] | None = None


class Logits(nn.Module):
    """A HuggingFace model returning its plain logits tensor (HF returns an output
    object; the parity helper compares tensors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def rename(key: str, renames: list[tuple[str, str]], first_only: bool = False) -> str:
    for pattern, replacement in renames:
        key, hits = re.subn(pattern, replacement, key)
        if hits and first_only:
            return key
    return key


# -- timm ---------------------------------------------------------------------------------


def timm_model(name: str, **kwargs) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False, **kwargs)


def timm_on_meta(name: str, **kwargs) -> Callable[[], nn.Module]:
    """The full-size timm model, built on the meta device (for counting)."""

    def build() -> nn.Module:
        with torch.device("meta"):
            return timm_model(name, **kwargs)

    return build


def timm_full(
    name: str,
    batch: int,
    size: tuple[int, int] | Callable[[nn.Module], tuple[int, int]],
    *,
    threads: int | None = None,
    eval_first: bool = True,
) -> Parity:
    """The full-size timm model, re-drawn, and ``from_timm`` of it."""
    if threads is not None:
        torch.set_num_threads(threads)
    model = timm_model(name)
    reference = redraw_(model.eval()) if eval_first else redraw_(model)
    return _from_timm(reference, batch, size(reference) if callable(size) else size)


def timm_counter(name: str) -> tuple[nn.Module, torch.Tensor, bool]:
    """The full-size timm model on the meta device and a meta image, for FlopCounterMode."""
    return timm_on_meta(name)(), torch.empty(1, 3, 224, 224, device="meta"), False


def timm_counter_at_own_size(name: str, **kwargs) -> tuple[nn.Module, torch.Tensor, bool]:
    """As ``timm_counter``, at the model's own resolution (DINOv2's 518, SigLIP's 256)."""
    model = timm_on_meta(name, **kwargs)()
    return model, torch.empty(1, 3, *model.patch_embed.img_size, device="meta"), False


def _from_timm(reference: nn.Module, batch: int, size, **extra) -> Parity:
    ours = vitgraph.from_timm(reference)
    return Parity(ours, reference, torch.randn(batch, 3, *size), **extra)


# ViT / DeiT: each config a distinct block structure (class token, distillation, /32 patch,
# non-224 input, mean pooling with fc_norm, LayerScale + no_embed_class)
VIT_CONFIGS = {
    "vit_tiny_patch16_224": {"depth": 2, "img_size": 64},
    "vit_small_patch16_224": {"depth": 2, "img_size": 64},
    "vit_base_patch32_224": {"depth": 2, "img_size": 96},
    "vit_small_patch16_384": {"depth": 2, "img_size": 80},
    "deit_tiny_distilled_patch16_224": {"depth": 2, "img_size": 64},
    "vit_small_patch16_224_avg": {"depth": 2, "img_size": 64},
    "deit3_small_patch16_224": {"depth": 2, "img_size": 64},
    "vit_tiny_patch16_224_nocls": {"depth": 2, "img_size": 48},
}
VIT_KWARGS = {
    "vit_small_patch16_224_avg": (
        "vit_small_patch16_224",
        {"global_pool": "avg", "class_token": False, "fc_norm": True},
    ),
    "vit_tiny_patch16_224_nocls": (
        "vit_tiny_patch16_224",
        {"global_pool": "avg", "class_token": False, "fc_norm": False, "num_classes": 17},
    ),
}


def vit_reduced(name: str) -> nn.Module:
    base, extra = VIT_KWARGS.get(name, (name, {}))
    return timm_model(base, **VIT_CONFIGS[name], **extra).eval()


def vit_parity(name: str) -> Parity:
    reference = redraw_(vit_reduced(name))
    return _from_timm(reference, 2, reference.patch_embed.img_size, keys=lambda keys: keys)


# The modern timm ViTs (#23): each shipped variant's reduced copy (two blocks, a small
# image), built from the spec with the reduced timm model's re-drawn weights loaded under
# their own names (the spec's ids are timm's), and from_timm's twin of the same model
MODERN_SIZES = {14: 28, 16: 32, 32: 64}


def modern_reduced(name: str, **kwargs) -> nn.Module:
    patch = timm_on_meta(name)().patch_embed.patch_size[0]
    size = MODERN_SIZES[patch]
    return timm_model(name, depth=2, img_size=size, num_classes=10, **kwargs).eval()


def modern_spec_parity(variant: str, name: str) -> Parity:
    """The spec's variant at two blocks, a small image and ten classes, holding the timm
    model's re-drawn weights key for key."""
    reference = redraw_(modern_reduced(name))
    size = reference.patch_embed.img_size
    overrides = {"depth": 2, "image_size": size[0], "classes": 10}
    ours = vitgraph.load(variant, overrides=overrides).build()
    ours.load_state_dict(reference.state_dict())
    return Parity(ours.eval(), reference, torch.randn(2, 3, *size), keys=lambda keys: keys)


def modern_twin_parity(name: str) -> Parity:
    """from_timm's twin of the reduced timm model."""
    reference = redraw_(modern_reduced(name))
    return _from_timm(reference, 2, reference.patch_embed.img_size, keys=lambda keys: keys)


CAIT_HEADS = {"xxs": 4, "xs": 6, "s": 8, "m": 16}


def cait_parity(name: str) -> Parity:
    """Two talking-heads layers and the two class-attention layers, at the model's own
    resolution and head count, 8 channels per head."""
    heads = CAIT_HEADS[name.split("_")[1].rstrip("0123456789")]
    model = timm_model(name, depth=2, embed_dim=8 * heads, num_heads=heads)
    reference = redraw_(model.eval())
    size = int(name.rsplit("_", 1)[1])
    return _from_timm(
        reference,
        1,
        (size, size),
        keys=lambda keys: {
            k.replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma") for k in keys
        },
    )


TWINS_HEADS = {
    "svt_small": (2, 4, 8, 16),
    "svt_base": (3, 6, 12, 24),
    "svt_large": (4, 8, 16, 32),
    "pcpvt_small": (1, 2, 5, 8),
    "pcpvt_base": (1, 2, 5, 8),
    "pcpvt_large": (1, 2, 5, 8),
}


def twins_parity(name: str) -> Parity:
    """Two layers per stage (one LSA + one GSA for SVT), 8 channels per head, the model's
    own heads, mlp ratios, sr ratios and windows, at 224."""
    heads = TWINS_HEADS[name.removeprefix("twins_")]
    model = timm_model(
        name, depths=(2, 2, 2, 2), embed_dims=tuple(8 * h for h in heads), num_heads=heads
    )
    return _from_timm(redraw_(model.eval()), 1, (224, 224))


def pit_parity(name: str) -> Parity:
    reference = redraw_(timm_model(name, img_size=64, depth=[1, 1, 1]).eval())
    return _from_timm(
        reference,
        2,
        (64, 64),
        keys=lambda keys: (
            keys - {"patch_embed.conv.weight", "patch_embed.conv.bias"}
            | {"patch_embed.proj.weight", "patch_embed.proj.bias"}
        ),
    )


def pit_full(name: str, params: int) -> Parity:
    torch.manual_seed(0)
    reference = redraw_(timm_model(name)).eval()
    return _from_timm(reference, 2, (224, 224), params=params)


def swin_parity(name: str) -> Parity:
    """A small copy of a timm swin_*: its windows, patch and image size, fewer blocks and
    narrower stages, stage 2 deep enough to hold a shifted block; half the image side
    where the windows still divide the grids (Swin-S3 keeps 224 for its 14x14 windows)."""
    small = {"depths": (1, 2, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
    if "window" in name:
        small["img_size"] = 192 if "384" in name else 112
    reference = redraw_(timm_model(name, **small).eval())
    return _from_timm(
        reference,
        1,
        reference.patch_embed.img_size,
        keys=lambda keys: {k.replace("head.fc.", "head.") for k in keys},
    )


#: the reduced image of a timm swinv2_* per window: stage grids the windows divide, the
#: last stages' grids below the window (one window, unshifted: the clamp)
SWINV2_SIZES = {8: 128, 16: 128, 12: 192, 24: 192}


def swinv2_parity(name: str) -> Parity:
    """A small copy of a timm swinv2_*: its windows and pre-training windows, fewer and
    narrower blocks (stage 2 holds a shifted block)."""
    window = timm_on_meta(name)().layers[0].blocks[0].window_size[0]
    small = {"depths": (1, 2, 2, 1), "embed_dim": 32, "num_heads": (1, 2, 4, 8)}
    reference = redraw_(timm_model(name, img_size=SWINV2_SIZES[window], **small).eval())
    return _from_timm(
        reference,
        2,
        reference.patch_embed.img_size,
        keys=lambda keys: {k.replace("head.fc.", "head.") for k in keys},
    )


def tnt_parity(name: str) -> Parity:
    reference = redraw_(timm_model(name, depth=2, img_size=64, drop_path_rate=0.1).eval())
    return _from_timm(reference, 2, (64, 64), same_key_count=True)


def crossvit_parity(name: str) -> Parity:
    """Two multi-scale encoders of one layer per branch, the rest as timm registers it."""
    small = {"depth": [[1, 1, 0]] * 2, "drop_path_rate": 0.1}
    if name == "crossvit_18_240":  # its entry point cannot take `depth` (timm 1.0.31)
        from timm.models.crossvit import CrossVit

        model = CrossVit(
            img_size=240,
            img_scale=(1.0, 224 / 240),
            patch_size=[12, 16],
            embed_dim=[224, 448],
            num_heads=[7, 7],
            mlp_ratio=[3, 3, 1],
            **small,
        )
    else:
        model = timm_model(name, **small)
    reference = redraw_(model.eval())
    return _from_timm(reference, 1, reference.img_size, same_key_count=True)


def levit_parity(name: str) -> Parity:
    reference = redraw_(timm_model(name, depth=(1, 1, 1), img_size=64))
    return _from_timm(reference, 2, (64, 64))


def botnet_parity(name: str) -> Parity:
    reference = redraw_(timm_model(name, img_size=128))
    return _from_timm(reference, 2, (128, 128))


# -- HuggingFace transformers -------------------------------------------------------------


def hf_model(model: str, config: str, **kwargs) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    return getattr(transformers, model)(getattr(transformers, config)(**kwargs))


def hf_on_meta(model: str, config: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        with torch.device("meta"):
            return hf_model(model, config, **kwargs)

    return build


class _Detections(nn.Module):
    """HF's DETR called as vitgraph's: ``(logits, pred_boxes)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(pixel_values=x)
        return out.logits, out.pred_boxes


#: a tiny HF DetrConfig: timm's resnet26 (bottlenecks 2-2-2-2, ResNet-50's widths)
DETR_TINY = dict(
    backbone="resnet26",
    d_model=32,
    encoder_layers=1,
    decoder_layers=2,
    encoder_ffn_dim=64,
    decoder_ffn_dim=64,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    num_queries=5,
    num_labels=3,
)


def deformable_detr_tiny(**changes) -> nn.Module:
    """A tiny HF Deformable DETR: HF's native bottleneck ResNet (16-wide stem, widths
    32-256, one block a stage) tapped at stages 2-4 (without out_features HF builds one
    projected level and three strided extras), d_model 32, one encoder and two decoder
    layers, 5 queries, 3 classes; every parameter and frozen-BN buffer re-drawn."""
    transformers = pytest.importorskip("transformers")
    from tests.helpers import redraw_

    backbone = transformers.ResNetConfig(
        embedding_size=16,
        hidden_sizes=[32, 64, 128, 256],
        depths=[1, 1, 1, 1],
        layer_type="bottleneck",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = dict(
        backbone_config=backbone,
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=5,
        two_stage_num_proposals=5,
        num_labels=3,
    )
    torch.manual_seed(0)
    model = hf_model(
        "DeformableDetrForObjectDetection", "DeformableDetrConfig", **{**config, **changes}
    )
    return redraw_(model).eval()


def detr_parity() -> Parity:
    """A tiny HF DETR on timm's resnet26 (more padding cases: tests/interop/test_hf_detr.py)."""
    pytest.importorskip("timm")
    reference = redraw_(
        hf_model(
            "DetrForObjectDetection",
            "DetrConfig",
            **DETR_TINY,
        ).eval()
    )
    ours = vitgraph.from_hf(reference)
    return Parity(ours, _Detections(reference), torch.randn(2, 3, 64, 64))


def pvt_parity() -> Parity:
    """Every stage structure, deeper stages and other widths than pvt_tiny."""
    from vitgraph.interop.hf_pvt import from_transformers_pvt

    reference = redraw_(
        hf_model(
            "PvtForImageClassification",
            "PvtConfig",
            image_size=64,
            depths=[1, 2, 1, 2],
            hidden_sizes=[32, 64, 160, 256],
            num_labels=10,
        ).eval()
    )
    ours = from_transformers_pvt(reference)
    return Parity(ours, Logits(reference), torch.randn(2, 3, 64, 64))


class ShiftedImageGPT(nn.Module):
    """HF ImageGPT called as vitgraph's generative convention: ids in, per-position
    logits out, position i predicting id i. HF's examples feed ``[start id, x_0 ..
    x_{N-2}]`` (the start id is the last of its vocabulary); ours shifts inside."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(ids[:, :1], self.model.config.vocab_size - 1)
        out = self.model(input_ids=torch.cat([start, ids[:, :-1]], dim=1))
        return out[0] if isinstance(out, tuple) else out.logits  # return_dict=False: a tuple


IGPT_TINY = {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "vocab_size": 17}


def igpt_parity(model: str = "ImageGPTForCausalImageModeling", **options) -> Parity:
    """A tiny HF ImageGPT (palette of 16 + the start id), dropout off, re-drawn weights."""
    config = {**IGPT_TINY, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, **options}
    reference = redraw_(hf_model(model, "ImageGPTConfig", **config).eval())
    ours = vitgraph.from_hf(reference)
    x = torch.randint(0, 16, (2, 64), generator=torch.Generator().manual_seed(0))
    return Parity(ours, ShiftedImageGPT(reference), x, same_key_count=False)


def pvt_full() -> Parity:
    from vitgraph.interop.hf_pvt import from_transformers_pvt

    reference = redraw_(hf_model("PvtForImageClassification", "PvtConfig").eval())
    ours = from_transformers_pvt(reference)
    return Parity(ours, Logits(reference), torch.randn(1, 3, 224, 224))


def cvt_transplant(reference: nn.Module, ours: nn.Module) -> None:
    from vitgraph.interop.hf_cvt import cvt_state_dict  # from_hf's own key map

    mapped = cvt_state_dict(reference.state_dict())
    assert set(mapped) == set(ours.state_dict())
    ours.load_state_dict(mapped)


def cvt_parity() -> Parity:
    # HF indexes its per-stage drop-path list by the stage, so depth[i] must exceed i
    dims, heads, depths = [16, 32, 48], [1, 2, 3], [1, 2, 3]
    reference = redraw_(
        hf_model(
            "CvtForImageClassification",
            "CvtConfig",
            embed_dim=dims,
            num_heads=heads,
            depth=depths,
            num_labels=10,
        )
    )
    ours = vitgraph.build(
        "cvt_13",
        overrides={"image_size": 64, "dims": dims, "heads": heads, "depths": depths, "classes": 10},
    )
    cvt_transplant(reference, ours)
    return Parity(ours, Logits(reference), torch.randn(2, 3, 64, 64))


def cvt_full() -> Parity:
    reference = redraw_(hf_model("CvtForImageClassification", "CvtConfig", num_labels=1000))
    ours = vitgraph.build("cvt_13")
    cvt_transplant(reference, ours)
    return Parity(ours, Logits(reference), torch.randn(2, 3, 224, 224))


# -- vit-pytorch --------------------------------------------------------------------------

# vit-pytorch's keyword arguments for each CCT variant (CCT-L/PxC) and its cct_L factories
CCT_REFERENCE = {
    "cct_2_3x2": ("cct_2", dict(img_size=32, kernel_size=3, n_conv_layers=2, num_classes=10)),
    "cct_7_3x1": ("cct_7", dict(img_size=32, kernel_size=3, n_conv_layers=1, num_classes=10)),
    "cct_7_7x2": ("cct_7", dict(img_size=224, kernel_size=7, n_conv_layers=2, num_classes=102)),
    "cct_14_7x2": ("cct_14", dict(img_size=224, kernel_size=7, n_conv_layers=2)),
}
CCT_POOLING = dict(
    pooling_kernel_size=3, pooling_stride=2, pooling_padding=1, positional_embedding="learnable"
)
CCT_WIDTHS = {  # num_layers, num_heads, mlp_ratio, embedding_dim
    "cct_2": dict(num_layers=2, num_heads=2, mlp_ratio=1, embedding_dim=128),
    "cct_7": dict(num_layers=7, num_heads=4, mlp_ratio=2, embedding_dim=256),
    "cct_14": dict(num_layers=14, num_heads=6, mlp_ratio=3, embedding_dim=384),
}


def cct_reference(variant: str, **changes) -> nn.Module:
    """vit-pytorch's model (through its ``_cct`` helper so depth can be reduced; built on
    CPU: its stochastic-depth schedule calls ``.item()``, which the meta device refuses)."""
    cct = pytest.importorskip("vit_pytorch.cct")
    factory, kwargs = CCT_REFERENCE[variant]
    return cct._cct(**{**CCT_WIDTHS[factory], **kwargs, **CCT_POOLING, **changes})


def cct_parity(variant: str, depth: int, size: int) -> Parity:
    theirs = redraw_(cct_reference(variant, num_layers=depth, img_size=size)).eval()
    ours = vitgraph.load(variant, overrides={"depth": depth, "image_size": size}).build()
    ours.load_state_dict({cct_key(k): v for k, v in theirs.state_dict().items()}, strict=True)
    return Parity(ours, theirs, torch.randn(2, 3, size, size))


def cct_counter() -> tuple[nn.Module, torch.Tensor, bool]:
    return cct_reference("cct_7_3x1").eval(), torch.zeros(1, 3, 32, 32), True


# SimpleViT configured like vit-pytorch's SimpleViT
SIMPLEVIT_LIKE_VIT_PYTORCH = {
    "patch_norm": True,
    "rep_size": False,
    "qkv_bias": False,
    "proj_bias": False,
    "norm_eps": 1e-5,
    "act": "gelu",
    "image_size": 64,
    "dim": 64,
    "depth": 2,
    "heads": 4,
    "classes": 10,
}


def simplevit_parity() -> Parity:
    simple_vit = pytest.importorskip("vit_pytorch.simple_vit")
    reference = redraw_(
        simple_vit.SimpleViT(
            image_size=64,
            patch_size=16,
            num_classes=10,
            dim=64,
            depth=2,
            heads=4,
            mlp_dim=256,
            dim_head=16,
        )
    )
    ours = vitgraph.build("simplevit_s_16", overrides=SIMPLEVIT_LIKE_VIT_PYTORCH)
    state = {simplevit_key(k): v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    return Parity(ours, reference, torch.randn(2, 3, 64, 64))


# -- tlt (the official LV-ViT package) ----------------------------------------------------


def lvvit_module():
    pytest.importorskip("tlt.models.lvvit")
    return sys.modules["tlt.models.lvvit"]  # tlt.models.lvvit is also a function's name


def tlt_lvvit(**kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lvvit_module().LV_ViT(**kwargs)


def tlt_on_meta(**kwargs) -> Callable[[], nn.Module]:
    """An LV_ViT at full size on the meta device; a drop-path list, since tlt's
    ``linspace(...).item()`` fails on meta."""

    def build() -> nn.Module:
        with torch.device("meta"):
            depth = kwargs["depth"]
            return tlt_lvvit(**kwargs, drop_path_rate=[0.0] * depth, drop_path_decay="list").eval()

    return build


#: tlt's lvvit_s and lvvit_m arguments; lv_vit_t is the paper's 8.5M model (dim 240)
LVVIT_TLT = {
    "lv_vit_t": dict(embed_dim=240, depth=12, num_heads=4),
    "lv_vit_s": dict(embed_dim=384, depth=16, num_heads=6),
    "lv_vit_m": dict(embed_dim=512, depth=20, num_heads=8),
}
LVVIT_COMMON = dict(
    patch_size=16, mlp_ratio=3.0, p_emb="4_2", skip_lam=2.0, return_dense=True, mix_token=True
)


def lvvit_counter() -> tuple[nn.Module, torch.Tensor, bool]:
    reference = tlt_on_meta(**LVVIT_COMMON, **LVVIT_TLT["lv_vit_s"])()
    return reference, torch.empty(1, 3, 224, 224, device="meta"), False


def _lvvit_training_outputs_agree(parity: Parity) -> None:
    parity.ours.train()
    parity.reference.train()
    ref_cls, ref_tokens, _ = parity.reference(parity.x)
    diff, allowed = max_logit_diff(parity.ours(parity.x), (ref_cls, ref_tokens))
    assert diff <= allowed


def lvvit_parity() -> Parity:
    """Class logits + 0.5 x max token logits in eval, and both outputs in training."""
    reference = redraw_(
        tlt_lvvit(
            img_size=32,
            patch_size=16,
            embed_dim=48,
            depth=2,
            num_heads=4,
            mlp_ratio=3.0,
            p_emb="4_2",
            skip_lam=2.0,
            return_dense=True,
            mix_token=False,
            num_classes=7,
        )
    )
    ours = vitgraph.build(
        "lvvit",
        overrides={
            "image_size": 32,
            "dim": 48,
            "depth": 2,
            "heads": 4,
            "classes": 7,
            "drop_path_rate": 0.0,
        },
    )
    missing = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    return Parity(ours, reference, torch.randn(3, 3, 32, 32), then=_lvvit_training_outputs_agree)


# -- official code, given by a path -------------------------------------------------------

CEIT_NAMES = {
    "ceit_t": "ceit_tiny_patch16_224",
    "ceit_s": "ceit_small_patch16_224",
    "ceit_b": "ceit_base_patch16_224",
    "ceit_t_384": "ceit_tiny_patch16_384",
    "ceit_s_384": "ceit_small_patch16_384",
}


def ceit_official():
    path = os.environ.get("VITGRAPH_CEIT_OFFICIAL")
    if not path or not os.path.isfile(path):
        pytest.skip("set VITGRAPH_CEIT_OFFICIAL to the official ceit_model.py")
    import timm.models.vision_transformer as vit

    # the official file imports two names timm 1.0 no longer exports
    vit.__dict__.setdefault("default_cfgs", {})
    vit.__dict__.setdefault("_cfg", lambda **kwargs: kwargs)
    spec = importlib.util.spec_from_file_location("ceit_official", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ceit_official", module)
    spec.loader.exec_module(module)
    return module


def ceit_reference(variant: str) -> Callable[[], nn.Module]:
    return lambda: getattr(ceit_official(), CEIT_NAMES[variant])()


def ceit_parity() -> Parity:
    reference = redraw_(ceit_official().ceit_tiny_patch16_224(img_size=64, num_classes=10))
    ours = vitgraph.build("ceit_t", overrides={"image_size": 64, "classes": 10})
    ours.load_state_dict(reference.state_dict())  # same keys: the spec uses official names
    return Parity(ours, reference, torch.randn(2, 3, 64, 64))


def ceit_full(variant: str, params: int) -> Parity:
    reference = redraw_(ceit_reference(variant)())
    ours = vitgraph.build(variant)
    ours.load_state_dict(reference.state_dict())
    size = 384 if variant.endswith("384") else 224
    return Parity(ours, reference, torch.randn(1, 3, size, size), params=params)


def t2t_official(name: str, **kwargs) -> nn.Module:
    root = os.environ.get("T2T_VIT_OFFICIAL")
    if not root:
        pytest.skip("set T2T_VIT_OFFICIAL to a checkout of yitu-opensource/T2T-ViT")
    sys.path.insert(0, root)
    try:
        from models import t2t_vit
    finally:
        sys.path.remove(root)
    return getattr(t2t_vit, name)(**kwargs)


# the official factories' settings with depth 2, built through its T2T_ViT class
T2T_REDUCED = {
    "t2t_vit_7": dict(tokens_type="performer", embed_dim=256, num_heads=4, mlp_ratio=2.0),
    "t2t_vit_t_14": dict(tokens_type="transformer", embed_dim=384, num_heads=6, mlp_ratio=3.0),
}


def t2t_parity(variant: str) -> Parity:
    reference = redraw_(
        t2t_official("T2T_ViT", img_size=64, depth=2, **T2T_REDUCED[variant])
    ).eval()
    ours = vitgraph.load(variant, overrides={"image_size": 64, "depth": 2}).build()
    ours.load_state_dict({t2t_key(k): v for k, v in reference.state_dict().items()}, strict=True)
    return Parity(ours, reference, torch.randn(2, 3, 64, 64))


def official_package(variable: str, repository: str, name: str):
    """The ``models`` package of an official checkout named by the environment variable,
    imported under ``name`` (DeepViT's and Refiner's both call it ``models``; their files
    import timm 1.0's deprecated ``timm.models.layers`` / ``registry`` aliases, which still
    resolve)."""
    root = os.environ.get(variable)
    if not root or not os.path.isfile(os.path.join(root, "models", "__init__.py")):
        pytest.skip(f"set {variable} to a checkout of {repository}")
    if name not in sys.modules:
        folder = os.path.join(root, "models")
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm's deprecation and duplicate-name warnings
            spec.loader.exec_module(module)
    return sys.modules[name]


def deepvit_official():
    return official_package("DEEPVIT_OFFICIAL", "zhoudaquan/dvit_repo", "dvit_official")


def refiner_official():
    return official_package("REFINER_VIT_OFFICIAL", "zhoudaquan/Refiner_ViT", "refiner_official")


def _official_layout_parity(spec: str, reference: nn.Module, ours: nn.Module, size: int) -> Parity:
    """Ours holding the official model's re-drawn weights through the key map ``vitgraph
    convert`` reads its checkpoints with (``vitgraph.interop.official``)."""
    reference = redraw_(reference).eval()
    offers = OFFICIAL[spec].offers(dict(reference.state_dict()))
    assert set(offers) == set(ours.state_dict())
    ours.load_state_dict({k: offer.fetch() for k, offer in offers.items()}, strict=True)
    return Parity(ours.eval(), reference, torch.randn(2, 3, size, size))


#: the official factories' settings at reduced depth (DeepViT-S: plain then re-attention
#: layers, conv stem, transform_scale, scale_adjustment 0.5; 16B: re-attention throughout,
#: plain patch embedding)
DEEPVIT_REDUCED = {
    "deepvit_s": (
        dict(embed_dim=396, depth=[False] * 4, apply_transform=[False] * 2 + [True] * 2),
        dict(use_cnn_embed=True, transform_scale=True, scale_adjustment=0.5),
        {"depth": 4, "reattention_layers": 2},
    ),
    "deepvit_16b": (
        dict(embed_dim=384, depth=[False] * 3, apply_transform=[True] * 3),
        {},
        {"depth": 3, "reattention_layers": 3},
    ),
}


def deepvit_parity(variant: str) -> Parity:
    shape, options, overrides = DEEPVIT_REDUCED[variant]
    official = deepvit_official().deep_vision_transformer
    reference = official.DeepVisionTransformer(
        img_size=64,
        patch_size=16,
        num_heads=12,
        mlp_ratio=3,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        num_classes=10,
        **shape,
        **options,
    )
    ours = vitgraph.load(variant, overrides={**overrides, "image_size": 64, "classes": 10})
    return _official_layout_parity("deepvit", reference, ours.build(), 64)


def refiner_parity() -> Parity:
    """Refiner-ViT-S's settings at four layers (plain, shared, plain, shared)."""
    official = refiner_official().refined_transformer
    reference = official.Refiner_ViT(
        img_size=64,
        patch_size=16,
        embed_dim=384,
        depth=[False, True] * 2,
        apply_transform=[False] * 4,
        num_heads=12,
        mlp_ratio=3,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        share_atten=True,
        head_expand=6,
        num_classes=10,
    )
    ours = vitgraph.load("refiner_vit_s", overrides={"depth": 4, "image_size": 64, "classes": 10})
    return _official_layout_parity("refiner", reference, ours.build(), 64)


#: the official factory of each variant with a full-size parity case
OFFICIAL_FACTORIES = {
    "deepvit_s": (deepvit_official, "deep_vision_transformer", "deepvit_S", "deepvit"),
    "refiner_vit_s": (refiner_official, "refined_transformer", "Refiner_ViT_S", "refiner"),
}


def official_full(variant: str, params: int) -> Parity:
    """The official factory's full-size model, re-drawn, and the variant holding its
    weights through the key map."""
    package, module, factory, spec = OFFICIAL_FACTORIES[variant]
    reference = getattr(getattr(package(), module), factory)()
    parity = _official_layout_parity(spec, reference, vitgraph.build(variant), 224)
    parity.params = params
    return parity
