"""``vitgraph.create_model``: timm's entry point, for timm users (interop: it reads timm's
argument names onto a spec's).

timm's arguments map onto the spec's own knobs (its ``args`` where the spec names them,
else its ``input:``): ``num_classes`` -> ``classes`` (0: the classifier removed, as
timm's ``num_classes=0``), ``in_chans`` -> ``channels`` / ``input.channels``,
``img_size`` -> ``image_size`` / ``input.size``, ``drop_rate`` -> ``dropout``,
``drop_path_rate`` -> ``drop_path_rate``. Every other keyword is a spec override
(``depth=6``, ``head.classes=10``), as ``vitgraph build --set`` takes them. A keyword
that is neither is one error naming what is accepted, before anything is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from vitgraph.pipeline import load

#: timm's keywords create_model takes besides the spec's overrides
ACCEPTED = (
    "pretrained",
    "pretrained_file",
    "pretrained_cfg_overlay",
    "num_classes",
    "in_chans",
    "img_size",
    "drop_rate",
    "drop_path_rate",
    "features_only",
    "out_indices",
    "global_pool",
)

#: timm keyword -> the spec args that may carry it (first found), then the fallback key
_ROUTES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "num_classes": (("classes", "num_classes"), None),
    "in_chans": (("channels", "in_chans"), "input.channels"),
    "img_size": (("image_size", "img_size"), "input.size"),
    "drop_rate": (("dropout", "drop_rate", "drop"), None),
    "drop_path_rate": (("drop_path_rate",), None),
}


def create_model(
    name_or_spec: str | Path,
    pretrained: bool = False,
    num_classes: int | None = None,
    in_chans: int | None = None,
    img_size: int | Sequence[int] | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
    features_only: bool = False,
    out_indices: int | Sequence[int] | None = None,
    global_pool: str | None = None,
    pretrained_file: str | Path | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **spec_overrides: Any,
) -> nn.Module:
    """A fresh model of ``name_or_spec`` (a variant, a shipped spec, a spec file) with
    timm's ``create_model`` arguments: see the module docstring. ``features_only`` gives
    the intermediates at ``out_indices`` as NCHW maps (``vitgraph.model.features``);
    ``global_pool=''`` with ``num_classes=0`` a model returning the unpooled features.
    ``pretrained=True``: the variant's published weights (its spec's ``pretrained:``
    table, ``vitgraph.interop.pretrained``), from the hub or its cache, or from
    ``pretrained_file`` (timm's ``pretrained_cfg_overlay=dict(file=...)`` is read the
    same way); at another size or class count the tables are resampled and the
    classifier starts fresh, as timm does."""
    if pretrained_cfg_overlay is not None:
        extra = sorted(set(pretrained_cfg_overlay) - {"file"})
        if extra:
            raise TypeError(
                f"create_model(pretrained_cfg_overlay=...): only 'file' is taken, not {extra}"
            )
        pretrained_file = pretrained_file or pretrained_cfg_overlay.get("file")
    if pretrained_file is not None and not pretrained:
        raise TypeError("create_model(): pretrained_file is only read with pretrained=True")
    base = load(name_or_spec)
    args = base.args
    unknown = sorted(k for k in spec_overrides if "." not in k and k not in args)
    if unknown:
        raise TypeError(
            f"create_model() got unknown argument(s) {', '.join(unknown)}: it takes "
            f"{', '.join(ACCEPTED)}, and as spec overrides the args of "
            f"{base.variant or base.name} ({', '.join(sorted(args)) or 'none'}) or dotted "
            "node.param / input.size / input.channels keys"
        )
    overrides = dict(spec_overrides)
    given = {
        "num_classes": num_classes if num_classes else None,  # 0: built, then headless
        "in_chans": in_chans,
        "img_size": img_size,
        "drop_rate": drop_rate,
        "drop_path_rate": drop_path_rate,
    }
    for keyword, value in given.items():
        if value is None:
            continue
        names, fallback = _ROUTES[keyword]
        key = next((n for n in names if n in args), fallback)
        if key is None:
            if not value:  # 0.0: what the spec does without the knob
                continue
            raise TypeError(
                f"create_model(): {base.variant or base.name} has no arg for {keyword} "
                f"(looked for {', '.join(names)}); set the node parameter it means as "
                "a dotted override (node.param=value)"
            )
        overrides[key] = list(value) if isinstance(value, tuple | list) else value
    if global_pool not in (None, "") or (global_pool == "" and num_classes != 0):
        raise TypeError(
            f"create_model(global_pool={global_pool!r}): the pooling is a node of the spec; "
            "only global_pool='' with num_classes=0 (unpooled features) is taken here — "
            "edit the spec to change the pooling"
        )
    graph = load(name_or_spec, base.variant, overrides)
    model = graph.build()
    if pretrained:
        from vitgraph.interop.pretrained import load_pretrained

        load_pretrained(model, graph, pretrained_file)
    if features_only:
        from vitgraph.model.features import features_only as taps_of

        return taps_of(model, out_indices)
    if out_indices is not None:
        raise TypeError("create_model(): out_indices is only taken with features_only=True")
    if num_classes == 0:
        model.reset_classifier(0, global_pool)
    return model
