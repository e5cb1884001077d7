"""The one weights format: safetensors (no pickle), with the spec in the metadata.

``save_weights`` writes a model's state_dict with the spec it was built from: the spec
file's text, the variant, the overrides and the resolved spec (a spec that rebuilds the
same graph on its own). ``read_header`` reads a file's header without reading a tensor:
a file that is not a whole safetensors file (truncated, corrupted header, random bytes,
another format) is refused with what is wrong with it. ``read_state`` reads a foreign
checkpoint (a ``.pth`` through ``torch.load(weights_only=True)``, never pickle code).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from vitgraph.errors import Location, SpecError
from vitgraph.ir import Validated
from vitgraph.spec.serialize import to_yaml
from vitgraph.weights.report import WeightsError

#: the ``vitgraph_format`` metadata value ``save_weights`` writes
WEIGHTS_FORMAT = "1"

#: safetensors' own bound on the JSON header (100 MB)
MAX_HEADER = 100_000_000

_DTYPES = {  # safetensors dtype names -> bytes per element
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_TORCH_NAMES = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
}


def save_weights(
    model: nn.Module | None,
    graph: Validated,
    path: str | Path,
    *,
    state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ``model``'s state_dict (or ``state``, a model's state gathered from its
    shards) with the spec text, variant, overrides and the resolved spec as metadata."""
    if state is None:
        assert model is not None, "save_weights needs a model or its state"
        state = model.state_dict()
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    try:
        resolved = to_yaml(graph)
    except Exception as exc:
        resolved = f"# could not write the resolved spec: {type(exc).__name__}: {exc}\n"
    metadata = {
        "vitgraph_format": WEIGHTS_FORMAT,
        **spec_metadata(graph),
        "resolved_spec": resolved,
    }
    save_file(state, str(path), metadata=metadata)


def spec_metadata(graph: Validated) -> dict[str, str]:
    """The spec a file's tensors were made from, as ``load`` reads it back: the spec
    file's text with the variant and overrides; for a graph edited since it was loaded
    (``Graph.edits``), the derived spec ``to_yaml`` writes (variant and overrides in it),
    since the file's text no longer builds it."""
    spec_file = Path(graph.file)
    edited = list(getattr(graph, "edits", []))
    if edited or not spec_file.is_file():
        text = graph.to_yaml() if hasattr(graph, "to_yaml") else to_yaml(graph)
        overrides: dict[str, Any] = {}
    else:
        text, overrides = spec_file.read_text(encoding="utf-8"), graph.overrides
    return {
        "spec_name": graph.name,
        "spec_file": f"<{spec_file.name} edited>" if edited else str(spec_file),
        "variant": graph.variant or "",
        "overrides": json.dumps(overrides),
        "spec": text,
    }


def read_header(path: str | Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {key: (dtype, shape)}) of a safetensors file, after checking that the
    header parses and that every tensor lies inside the file; no tensor is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise WeightsError(
                    f"{path} is {size} bytes long: too short for a safetensors "
                    "file (an 8-byte header length comes first)"
                )
            (length,) = struct.unpack("<Q", head)
            if length > min(MAX_HEADER, size - 8):
                raise WeightsError(
                    f"{path} is not a safetensors file: its first 8 bytes give a header of "
                    f"{length:,} bytes, but {size - 8:,} bytes follow "
                    "(truncated, or another format)"
                )
            raw = handle.read(length)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{path} has a corrupted safetensors header: it is not JSON ({exc})"
        ) from None
    if not isinstance(header, dict):
        raise WeightsError(f"{path} has a corrupted safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - length
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    problems = []
    for key, info in header.items():
        try:
            dtype, shape = info["dtype"], tuple(int(n) for n in info["shape"])
            start, end = (int(n) for n in info["data_offsets"])
            width = _DTYPES[dtype]
        except (KeyError, TypeError, ValueError):
            problems.append(f"{key}: malformed entry {str(info)[:120]}")
            continue
        numel = 1
        for n in shape:
            numel *= n
        if not 0 <= start <= end or end - start != numel * width:
            problems.append(
                f"{key}: offsets {start}..{end} do not hold a {dtype} tensor of shape {shape}"
            )
        elif end > data_bytes:
            problems.append(
                f"{key}: ends at byte {end:,} of a data section of "
                f"{data_bytes:,} bytes (the file is truncated)"
            )
        tensors[key] = (dtype, shape)
    if problems:
        raise WeightsError(f"{path} is not a whole safetensors file:\n  " + "\n  ".join(problems))
    if not isinstance(metadata, dict):
        raise WeightsError(f"{path} has a corrupted safetensors header: bad __metadata__")
    return {str(k): str(v) for k, v in metadata.items()}, tensors


def describe(metadata: dict[str, str]) -> str:
    """Whose weights a file holds, from its metadata (for messages)."""
    if "vitgraph_format" not in metadata:
        return "a file without vitgraph metadata"
    variant = metadata.get("variant") or ""
    overrides = metadata.get("overrides") or "{}"
    name = metadata.get("spec_name", "?") + (f" / {variant}" if variant else "")
    return name + (f" with overrides {overrides}" if overrides != "{}" else "")


def saved_spec(path: str | Path) -> tuple[str, str, str | None, dict[str, Any]]:
    """(label, spec text, variant, overrides) of the spec a vitgraph weights file or
    training checkpoint was made from (its metadata; no tensor is read). The label is
    the spec file it was read from, so problems are located by that file's lines."""
    if not Path(path).is_file():
        raise SpecError.at(Location(str(path)), "", f"weights file {path} does not exist")
    metadata, _ = read_header(path)
    check_format(path, metadata)
    text = metadata.get("spec") or metadata.get("resolved_spec") or ""
    if not text and metadata.get("spec_name"):
        return metadata["spec_name"], "", metadata.get("variant") or None, _overrides(metadata)
    if not text:
        raise SpecError.at(
            Location(str(path)),
            "",
            f"{path} holds no vitgraph spec ({describe(metadata)})",
            "name the spec it belongs to, and load the file with --weights",
        )
    label = metadata.get("spec_file") or f"{path}:spec"
    if not metadata.get("spec"):
        label = f"{path}:resolved_spec"
    return label, text, metadata.get("variant") or None, _overrides(metadata)


def _overrides(metadata: dict[str, str]) -> dict[str, Any]:
    try:
        value = json.loads(metadata.get("overrides") or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def metadata_text(path: str | Path) -> str:
    """What a weights file or checkpoint holds, as text: its spec, variant, overrides,
    tensors and (for a checkpoint) its training state, then the spec it was made from."""
    metadata, tensors = read_header(path)
    count = sum(_numel(shape) for _, shape in tensors.values())
    lines = [f"{path}: {describe(metadata)}"]
    model = [k for k in tensors if k.startswith("model.")]
    kind = "training checkpoint" if metadata.get("format") and model else "weights"
    lines.append(f"  {kind}: {len(tensors)} tensors, {count:,} values")
    for key in ("vitgraph_format", "format", "spec_name", "spec_file", "variant", "overrides"):
        if metadata.get(key):
            lines.append(f"  {key}: {metadata[key]}")
    for key in ("epoch", "step"):
        if metadata.get(key):
            lines.append(f"  {key}: {metadata[key]}")
    shown = {"spec", "resolved_spec", "history", "param_groups", "optimizer_scalars"}
    for key in sorted(set(metadata) - shown - {"vitgraph_format", "format", "spec_name"}):
        if key not in ("spec_file", "variant", "overrides", "epoch", "step"):
            lines.append(f"  {key}: {metadata[key]}")
    text = metadata.get("spec") or metadata.get("resolved_spec")
    if text:
        lines += ["", "# the spec it was made from:", text.rstrip("\n")]
    return "\n".join(lines) + "\n"


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for side in shape:
        n *= side
    return n


def check_format(path: str | Path, metadata: dict[str, str]) -> None:
    """Refuse vitgraph weights of a newer format than this vitgraph reads."""
    fmt = metadata.get("vitgraph_format")
    if fmt is not None and fmt != WEIGHTS_FORMAT:
        raise WeightsError(
            f"{path} has vitgraph weights format {fmt}; this vitgraph reads "
            f"{WEIGHTS_FORMAT} (upgrade vitgraph)"
        )


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt`` checkpoint (``weights_only=True``: no pickle code);
    a trainer's nesting (``state_dict``, ``model``, ``module``) and DDP's ``module.``
    prefix are unwrapped."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unreadable or unsafe file: say which and why
        raise WeightsError(f"cannot read {path} as a PyTorch checkpoint: {exc}") from None
    for wrapper in ("state_dict", "model", "module"):  # trainer checkpoints nest the weights
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict):
        raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state_dict")
    return {k.removeprefix("module."): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
