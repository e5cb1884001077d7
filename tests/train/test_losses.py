"""Each training loss against a hand computation on tiny tensors."""

import math

import pytest
import torch

from vitgraph.train import losses


def _log_softmax(row):
    m = max(row)
    z = math.log(sum(math.exp(v - m) for v in row)) + m
    return [v - z for v in row]


def _softmax(row):
    return [math.exp(v) for v in _log_softmax(row)]


def test_cross_entropy_with_label_smoothing_matches_the_hand_computation():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    ls = _log_softmax([1.0, 2.0, 0.5])
    eps = 0.3
    expected = -((1 - eps) * ls[1] + eps / 3 * sum(ls))
    got = losses.classification_loss(logits, torch.tensor([1]), smoothing=eps)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    soft = losses.classification_loss(logits, torch.tensor([[0.0, 1.0, 0.0]]), smoothing=eps)
    assert soft.item() == pytest.approx(expected, abs=1e-6)


def test_soft_distillation_is_kl_at_temperature_times_tau_squared():
    cls, dist, teacher = [0.2, -0.4], [1.0, 0.0], [0.0, 2.0]
    tau, alpha = 2.0, 0.25
    p_t = _softmax([v / tau for v in teacher])
    ls_s = _log_softmax([v / tau for v in dist])
    kl = sum(p * (math.log(p) - s) for p, s in zip(p_t, ls_s, strict=True))
    ce = -_log_softmax(cls)[0]
    expected = (1 - alpha) * ce + alpha * tau * tau * kl
    got = losses.distillation_loss(
        torch.tensor([cls]),
        torch.tensor([dist]),
        torch.tensor([teacher]),
        torch.tensor([0]),
        kind="soft",
        alpha=alpha,
        tau=tau,
    )
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_hard_distillation_uses_the_teachers_argmax_as_the_distillation_label():
    cls, dist, teacher = [0.2, -0.4], [1.0, 0.0], [0.0, 2.0]
    expected = 0.5 * -_log_softmax(cls)[0] + 0.5 * -_log_softmax(dist)[1]
    got = losses.distillation_loss(
        torch.tensor([cls]),
        torch.tensor([dist]),
        torch.tensor([teacher]),
        torch.tensor([0]),
        kind="hard",
    )
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_token_label_loss_is_class_loss_plus_half_the_mean_dense_loss():
    cls = [0.5, -0.5]
    tokens = [[1.0, 0.0], [0.0, 3.0], [2.0, 2.0]]
    targets = [[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]
    dense = (
        sum(
            -sum(t * s for t, s in zip(tt, _log_softmax(row), strict=True))
            for row, tt in zip(tokens, targets, strict=True)
        )
        / 3
    )
    expected = -_log_softmax(cls)[1] + 0.5 * dense
    got = losses.token_label_loss(
        torch.tensor([cls]), torch.tensor([tokens]), torch.tensor([1]), torch.tensor([targets])
    )
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_cosine_penalty_averages_the_off_diagonal_similarities():
    patches = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]]])
    c = 1 / math.sqrt(2)  # cos 45 degrees; the first two are orthogonal
    expected = 2 * (0.0 + c + c) / (3 * 2)
    assert losses.cosine_similarity_penalty(patches).item() == pytest.approx(expected, abs=1e-6)
    same = torch.ones(2, 4, 3)
    assert losses.cosine_similarity_penalty(same).item() == pytest.approx(1.0, abs=1e-6)


def test_patch_contrastive_loss_is_cross_entropy_over_first_layer_embeddings():
    last = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    first = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    c = 1 / math.sqrt(2)
    # row 0: h=(1,0) vs e=(1,0),(0,1) -> scores (1, 0); row 1: h=(c,c) -> scores (c, c)
    expected = (-_log_softmax([1.0, 0.0])[0] - _log_softmax([c, c])[1]) / 2
    got = losses.patch_contrastive_loss(last, first)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    first.requires_grad_(True)
    losses.patch_contrastive_loss(last.requires_grad_(True), first).backward()
    assert first.grad is None  # the embedding side is a fixed target (stop-gradient)


def test_patch_mixing_loss_supervises_each_patch_with_its_source_label():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    labels = torch.tensor([[0, 0]])
    expected = (-_log_softmax([2.0, 0.0])[0] - _log_softmax([0.0, 1.0])[0]) / 2
    assert losses.patch_mixing_loss(logits, labels).item() == pytest.approx(expected, abs=1e-6)


def test_an_unknown_distillation_kind_is_refused():
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="'soft' or 'hard'"):
        losses.distillation_loss(x, x, x, torch.tensor([0]), kind="medium")
