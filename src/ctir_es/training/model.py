"""The CLIP-ITA heads (PyTorch): MLPs with two hidden layers, GELU and LayerNorm.

- product head: ``concat(enabled modality features) -> d``;
- category head: ``category text embedding -> d``;
- both outputs L2-normalised; the temperature τ is fixed (the paper: τ = 1) or learnt
  (stored as log τ, clamped to [0.01, 100]).

Optional (``skip=True``, not in the paper): each head adds a linear skip path to the MLP, and
the MLP's last layer starts at zero. When the features include the title and ``d`` equals the
text dims, the skips start as identities on the title block and on the category embedding,
so training starts from the zero-shot text model instead of from noise - what lets a small
catalogue (where most test categories are unseen) improve on zero-shot rather than forget it.
"""

from __future__ import annotations

import math
from typing import Any

from ..encoders._torch import import_torch

torch = import_torch()
nn = torch.nn
F = torch.nn.functional


def projection_head(in_dim: int, out_dim: int, hidden: int, dropout: float = 0.0) -> Any:
    """Linear -> GELU -> LayerNorm (x2, with dropout) -> Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Dropout(dropout),
        nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Dropout(dropout),
        nn.Linear(hidden, out_dim),
    )


class SkipHead(nn.Module):  # type: ignore[misc,name-defined]
    """``mlp(x) + skip(x)``; the MLP's last layer starts at zero, the skip at ``skip_init``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float, skip_init: Any = None) -> None:
        super().__init__()
        self.mlp = projection_head(in_dim, out_dim, hidden, dropout)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        if skip_init is not None:
            with torch.no_grad():
                self.skip.weight.copy_(skip_init)

    def forward(self, x: Any) -> Any:
        return self.mlp(x) + self.skip(x)


def identity_block(in_dim: int, out_dim: int, offset: int) -> Any:
    """A (out_dim, in_dim) matrix that copies ``x[offset:offset + out_dim]``."""
    weight = torch.zeros(out_dim, in_dim)
    weight[:, offset:offset + out_dim] = torch.eye(out_dim)
    return weight


class ClipIta(nn.Module):  # type: ignore[misc,name-defined]
    def __init__(self, product_dim: int, category_dim: int, out_dim: int = 256, hidden: int = 512,
                 dropout: float = 0.1, tau: float = 1.0, learn_tau: bool = False, skip: bool = False,
                 title_offset: int | None = None) -> None:
        super().__init__()
        if skip:
            aligned = title_offset is not None and out_dim == category_dim
            self.product_head = SkipHead(product_dim, out_dim, hidden, dropout,
                                         identity_block(product_dim, out_dim, title_offset or 0) if aligned else None)
            self.category_head = SkipHead(category_dim, out_dim, hidden, dropout,
                                          torch.eye(out_dim) if aligned else None)
        else:
            self.product_head = projection_head(product_dim, out_dim, hidden, dropout)
            self.category_head = projection_head(category_dim, out_dim, hidden, dropout)
        log_tau = torch.tensor(math.log(tau), dtype=torch.float32)
        if learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

    @property
    def tau(self) -> Any:
        return self.log_tau.clamp(math.log(0.01), math.log(100.0)).exp()

    def encode_products(self, x: Any) -> Any:
        return F.normalize(self.product_head(x), dim=-1)

    def encode_categories(self, x: Any) -> Any:
        return F.normalize(self.category_head(x), dim=-1)


class NormalisedHead(nn.Module):  # type: ignore[misc,name-defined]
    """One head with its L2 normalisation: the unit that is exported to ONNX."""

    def __init__(self, head: Any) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: Any) -> Any:
        return F.normalize(self.head(features), dim=-1)
