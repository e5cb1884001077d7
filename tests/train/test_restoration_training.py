"""A small IPT x2 (Chen et al., arXiv:2012.00364) trained for a short CPU run with IPT's
objective (L1 + 0.1 x SupCon, bicubic down-sampling made on the fly) restores held-out
crops of a scikit-image photo better than bicubic up-sampling, by PSNR and SSIM
(``make train-restoration``)."""

import time

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from vitgraph.train.objectives.restoration import Restoration

SMALL = {"size": 24, "feats": 16, "heads": 4, "depth": 1}
STEPS = 600


def photo_crops(names: list[str], side: int, stride: int) -> torch.Tensor:
    """``side`` x ``side`` crops every ``stride`` pixels of scikit-image's bundled photos
    (halved first, so a crop holds more than texture), ``(N, 3, side, side)`` in [0, 255]."""
    skimage_data = pytest.importorskip("skimage.data")
    crops = []
    for name in names:
        photo = torch.as_tensor(getattr(skimage_data, name)()[..., :3]).permute(2, 0, 1)
        photo = F.interpolate(photo[None].float(), scale_factor=0.5, mode="bicubic", antialias=True)
        cut = photo.clamp(0, 255).unfold(2, side, stride).unfold(3, side, stride)
        crops.append(cut.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, side, side))
    return torch.cat(crops)


@pytest.mark.slow
def test_a_small_ipt_x2_beats_bicubic_on_held_out_photo_crops_after_a_short_cpu_run(capsys):
    torch.manual_seed(0)
    train = photo_crops(["astronaut", "coffee", "chelsea", "rocket"], 48, 24)
    held_out = photo_crops(["immunohistochemistry"], 48, 48)[:64]  # a photo never trained on
    graph = vitgraph.load("ipt_sr2", overrides=SMALL)
    model = graph.build()
    objective = Restoration(graph, model, None, 0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS)
    generator = torch.Generator().manual_seed(0)
    begin = time.perf_counter()
    for _ in range(STEPS):
        model.train()
        batch = train[torch.randint(len(train), (16,), generator=generator)]
        loss, _ = objective.step(model, (batch, None), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    elapsed = time.perf_counter() - begin
    scores = objective.scores(model, held_out)
    objective.close()
    with capsys.disabled():
        print(
            f"\nIPT x2 ({STEPS} steps, {elapsed:.0f} s, {torch.get_num_threads()} thread(s)): "
            f"PSNR {scores['psnr']:.2f} dB / SSIM {scores['ssim']:.4f}; bicubic "
            f"{scores['psnr_baseline']:.2f} dB / {scores['ssim_baseline']:.4f}"
        )
    assert scores["psnr"] > scores["psnr_baseline"]
    assert scores["ssim"] > scores["ssim_baseline"]


@pytest.mark.slow
def test_vitgraph_train_runs_ipt_on_photo_crops_and_reports_psnr_against_bicubic():
    result = vitgraph.train(
        "ipt_sr2",
        overrides=SMALL,
        data="photo_crops",
        epochs=1,
        batch_size=16,
        lr=1e-3,
        progress=False,
        log=lambda line: None,
    )
    last = result.history[-1]
    assert {"l1", "supcon", "val_psnr", "val_ssim", "val_psnr_baseline"} <= set(last)
    assert last["val_psnr_baseline"] == pytest.approx(29.57, abs=0.01)  # bicubic, held out
