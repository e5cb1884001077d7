"""The ``graph``, ``schema`` and ``diff`` subcommands (argument parsing lives in cli.py)."""

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
