"""Bidirectional InfoNCE: ``L = λ·l(p→c) + (1-λ)·l(c→p)``, averaged over the batch.

A batch holds B products and the U distinct categories they are paired with (``targets[i]``
is product i's category). ``p→c`` is a softmax over the batch's categories; ``c→p`` is a
softmax over the batch's products, averaging ``-log p`` over each category's products. When
every category is distinct (U = B, ``targets = arange(B)``) this is exactly the CLIP loss;
with repeats, a category that occurs twice is one class instead of its own negative.

``mask`` (B, U), optional: True where category u is *also* true for product i although it is
not the pair's target (an ancestor of its label, when training on every level). Those
entries are left out of both softmaxes, so a product is never pushed away from a category it
belongs to. The target entry must not be masked.
"""

from __future__ import annotations

from typing import Any

from ..encoders._torch import import_torch

torch = import_torch()
F = torch.nn.functional


def info_nce(products: Any, categories: Any, targets: Any, tau: Any, lam: float = 0.5, mask: Any = None) -> Any:
    """``products`` (B, d) and ``categories`` (U, d) L2-normalised; ``targets`` (B,) in [0, U)."""
    logits = products @ categories.T / tau  # (B, U)
    if mask is not None:
        mask = mask.clone()
        mask[torch.arange(targets.shape[0]), targets] = False  # the target always counts
        logits = logits.masked_fill(mask, float("-inf"))
    loss_pc = F.cross_entropy(logits, targets)
    log_p = F.log_softmax(logits.T, dim=1)  # (U, B)
    log_p = log_p.masked_fill(torch.isinf(log_p), 0.0)  # masked entries carry no weight below
    positive = F.one_hot(targets, categories.shape[0]).T.to(log_p.dtype)  # (U, B)
    counts = positive.sum(1)
    per_category = -(log_p * positive).sum(1) / counts.clamp(min=1)
    loss_cp = per_category[counts > 0].mean()
    return lam * loss_pc + (1 - lam) * loss_cp
