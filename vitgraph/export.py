"""Export a compiled spec: ``torch.export`` programs (``.pt2``) and ONNX files.

Both paths go through one ``torch.export.export`` of the model in eval mode (an exported
model is for inference; a distilled model then returns the mean of its two heads). The
ONNX file is translated from that program by torch's dynamo exporter and, when
onnxruntime is installed, run once on the example input and compared with eager PyTorch
(max |Δ| ≤ 1e-4 × max(1, max |logits|), DESIGN.md's parity tolerance), so a file that
computes something else is never handed over silently.

Failures surface as ``ExportError``: one paragraph naming the model, the stage (torch.export,
ONNX translation, onnxruntime check) and torch's own first lines, instead of a deep torch
traceback. Spec problems (unknown name, bad override) stay ``SpecError``s from ``load``.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitgraph.graph import Graph
from vitgraph.pipeline import load
from vitgraph.shapes import TensorType, example

#: DESIGN.md's parity tolerance, relative to the largest logit
TOLERANCE = 1e-4
#: a protobuf file holds at most 2 GiB; bigger models keep their weights in ``<path>.data``
_PROTOBUF_LIMIT = 2**31 - 2**26


class ExportError(RuntimeError):
    """A model that could not be exported, or whose export computes something else."""

    def __init__(self, name: str, stage: str, detail: str) -> None:
        self.name, self.stage, self.detail = name, stage, detail
        super().__init__(f"{name}: {stage} failed: {detail}")


def _first_lines(exc: BaseException, lines: int = 6) -> str:
    """The head of torch's message (its tails are long tracebacks of the tracer)."""
    text = str(exc).strip() or type(exc).__name__
    head = [line for line in text.splitlines() if line.strip()][:lines]
    return f"{type(exc).__name__}: " + "\n  ".join(head)


def resolve(
    model_or_graph: nn.Module | Graph | str | os.PathLike[str],
    *,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, TensorType, str]:
    """(model, input type, display name) for a model, Graph or spec name.

    A Graph or spec is built with ``torch.manual_seed(seed)`` inside ``fork_rng`` (the
    caller's random state is left as it was), so the same seed exports the same weights.
    """
    if isinstance(model_or_graph, str | os.PathLike):
        model_or_graph = load(os.fspath(model_or_graph), variant, overrides or {})
    if isinstance(model_or_graph, Graph):
        graph = model_or_graph
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = graph.build()
        return model, graph.input_type, graph.variant or graph.name
    if isinstance(model_or_graph, nn.Module):
        built = getattr(model_or_graph, "vitgraph_graph", None)
        if not isinstance(built, Graph):
            raise ExportError(
                type(model_or_graph).__name__,
                "export",
                "the model was not compiled by vitgraph (no vitgraph_graph): "
                "pass the Graph, or a model from Graph.build()",
            )
        return model_or_graph, built.input_type, built.variant or built.name
    raise TypeError(
        f"expected an nn.Module, a Graph or a spec name, got {type(model_or_graph).__name__}"
    )


def example_input(
    shape: tuple[int, ...] | TensorType,
    batch: int = 1,
    seed: int = 0,
    like: nn.Module | None = None,
) -> torch.Tensor:
    """A seeded input of ``(batch, *shape)`` on the model's device and dtype: N(0, 1)
    values for a shape or a float type, ids of the vocabulary (int64) for ``Ids``."""
    param = next(iter(like.parameters()), None) if like is not None else None
    where: dict[str, Any] = {} if param is None else {"device": param.device, "dtype": param.dtype}
    generator = torch.Generator().manual_seed(seed)
    if isinstance(shape, tuple):
        return torch.randn(batch, *shape, generator=generator).to(**where)
    return example(shape, batch, generator, **where)


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the export, the caller's mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.export and the ONNX exporter print progress lines and warn about internals;
    the caller gets a path or an ExportError, not that noise."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _dynamic(dynamic_batch: bool) -> dict[str, Any] | None:
    return {"x": {0: torch.export.Dim("batch", min=1, max=4096)}} if dynamic_batch else None


def export_program(
    model: nn.Module, x: torch.Tensor, *, name: str = "model", dynamic_batch: bool = True
) -> torch.export.ExportedProgram:
    """``torch.export.export`` of ``model`` (eval mode) on ``x``; the batch dim stays
    symbolic unless ``dynamic_batch=False``."""
    if dynamic_batch and x.shape[0] < 2:  # torch.export specialises sizes 0 and 1
        x = x.expand(2, *x.shape[1:]).contiguous()
    with _eval(model), _quiet():
        try:
            return torch.export.export(model, (x,), dynamic_shapes=_dynamic(dynamic_batch))
        except Exception as exc:
            raise ExportError(name, "torch.export", _first_lines(exc)) from None


def export_pt2(
    model_or_graph: nn.Module | Graph | str,
    path: str | os.PathLike[str],
    *,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    seed: int = 0,
) -> Path:
    """Save the ``torch.export`` program of a model, Graph or spec to ``path`` (``.pt2``);
    reload it with ``torch.export.load(path).module()``. Returns the path."""
    model, shape, name = resolve(model_or_graph, variant=variant, overrides=overrides, seed=seed)
    x = example_input(shape, batch, seed, like=model)
    program = export_program(model, x, name=name, dynamic_batch=dynamic_batch)
    path = Path(path)
    try:
        with _quiet():  # channels-last weights are "incomplete" to its packer: they load back
            torch.export.save(program, path)
    except Exception as exc:
        raise ExportError(name, f"writing {path}", _first_lines(exc)) from None
    return path


def export_onnx(
    model_or_graph: nn.Module | Graph | str,
    path: str | os.PathLike[str],
    *,
    variant: str | None = None,
    overrides: dict[str, Any] | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    seed: int = 0,
    opset: int | None = None,
    check: bool = True,
) -> Path:
    """Write an ONNX file of a model, Graph or spec (input ``x``, output ``logits``, or
    ``logits0``, ``logits1``... for several outputs). Returns the path.

    ``check`` (default): run the file with onnxruntime, when installed, on a seeded input
    of ``batch`` images and raise ``ExportError`` unless it matches eager PyTorch within
    1e-4 × max(1, max |logits|). Models over 2 GiB of weights keep them in ``<path>.data``.
    """
    model, shape, name = resolve(model_or_graph, variant=variant, overrides=overrides, seed=seed)
    x = example_input(shape, batch, seed, like=model)
    program = export_program(model, x, name=name, dynamic_batch=dynamic_batch)
    path = program_to_onnx(program, path, name=name, opset=opset)
    if check:
        try:
            import onnxruntime  # noqa: F401 - a test extra: no check without it
        except ImportError:
            return path
        diff, allowed = onnx_difference(path, model, x)
        if not diff <= allowed:  # also catches NaN
            raise ExportError(
                name,
                "onnxruntime check",
                f"the ONNX file's logits differ from eager PyTorch by {diff:.3e} "
                f"(allowed {allowed:.3e}) on a batch of {batch}",
            )
    return path


def program_to_onnx(
    program: torch.export.ExportedProgram,
    path: str | os.PathLike[str],
    *,
    name: str = "model",
    opset: int | None = None,
) -> Path:
    """Translate an exported program (``export_program``) to an ONNX file at ``path``."""
    path = Path(path)
    outputs = program.call_spec.out_spec.num_leaves if program.call_spec.out_spec else 1
    output_names = ["logits"] if outputs == 1 else [f"logits{i}" for i in range(outputs)]
    size = sum(t.numel() * t.element_size() for t in program.state_dict.values())
    size += sum(
        t.numel() * t.element_size()
        for t in program.constants.values()
        if isinstance(t, torch.Tensor)
    )
    with _quiet():
        try:
            onnx_program = torch.onnx.export(
                program,
                dynamo=True,
                verbose=False,
                input_names=["x"],
                output_names=output_names,
                opset_version=opset,
            )
            assert onnx_program is not None
            onnx_program.save(str(path), external_data=size > _PROTOBUF_LIMIT)
        except Exception as exc:
            raise ExportError(name, "ONNX translation", _first_lines(exc)) from None
    return path


def run_onnx(path: str | os.PathLike[str], x: torch.Tensor) -> list[torch.Tensor]:
    """Every output of the ONNX file at ``path`` on ``x``, run by onnxruntime (CPU)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = x.detach().cpu()
    feed = {session.get_inputs()[0].name: (x if not x.is_floating_point() else x.float()).numpy()}
    return [torch.from_numpy(out) for out in session.run(None, feed)]


def onnx_difference(
    path: str | os.PathLike[str], model: nn.Module, x: torch.Tensor
) -> tuple[float, float]:
    """(max |ORT - eager| over every output, allowed = 1e-4 × max(1, max |eager|))."""
    with _eval(model), torch.no_grad():
        eager = model(x)
    expected = list(eager) if isinstance(eager, tuple | list) else [eager]
    got = run_onnx(path, x)
    if len(got) != len(expected):
        return float("inf"), 0.0
    diff, scale = 0.0, 1.0
    for ours, ref in zip(got, expected, strict=True):
        ref = ref.detach().float().cpu()
        if ours.shape != ref.shape:
            return float("inf"), 0.0
        diff = max(diff, (ours - ref).abs().max().item())
        scale = max(scale, ref.abs().max().item())
    return diff, TOLERANCE * scale
