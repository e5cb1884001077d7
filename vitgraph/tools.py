"""The ``graph``, ``schema``, ``diff`` and ``bench`` subcommands (argument parsing lives in
cli.py)."""

from __future__ import annotations

import argparse
import json
import sys


def _load(spec: str, variant: str | None, sets: list[str]):
    from vitgraph.pipeline import load
    from vitgraph.spec.overrides import parse_sets

    return load(spec, variant, parse_sets(sets))


def cmd_graph(args: argparse.Namespace) -> int:
    from vitgraph.pictures import render

    graph = _load(args.spec, args.variant, args.sets)
    data = render(graph, args.format, expand=args.expand)
    if args.out:
        with open(args.out, "wb") as handle:
            handle.write(data)
        print(f"wrote {args.out} ({len(data):,} bytes)", file=sys.stderr)
    elif args.format == "png":
        raise RuntimeError("PNG is binary: give --out FILE")
    else:
        sys.stdout.write(data.decode())
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema: the committed copy (kept current by a drift test), or the
    schema generated from the registry with a plugin; ``--write`` regenerates the two
    generated files (the schema and the block catalog)."""
    from vitgraph.schema import SCHEMA_PATH

    if args.write:
        from vitgraph.block_catalog import CATALOG_PATH, write_catalog
        from vitgraph.schema import write_schema

        write_schema()
        write_catalog()
        print(f"wrote {SCHEMA_PATH} and {CATALOG_PATH}", file=sys.stderr)
    elif args.plugin or not SCHEMA_PATH.is_file():
        from vitgraph.schema import schema_text

        sys.stdout.write(schema_text())
    else:
        sys.stdout.write(SCHEMA_PATH.read_text(encoding="utf-8"))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from vitgraph.diffing import diff, format_diff

    result = diff(_load(args.a, None, args.sets), _load(args.b, None, args.sets))
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(format_diff(result))
    return 0


# ---------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    """Time a model (and its twin) over the batch and dtype sweep, or every variant of a
    spec with ``--sweep``; print a table (or one JSON object) with the machine's load."""
    import torch

    from vitgraph.bench import matmul_gflops, set_threads
    from vitgraph.bench_run import measure, plot, ratio, resolve, sweep
    from vitgraph.spec.overrides import parse_sets

    if args.plot and not args.sweep:
        raise RuntimeError("--plot draws a family: add --sweep")
    threads = set_threads(args.threads)
    settings = dict(
        mode=args.mode,
        optimize=args.optimize,
        compile=args.compile,
        repeats=args.repeats,
        iters=args.iters,
        device=args.device,
        memory=not args.no_memory,
    )
    rows, loads, ratios = [], [], []

    def run(pair) -> list:
        out = []
        for batch in args.batch:
            for dtype in args.dtype:
                measured, load = measure(pair, batch=batch, dtype=dtype, **settings)
                out += measured
                loads.append(load)
                value = ratio(measured)
                if value is not None:
                    ratios.append(
                        {"model": pair.label, "batch": batch, "dtype": dtype, "ratio": value}
                    )
        return out

    if args.sweep:
        rows = sweep(args.spec, run, seed=args.seed)
    else:
        pair = resolve(args.spec, args.variant, parse_sets(args.sets), args.against, args.seed)
        rows = run(pair)
    gflops = matmul_gflops() if args.device == "cpu" and args.mode == "forward" else None
    worst = max(loads, key=lambda load: load.others or 0.0)
    machine = {
        "device": args.device,
        "threads": threads,
        "cpus": worst.cpus,
        "torch": torch.__version__,
        "other_processes_cpus": None if worst.others is None else round(worst.others, 2),
        "busy": worst.busy,
        "matmul_gflops": None if gflops is None else round(gflops, 1),
    }
    if args.plot:
        plot(rows, args.plot, args.x, title=f"{args.spec}: {args.mode}, batch {args.batch[0]}")
    table = _bench_table(rows, gflops)
    if args.table:
        with open(args.table, "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    if args.json:
        print(
            json.dumps(
                {
                    "spec": args.spec,
                    "machine": machine,
                    "results": [r.as_dict() for r in rows],
                    "ratios": ratios,
                    "plot": args.plot,
                },
                indent=2,
            )
        )
        return 0
    print(
        f"vitgraph bench {args.spec}: {args.mode} on {args.device}, {threads} thread(s); "
        f"{worst.describe()}"
    )
    print(table)
    for entry in ratios:
        print(
            f"{entry['model']} batch {entry['batch']} {entry['dtype']}: vitgraph / twin "
            f"images/s x{entry['ratio']:.3f}"
        )
    if args.plot:
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _bench_table(rows: list, matmul: float | None) -> str:
    """A Markdown table of the measurements (GFLOP/s share of a matmul when known)."""
    head = "| model | side | batch | dtype | optimized | compiled | images/s | p50 ms | p90 ms |"
    head += " peak MiB | compile s | GMACs | params |"
    if matmul:
        head += " of matmul GFLOP/s |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [
            r.model,
            r.side,
            str(r.batch),
            r.dtype,
            "yes" if r.optimized else "no",
            "yes" if r.compiled else "no",
            f"{r.images_per_s:.1f}",
            f"{r.p50_ms:.1f}",
            f"{r.p90_ms:.1f}",
            "-" if r.peak_mib is None else f"{r.peak_mib:.1f}",
            "-" if r.compile_s is None else f"{r.compile_s:.1f}",
            "-" if r.gmacs is None else f"{r.gmacs:.2f}",
            f"{(r.params or 0) / 1e6:.2f}M",
        ]
        if matmul:  # the matmul timed in turns with this row's model, when there was one
            ceiling = r.extra.get("matmul_gflops") or matmul
            cells.append("-" if r.gflops is None else f"{r.gflops / ceiling:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
