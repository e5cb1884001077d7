"""IPT vs the official code (huawei-noah/Pretrained-IPT, read from a checkout: it is not a
package) with the same weights, in one process: forward (inference mode) and training step
(forward, L1, backward, SGD step) images/s on 48x48 inputs, measured alternately, median
of ``--repeats`` rounds. A ratio > 1 means vitgraph is faster.

Usage: python benchmarks/bench_ipt.py --official /path/to/Pretrained-IPT [--variant ipt_sr2]
       [--batch 2] [--threads 2] [--set depth=12 ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from vitgraph.bench import LoadMeter, alternate, set_threads
from vitgraph.interop.ipt_official import load_official
from vitgraph.spec.overrides import parse_sets


def official_model(checkout: str, graph: vitgraph.Graph):
    sys.path.insert(0, checkout)
    from model import ipt as official  # type: ignore[import-not-found]

    args = graph.args
    options = types.SimpleNamespace(
        n_feats=args["feats"], rgb_range=args["rgb_range"], n_colors=3, scale=list(args["scales"]),
        patch_size=args["size"], patch_dim=args["patch"], num_heads=args["heads"],
        num_layers=args["depth"], num_queries=len(args["scales"]), dropout_rate=0.0,
        no_mlp=False, pos_every=False, no_pos=False, no_norm=False,
    )  # fmt: skip
    return official.ipt(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="a checkout of Pretrained-IPT")
    parser.add_argument("--variant", default="ipt_sr2")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    graph = vitgraph.load(args.variant, overrides=parse_sets(args.sets))
    reference = official_model(args.official, graph)
    ours = load_official(graph.build(), reference.state_dict())
    size = graph.input_shape[-1]
    x = torch.rand(args.batch, 3, size, size) * 255
    target = torch.rand(args.batch, *graph.output_shape) * 255

    def forward(model):
        def run():
            model.eval()
            with torch.inference_mode():
                return model(x)

        return run

    def train(model):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9)

        def run():
            model.train()
            F.l1_loss(model(x), target).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run

    with torch.no_grad():
        diff = (ours.eval()(x) - reference.eval()(x.clone())).abs().max().item()
    print(f"{args.variant}: max |ours - official| = {diff:.3e}")
    with LoadMeter() as meter:
        for mode, make in (("forward", forward), ("train", train)):
            runs = {"ours": make(ours), "official": make(reference)}
            times = alternate(runs, args.repeats, args.iters, torch.device("cpu"))
            ips = {name: args.batch / statistics.median(t) for name, t in times.items()}
            print(
                f"{mode:8s} {size}px batch {args.batch}: ours {ips['ours']:.2f} img/s, "
                f"official {ips['official']:.2f} img/s (x{ips['ours'] / ips['official']:.3f})",
                flush=True,
            )
    print(f"[{meter.load.describe()}]")


if __name__ == "__main__":
    main()
