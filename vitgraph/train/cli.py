"""``vitgraph train SPEC``: the command-line face of :func:`vitgraph.train.loop.train`.

Exit status as every vitgraph command: 2 on a spec error, 1 on a data or other error.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "spec",
        nargs="?",
        default=None,
        help="a spec file, a shipped spec name or a variant name (optional "
        "with --recipe or --resume)",
    )
    parser.add_argument("--variant", help="variant of the spec (default: its smallest)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec arg, input.size or node.param (repeatable)",
    )
    parser.add_argument("--recipe", help="a recipe file or a shipped recipe (simplevit)")
    parser.add_argument(
        "--data",
        help="'digits' (scikit-learn's, upsampled; default) or a "
        "folder with one sub-folder of images per class",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global micro-batch (split over ranks)")
    parser.add_argument("--accumulate", type=int, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--min-lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument(
        "--warmup-epochs", type=float, help="default 1, or a tenth of a run under 10 epochs"
    )
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument("--grad-clip", type=float)
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: on for CUDA)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="cpu or cuda (default cpu)")
    parser.add_argument(
        "--threads", type=int, help="CPU threads per process (default: cores / processes)"
    )
    parser.add_argument("--out", help="folder for last.safetensors and model.safetensors")
    parser.add_argument(
        "--resume", help="a last.safetensors (or an FSDP run's last.sharded) to continue from"
    )
    parser.add_argument(
        "--strategy",
        choices=["ddp", "fsdp"],
        help="under torchrun: ddp (default) or fsdp (parameters, gradients and optimizer "
        "state sharded over the processes; sharded checkpoints)",
    )
    parser.add_argument(
        "--grad-checkpointing",
        action="store_true",
        default=None,
        help="recompute each repeat unit's activations in the backward (less memory)",
    )
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], help="default adamw")
    parser.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    parser.add_argument("--stop-after", type=int, help="stop after this epoch")
    parser.add_argument("--mixup", type=float, help="MixUp alpha (0: off)")
    parser.add_argument("--randaugment", type=int, nargs=2, metavar=("OPS", "MAGNITUDE"))
    parser.add_argument(
        "--teacher", help="checkpoint, spec (+ --teacher-checkpoint) or timm:<name>"
    )
    parser.add_argument("--teacher-checkpoint")
    parser.add_argument("--distill", choices=["hard", "soft"])
    parser.add_argument("--distill-alpha", type=float)
    parser.add_argument("--distill-tau", type=float)
    parser.add_argument("--mix-token", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--token-label-weight", type=float)
    parser.add_argument("--cosine-weight", type=float, help="over-smoothing: cosine penalty")
    parser.add_argument(
        "--contrastive-weight", type=float, help="over-smoothing: patch contrastive loss"
    )
    parser.add_argument("--patch-mix-weight", type=float, help="over-smoothing: patch mixing loss")
    parser.add_argument(
        "--init-from", help="start from these weights (safetensors; what fits by name and shape)"
    )
    parser.add_argument(
        "--backbone-lr", type=float, help="detection: the backbone's lr over --lr (default 0.1)"
    )
    parser.add_argument(
        "--pretrained",
        help="fine-tune from these weights (safetensors): tables resampled to the spec's "
        "size, a classifier of another class count started fresh",
    )
    parser.add_argument(
        "--layer-decay",
        type=float,
        help="layer-wise lr decay (e.g. 0.65): each layer's lr is this factor times the one above",
    )
    parser.add_argument(
        "--ema-decay", type=float, help="keep an EMA of the weights with this decay (e.g. 0.9998)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the history as JSON")


_SETTINGS = [
    "data",
    "epochs",
    "batch_size",
    "accumulate",
    "lr",
    "min_lr",
    "weight_decay",
    "warmup_epochs",
    "label_smoothing",
    "grad_clip",
    "amp",
    "seed",
    "device",
    "threads",
    "out",
    "resume",
    "stop_after",
    "strategy",
    "grad_checkpointing",
    "optimizer",
    "momentum",
    "mixup",
    "randaugment",
    "teacher",
    "teacher_checkpoint",
    "distill",
    "distill_alpha",
    "distill_tau",
    "mix_token",
    "token_label_weight",
    "cosine_weight",
    "contrastive_weight",
    "patch_mix_weight",
    "init_from",
    "backbone_lr",
    "pretrained",
    "layer_decay",
    "ema_decay",
]


def run(args: argparse.Namespace) -> int:
    """Called by ``vitgraph.cli`` inside its error handling (SpecError -> 2)."""
    from vitgraph.spec.overrides import parse_sets
    from vitgraph.train.data import DataError
    from vitgraph.train.loop import train

    settings = {name: getattr(args, name) for name in _SETTINGS}
    if args.no_progress:
        settings["progress"] = False
    overrides = parse_sets(args.sets) or None
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    try:
        result = train(args.spec, args.variant, overrides, recipe=args.recipe, log=log, **settings)
    except DataError as exc:
        print(f"data error: {exc}", file=sys.stderr)
        return 1
    if args.json and result.main:  # under torchrun, rank 0 reports
        print(
            json.dumps(
                {
                    "spec": result.graph.name,
                    "variant": result.graph.variant,
                    "history": result.history,
                    "seconds": round(result.seconds, 2),
                    "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                },
                indent=2,
            )
        )
    return 0
