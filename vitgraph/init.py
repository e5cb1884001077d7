"""Weight initialisation as timm does it, declared per block kind.

A block's ``build`` already draws the tensors it owns the way the reference does (the
position table ~ TN(0.02), the class token ~ N(1e-6), the head per its ``init`` field).
What a block leaves to PyTorch's defaults and timm re-draws is declared here as a
*scheme* per kind: timm's ``init_weights_vit_timm`` gives every ``nn.Linear`` of the
attention and MLP a truncated normal of std 0.02 and a zero bias, and leaves the patch
projection (a conv) and the norms at PyTorch's defaults.

A new block kind declares its scheme with ``declare_init("kind", "scheme")`` or a
``weight_init`` ClassVar on its params class; a kind without one keeps what ``build``
drew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

Scheme = Callable[[nn.Module], None]


def _trunc_normal_linear(module: nn.Module) -> None:
    """timm's ``init_weights_vit_timm``: Linear weights ~ TN(0, 0.02) cut at ±2, zero bias."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _keep(module: nn.Module) -> None:
    """What ``build`` drew (PyTorch's defaults for convs and norms)."""


SCHEMES: dict[str, Scheme] = {"trunc_normal_linear": _trunc_normal_linear, "keep": _keep}

#: block kind -> scheme name
KIND_SCHEMES: dict[str, str] = {"mhsa": "trunc_normal_linear", "mlp": "trunc_normal_linear"}


def declare_init(kind: str, scheme: str) -> None:
    """Declare the init scheme of a block kind (for families added later)."""
    if scheme not in SCHEMES:
        raise KeyError(f"unknown init scheme '{scheme}' (known: {', '.join(SCHEMES)})")
    KIND_SCHEMES[kind] = scheme


def scheme_of(block: Any) -> str:
    declared = getattr(type(block), "weight_init", None)
    if isinstance(declared, str):
        return declared
    return KIND_SCHEMES.get(block.kind, "keep")


def initialize(model: nn.Module, nodes: list[Any]) -> None:
    """Apply each node's scheme to the submodule at its id (nodes built as functions or
    Identity own no module and are skipped)."""
    for node in nodes:
        scheme = SCHEMES[scheme_of(node.params)]
        if scheme is _keep:
            continue
        try:
            module = model.get_submodule(node.id)
        except AttributeError:
            continue
        scheme(module)
