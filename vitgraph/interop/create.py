"""``vitgraph.create_model``: timm's entry point, for timm users (interop: it reads timm's
argument names onto a spec's).

timm's arguments map onto the spec's own knobs (its ``args`` where the spec names them,
else its ``input:``): ``num_classes`` -> ``classes`` (0: the classifier removed, as
timm's ``num_classes=0``), ``in_chans`` -> ``channels`` / ``input.channels``,
``img_size`` -> ``image_size`` / ``input.size``, ``drop_rate`` -> ``dropout``,
``drop_path_rate`` -> ``drop_path_rate``. ``dynamic_img_size=True`` edits the spec so its
absolute position table is resized to each input's grid (``dynamic_size``), and
``dynamic_img_pad=True`` pads the image to a patch multiple, as timm's. Every other
keyword is a spec override (``depth=6``, ``head.classes=10``), as ``vitgraph build
--set`` takes them. A keyword that is neither is one error naming what is accepted,
before anything is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import fx, nn

from vitgraph.errors import SpecError
from vitgraph.graph import Graph
from vitgraph.ir import INPUT
from vitgraph.pipeline import load
from vitgraph.shapes import Tokens

#: the arg by which a spec takes timm's dynamic_img_size itself (Swin's windows and masks)
SPEC_OPTION = "dynamic_img_size"

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
    "dynamic_img_size",
    "dynamic_img_pad",
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
    dynamic_img_size: bool = False,
    dynamic_img_pad: bool = False,
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
    if dynamic_img_size or dynamic_img_pad:
        graph = dynamic_size(graph, size=dynamic_img_size, pad=dynamic_img_pad)
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


def dynamic_size(graph: Graph, *, size: bool = True, pad: bool = False) -> Graph:
    """``graph`` edited as timm's ``dynamic_img_size`` / ``dynamic_img_pad``.

    ``size``: a spec with a ``dynamic_img_size`` arg (Swin, Swin v2) takes it set; else
    its absolute position table (the one top-level ``learned_pos``) made ``dynamic``, the
    image wired in as its second input, so the table is resized to each input's grid.
    ``pad``: the patch embedding that makes that grid pads the image on the right and
    bottom to a patch multiple (``dynamic_pad``), the table's grid then counting
    the partial patches. A spec it cannot apply to is refused by name: no table, several
    tables, or a node after the table sized for the declared grid (found by running the
    edited model on the meta device at one more patch row)."""
    label = graph.variant or graph.name
    option = " and ".join(
        o for o, on in (("dynamic_img_size=True", size), ("dynamic_img_pad=True", pad)) if on
    )
    if size and graph.args.get(SPEC_OPTION) is not None:
        # the spec takes timm's option itself (Swin: windows padded, masks per input)
        done = graph.edits
        graph = Graph.from_source(
            graph.source, graph.variant, {**graph.overrides, SPEC_OPTION: True}
        )
        graph.edits = done
        size = False  # applied; what follows is the padding of the embedding
    tables = [n for n in graph.nodes if n.kind == "learned_pos" and n.top == n.id]
    if size and len(tables) != 1:
        found = ", ".join(n.id for n in tables) if tables else "none"
        raise _refused(
            graph,
            f"{option} resizes the one absolute position table (learned_pos) of a "
            f"ViT-like spec to each input's grid; {label} has {len(tables)} ({found})",
            "its position encoding is not one table of the patch grid: give it inputs of "
            "its declared size (set img_size=)",
        )
    table = tables[0] if size else None
    embeds = [n for n in graph.nodes if n.kind == "patch_embed" and n.inputs == [INPUT]]
    if pad and len(embeds) != 1:
        raise _refused(
            graph,
            f"dynamic_img_pad=True pads the image for the one patch embedding that reads "
            f"it; {label} has {len(embeds)}",
            "pad the images before the model",
        )
    try:
        if pad:
            graph = graph.update(embeds[0].id, dynamic_pad=True)
        if table is not None:
            edits: dict[str, Any] = {"dynamic": True, "inputs": [table.inputs[0], INPUT]}
            if pad:
                edits["dynamic_pad"] = True
            graph = graph.update(table.id, **edits)
    except SpecError as exc:  # the table is not on the patch grid of the image (PiT, TNT)
        problem = str(exc).splitlines()[0]
        raise _refused(
            graph, f"{option}: {problem}", "its table is not one of the patch grid"
        ) from None
    if table is not None:
        _run_at_another_size(graph, table.id, option)
    return graph


def _refused(graph: Graph, message: str, hint: str) -> SpecError:
    return SpecError.at(graph.source.marks.at(()), graph.variant or graph.name, message, hint)


def _run_at_another_size(graph: Graph, table: str, option: str) -> None:
    """Run the model on the meta device at one more patch row than declared; a node that
    fails there was sized for the declared grid: refused, naming it."""
    import torch

    tokens = graph.type_of(table)
    assert isinstance(tokens, Tokens) and tokens.grid is not None  # learned_pos's infer
    channels, height, width = graph.input_shape[-3:]
    step = height // tokens.grid[0]
    model = graph.build(device="meta")
    x = torch.empty(1, channels, height + step, width, device="meta")
    interpreter = _Located(model)
    try:
        with torch.no_grad():
            interpreter.run(x)
    except Exception as exc:  # any failure of the forward at that size: located below
        where = interpreter.failed or "the forward"
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise _refused(
            graph,
            f"{option}: '{where}' is sized for the declared {height}x{width} input and "
            f"fails at {height + step}x{width} ({type(exc).__name__}: {first})",
            "only a spec whose layers after the position table take any number of tokens "
            "(ViT, DeiT, DINOv2, CLIP, ...) takes a dynamic size",
        ) from None


class _Located(fx.Interpreter):
    """An fx interpreter remembering the node it failed in (named as the spec's)."""

    failed: str | None = None

    def run_node(self, n: fx.Node) -> Any:
        try:
            return super().run_node(n)
        except Exception:
            if self.failed is None:
                self.failed = n.meta.get("vitgraph_id", n.name)
            raise
