"""timm's model API on a compiled model: ``forward_features``, ``forward_head``,
``reset_classifier``, ``get_classifier``, ``no_weight_decay``, ``set_grad_checkpointing``
and ``pretrained_cfg``, with timm's names and meanings, and ``VitgraphModel``, the
``GraphModule`` subclass that carries them.

Nothing here knows a spec or a kind by name: where the API cuts a model comes from
``vitgraph.model.layout`` (the blocks' hooks), how it runs the pieces from
``vitgraph.model.segments``.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import fx, nn

from vitgraph.ir import Validated
from vitgraph.model import intermediates, pruning, resize
from vitgraph.model.layout import FEATURE_LAYOUTS, cached_layout, graph_of
from vitgraph.model.segments import (
    FEATURES,
    FORWARD,
    HEAD,
    HEAD_FEATURES,
    feature_types,
    get_plan,
    widths,
)
from vitgraph.shapes import Image, Tokens, Vector


class VitgraphModel(fx.GraphModule):
    """A compiled spec: an ordinary ``nn.Module`` with timm-style helpers."""

    spec_name: str = ""
    variant: str | None = None
    vitgraph_graph: Validated  # the validated spec it was built from (a snapshot)

    #: plain attributes a deepcopy keeps (GraphModule's copies only the graph's modules);
    #: timm's EMA deep-copies the model
    _kept_attrs = (
        "spec_name",
        "variant",
        "vitgraph_graph",
        "vitgraph_carry",
        "grad_checkpointing",
        "_vitgraph_num_classes",
        "vitgraph_optimized",
        "vitgraph_cut",
        "vitgraph_ref_windows",
    )

    def __deepcopy__(self, memo: dict[int, Any]) -> VitgraphModel:
        copied = super().__deepcopy__(memo)
        for attr in self._kept_attrs:
            if attr in self.__dict__:  # the spec is shared: it is never changed after load
                copied.__dict__[attr] = self.__dict__[attr]
        set_grad_checkpointing(copied, bool(copied.__dict__.get("grad_checkpointing")))
        return copied  # type: ignore[return-value]

    def __prepare_scriptable__(self) -> VitgraphModel:
        return intermediates.refuse_torchscript(self)  # raises

    def train(self, mode: bool = True) -> VitgraphModel:
        """``nn.Module.train``; a model from ``vitgraph.optimize`` refuses training mode
        (its BatchNorms are folded and its dropout gone)."""
        if mode and self.__dict__.get("vitgraph_optimized") is not None:
            raise RuntimeError(
                "this model was optimized for inference (vitgraph.optimize: BatchNorms "
                "folded, dropout removed): train the model it was made from"
            )
        return super().train(mode)

    # timm's model API; the logic lives in the functions below (read from the spec)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return forward_features(self, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        return forward_head(self, x, pre_logits)

    def get_classifier(self) -> nn.Module | tuple[nn.Module, ...]:
        return get_classifier(self)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        reset_classifier(self, num_classes, global_pool)

    def no_weight_decay(self) -> set[str]:
        return no_weight_decay(self)

    def group_matcher(self, coarse: bool = False) -> Any:
        """timm's layer grouping (``vitgraph.model.groups``): a parameter name → its depth
        ordinal, for layer-wise learning-rate decay."""
        from vitgraph.model.groups import group_matcher

        return group_matcher(self, coarse)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        set_grad_checkpointing(self, enable)

    # timm's current contract (vitgraph.model.intermediates)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        *,
        return_prefix_tokens: bool = False,
        output_dict: bool = False,
    ) -> Any:
        return intermediates.forward_intermediates(
            self,
            x,
            indices,
            norm,
            stop_early,
            output_fmt,
            intermediates_only,
            return_prefix_tokens,
            output_dict,
        )

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        taken = pruning.prune_intermediate_layers(self, indices, prune_norm, prune_head)
        set_grad_checkpointing(self, _checkpointing(self))  # the forward of the cut model
        return taken

    def set_input_size(
        self,
        img_size: int | tuple[int, int] | None = None,
        patch_size: int | tuple[int, int] | None = None,
        window_size: int | tuple[int, int] | None = None,
        window_ratio: int | None = None,
        always_partition: bool | None = None,
    ) -> None:
        """timm's ``set_input_size``: rebuilt in place at ``img_size``, the weights carried
        and the tables resampled as timm's (``vitgraph.model.resize``)."""
        set_input_size(self, img_size, patch_size, window_size, window_ratio, always_partition)

    @property
    def feature_info(self) -> intermediates.FeatureInfo:
        return intermediates.feature_info(self)

    @property
    def head_hidden_size(self) -> int:
        return head_hidden_size(self)

    @property
    def output_fmt(self) -> str:
        return output_fmt(self)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return pretrained_cfg(self)

    default_cfg = pretrained_cfg

    @property
    def num_classes(self) -> int:
        return num_classes(self)

    @property
    def num_features(self) -> int:
        return num_features(self)

    @property
    def num_prefix_tokens(self) -> int:
        return num_prefix_tokens(self)

    def set_distilled_training(self, enable: bool = True) -> None:
        """timm's switch: with ``False`` a distilled model returns the mean of its heads in
        training too (default ``True``: training returns both logits)."""
        for module in self.modules():
            if hasattr(module, "distilled_training"):
                setattr(module, "distilled_training", enable)  # noqa: B010 - any module


# ----------------------------------------------------------------------- the API


def forward_features(model: fx.GraphModule, x: torch.Tensor) -> torch.Tensor:
    """The tokens the pooling receives (after the final norm), as timm returns them."""
    return get_plan(model, FEATURES, _checkpointing(model)).run(model, x)


def forward_head(model: fx.GraphModule, x: torch.Tensor, pre_logits: bool = False) -> Any:
    """Pooling and classifier(s) on ``forward_features``'s output; ``pre_logits`` stops
    before the classifier (several classifiers, as DeiT's: the mean of what they see)."""
    return get_plan(model, HEAD_FEATURES if pre_logits else HEAD, _checkpointing(model)).run(
        model, x
    )


def _checkpointing(model: nn.Module) -> bool:
    return bool(getattr(model, "grad_checkpointing", False))


def checkpointed_forward(model: fx.GraphModule, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    if _headless(model):
        return headless_forward(model, x)
    return get_plan(model, FORWARD, True).run(model, x, *args, **kwargs)


def headless_forward(model: fx.GraphModule, x: torch.Tensor) -> Any:
    """``forward`` once classifiers of different widths were removed (CrossViT reset to 0
    classes): the graph's own merge of their logits has nothing to average, so the model
    returns the pre-logits features, as timm's."""
    return forward_head(model, forward_features(model, x), pre_logits=True)


def _headless(model: fx.GraphModule) -> bool:
    return model.__dict__.get("_vitgraph_num_classes") == 0 and len(set(widths(model))) > 1


def set_grad_checkpointing(model: fx.GraphModule, enable: bool = True) -> None:
    """Activation checkpointing per repeat instance (one encoder layer, a stage's block),
    as timm's ``checkpoint_seq``: each unit's activations are recomputed in the backward
    pass."""
    model.__dict__["grad_checkpointing"] = enable
    if enable:
        model.__dict__["forward"] = types.MethodType(checkpointed_forward, model)
    elif _headless(model):
        model.__dict__["forward"] = types.MethodType(headless_forward, model)
    else:
        model.__dict__.pop("forward", None)


def classifier_ids(model: fx.GraphModule) -> list[str]:
    return list(cached_layout(model).classifiers)


def get_classifier(model: fx.GraphModule) -> nn.Module | tuple[nn.Module, ...]:
    """The classifier module (a tuple of them for a distilled model, as timm)."""
    found = tuple(model.get_submodule(name) for name in classifier_ids(model))
    if not found:
        raise NotImplementedError("this model has no classifier head")
    return found[0] if len(found) == 1 else found


def reset_classifier(
    model: fx.GraphModule, num_classes: int, global_pool: str | None = None
) -> None:
    """New, freshly initialised classifier(s) for ``num_classes`` classes; 0 removes them
    (``forward`` then returns the pre-logits features), as timm. ``reset_classifier(0,
    '')`` removes the pooling too: ``forward`` then returns the unpooled features, laid out
    as ``forward_features``, except where a head keeps its pooling (DeiT's distilled head
    reads the class and distillation tokens: ``''`` resets as ``None``, as timm's
    ``VisionTransformerDistilled``). Another pooling is a graph edit, not a reset: any
    other ``global_pool`` is refused."""
    if global_pool == "" and _keeps_pooling(model):
        global_pool = None
    if global_pool == "" and num_classes == 0:
        pruning.remove_head(model)
        set_grad_checkpointing(model, _checkpointing(model))
        return
    if global_pool is not None:
        raise NotImplementedError(
            f"reset_classifier(global_pool={global_pool!r}): the pooling is a node of the "
            "graph; edit the spec (replace the pooling node) and rebuild with weights_from="
        )
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    graph = graph_of(model)
    by_id = {n.id: n for n in graph.nodes}
    for node_id in classifier_ids(model):
        node = by_id[node_id]
        rule = type(node.params).classifier_rule()
        assert rule is not None  # the layout lists only kinds with a classifier rule
        in_types = [graph.type_of(name) for name in node.inputs]
        old = model.get_submodule(node_id)
        new = rule.reset(node.params, in_types, num_classes, old)
        param = next(old.parameters(), None)
        if param is not None:
            new = new.to(device=param.device, dtype=param.dtype)
        new.train(old.training)
        *parents, leaf = node_id.split(".")
        owner = model.get_submodule(".".join(parents)) if parents else model
        setattr(owner, leaf, new)
    model.__dict__["_vitgraph_num_classes"] = num_classes
    set_grad_checkpointing(model, _checkpointing(model))  # headless forward, or back


def _keeps_pooling(model: fx.GraphModule) -> bool:
    by_id = {n.id: n for n in graph_of(model).nodes}
    rules = (type(by_id[i].params).classifier_rule() for i in classifier_ids(model))
    return any(rule is not None and rule.keeps_pooling for rule in rules)


def set_input_size(
    model: fx.GraphModule,
    img_size: int | tuple[int, int] | None = None,
    patch_size: int | tuple[int, int] | None = None,
    window_size: int | tuple[int, int] | None = None,
    window_ratio: int | None = None,
    always_partition: bool | None = None,
) -> None:
    """The model rebuilt at the new size (``resize.rebuild``), its reset head reset again,
    every weight carried with the tables resized, then adopted in place."""
    new = resize.rebuild(model, img_size, patch_size, window_size, window_ratio, always_partition)
    classes = model.__dict__.get("_vitgraph_num_classes")
    if classes is not None:  # the head was reset: as timm's, it stays so
        reset_classifier(new, classes)
    resize.carry(model, new)
    checkpointing = _checkpointing(model)
    resize.adopt(model, new)
    set_grad_checkpointing(model, checkpointing)


def num_classes(model: fx.GraphModule) -> int:
    if "_vitgraph_num_classes" in model.__dict__:
        return model.__dict__["_vitgraph_num_classes"]
    graph = graph_of(model)
    ids = classifier_ids(model)
    if not ids:
        return 0
    out = graph.type_of(ids[0])
    return out.dim if isinstance(out, Vector) else 0


def num_features(model: fx.GraphModule) -> int:
    """Width of the pre-logits features (timm's ``num_features``)."""
    found = widths(model)
    if found:  # several widths (CrossViT): their concatenation, as timm's
        return sum(found) if len(set(found)) > 1 else found[0]
    out = feature_types(model)[0]
    return out.dim if isinstance(out, Vector | Tokens) else 0


def head_hidden_size(model: fx.GraphModule) -> int:
    """Width of what ``forward_head(pre_logits=True)`` returns (timm's
    ``head_hidden_size``): the classifiers' input (their mean for a distilled pair, their
    concatenation for CrossViT's branches), else the features' width."""
    found = widths(model)
    if found:
        return sum(found) if len(set(found)) > 1 else found[0]
    graph = graph_of(model)
    out = graph.type_of(graph.outputs[0])
    if isinstance(out, Vector):  # a headless model: the pooled features
        return out.dim
    return num_features(model)


def output_fmt(model: fx.GraphModule) -> str:
    """timm's ``output_fmt`` of ``forward_features``: NHWC maps where the features are
    laid out so (Swin), NCHW for maps, NLC for tokens."""
    fmt = cached_layout(model).formats[0]
    if fmt is not None and fmt is FEATURE_LAYOUTS["nhwc"]:
        return "NHWC"
    return "NCHW" if isinstance(feature_types(model)[0], Image) else "NLC"


def num_prefix_tokens(model: fx.GraphModule) -> int:
    out = feature_types(model)[0]
    return out.prefix if isinstance(out, Tokens) else 0


def no_weight_decay(model: fx.GraphModule) -> set[str]:
    """Parameter names timm's optimizer factory puts in the no-decay group: what each
    block declares (``Block.decay_exempt``: position tables, prefix tokens, norms,
    LayerScale, relative-position tables), every bias and every other 1-D parameter."""
    graph = graph_of(model)
    exempt = []
    for node in graph.nodes:
        declared = type(node.params).decay_exempt()
        if declared is True:
            exempt.append(node.id)
        elif declared:
            exempt.extend(f"{node.id}.{leaf}" for leaf in sorted(declared))
    names = set()
    for name, param in model.named_parameters():
        if (
            param.ndim <= 1
            or name.endswith(".bias")
            or any(name == n or name.startswith(n + ".") for n in exempt)
        ):
            names.add(name)
    return names


def _linear_in(model: fx.GraphModule, node_id: str) -> str:
    """The classifier module's own name when it is a Linear, else that of its last
    Linear (a BatchNorm-then-Linear head)."""
    try:
        module = model.get_submodule(node_id)
    except AttributeError:
        return node_id
    inner = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return node_id if not inner or inner[-1] == "" else f"{node_id}.{inner[-1]}"


def pretrained_cfg(model: fx.GraphModule) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` keys, from the spec's ``data:`` section and its input."""
    graph = graph_of(model)
    data = graph.source.document.data
    first_conv = next(
        (name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)), ""
    )
    # timm names the Linear of a classifier (LeViT's ``head.linear``)
    names = [_linear_in(model, node_id) for node_id in classifier_ids(model)]
    features = feature_types(model)[0]
    pool_size: tuple[int, ...] = ()
    if isinstance(features, Tokens) and features.grid is not None:
        pool_size = tuple(features.grid)
    elif isinstance(features, Image):
        pool_size = (features.height, features.width)
    return {
        "architecture": graph.variant or graph.name,
        "input_size": tuple(graph.input_shape[-3:]),
        # the tables are sized for this input unless one resizes itself per input
        # (a dynamic learned_pos: timm's dynamic_img_size)
        "fixed_input_size": not any(getattr(n.params, "dynamic", False) for n in graph.nodes),
        "pool_size": pool_size,
        "interpolation": data.interpolation,
        "mean": tuple(data.mean),
        "std": tuple(data.std),
        "crop_pct": data.crop_pct,
        "crop_mode": "center",
        "num_classes": num_classes(model),
        "first_conv": first_conv,
        "classifier": names[0] if len(names) == 1 else tuple(names),
    }
