"""The Image Transformer (blocks/image_transformer.py, blocks/dmol.py,
specs/image_transformer.yaml): what the family row cannot say. tensor2tensor (TF1) cannot
run here, so the local attentions are checked against dense attention with the band and
causal masks written out below, and the mixture against PixelCNN++'s loss written out."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vitgraph
from tests.helpers import redraw_
from vitgraph.blocks.image_transformer import timing_signal
from vitgraph.blocks.local_attention import LocalAttention1d, LocalAttention2d
from vitgraph.errors import SpecError
from vitgraph.sampling import SamplingError, check_cache, sample
from vitgraph.shapes import Tokens

VARIANTS = [
    "image_transformer_cifar10",
    "image_transformer_imagenet32",
    "image_transformer_cifar10_2d",
    "image_transformer_cifar10_dmol",
    "image_transformer_cifar10_cond",
]
#: an 8x8 RGB image: 192 sub-pixels on an 8x24 grid
TINY = {
    "size": 8,
    "depth": 2,
    "dim": 32,
    "heads": 4,
    "head_dim": 8,
    "ffn": 64,
    "block_length": 16,
    "query_shape": [4, 6],
    "memory_flange": [2, 6],
    "drop": 0.0,
}


def tiny(variant: str = "image_transformer_cifar10", **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    return redraw_(vitgraph.load(variant, overrides={**TINY, **changes}).build().eval())


def test_the_cifar10_config_counts_the_hand_arithmetic_on_the_meta_device():
    graph = vitgraph.load("image_transformer_cifar10")
    embeddings, layer, output = 3 * 256 * 512, 4 * 512**2 + 2_099_712 + 2_048, 512 * 256 + 256
    assert (embeddings, layer, output) == (393_216, 3_150_336, 131_328)
    assert graph.summary().params == embeddings + 12 * layer + output == 38_328_576


def test_the_dmol_config_counts_t2t_cifar10_base_dmol_arithmetic():
    # 1x3 stride-3 conv; a 32-row table per axis; 12 layers of q, k, v 256->512, o
    # 512->256, FFN 256->512->256, two norms; 100 mixture numbers without a bias
    pixels, positions, head = 3 * 256 + 256, 2 * 32 * 256, 256 * 100
    layer = 3 * 256 * 512 + 512 * 256 + 256 * 512 + 512 + 512 * 256 + 256 + 2 * 512
    assert (pixels, positions, layer, head) == (1_024, 16_384, 788_224, 25_600)
    graph = vitgraph.load("image_transformer_cifar10_dmol")
    assert graph.summary().params == pixels + positions + 12 * layer + head == 9_501_696
    attn = graph.node("layers.0.attn").params
    assert (attn.heads, attn.head_dim) == (8, 64)
    # t2t's own variables: max_length 3075 rows per axis table, 32 of them read
    t2t = vitgraph.load("image_transformer_cifar10_dmol", overrides={"pos_length": 3075})
    assert t2t.summary().params == 9_501_696 - positions + 2 * 3075 * 256 == 11_059_712


def test_the_dmol_layers_are_post_norm_as_t2t_dan():
    graph = vitgraph.load("image_transformer_cifar10_dmol")
    kinds = [n.kind for n in graph.nodes if n.id.startswith("layers.0.")]
    assert kinds == ["local_attention_1d", "dropout", "add", "layernorm"] + [
        "mlp",
        "dropout",
        "add",
        "layernorm",
    ]


def test_the_learned_positions_are_one_table_per_axis_read_times_root_width():
    model = tiny("image_transformer_cifar10_dmol")  # 8x8 pixels, width 32
    table = model.pos_embed
    assert (table.rows.shape, table.cols.shape) == ((8, 32), (8, 32))
    with torch.no_grad():
        added = table(torch.zeros(1, 64, 32))[0]
    r, c = 5, 3
    expected = (table.rows[r] + table.cols[c]) * 32**0.5
    torch.testing.assert_close(added[r * 8 + c], expected, rtol=0, atol=1e-6)


def test_the_2d_variant_takes_t2t_image_transformer2d_base_query_and_flange():
    attn = vitgraph.load("image_transformer_cifar10_2d").node("layers.0.attn").params
    assert (attn.query_shape, attn.memory_flange) == ([16, 16], [16, 32])


def _t2t_bound(fan_in: int, fan_out: int) -> float:
    """t2t's uniform_unit_scaling at its image hparams' gain 0.2: U(±sqrt(3·0.2/fan_avg))."""
    return math.sqrt(3 * 0.2 / ((fan_in + fan_out) / 2))


@pytest.mark.parametrize(
    ("variant", "kernels"),
    [
        (
            "image_transformer_cifar10",
            {
                "embed.weight": (768, 512),  # the 3·256-row channel table
                "layers.0.attn.qkv.weight": (512, 512),  # each of q, k, v
                "layers.0.attn.proj.weight": (512, 512),
                "layers.0.mlp.fc1.weight": (512, 2048),
                "layers.0.mlp.fc2.weight": (2048, 512),
                "head.weight": (512, 256),
            },
        ),
        (
            "image_transformer_cifar10_dmol",
            {
                "pixels.proj.weight": (3, 3 * 256),  # a 1x3 conv from one channel
                "layers.0.attn.qkv.weight": (256, 512),
                "layers.0.attn.proj.weight": (512, 256),
                "dmol.proj.weight": (256, 100),
            },
        ),
    ],
)
def test_the_kernels_are_drawn_as_t2t_uniform_unit_scaling_at_gain_0_2(variant, kernels):
    torch.manual_seed(0)
    params = dict(vitgraph.load(variant, overrides={"depth": 1}).build().named_parameters())
    for name, fans in kernels.items():
        w, bound = params[name].detach(), _t2t_bound(*fans)
        assert 0.99 * bound < w.abs().max().item() <= bound, name
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05), name
    biases = [n for n in params if n.endswith("bias") and "norm" not in n]
    assert biases and all(not params[n].any() for n in biases)


def _dense(module: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same projections with one dense SDPA under ``mask`` (True = attend)."""
    heads = module.heads
    q, k, v = module.qkv(x).unflatten(-1, (3, heads, -1)).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return module.proj(out.transpose(1, 2).flatten(2))


def _local(kind, grid, **params):
    tokens = Tokens(16, grid)
    block, _ = kind(heads=2, **params).infer(tokens)
    torch.manual_seed(0)
    module = redraw_(block.build(tokens))
    return module, torch.randn(3, grid[0] * grid[1], 16)


def test_local_1d_attention_is_dense_attention_under_the_band_and_causal_mask():
    length = 8
    module, x = _local(LocalAttention1d, (4, 12), block_length=length)
    n = 48
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        for j in range(n):
            # j is not after i, and lies in i's block or the block before it
            mask[i, j] = j <= i and j // length >= i // length - 1
    assert torch.equal(module.dense_mask(), mask)
    with torch.no_grad():
        torch.testing.assert_close(module(x), _dense(module, x, mask), rtol=0, atol=1e-5)


def test_local_2d_attention_is_dense_attention_under_the_flange_and_causal_mask():
    (rows, cols), (qh, qw), (fh, fw) = (8, 12), (4, 6), (2, 3)
    module, x = _local(LocalAttention2d, (rows, cols), query_shape=[qh, qw], memory_flange=[fh, fw])
    # the generation order: blocks in raster order, raster order inside each
    order = [
        (top + r, left + c)
        for top in range(0, rows, qh)
        for left in range(0, cols, qw)
        for r in range(qh)
        for c in range(qw)
    ]
    n = rows * cols
    mask = torch.zeros(n, n, dtype=torch.bool)
    for i, (ri, ci) in enumerate(order):
        top, left = ri - ri % qh, ci - ci % qw
        for j, (rj, cj) in enumerate(order):
            in_memory = top - fh <= rj < top + qh and left - fw <= cj < left + qw + fw
            mask[i, j] = j <= i and in_memory
    assert torch.equal(module.dense_mask(), mask)
    with torch.no_grad():
        torch.testing.assert_close(module(x), _dense(module, x, mask), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_the_sub_pixel_at_t_changes_no_output_up_to_t(variant):
    model = tiny(variant)
    ids = model.vitgraph_graph.example_input(2, seed=0)
    for t in (0, 47, 100, 190):  # 47: the last position of a 1-D and of a 2-D block
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 101) % 256
        with torch.no_grad():
            before, after = model(ids), model(changed)
        assert torch.equal(before[:, : t + 1], after[:, : t + 1])  # t has not seen itself
        if variant.endswith("_2d") and (t + 1) % (4 * 6) == 0:
            # t2t's right_shift_blockwise: no position reads a query block's last sub-pixel
            assert torch.equal(before, after)
        else:
            assert not torch.allclose(before[:, t + 1 :], after[:, t + 1 :])


def test_a_uniform_predictor_scores_exactly_eight_bits_per_sub_pixel():
    from vitgraph.train.objectives.generative import NextToken

    ids = torch.randint(0, 256, (4, 192), generator=torch.Generator().manual_seed(0))
    uniform = torch.nn.Module()
    uniform.forward = lambda ids: torch.zeros(*ids.shape, 256, dtype=torch.float64)
    nats = NextToken.nats(None, uniform, ids)
    assert nats.item() / math.log(2) == 8.0


def test_the_dmol_rows_are_distributions_whose_nll_is_pixelcnn_pp_loss():
    model = tiny("image_transformer_cifar10_dmol")
    ids = model.vitgraph_graph.example_input(2, seed=3)
    seen = []
    hook = model.dmol.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        logp = model(ids)
        params = model.dmol.proj(seen[0])  # the mixture's numbers of every pixel
    hook.remove()
    torch.testing.assert_close(logp.logsumexp(-1), torch.zeros(2, 192), rtol=0, atol=1e-4)
    ours = -logp.gather(-1, ids[..., None]).sum()
    assert ours.item() == pytest.approx(_pixelcnn_pp_nll(params, ids).item(), rel=1e-4)


def _pixelcnn_pp_nll(params: torch.Tensor, ids: torch.Tensor, m: int = 10) -> torch.Tensor:
    """tensor2tensor's discretized_mix_logistic_loss (PixelCNN++'s, Salimans et al. 2017),
    summed over the batch: the mixture's joint NLL of each pixel. The numbers are split
    as t2t splits them: m logits, then means, log-scales, coefficients, each m x 3."""
    x = ids.unflatten(1, (-1, 3)).double() / 127.5 - 1  # (B, P, 3)
    params = params.double()
    logit_probs = params[..., :m]
    rest = params[..., m:].unflatten(-1, (3, m, 3)).transpose(-1, -2)  # (B, P, 3, 3, m)
    means, log_scales, coeffs = rest[..., 0, :, :], rest[..., 1, :, :], rest[..., 2, :, :]
    log_scales, coeffs = log_scales.clamp(min=-7.0), torch.tanh(coeffs)
    x = x[..., None].expand(-1, -1, -1, m)
    m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
    m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
    means = torch.stack([means[..., 0, :], m2, m3], dim=-2)
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = torch.sigmoid(inv * (centered + 1 / 255))
    cdf_min = torch.sigmoid(inv * (centered - 1 / 255))
    log_cdf_plus = inv * (centered + 1 / 255) - F.softplus(inv * (centered + 1 / 255))
    log_one_minus_cdf_min = -F.softplus(inv * (centered - 1 / 255))
    cdf_delta = cdf_plus - cdf_min
    log_probs = torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )
    joint = log_probs.sum(-2) + F.log_softmax(logit_probs, -1)
    return -torch.logsumexp(joint, -1).sum()


@pytest.mark.parametrize("variant", ["image_transformer_cifar10", "image_transformer_cifar10_2d"])
def test_greedy_samples_are_the_same_with_and_without_the_cache(variant):
    model = tiny(variant, size=4, depth=1)  # a 4x4 image: 48 sub-pixels
    cached = sample(model, 2, temperature=0)
    assert torch.equal(cached, sample(model, 2, temperature=0, cache=False))
    assert cached.shape == (2, 48) and int(cached.max()) < 256


def test_the_dmol_model_samples_without_the_cache_and_refuses_it_by_name():
    model = tiny("image_transformer_cifar10_dmol", size=4, depth=1)
    with pytest.raises(SamplingError, match="does not decode with a cache"):
        check_cache(model)
    upper = torch.randint(0, 256, (1, 24), generator=torch.Generator().manual_seed(0))
    done = sample(model, 1, prefix=upper, seed=0, cache=False)
    assert torch.equal(done[:, :24], upper) and done.shape == (1, 48)


def test_the_class_conditional_model_reads_the_class_first_and_samples_that_class():
    model = tiny("image_transformer_cifar10_cond", size=4, depth=1)  # ids: 1 + 48
    ids = torch.randint(0, 256, (2, 49), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = torch.tensor([3, 7])
    other = ids.clone()
    other[:, 0] = torch.tensor([4, 2])
    with torch.no_grad():
        logits, changed = model(ids), model(other)
    assert logits.shape == (2, 49, 256)
    # row 0 is the prior over the 10 classes; every sub-pixel row sees the class
    assert torch.equal(logits[:, 0], changed[:, 0]) and (logits[0, 0, 10:] == -100).all()
    assert not torch.isclose(logits[:, 1:], changed[:, 1:]).all(-1).any()
    with pytest.raises(SamplingError, match="does not decode with a cache"):
        check_cache(model)  # the class id arrives before any sub-pixel: no cache (yet)
    cls = torch.tensor([[5]])
    drawn = sample(model, 1, prefix=cls, seed=0, cache=False)
    assert drawn[0, 0] == 5 and drawn.shape == (1, 49)
    unprompted = sample(model, 4, seed=0, cache=False)
    assert (unprompted[:, 0] < 10).all()  # the class drawn from the prior


def test_pictures_of_2d_samples_put_each_sub_pixel_back_on_its_cell_in_rgb():
    from vitgraph.sampling import layout_of, palette_of, to_images

    model = tiny("image_transformer_cifar10_2d", size=4, depth=1)  # two 4x6 blocks
    order = [(r, left + c) for left in (0, 6) for r in range(4) for c in range(6)]
    ids = torch.arange(48)[None] * 5  # sequence position p holds intensity 5p
    images = to_images(ids, palette_of(model, 256), (4, 12), layout_of(model))
    assert images.shape == (1, 4, 4, 3)
    for p, (r, col) in enumerate(order):
        assert images[0, r, col // 3, col % 3] == 5 * p  # the grey palette: id v is v


def test_cli_sample_of_the_2d_variant_writes_an_rgb_png(tmp_path, capsys):
    import struct

    from vitgraph.cli import main

    sets = ["--variant", "image_transformer_cifar10_2d", "--set", "size=4", "--set", "depth=1"]
    sets += [x for k in ("dim", "heads", "head_dim", "ffn") for x in ("--set", f"{k}={TINY[k]}")]
    sets += ["--set", "query_shape=[4, 6]", "--set", "memory_flange=[2, 6]"]
    weights = tmp_path / "w.safetensors"
    assert main(["build", "image_transformer", *sets, "--out", str(weights)]) == 0
    out = tmp_path / "grid.png"
    args = ["--weights", str(weights), "--n", "2", "--out", str(out)]
    assert main(["sample", "image_transformer", *sets, *args]) == 0
    data = out.read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (2 * (4 * 4 + 1) + 1, 4 * 4 + 2, 8, 2)  # RGB
    assert "2 samples" in capsys.readouterr().out


def test_the_timing_signal_puts_rows_in_the_first_half_and_columns_in_the_second():
    signal = timing_signal((4, 6), 16)  # raster order: position p is (p // 6, p % 6)
    rows, cols = torch.arange(24) // 6, torch.arange(24) % 6
    inv = torch.exp(torch.arange(4) * -(math.log(1e4) / 3))
    for half, position in ((slice(0, 8), rows), (slice(8, 16), cols)):
        angle = position[:, None] * inv
        torch.testing.assert_close(signal[:, half], torch.cat([angle.sin(), angle.cos()], 1))


def test_the_intensity_embedding_reads_row_channel_times_256_plus_value_times_sqrt_d():
    model = tiny()
    ids = torch.tensor([[7, 7, 7] * 64])  # the same intensity in R, G and B
    with torch.no_grad():
        tokens = model.embed(ids)
    table = model.embed.weight
    for c in range(3):
        torch.testing.assert_close(tokens[0, c], table[c * 256 + 7] * 32**0.5)


def test_a_block_length_that_does_not_tile_the_image_is_located_with_the_numbers():
    with pytest.raises(SpecError) as info:
        vitgraph.load("image_transformer_cifar10", overrides={"block_length": 500})
    (problem,) = {p.message: p for p in info.value.problems}.values()
    assert problem.message == (
        "local_attention_1d's query blocks of 500 do not tile the 3072 positions "
        "(3072 / 500 = 6.144)"
    )
    assert problem.hint == "give a block length that divides 3072: 384, 512, 768"
    assert problem.location.file.endswith("image_transformer.yaml")


def test_a_later_layer_whose_query_shape_is_not_the_generation_order_is_located():
    # the embedding's order rides through every layer (adds, norms, the feed-forward)
    graph = vitgraph.load("image_transformer_cifar10_2d", overrides=TINY)
    with pytest.raises(SpecError) as info:
        graph.update("layers.1.attn", query_shape=[4, 12])
    (problem,) = info.value.problems
    assert problem.path == "layers.1.attn"
    assert problem.message == (
        "local_attention_2d attends in 4x12 blocks, but the tokens come in 4x6 blocks (set "
        "by the embedding's blocks): the model would generate in one order and attend in "
        "another"
    )
    assert problem.hint.startswith("give query_shape: [4, 6], or the same blocks")


def test_a_query_shape_that_does_not_tile_the_grid_is_located_with_the_numbers():
    with pytest.raises(SpecError) as info:
        vitgraph.load("image_transformer_cifar10_2d", overrides={"query_shape": [8, 20]})
    (problem,) = info.value.problems  # the first node in the 2-D order speaks
    assert problem.path == "embed"
    assert problem.message == (
        "intensity_embed's blocks (the 2-D order) of 8x20 do not tile the 32x96 grid "
        "(32 rows / 8 = 4, 96 columns / 20 = 4.8)"
    )
    assert problem.hint == (
        "give [rows, cols] with rows from 1, 2, 4, 8, 16 and cols from "
        "1, 2, 3, 4, 6, 8, 12, 16, 24, 32"
    )
    assert problem.location.file.endswith("image_transformer.yaml")


def test_unmasked_local_attention_is_refused_by_name_at_the_users_key():
    text = """\
vitgraph: 1
name: unmasked
input: {ids: 192, vocab: 256, grid: [8, 24]}
graph:
  - {id: embed, kind: intensity_embed, dim: 32}
  - {id: attn, kind: local_attention_1d, heads: 4, block_length: 16, causal: false}
"""
    with pytest.raises(SpecError) as info:
        vitgraph.load("unmasked.yaml", text=text)
    (problem,) = info.value.problems
    assert (problem.location.line, problem.location.col) == (6, 78)  # at the false
    assert problem.message == (
        "local_attention_1d is the decoder's masked local attention; the unmasked form "
        "(t2t's encoder, super-resolution) is not built"
    )
    assert problem.hint == "remove causal: false"


def test_the_next_token_objective_learns_grey_digits_well_below_the_uniform_rate():
    """The digits as sub-pixels: 8x8 grey images of 17 levels, one channel (64 ids)."""
    from vitgraph.train import train

    torch.set_num_threads(1)
    result = train(
        "image_transformer_cifar10",
        overrides={**DIGITS, "depth": 1},
        data="digits",
        epochs=1,
        batch_size=64,
        lr=3e-3,
        warmup_epochs=0.2,
        log=lambda line: None,
    )
    assert result.history[-1]["val_bits_per_token"] < 0.75 * math.log2(17)


def test_the_class_conditional_model_learns_digits_given_as_their_class_then_64_ids():
    from vitgraph.train import train
    from vitgraph.train.data.digits import load_digit_sequences

    torch.set_num_threads(1)
    data = load_digit_sequences(class_first=True)
    assert data.train.images.shape[1] == 65
    assert torch.equal(data.train.images[:, 0], data.train.labels)
    result = train(
        "image_transformer_cifar10_cond",
        overrides={**DIGITS, "depth": 1},
        data="digits",
        epochs=1,
        batch_size=64,
        lr=3e-3,
        warmup_epochs=0.2,
        log=lambda line: None,
    )
    assert result.history[-1]["val_bits_per_token"] < 0.75 * math.log2(17)


#: the digits' source: 64 ids of 17 grey levels; one channel, so the grid is 8x8
DIGITS = {
    "size": 8,
    "channels": 1,
    "levels": 17,
    "dim": 64,
    "heads": 4,
    "ffn": 128,
    "block_length": 16,
    "drop": 0.0,
}
