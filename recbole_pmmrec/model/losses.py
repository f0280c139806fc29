"""The PMMRec objectives as pure, vectorised tensor functions.

Window convention (docs/DESIGN.md): ``ids`` (B, L+1) holds item ids, 0 = padding, sequences left-aligned.
The user encoder reads positions ``0..L-1``; its output at position ``l`` predicts ``ids[:, l+1]``.
A "slot" is one cell ``(b, l)`` of the window, ``l`` in ``0..L``; flattened slot index ``s = b * (L+1) + l``,
``S = B * (L+1)`` slots in all.

- :func:`nip_loss`: next-item prediction, softmax over all item slots of the batch (logQ debias), optionally
  mixed with items sampled uniformly from the catalogue.
- :func:`nicl_loss`: next-item enhanced cross-modal contrastive learning.
- :func:`corrupt_window` + :func:`nid_loss`: noised item detection.
- :func:`rcl_loss`: robustness-aware contrastive learning (clean vs corrupted user vectors).
- :func:`popularity_log_q`: ``log q(i)`` for the NIP debias.

Empty cases (no valid query / pair / position) return a zero that stays connected to the inputs' graph,
so ``loss.backward()`` always works.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError


def _zero(*tensors: Tensor) -> Tensor:
    """A scalar 0 that keeps the graph of ``tensors``."""
    return sum(t.sum() for t in tensors) * 0.0


def _row_items(ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``ids``' distinct items (U,), each slot's index among them (B, L+1), and (B, U) bool: item u occurs in row b."""
    uniq, inverse = torch.unique(ids, return_inverse=True)  # inverse (B, L+1) in 0..U-1
    present = torch.zeros(ids.shape[0], uniq.numel(), dtype=torch.bool, device=ids.device)
    present.scatter_(1, inverse, True)  # (B, U)
    return uniq, inverse, present


# --------------------------------------------------------------------------------------------- NIP


def nip_loss(seq_out: Tensor, slot_emb: Tensor, ids: Tensor, log_q: Optional[Tensor] = None,
             extra_emb: Optional[Tensor] = None, extra_ids: Optional[Tensor] = None,
             n_sampled_from: Optional[int] = None, history_negatives: bool = False) -> Tensor:
    """Next-item prediction with an in-batch softmax over every item slot of the batch, optionally mixed with
    items sampled uniformly from the catalogue (mixed negative sampling, after Yang et al., WWW 2020).

    Args:
        seq_out: (B, L, d) user-encoder outputs; position ``l`` predicts ``ids[:, l+1]``.
        slot_emb: (B, L+1, d) item vectors of every slot of the window.
        ids: (B, L+1) item ids, 0 = padding.
        log_q: (n_items,) ``log q(i)`` subtracted from every logit of item ``i`` (popularity debias,
            see :func:`popularity_log_q`), or None.
        extra_emb: (M, d) vectors of M extra candidates shared by every query (sampled uniformly), or None.
        extra_ids: (M,) their item ids (> 0).
        n_sampled_from: how many items the extra candidates were drawn from (for the debias).
        history_negatives: the user's items before the query's target (its input history) are negatives too,
            unless they are the target's item: where users repeat items and the evaluation ranks the history, a
            history item must earn its place. The user's later items stay out.

    Query ``(b, l)`` is valid iff ``ids[b, l] != 0`` and ``ids[b, l+1] != 0``; its positive is slot
    ``(b, l+1)``. Candidates are all C non-padding slots and the M extra items, except those whose item occurs
    anywhere in user ``b``'s window (duplicates of the target, the user's other items; with
    ``history_negatives`` the items at positions ``<= l`` are kept unless they are the target's), the positive
    slot itself excepted. With extra items the debias subtracts ``log(C q(i) + M / n_sampled_from)``, the log of the
    expected number of times item ``i`` is a candidate (a constant shift of ``log q(i)`` when M = 0).
    Returns the cross-entropy averaged over valid queries. Memory O(Q * (C + M)).
    """
    b, width, d = slot_emb.shape
    dev = ids.device
    flat_ids = ids.reshape(-1)  # (S,)
    valid = (ids[:, 1:] != 0) & (ids[:, :-1] != 0)  # (B, L)
    if not bool(valid.any()):
        return _zero(seq_out, slot_emb)
    q_b, q_l = valid.nonzero(as_tuple=True)  # (Q,)
    cand = (flat_ids != 0).nonzero(as_tuple=True)[0]  # (C,) non-padding slots
    slot_to_cand = torch.full_like(flat_ids, -1)
    slot_to_cand[cand] = torch.arange(cand.numel(), device=dev)
    target = slot_to_cand[q_b * width + q_l + 1]  # (Q,) the positive slot (b, l+1), as a candidate index

    queries = seq_out[q_b, q_l]  # (Q, d)
    cand_emb, cand_ids = slot_emb.reshape(-1, d)[cand], flat_ids[cand]
    mixed = extra_emb is not None and extra_ids is not None and extra_ids.numel() > 0
    if mixed:
        cand_emb, cand_ids = torch.cat([cand_emb, extra_emb]), torch.cat([cand_ids, extra_ids])
    logits = queries @ cand_emb.t()  # (Q, C [+ M])
    if log_q is not None:
        lq = log_q.to(device=logits.device, dtype=logits.dtype)[cand_ids]
        if mixed:
            if not n_sampled_from:
                raise PMMRecConfigError("nip_loss: extra candidates need n_sampled_from (the size of the pool they "
                                        "were drawn from) for the popularity debias")
            lq = torch.logaddexp(lq + math.log(cand.numel()),
                                 torch.full_like(lq, math.log(extra_ids.numel() / n_sampled_from)))
        logits = logits - lq
    uniq, inverse, present = _row_items(ids)  # present (B, U): item u is in row b's window, padding included
    exclude = present[:, inverse.reshape(-1)[cand]][q_b]  # (Q, C): the candidate's item is in the query's window
    if mixed:
        exclude = torch.cat([exclude, _presence_of(uniq, present, extra_ids)[q_b]], dim=1)
    if history_negatives:  # keep the candidates whose item the user had at or before the query's position
        first = torch.full(present.shape, width, dtype=torch.long, device=dev)  # (B, U): first position in row b
        first.scatter_reduce_(1, inverse, torch.arange(width, device=dev).expand_as(ids), reduce="amin")
        cand_u = inverse.reshape(-1)[cand]
        if mixed:
            cand_u = torch.cat([cand_u, _index_in(uniq, extra_ids)])
        had = first[q_b][:, cand_u.clamp(min=0)] <= q_l.unsqueeze(1)  # (Q, C [+ M])
        had &= (cand_u >= 0).unsqueeze(0) & (cand_ids.unsqueeze(0) != ids[q_b, q_l + 1].unsqueeze(1))
        exclude &= ~had
    exclude[torch.arange(target.numel(), device=dev), target] = False
    logits = logits.masked_fill(exclude, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, target)


def _index_in(uniq: Tensor, items: Tensor) -> Tensor:
    """(M,) each of ``items``' index in the sorted ``uniq``, or -1 where it is not there."""
    pos = torch.searchsorted(uniq, items).clamp(max=uniq.numel() - 1)
    return torch.where(uniq[pos] == items, pos, -1)


def _presence_of(uniq: Tensor, present: Tensor, items: Tensor) -> Tensor:
    """(B, M) bool: ``items[m]`` occurs in row b, from :func:`_row_items`' ``uniq`` and ``present``."""
    pos = _index_in(uniq, items)
    return present[:, pos.clamp(min=0)] & (pos >= 0)[None, :]


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
        return torch.full(counts.shape, -math.log(real.numel()), dtype=torch.float32, device=counts.device)
    share = counts / total
    floor = share[1:][real > 0].min()
    share[0] = floor
    share = torch.where(share > 0, share, floor)
    return share.log().to(torch.float32)


# -------------------------------------------------------------------------------------------- NICL


def nicl_loss(
    text_vec: Tensor,
    image_vec: Tensor,
    has_text: Tensor,
    has_image: Tensor,
    ids: Tensor,
    inverse: Tensor,
    tau: float = 0.1,
) -> Tensor:
    """Next-item enhanced cross-modal contrastive learning.

    Args:
        text_vec: (U, p) text vectors of the batch's distinct items, already through the shared projection head.
        image_vec: (U, p) image vectors of the same items, through the same head.
        has_text, has_image: (U,) bool, the item has that modality.
        ids: (B, L+1) item ids, 0 = padding.
        inverse: (B, L+1) the row of ``text_vec`` / ``image_vec`` holding each slot's item (``torch.unique(ids,
            return_inverse=True)``'s second output, or ``ids`` itself when the rows are the whole catalogue).
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

    Nodes of the same item and modality have the same vector, so the negatives are scored once per distinct
    (item, modality) *column* and weighted by how many nodes of other users hold it (``log`` multiplicity
    added to the logit): the same sums as over every node, with memory O(P * 2U) instead of O(P^2),
    ``P <= 2 B (L+1)`` present nodes.
    """
    b, width = ids.shape
    s, u = b * width, text_vec.shape[0]
    dev = ids.device
    flat_ids, flat_u = ids.reshape(-1), inverse.reshape(-1)  # (S,)
    has = torch.stack([has_text, has_image]).bool()  # (2, U)
    present = (has[:, flat_u] & (flat_ids != 0)[None]).reshape(-1)  # (2S,) node k = m * S + slot, m = 0 text, 1 image
    nodes = present.nonzero(as_tuple=True)[0]  # (P,)
    rows = torch.arange(nodes.numel(), device=dev)  # node index k
    node_to_idx = torch.full((2 * s,), -1, dtype=torch.long, device=dev)
    node_to_idx[nodes] = rows

    # positives of node k: the same slot in the other modality, and the next slot in the other modality
    slot = nodes % s  # (P,)
    has_next = slot % width < width - 1
    other = (nodes + s) % (2 * s)
    same_idx = node_to_idx[other]  # (P,), -1 = absent
    next_idx = torch.where(has_next, node_to_idx[(other + 1).clamp(max=2 * s - 1)], torch.full_like(other, -1))
    anchors = torch.cat([rows[same_idx >= 0], (next_idx >= 0).nonzero()[:, 0]])
    partners = torch.cat([same_idx[same_idx >= 0], next_idx[next_idx >= 0]])
    if anchors.numel() == 0:
        return _zero(text_vec, image_vec)

    # columns: (modality, item) c = m * U + row; node k sits in column col[k]
    col = (nodes // s) * u + flat_u[slot]  # (P,)
    z = F.normalize(torch.cat([text_vec, image_vec]), dim=-1)  # (2U, p)
    sim = z[col] @ z.t() / tau  # (P, 2U)

    # negatives of an anchor of user b: the nodes of column c held by other users, total[c] - in_user[b, c] of them
    # (a log-multiplicity on the logit), except the columns of the anchor's item and of its next item
    user = slot // width
    lowest = torch.finfo(sim.dtype).min  # e^lowest = 0, and unlike -inf it keeps the gradients finite
    total = torch.bincount(col, minlength=2 * u)  # (2U,)
    in_user = torch.zeros(b, 2 * u, dtype=total.dtype, device=dev).index_put_(
        (user, col), torch.ones_like(col), accumulate=True)
    count = (total[None] - in_user).to(sim.dtype)  # (B, 2U)
    log_count = torch.where(count > 0, count.clamp(min=1).log(), torch.full_like(count, lowest))
    logits = sim + log_count[user]  # (P, 2U)
    next_slot = (slot + 1).clamp(max=s - 1)
    follows = has_next & (flat_ids[next_slot] != 0)
    excluded_rows = torch.cat([rows, rows[follows]]).repeat(2)
    excluded_items = torch.cat([flat_u[slot], flat_u[next_slot[follows]]])
    excluded_cols = torch.cat([excluded_items, excluded_items + u])
    logits = logits.index_put((excluded_rows, excluded_cols), torch.tensor(lowest, dtype=sim.dtype, device=dev))
    neg_lse = logits.logsumexp(dim=1)  # (P,)

    s_pos = sim[anchors, col[partners]]  # (pairs,)
    return (torch.logaddexp(s_pos, neg_lse[anchors]) - s_pos).mean()


# --------------------------------------------------------------------------------------------- NID


def corrupt_window(
    ids: Tensor, ratio: float, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Choose input positions to replace by items of other slots of the batch (for NID and RCL).

    Args:
        ids: (B, L+1) item ids, 0 = padding. Only history positions are touched: input positions ``0..L-1``
            whose item and next item are both non-zero (never the target of a window shorter than L).
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
    # History positions only: a position whose next slot holds an item. In a window shorter than L the target
    # sits inside 0..L-1 (right after the history) and must stay the item NIP predicts.
    valid = (inputs != 0) & (ids[:, 1:] != 0)
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
