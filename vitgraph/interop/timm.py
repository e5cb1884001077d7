"""``from_timm``: the vitgraph model of a timm model, with the timm model's weights.

Dimensions and options are read from the timm module itself (not from a name table),
written as a vitgraph spec, compiled, and loaded with the timm state_dict. A timm option
vitgraph has no block for is refused with a SpecError naming the option and the model;
unmatched or mis-shaped keys are an error too, so the result is never silently different.

Each family adds a converter in ``vitgraph/interop/timm_<family>.py`` with
``@timm_converter("TimmClassName")``; this module finds them all.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import nn

from vitgraph.errors import Location, SpecError
from vitgraph.pipeline import load
from vitgraph.weights.loader import KeyMap, load_state, offers_from_state

#: a reference library's module, read attribute by attribute (its classes are not typed
#: for what a converter reads: ``model.blocks[0].attn.num_heads``)
Reference = Any
Converter = Callable[[Reference], "Conversion"]
_CONVERTERS: dict[str, Converter] = {}


@dataclass
class Conversion:
    """What a family converter returns: a spec document and how timm's keys map to ours."""

    spec: dict[str, Any]
    rename: Callable[[str], str] = field(default=lambda key: key)
    convert: Callable[[str, torch.Tensor], torch.Tensor] = field(default=lambda key, t: t)
    after_build: Callable[[nn.Module, nn.Module], None] | None = None
    #: reference keys its forward never reads (timm's distilled DeiT builds an fc_norm it
    #: never applies): the twin holds no such parameter and the load skips them
    unused: frozenset[str] = frozenset()

    def keymap(self) -> KeyMap:
        return KeyMap(self.rename, self.convert)

    def state(self, theirs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reference's tensors that the twin holds, reference keys kept."""
        return {k: t for k, t in theirs.items() if k not in self.unused}


def timm_converter(*class_names: str) -> Callable[[Converter], Converter]:
    """Register a converter for timm model classes (by class name)."""

    def decorate(fn: Converter) -> Converter:
        for name in class_names:
            if name in _CONVERTERS:
                raise RuntimeError(
                    f"timm class {name} already has a converter: {_CONVERTERS[name].__module__}"
                )
            _CONVERTERS[name] = fn
        return fn

    return decorate


def load_converters() -> None:
    """Import every ``timm_*`` converter module of this package (each registers its
    classes)."""
    package = importlib.import_module("vitgraph.interop")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("timm_"):
            importlib.import_module(f"vitgraph.interop.{info.name}")


def model_name(model: Reference) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


def refuse(model: Reference, option: str, why: str = "") -> SpecError:
    """A SpecError for a timm option vitgraph has no block for."""
    name = model_name(model)
    return SpecError.at(
        Location(f"<timm:{name}>"),
        name,
        f"timm option {option} is not supported by vitgraph yet" + (f" ({why})" if why else ""),
        "vitgraph refuses rather than build a different model",
    )


def converter_for(model: Reference) -> Converter:
    """The converter of a timm model's class; an unsupported class is refused by name."""
    load_converters()
    cls = type(model).__name__
    if cls not in _CONVERTERS:
        known = ", ".join(sorted(_CONVERTERS))
        raise refuse(model, f"model class {cls}", f"supported classes: {known}")
    return _CONVERTERS[cls]


def from_timm(model: Reference) -> nn.Module:
    """Build the vitgraph twin of ``model`` and load its weights (every key must fit).
    The twin is built on the reference's device, in its dtype. A headless model
    (``num_classes=0``: pooled features; with ``global_pool=''``: unpooled tokens) gives a
    twin reset the same way (``reset_classifier(0)`` / ``reset_classifier(0, '')``)."""
    if getattr(model, "num_classes", None) == 0:
        return _from_headless(model)
    return _convert(model)


def _pool_of(model: Reference) -> str | None:
    pool = getattr(model, "global_pool", None)
    if pool is None and hasattr(model, "head"):
        pool = getattr(model.head, "pool_type", None)  # timm's ClassifierHead (Swin)
    return pool if isinstance(pool, str) else None


@contextlib.contextmanager
def headed(model: Reference) -> Iterator[bool]:
    """A headless timm model (``num_classes=0``) with a one-class classifier put on it for
    the while, so a converter reads it as it reads any model (its random draw under a
    forked RNG; the model's own head restored after). Yields whether the model pools
    (False: ``global_pool=''``, unpooled tokens); a model with a head is left alone."""
    if getattr(model, "num_classes", None) != 0:
        yield True
        return
    unpooled = _pool_of(model) == ""
    default_pool = "token" if getattr(model, "cls_token", None) is not None else "avg"
    with torch.random.fork_rng(devices=[]):
        try:
            if unpooled:
                model.reset_classifier(1, default_pool)
            else:
                model.reset_classifier(1)
        except Exception as error:  # a timm class whose head cannot be put back
            raise refuse(model, "num_classes=0", f"its head cannot be rebuilt: {error}") from None
        try:
            yield not unpooled
        finally:
            model.reset_classifier(0, "" if unpooled else None)


def _from_headless(model: Reference) -> nn.Module:
    """The twin of a headless timm model: converted with a one-class head (``headed``),
    then reset as the model was."""
    with headed(model) as pooled:
        ours: Any = _convert(model)  # a VitgraphModel
    ours.reset_classifier(0, None if pooled else "")
    return ours


def keymap_of(model: Reference) -> KeyMap:
    """How ``from_timm`` maps ``model``'s keys and tensors onto its twin's (a headless
    model's too)."""
    with headed(model):
        return converter_for(model)(model).keymap()


def _convert(model: Reference) -> nn.Module:
    conversion = converter_for(model)(model)
    name = model_name(model)
    spec = conversion.spec
    if "data" not in spec:
        spec = {**spec, **_data_of(model, spec["input"].get("channels", 3))}
    graph = load(f"<timm:{name}>", text=yaml.safe_dump(spec, sort_keys=False))
    first = next(iter(model.parameters()), None)
    if first is None:
        ours = graph.build()
    else:
        ours = graph.build(device=first.device, dtype=first.dtype)
    load_state(
        ours,
        offers_from_state(conversion.state(model.state_dict()), conversion.keymap()),
        fmt="timm",
        source=f"timm {name}",
        what=f"timm {name}'s state_dict does not fit the vitgraph model",
    )
    if conversion.after_build is not None:
        conversion.after_build(model, ours)
    ours.train(model.training)
    return ours


def _data_of(model: Reference, channels: int) -> dict[str, Any]:
    """The reference's pre-processing (its ``pretrained_cfg``) as the twin's ``data:``
    block, so the twin is evaluated and fed as timm feeds the reference (left to the
    defaults where its mean and std do not fit the input's channels)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    keys = ("mean", "std", "crop_pct", "interpolation")
    if not all(cfg.get(k) is not None for k in keys) or len(cfg["mean"]) != channels:
        return {}
    return {
        "data": {
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "crop_pct": float(cfg["crop_pct"]),
            "interpolation": str(cfg["interpolation"]),
        }
    }


def timm_keymap(timm_name: str) -> KeyMap:
    """``from_timm``'s key map for a timm architecture (built on meta: no memory), to read
    that architecture's checkpoints."""
    import timm

    with torch.device("meta"):
        reference = timm.create_model(timm_name, pretrained=False)
    return converter_for(reference)(reference).keymap()


def spec_document(
    name: str, size: tuple[int, int], channels: int, graph: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    """A spec document for a converted model (read back by the ordinary loader)."""
    return {
        "vitgraph": 1,
        "name": name,
        "paper": f"converted from timm {name}",
        "input": {"channels": channels, "size": [size[0], size[1]]},
        "graph": graph,
        **extra,
    }


def layernorm_eps(model: Reference, norm: Reference, where: str) -> float | None:
    """eps of a LayerNorm, None for Identity; other norms are refused (``where`` names the
    reference's option that chose the norm: ``norm_layer``)."""
    if isinstance(norm, nn.Identity):
        return None
    if type(norm).__name__ == "LayerNorm" and isinstance(norm, nn.LayerNorm):
        if not norm.elementwise_affine or norm.bias is None:
            raise refuse(model, f"{where}=LayerNorm without a weight and bias")
        return float(norm.eps)
    raise refuse(model, f"{where}={type(norm).__name__}", "only LayerNorm is supported")


def norm_of(model: Reference, norm: Reference, where: str) -> tuple[str, float] | None:
    """vitgraph's norm kind and eps of a LayerNorm or an RMSNorm (timm's ``RmsNorm``,
    torch's ``nn.RMSNorm``), each with its learned scale (and a LayerNorm's shift); None
    for Identity; other norms are refused (``where`` names the reference's option)."""
    if type(norm).__name__ in ("RmsNorm", "RMSNorm") and isinstance(norm, nn.Module):
        if getattr(norm, "weight", None) is None:
            raise refuse(model, f"{where}={type(norm).__name__} without a weight")
        eps = getattr(norm, "eps", None)
        if eps is None:  # torch's nn.RMSNorm(eps=None): the dtype's machine epsilon
            raise refuse(model, f"{where}=RMSNorm with eps=None")
        return "rmsnorm", float(eps)
    ln_eps = layernorm_eps(model, norm, where)
    return None if ln_eps is None else ("layernorm", ln_eps)


#: timm's activation classes (timm.layers.activations*) and torch's, by class name: each
#: computes exactly the function of vitgraph's activation of that name
_ACTIVATIONS = {
    "ReLU": "relu",
    "SiLU": "silu",
    "Swish": "silu",
    "SwishMe": "silu",
    "Hardswish": "hardswish",
    "HardSwish": "hardswish",
    "HardSwishMe": "hardswish",
    "Tanh": "tanh",
    "GELUTanh": "gelu_tanh",
    "QuickGELU": "quick_gelu",  # CLIP's x * sigmoid(1.702 x)
}


def activation_name(model: Reference, act: Reference, where: str) -> str:
    """vitgraph's name of an activation module (``where`` names the reference's option)."""
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    cls = type(act).__name__
    if cls == "GELU" and type(act).__module__.startswith("timm."):
        return "gelu"  # timm's GELU: F.gelu with an inplace flag it ignores
    if cls in _ACTIVATIONS and type(act).__module__.startswith(("timm.", "torch.")):
        return _ACTIVATIONS[cls]
    raise refuse(model, f"{where}={cls}")


def width_ratio(hidden: int, dim: int) -> float:
    """A ratio ``r`` with ``int(dim * r) == hidden`` (how vitgraph's kinds size a hidden
    layer from a ratio: mlp, bottleneck). ``hidden / dim`` does not always round-trip
    (dim 14, hidden 61 gives 60), so half a unit is added then: ``int`` truncates
    ``hidden + 0.5`` to ``hidden``."""
    ratio = hidden / dim
    return ratio if int(dim * ratio) == hidden else (hidden + 0.5) / dim


def drop_rate(module: Reference) -> float:
    """The rate of a Dropout / DropPath module (0 for Identity)."""
    for attr in ("drop_prob", "p", "rate"):
        if hasattr(module, attr):
            return float(getattr(module, attr))
    return 0.0
