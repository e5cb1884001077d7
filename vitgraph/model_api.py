"""timm's model API on a compiled model: ``forward_features``, ``forward_head``,
``reset_classifier``, ``get_classifier``, ``no_weight_decay``, ``set_grad_checkpointing``
and ``pretrained_cfg``, with timm's names and meanings.

Nothing here knows a spec by name. The roles come from the Graph and from each block's
``family``: the features are the tokens entering each global ``pooling`` block (one
that makes a vector; timm's ``forward_features`` returns the normed tokens; one per
branch for CrossViT), laid out as the family's timm twin lays them out where it differs
(``feature_format``: Swin's NHWC maps, PiT's prefix tokens); the classifiers are the
``head`` blocks that produce class logits; the checkpoint units are the repeat instances
(``blocks.3``) and composite nodes used once. The fx graph is cut at those points into
*segments*, each compiled by fx into a plain function of the model, so every part runs
the same generated code as ``forward`` and follows later changes of a submodule
(``reset_classifier``).
"""

from __future__ import annotations

import operator
import types
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils.checkpoint import checkpoint

from vitgraph.registry import Block
from vitgraph.shapes import TensorType, Tokens, Vector

#: fx node meta key naming the spec node a graph node computes (set by the compiler)
META_ID = "vitgraph_id"

# ----------------------------------------------------------------------- per block kind


@dataclass(frozen=True)
class ClassifierRule:
    """How a classifier kind takes part in the head API."""

    #: a new head module for ``classes`` classes (0: the head passes its features through)
    reset: Callable[[Block, Sequence[TensorType], int, nn.Module], nn.Module]
    #: emits, in ``graph``, what the classifier classifies (its ``pre_logits``); None for
    #: a head that refines another classifier's logits and adds no features of its own
    pre_logits: Callable[[Block, Sequence[fx.Node], fx.Graph], fx.Node] | None


_CLASSIFIERS: dict[str, ClassifierRule] = {}

#: block families whose parameters are never weight-decayed (timm's ``no_weight_decay``)
NO_DECAY_FAMILIES = {"position", "token", "norm"}
#: block kinds whose parameters are never weight-decayed (LayerScale, CaiT §2.1)
NO_DECAY_KINDS = {"layer_scale"}
#: block kind -> names of its own parameters kept out of weight decay: the relative
#: position tables timm's ``no_weight_decay`` lists (Swin's bias table, LeViT's attention
#: biases, TNT's pixel position table)
NO_DECAY_PARAMS: dict[str, set[str]] = {
    "shifted_window_attention": {"relative_position_bias_table"},
    "levit_attention": {"attention_biases"},
    "levit_subsample_attention": {"attention_biases"},
    "tnt_pixel_embed": {"pixel_pos"},
}


def classifier_rule(*kinds: str) -> Callable[[ClassifierRule], ClassifierRule]:
    """Declare how a head kind is reset and where its pre-logits are (for new families)."""

    def declare(rule: ClassifierRule) -> ClassifierRule:
        for kind in kinds:
            _CLASSIFIERS[kind] = rule
        return rule

    return declare


def _reset_linear(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    if classes == 0:
        return nn.Identity()
    made = block.model_copy(update={"classes": classes}).build(*inputs)
    assert isinstance(made, nn.Module)
    return made


def _first_input(block: Block, args: Sequence[fx.Node], graph: fx.Graph) -> fx.Node:
    return args[0]


def take_token(x: torch.Tensor, *, index: int) -> torch.Tensor:
    return x[:, index]


class DistilledPassThrough(nn.Module):
    """A distillation head reset to 0 classes: the mean of the class features and the
    distillation token, as timm's ``reset_classifier(0)`` gives."""

    def __init__(self, index: int | None) -> None:
        super().__init__()
        self.index = index  # None: the second input is the distillation features itself
        self.distilled_training = True

    def forward(self, features: torch.Tensor, tokens: torch.Tensor):
        dist = tokens if self.index is None else tokens[:, self.index]
        if self.training and self.distilled_training:
            return features, dist
        return (features + dist) / 2


def _reset_distill(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    index = int(getattr(block, "index", 1))
    made: nn.Module = (
        DistilledPassThrough(index) if classes == 0 else block.build(Vector(classes), inputs[1])
    )
    made.distilled_training = bool(getattr(old, "distilled_training", True))
    return made


def _distill_pre_logits(block: Block, args: Sequence[fx.Node], graph: fx.Graph) -> fx.Node:
    return graph.call_function(take_token, (args[1],), {"index": int(getattr(block, "index", 1))})


def _reset_bn_distill(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    """LeViT's second head: with 0 classes both heads pass the pooled vector through, so
    timm's ``(x + x_dist) / 2`` is the pooled vector itself."""
    made: nn.Module = (
        DistilledPassThrough(None) if classes == 0 else block.build(Vector(classes), inputs[1])
    )
    made.distilled_training = bool(getattr(old, "distilled_training", True))
    return made


def _second_input(block: Block, args: Sequence[fx.Node], graph: fx.Graph) -> fx.Node:
    return args[1]


classifier_rule("linear_head", "bn_linear_head")(ClassifierRule(_reset_linear, _first_input))
classifier_rule("distill_head")(ClassifierRule(_reset_distill, _distill_pre_logits))
classifier_rule("bn_distill_head")(ClassifierRule(_reset_bn_distill, _second_input))


class ClassLogitsOnly(nn.Module):
    """A token-label head reset to 0 classes: the class head's output (now its features)
    passes through; there are no token logits to add."""

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return logits


def _reset_token_label(
    block: Block, inputs: Sequence[TensorType], classes: int, old: nn.Module
) -> nn.Module:
    """LV-ViT's auxiliary head follows the class head to the new class count (its eval
    output adds the two, so they must agree)."""
    if classes == 0:
        return ClassLogitsOnly()
    made = block.build(Vector(classes), inputs[1])
    assert isinstance(made, nn.Module)
    made.dense_output = bool(getattr(old, "dense_output", False))
    return made


classifier_rule("token_label_head")(ClassifierRule(_reset_token_label, None))


def mean_of(*xs: torch.Tensor) -> torch.Tensor:
    return torch.stack(xs).mean(0)


def cat_of(*xs: torch.Tensor) -> torch.Tensor:
    return torch.cat(xs, dim=1)


@dataclass(frozen=True)
class FeatureFormat:
    """How a family's timm twin lays out ``forward_features``'s tensor, when it differs
    from our tokens: ``out(x, **keywords(tokens_type))`` makes timm's layout from ours,
    ``back`` (same keywords) undoes it before the head, or is None when the head reads
    timm's layout as it is."""

    out: Callable[..., torch.Tensor]
    keywords: Callable[[Tokens], dict[str, Any]]
    back: Callable[..., torch.Tensor] | None = None


#: group kind (a family's stage or layer) -> the layout its timm twin returns
_FORMATS: dict[str, FeatureFormat] = {}


def feature_format(*kinds: str) -> Callable[[FeatureFormat], FeatureFormat]:
    """Declare the features layout of models built from these stage kinds."""

    def declare(fmt: FeatureFormat) -> FeatureFormat:
        for kind in kinds:
            _FORMATS[kind] = fmt
        return fmt

    return declare


def to_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.unflatten(1, grid)


def from_nhwc(x: torch.Tensor, *, grid: tuple[int, int]) -> torch.Tensor:
    return x.flatten(1, 2)


def prefix_only(x: torch.Tensor, *, prefix: int) -> torch.Tensor:
    return x[:, :prefix]


# Swin (timm's output_fmt NHWC): (B, H, W, C) feature maps
feature_format("swin_stage")(FeatureFormat(to_nhwc, lambda t: {"grid": t.grid}, from_nhwc))
# PiT: timm normalises and returns the class (and distillation) tokens only; the heads
# read nothing else
feature_format("pit_stage")(FeatureFormat(prefix_only, lambda t: {"prefix": t.prefix}))


# --------------------------------------------------------------------------- the layout


@dataclass
class Layout:
    """Where the API cuts a model, read from its Graph."""

    features: list[str]  # spec nodes whose outputs forward_features returns (a list if >1)
    classifiers: list[str]  # head nodes producing class logits, in order
    units: dict[str, str]  # spec node id -> its checkpoint unit (innermost repeat instance)
    fx_of: dict[str, fx.Node] = field(repr=False)  # spec node id -> the fx value it computes
    fmt: FeatureFormat | None = None  # how the family's timm twin lays its features out


def graph_of(model: nn.Module) -> Any:
    graph = getattr(model, "vitgraph_graph", None)
    if graph is None:
        raise TypeError("this model was not built by vitgraph (no vitgraph_graph)")
    return graph


def layout(model: fx.GraphModule) -> Layout:
    graph = graph_of(model)
    tagged = {n.meta[META_ID]: n for n in model.graph.nodes if META_ID in n.meta}
    placeholder = next(n for n in model.graph.nodes if n.op == "placeholder")
    fx_of: dict[str, fx.Node] = {"input": placeholder}
    for node in graph.nodes:  # a node built as Identity is its first input
        fx_of[node.id] = tagged.get(node.id) or fx_of[node.inputs[0]]
    features: list[str] = []
    classifiers = []
    for node in graph.nodes:
        family = type(node.params).family
        # a global pooling (to a vector) or a head reads the features; a pooling that
        # keeps tokens (PiT's stage transitions) is inside the trunk
        if (family == "head" and not features) or (
            family == "pooling" and isinstance(graph.type_of(node.id), Vector)
        ):
            if node.inputs[0] not in features and not _after(graph, node.inputs[0], features):
                features.append(node.inputs[0])
        if family == "head" and (
            node.kind in _CLASSIFIERS or "classes" in type(node.params).model_fields
        ):
            classifiers.append(node.id)
    if not features:  # no pooling or head: the whole model is features
        features = [graph._expanded.aliases.get(graph.outputs[0], graph.outputs[0])]
    kinds = {kind for kind, _ in graph.groups.values()}
    fmt = next((f for kind, f in _FORMATS.items() if kind in kinds), None)
    return Layout(features, classifiers, _units(graph), fx_of, fmt)


def _after(graph: Any, node_id: str, features: list[str]) -> bool:
    """Whether ``node_id`` is computed from one of ``features`` (then it is head work)."""
    by_id = {n.id: n for n in graph.nodes}
    stack, seen = [node_id], set()
    while stack:
        current = stack.pop()
        if current in features:
            return True
        if current in seen or current not in by_id:
            continue
        seen.add(current)
        stack.extend(by_id[current].inputs)
    return False


def _units(graph: Any) -> dict[str, str]:
    """Checkpoint units: each instance of a repeat (``blocks.3``) and each composite node
    used once (Twins' ``stage1.first``), innermost first."""
    ids = [n.id for n in graph.nodes]
    instances = set()
    for group, (_, count) in graph.groups.items():
        repeated = any(i == f"{group}.0" or i.startswith(f"{group}.0.") for i in ids)
        instances |= {f"{group}.{i}" for i in range(count)} if repeated else {group}
    units: dict[str, str] = {}
    for node in graph.nodes:
        parts = node.id.split(".")
        for k in range(len(parts), 0, -1):
            prefix = ".".join(parts[:k])
            if prefix in instances:
                units[node.id] = prefix
                break
    return units


#: per model: its Layout and compiled plans (kept out of the module, so deepcopy and
#: state_dict never see them)
_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[Any, Any]] = weakref.WeakKeyDictionary()


def _cache(model: nn.Module) -> dict[Any, Any]:
    if model not in _CACHE:
        _CACHE[model] = {}
    return _CACHE[model]


def _cached_layout(model: fx.GraphModule) -> Layout:
    cache = _cache(model)
    if "layout" not in cache:
        cache["layout"] = layout(model)
    return cache["layout"]


# ------------------------------------------------------------------------ segments


@dataclass
class _Segment:
    fn: Callable[..., tuple[Any, ...]]  # fn(model, *inputs) -> outputs
    inputs: list[fx.Node]
    outputs: list[fx.Node]
    checkpointed: bool


@dataclass
class _Plan:
    """A graph cut into segments; checkpointed segments run under activation
    checkpointing while gradients are enabled."""

    placeholders: list[fx.Node]
    segments: list[_Segment]
    result: Any  # the output node's argument (an fx.Node or a tuple of them)

    def run(self, model: nn.Module, *args: Any) -> Any:
        env: dict[fx.Node, Any] = dict(zip(self.placeholders, args, strict=True))
        for seg in self.segments:
            values = [env[n] for n in seg.inputs]
            if seg.checkpointed and torch.is_grad_enabled():
                outs = checkpoint(seg.fn, model, *values, use_reentrant=False)
            else:
                outs = seg.fn(model, *values)
            env.update(zip(seg.outputs, outs, strict=True))
        return fx.node.map_arg(self.result, lambda n: env[n])


def _compile(graph: fx.Graph, label: str) -> Callable[..., Any]:
    """fx's own code generation with ``self`` as the model, so the function reads the
    model's current submodules at each call (the same code a GraphModule would run).

    The source compiled here is generated by torch.fx from our own fx graph, whose targets
    are registered block modules and functions: no spec text ever reaches it as code."""
    code = graph.python_code(root_module="self")
    namespace = dict(code.globals)
    exec(compile(code.src, f"<vitgraph {label}>", "exec"), namespace)
    return namespace["forward"]


def _plan(graph: fx.Graph, unit_of: Callable[[fx.Node], str | None], label: str) -> _Plan:
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    output = next(n for n in graph.nodes if n.op == "output")
    body = [n for n in graph.nodes if n.op not in ("placeholder", "output")]
    runs: list[tuple[str | None, list[fx.Node]]] = []
    for node in body:
        unit = unit_of(node)
        if runs and runs[-1][0] == unit:
            runs[-1][1].append(node)
        else:
            runs.append((unit, [node]))
    segments = []
    for k, (unit, nodes) in enumerate(runs):
        inside = set(nodes)
        inputs: dict[fx.Node, None] = {}
        for node in nodes:
            for arg in node.all_input_nodes:
                if arg not in inside:
                    inputs[arg] = None
        outputs = [n for n in nodes if any(u not in inside for u in n.users)]
        sub = fx.Graph()
        env = {arg: sub.placeholder(arg.name) for arg in inputs}
        for node in nodes:
            env[node] = sub.node_copy(node, env.__getitem__)
        sub.output(tuple(env[n] for n in outputs))
        segments.append(
            _Segment(_compile(sub, f"{label}.{k}"), list(inputs), outputs, unit is not None)
        )
    return _Plan(placeholders, segments, output.args[0])


def _unit_fn(model: fx.GraphModule, checkpointing: bool) -> Callable[[fx.Node], str | None]:
    units = _cached_layout(model).units
    if not checkpointing:
        return lambda node: None
    return lambda node: units.get(node.meta.get(META_ID, ""))


def _feature_types(model: fx.GraphModule) -> list[TensorType]:
    graph = graph_of(model)
    return [graph.type_of(name) for name in _cached_layout(model).features]


def _features_graph(model: fx.GraphModule) -> fx.Graph:
    lay = _cached_layout(model)
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.graph_copy(model.graph, env)
    outs = []
    for name, kind in zip(lay.features, _feature_types(model), strict=True):
        out = env[lay.fx_of[name]]
        if lay.fmt is not None and isinstance(kind, Tokens):
            out = graph.call_function(lay.fmt.out, (out,), lay.fmt.keywords(kind))
        outs.append(out)
    graph.output(outs[0] if len(outs) == 1 else outs)  # CrossViT: a list, one per branch
    _prune(graph)
    return graph


def _head_graph(model: fx.GraphModule, pre_logits: bool) -> fx.Graph:
    lay = _cached_layout(model)
    source = model.graph
    features = [lay.fx_of[name] for name in lay.features]
    output = next(n for n in source.nodes if n.op == "output")
    upstream = set(features).union(*(_ancestors(f) for f in features))
    wanted = _ancestors(output) - upstream
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {}
    for k, (node, kind) in enumerate(zip(features, _feature_types(model), strict=True)):
        value = x if len(features) == 1 else graph.call_function(operator.getitem, (x, k))
        if lay.fmt is not None and lay.fmt.back is not None and isinstance(kind, Tokens):
            value = graph.call_function(lay.fmt.back, (value,), lay.fmt.keywords(kind))
        env[node] = value
    for node in source.nodes:
        if node not in wanted:
            continue
        for arg in node.all_input_nodes:
            if arg not in env:
                owner = arg.meta.get(META_ID, arg.name)
                raise NotImplementedError(
                    f"the head reads '{owner}' besides the features {lay.features}; "
                    "forward_head cannot be cut from this graph"
                )
        env[node] = graph.node_copy(node, env.__getitem__)
    if pre_logits:
        by_id = {n.id: n for n in graph_of(model).nodes}
        found = []
        for node_id in lay.classifiers:
            node = by_id[node_id]
            rule = _CLASSIFIERS.get(node.kind, ClassifierRule(_reset_linear, _first_input))
            if rule.pre_logits is None:
                continue
            args = [
                env[lay.fx_of[name]] if lay.fx_of[name] in env else None for name in node.inputs
            ]
            found.append(rule.pre_logits(node.params, args, graph))
        result: Any = (
            found[0]
            if len(found) == 1
            else graph.call_function(_combiner(model), tuple(found))
            if found
            else x
        )
    else:
        result = fx.node.map_arg(output.args[0], lambda n: env[n])
    graph.output(result)
    _prune(graph)
    return graph


def _widths(model: fx.GraphModule) -> list[int]:
    """Widths of what each classifier classifies (its pre-logits)."""
    graph = graph_of(model)
    by_id = {n.id: n for n in graph.nodes}
    widths = []
    for node_id in _cached_layout(model).classifiers:
        node = by_id[node_id]
        rule = _CLASSIFIERS.get(node.kind)
        if rule is not None and rule.pre_logits is None:
            continue
        source = (
            node.inputs[1]
            if rule is not None and rule.pre_logits is not _first_input
            else node.inputs[0]
        )
        kind = graph.type_of(source)
        widths.append(kind.dim if isinstance(kind, Vector | Tokens) else 0)
    return widths


def _combiner(model: fx.GraphModule) -> Callable[..., torch.Tensor]:
    """Several classifiers' pre-logits: of one width (a distilled pair, DeiT/LeViT/PiT) their
    mean, as timm; of different widths (CrossViT's branches) their concatenation, as timm."""
    return mean_of if len(set(_widths(model))) <= 1 else cat_of


def _prune(graph: fx.Graph) -> None:
    """Drop nodes nothing uses (every block is pure; fx's own pass needs a module)."""
    for node in reversed(list(graph.nodes)):
        if node.op not in ("placeholder", "output") and not node.users:
            graph.erase_node(node)


def _ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(node.all_input_nodes)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(current.all_input_nodes)
    return seen


def _get_plan(model: fx.GraphModule, what: str, checkpointing: bool) -> _Plan:
    cache = _cache(model)
    key = (what, checkpointing)
    if key not in cache:
        if what == "forward":
            graph = model.graph
        elif what == "features":
            graph = _features_graph(model)
        else:
            graph = _head_graph(model, pre_logits=what == "pre_logits")
        cache[key] = _plan(graph, _unit_fn(model, checkpointing), what)
    return cache[key]


# ----------------------------------------------------------------------- the API


def forward_features(model: fx.GraphModule, x: torch.Tensor) -> torch.Tensor:
    """The tokens the pooling receives (after the final norm), as timm returns them."""
    return _get_plan(model, "features", _checkpointing(model)).run(model, x)


def forward_head(model: fx.GraphModule, x: torch.Tensor, pre_logits: bool = False) -> Any:
    """Pooling and classifier(s) on ``forward_features``'s output; ``pre_logits`` stops
    before the classifier (several classifiers, as DeiT's: the mean of what they see)."""
    return _get_plan(model, "pre_logits" if pre_logits else "head", _checkpointing(model)).run(
        model, x
    )


def _checkpointing(model: nn.Module) -> bool:
    return bool(getattr(model, "grad_checkpointing", False))


def checkpointed_forward(model: fx.GraphModule, x: torch.Tensor) -> Any:
    if _headless(model):
        return headless_forward(model, x)
    return _get_plan(model, "forward", True).run(model, x)


def headless_forward(model: fx.GraphModule, x: torch.Tensor) -> Any:
    """``forward`` once classifiers of different widths were removed (CrossViT reset to 0
    classes): the graph's own merge of their logits has nothing to average, so the model
    returns the pre-logits features, as timm's."""
    return forward_head(model, forward_features(model, x), pre_logits=True)


def _headless(model: nn.Module) -> bool:
    return model.__dict__.get("_vitgraph_num_classes") == 0 and len(set(_widths(model))) > 1


def set_grad_checkpointing(model: fx.GraphModule, enable: bool = True) -> None:
    """Activation checkpointing per repeat instance (one encoder layer, a stage's block),
    as timm's ``checkpoint_seq``: each unit's activations are recomputed in the backward
    pass."""
    model.grad_checkpointing = enable
    if enable:
        model.__dict__["forward"] = types.MethodType(checkpointed_forward, model)
    elif _headless(model):
        model.__dict__["forward"] = types.MethodType(headless_forward, model)
    else:
        model.__dict__.pop("forward", None)


def classifier_ids(model: fx.GraphModule) -> list[str]:
    return list(_cached_layout(model).classifiers)


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
    (``forward`` then returns the pre-logits features), as timm. Another pooling is a
    graph edit, not a reset: ``global_pool`` is refused."""
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
        rule = _CLASSIFIERS.get(node.kind, ClassifierRule(_reset_linear, _first_input))
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
    widths = _widths(model)
    if widths:  # several widths (CrossViT): their concatenation, as timm's
        return sum(widths) if len(set(widths)) > 1 else widths[0]
    out = _feature_types(model)[0]
    return out.dim if isinstance(out, Vector | Tokens) else 0


def num_prefix_tokens(model: fx.GraphModule) -> int:
    out = _feature_types(model)[0]
    return out.prefix if isinstance(out, Tokens) else 0


def no_weight_decay(model: fx.GraphModule) -> set[str]:
    """Parameter names timm's optimizer factory puts in the no-decay group: position
    tables, prefix tokens, norms, LayerScale (by block family or kind, or a block's own
    ``no_weight_decay`` ClassVar), every bias and every other 1-D parameter."""
    graph = graph_of(model)
    exempt = []
    for node in graph.nodes:
        cls = type(node.params)
        declared = getattr(cls, "no_weight_decay", None)
        if (
            declared
            if declared is not None
            else (cls.family in NO_DECAY_FAMILIES or node.kind in NO_DECAY_KINDS)
        ):
            exempt.append(node.id)
        exempt.extend(f"{node.id}.{leaf}" for leaf in NO_DECAY_PARAMS.get(node.kind, ()))
    names = set()
    for name, param in model.named_parameters():
        if (
            param.ndim <= 1
            or name.endswith(".bias")
            or any(name == n or name.startswith(n + ".") for n in exempt)
        ):
            names.add(name)
    return names


def pretrained_cfg(model: fx.GraphModule) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` keys, from the spec's ``data:`` section and its input."""
    graph = graph_of(model)
    data = graph.source.document.data
    first_conv = next(
        (name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)), ""
    )
    classifiers = classifier_ids(model)
    return {
        "architecture": graph.variant or graph.name,
        "input_size": tuple(graph.input_shape[-3:]),
        "fixed_input_size": True,
        "interpolation": data.interpolation,
        "mean": tuple(data.mean),
        "std": tuple(data.std),
        "crop_pct": data.crop_pct,
        "crop_mode": "center",
        "num_classes": num_classes(model),
        "first_conv": first_conv,
        "classifier": classifiers[0] if len(classifiers) == 1 else tuple(classifiers),
    }
