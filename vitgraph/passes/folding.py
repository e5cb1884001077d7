"""The arithmetic of folding per-channel affine maps into a ``nn.Linear`` or ``nn.Conv``.

An eval-mode BatchNorm is ``y = a * x + b`` per channel (``a = γ / sqrt(σ² + ε)``,
``b = β - a μ``); a LayerScale is ``y = γ * x``. When such a map reads the output of an
affine map ``W x + c``, the pair is one affine map ``(a W) x + (a c + b)``; when it feeds
one, ``W (a x + b) + c = (W a) x + (W b + c)``. These functions rewrite the weights in
place (under ``no_grad``) and check every shape they rely on, raising ``FoldError`` when a
block's declaration does not fit the module it built.
"""

from __future__ import annotations

import torch
from torch import nn

#: the maps a fold may rewrite: an output channel is a row of the weight
AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class FoldError(ValueError):
    """A block's fold declaration does not fit its module (a bug in the block, named)."""


def batchnorm_affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of an eval-mode BatchNorm: ``norm(x) == a * x + b`` per channel."""
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm):
        raise FoldError(f"expected a BatchNorm, found {type(norm).__name__}")
    if norm.running_mean is None or norm.running_var is None:
        raise FoldError("a BatchNorm without running statistics normalises by the batch")
    scale = torch.rsqrt(norm.running_var.double() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    shift = -norm.running_mean.double() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.double()
    return scale, shift


def _check_affine(module: nn.Module) -> None:
    if not isinstance(module, AFFINE):
        raise FoldError(f"expected a Linear or Conv, found {type(module).__name__}")


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)  # an AFFINE module, checked by the caller
    return weight


def _rows(module: nn.Module, rows: tuple[int, int] | None) -> slice:
    outputs = _weight(module).shape[0]
    start, stop = rows if rows is not None else (0, outputs)
    if not 0 <= start < stop <= outputs:
        raise FoldError(f"rows {start}:{stop} outside the {outputs} outputs")
    return slice(start, stop)


def _ensure_bias(module: nn.Module) -> torch.Tensor:
    if module.bias is None:
        module.bias = nn.Parameter(_weight(module).new_zeros(_weight(module).shape[0]))
    bias = module.bias
    assert isinstance(bias, torch.Tensor)
    return bias


@torch.no_grad()
def scale_outputs(
    module: nn.Module,
    scale: torch.Tensor,
    shift: torch.Tensor | None = None,
    rows: tuple[int, int] | None = None,
) -> None:
    """Make ``module`` compute ``scale * module(x) + shift`` on its output ``rows``
    (channel i of the scale is output row ``start + i``); a 0-d scale scales them all."""
    _check_affine(module)
    where = _rows(module, rows)
    count = where.stop - where.start
    scale = scale.double().flatten() if scale.ndim else scale.double().expand(count)
    if scale.numel() != count or (shift is not None and shift.numel() != count):
        raise FoldError(
            f"a {scale.numel()}-channel scale cannot fold into {count} output rows "
            f"of a {type(module).__name__}"
        )
    weight = _weight(module)
    view = (-1,) + (1,) * (weight.ndim - 1)
    weight[where] = (weight[where].double() * scale.view(view)).to(weight.dtype)
    if module.bias is not None or shift is not None:
        bias = _ensure_bias(module)
        new = bias[where].double() * scale
        if shift is not None:
            new = new + shift.double()
        bias[where] = new.to(bias.dtype)


@torch.no_grad()
def scale_inputs(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """Make a ``nn.Linear`` compute ``module(scale * x + shift)`` (its input channels)."""
    if not isinstance(module, nn.Linear):  # a conv's zero padding would see the shift
        raise FoldError(f"a norm before a {type(module).__name__} does not fold (only Linear)")
    if scale.numel() != module.in_features:
        raise FoldError(f"a {scale.numel()}-channel norm before {module.in_features} inputs")
    weight = module.weight.double()
    bias = _ensure_bias(module)
    bias.copy_((bias.double() + weight @ shift.double()).to(bias.dtype))
    module.weight.copy_((weight * scale.double()[None, :]).to(module.weight.dtype))


def get(root: nn.Module, path: str) -> nn.Module:
    return root if path == "" else root.get_submodule(path)


def put(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace the submodule at ``path`` (not the root: the caller replaces that); a child
    of an ``nn.Sequential`` that becomes an identity is removed from the sequence."""
    parent_path, _, name = path.rpartition(".")
    parent = get(root, parent_path)
    if isinstance(module, nn.Identity) and isinstance(parent, nn.Sequential):
        del parent._modules[name]
    else:
        setattr(parent, name, module)


def fuse_linears(linears: list[nn.Linear]) -> nn.Linear:
    """One ``nn.Linear`` whose output is the concatenation of ``linears``' outputs."""
    first = linears[0]
    if any(not isinstance(m, nn.Linear) or m.in_features != first.in_features for m in linears):
        raise FoldError("only Linears of one input width fuse into one matmul")
    weight = first.weight
    fused = nn.Linear(
        first.in_features,
        sum(m.out_features for m in linears),
        bias=any(m.bias is not None for m in linears),
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        fused.weight.copy_(torch.cat([m.weight for m in linears]))
        if fused.bias is not None:
            fused.bias.copy_(
                torch.cat(
                    [
                        m.bias if m.bias is not None else weight.new_zeros(m.out_features)
                        for m in linears
                    ]
                )
            )
    return fused
