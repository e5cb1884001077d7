"""Reduced sizes for sweeps over every shipped variant (export, numerics).

A reduction keeps what makes a variant distinct (its widths, heads, flags, block kinds,
attention layout) and shrinks what only repeats: the image (a few tokens per stage) and
the depth (one layer per stage, two where a stage alternates layer kinds). Each family
maps to its overrides, or to a function of the variant's own args returning them, so a
new variant of a shipped spec is covered without editing this table; a new spec must add
its family here (a test checks that every shipped spec has an entry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

import vitgraph
from vitgraph.spec.catalog import shipped_specs

Reduction = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]]


def _botnet(args: dict[str, Any]) -> dict[str, Any]:
    # one block of each kind per stage, in the stage's first-seen order: a stage that
    # mixes convolution (0) and attention (1) bottlenecks keeps both
    layout = [list(dict.fromkeys(stage)) for stage in args["layout"]]
    return {"image_size": 64, "layout": layout}


def _deepvit(args: dict[str, Any]) -> dict[str, Any]:
    # the "b" variants re-attend in every layer, the others only in the last ones
    every = args["reattention_layers"] >= args["depth"]
    return {"depth": 2, "reattention_layers": 2 if every else 1, "image_size": 32}


def _twins(args: dict[str, Any]) -> dict[str, Any]:
    # two layers per stage: a stage's first layer stands apart (the PEG follows it) and
    # SVT alternates windowed and global attention; a 64 px image gives 16, 8, 4, 2 px
    # grids, which a 2 px window and sr 8, 4, 2, 1 all divide
    if args.get("window") is None:  # PCPVT: global attention only
        return {"image_size": 64, "depths": [2, 2, 2, 2]}
    return {"image_size": 64, "depths": [2, 2, 2, 2], "window": 2}


REDUCTIONS: dict[str, Reduction] = {
    "botnet": _botnet,
    "cait": {"depth": 1, "class_depth": 1, "image_size": 32},
    "cct": {"depth": 1, "image_size": 32},
    "ceit": {"image_size": 32},  # twelve layers are fixed by its LCA's inputs
    "cpvt": {"depth": 2, "image_size": 32},  # the PEG sits after layer 0
    "crossvit": {
        "image_size": 48,
        "large_size": 32,
        "encoders": 2,
        "depth_small": 1,
        "depth_large": 1,
    },
    "cvt": {"image_size": 64, "depths": [1, 1, 1]},
    "image_transformer": {
        "size": 8,
        "depth": 1,
        "block_length": 16,
        "query_shape": [4, 6],
        "memory_flange": [2, 6],
    },
    "ipt": {"size": 12, "feats": 8, "heads": 2, "depth": 1},
    "igpt": lambda args: {"depth": 1, "dim": args["heads"] * 8, "positions": 16, "palette": 17},
    "deepvit": _deepvit,
    "clip_vit": lambda args: {"depth": 1, "image_size": 2 * args["patch"]},
    "deit": {"depth": 1, "image_size": 32},
    # one bottleneck per stage (DC5 keeps its dilated second block), a 64 px image
    "detr": {
        "image_size": 64,
        "depths": [1, 1, 1, 2],
        "dim": 32,
        "heads": 2,
        "enc_layers": 1,
        "dec_layers": 2,
        "ffn": 64,
        "queries": 5,
    },
    # a 96 px image, ResNet widths / 8, one block a stage; one tap and one strided level
    # (every kind of level, half the ONNX graph of four), one decoder layer
    "deformable_detr": lambda args: {
        "image_size": 96,
        "stem": 16,
        "widths": [32, 64, 128, 256],
        "depths": [1, 1, 1, 1],
        "levels": min(args["levels"], 2),
        "taps": 1,
        "dim": 32,
        "heads": 2,
        "enc_layers": 1,
        "dec_layers": 1,
        "ffn": 64,
        "queries": 5,
    },
    "deit3": lambda args: {"depth": 1, "image_size": 2 * args["patch"]},
    "eva02": {"depth": 1, "image_size": 28},
    "vit_relpos": lambda args: {"depth": 1, "image_size": 2 * args["patch"]},
    "dinov2": {"depth": 1, "image_size": 28},
    "levit": {"image_size": 64, "depths": [1, 1, 1]},
    "lvvit": {"depth": 1, "image_size": 32},
    "pit": {"depths": [1, 1, 1], "image_size": 48},
    "pvt": {"depths": [1, 1, 1, 1], "image_size": 64},
    "refiner": {"depth": 2, "image_size": 32},  # a refining layer, then a sharing one
    "sa_conv": {"image_size": 8, "depth": 1, "dim": 16, "heads": 4, "hidden": 24},
    "siglip": lambda args: {"depth": 1, "image_size": 2 * args["patch"]},
    "simplevit": {"depth": 1, "image_size": 32},
    "swin": {"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]},  # 2: a shifted layer
    "swinv2": {"image_size": 64, "window": 4, "depths": [1, 2, 1, 1]},
    "t2t_vit": {"depth": 1, "image_size": 32},
    "tnt": {"depth": 1, "image_size": 32},
    "twins": _twins,
    "vit": {"depth": 1, "image_size": 32},
    "vt": {"depths": [1, 1, 1], "modules": 2, "image_size": 64},  # module 1 is recurrent
}


def shipped() -> list[tuple[str, str, bool]]:
    """(family, variant, is the family's default) for every variant of every shipped spec."""
    rows = []
    for family, path in shipped_specs().items():  # read, not validated: cheap at collection
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        rows += [(family, name, name == data["default"]) for name in data["variants"]]
    return rows


def reduced(family: str, variant: str) -> dict[str, Any]:
    """The overrides that shrink ``variant`` of ``family`` for a sweep."""
    rule = REDUCTIONS[family]
    if callable(rule):
        return rule(vitgraph.load(variant).args)
    return dict(rule)
