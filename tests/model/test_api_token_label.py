"""The head API of models with LV-ViT's token-label head (LV-ViT, Refiner): resetting the
classifier resets the auxiliary head with it, as the eval output adds the two."""

import pytest
import torch

import vitgraph

SMALL = {"input.size": 32, "depth": 2}


@pytest.mark.parametrize("spec", ["lv_vit_t", "refiner_vit_s"])
def test_reset_classifier_resets_the_token_label_head_too(spec):
    model = vitgraph.load(spec, overrides=SMALL).build().eval()
    x = torch.randn(2, 3, 32, 32)
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)
    logits, dense = model.train()(x)
    assert logits.shape == (2, 7) and dense.shape[-1] == 7
    model.eval()  # (the training forward moved the stem's BatchNorm statistics)
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    model.reset_classifier(0)
    assert torch.equal(model(x), features)  # headless: the pre-logits features
