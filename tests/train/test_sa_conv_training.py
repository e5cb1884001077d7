"""A small content-free self-attention model (Cordonnier et al., arXiv:1911.03584) learns
scikit-learn's digits on CPU, its heads' centres move away from their random start, and
the trained centres are drawn as the paper's Figure 3 (``make train-sa-conv``)."""

import time

import pytest
import torch

import vitgraph
from vitgraph.interop.conv import attention_layers, draw_attention_centres

SMALL = {"image_size": 16, "dim": 64, "depth": 2, "heads": 9, "hidden": 128, "dropout": 0.0}


@pytest.mark.slow
def test_a_small_sa_conv_reaches_85_percent_on_held_out_digits_and_its_centres_are_drawn(
    tmp_path, capsys
):
    torch.manual_seed(0)
    fresh = vitgraph.build("sa_conv_quadratic", overrides=SMALL)
    start_centres = [a.centers.detach().clone() for _, a in attention_layers(fresh)]
    torch.manual_seed(0)
    begin = time.perf_counter()
    result = vitgraph.train(
        "sa_conv_quadratic",
        overrides=SMALL,
        data="digits",
        epochs=10,
        batch_size=32,
        lr=3e-3,
        warmup_epochs=0.5,
        progress=False,
        log=lambda line: None,
    )
    elapsed = time.perf_counter() - begin
    picture = draw_attention_centres(result.model, str(tmp_path / "centres.png"))
    moved = [
        (a.centers.detach() - s).norm(dim=-1).mean().item()
        for (_, a), s in zip(attention_layers(result.model), start_centres, strict=True)
    ]
    with capsys.disabled():
        print(
            f"\nsa_conv on digits: val acc {result.val_accuracy:.4f} in {elapsed:.1f} s; "
            f"mean centre shift per layer {[round(m, 2) for m in moved]}; {picture}"
        )
    assert result.val_accuracy >= 0.85
    assert all(m > 0.05 for m in moved)  # train seeds 0 before it builds (TrainConfig.seed)
