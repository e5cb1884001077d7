"""Pixels as sequences (blocks/sequence.py, specs/igpt.yaml, vitgraph/sampling.py): what
the family row cannot say — HF's counts with biases, causality, sampling with and without
the cache, the palette, the objectives and the sample command."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests import references as ref
from tests.helpers import redraw_
from vitgraph.cli import main
from vitgraph.errors import SpecError
from vitgraph.sampling import SamplingError, check_cache, sample

TINY = {"depth": 2, "dim": 32, "heads": 4, "positions": 64, "palette": 17}


def tiny(**changes) -> torch.nn.Module:
    torch.manual_seed(0)
    model = vitgraph.load("igpt", overrides={**TINY, **changes}).build().eval()
    return redraw_(model)


@pytest.mark.parametrize(
    ("variant", "config", "count"),
    [
        ("igpt_s", {}, 76_682_240),
        ("igpt_m", {"n_embd": 1024, "n_layer": 36, "n_head": 8}, 455_489_536),
    ],
)
def test_with_biases_the_count_is_hf_imagegpts_own(variant, config, count):
    hf = ref.hf_on_meta("ImageGPTForCausalImageModeling", "ImageGPTConfig", **config)()
    assert sum(p.numel() for p in hf.parameters()) == count
    assert vitgraph.load(variant, overrides={"bias": True}).summary().params == count


def test_xl_at_the_resolution_it_was_trained_counts_a_4096_row_table():
    graph = vitgraph.load("igpt_xl", overrides={"positions": 4096})
    assert graph.summary().params == 6_810_875_904


@pytest.mark.parametrize("variant", ["igpt_s", "igpt_m", "igpt_l", "igpt_xl"])
def test_changing_the_id_at_t_changes_no_output_up_to_t(variant):
    heads = vitgraph.load(variant).args["heads"]
    graph = vitgraph.load(variant, overrides={**TINY, "heads": heads, "dim": heads * 8})
    torch.manual_seed(0)
    model = redraw_(graph.build().eval())
    ids = graph.example_input(2, seed=0)
    changed = ids.clone()
    changed[:, 20] = (changed[:, 20] + 1) % 17
    with torch.no_grad():
        before, after = model(ids), model(changed)
    assert torch.equal(before[:, :21], after[:, :21])  # position 20 has not seen id 20
    assert not torch.allclose(before[:, 21:], after[:, 21:])


def test_the_output_is_per_position_logits_of_int64_ids():
    model = tiny()
    ids = torch.randint(0, 17, (3, 64))
    assert model(ids).shape == (3, 64, 17)
    assert model.vitgraph_graph.example_input(3).dtype == torch.int64


def test_hf_loss_is_the_next_token_loss_of_our_logits():
    parity = ref.igpt_parity()
    x = parity.x
    hf = parity.reference.model
    start = torch.full_like(x[:, :1], 16)
    shifted = torch.cat([start, x[:, :-1]], dim=1)
    with torch.no_grad():
        theirs = hf(input_ids=shifted, labels=shifted).loss
        logits = parity.ours(x)
    # HF's loss predicts ids 0 .. N-2 (its last position has no label)
    ours = F.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, :-1].flatten())
    assert abs(theirs.item() - ours.item()) <= 1e-4 * max(1.0, abs(theirs.item()))


def test_hf_options_the_spec_cannot_express_are_refused_by_name():
    reference = ref.hf_model(
        "ImageGPTForCausalImageModeling",
        "ImageGPTConfig",
        **ref.IGPT_TINY,
        scale_attn_by_inverse_layer_idx=True,
    )
    with pytest.raises(SpecError, match="scale_attn_by_inverse_layer_idx=True"):
        vitgraph.from_hf(reference)


def test_greedy_and_seeded_top_k_samples_are_the_same_with_and_without_the_cache():
    model = tiny()
    assert torch.equal(
        sample(model, 3, temperature=0), sample(model, 3, temperature=0, cache=False)
    )
    cached = sample(model, 3, top_k=5, seed=1)
    assert torch.equal(cached, sample(model, 3, top_k=5, seed=1, cache=False))
    assert cached.shape == (3, 64) and int(cached.max()) < 17


def test_completing_the_lower_half_keeps_the_upper_half():
    model = tiny()
    upper = torch.randint(0, 17, (2, 32), generator=torch.Generator().manual_seed(3))
    done = sample(model, 2, prefix=upper, temperature=0)
    assert torch.equal(done[:, :32], upper)
    assert torch.equal(done, sample(model, 2, prefix=upper, temperature=0, cache=False))


def test_a_model_that_sees_every_position_cannot_sample_with_the_cache():
    with pytest.raises(SamplingError, match="does not decode with a cache"):
        check_cache(tiny(bert=True))


def test_an_image_classifier_is_not_a_generative_model():
    model = vitgraph.load("vit_ti_16", overrides={"image_size": 32}).build()
    with pytest.raises(SamplingError, match="takes image 3x32x32"):
        sample(model, 1)


def test_the_palette_gives_each_pixel_the_nearest_colour():
    spec = """
vitgraph: 1
name: quantize
input: {channels: 3, size: 8}
graph:
  - {id: quantize, kind: palette_quantize, colors: 16}
"""
    model = vitgraph.load("q.yaml", text=spec).build()
    palette = torch.rand(16, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.quantize.palette.copy_(palette)
    image = torch.rand(2, 3, 8, 8) * 2 - 1
    pixels = image.flatten(2).transpose(1, 2).numpy()  # raster order
    brute = ((pixels[:, :, None, :] - palette.numpy()[None, None]) ** 2).sum(-1).argmin(-1)
    assert np.array_equal(model(image).numpy(), brute)


def test_the_next_token_objective_learns_the_digits_below_the_uniform_rate():
    from vitgraph.train import train

    torch.set_num_threads(1)
    result = train(
        "igpt",
        overrides={**TINY, "dim": 64},
        data="digits",
        epochs=1,
        batch_size=64,
        lr=3e-3,
        warmup_epochs=0.2,
        log=lambda line: None,
    )
    uniform = math.log2(17)
    assert result.history[-1]["val_bits_per_token"] < 0.75 * uniform


def test_the_bert_objective_zeroes_the_masked_embeddings_and_scores_only_them():
    from vitgraph.train.config import make_config
    from vitgraph.train.objectives import objectives

    model = tiny(bert=True).train()
    config = make_config(spec="igpt", objective="bert")
    bert = objectives()["bert"](model.vitgraph_graph, model, config, 10)
    seen = []
    hook = model.wpe.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    ids = torch.randint(0, 17, (4, 64), generator=torch.Generator().manual_seed(0))
    loss = bert.nats(model, ids, torch.Generator().manual_seed(1))
    hook.remove()
    bert.close()
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(1)) < 0.15
    assert mask.any(1).all()  # this draw masks every row (the objective forces one)
    assert torch.equal(seen[0][mask], torch.zeros_like(seen[0][mask]))
    assert (seen[0][~mask] != 0).all()
    # the same by hand: zeroed input embeddings, the loss on the masked positions only
    zero = model.wte.register_forward_hook(lambda m, a, out: out.masked_fill(mask[..., None], 0))
    with torch.no_grad():
        expected = F.cross_entropy(model(ids)[mask], ids[mask])
    zero.remove()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_cli_sample_writes_a_png_grid_of_the_samples(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    assert main(["build", "igpt", *sets, "--out", str(weights)]) == 0
    out = tmp_path / "grid.png"
    code = main(["sample", "igpt", *sets, "--weights", str(weights), "--n", "4", "--out", str(out)])
    assert code == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (4 * (8 * 4 + 1) + 1, 8 * 4 + 2)  # 4 digits of 8x8, x4, gaps
    assert "4 samples" in capsys.readouterr().out


def _imagegpt_cases(which: str) -> list:
    from vitgraph.interop.options_hf import IMAGEGPT

    return [
        pytest.param(option, example, id=f"{option}-{k}")
        for option, entry in IMAGEGPT.items()
        for k, example in enumerate(getattr(entry, which))
    ]


def _imagegpt(example: dict) -> torch.nn.Module:
    config = {**ref.IGPT_TINY, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    config.update(example)
    if config.get("dtype") == "@torch.float64":  # the option tables' spelling of a dtype
        config["dtype"] = torch.float64
    torch.manual_seed(0)
    return redraw_(ref.hf_model("ImageGPTForCausalImageModeling", "ImageGPTConfig", **config))


@pytest.mark.parametrize(("option", "example"), _imagegpt_cases("equal"))
def test_honoured_imagegpt_option_gives_hfs_logits(option, example):
    reference = _imagegpt(example).eval()
    ours = vitgraph.from_hf(reference).eval()
    graph = ours.vitgraph_graph
    ids = graph.example_input(2, seed=1)
    with torch.no_grad():
        theirs = ref.ShiftedImageGPT(reference)(ids)
        assert (ours(ids) - theirs).abs().max() <= 1e-4 * max(1.0, theirs.abs().max().item())


@pytest.mark.parametrize(("option", "example"), _imagegpt_cases("refuse"))
def test_refused_imagegpt_option_is_named_in_the_error(option, example):
    reference = _imagegpt(example)
    with pytest.raises(SpecError) as error:
        vitgraph.from_hf(reference)
    assert option in str(error.value) and "ImageGPTForCausalImageModeling" in str(error.value)
