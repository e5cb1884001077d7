"""Weight initialisation as each family's reference does it, declared per block kind.

A block's ``build`` already draws the tensors it owns the way the reference does (the
position table ~ TN(0.02), the class token ~ N(``init_std``), the head per its ``init``
field, LeViT's zero BatchNorm on residual outputs). What a block leaves to PyTorch's
defaults and the reference re-draws afterwards (most references end their constructor
with one ``model.apply(_init_weights)``; LeViT's does not) is declared here as a *scheme*
per kind.

A kind declares its scheme with a ``weight_init`` ClassVar on its params class (a name in
``vitgraph.vocabulary.INIT_SCHEMES``); a kind without one keeps what ``build`` drew. A kind
shared by families whose references disagree (``patch_embed``: PyTorch's default conv in
timm's ViT, fan-out normal in Twins, TN(0.02) in HF's PVT) declares the most common rule,
and a spec names the exception in its top-level ``init:`` mapping (kind -> scheme), which
wins over the declaration.

Schemes act by module type, like the references' ``_init_weights``, on the node's own
submodule only; ``trunc_normal_`` is cut at ±2 absolute, as timm's and PyTorch's are.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vitgraph.block import Block
from vitgraph.ir import Node

Scheme = Callable[[Any], None]  # the node's module (or, see _TENSOR_SCHEMES, its parameter)

_BN = nn.BatchNorm1d | nn.BatchNorm2d


def _trunc_normal_linear(module: nn.Module) -> None:
    """timm's ``init_weights_vit_timm`` (ViT, DeiT, CaiT, Swin, TNT, CrossViT) and the
    official T2T-ViT, DeepViT, CeiT, LV-ViT (``tlt``), CPVT and vit-pytorch's CCT
    ``_init_weights``: Linear weights ~ TN(0, 0.02), zero bias; convs and norms keep
    PyTorch's defaults."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _trunc_normal_all(module: nn.Module | nn.Parameter) -> None:
    """HF transformers' ``PvtPreTrainedModel`` / ``CvtPreTrainedModel._init_weights``:
    Linear *and* Conv2d weights ~ TN(0, initializer_range = 0.02), zero bias; LayerNorm
    and BatchNorm weight 1, bias 0; a node that is a bare tensor (the class token, which
    timm-style blocks draw ~ N(1e-6)) ~ TN(0, 0.02) too."""
    if isinstance(module, nn.Parameter):
        nn.init.trunc_normal_(module, std=0.02)
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm | _BN) and layer.weight is not None:
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _fan_out_normal_(conv: nn.Conv2d) -> None:
    """N(0, sqrt(2 / fan_out)) with fan_out = k_h * k_w * out / groups (timm's rule, which
    divides by the groups; torch's kaiming_normal_ does not)."""
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv_fan_out(module: nn.Module) -> None:
    """timm's ``Twins._init_weights`` (after the official Twins code): Linear ~ TN(0, 0.02)
    with zero bias, Conv2d ~ N(0, sqrt(2 / fan_out)) with zero bias (the patch
    embeddings, PEG's depthwise conv, the sub-sampling convs of global attention)."""
    _trunc_normal_linear(module)
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            _fan_out_normal_(layer)


def _bn_zero_last(module: nn.Module) -> None:
    """timm's ``byobnet._init_weights`` (BoTNet, ``zero_init_last=True``): Conv2d ~
    N(0, sqrt(2 / fan_out)), Linear ~ N(0, 0.01) with zero bias, BatchNorm 1 and 0; then
    each residual block zeroes the BatchNorm weight after its last conv (``conv3_1x1.bn``;
    Goyal et al. 2017, so every block starts as the identity) and its self-attention
    redraws qkv ~ TN(0, fan_in^-0.5) and the relative tables ~ TN(0, head_dim^-0.5)
    (``BottleneckAttn.reset_parameters``)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            _fan_out_normal_(layer)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, _BN):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)
    for layer in module.modules():  # timm's module names (blocks/bottleneck.py keeps them)
        last = getattr(layer, "conv3_1x1", None)
        if last is not None and isinstance(getattr(last, "bn", None), _BN):
            nn.init.zeros_(last.bn.weight)
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "pos_embed"):
            qkv = attention.qkv
            nn.init.trunc_normal_(qkv.weight, std=qkv.weight.shape[1] ** -0.5)
            for table in (attention.pos_embed.height_rel, attention.pos_embed.width_rel):
                nn.init.trunc_normal_(table, std=attention.scale)


def _kaiming_fan_out(module: nn.Module) -> None:
    """torchvision's ResNet constructor (VT keeps the ResNet it modifies, §4): Conv2d ~
    kaiming_normal_(mode="fan_out", nonlinearity="relu") = N(0, sqrt(2 / (k_h k_w out)))
    (groups not divided out), BatchNorm/GroupNorm 1 and 0; Linear and Conv1d keep
    PyTorch's defaults."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(layer, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


def _torch_default(module: nn.Module) -> None:
    """PyTorch's own defaults (``reset_parameters`` of every layer: kaiming-uniform Linear
    and conv weights), undoing what ``build`` drew: timm's PiT re-draws only its
    LayerNorms, so its head keeps nn.Linear's default; so does torchvision's ResNet fc."""
    for layer in module.modules():
        reset = getattr(layer, "reset_parameters", None)
        if callable(reset):
            reset()


def _lecun_normal_(weight: torch.Tensor) -> None:
    """flax's ``lecun_normal``: TN(0, sqrt(1 / fan_in) / .8796) cut at ±2 std (the factor
    is the std of a unit normal cut at ±2, so the drawn std is sqrt(1 / fan_in))."""
    fan_in = weight[0].numel()
    std = (1.0 / fan_in) ** 0.5 / 0.87962566103423978
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _lecun_normal(module: nn.Module) -> None:
    """big_vision's ViT: the patch embedding (flax ``nn.Conv``) and the pre-logits layer
    (``nn.Dense``) keep flax's default kernel init, ``lecun_normal``, and zero biases."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            _lecun_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _xavier(module: nn.Module, bias_std: float) -> None:
    for name, layer in module.named_modules():
        if not isinstance(layer, nn.Linear):
            continue
        if name.endswith("qkv"):  # big_vision's q, k and v are separate (D, D) kernels
            for chunk in layer.weight.detach().chunk(3):
                nn.init.xavier_uniform_(chunk)
        else:
            nn.init.xavier_uniform_(layer.weight)
        if layer.bias is not None and bias_std:
            nn.init.normal_(layer.bias, std=bias_std)
        elif layer.bias is not None:
            nn.init.zeros_(layer.bias)


def _xavier_uniform(module: nn.Module) -> None:
    """big_vision's ViT attention (``MultiHeadDotProductAttention(kernel_init=
    xavier_uniform())``): every kernel xavier-uniform, a fused qkv per q/k/v chunk; zero
    biases."""
    _xavier(module, 0.0)


def _xavier_uniform_normal_bias(module: nn.Module) -> None:
    """big_vision's ViT ``MlpBlock``: xavier-uniform kernels, biases ~ N(0, 1e-6)."""
    _xavier(module, 1e-6)


def _uniform_fan_avg_02(module: nn.Module, gain: float = 0.2) -> None:
    """tensor2tensor's default initializer ``uniform_unit_scaling`` (utils/optimize.py:
    variance scaling, fan_avg, uniform) at its image hparams' gain 0.2: every weight of
    two or more dims ~ U(±sqrt(3·gain / fan_avg)), fan_avg = (fan_in + fan_out) / 2 times
    the kernel's window; biases zero; 1-D weights (norms) kept. A module's ``stacked``
    mapping (parameter path -> n) names fused projections that t2t holds as n kernels."""
    stacked: Mapping[str, int] = getattr(module, "stacked", {})
    with torch.no_grad():
        for path, p in module.named_parameters():
            if p.dim() == 1:
                if path.rsplit(".", 1)[-1] == "bias":
                    p.zero_()
                continue
            out, fan_in = p.shape[0] // stacked.get(path, 1), p.shape[1]
            window = math.prod(p.shape[2:])
            p.uniform_(-1.0, 1.0).mul_(math.sqrt(3 * gain / ((out + fan_in) * window / 2)))


def _keep(module: nn.Module) -> None:
    """What ``build`` drew (PyTorch's defaults unless the block drew its own)."""


SCHEMES: dict[str, Scheme] = {
    "trunc_normal_linear": _trunc_normal_linear,
    "trunc_normal_all": _trunc_normal_all,
    "conv_fan_out": _conv_fan_out,
    "bn_zero_last": _bn_zero_last,
    "kaiming_fan_out": _kaiming_fan_out,
    "torch_default": _torch_default,
    "lecun_normal": _lecun_normal,
    "xavier_uniform": _xavier_uniform,
    "xavier_uniform_normal_bias": _xavier_uniform_normal_bias,
    "uniform_fan_avg_0.2": _uniform_fan_avg_02,
    "keep": _keep,
}

#: schemes that also re-draw a node that is a bare parameter
_TENSOR_SCHEMES = {_trunc_normal_all}


def scheme_of(block: Block, overrides: Mapping[str, str] | None = None) -> str:
    """The scheme of a block's params: the spec's ``init:`` entry for its kind, else the
    kind's ``weight_init`` declaration, else ``keep``."""
    if overrides and block.kind in overrides:
        return overrides[block.kind]
    declared = type(block).weight_init
    return declared if isinstance(declared, str) else "keep"


def initialize(
    model: nn.Module, nodes: Sequence[Node], overrides: Mapping[str, str] | None = None
) -> None:
    """Apply each node's scheme to the submodule at its id. ``overrides``: the spec's
    ``init:`` mapping. A node built as a tensor (``TensorOp``) is handed its parameter,
    which only the schemes that say so re-draw (``build`` drew it per the block's fields);
    functions and Identity own nothing and are skipped."""
    for node in nodes:
        scheme = SCHEMES[scheme_of(node.params, overrides)]
        if scheme is _keep:
            continue
        try:
            target: nn.Module | nn.Parameter = model.get_submodule(node.id)
        except AttributeError:
            if scheme not in _TENSOR_SCHEMES:
                continue
            try:
                target = model.get_parameter(node.id)
            except AttributeError:
                continue
        scheme(target)
