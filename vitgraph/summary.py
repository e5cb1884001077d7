"""Counting without allocating: params and MACs on the meta device.

Each block is built under ``torch.device("meta")`` and run on meta inputs of its inferred
shapes inside ``FlopCounterMode``, which counts matmuls, convolutions and the attention
kernels (QKᵀ and AV included). MACs = FLOPs / 2: one multiply-add counts once, as papers do.
Autograd stays enabled: in torch 2.14 the counter fails under ``no_grad`` for some models.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from vitgraph.block import Block, FunctionOp, TensorOp
from vitgraph.errors import SpecError
from vitgraph.ir import Segment, Validated
from vitgraph.shapes import TensorType


@dataclass(frozen=True)
class Row:
    """One line of a summary: a node (or a collapsed repeat group)."""

    id: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    count: int = 1  # repeats collapsed into this row
    instance: str = ""  # the top-level entry it belongs to: ``blocks.3``, ``norm``
    group: str = ""  # that entry's id: ``blocks``
    repeated: bool = False  # the entry is a repeat group


@dataclass(frozen=True)
class Summary:
    spec: str
    variant: str | None
    params: int
    macs: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: list[Row] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # composite / repeat id -> its kind

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def grouped(self) -> list[Row]:
        """One row per top-level entry: a composite's nodes are summed into one row, and
        consecutive repeats of a group collapse into one (``blocks`` ×12)."""
        instances: list[Row] = []
        for row in self.rows:
            key = row.instance or row.id
            if instances and instances[-1].id == key:
                done = instances[-1]
                instances[-1] = replace(
                    done,
                    output_shape=row.output_shape,
                    params=done.params + row.params,
                    macs=done.macs + row.macs,
                )
            else:
                kind = self.kinds.get(key, row.kind)
                instances.append(replace(row, id=key, kind=kind))
        runs: list[list[Row]] = []  # consecutive instances of one repeat group
        for row in instances:
            last: Row | None = runs[-1][-1] if runs else None
            if (
                last is not None
                and row.repeated
                and last.repeated
                and last.group == row.group
                and last.kind == row.kind
            ):
                runs[-1].append(row)
            else:
                runs.append([row])
        out: list[Row] = []
        for run in runs:
            first = run[0]
            if not first.repeated:
                out.append(first)
            elif all(
                r.output_shape == first.output_shape and r.params == first.params for r in run
            ):  # identical repeats collapse (``blocks`` ×12)
                out.append(
                    replace(
                        first,
                        id=first.group,
                        output_shape=run[-1].output_shape,
                        params=sum(r.params for r in run),
                        macs=sum(r.macs for r in run),
                        count=len(run),
                    )
                )
            else:  # stages that differ (Swin's layers.0 .. layers.3) keep a row each
                out.extend(run)
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "spec": self.spec,
            "variant": self.variant,
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "nodes": [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "output_shape": list(r.output_shape),
                    "params": r.params,
                    "macs": r.macs,
                }
                for r in self.rows
            ],
        }


#: (block params, input types, batch) -> (params, MACs): blocks are pure functions of these,
#: so counts are shared by every graph of the process (edits re-validate many times).
_COUNTS: dict[tuple[str, tuple[object, ...], int], tuple[int, int]] = {}


def summarize(graph: Validated, batch: int = 1) -> Summary:
    """Count each distinct (block, input types) once on the meta device: repeated layers
    cost one count, so validating ViT-L takes no longer than ViT-Ti."""
    cache = _COUNTS
    rows = []
    for node in graph.nodes:
        in_types = tuple(graph.type_of(name) for name in node.inputs)
        # dropout and stochastic-depth rates change neither parameters nor MACs: left out of
        # the key, so a drop-path schedule does not defeat the cache
        neutral = type(node.params).training_fields()
        key = (node.params.model_dump_json(exclude=set(neutral)), in_types, batch)
        if key not in cache:
            try:
                cache[key] = _count_node(node.params, in_types, batch)
            except (RuntimeError, ValueError, IndexError, OverflowError, MemoryError) as exc:
                # sizes every shape rule accepted but torch cannot represent (a dim of
                # 10^12, a width of zero after integer division): the node's problem
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise SpecError.at(
                    node.where,
                    node.id,
                    f"{node.kind} cannot be built with "
                    f"these sizes ({type(exc).__name__}: {first[:200]})",
                    "check this block's sizes against its input "
                    f"{', '.join(str(t) for t in in_types)}",
                ) from None
        params, macs = cache[key]
        entry = node.path[0] if node.path else Segment(node.id)
        rows.append(
            Row(
                node.id,
                node.kind,
                graph.type_of(node.id).shape,
                params,
                macs,
                instance=str(entry),
                group=entry.id,
                repeated=entry.index is not None,
            )
        )
    kinds: dict[str, str] = {}
    for node in graph.nodes:
        entry = node.path[0] if node.path else Segment(node.id)
        top = str(entry)
        if top != node.id:
            # the kind written in the spec (a repeat's or composite's), not the kind of
            # the first composite nested inside it
            written = graph.groups.get(top) or graph.groups.get(entry.id)
            kinds.setdefault(top, written[0] if written else node.composite_kind or node.kind)
    return Summary(
        graph.name,
        graph.variant,
        sum(r.params for r in rows),
        sum(r.macs for r in rows),
        graph.input_shape,
        graph.output_shape,
        rows,
        kinds,
    )


def _count_node(params: Block, in_types: tuple[TensorType, ...], batch: int) -> tuple[int, int]:
    """(parameters, MACs) of one block, built and run on the meta device."""
    with torch.device("meta"):
        made = params.build(*in_types)
        inputs = [torch.empty(batch, *t.shape) for t in in_types]
    if isinstance(made, torch.nn.Identity):
        return 0, 0
    if isinstance(made, TensorOp):
        count = made.tensor.numel() if isinstance(made.tensor, torch.nn.Parameter) else 0
        call = lambda: made.fn(*inputs, made.tensor, **made.kwargs)  # noqa: E731
    elif isinstance(made, FunctionOp):
        return 0, 0  # reshapes, merges and pools: no matmul or convolution to count
    elif isinstance(made, torch.nn.Module):
        count = sum(p.numel() for p in made.parameters())
        if count == 0:  # parameter-free modules (resize, unfold, activations) do no MACs;
            return 0, 0  # skipping them keeps summaries fast (meta kernels are slow)
        made.eval()
        call = lambda: made(*inputs)  # noqa: E731
    else:
        count = 0
        call = lambda: made(*inputs)  # noqa: E731
    counter = _FlopCounter()
    with counter:
        call()
    return count, counter.total // 2


class _FlopCounter(TorchDispatchMode):
    """torch's FLOP formulas (``flop_registry``: matmuls, convolutions, attention kernels)
    without FlopCounterMode's per-module tracking, which doubled the cost of a summary; the
    totals are the same (tests/test_summary.py compares them on whole models)."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out
