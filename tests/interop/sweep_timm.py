"""The sweep of issue #22: every registered timm name whose entrypoint builds a class
``from_timm`` converts, reduced in depth (and image size where the class allows it) so
the whole registry fits a time budget, every parameter and BatchNorm statistic re-drawn,
then compared with its twin (``tests/interop/parity.py``: eval logits, train logits,
gradients, BatchNorm statistics). Each name ends in one of:

- ``equal``: the twin computes the reference's function;
- ``refused``: ``from_timm`` raised a SpecError naming the option (the table
  ``vitgraph.interop.options`` says which issue builds it);
- ``wrong`` (silently different) or ``crash`` (any other exception): both fail.

    python -m tests.interop.sweep_timm [--only CLASS[,CLASS]] [--names GLOB] [--budget SECONDS]

exits 1 when any name is wrong or crashed (or the budget ran out before the end).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import multiprocessing
import re
import sys
import time
import traceback
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import astuple, dataclass, replace

import torch
from torch import nn

_VIT = ("VisionTransformer", "VisionTransformerDistilled")
#: the timm modules whose entrypoints build a converted class, and which classes
#: (vision_transformer_hybrid and vitamin build VisionTransformer with a CNN stem;
#: byoanet and mobilevit build ByobNet)
MODULES = {
    "vision_transformer": _VIT,
    "vision_transformer_hybrid": _VIT,
    "vitamin": _VIT,
    "deit": _VIT,
    "cait": ("Cait",),
    "twins": ("Twins",),
    "swin_transformer": ("SwinTransformer",),
    "swin_transformer_v2": ("SwinTransformerV2",),
    "eva": ("Eva",),
    "vision_transformer_relpos": ("VisionTransformerRelPos",),
    "tnt": ("TNT",),
    "crossvit": ("CrossVit",),
    "levit": ("Levit", "LevitDistilled"),
    "pit": ("PoolingVisionTransformer",),
    "byobnet": ("ByobNet",),
    "byoanet": ("ByobNet",),
    "mobilevit": ("ByobNet",),
}


@dataclass
class Row:
    name: str
    cls: str
    outcome: str  # equal | refused | wrong | crash
    detail: str = ""
    seconds: float = 0.0


def candidates(only: set[str] | None, pattern: str | None) -> list[str]:
    """Every registered (not deprecated) timm name of the modules that may build a class
    of ``only``."""
    import timm

    names = []
    for module, classes in MODULES.items():
        if only is None or only & set(classes):
            names += timm.list_models(module=module)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def reduced_kwargs(meta: nn.Module) -> dict[str, object]:
    """Constructor overrides that shrink a model (seen on meta) without changing its kind
    of blocks: fewer layers per stage, a smaller image where nothing is sized by it, and
    no dropout (train-mode logits are compared with the same seed, not the same masks)."""
    cls = type(meta).__name__
    kwargs: dict[str, object] = {"drop_rate": 0.0, "drop_path_rate": 0.0}
    if getattr(meta, "num_classes", None) == 0:
        # a headless entrypoint (DINOv2, ...): a classifier added so the sweep compares
        # logits; headless twins themselves are checked by tests/model/test_intermediates.py
        kwargs["num_classes"] = 10
    if cls in (
        "VisionTransformer",
        "VisionTransformerDistilled",
        "Cait",
        "Eva",
        "VisionTransformerRelPos",
    ):
        kwargs["depth"] = min(len(meta.blocks), 2)
        embed = meta.patch_embed
        if type(embed).__name__ == "PatchEmbed" and embed.patch_size[0] == embed.patch_size[1]:
            kwargs["img_size"] = 4 * embed.patch_size[0]
        if cls == "Cait":
            kwargs["depth_token_only"] = 1
        if cls == "Eva" and hasattr(meta.blocks[0].attn, "num_kv_heads"):
            # per-block key/value heads (Sapiens2): one entry per kept block
            heads = [b.attn.num_kv_heads for b in meta.blocks]
            kwargs["num_kv_heads"] = tuple(heads[: kwargs["depth"]])
    elif cls == "TNT":
        kwargs.update(depth=2, img_size=4 * meta.pixel_embed.patch_size[0])
    elif cls in ("Twins",):
        kwargs["depths"] = tuple(min(len(b), 2) for b in meta.blocks)
    elif cls in ("SwinTransformer", "SwinTransformerV2"):
        kwargs["depths"] = tuple(min(len(layer.blocks), 2) for layer in meta.layers)
    elif cls in ("Levit", "LevitDistilled"):
        kwargs["depth"] = tuple(1 for _ in meta.stages)
    elif cls == "PoolingVisionTransformer":
        kwargs["depth"] = tuple(1 for _ in meta.transformers)
    # CrossVit: every entrypoint passes depth itself (an override is a TypeError); the
    # models are small enough as they are
    elif cls == "ByobNet":
        kwargs.update(_byobnet_blocks(meta))
    return kwargs


def _byobnet_blocks(meta: nn.Module) -> dict[str, object]:
    """At most two blocks per stage (interleaved stages keep their pattern)."""
    cfg = getattr(meta, "_sweep_cfg", None)
    if cfg is None:
        return {}
    blocks = tuple(
        b if isinstance(b, tuple | list) else replace(b, d=min(b.d, 2)) for b in cfg.blocks
    )
    return {"blocks": blocks}


def _model_cfg(name: str):
    """The ByoModelCfg an entrypoint builds from (its module's ``model_cfgs`` table)."""
    import importlib

    from timm.models import _registry

    module = importlib.import_module(f"timm.models.{_registry._model_to_module[name]}")
    return getattr(module, "model_cfgs", {}).get(name)


def check(name: str, supported: set[str]) -> Row | None:
    """One name's outcome (None when its entrypoint builds another class)."""
    import timm

    import vitgraph
    from tests.helpers import redraw_
    from tests.interop.parity import compare, timm_state_map
    from vitgraph import SpecError

    start = time.perf_counter()
    try:
        with torch.device("meta"):
            meta = timm.create_model(name, pretrained=False)
    except Exception as error:  # timm itself cannot build it: not ours to judge
        return Row(name, "?", "skipped", f"timm cannot build it: {type(error).__name__}")
    cls = type(meta).__name__
    if cls not in supported:
        return None
    if cls == "ByobNet":
        meta._sweep_cfg = _model_cfg(name)  # type: ignore[assignment]
    kwargs = reduced_kwargs(meta)
    del meta
    torch.manual_seed(0)
    try:
        reference = timm.create_model(name, pretrained=False, **kwargs)
    except Exception as error:
        detail = f"the reduced reference does not build ({kwargs}): {error}"
        return Row(name, cls, "crash", detail, time.perf_counter() - start)
    redraw_(reference)
    reference.eval()
    try:
        ours = vitgraph.from_timm(reference)
    except SpecError as error:
        return Row(name, cls, "refused", _option(str(error)), time.perf_counter() - start)
    except Exception as error:
        detail = f"{type(error).__name__}: {error}".splitlines()[0]
        return Row(name, cls, "crash", detail, time.perf_counter() - start)
    shape = ours.pretrained_cfg["input_size"]  # the size the converted spec was built for
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    try:
        problems = compare(ours, reference, timm_state_map(reference), x)
    except Exception as error:
        tail = traceback.format_exc().strip().splitlines()[-1]
        return Row(
            name, cls, "crash", f"{type(error).__name__}: {tail}", time.perf_counter() - start
        )
    outcome = "wrong" if problems else "equal"
    return Row(name, cls, outcome, "; ".join(problems[:3]), time.perf_counter() - start)


_OPTION = re.compile(r"timm option (.*?) is not supported by vitgraph yet(?: \((.*)\))?")


def _option(message: str) -> str:
    match = _OPTION.search(message)
    return match.group(1) if match else message.splitlines()[0]


def _init_worker(threads: int) -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)


def _check_quietly(name: str, supported: set[str]) -> tuple | None:
    with contextlib.redirect_stdout(io.StringIO()):
        row = check(name, supported)
    return None if row is None else astuple(row)


class _Workers:
    """Each name is checked in a worker process, replaced after ``per_worker`` names: one
    process for the whole registry grew past 20 GB (the giant ViTs' reduced copies) and
    was killed; a worker killed on one name makes that name a crash, not the sweep's end."""

    def __init__(self, threads: int, per_worker: int) -> None:
        self.threads, self.per_worker = threads, per_worker
        self.pool: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads,),
                max_tasks_per_child=self.per_worker,
            )
        return self.pool

    def check(self, name: str, supported: set[str]) -> Row | None:
        start = time.perf_counter()
        try:
            fields = self._pool().submit(_check_quietly, name, supported).result()
        except BrokenProcessPool:
            self.pool = None
            detail = "the worker process died (killed for memory?)"
            return Row(name, "?", "crash", detail, time.perf_counter() - start)
        return None if fields is None else Row(*fields)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", help="timm classes, comma-separated (VisionTransformer,ByobNet, ...)"
    )
    parser.add_argument("--names", help="a glob over timm names (vit_small*)")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds (default 3600)")
    parser.add_argument("--verbose", action="store_true", help="print every name's row")
    # one thread: the reduced models are small, and on a shared machine more threads
    # oversubscribe the cores (a 64-pixel CaiT step took 2.5 s with two, 0.03 s with one)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--per-worker", type=int, default=10, help="names per worker process (default 10)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)

    from vitgraph.interop import options
    from vitgraph.interop.timm import _CONVERTERS, load_converters

    load_converters()
    only = None if args.only is None else set(args.only.split(","))
    unknown = sorted((only or set()) - set(_CONVERTERS))
    if unknown:
        parser.error(f"no converter for {', '.join(unknown)}: pick of {sorted(_CONVERTERS)}")
    supported = set(_CONVERTERS) if only is None else only
    started = time.perf_counter()
    rows: list[Row] = []
    names = candidates(only, args.names)
    out_of_time = 0
    workers = _Workers(args.threads, args.per_worker)
    for index, name in enumerate(names):
        if time.perf_counter() - started > args.budget:
            out_of_time = len(names) - index
            break
        row = workers.check(name, supported)
        if row is None:
            continue
        rows.append(row)
        if args.verbose or row.outcome in ("wrong", "crash"):
            print(f"{row.outcome:8} {row.cls:26} {row.name:48} {row.seconds:5.1f}s {row.detail}")
            sys.stdout.flush()
    workers.close()
    elapsed = time.perf_counter() - started
    _print_table(rows, options)
    failed = [r for r in rows if r.outcome in ("wrong", "crash")]
    print(
        f"{len(rows)} names in {elapsed:.0f} s: "
        + ", ".join(f"{n} {o}" for o, n in sorted(Counter(r.outcome for r in rows).items()))
    )
    if out_of_time:
        print(f"the budget ran out with {out_of_time} candidate names left")
    return 1 if failed or out_of_time else 0


def _print_table(rows: list[Row], options) -> None:
    by_class: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_class[row.cls][row.outcome] += 1
    outcomes = ("equal", "refused", "wrong", "crash", "skipped")
    print(f"{'class':28}" + "".join(f"{o:>9}" for o in outcomes))
    for cls in sorted(by_class):
        print(f"{cls:28}" + "".join(f"{by_class[cls][o]:9d}" for o in outcomes))
    refused: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.outcome == "refused":
            refused[f"{row.cls}: {row.detail}"].append(row.name)
    if refused:
        print("\nrefused by name (option: the issue that builds it):")
    for key in sorted(refused, key=lambda k: (-len(refused[k]), k)):
        cls, option = key.split(": ", 1)
        entry = options.option_of(cls, option)
        if entry is None:
            where = "not in the option table"
        else:
            where = f"#{entry.issue}" if entry.issue else "no issue planned"
        print(f"  {len(refused[key]):3d}  {key}  [{where}]  e.g. {refused[key][0]}")


if __name__ == "__main__":
    sys.exit(main())
