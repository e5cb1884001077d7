"""Training objectives, each a plain function of tensors.

* label-smoothed cross-entropy with hard or soft (mixed) targets;
* DeiT distillation through the distillation token (arXiv:2012.12877 §5.2): soft
  (KL divergence at temperature tau) and hard (cross-entropy on the teacher's argmax);
* Token Labeling (LV-ViT, arXiv:2104.10858 §3.1): class loss + 0.5 x the mean dense
  cross-entropy of every patch token against its own soft label;
* Gong et al.'s over-smoothing losses ("Vision Transformers with Patch Diversification",
  arXiv:2104.12753 §4): pairwise cosine-similarity penalty of the last layer's patch
  tokens, patch-wise contrastive loss (last layer vs first-layer embedding), and the
  patch-wise mixing loss (each patch token supervised by its source image's label).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the leading dims of ``-sum(target * log_softmax(logits))`` (last dim =
    classes); ``target`` holds probabilities."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def classification_loss(
    logits: torch.Tensor, target: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy with label smoothing; ``target`` is class indices ``(B,)`` or
    probabilities ``(B, C)`` (MixUp / CutMix / MixToken)."""
    if target.dtype in (torch.int64, torch.int32):
        return F.cross_entropy(logits, target, label_smoothing=smoothing)
    classes = logits.shape[-1]
    return soft_cross_entropy(logits, target * (1 - smoothing) + smoothing / classes)


def one_hot(target: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(target, classes).float()


def distillation_loss(
    class_logits: torch.Tensor,
    dist_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: str = "hard",
    alpha: float = 0.5,
    tau: float = 1.0,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """DeiT §5.2. ``soft``: ``(1-alpha) CE(class, y) + alpha tau^2 KL(teacher_tau || dist_tau)``
    (the KL summed over classes, averaged over the batch); ``hard``: ``(1-alpha) CE(class,
    y) + alpha CE(dist, argmax teacher)`` (the paper's hard distillation uses alpha 0.5)."""
    base = classification_loss(class_logits, target, smoothing)
    teacher_logits = teacher_logits.detach()
    if kind == "soft":
        kl = F.kl_div(
            F.log_softmax(dist_logits / tau, dim=-1),
            F.log_softmax(teacher_logits / tau, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        return (1 - alpha) * base + alpha * tau * tau * kl
    if kind == "hard":
        return (1 - alpha) * base + alpha * F.cross_entropy(
            dist_logits, teacher_logits.argmax(dim=-1)
        )
    raise ValueError(f"distillation kind must be 'soft' or 'hard', not {kind!r}")


def token_label_loss(
    class_logits: torch.Tensor,
    token_logits: torch.Tensor,
    class_target: torch.Tensor,
    token_target: torch.Tensor,
    *,
    weight: float = 0.5,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """LV-ViT §3.1 Eq. 3: ``H(class, y_cls) + weight * mean_i H(token_i, y_i)``.

    ``token_logits`` and ``token_target`` are ``(B, N, C)``; the targets are soft labels
    (probabilities), e.g. a teacher's per-patch predictions, mixed by MixToken."""
    dense = soft_cross_entropy(token_logits, token_target)
    return classification_loss(class_logits, class_target, smoothing) + weight * dense


def cosine_similarity_penalty(patches: torch.Tensor) -> torch.Tensor:
    """Gong et al. §4, Eq. 4: mean pairwise cosine similarity ``1/(n(n-1)) sum_{i != j}
    cos(h_i, h_j)`` of a sample's patch tokens ``(B, N, D)``, averaged over the batch."""
    unit = F.normalize(patches, dim=-1)
    gram = unit @ unit.transpose(1, 2)  # (B, N, N)
    n = patches.shape[1]
    off_diagonal = gram.sum(dim=(1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(dim=1)
    return (off_diagonal / (n * (n - 1))).mean()


def patch_contrastive_loss(
    last: torch.Tensor, first: torch.Tensor, tau: float = 1.0
) -> torch.Tensor:
    """Gong et al. §4, Eq. 5: each last-layer patch ``h_i`` must pick its own first-layer
    embedding ``e_i`` among the sample's embeddings: ``-1/n sum_i log softmax_j(h_i.e_j)_i``.
    Both are L2-normalised (so ``tau`` is a cosine temperature); ``e`` is not trained by
    this loss (the paper stops its gradient)."""
    h = F.normalize(last, dim=-1)
    e = F.normalize(first.detach(), dim=-1)
    scores = h @ e.transpose(1, 2) / tau  # (B, N, N): row i = h_i against every e_j
    own = torch.arange(last.shape[1], device=last.device)
    return F.cross_entropy(scores.flatten(0, 1), own.repeat(last.shape[0]))


def patch_mixing_loss(patch_logits: torch.Tensor, patch_target: torch.Tensor) -> torch.Tensor:
    """Gong et al. §4, Eq. 6: every patch token's logits ``(B, N, C)`` against the label of
    the image the patch came from ``(B, N)`` (class indices) — CutMix at patch resolution."""
    return F.cross_entropy(patch_logits.flatten(0, 1), patch_target.flatten())
