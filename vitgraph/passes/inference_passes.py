"""The inference passes: each a small named function of a compiled model (eval only) that
rewrites it in place and returns how many rewrites it made.

Each pass is a policy and a mechanism, as torch.fx's ``split_module(m, root, callback)``:
the policy is what a node's kind declares about its module (``vitgraph.block.Block``'s
hooks: ``training_only``, ``eval_identities``, ``batchnorm_folds``, ``channel_scale`` and
``output_affine``, ``constant_scales``, ``fused_projections``, ``precompute``), the
mechanism is generic (``vitgraph.passes.folding``'s arithmetic, ``vitgraph.passes.rewrite``'s
fx rewrites).
A pass never names a kind. fx's stock ``fuse`` (``torch.fx.experimental.optimization``)
is not used: it matches Conv→BatchNorm call sites only, while our BatchNorms sit inside
block modules, behind reshapes, after attention, or before a Linear.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from vitgraph.block import Block
from vitgraph.compiler import META_ID
from vitgraph.ir import Node
from vitgraph.passes.folding import (
    AFFINE,
    FoldError,
    batchnorm_affine,
    get,
    put,
    scale_inputs,
    scale_outputs,
)
from vitgraph.passes.rewrite import fold_constants, fuse_group, traced


@dataclass
class Site:
    """An fx node of the model with the spec node it computes (whose kind has the hooks)
    and its module (None for a function or tensor op)."""

    fx: fx.Node
    node: Node
    module: nn.Module | None

    @property
    def block(self) -> Block:
        return self.node.params


def sites(model: fx.GraphModule) -> Iterator[Site]:
    """Every fx node that computes a spec node (its ``META_ID``), in graph order."""
    graph: Any = model.vitgraph_graph
    nodes = {node.id: node for node in graph.inferred.order}
    for fx_node in list(model.graph.nodes):
        spec_id = fx_node.meta.get(META_ID)
        if spec_id not in nodes or fx_node.op == "get_attr":
            continue
        module = model.get_submodule(str(fx_node.target)) if fx_node.op == "call_module" else None
        yield Site(fx_node, nodes[spec_id], module)


def _bypass(model: fx.GraphModule, fx_node: fx.Node) -> None:
    """Remove a one-input node: its users read its input."""
    fx_node.replace_all_uses_with(fx_node.args[0])  # type: ignore[arg-type]
    model.graph.erase_node(fx_node)


def _replace(model: fx.GraphModule, site: Site, module: nn.Module) -> None:
    """Make ``module`` the node's module (its path stays the spec id)."""
    put(model, str(site.fx.target), module)
    site.module = module


# ------------------------------------------------------------------------- the passes


def drop_eval_identities(model: fx.GraphModule) -> int:
    """Policy: a node whose kind is ``training_only`` (dropout, drop-path), and each
    submodule its kind names in ``eval_identities``. Mechanism: the node's users read its
    input; the submodule becomes ``nn.Identity`` (removed from an ``nn.Sequential``)."""
    changed = 0
    for site in sites(model):
        if type(site.block).training_only and len(site.fx.args) == 1:
            _bypass(model, site.fx)
            changed += 1
            continue
        for path in site.block.eval_identities(site.module):
            assert site.module is not None
            put(site.module, path, nn.Identity())
            changed += 1
    return changed


def fold_batchnorm(model: fx.GraphModule) -> int:
    """Policy: the ``batchnorm_folds`` a node's kind declares. Mechanism: the BatchNorm's
    eval affine map is multiplied into the Linear or Conv beside it, the BatchNorm becomes
    an identity, and a declared wrapper is replaced by the folded map."""
    changed = 0
    for site in sites(model):
        if site.module is None:
            continue
        for fold in site.block.batchnorm_folds(site.module):
            root = site.module
            scale, shift = batchnorm_affine(get(root, fold.norm))
            affine = get(root, fold.into)
            if fold.before:
                scale_inputs(affine, scale, shift)
            else:
                scale_outputs(affine, scale, shift, fold.rows)
            if fold.replace is None:
                put(root, fold.norm, nn.Identity())
            elif fold.replace == "":
                _replace(model, site, affine)
            else:
                put(root, fold.replace, affine)
            changed += 1
    return changed


def fold_channel_scales(model: fx.GraphModule) -> int:
    """Policy: a node whose kind declares a ``channel_scale`` (LayerScale, a residual
    divisor), reading a node whose kind declares its ``output_affine``, whose output
    nothing else reads. Mechanism: the scale multiplies that map's output rows and the
    scale node is removed (CaiT §2.1's γ costs nothing at inference)."""
    changed = 0
    found = {site.fx: site for site in sites(model)}
    for site in list(found.values()):
        scale = site.block.channel_scale(site.module)
        if scale is None or len(site.fx.all_input_nodes) != 1:
            continue
        source = found.get(site.fx.all_input_nodes[0])
        if source is None or source.module is None or len(source.fx.users) != 1:
            continue
        path = source.block.output_affine(source.module)
        if path is None or not isinstance(get(source.module, path), AFFINE):
            continue
        try:
            scale_outputs(get(source.module, path), scale.detach())
        except FoldError:  # a scale of another width than the map's rows: leave both
            continue
        _bypass(model, site.fx)
        changed += 1
    return changed


def fold_constant_scales(model: fx.GraphModule) -> int:
    """Policy: the ``constant_scales`` a node's kind declares (the queries' 1/sqrt(d) in
    attention that multiplies q or the logits explicitly). Mechanism: the factor
    multiplies the declared output rows of the map and its attribute becomes 1.0, which
    the kind's forward skips: one pass over the logits less per layer."""
    changed = 0
    for site in sites(model):
        if site.module is None:
            continue
        for fold in site.block.constant_scales(site.module):
            owner_path, _, name = fold.attribute.rpartition(".")
            owner = get(site.module, owner_path)
            factor = float(getattr(owner, name))
            if factor == 1.0:
                continue
            for rows in fold.rows:
                scale_outputs(get(site.module, fold.into), torch.tensor(factor), rows=rows)
            setattr(owner, name, 1.0)
            changed += 1
    return changed


def fuse_projections(model: fx.GraphModule) -> int:
    """Policy: the ``fused_projections`` groups a node's kind declares. Mechanism: the
    module is traced and each group's calls, when they read one tensor, become one call
    of the concatenated Linear and a split."""
    changed = 0
    for site in sites(model):
        if site.module is None:
            continue
        groups = site.block.fused_projections(site.module)
        if not groups:
            continue
        module = traced(site.module)
        fused = sum(fuse_group(module, tuple(group)) for group in groups)
        if fused:
            _replace(model, site, module)
            changed += fused
    return changed


def precompute_constants(model: fx.GraphModule) -> int:
    """Policy: a node whose kind declares ``precompute``. Mechanism: the module is traced
    and every value that depends only on its parameters and buffers (LeViT's and Swin's
    bias tables gathered by relative offset, Swin's shifted-window mask) is computed once
    and stored as a buffer."""
    changed = 0
    for site in sites(model):
        if site.module is None or not type(site.block).precompute:
            continue
        module = traced(site.module)
        stored = fold_constants(module)
        if stored:
            _replace(model, site, module)
            changed += stored
    return changed


def finish(model: fx.GraphModule) -> Any:
    """Check and regenerate the model's code after the passes."""
    model.graph.eliminate_dead_code()
    model.graph.lint()
    model.delete_all_unused_submodules()
    model.recompile()
    return model
