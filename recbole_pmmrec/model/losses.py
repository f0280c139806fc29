"""The PMMRec objectives as pure, vectorised tensor functions.

Window convention (docs/DESIGN.md): ``ids`` (B, L+1) holds item ids, 0 = padding, sequences left-aligned.
The user encoder reads positions ``0..L-1``; its output at position ``l`` predicts ``ids[:, l+1]``.
A "slot" is one cell ``(b, l)`` of the window, ``l`` in ``0..L``; flattened slot index ``s = b * (L+1) + l``,
``S = B * (L+1)`` slots in all.

- :func:`nip_loss`: next-item prediction, softmax over all item slots of the batch (logQ debias).
- :func:`nicl_loss`: next-item enhanced cross-modal contrastive learning.
- :func:`corrupt_window` + :func:`nid_loss`: noised item detection.
- :func:`rcl_loss`: robustness-aware contrastive learning (clean vs corrupted user vectors).
- :func:`popularity_log_q`: ``log q(i)`` for the NIP debias.

Empty cases (no valid query / pair / position) return a zero that stays connected to the inputs' graph,
so ``loss.backward()`` always works.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError


def _zero(*tensors: Tensor) -> Tensor:
    """A scalar 0 that keeps the graph of ``tensors``."""
    return sum(t.sum() for t in tensors) * 0.0


def _presence(ids: Tensor) -> Tensor:
    """(B, S) bool: slot s's item id occurs somewhere in row b of ``ids`` (B, L+1), padding included."""
    b, width = ids.shape
    uniq, inverse = torch.unique(ids, return_inverse=True)  # inverse (B, L+1) in 0..U-1
    present = torch.zeros(b, uniq.numel(), dtype=torch.bool, device=ids.device)
    present.scatter_(1, inverse, True)  # (B, U)
    return present[:, inverse.reshape(-1)]  # (B, S)


# --------------------------------------------------------------------------------------------- NIP


def nip_loss(seq_out: Tensor, slot_emb: Tensor, ids: Tensor, log_q: Optional[Tensor] = None) -> Tensor:
    """Next-item prediction with an in-batch softmax over every item slot of the batch.

    Args:
        seq_out: (B, L, d) user-encoder outputs; position ``l`` predicts ``ids[:, l+1]``.
        slot_emb: (B, L+1, d) item vectors of every slot of the window.
        ids: (B, L+1) item ids, 0 = padding.
        log_q: (n_items,) ``log q(i)`` subtracted from every logit of item ``i`` (popularity debias,
            see :func:`popularity_log_q`), or None.

    Query ``(b, l)`` is valid iff ``ids[b, l] != 0`` and ``ids[b, l+1] != 0``; its positive is slot
    ``(b, l+1)``. Candidates are all S non-padding slots, except slots whose item occurs anywhere in user
    ``b``'s window (duplicates of the target, the user's other items), the positive slot itself excepted.
    Returns the cross-entropy averaged over valid queries. Memory O(B * L * S).
    """
    b, width, d = slot_emb.shape
    length = width - 1
    cand_emb = slot_emb.reshape(b * width, d)  # (S, d)
    cand_ids = ids.reshape(-1)  # (S,)
    logits = torch.einsum("bld,sd->bls", seq_out, cand_emb)  # (B, L, S)
    if log_q is not None:
        logits = logits - log_q.to(device=logits.device, dtype=logits.dtype)[cand_ids]

    exclude = _presence(ids) | (cand_ids == 0)[None, :]  # (B, S)
    exclude = exclude[:, None, :].expand(b, length, -1).clone()  # (B, L, S)
    positive = (torch.arange(b, device=ids.device) * width)[:, None] + torch.arange(1, width, device=ids.device)
    exclude.scatter_(2, positive[..., None], False)  # (B, L): slot (b, l+1)
    logits = logits.masked_fill(exclude, torch.finfo(logits.dtype).min)

    valid = (ids[:, 1:] != 0) & (ids[:, :-1] != 0)  # (B, L)
    if not bool(valid.any()):
        return _zero(seq_out, slot_emb)
    return F.cross_entropy(logits[valid], positive[valid])


def popularity_log_q(item_counts: Tensor) -> Tensor:
    """``log q(i)`` with ``q(i)`` = item i's share of the training interactions.

    Args:
        item_counts: (n_items,) non-negative interaction counts indexed by internal id; row 0 (padding)
            is ignored.

    Items with no training interaction and the padding row get the log of the smallest positive share
    (treated as being as rare as the rarest seen item), so every value is finite and unseen items are
    not favoured over seen ones by more than the rarest seen item is. With no interaction at all, every
    item gets ``log(1 / (n_items - 1))`` (uniform).
    """
    counts = item_counts.detach().to(torch.float64)
    if counts.dim() != 1 or counts.numel() < 2:
        raise PMMRecDataError(
            f"popularity_log_q: item_counts must be a 1-D tensor of n_items >= 2 counts (row 0 = padding), "
            f"got shape {tuple(item_counts.shape)}; pass the per-item interaction counts of the training split."
        )
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise PMMRecDataError(
            "popularity_log_q: item_counts has negative or non-finite values; "
            "pass the per-item interaction counts of the training split."
        )
    real = counts[1:]
    total = real.sum()
    if total <= 0:
        return torch.full_like(counts, -torch.log(torch.tensor(float(real.numel()), dtype=torch.float64))).float()
    share = counts / total
    floor = share[1:][real > 0].min()
    share[0] = floor
    share = torch.where(share > 0, share, floor)
    return share.log().to(torch.float32)


# -------------------------------------------------------------------------------------------- NICL


def nicl_loss(
    text_vec: Tensor,
    image_vec: Tensor,
    ids: Tensor,
    has_text: Tensor,
    has_image: Tensor,
    tau: float = 0.1,
) -> Tensor:
    """Next-item enhanced cross-modal contrastive learning.

    Args:
        text_vec: (B, L+1, p) per-slot text vectors, already through the shared projection head.
        image_vec: (B, L+1, p) per-slot image vectors, through the same head.
        ids: (B, L+1) item ids, 0 = padding.
        has_text, has_image: (B, L+1) bool, the slot's item has that modality.
        tau: temperature.

    Vectors are L2-normalised here; ``s(x, y) = cos(x, y) / tau``. A *node* is a (slot, modality) pair; it
    is present iff the slot's item is not padding and has the modality. Our grouping [ours, unpublished]:

    - Anchors: every present node, in both modalities (text anchors and image anchors: symmetric).
    - Positives of anchor ``(b, l, m)``: ``(b, l, m')`` (the same item in the other modality) and
      ``(b, l+1, m')`` (the next item of the same user in the other modality), each if present.
    - Negatives of the anchor: every present node of the OTHER users of the batch, in both modalities
      (inter- and intra-modality), except nodes whose item is the anchor's item or the anchor's next item
      ``ids[b, l+1]`` (false negatives: the same item bought by another user).
    - Each (anchor, positive) pair gives ``-log(e^{s_p} / (e^{s_p} + sum_neg e^{s_n}))``; the loss is the
      mean over all pairs of both directions. No pair (e.g. no image in the batch) -> 0.

    Memory O(S^2) for ``S = B * (L+1)``.
    """
    b, width, p = text_vec.shape
    s = b * width
    dev = ids.device
    z = torch.cat([text_vec.reshape(s, p), image_vec.reshape(s, p)], dim=0)  # (2S, p): text nodes, then image
    z = F.normalize(z, dim=-1)
    sim = z @ z.t() / tau  # (2S, 2S)

    flat_ids = ids.reshape(-1)  # (S,)
    present = torch.cat([has_text.reshape(-1), has_image.reshape(-1)]).bool() & (flat_ids != 0).repeat(2)  # (2S,)
    user = torch.arange(b, device=dev).repeat_interleave(width)  # (S,)
    pos_in_row = torch.arange(width, device=dev).repeat(b)  # (S,)
    has_next = pos_in_row < width - 1
    next_ids = torch.where(has_next, flat_ids.roll(-1), torch.zeros_like(flat_ids))  # (S,), 0 = no next item

    # slot-level negative mask (S, S): other user, not the anchor's item, not its next item
    neg_slot = (user[:, None] != user[None, :]) & (flat_ids[None, :] != flat_ids[:, None])
    neg_slot &= (flat_ids[None, :] != next_ids[:, None]) | (next_ids[:, None] == 0)
    neg = neg_slot.repeat(2, 2) & present[None, :] & present[:, None]  # (2S, 2S)
    neg_lse = sim.masked_fill(~neg, torch.finfo(sim.dtype).min).logsumexp(dim=1)  # (2S,)

    # positives: node k = m * S + slot; partner in the other modality m' = 1 - m
    node = torch.arange(2 * s, device=dev)
    other = (node + s) % (2 * s)  # same slot, other modality
    same_ok = present & present[other]
    next_node = other + 1  # next slot, other modality (valid only when has_next)
    next_ok = present & has_next.repeat(2)
    next_node = torch.where(next_ok, next_node, other)
    next_ok &= present[next_node]

    anchors = torch.cat([node[same_ok], node[next_ok]])
    partners = torch.cat([other[same_ok], next_node[next_ok]])
    if anchors.numel() == 0:
        return _zero(text_vec, image_vec)
    s_pos = sim[anchors, partners]  # (P,)
    return (torch.logaddexp(s_pos, neg_lse[anchors]) - s_pos).mean()


# --------------------------------------------------------------------------------------------- NID


def corrupt_window(
    ids: Tensor, ratio: float, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Choose input positions to replace by items of other slots of the batch (for NID and RCL).

    Args:
        ids: (B, L+1) item ids, 0 = padding. Only input positions ``0..L-1`` with a non-zero id are touched.
        ratio: fraction of each sequence's valid inputs to replace: ``k = round(ratio * n_valid)`` (round half
            to even), at least 1 when ``ratio > 0`` and the sequence has >= 2 valid inputs.
        generator: the random generator (any device; None = torch's global one). Random numbers are drawn
            on the generator's device and moved to ``ids.device``: same generator state -> same result.

    Each chosen position takes the item of a uniformly drawn non-padding slot of the whole window batch
    (any user, targets included) whose item differs from the original; a position for which no such slot
    exists stays clean.

    Returns:
        ``(src_b, src_l, is_noise)``: (B, L) long, (B, L) long, (B, L) bool. Input position ``(b, l)`` now
        holds the item of slot ``(src_b[b, l], src_l[b, l])`` (identity where untouched), so the corrupted
        ids are ``ids[src_b, src_l]`` and the corrupted item vectors ``slot_emb[src_b, src_l]``.
    """
    if not 0.0 <= ratio <= 1.0:
        raise PMMRecConfigError(f"corrupt_window: nid_ratio={ratio} must be in [0, 1]; fix `nid_ratio`.")
    b, width = ids.shape
    length = width - 1
    dev = ids.device
    src_b = torch.arange(b, device=dev)[:, None].expand(b, length).clone()
    src_l = torch.arange(length, device=dev)[None, :].expand(b, length).clone()
    inputs = ids[:, :length]  # (B, L)
    valid = inputs != 0
    n_valid = valid.sum(dim=1)  # (B,)
    k = torch.round(n_valid.to(torch.float64) * ratio).long()
    if ratio > 0:
        k = torch.where(n_valid >= 2, k.clamp(min=1), k)
    k = torch.minimum(k, n_valid)

    # k random valid positions per row: rank valid positions by a random score, padding ranks last
    rng_dev = generator.device if generator is not None else dev
    score = torch.rand(b, length, generator=generator, device=rng_dev).to(dev).masked_fill(~valid, 2.0)
    rank = score.argsort(dim=1).argsort(dim=1)  # (B, L)
    chosen = valid & (rank < k[:, None])
    if not bool(chosen.any()):
        return src_b, src_l, chosen

    # for each chosen position, a random non-padding slot holding a different item
    cand_ids = ids.reshape(-1)  # (S,)
    orig = inputs[chosen]  # (P,)
    allowed = (cand_ids[None, :] != 0) & (cand_ids[None, :] != orig[:, None])  # (P, S)
    draw = torch.rand(orig.numel(), cand_ids.numel(), generator=generator, device=rng_dev).to(dev)
    draw = draw.masked_fill(~allowed, -1.0)
    slot = draw.argmax(dim=1)  # (P,)
    ok = allowed.any(dim=1)
    rows, cols = chosen.nonzero(as_tuple=True)
    rows, cols, slot = rows[ok], cols[ok], slot[ok]
    src_b[rows, cols] = slot // width
    src_l[rows, cols] = slot % width
    is_noise = torch.zeros_like(chosen)
    is_noise[rows, cols] = True
    return src_b, src_l, is_noise


def nid_loss(logits: Tensor, is_noise: Tensor, valid: Tensor) -> Tensor:
    """Noised item detection: binary cross-entropy with logits (B, L) against ``is_noise`` (B, L), averaged
    over the ``valid`` (B, L) positions (non-padding inputs of the corrupted sequence)."""
    valid = valid.bool()
    if not bool(valid.any()):
        return _zero(logits)
    return F.binary_cross_entropy_with_logits(logits[valid], is_noise[valid].to(logits.dtype))


# --------------------------------------------------------------------------------------------- RCL


def rcl_loss(u_clean: Tensor, u_noisy: Tensor, tau: float) -> Tensor:
    """Robustness-aware contrastive learning [ours]: InfoNCE between clean and corrupted user vectors.

    Args:
        u_clean: (B, d) user vectors of the original sequences.
        u_noisy: (B, d) user vectors of their corrupted copies (same row order).
        tau: temperature.

    Both are L2-normalised; ``sim[i, j] = cos(clean_i, noisy_j) / tau``. The positive of clean user i is
    noisy user i, its negatives the noisy vectors of the other users in the batch (and symmetrically for
    noisy -> clean). The loss is the average of the two cross-entropies.
    """
    c = F.normalize(u_clean, dim=-1)
    n = F.normalize(u_noisy, dim=-1)
    sim = c @ n.t() / tau  # (B, B)
    target = torch.arange(sim.shape[0], device=sim.device)
    return 0.5 * (F.cross_entropy(sim, target) + F.cross_entropy(sim.t(), target))
