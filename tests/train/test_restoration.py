"""IPT's restoration objective (arXiv:2012.00364 §3.2): SupCon checked by hand, the
degradations, PSNR/SSIM against their formulas, one objective step on a tiny IPT, and
``vitgraph restore`` writing the result beside its baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vitgraph
from vitgraph.cli import main
from vitgraph.train import degrade
from vitgraph.train.image_quality import MISSING, psnr, ssim
from vitgraph.train.objectives import choose
from vitgraph.train.objectives.restoration import Restoration, supcon

TINY = {"size": 12, "feats": 8, "heads": 2, "depth": 1}


def test_supcon_equals_the_hand_computed_loss_on_a_tiny_batch():
    # unit features: a and b are image 0's patches, c and d image 1's
    a, b, c, d = (1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-0.6, 0.8)
    features = torch.tensor([a, b, c, d])
    labels = torch.tensor([0, 0, 1, 1])
    tau = 0.07

    def dot(u, v):
        return u[0] * v[0] + u[1] * v[1]

    points = [a, b, c, d]
    expected = 0.0
    for i, anchor in enumerate(points):
        others = [dot(anchor, p) / tau for j, p in enumerate(points) if j != i]
        log_denominator = math.log(sum(math.exp(s) for s in others))
        positive = 1 if i == 0 else 0 if i == 1 else 3 if i == 2 else 2
        expected += -(dot(anchor, points[positive]) / tau - log_denominator)
    expected /= 4  # one positive each, four anchors
    assert supcon(features, labels, tau).item() == pytest.approx(expected, rel=1e-5)
    # scaling a feature changes nothing: the loss is on normalised features
    assert supcon(features * 3, labels).item() == pytest.approx(expected, rel=1e-5)


def test_the_degradations_have_their_sizes_and_statistics():
    clean = torch.full((2, 3, 48, 48), 128.0)
    assert degrade.bicubic_down(clean, 3).shape == (2, 3, 16, 16)
    assert torch.allclose(degrade.bicubic_down(clean, 2), torch.full((2, 3, 24, 24), 128.0))
    noisy = degrade.gaussian_noise(clean, 30.0, torch.Generator().manual_seed(0))
    assert (noisy - clean).std().item() == pytest.approx(30.0, rel=0.05)
    rainy = degrade.rain_streaks(torch.zeros(1, 3, 64, 64), torch.Generator().manual_seed(0))
    assert rainy.min() == 0 and 0 < rainy.max() <= 255
    assert torch.equal(rainy[:, 0], rainy[:, 1])  # streaks are white: every channel alike


def test_psnr_and_ssim_follow_their_definitions():
    torch.manual_seed(0)
    reference = torch.randint(0, 256, (1, 3, 32, 32)).float()
    restored = (reference + 4).clamp(0, 255)
    mse = (restored - reference).square().mean().item()
    assert psnr(restored, reference) == pytest.approx(10 * math.log10(255**2 / mse), rel=1e-6)
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert ssim(restored, reference) < 1.0


def test_the_missing_extra_message_names_the_pip_command():
    assert MISSING == "PSNR and SSIM need scikit-image: pip install 'vitgraph[restoration]'"


def test_an_ipt_spec_trains_with_the_restoration_objective_and_one_step_learns():
    torch.manual_seed(0)
    graph = vitgraph.load("ipt_sr2", overrides=TINY)
    assert choose(graph).name == "restoration"
    model = graph.build()
    objective = Restoration(graph, model, None, 0)
    assert objective.scale == 2
    clean = torch.rand(4, 3, 24, 24) * 255
    loss, metrics = objective.step(model, (clean, None), torch.Generator().manual_seed(0))
    l1, contrastive = metrics["l1"] / 4, metrics["supcon"] / 4
    assert loss.item() == pytest.approx(l1 + 0.1 * contrastive, rel=1e-5)
    loss.backward()
    assert model.get_parameter("decoder.0.cross_attn.q.weight").grad.abs().sum() > 0
    objective.close()
    objective._seen.clear()
    model(clean[:, :, :12, :12])
    assert objective._seen == []  # the hook is gone


def test_restore_writes_the_result_beside_the_bicubic_baseline(tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "photo.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "restored.png"
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    assert (
        main(["restore", "ipt_pretrain", *sets, "--task", "sr3", str(image), "--out", str(out)])
        == 0
    )
    assert Image.open(out).size == (78, 60)
    assert Image.open(tmp_path / "restored_bicubic.png").size == (78, 60)
    assert (
        main(["restore", "ipt_sr2", *sets, "--task", "derain", str(image), "--out", str(out)]) == 1
    )
    assert "task 'derain' is not one of sr2" in capsys.readouterr().err
