"""The targets of issue #21, measured as a user would (``vitgraph.bench``): one process,
batch 8, fp32 forward, each pair alternating, the machine's load printed with each line.

- ``vitgraph.optimize`` vs timm eager (HF for CvT-13 and PVT-Tiny; CeiT-T, which has no
  reference package, vs the plain vitgraph model): target >= 1.15 on LeViT-128S,
  BoTNet26t-256, CvT-13 and CeiT-T, >= 1.0 on every other twin;
- ``--compile``: our optimized graph under torch.compile vs timm's model under
  torch.compile (same mode, same run), compile time apart: target >= 1.0;
- ViT-S/16's forward GFLOP/s over a 2048² matmul's in the same process: target >= 0.90.

Usage: python benchmarks/bench_optimize.py [--threads 1] [--repeats 5] [--models ...]
       [--compile vit_s_16 levit_128s] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vitgraph.bench import matmul_gflops, set_threads
from vitgraph.bench_run import measure, ratio, resolve

#: variant -> (twin library, target ratio)
TARGETS = {
    "vit_s_16": ("timm", 1.0),
    "deit_ti_distilled": ("timm", 1.0),
    "pit_s": ("timm", 1.0),
    "twins_svt_s": ("timm", 1.0),
    "cait_xxs24": ("timm", 1.0),
    "swin_t": ("timm", 1.0),
    "crossvit_9": ("timm", 1.0),
    "tnt_s": ("timm", 1.0),
    "levit_128s": ("timm", 1.15),
    "botnet26t_256": ("timm", 1.15),
    "cvt_13": ("hf", 1.15),
    "pvt_tiny": ("hf", 1.0),
    "ceit_t": ("plain", 1.15),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=list(TARGETS))
    parser.add_argument("--compile", nargs="*", default=[], help="variants to compile too")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    results: dict[str, dict] = {}
    gflops = matmul_gflops()
    print(f"{threads} thread(s); 2048^2 fp32 matmul: {gflops:.1f} GFLOP/s", flush=True)
    runs = [(name, False) for name in args.models] + [(name, True) for name in args.compile]
    for name, compiled in runs:
        library, target = TARGETS[name]
        pair = resolve(name, against=library)
        rows, load = measure(
            pair,
            batch=args.batch,
            optimize=True,
            compile=compiled,
            repeats=args.repeats,
            iters=args.iters,
            memory=False,
        )
        value = ratio(rows)
        ours = rows[0]
        key = f"{name}{' compiled' if compiled else ''}"
        results[key] = {
            "against": library,
            "ratio": value,
            "target": 1.0 if compiled else target,
            "ours_images_per_s": ours.images_per_s,
            "twin_images_per_s": rows[1].images_per_s,
            # the matmul timed in turns with the two models (else the one at the start)
            "matmul_share": None
            if ours.gflops is None
            else ours.gflops / ours.extra.get("matmul_gflops", gflops),
            "matmul_gflops": ours.extra.get("matmul_gflops"),
            "compile_s": [r.compile_s for r in rows],
            "same_weights": pair.same_weights,
            "memory_format": ours.extra.get("memory_format"),
            "other_processes_cpus": load.others,
        }
        met = "met" if value is not None and value >= results[key]["target"] else "MISSED"
        compile_note = (
            f"; compile {rows[0].compile_s:.0f} s vs {rows[1].compile_s:.0f} s" if compiled else ""
        )
        print(
            f"{key:24s} vs {library:5s}: x{value:.3f} (target {results[key]['target']}: {met}); "
            f"{ours.images_per_s:.1f} vs {rows[1].images_per_s:.1f} img/s; "
            f"{results[key]['matmul_share']:.2f} of matmul GFLOP/s; "
            f"{results[key]['memory_format']}{compile_note} "
            f"[{load.describe()}]",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"matmul_gflops": gflops, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
