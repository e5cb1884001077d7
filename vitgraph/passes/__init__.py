"""``optimize``: a compiled model rewritten for inference, computing the same function.

A hand-written model runs the graph its author wrote; vitgraph sees the whole graph before
it runs, with every block's declaration of what its module folds into (the hooks of
``vitgraph.block.Block``). The passes, in order (``PASSES``; each in
``vitgraph.passes.inference_passes``, each tested on its own):

1. ``drop_eval_identities``: dropout and drop-path nodes and submodules go.
2. ``fold_batchnorm``: BatchNorms fold into the Linear or Conv beside them (LeViT, BoTNet,
   CvT, CeiT, VT's ResNet, the conv stems).
3. ``fold_channel_scales``: LayerScale and residual divisors fold into the projection
   before them.
4. ``fold_constant_scales``: an attention's 1/sqrt(d) folds into the query rows.
5. ``fuse_projections``: separate Linears that read one tensor (k and v) run as one.
6. ``precompute_constants``: tables gathered from weights at the fixed input size (LeViT's
   and Swin's relative biases, Swin's masks) are computed once.
7. the memory format (``vitgraph.passes.memory_format``): channels-last where it is faster
   for a conv-heavy graph.

The result is for inference only: ``train()`` on it raises (its BatchNorms are gone).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import fx

from vitgraph.passes.inference_passes import (
    drop_eval_identities,
    finish,
    fold_batchnorm,
    fold_channel_scales,
    fold_constant_scales,
    fuse_projections,
    precompute_constants,
)
from vitgraph.passes.memory_format import FORMATS, choose_memory_format

Pass = Callable[[fx.GraphModule], int]

#: the passes ``optimize`` runs, in order (the memory format comes last, apart)
PASSES: tuple[Pass, ...] = (
    drop_eval_identities,
    fold_batchnorm,
    fold_channel_scales,
    fold_constant_scales,
    fuse_projections,
    precompute_constants,
)

__all__ = ["FORMATS", "PASSES", "CompileError", "compile_model", "optimize"]


class CompileError(RuntimeError):
    """torch.compile cannot run here (one line: what to install or pass instead)."""


def optimize(
    model: Any,
    *,
    passes: Sequence[Pass] | None = None,
    memory_format: str = "auto",
    example: torch.Tensor | None = None,
) -> Any:
    """A copy of the compiled ``model`` (from ``Graph.build``, ``from_timm``, ...) with its
    weights, rewritten for inference by ``passes`` (default ``PASSES``) and laid out in
    ``memory_format`` (``auto``: the faster of NCHW and channels-last on ``example`` for a
    conv-heavy graph). ``model`` itself is left as it is. The copy's
    ``vitgraph_optimized`` lists what each pass did; calling ``train()`` on it raises."""
    if not isinstance(model, fx.GraphModule) or not hasattr(model, "vitgraph_graph"):
        raise TypeError(
            f"optimize takes a model compiled by vitgraph (Graph.build, from_timm), "
            f"not a {type(model).__name__}"
        )
    start = time.perf_counter()
    out = copy.deepcopy(model).eval()
    done: dict[str, Any] = {}
    for step in PASSES if passes is None else passes:
        done[step.__name__] = step(out)
        finish(out)
    done["memory_format"] = choose_memory_format(out, memory_format, example)
    done["seconds"] = round(time.perf_counter() - start, 3)
    out.__dict__["vitgraph_optimized"] = done
    return out


def compile_model(model: Any, **options: Any) -> Any:
    """``torch.compile(model, **options)`` after checking that its default backend can
    run: on the CPU, inductor writes C++ and needs a compiler (``$CXX``, g++, c++ or
    clang++); a missing one is a ``CompileError`` saying what to install, instead of
    inductor's traceback at the first call."""
    import os
    import shutil

    backend = options.get("backend", "inductor")
    on_gpu = any(p.is_cuda for p in model.parameters())
    if backend == "inductor" and not on_gpu:
        candidates = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
        if not any(c and shutil.which(c) for c in candidates):
            raise CompileError(
                "torch.compile on the CPU needs a C++ compiler for its inductor backend "
                "(Debian/Ubuntu: apt-get install g++), or pass backend='eager'"
            )
    return torch.compile(model, **options)
