"""LV-ViT: exact parameter counts, logits equal to the official ``tlt`` package's model
(re-drawn weights, reduced depth), forward + backward of every variant, and a short
Token Labeling + MixToken run."""

import warnings

import pytest
import torch

import vitgraph
from tests.helpers import assert_same_logits, max_logit_diff, redraw_

SMALL = {"image_size": 32, "depth": 2}


@pytest.mark.parametrize(
    ("variant", "params"),
    [
        ("lv_vit_t", 8_534_720),  # the paper's 8.5M (tlt's LV_ViT at dim 240, depth 12, 4 heads)
        ("lv_vit_s", 26_151_824),  # tlt.models.lvvit_s
        ("lv_vit_m", 55_830_544),  # tlt.models.lvvit_m
    ],
)
def test_lvvit_param_counts_equal_the_official_models_to_the_unit(variant, params):
    assert vitgraph.load(variant).summary().params == params


@pytest.mark.parametrize("variant", ["lv_vit_t", "lv_vit_s", "lv_vit_m"])
def test_every_lvvit_variant_runs_forward_and_backward_at_a_small_size(variant):
    model = vitgraph.build(variant, overrides={**SMALL, "classes": 5}).train()
    cls, tokens = model(torch.randn(2, 3, 32, 32))
    assert cls.shape == (2, 5) and tokens.shape == (2, 4, 5)
    (cls.sum() + tokens.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        merged = model(torch.randn(2, 3, 32, 32))
    assert merged.shape == (2, 5)


def _tlt_model(**kw):
    tlt = pytest.importorskip("tlt.models.lvvit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tlt.LV_ViT(
            img_size=32,
            patch_size=16,
            embed_dim=48,
            depth=2,
            num_heads=4,
            mlp_ratio=3.0,
            p_emb="4_2",
            skip_lam=2.0,
            return_dense=True,
            mix_token=False,
            num_classes=7,
            **kw,
        )


def test_lvvit_logits_equal_the_official_tlt_model_in_eval_and_training():
    ref = redraw_(_tlt_model())
    ours = vitgraph.build(
        "lvvit",
        overrides={
            "image_size": 32,
            "dim": 48,
            "depth": 2,
            "heads": 4,
            "classes": 7,
            "drop_path_rate": 0.0,
        },
    )
    missing = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    x = torch.randn(3, 3, 32, 32)
    assert_same_logits(ours, ref, x)  # class logits + 0.5 x max token logits
    ours.train()
    ref.train()
    ref_cls, ref_tokens, _ = ref(x)
    diff, allowed = max_logit_diff(ours(x), (ref_cls, ref_tokens))
    assert diff <= allowed


def test_lvvit_trains_with_token_labeling_and_mixtoken_on_digits():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = vitgraph.train(
            "lvvit",
            overrides={
                "image_size": 16,
                "patch": 4,
                "stem_width": 8,
                "dim": 32,
                "depth": 1,
                "heads": 2,
            },
            data="digits",
            epochs=8,
            batch_size=32,
            lr=3e-3,
            mix_token=True,
            progress=False,
            log=lambda line: None,
        )
    finally:
        torch.set_num_threads(threads)
    # seen at 0.978, seeds 1-2 at 0.961 and 0.953 (8 epochs, ~2 s); at 4 epochs the
    # run sat at 0.90 on some machines: too close to the bound to tell learning apart
    assert result.val_accuracy > 0.9


def test_lvvit_s_macs_equal_the_same_counter_run_on_the_tlt_model():
    tlt = pytest.importorskip("tlt.models.lvvit")
    from torch.utils.flop_counter import FlopCounterMode

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        # lvvit_s's arguments; a drop-path list, since tlt's linspace(...).item() fails on meta
        reference = tlt.LV_ViT(
            patch_size=16,
            embed_dim=384,
            depth=16,
            num_heads=6,
            mlp_ratio=3.0,
            p_emb="4_2",
            skip_lam=2.0,
            return_dense=True,
            mix_token=True,
            drop_path_rate=[0.0] * 16,
            drop_path_decay="list",
        ).eval()
    counter = FlopCounterMode(display=False)
    with counter:
        reference(torch.empty(1, 3, 224, 224, device="meta"))
    assert vitgraph.load("lv_vit_s").summary().macs == counter.get_total_flops() // 2


def test_token_labels_come_from_a_teachers_per_patch_predictions():
    from vitgraph.train.teacher import dense_targets

    teacher = vitgraph.build(
        "lvvit", overrides={**SMALL, "dim": 32, "heads": 2, "classes": 5}
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    teacher.aux_head.dense_output = True  # eval mode (running BN stats), both outputs
    with torch.no_grad():
        _, tokens = teacher(x)
    teacher.aux_head.dense_output = False
    targets = dense_targets(teacher, x, (2, 2))  # the token-label head's own logits
    assert torch.allclose(targets, tokens.softmax(-1), atol=1e-6)
    assert teacher(x).shape == (2, 5)  # eval output restored afterwards
    vit = vitgraph.build(
        "vit",
        overrides={"image_size": 32, "patch": 8, "dim": 16, "depth": 1, "heads": 2, "classes": 5},
    ).eval()
    coarse = dense_targets(vit, x, (2, 2))  # a 4x4 grid averaged down to the student's 2x2
    assert coarse.shape == (2, 4, 5)
    assert torch.allclose(coarse.sum(-1), torch.ones(2, 4), atol=1e-6)


def test_token_labeling_trains_against_a_teachers_dense_labels(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    quiet = dict(data="digits", progress=False, log=lambda line: None, batch_size=64)
    try:
        vitgraph.train(
            "vit",
            overrides={"image_size": 16, "patch": 4, "dim": 16, "depth": 1, "heads": 2},
            epochs=1,
            out=str(tmp_path),
            **quiet,
        )
        result = vitgraph.train(
            "lvvit",
            overrides={
                "image_size": 16,
                "patch": 4,
                "stem_width": 8,
                "dim": 16,
                "depth": 1,
                "heads": 2,
            },
            epochs=1,
            teacher=str(tmp_path / "last.safetensors"),
            **quiet,
        )
    finally:
        torch.set_num_threads(threads)
    assert torch.isfinite(torch.tensor(result.history[0]["loss"]))
