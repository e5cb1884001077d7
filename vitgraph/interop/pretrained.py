"""Published weights of a shipped variant: ``create_model(name, pretrained=True)`` and
``vitgraph build NAME --pretrained``.

A spec lists where each variant's weights are published (its ``pretrained:`` table):
``timm:<model>.<tag>`` is fetched by timm's own hub loading (the Hugging Face hub, or its
local cache when offline) and converted by ``from_timm``; ``hf:<repo>`` by transformers'
``from_pretrained`` and ``from_hf``. ``file=`` serves the same weights from a local file
instead (timm: the checkpoint file, as timm's ``pretrained_cfg_overlay=dict(file=...)``;
hf: a saved model folder). The converted weights then load into the model as built —
position and relative tables resampled and a classifier of another class count started
fresh when the build asked for another size or class count, as timm does.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import nn

from vitgraph.ir import Validated
from vitgraph.weights import LoadReport


class PretrainedError(RuntimeError):
    """The published weights cannot be had (none listed, no network, a missing extra)."""


def source_of(graph: Validated) -> str:
    """The ``pretrained:`` entry of the graph's variant."""
    table: dict[str, str] = dict(graph.source.document.pretrained)
    name = graph.variant or graph.name
    if name not in table:
        listed = ", ".join(sorted(table)) or "none"
        raise PretrainedError(
            f"{name} has no published weights in its spec's pretrained: table (variants "
            f"with weights: {listed}); train it, or load a weights file (--weights)"
        )
    return table[name]


def _reference(source: str, file: str | Path | None) -> nn.Module:
    scheme, _, ref = source.partition(":")
    if scheme == "timm":
        try:
            import timm
        except ImportError:
            raise PretrainedError(f"{source} needs timm: pip install 'vitgraph[timm]'") from None
        overlay: dict[str, Any] = {"pretrained_cfg_overlay": {"file": str(file)}} if file else {}
        try:
            return timm.create_model(ref, pretrained=True, **overlay)
        except Exception as exc:  # hub, network, cache: one line says which
            raise PretrainedError(_unreachable(source, ref, file, exc)) from None
    if scheme == "hf":
        try:
            from transformers import AutoModelForImageClassification
        except ImportError:
            raise PretrainedError(
                f"{source} needs transformers: pip install 'vitgraph[hf]'"
            ) from None
        try:
            return AutoModelForImageClassification.from_pretrained(str(file) if file else ref)
        except Exception as exc:
            raise PretrainedError(_unreachable(source, ref, file, exc)) from None
    raise PretrainedError(f"pretrained source '{source}': known schemes are timm: and hf:")


def _unreachable(source: str, ref: str, file: str | Path | None, exc: Exception) -> str:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if file:
        return f"{source} from {file}: {type(exc).__name__}: {detail}"
    repo = ref if "/" in ref else f"timm/{ref}"
    return (
        f"{source} could not be fetched ({type(exc).__name__}: {detail}): no network and "
        f"not in the Hugging Face cache; download it where there is a network "
        f"(huggingface-cli download {repo}), or give the file (pretrained_file=PATH, "
        "--pretrained-file PATH)"
    )


def pretrained_state(graph: Validated, file: str | Path | None = None) -> dict[str, Any]:
    """The variant's published weights under its own keys (converted by its twin)."""
    source = source_of(graph)
    reference = _reference(source, file).eval()
    if source.startswith("timm:"):
        from vitgraph.interop.timm import from_timm

        twin = from_timm(reference)
    else:
        from vitgraph.interop.hf import from_hf

        twin = from_hf(reference)
    return {k: v.detach() for k, v in twin.state_dict().items()}


def load_pretrained(
    model: nn.Module, graph: Validated, file: str | Path | None = None
) -> LoadReport:
    """Load the variant's published weights into ``model`` (built from ``graph``, maybe
    at another size or class count: tables resampled, a classifier started fresh)."""
    from vitgraph.weights.loader import load_state, offers_from_state

    state = pretrained_state(graph, file)
    source = source_of(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return load_state(
            model,
            offers_from_state(state),
            fmt="vitgraph",
            source=source,
            what=f"the weights of {source} do not fit {graph.variant or graph.name}",
            strict=True,
            adapt=True,
        )


def read_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint file's tensors: safetensors, or a ``.pth``/``.bin`` read with
    ``weights_only=True`` (a nested ``model``/``state_dict``/``module`` entry unwrapped,
    as the reference repositories save them)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import torch

    state: Any = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "module", "model_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise PretrainedError(f"{path} holds no state_dict (a {type(state).__name__})")
    return {k: v for k, v in state.items() if hasattr(v, "shape")}


def convert_checkpoint(
    model: nn.Module, graph: Validated, path: str | Path, timm_name: str | None = None
) -> LoadReport:
    """Load a reference's checkpoint into ``model``: a saved Hugging Face model folder
    (through ``from_hf``), or a timm checkpoint file (keys through the converter of
    ``timm_name``, else of the variant's ``pretrained:`` timm model), or the family's
    official checkpoint (``vitgraph.interop.official``)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise PretrainedError(f"{path} is a folder without config.json (not a saved HF model)")
        return _hf_folder(model, graph, path)
    from vitgraph.interop.official import OFFICIAL
    from vitgraph.interop.timm import timm_keymap
    from vitgraph.weights.loader import load_state, offers_from_state

    name = graph.variant or graph.name
    if timm_name is None and _scheme(graph) == "timm":
        timm_name = source_of(graph).split(":", 1)[1].split(".")[0]
    if timm_name is None and graph.name in OFFICIAL:  # the official repository's layout
        return load_state(
            model,
            OFFICIAL[graph.name].offers(read_state(path)),
            fmt="official",
            source=f"the official {graph.name} code ({path.name})",
            what=f"{path} (the official {graph.name} layout) does not fit {name}",
            strict=True,
            adapt=True,
        )
    if timm_name is None:
        raise PretrainedError(
            f"no converter for {name}'s checkpoint layout: give the timm model it was "
            "saved from (--timm NAME)"
        )
    return load_state(
        model,
        offers_from_state(read_state(path), timm_keymap(timm_name)),
        fmt="timm",
        source=f"timm {timm_name} ({path.name})",
        what=f"{path} (timm {timm_name}) does not fit {graph.variant or graph.name}",
        strict=True,
        adapt=True,
    )


def _scheme(graph: Validated) -> str | None:
    table = dict(graph.source.document.pretrained)
    source = table.get(graph.variant or graph.name)
    return source.split(":", 1)[0] if source else None


def _hf_folder(model: nn.Module, graph: Validated, path: Path) -> LoadReport:
    from transformers import AutoModelForImageClassification

    from vitgraph.interop.hf import from_hf
    from vitgraph.weights.loader import load_state, offers_from_state

    twin = from_hf(AutoModelForImageClassification.from_pretrained(str(path)))
    return load_state(
        model,
        offers_from_state(twin.state_dict()),
        fmt="vitgraph",
        source=f"transformers {path.name}",
        what=f"{path} does not fit {graph.variant or graph.name}",
        strict=True,
        adapt=True,
    )
