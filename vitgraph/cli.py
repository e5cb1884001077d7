"""The ``vitgraph`` command line: build, validate and list specs.

Exit status: 0 on success, 2 on a spec error (bad file, refused override, unknown name),
1 on any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from vitgraph.errors import SpecError
from vitgraph.spec.overrides import parse_sets

EXIT_SPEC = 2
EXIT_FAILURE = 1


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="a spec file, a shipped spec name or a variant name")
    parser.add_argument("--variant", help="variant of the spec (default: its smallest)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an arg, input.size or node.param (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers extra block kinds",
    )


def _dynamic_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dynamic-img-size",
        action="store_true",
        help="resize the spec's position table to each input's grid (timm's dynamic_img_size)",
    )
    parser.add_argument(
        "--dynamic-img-pad",
        action="store_true",
        help="pad the image to a patch multiple (timm's dynamic_img_pad)",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitgraph", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="validate, compile, run one forward pass, summarise")
    _common(build)
    _dynamic_flags(build)
    build.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    build.add_argument("--batch", type=int, default=1, help="batch size of the forward pass")
    build.add_argument("--out", help="write the weights (safetensors, spec in the metadata)")
    build.add_argument("--seed", type=int, default=0, help="seed of the random init")
    build.add_argument(
        "--weights",
        help="load this safetensors file (every key and shape checked against the spec)",
    )
    build.add_argument(
        "--pretrained",
        action="store_true",
        help="load the variant's published weights (its spec's pretrained: table; timm's "
        "or HF's hub, or their local cache)",
    )
    build.add_argument(
        "--pretrained-file", help="with --pretrained: read the published weights from this file"
    )
    build.add_argument(
        "--allow-large",
        action="store_true",
        help="build even beyond the 2e9-parameter safety limit",
    )
    build.add_argument(
        "--optimize",
        action="store_true",
        help="rewrite the built model for inference (vitgraph.optimize) before the forward",
    )
    build.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the optimized model (implies --optimize; compile time "
        "reported apart from the forward)",
    )
    validate = sub.add_parser("validate", help="check a spec without allocating weights")
    _common(validate)
    _dynamic_flags(validate)
    from vitgraph.train.cli import add_arguments as train_arguments

    train_arguments(sub.add_parser("train", help="train a spec (digits or an image folder)"))
    listing = sub.add_parser("list", help="list shipped specs or block kinds")
    listing.add_argument("what", nargs="?", choices=["specs", "blocks"], default="specs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers extra block kinds",
    )
    show = sub.add_parser(
        "show", help="one block kind's doc and params, or what a weights file holds"
    )
    show.add_argument("what", help="a block kind (vitgraph list blocks) or a .safetensors file")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers extra block kinds",
    )
    picture = sub.add_parser("graph", help="draw the graph (mermaid, dot, svg, png)")
    _common(picture)
    picture.add_argument(
        "--format",
        default="mermaid",
        choices=["mermaid", "dot", "svg", "png"],
        help="default mermaid",
    )
    picture.add_argument(
        "--expand",
        action="store_true",
        help="draw every node (default: repeats and composites collapsed)",
    )
    picture.add_argument("--out", help="write to this file (default: stdout; png needs it)")
    schema = sub.add_parser("schema", help="print the JSON Schema of spec files")
    schema.add_argument(
        "--write",
        action="store_true",
        help="write it to vitgraph/spec.schema.json (the committed copy)",
    )
    schema.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers extra block kinds",
    )
    exporting = sub.add_parser("export", help="write an ONNX file or a torch.export program")
    _common(exporting)
    exporting.add_argument(
        "--format",
        required=True,
        choices=["onnx", "pt2"],
        help="onnx (checked with onnxruntime when installed) or pt2 (torch.export.save)",
    )
    exporting.add_argument("--out", required=True, help="the file to write")
    exporting.add_argument(
        "--batch",
        type=int,
        default=1,
        help="batch of the example input (the exported batch dim stays "
        "symbolic unless --static-batch)",
    )
    exporting.add_argument(
        "--static-batch", action="store_true", help="fix the batch dim to --batch"
    )
    exporting.add_argument("--seed", type=int, default=0, help="seed of the random init")
    exporting.add_argument("--weights", help="load these weights (safetensors) first")
    sampling = sub.add_parser("sample", help="sample images from a generative spec (PNG grid)")
    _common(sampling)
    sampling.add_argument("--weights", help="the trained weights (safetensors)")
    sampling.add_argument("--n", type=int, default=16, help="how many samples (default 16)")
    sampling.add_argument("--out", required=True, help="the PNG grid to write")
    sampling.add_argument(
        "--temperature", type=float, default=1.0, help="softmax temperature (0: greedy)"
    )
    sampling.add_argument("--top-k", type=int, help="draw from the k most likely ids only")
    sampling.add_argument("--seed", type=int, default=0, help="seed of the draws")
    sampling.add_argument(
        "--complete",
        metavar="DATA",
        help="complete the lower half of held-out images of DATA (digits): the grid "
        "shows each original above its completion",
    )
    sampling.add_argument("--palette", help="the colours of the ids: a .npy (colours, C)")
    sampling.add_argument(
        "--no-cache", action="store_true", help="recompute the prefix at every position"
    )
    sampling.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    predicting = sub.add_parser(
        "predict", help="run a model on one image: top-5 classes, or boxes drawn on a PNG"
    )
    _common(predicting)
    predicting.add_argument("image", help="the image file")
    predicting.add_argument("--weights", help="the trained weights (safetensors)")
    predicting.add_argument("--out", help="the PNG to write (detection; default prediction.png)")
    predicting.add_argument("--labels", help="class names, comma-separated, in label order")
    predicting.add_argument(
        "--threshold", type=float, default=0.5, help="least box probability drawn (default 0.5)"
    )
    converting = sub.add_parser(
        "convert",
        help="a reference's checkpoint (timm .pth/.safetensors, a saved HF model folder) "
        "as a vitgraph weights file of a spec",
    )
    converting.add_argument("checkpoint", help="the checkpoint file, or a saved HF model folder")
    converting.add_argument("--spec", required=True, help="the spec (or variant) it is for")
    converting.add_argument("--variant", help="variant of the spec (default: its smallest)")
    converting.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an arg (another size or class count: tables resampled, head fresh)",
    )
    converting.add_argument(
        "--timm",
        help="the timm model the checkpoint was saved from (default: the spec's pretrained: entry)",
    )
    converting.add_argument("--out", required=True, help="the safetensors file to write")
    evaluating = sub.add_parser(
        "eval",
        help="a model's numbers on data: top-1/top-5 on an image folder, or a training "
        "checkpoint on its own validation split",
    )
    _common(evaluating)
    evaluating.add_argument(
        "--weights", help="the weights (safetensors) of the spec; not with a checkpoint"
    )
    evaluating.add_argument(
        "--data", help="an image folder (one sub-folder per class; its val/ when it has one)"
    )
    evaluating.add_argument(
        "--batch-size", type=int, default=64, help="images per forward (default 64)"
    )
    evaluating.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    evaluating.add_argument("--no-progress", action="store_true", help="no progress bar")
    boxes = sub.add_parser(
        "digit-boxes", help="write a small detection set: digits on canvases (COCO JSON + PNGs)"
    )
    boxes.add_argument("out", help="the folder to write")
    boxes.add_argument(
        "--images", type=int, help="how many images (default 400; 4000 with --patches)"
    )
    boxes.add_argument(
        "--size", type=int, help="canvas side in pixels (default 64; 32 with --patches)"
    )
    boxes.add_argument("--seed", type=int, default=0, help="seed of the placement")
    boxes.add_argument(
        "--patches",
        action="store_true",
        help="write one-digit patches as an image-class folder instead: the set a "
        "backbone is pretrained on before DETR (--init-from)",
    )
    palette = sub.add_parser("palette", help="fit a colour palette by k-means (.npy)")
    palette.add_argument("source", help="photos (scikit-image's) or a folder of images")
    palette.add_argument("--colors", type=int, default=512, help="palette size (default 512)")
    palette.add_argument("--out", required=True, help="the .npy file to write (colours, 3)")
    palette.add_argument("--seed", type=int, default=0, help="seed of k-means")
    palette.add_argument(
        "--max-pixels", type=int, default=200_000, help="pixels sampled for k-means"
    )
    restoring = sub.add_parser(
        "restore", help="restore one image (super-resolution, denoising, deraining) to a PNG"
    )
    _common(restoring)
    restoring.add_argument("image", help="the image file")
    restoring.add_argument("--task", help="the task by name (sr2, sr3, sr4, denoise30, ...)")
    restoring.add_argument("--weights", help="the trained weights (safetensors)")
    restoring.add_argument(
        "--out", required=True, help="the PNG to write; the baseline goes beside it"
    )
    exporting.add_argument(
        "--optimize", action="store_true", help="export the model vitgraph.optimize makes"
    )
    gathering = sub.add_parser(
        "gather", help="one weights file from an FSDP run's sharded checkpoint"
    )
    gathering.add_argument("checkpoint", help="a sharded checkpoint folder (last.sharded)")
    gathering.add_argument("--out", required=True, help="the .safetensors file to write")
    bench = sub.add_parser(
        "bench", help="images/s, latency and peak memory, against timm or HF, per family"
    )
    _common(bench)
    add_bench_arguments(bench)
    compare = sub.add_parser("diff", help="nodes, params and weights that differ from A to B")
    compare.add_argument("a", help="a spec file, shipped spec or variant name")
    compare.add_argument("b", help="a spec file, shipped spec or variant name")
    compare.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override applied to both (repeatable)",
    )
    compare.add_argument("--json", action="store_true", help="print one JSON object")
    compare.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers extra block kinds",
    )
    return parser


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mode", choices=["forward", "train"], default="forward", help="default forward"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[8], metavar="N", help="batch sizes (default 8)"
    )
    parser.add_argument(
        "--dtype",
        nargs="+",
        default=["fp32"],
        choices=["fp32", "bf16", "fp16"],
        help="precisions (bf16, fp16: autocast; default fp32)",
    )
    parser.add_argument(
        "--optimize", action="store_true", help="run vitgraph.optimize first (forward only)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile both models (compile timed apart)"
    )
    parser.add_argument(
        "--against",
        choices=["timm", "hf", "plain"],
        help="time a twin alternately in this process: timm's or HF's model (same weights "
        "where a converter exists), or plain: our model as built",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=0, help="intra-op CPU threads (default: one per CPU)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--iters", type=int, default=2, help="steps per round (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory count (one step less)"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="every variant of the spec: a table and --plot"
    )
    parser.add_argument("--plot", metavar="FILE", help="with --sweep: write a PNG (matplotlib)")
    parser.add_argument(
        "--x",
        choices=["gmacs", "params"],
        default="gmacs",
        help="the plot's x axis (default gmacs)",
    )
    parser.add_argument("--table", metavar="FILE", help="also write the table as Markdown")


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        for module in getattr(args, "plugin", []):
            from vitgraph.spec.catalog import load_plugin

            load_plugin(module)
        if args.command == "list":
            return cmd_list(args)
        if args.command == "show":
            return cmd_show(args)
        if args.command == "train":
            from vitgraph.train.cli import run as cmd_train

            return cmd_train(args)
        if args.command in (
            "graph",
            "schema",
            "diff",
            "sample",
            "palette",
            "bench",
            "predict",
            "eval",
            "convert",
            "digit-boxes",
            "gather",
            "restore",
        ):
            from vitgraph import tools

            return getattr(tools, f"cmd_{args.command.replace('-', '_')}")(args)
        if args.command == "export":
            return cmd_export(args)
        return cmd_build(args) if args.command == "build" else cmd_validate(args)
    except SpecError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "errors": exc.as_dicts()}, indent=2))
        else:
            print(str(exc), file=sys.stderr)
        return EXIT_SPEC
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as exc:  # any other failure: one line, exit 1
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _load(args: argparse.Namespace):
    from vitgraph.pipeline import load

    graph = load(args.spec, args.variant, parse_sets(args.sets))
    size, pad = getattr(args, "dynamic_img_size", False), getattr(args, "dynamic_img_pad", False)
    if size or pad:
        from vitgraph.interop.create import dynamic_size

        graph = dynamic_size(graph, size=size, pad=pad)
    return graph


def cmd_validate(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    graph = _load(args)
    summary = graph.summary()
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"ok": True, **_keys(summary), "seconds": round(elapsed, 4)}, indent=2))
    else:
        from vitgraph.render import print_summary

        print_summary(graph, summary, title=f"{_title(graph)} - valid ({elapsed:.2f} s)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    import torch

    graph = _load(args)
    if not args.allow_large:
        graph.check_size()
    summary = graph.summary()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = graph.build(device=args.device, allow_large=True, weights=args.weights).eval()
    if args.pretrained or args.pretrained_file:
        from vitgraph.interop.pretrained import load_pretrained

        load_pretrained(model, graph, args.pretrained_file)
    built = time.perf_counter() - start
    x = graph.example_input(args.batch, device=args.device)
    optimized, compiled = None, None
    runnable = model
    if args.optimize or args.compile:
        from vitgraph.passes import optimize

        runnable = optimize(model, example=x)
        optimized = runnable.vitgraph_optimized
    if args.compile:
        from vitgraph.passes import compile_model

        runnable = compile_model(runnable)
        start = time.perf_counter()
        with torch.inference_mode():
            runnable(x)  # the first call compiles
        compiled = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        out = runnable(x)
    forward = time.perf_counter() - start
    out_shape = list(out.shape) if isinstance(out, torch.Tensor) else [list(o.shape) for o in out]
    if args.out:
        from vitgraph.weights import save_weights

        save_weights(model, graph, args.out)
    if args.json:
        print(
            json.dumps(
                {
                    **_keys(summary),
                    "device": args.device,
                    "batch": args.batch,
                    "forward_output_shape": out_shape,
                    "build_seconds": round(built, 4),
                    "forward_seconds": round(forward, 4),
                    "optimized": optimized,
                    "compile_seconds": None if compiled is None else round(compiled, 3),
                    "out": args.out,
                },
                indent=2,
            )
        )
        return 0
    from vitgraph.render import print_summary

    footer = (
        f"built on {args.device} in {built:.2f} s; forward of batch {args.batch} -> "
        f"{out_shape} in {forward * 1000:.1f} ms"
    )
    if optimized is not None:
        done = [f"{k} {v}" for k, v in optimized.items() if k != "seconds" and v]
        footer += f"; optimized in {optimized['seconds']:.2f} s ({', '.join(done)})"
    if compiled is not None:
        footer += f"; compiled in {compiled:.1f} s (first call, apart from the forward)"
    if args.out:
        footer += f"; weights written to {args.out}"
    print_summary(graph, summary, title=_title(graph), footer=footer)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from vitgraph.export import ExportError, export_onnx, export_pt2, resolve

    graph = _load(args)
    graph.check_size()
    start = time.perf_counter()
    model, _, _ = resolve(graph, seed=args.seed)
    if args.weights:
        from vitgraph.interop.checkpoints import load_weights

        load_weights(model, args.weights)
    if args.optimize:
        from vitgraph.passes import optimize

        model = optimize(model)
    write = export_onnx if args.format == "onnx" else export_pt2
    try:
        path = write(
            model, args.out, batch=args.batch, dynamic_batch=not args.static_batch, seed=args.seed
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    elapsed = time.perf_counter() - start
    if args.json:
        print(
            json.dumps(
                {
                    "ok": True,
                    "spec": graph.name,
                    "variant": graph.variant,
                    "format": args.format,
                    "out": str(path),
                    "input_shape": [args.batch, *graph.input_shape],
                    "dynamic_batch": not args.static_batch,
                    "seconds": round(elapsed, 3),
                },
                indent=2,
            )
        )
    else:
        print(
            f"{_title(graph)}: wrote {path} ({args.format}, input "
            f"{'N' if not args.static_batch else args.batch}x"
            f"{'x'.join(map(str, graph.input_shape))}) in {elapsed:.1f} s"
        )
    return 0


def _title(graph) -> str:
    return f"{graph.name} / {graph.variant}" if graph.variant else graph.name


def _keys(summary) -> dict[str, Any]:
    data = summary.as_dict()
    return {
        k: data[k]
        for k in ("spec", "variant", "params", "macs", "flops", "input_shape", "output_shape")
    }


def cmd_list(args: argparse.Namespace) -> int:
    from vitgraph.render import print_blocks, print_specs

    if args.what == "blocks":
        return print_blocks(as_json=args.json, plugins=bool(args.plugin))
    return print_specs(as_json=args.json)


def cmd_show(args: argparse.Namespace) -> int:
    """A block kind from the block catalog (no torch), or a weights file's metadata."""
    if args.what.endswith(".safetensors"):
        from vitgraph.weights.format import metadata_text, read_header

        if args.json:
            metadata, tensors = read_header(args.what)
            shapes = {k: list(shape) for k, (_, shape) in tensors.items()}
            print(json.dumps({"metadata": metadata, "tensors": shapes}, indent=2))
        else:
            print(metadata_text(args.what), end="")
        return 0
    from vitgraph.block_catalog import rows

    catalog = {row["kind"]: row for row in rows(bool(args.plugin))}
    row = catalog.get(args.what)
    if row is None:
        from vitgraph.errors import Location
        from vitgraph.suggest import did_you_mean

        raise SpecError.at(
            Location("<show>"),
            args.what,
            f"no block kind '{args.what}'{did_you_mean(args.what, catalog)}",
            "show takes a block kind (vitgraph list blocks) or a .safetensors file",
        )
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(block_text(row), end="")
    return 0


def block_text(row: dict[str, Any]) -> str:
    """One block kind as text: its doc whole, then each param's type, default and doc."""
    import textwrap

    lines = [f"{row['kind']} ({row['role']}; {row['origin']})", ""]
    lines += textwrap.wrap(row["doc"], 88) or ["(no doc)"]
    lines += ["", "params:" if row["params"] else "params: none"]
    width = max((len(p["name"]) for p in row["params"]), default=0)
    for param in row["params"]:
        default = "required" if param["required"] else f"default {json.dumps(param['default'])}"
        head = f"  {param['name']:<{width}}  {param['type']}, {default}"
        lines.append(head)
        for text in textwrap.wrap(param["doc"], 84):
            lines.append(f"  {'':<{width}}    {text}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
