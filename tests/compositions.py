"""Generated compositions (#24 item 1): specs a researcher would write by hand, put
together from the shipped kinds, and what every one that validates must do.

A flat composition is tokenizer × prefix tokens × position × layer composite × attention
kind × pooling × head (a distillation pair when there is a distillation token); a staged
one is a stage family (Swin, PiT, PVT, Twins, CvT, LeViT) followed by a token-level tail
(a class token with class attention or an encoder layer, or pooling alone). ``exercise``
validates a spec and, when it validates, runs the whole model API on it: forward,
``forward_features`` / ``forward_head`` (which must give forward's logits),
``pre_logits``, grad checkpointing (same logits, gradients reach every parameter),
``reset_classifier`` to 5 and to 0 classes, and ``torch.export`` (same logits; ONNX as
well when asked). A spec that does not validate must raise a SpecError whose every
problem is located; anything else escaping is a failure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml
from hypothesis import strategies as st

import vitgraph
from vitgraph import SpecError

SIZE = 32  # the image side: a few tokens per stage keeps each case well under a second
DIM = 32
CLASSES = 7

# -- the flat family ------------------------------------------------------------------

#: tokenizers of a 32x32 image (each entry list makes tokens of width DIM)
TOKENIZERS: dict[str, list[dict[str, Any]]] = {
    "patch_embed": [{"id": "embed", "kind": "patch_embed", "patch": 4, "dim": DIM}],
    "overlapping_patches": [
        {"id": "embed", "kind": "patch_embed", "patch": 7, "stride": 4, "padding": 3, "dim": DIM}
    ],
    "conv_tokenizer": [
        {"id": "embed", "kind": "conv_tokenizer", "dim": DIM, "layers": 2, "kernel": 3}
    ],
    "conv_embed": [
        {"id": "embed", "kind": "conv_embed", "dim": DIM, "patch": 7, "stride": 4, "padding": 2}
    ],
    "image_to_tokens": [
        {"id": "embed", "kind": "image_to_tokens", "dim": DIM, "patch": 2, "channels": 16}
    ],
    "deepvit_stem": [{"id": "embed", "kind": "deepvit_stem", "patch": 4, "dim": DIM, "width": 16}],
}
PREFIXES = ("none", "cls", "cls_dist", "late_cls")
POSITIONS = ("none", "learned_pos", "learned_pos_patches_only", "sinusoid_pos", "peg")
#: the attention kinds a layer composite chooses, with the composite params they need
ATTENTIONS: dict[str, dict[str, Any]] = {
    "mhsa": {},
    "talking_heads": {},
    "reattention": {},
    "refined_attention": {},
    "sr_attention": {"sr_ratio": 2},
    "grouped_attention": {"window": 4},
    "shifted_window_attention": {"window": 4, "shift": "${2 if i % 2 else 0}"},
    "conv_attention": {},
    "tnt_attention": {},
}
#: layer composites: those that choose their attention, and fixed ones
LAYERS = ("encoder_layer", "deepvit_layer", "cct_layer", "lvvit_layer", "ceit_layer", "pvt_layer")
CHOOSING = ("encoder_layer", "deepvit_layer")
POOLINGS = ("take_cls", "mean_pool", "mean_pool_all", "seq_pool", "class_attention")
PATCH_POOLINGS = ("mean_pool", "mean_pool_all", "seq_pool")
SPATIAL = ("sr_attention", "grouped_attention", "shifted_window_attention")
HEADS = ("linear_head", "bn_linear_head")


@st.composite
def flat(draw: st.DrawFn) -> dict[str, Any]:
    tokenizer = draw(st.sampled_from(sorted(TOKENIZERS)))
    graph: list[dict[str, Any]] = [dict(e) for e in TOKENIZERS[tokenizer]]
    layer = draw(st.sampled_from(LAYERS))
    entry: dict[str, Any] = {"id": "blocks", "kind": layer, "repeat": draw(st.integers(1, 2))}
    entry["heads"] = 2
    attention = draw(st.sampled_from(sorted(ATTENTIONS))) if layer in CHOOSING else None
    if attention is not None:
        entry["attention"] = attention
        entry.update(ATTENTIONS[attention])
    # attention over windows or a sub-sampled map has no place for a class token: it joins
    # after the layers then (CaiT's late class token)
    spatial = attention in SPATIAL or layer == "pvt_layer"
    prefix = draw(st.sampled_from(("none", "late_cls") if spatial else PREFIXES))
    position = draw(st.sampled_from(POSITIONS))
    position_first = draw(st.booleans())  # CaiT adds the table before the class token
    tokens = []
    if prefix in ("cls", "cls_dist"):
        tokens.append({"id": "cls_token", "kind": "cls_token"})
    if prefix == "cls_dist":
        tokens.append({"id": "dist_token", "kind": "dist_token"})
    table = _position(position)
    graph += (table + tokens) if position_first else (tokens + table)
    if layer == "pvt_layer":
        entry["sr_ratio"] = 2
    graph.append(entry)
    if prefix == "late_cls":
        graph.append({"id": "cls_token", "kind": "cls_token"})
    graph.append({"id": "norm", "kind": "layernorm"})
    pooling = draw(st.sampled_from(POOLINGS if prefix != "none" else PATCH_POOLINGS))
    graph += _pooling(pooling)
    tokens_read = "norm_cls" if pooling == "class_attention" else "norm"
    head = draw(st.sampled_from(HEADS))
    graph += _heads(head, distilled=prefix == "cls_dist", tokens=tokens_read)
    return _spec("flat", graph)


def _position(position: str) -> list[dict[str, Any]]:
    if position == "none":
        return []
    if position == "learned_pos_patches_only":
        return [{"id": "pos_embed", "kind": "learned_pos", "include_prefix": False}]
    return [{"id": "pos_embed", "kind": position}]


def _pooling(pooling: str) -> list[dict[str, Any]]:
    if pooling == "class_attention":  # CaiT: class attention, then the class token
        return [
            {"id": "blocks_token_only", "kind": "class_attention_layer", "heads": 2},
            {"id": "norm_cls", "kind": "layernorm"},
            {"id": "pool", "kind": "take_cls"},
        ]
    if pooling == "mean_pool_all":
        return [{"id": "pool", "kind": "mean_pool", "include_prefix": True}]
    return [{"id": "pool", "kind": pooling}]


def _heads(head: str, distilled: bool, tokens: str = "norm") -> list[dict[str, Any]]:
    """The classifier, and DeiT's distillation head on ``tokens`` (what the pooling reads)."""
    out: list[dict[str, Any]] = [{"id": "head", "kind": head, "classes": CLASSES}]
    if distilled:
        out.append({"id": "head_dist", "kind": "distill_head", "inputs": ["head", tokens]})
    return out


# -- stage families, then a token-level tail ------------------------------------------


def _swin() -> list[dict[str, Any]]:
    return [
        {"id": "patch_embed", "kind": "patch_embed", "patch": 4, "dim": DIM, "norm": True},
        {
            "id": "layers",
            "kind": "swin_stage",
            "repeat": 2,
            "depth": 2,
            "heads": "${2 * 2 ** i}",
            "window": 4,
            "downsample": "${i > 0}",
        },
    ]


def _pit() -> list[dict[str, Any]]:
    return [
        {"id": "patch_embed", "kind": "patch_embed", "patch": 4, "dim": DIM},
        {"id": "pos_embed", "kind": "learned_pos"},
        {"id": "cls_token", "kind": "cls_token"},
        {
            "id": "transformers",
            "kind": "pit_stage",
            "repeat": 2,
            "pool": "${i > 0}",
            "depth": 1,
            "heads": "${2 * 2 ** i}",
            "head_dim": 16,
        },
    ]


def _pvt(class_token: bool) -> list[dict[str, Any]]:
    return [
        {
            "id": "stages",
            "kind": "pvt_stage",
            "repeat": 2,
            "to_image": "${i > 0}",
            "class_token": f"${{i == 1 and {class_token}}}",
            "patch": "${4 if i == 0 else 2}",
            "dim": "${32 * 2 ** i}",
            "depth": 1,
            "heads": "${2 ** i}",
            "sr_ratio": "${2 - i}",
        },
    ]


def _twins(window: bool) -> list[dict[str, Any]]:
    return [
        {
            "id": "stage1",
            "kind": "twins_stage",
            "patch": 4,
            "dim": DIM,
            "heads": 1,
            "depth": 2,
            "sr_ratio": 2,
            "window": 4 if window else None,
        },
        {
            "id": "stage2",
            "kind": "twins_stage",
            "dim": 2 * DIM,
            "heads": 2,
            "depth": 2,
            "sr_ratio": 1,
            "window": 2 if window else None,
        },
    ]


def _cvt(cls: bool) -> list[dict[str, Any]]:
    return [
        {
            "id": "stage0",
            "kind": "cvt_stage",
            "dim": DIM,
            "heads": 1,
            "depth": 1,
            "patch": 7,
            "stride": 4,
            "padding": 2,
        },
        {
            "id": "stage1",
            "kind": "cvt_stage",
            "dim": 2 * DIM,
            "heads": 2,
            "depth": 1,
            "patch": 3,
            "stride": 2,
            "padding": 1,
            "cls": cls,
        },
    ]


def _levit() -> list[dict[str, Any]]:
    return [
        {"id": "stem", "kind": "levit_stem", "dim": DIM, "convs": 2},
        {"id": "stage0", "kind": "levit_layer", "heads": 2, "key_dim": 8},
        {"id": "down1", "kind": "levit_downsample", "dim": 2 * DIM, "heads": 4, "key_dim": 8},
        {"id": "stage1", "kind": "levit_layer", "heads": 4, "key_dim": 8},
    ]


STAGES = ("swin", "pit", "pvt", "pvt_cls", "twins_svt", "twins_pcpvt", "cvt", "cvt_cls", "levit")
TAILS = ("pool", "class_attention", "encoder_layer", "cls_encoder_layer", "dist_class_attention")


@st.composite
def staged(draw: st.DrawFn) -> dict[str, Any]:
    family = draw(st.sampled_from(STAGES))
    graph = {
        "swin": _swin,
        "pit": _pit,
        "pvt": lambda: _pvt(False),
        "pvt_cls": lambda: _pvt(True),
        "twins_svt": lambda: _twins(True),
        "twins_pcpvt": lambda: _twins(False),
        "cvt": lambda: _cvt(False),
        "cvt_cls": lambda: _cvt(True),
        "levit": _levit,
    }[family]()
    tail = draw(st.sampled_from(TAILS))
    distilled = tail == "dist_class_attention"
    if tail in ("class_attention", "dist_class_attention"):
        graph.append({"id": "cls_new", "kind": "cls_token"})
        if distilled:
            graph.append({"id": "dist_new", "kind": "dist_token"})
        graph.append(
            {
                "id": "blocks_token_only",
                "kind": "class_attention_layer",
                "heads": 2,
                "repeat": draw(st.integers(1, 2)),
            }
        )
    elif tail == "encoder_layer":
        graph.append({"id": "blocks", "kind": "encoder_layer", "heads": 2})
    elif tail == "cls_encoder_layer":
        graph.append({"id": "cls_new", "kind": "cls_token"})
        graph.append({"id": "blocks", "kind": "encoder_layer", "heads": 2})
    graph.append({"id": "norm", "kind": "layernorm"})
    has_cls = tail.startswith(("class", "dist", "cls")) or family in ("pit", "pvt_cls", "cvt_cls")
    pooling = draw(st.sampled_from(["take_cls", "mean_pool"] if has_cls else ["mean_pool"]))
    graph.append({"id": "pool", "kind": pooling})
    graph += _heads(draw(st.sampled_from(HEADS)), distilled=distilled)
    return _spec(f"staged_{family}", graph)


def _spec(name: str, graph: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vitgraph": 1, "name": name, "input": {"channels": 3, "size": SIZE}, "graph": graph}


def compositions() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(flat(), staged())


def as_yaml(spec: dict[str, Any]) -> str:
    return yaml.safe_dump(spec, sort_keys=False, width=1000)


# -- what every composition that validates must do ------------------------------------


def _close(ours: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    tolerance = 1e-4 * max(1.0, expected.abs().max().item())
    assert ours.shape == expected.shape, (
        f"{what}: shape {tuple(ours.shape)} != {tuple(expected.shape)}"
    )
    worst = (ours - expected).abs().max().item()
    assert worst <= tolerance, f"{what}: max |Δ| {worst:.3g} > {tolerance:.3g}"


def exercise(text: str, onnx: bool = False) -> str:
    """'ok', or 'spec error: <message>' for a spec that does not validate (every problem
    located); raises on anything else (an AssertionError names the API that failed)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: a second thread only adds contention
    try:
        return _exercise(text, onnx)
    finally:
        torch.set_num_threads(threads)


def _exercise(text: str, onnx: bool) -> str:
    try:
        graph = vitgraph.load("composition.yaml", text=text)
        model = graph.build().eval()
    except SpecError as exc:
        for problem in exc.problems:
            assert problem.location.file, f"unlocated problem: {problem}"
        return f"spec error: {exc.problems[0].message}"
    x = torch.randn(2, *graph.input_shape)
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        _close(model.forward_head(features), logits, "forward_head(forward_features(x))")
        pre = model.forward_head(features, pre_logits=True)
        assert pre.shape == (2, model.num_features), f"pre_logits {tuple(pre.shape)}"
    program = _export(model, x)
    with torch.no_grad():
        _close(program.module()(x), logits, "torch.export program")
    if onnx:
        _onnx(program, model, x)
    _checkpointing(model, x)
    model.eval()
    model.reset_classifier(5)
    with torch.no_grad():
        assert model(x).shape == (2, 5), "reset_classifier(5)"
    model.reset_classifier(0)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, model.num_features), f"reset_classifier(0): {tuple(out.shape)}"
    return "ok"


def _checkpointing(model: torch.nn.Module, x: torch.Tensor) -> None:
    """In training: the same outputs with grad checkpointing on, and gradients reach
    every parameter through the checkpointed units."""
    model.train()
    torch.manual_seed(0)  # the same dropout draws in both (checkpointing replays them)
    plain = _listed(model(x))
    model.set_grad_checkpointing(True)
    torch.manual_seed(0)
    checkpointed = _listed(model(x))
    for ours, expected in zip(checkpointed, plain, strict=True):
        _close(ours.detach(), expected.detach(), "forward with grad checkpointing")
    sum(out.square().mean() for out in checkpointed).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:3]} under checkpointing"
    model.set_grad_checkpointing(False)


def _listed(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _export(model: torch.nn.Module, x: torch.Tensor):
    from vitgraph.export import export_program

    return export_program(model, x, name="composition")


def _onnx(program, model: torch.nn.Module, x: torch.Tensor) -> None:
    from vitgraph.export import onnx_difference, program_to_onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = program_to_onnx(program, Path(tmp) / "composition.onnx", name="composition")
        diff, allowed = onnx_difference(path, model, x)
    assert diff <= allowed, f"ONNX differs from eager by {diff:.3g} (allowed {allowed:.3g})"
