"""GPU checks for the pipeline issue: CUDA forward/backward, bf16 autocast, parity with
timm on the GPU, and throughput vs timm (fp32 and bf16). Skips cleanly without CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vitgraph
from benchmarks.harness import compare


def main() -> None:
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    for variant in ["vit_s_16", "deit_ti_distilled", "simplevit_s_16", "vit_b_32"]:
        model = vitgraph.build(variant).cuda().train()
        x = torch.randn(4, 3, 224, 224, device="cuda")
        out = model(x)
        loss = sum(o.float().mean() for o in out) if isinstance(out, tuple) else out.mean()
        loss.backward()
        grads_finite = all(
            p.grad is None or torch.isfinite(p.grad).all().item() for p in model.parameters()
        )
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
            out = out[0] if isinstance(out, tuple) else out
            out.float().mean().backward()
        print(
            f"{variant}: fp32 fwd/bwd ok (grads finite: {grads_finite}); bf16 autocast "
            f"finite: {torch.isfinite(out).all().item()}"
        )
    import timm

    from tests.helpers import redraw_

    for name in ["vit_small_patch16_224", "deit_tiny_distilled_patch16_224"]:
        reference = redraw_(timm.create_model(name, pretrained=False)).cuda().eval()
        ours = vitgraph.from_timm(reference).cuda().eval()
        x = torch.randn(4, 3, 224, 224, device="cuda")
        with torch.no_grad():
            diff = (ours(x) - reference(x)).abs().max().item()
        print(f"parity on cuda fp32 {name}: max |diff| {diff:.2e}")
    for batch in (8, 64):
        for dtype in (None, torch.bfloat16):
            for name in ["vit_small_patch16_224"]:
                reference = timm.create_model(name, pretrained=False)
                ours = vitgraph.from_timm(reference)
                compare(
                    name,
                    ours,
                    reference,
                    (3, 224, 224),
                    batch=batch,
                    repeats=7,
                    iters=10,
                    device="cuda",
                    autocast=dtype,
                )


if __name__ == "__main__":
    main()
