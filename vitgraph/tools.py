"""The ``graph``, ``schema``, ``diff``, ``sample``, ``palette`` and ``bench`` subcommands
(argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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
    generated files (the schema and the block catalog; in a repository checkout also
    the documentation's block reference, docs/blocks.md)."""
    from vitgraph.schema import SCHEMA_PATH

    if args.write:
        from vitgraph.block_catalog import (
            CATALOG_PATH,
            REFERENCE_PATH,
            write_catalog,
            write_reference,
        )
        from vitgraph.schema import write_schema

        write_schema()
        write_catalog()
        also = f" and {REFERENCE_PATH}" if write_reference() else ""
        print(f"wrote {SCHEMA_PATH}, {CATALOG_PATH}{also}", file=sys.stderr)
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


def cmd_sample(args: argparse.Namespace) -> int:
    """``vitgraph sample``: a PNG grid of samples (or completions) of a generative spec."""
    import time

    import torch

    from vitgraph.sampling import (
        SamplingError,
        generative_shape,
        layout_of,
        palette_of,
        sample,
        tile,
        to_images,
        write_png,
    )

    graph = _load(args.spec, args.variant, args.sets)
    length, vocab = generative_shape(graph)
    model = graph.build(device=args.device, weights=args.weights).eval()
    grid = graph.input_type.grid or (1, length)
    if args.palette:
        import numpy as np

        palette = torch.as_tensor(np.load(args.palette), dtype=torch.float32)
        if palette.ndim != 2 or palette.shape[0] < vocab or palette.shape[1] not in (1, 3):
            raise SamplingError(
                f"{args.palette}: the palette is {tuple(palette.shape)}; {graph.name} "
                f"needs ({vocab}, 3) or ({vocab}, 1) colours in [-1, 1]"
            )
    else:
        palette = palette_of(model, vocab)
    prefix = originals = None
    if args.complete:
        from vitgraph.train.data import load_data

        data = load_data(args.complete, graph.input_shape, vocab=vocab, seed=args.seed)
        originals = data.val.images[: args.n].to(args.device)
        if data.palette is not None and not args.palette:
            palette = data.palette
        prefix = originals[:, : (grid[0] // 2) * grid[1]]  # the upper half, raster order
    start = time.perf_counter()
    ids = sample(
        model,
        len(prefix) if prefix is not None else args.n,
        prefix=prefix,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        cache=not args.no_cache,
    )
    elapsed = time.perf_counter() - start
    rows = ids if originals is None else torch.cat([originals, ids])
    columns = len(ids) if originals is not None else min(len(ids), 8)
    write_png(args.out, tile(to_images(rows, palette, grid, layout_of(model)), columns))
    summary = {
        "ok": True,
        "spec": graph.name,
        "variant": graph.variant,
        "samples": len(ids),
        "out": args.out,
        "seconds": round(elapsed, 3),
        "ms_per_token": round(
            1000 * elapsed / (length - (prefix.shape[1] if prefix is not None else 0)), 3
        ),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        what = "completions" if originals is not None else "samples"
        print(f"{graph.name}: {len(ids)} {what} in {elapsed:.1f} s written to {args.out}")
    return 0


def cmd_gather(args: argparse.Namespace) -> int:
    """``vitgraph gather``: an FSDP run's sharded checkpoint as one weights file (the
    model is rebuilt from the spec the checkpoint holds; one process, no torchrun)."""
    from vitgraph.train.fsdp import gather

    out = gather(args.checkpoint, args.out)
    print(f"wrote {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``vitgraph predict``: one image through a model, shown by its task's renderer
    (``vitgraph.predict``: a classifier's top five, a detector's boxes on a PNG)."""
    from PIL import Image

    from vitgraph.predict import Prediction, renderer_for
    from vitgraph.train.data.base import normalize
    from vitgraph.train.data.coco import letterbox, pil_to_tensor

    if not Path(args.image).is_file():
        print(f"error: no image file {args.image}", file=sys.stderr)
        return 1
    graph = _load(args.spec, args.variant, args.sets)
    shape = graph.input_shape
    if len(shape) != 3:
        print(f"error: {graph.name} takes {graph.input_type}, not an image", file=sys.stderr)
        return 1
    model = graph.build(weights=args.weights).eval()
    original = pil_to_tensor(Image.open(args.image).convert("RGB" if shape[0] == 3 else "L"))
    padded, valid = letterbox(original, (shape[1], shape[2]))
    # the spec's mean and std: what `vitgraph train` feeds and converted weights expect
    data = graph.source.document.data
    fits = len(data.mean) == shape[0]
    image = normalize(padded, *((tuple(data.mean), tuple(data.std)) if fits else ()))
    mask = valid[None] if graph.extra_inputs else None
    return renderer_for(graph)(Prediction(graph, model, image[None], mask, original, args))


def cmd_convert(args: argparse.Namespace) -> int:
    """``vitgraph convert``: a reference's checkpoint as a vitgraph weights file
    (``vitgraph.interop.pretrained.convert_checkpoint``), the spec in its metadata."""
    import warnings

    from vitgraph.interop.pretrained import convert_checkpoint
    from vitgraph.weights import save_weights

    if not Path(args.checkpoint).exists():
        print(f"error: no checkpoint {args.checkpoint}", file=sys.stderr)
        return 1
    graph = _load(args.spec, args.variant, args.sets)
    model = graph.build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report below says what was adapted
        report = convert_checkpoint(model, graph, args.checkpoint, args.timm)
    save_weights(model, graph, args.out)
    adapted = [f"resampled: {', '.join(report.resampled)}"] if report.resampled else []
    adapted += [f"classifier started fresh: {', '.join(report.reset)}"] if report.reset else []
    print(f"{args.checkpoint} -> {args.out} ({graph.variant or graph.name})", *adapted, sep="; ")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``vitgraph eval``: a spec with weights on an image folder (timm's evaluation
    pre-processing, top-1/top-5), or a training checkpoint on its own validation split
    (``vitgraph.train.evaluate``)."""
    import json

    from vitgraph.train.data.base import DataError
    from vitgraph.train.evaluate import evaluate_checkpoint, evaluate_folder, is_checkpoint

    try:
        if is_checkpoint(args.spec) and not args.data:
            if args.weights or args.sets or args.variant:
                print(
                    "error: a checkpoint brings its own spec and weights: leave out "
                    "--weights, --set and --variant (or give --data to evaluate it on a folder)",
                    file=sys.stderr,
                )
                return 1
            numbers = evaluate_checkpoint(args.spec)
        else:
            if not args.data:
                print(
                    "error: --data DIR is needed: an image folder with one sub-folder per class",
                    file=sys.stderr,
                )
                return 1
            if args.spec.endswith(".safetensors") and Path(args.spec).is_file():
                # a checkpoint or a weights file: the spec travels in its metadata
                from vitgraph.train.checkpoint import load_checkpoint, rebuild_graph

                ckpt = load_checkpoint(args.spec)
                model = rebuild_graph(ckpt.meta).build()
                model.load_state_dict(ckpt.model)
            else:
                graph = _load(args.spec, args.variant, args.sets)
                model = graph.build(weights=args.weights)
            progress = not (args.no_progress or args.json)
            numbers = evaluate_folder(
                model, args.data, batch=args.batch_size, device=args.device, progress=progress
            )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(numbers, indent=2))
    else:
        print(
            "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items()
            )
        )
    return 0


def cmd_digit_boxes(args: argparse.Namespace) -> int:
    """``vitgraph digit-boxes OUT``: write the small detection set (COCO JSON + PNGs), or
    with ``--patches`` its one-digit patches (an image-class folder) for pretraining."""
    from vitgraph.train.data.coco import write_digit_boxes, write_digit_patches

    if args.patches:
        images, size = args.images or 4000, args.size or 32
        out = write_digit_patches(args.out, images=images, size=size, seed=args.seed)
        print(
            f"{images} one-digit patches written to {out} (train/, val/): vitgraph train "
            f"examples/detection/detr_backbone_classifier.yaml --data {out}"
        )
        return 0
    images, size = args.images or 400, args.size or 64
    out = write_digit_boxes(args.out, images=images, size=size, seed=args.seed)
    print(
        f"{images} images of digits with their boxes written to {out} "
        "(train.json, val.json, images/): vitgraph train detr --data " + str(out)
    )
    return 0


def cmd_palette(args: argparse.Namespace) -> int:
    """``vitgraph palette``: fit a colour palette by k-means (iGPT §3.1) and save it."""

    import numpy as np
    import torch

    from vitgraph.train.palette import fit_palette

    if args.source == "photos":
        from vitgraph.train.data.photos import photo_tiles

        pixels = photo_tiles(32)[0].reshape(-1, 3)
    else:
        from PIL import Image

        files = [
            f
            for f in sorted(Path(args.source).rglob("*"))
            if f.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
        ]
        if not files:
            print(f"error: no images under {args.source}", file=sys.stderr)
            return 1
        arrays = [np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) for f in files]
        pixels = torch.cat([torch.from_numpy(a.reshape(-1, 3)) for a in arrays]) / 127.5 - 1
    generator = torch.Generator().manual_seed(args.seed)
    if len(pixels) > args.max_pixels:  # k-means on a seeded sample of the pixels
        pixels = pixels[torch.randperm(len(pixels), generator=generator)[: args.max_pixels]]
    palette = fit_palette(pixels, args.colors, seed=args.seed)
    np.save(args.out, palette.numpy())
    print(f"palette of {args.colors} colours from {len(pixels):,} pixels written to {args.out}")
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


def _task_names(graph) -> list[str]:
    """The task names a task-selected model declares (its tail's ``names``)."""
    for node in graph.nodes:
        names = getattr(node.params, "names", None)
        if names and hasattr(node.params, "scales"):
            return list(names)
    return []


def cmd_restore(args: argparse.Namespace) -> int:
    """``vitgraph restore SPEC --task T IMAGE --out OUT.png``: one image through an image
    restoration model (tiled: any size at least the model's input), written beside the
    baseline it must beat (bicubic up-sampling, or the input itself for same-size tasks):
    ``OUT_bicubic.png`` / ``OUT_input.png``."""
    import torch
    from PIL import Image

    from vitgraph.blocks.ipt import forward_chop
    from vitgraph.train.data.coco import pil_to_tensor
    from vitgraph.train.degrade import bicubic_up

    if not Path(args.image).is_file():
        print(f"error: no image file {args.image}", file=sys.stderr)
        return 1
    names = _task_names(_load(args.spec, args.variant, args.sets))
    if not names:
        print(f"error: {args.spec} has no named restoration tasks", file=sys.stderr)
        return 1
    task = args.task or names[0]
    if task not in names:
        print(f"error: task {task!r} is not one of {', '.join(names)}", file=sys.stderr)
        return 1
    graph = _load(args.spec, args.variant, [*args.sets, f"task={names.index(task)}"])
    model = graph.build(weights=args.weights).eval()
    image = pil_to_tensor(Image.open(args.image).convert("RGB"))[None].float()
    tile = graph.input_shape[-1]
    with torch.no_grad():
        restored = forward_chop(model, image, tile=tile)
    scale = restored.shape[-1] // image.shape[-1]
    baseline = bicubic_up(image, scale)
    out = Path(args.out)
    beside = out.with_name(f"{out.stem}_{'bicubic' if scale > 1 else 'input'}{out.suffix}")
    for path, pixels in ((out, restored), (beside, baseline)):
        array = pixels[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        Image.fromarray(array).save(path)
    print(f"{task}: {out} ({restored.shape[-2]}x{restored.shape[-1]}), baseline {beside}")
    return 0
