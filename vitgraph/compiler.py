"""Phase 6, build: a fresh ``torch.fx.GraphModule`` per call.

Each node becomes one ``call_module`` (submodule at the node's own dotted id, so
state_dict keys read like the spec: ``blocks.3.attn.qkv.weight``), one ``call_function``
for parameter-free ops, or a ``get_attr`` + ``call_function`` for tensor-holding blocks
(``cls_token``, ``pos_embed``). Disabled parts (``nn.Identity``) are dropped from the
graph, so ``forward`` is straight-line generated code with no per-node interpretation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch._dynamo
from torch import fx, nn  # paying that at import keeps validate/build timings honest.

from vitgraph import model_api
from vitgraph.registry import FunctionOp, TensorOp
from vitgraph.shapes import TensorType


class VitgraphModel(fx.GraphModule):
    """A compiled spec: an ordinary ``nn.Module`` with timm-style helpers."""

    spec_name: str = ""
    variant: str | None = None

    #: plain attributes a deepcopy keeps (GraphModule's copies only the graph's modules);
    #: timm's EMA deep-copies the model
    _kept_attrs = (
        "spec_name",
        "variant",
        "vitgraph_graph",
        "vitgraph_carry",
        "grad_checkpointing",
        "_vitgraph_num_classes",
    )

    def __deepcopy__(self, memo: dict[int, Any]) -> VitgraphModel:
        copied = super().__deepcopy__(memo)
        for attr in self._kept_attrs:
            if attr in self.__dict__:  # the Graph is shared: it is never changed after load
                copied.__dict__[attr] = self.__dict__[attr]
        model_api.set_grad_checkpointing(copied, bool(copied.__dict__.get("grad_checkpointing")))
        return copied  # type: ignore[return-value]

    # timm's model API; the logic lives in vitgraph.model_api (read from the Graph)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return model_api.forward_features(self, x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> Any:
        return model_api.forward_head(self, x, pre_logits)

    def get_classifier(self) -> nn.Module | tuple[nn.Module, ...]:
        return model_api.get_classifier(self)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        model_api.reset_classifier(self, num_classes, global_pool)

    def no_weight_decay(self) -> set[str]:
        return model_api.no_weight_decay(self)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        model_api.set_grad_checkpointing(self, enable)

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return model_api.pretrained_cfg(self)

    default_cfg = pretrained_cfg

    @property
    def num_classes(self) -> int:
        return model_api.num_classes(self)

    @property
    def num_features(self) -> int:
        return model_api.num_features(self)

    @property
    def num_prefix_tokens(self) -> int:
        return model_api.num_prefix_tokens(self)

    def set_distilled_training(self, enable: bool = True) -> None:
        """timm's switch: with ``False`` a distilled model returns the mean of its heads in
        training too (default ``True``: training returns both logits)."""
        for module in self.modules():
            if hasattr(module, "distilled_training"):
                module.distilled_training = enable


def _container(root: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    """The module that owns ``dotted``'s last component, creating empty parents."""
    *parents, leaf = dotted.split(".")
    owner = root
    for name in parents:
        child = owner._modules.get(name)
        if child is None:
            child = nn.Module()
            owner.add_module(name, child)
        owner = child
    return owner, leaf


def compile_nodes(
    order: Sequence[Any],
    types: dict[str, TensorType],
    outputs: Sequence[str],
    aliases: dict[str, str],
    class_name: str = "VitgraphModel",
) -> VitgraphModel:
    """Build every node's module and wire them into one GraphModule."""
    root = nn.Module()
    graph = fx.Graph()
    env: dict[str, fx.Node] = {"input": graph.placeholder("x")}
    non_persistent: list[str] = []
    for node in order:
        in_types = [types[name] for name in node.inputs]
        made = node.params.build(*in_types)
        args = tuple(env[name] for name in node.inputs)
        if isinstance(made, nn.Identity):
            env[node.id] = args[0]
        elif isinstance(made, nn.Module):
            owner, leaf = _container(root, node.id)
            owner.add_module(leaf, made)
            env[node.id] = graph.call_module(node.id, args)
            env[node.id].meta[model_api.META_ID] = node.id
        elif isinstance(made, TensorOp):
            owner, leaf = _container(root, node.id)
            if isinstance(made.tensor, nn.Parameter):
                owner.register_parameter(leaf, made.tensor)
            else:
                owner.register_buffer(leaf, made.tensor, persistent=made.persistent)
                if not made.persistent:
                    non_persistent.append(node.id)
            tensor = graph.get_attr(node.id)
            tensor.meta[model_api.META_ID] = node.id
            env[node.id] = _named(
                graph.call_function(made.fn, (*args, tensor), made.kwargs), node.id
            )
        elif isinstance(made, FunctionOp):
            env[node.id] = _named(graph.call_function(made.fn, args, made.kwargs), node.id)
        elif callable(made):
            env[node.id] = _named(graph.call_function(made, args), node.id)
        else:  # a block's build() broke its contract: a bug in vitgraph, not in the spec
            raise TypeError(f"{node.kind}.build returned {type(made).__name__}")
    results = [env[aliases.get(name, name)] for name in outputs]
    graph.output(results[0] if len(results) == 1 else tuple(results))
    model = VitgraphModel(root, graph, class_name=class_name)
    for dotted in non_persistent:  # GraphModule re-registers buffers as persistent
        owner, leaf = _container(model, dotted)
        owner.register_buffer(leaf, owner._buffers[leaf], persistent=False)
    return model


def _named(fx_node: fx.Node, node_id: str) -> fx.Node:
    """Name a call_function after its spec node, so ``model.code`` reads like the spec."""
    fx_node.name = fx_node.graph._graph_namespace.create_name(node_id.replace(".", "_"), None)
    fx_node.meta[model_api.META_ID] = node_id  # which spec node it computes (model_api)
    return fx_node


def build_on(device: str | torch.device | None, dtype: torch.dtype | None, make) -> Any:
    """Run ``make()`` with parameters created directly on ``device`` (meta: no memory)."""
    if device is None:
        model = make()
    else:
        with torch.device(device):
            model = make()
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model
