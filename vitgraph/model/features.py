"""``features_only`` models (timm's ``create_model(..., features_only=True)``): the
model's intermediates at ``out_indices`` as ``(B, C, H, W)`` maps, computed by an fx
graph cut from the model (the head and the units after the last tap are left out, so
they hold no parameters), with timm's ``feature_info`` of the taps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import fx

from vitgraph.model.intermediates import (
    FeatureInfo,
    feature_info,
    intermediates_graph,
    refuse_torchscript,
    signature,
    take_indices,
    units_of,
)
from vitgraph.model.layout import graph_of


class FeatureTaps(fx.GraphModule):
    """A model returning a list of feature maps, one per tap (timm's features-only
    models: ``feature_info``, ``output_fmt``, ``pretrained_cfg``)."""

    output_fmt = "NCHW"
    feature_info: FeatureInfo
    spec_name: str = ""
    variant: str | None = None
    _cfg: dict[str, Any]

    def __prepare_scriptable__(self) -> FeatureTaps:
        return refuse_torchscript(self)  # raises

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return dict(self._cfg)

    @property
    def default_cfg(self) -> dict[str, Any]:
        return dict(self._cfg)


def default_out_indices(model: fx.GraphModule) -> tuple[int, ...]:
    """timm's defaults: every stage of a hierarchical model, the last three blocks of a
    plain one (its ``out_indices=3`` of ViT, CaiT, TNT)."""
    units = units_of(model)
    spec = graph_of(model)
    plain = len({signature(spec.type_of(u)) for u in units}) <= 1
    count = len(units) if not plain else min(3, len(units))
    return tuple(range(len(units) - count, len(units)))


def features_only(
    model: fx.GraphModule, out_indices: int | Sequence[int] | None = None
) -> FeatureTaps:
    """The features-only model of ``model`` (which it shares its parameters with)."""
    units = units_of(model)
    if not units:
        raise NotImplementedError(
            f"{graph_of(model).name}: features_only needs repeated units on a spatial grid; "
            "this model has none"
        )
    wanted = default_out_indices(model) if out_indices is None else out_indices
    taken, _ = take_indices(len(units), wanted)
    graph = intermediates_graph(model, tuple(taken), False, "NCHW", True)
    cfg = dict(getattr(model, "pretrained_cfg", {}))
    infos = feature_info(model)
    taps = FeatureTaps(model, graph, class_name="FeatureTaps")
    taps.feature_info = FeatureInfo([infos[i] for i in taken], taken)
    taps._cfg = {**cfg, "num_classes": 0, "classifier": ""}
    taps.spec_name = getattr(model, "spec_name", "")
    taps.variant = getattr(model, "variant", None)
    return taps
