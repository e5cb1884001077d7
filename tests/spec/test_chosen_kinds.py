"""A composite whose param chooses an inner kind (``encoder_layer``'s ``attention``) hosts
every kind it can feed (#24 item 2): a param left at its default reaches only the kinds
that take it; one the user set, a param the kind needs, or a kind the composite cannot
feed is a located error naming the composite's param to set or the composite that holds
the kind."""

from __future__ import annotations

import pytest
import torch

import vitgraph
from tests.helpers import line_of, redraw_
from vitgraph import SpecError
from vitgraph.spec.catalog import registry, shipped_specs

VIT = shipped_specs()["vit"]

SPEC = """\
vitgraph: 1
name: chosen
input: {{channels: 3, size: 32}}
graph:
  - {{id: embed, kind: patch_embed, patch: 4, dim: 32}}
  - {{id: blocks, kind: {layer}, repeat: 2, attention: {kind}{extra}}}
  - {{id: norm, kind: layernorm}}
  - {{id: pool, kind: mean_pool}}
  - {{id: head, kind: linear_head, classes: 3}}
"""
ENTRY_LINE = 6


def spec(layer: str, kind: str, **params) -> str:
    extra = "".join(f", {k}: {v}" for k, v in params.items())
    return SPEC.format(layer=layer, kind=kind, extra=extra)


def chosen(layer: str, kind: str, **params) -> vitgraph.Graph:
    return vitgraph.load("chosen.yaml", text=spec(layer, kind, **params))


def error_of(action) -> SpecError:
    with pytest.raises(SpecError) as info:
        action()
    return info.value


ATTENTION_KINDS = sorted(k for k, c in registry().primitives.items() if c.role == "attention")
#: the layer composites that take their attention kind as a param, with what each needs
LAYERS = {
    "encoder_layer": {"heads": 2},
    "deepvit_layer": {"heads": 2},
    "parallel_layer": {"heads": 2},
    "t2t_layer": {"out_dim": 32},
    "image_transformer_layer": {"heads": 2, "ffn": 64},
    "res_post_layer": {"heads": 2},
}
#: composites whose param chooses another inner kind than an attention: swin_stage's
#: `layer`, its block (swin_layer, or Swin v2's swinv2_layer)
OTHER_CHOICES = {"swin_stage": "layer"}
#: the inner node holding the chosen kind (parallel_layer: the first of its two branches)
CHOSEN_NODE = {"parallel_layer": "attn0"}


def _choosing_composites() -> set[str]:
    found = set()
    for name, composite in registry().composites.items():
        for entry in composite.graph:
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if isinstance(kind, str) and kind[1:] in composite.params.model_fields:
                found.add(name)
    return found


def test_the_table_holds_every_composite_whose_param_chooses_an_inner_kind():
    # t2t_module passes its attention on to t2t_layer, which chooses with it
    assert _choosing_composites() == set(LAYERS) | set(OTHER_CHOICES)


@pytest.mark.parametrize(
    ("layer", "attention"),
    [("swin_layer", "shifted_window_attention"), ("swinv2_layer", "cosine_window_attention")],
)
def test_swin_stage_builds_the_block_kind_its_layer_param_chooses(layer, attention):
    overrides = {"image_size": 32, "window": 4, "depths": [2, 1, 1, 1], "layers.layer": layer}
    graph = vitgraph.load("swin_t", overrides=overrides)
    assert graph.node("layers.0.blocks.1.attn").kind == attention
    assert graph.build()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_every_attention_kind_builds_in_every_layer_composite_or_the_error_says_why(layer, kind):
    fields = registry().primitives[kind].model_fields
    params = dict(LAYERS[layer])
    node = f"blocks.0.{CHOSEN_NODE.get(layer, 'attn')}"
    if "window" in fields and layer != "t2t_layer":
        params["window"] = 4  # a window of the 8x8 grid
    try:
        graph = chosen(layer, kind, **params)
    except SpecError as exc:
        text = str(exc)
        # the chosen node's own shape rule speaks for itself; anything else names both
        own = exc.problems[0].path == node and kind in exc.problems[0].message
        assert own or (layer in text and kind in text), text
        assert exc.problems[0].location.line == ENTRY_LINE
        return
    model = graph.build().eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert graph.node(node).kind == kind


def test_a_param_left_at_its_default_does_not_reach_a_kind_without_it():
    # encoder_layer passes proj_bias (default true); shifted windows take none
    graph = chosen("encoder_layer", "shifted_window_attention", heads=2, window=4)
    attn = graph.node("blocks.0.attn").params
    assert "proj_bias" not in type(attn).model_fields
    assert (attn.window, attn.shift, attn.heads) == (4, 0, 2)


def test_a_param_the_user_set_that_the_chosen_kind_lacks_is_located_at_the_users_key():
    text = spec("encoder_layer", "shifted_window_attention", heads=2, window=4, proj_bias="false")
    error = error_of(lambda: vitgraph.load("chosen.yaml", text=text))
    col = text.splitlines()[ENTRY_LINE - 1].index("false") + 1
    assert str(error) == (
        f"chosen.yaml:{ENTRY_LINE}:{col}: blocks.0.proj_bias: encoder_layer's proj_bias does "
        "not reach its attention shifted_window_attention, which takes no proj_bias\n"
        "  hint: leave proj_bias out, or choose another attention that takes it: "
        "class_attention, conv_attention, eva_attention, grouped_attention, "
        "local_attention_1d, local_attention_2d, mhsa, reattention"
    )


def test_a_param_the_chosen_kind_needs_names_the_composite_param_to_set():
    error = error_of(
        lambda: vitgraph.load("vit_ti_16", overrides={"blocks.attention": "grouped_attention"})
    )
    assert str(error) == (
        "<--set>: blocks.0.window: grouped_attention needs window: set encoder_layer's window\n"
        "  hint: window: Window side, for attention kinds with one."
    )


def test_a_kind_the_composite_cannot_feed_names_the_composite_that_holds_it():
    error = error_of(lambda: chosen("encoder_layer", "levit_attention", heads=2))
    assert error.problems[0].message == (
        "encoder_layer cannot hold levit_attention as its attention: levit_attention needs "
        "key_dim, which encoder_layer does not pass"
    )
    assert error.problems[0].hint == "levit_attention is held by levit_layer"
    error = error_of(lambda: chosen("encoder_layer", "cross_attention_fusion", heads=2))
    assert error.problems[0].message == (
        "encoder_layer cannot hold cross_attention_fusion as its attention: "
        "cross_attention_fusion takes 2 input(s), encoder_layer gives it 1"
    )


def test_a_chosen_kind_that_changes_the_tokens_is_named_in_the_hint_of_what_fails_after_it():
    error = error_of(
        lambda: vitgraph.load("vit_ti_16", overrides={"blocks.attention": "class_attention"})
    )
    problem = error.problems[0]
    assert problem.path == "blocks.0.residual1"
    assert str(problem.location) == f"{VIT}:{line_of(VIT, 'kind: encoder_layer')}:11"
    assert problem.hint == (
        "blocks.0.attn is class_attention (encoder_layer's attention), which turns tokens "
        "197x192, grid 14x14, +1 prefix into tokens 1x192, +1 prefix; class_attention is "
        "held by class_attention_layer"
    )


def test_encoder_layers_with_shifted_windows_compute_swins_blocks():
    """encoder_layer + shifted_window_attention (window, alternating shift) is the Swin
    block: the same weights give the same outputs as swin_layer's."""
    swin = vitgraph.load(
        "swin_layers.yaml",
        text=SPEC.format(layer="swin_layer", kind="x", extra="")
        .replace("attention: x", "heads: 2, window: 4")
        .replace("repeat: 2,", 'repeat: 2, shift: "${2 if i % 2 else 0}",'),
    ).build()
    ours = chosen(
        "encoder_layer",
        "shifted_window_attention",
        heads=2,
        window=4,
        shift='"${2 if i % 2 else 0}"',
        norm_eps=1.0e-5,
    ).build()
    redraw_(swin).eval()
    assert ours.load_state_dict(swin.state_dict()) is not None
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), swin(x), rtol=0, atol=1e-5)
