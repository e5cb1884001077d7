"""The linear probe (iGPT §3.3): pooled features of a chosen layer, a linear classifier,
held-out accuracy."""

import pytest
import torch

import vitgraph
from vitgraph.train.data import load_data
from vitgraph.train.probe import linear_probe, middle_layer, pooled_features

SMALL = {"positions": 64, "palette": 17, "depth": 4, "dim": 32, "heads": 2}


def _digits(graph):
    return load_data("digits", graph.input_shape, val_fraction=0.2, seed=0, vocab=17)


def test_the_middle_layer_is_the_middle_unit_of_the_longest_repeat():
    assert middle_layer(vitgraph.load("igpt", overrides=SMALL)) == "h.2"


def test_the_probe_pools_the_chosen_layer_s_tokens_over_positions():
    torch.manual_seed(0)
    model = vitgraph.build("igpt", overrides=SMALL).eval()
    ids = torch.randint(0, 17, (5, 64), generator=torch.Generator().manual_seed(1))
    pooled = pooled_features(model, model.vitgraph_graph, "h.1", ids)
    with torch.no_grad():  # the stream after layer h.1, by hand (pre-norm layers)
        x = model.wpe(model.sos(model.wte(ids)))
        for i in (0, 1):
            layer = model.h.get_submodule(str(i))
            x = x + layer.attn(layer.norm1(x))
            x = x + layer.mlp(layer.norm2(x))
    assert pooled.shape == (5, SMALL["dim"])
    torch.testing.assert_close(pooled, x.mean(1), rtol=0, atol=1e-6)


def test_an_unknown_layer_is_refused_with_the_repeats():
    model = vitgraph.build("igpt", overrides=SMALL)
    data = _digits(model.vitgraph_graph)
    with pytest.raises(ValueError, match=r"no layer 'h\.9' in igpt \(repeats: h\)"):
        linear_probe(model, data, "h.9")


def test_the_probe_separates_digits_from_a_layer_that_sees_them():
    """A model whose features carry the image (a random init does: the token embedding
    is injective) gives a probe far above chance (0.1) on ten classes."""
    torch.manual_seed(0)
    model = vitgraph.build("igpt", overrides=SMALL)
    result = linear_probe(model, _digits(model.vitgraph_graph), "h.0", steps=50)
    assert result.layer == "h.0"
    assert result.val_accuracy > 0.4 and result.train_accuracy >= result.val_accuracy


@pytest.mark.slow
def test_trained_features_probe_better_than_random_ones():
    torch.manual_seed(0)
    overrides = {**SMALL, "dim": 128, "heads": 4}
    trained = vitgraph.train(
        "igpt", overrides=overrides, data="digits", epochs=8, progress=False, log=print
    )
    data = _digits(trained.graph)
    torch.manual_seed(0)
    random = trained.graph.build()
    for layer in ("h.1", "h.2"):
        ours, chance = linear_probe(trained.model, data, layer), linear_probe(random, data, layer)
        print(f"probe {layer}: trained {ours.val_accuracy:.3f}, random {chance.val_accuracy:.3f}")
        assert ours.val_accuracy > chance.val_accuracy + 0.02
