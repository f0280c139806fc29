"""Pooling of token states: the masked mean, and the mean of runs of consecutive tokens (pure tensor code)."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mean(x: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Mean of ``x`` (N, L, d) over the positions where ``mask`` (N, L) is True -> (N, d).

    ``mask=None`` means every position. Rows without any valid position give zeros.
    """
    if mask is None:
        return x.mean(dim=1)
    mask = mask.bool().unsqueeze(-1)  # (N, L, 1)
    count = mask.sum(dim=1).clamp(min=1).to(x.dtype)  # (N, 1)
    return x.masked_fill(~mask, 0.0).sum(dim=1) / count  # masked_fill: even inf/nan padding stays out


def pool_token_groups(x: Tensor, mask: Tensor, groups: int) -> tuple[Tensor, Tensor, Tensor]:
    """Average each item's valid tokens in ``groups`` runs of consecutive tokens [ours].

    ``x`` (N, L, D), ``mask`` (N, L) bool. An item with n > ``groups`` valid tokens gets ``groups`` tokens,
    token r (0-based among its valid ones) going to group ``floor(r * groups / n)`` (runs of n / groups tokens,
    in order); an item with n <= ``groups`` keeps its n tokens as they are. Returns the pooled tokens (N, G, D),
    their mask (N, G) (valid groups first) and each group's token count (N, G), G = min(L, ``groups``). The
    count-weighted mean of the groups is the mean of the valid tokens.
    """
    n_items, length = mask.shape
    g = min(length, groups)
    mask = mask.bool()
    rank = mask.cumsum(dim=1) - 1  # (N, L) rank among the item's valid tokens
    n = mask.sum(dim=1, keepdim=True)  # (N, 1)
    group = torch.where(n > g, torch.div(rank * g, n.clamp(min=1), rounding_mode="floor"), rank)
    assign = F.one_hot(group.clamp(0, g - 1), g).to(x.dtype) * mask[..., None].to(x.dtype)  # (N, L, G)
    counts = assign.sum(dim=1)  # (N, G)
    pooled = assign.transpose(1, 2) @ x / counts.clamp(min=1)[..., None]  # (N, G, D)
    return pooled, counts > 0, counts
