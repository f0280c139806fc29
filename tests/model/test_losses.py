"""PMMRec objectives: each against a slow loop reference, masking checks, corruption properties, and
tiny trainings showing that NID and RCL teach what they should."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError
from recbole_pmmrec.model.losses import (
    corrupt_window,
    nicl_loss,
    nid_loss,
    nip_loss,
    popularity_log_q,
    rcl_loss,
)

F64 = torch.float64

# B = 4 users, L + 1 = 6 slots; padding at the end, repeated items within and across users
IDS = torch.tensor(
    [
        [3, 5, 3, 7, 2, 0],  # item 3 twice in one window
        [5, 8, 9, 0, 0, 0],  # item 5 also in user 0's window
        [7, 0, 0, 0, 0, 0],  # no valid query; its slot is user 0's target 7 (a false negative)
        [1, 4, 6, 4, 8, 9],
    ]
)
N_ITEMS = 10


def _logsumexp(values):
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


# ------------------------------------------------------------------------------------------- NIP


def nip_reference(seq_out, slot_emb, ids, log_q):
    """In-batch NIP one query at a time: the mixed reference below with no extra item (its debias, log(C q(i)),
    shifts every logit of a query by the same log C)."""
    return mixed_reference(seq_out, slot_emb, ids, log_q, [], [], 1)


def _nip_inputs(seed=0, d=8):
    g = torch.Generator().manual_seed(seed)
    seq_out = torch.randn(4, 5, d, generator=g, dtype=F64, requires_grad=True)
    slot_emb = torch.randn(4, 6, d, generator=g, dtype=F64, requires_grad=True)
    return seq_out, slot_emb


@pytest.mark.parametrize("debias", [False, True])
def test_nip_matches_loop_reference(debias):
    seq_out, slot_emb = _nip_inputs()
    log_q = popularity_log_q(torch.arange(N_ITEMS).float()).to(F64) if debias else None
    got = nip_loss(seq_out, slot_emb, IDS, log_q)
    assert got.dim() == 0
    assert abs(got.item() - nip_reference(seq_out.detach(), slot_emb.detach(), IDS, log_q)) < 1e-5
    if debias:
        assert abs(got.item() - nip_loss(seq_out, slot_emb, IDS, None).item()) > 1e-3


def test_nip_masks_padding_same_user_items_and_target_duplicates():
    seq_out, slot_emb = _nip_inputs(seed=1)
    ids = torch.tensor([[3, 5, 3, 7, 0], [5, 0, 0, 0, 0], [7, 0, 0, 0, 0], [9, 0, 0, 0, 0]])
    seq_out, slot_emb = seq_out[:, :4].detach().requires_grad_(), slot_emb[:, :5].detach().requires_grad_()
    nip_loss(seq_out, slot_emb, ids, None).backward()
    grad = slot_emb.grad.abs().sum(-1)  # (B, L+1); only user 0 has queries
    assert grad[0, 0] == 0  # user 0's own item 3 at a non-target slot
    assert grad[1, 0] == 0  # item 5 of user 0, in another user's window
    assert grad[2, 0] == 0  # user 0's target 7 duplicated in another user's window
    assert (grad[:, 4] == 0).all() and (grad[1:, 1:] == 0).all()  # padding slots
    assert grad[3, 0] > 0  # a foreign item is a negative
    assert (grad[0, 1:4] > 0).all()  # the positives
    assert (seq_out.grad[0, :3].abs().sum(-1) > 0).all() and seq_out.grad[0, 3].abs().sum() == 0
    # no valid query at all: zero that keeps the graph
    empty = nip_loss(seq_out, slot_emb, torch.tensor([[4, 0, 0, 0, 0]] * 4), None)
    assert empty.item() == 0.0 and empty.requires_grad


@pytest.mark.parametrize("mixed", [False, True])
def test_nip_with_history_negatives_keeps_the_users_other_items_as_negatives(mixed):
    """``history_negatives`` (users repeat items, the evaluation ranks the history): each query's candidates are
    every slot and extra item except the target's duplicates and the user's later items; the user's earlier items
    (the query's input history) are negatives."""
    seq_out, slot_emb = _nip_inputs(seed=4)
    extra = dict(extra_emb=torch.randn(3, 8, dtype=F64), extra_ids=torch.tensor([3, 8, 1]), n_sampled_from=9) \
        if mixed else {}
    got = nip_loss(seq_out, slot_emb, IDS, None, **extra, history_negatives=True)
    want = mixed_reference(seq_out.detach(), slot_emb.detach(), IDS, None, extra.get("extra_emb", []),
                           extra.get("extra_ids", []), 9, history_negatives=True)
    assert abs(got.item() - want) < 1e-6
    assert abs(got.item() - nip_loss(seq_out, slot_emb, IDS, None, **extra).item()) > 1e-3
    # every other item of the user a negative, later ones included: not what history_negatives does
    every = mixed_reference(seq_out.detach(), slot_emb.detach(), IDS, None, extra.get("extra_emb", []),
                            extra.get("extra_ids", []), 9, history_negatives="window")
    assert abs(got.item() - every) > 1e-3
    # user 0 = [3, 7]: its one query (target 7) has item 3 in its history, a negative only with history_negatives
    ids = torch.tensor([[3, 7, 0, 0, 0], [9, 0, 0, 0, 0]])
    for flag in (False, True):
        e = slot_emb[:2, :5].detach().clone().requires_grad_()
        nip_loss(seq_out[:2, :4].detach(), e, ids, None, history_negatives=flag).backward()
        assert (e.grad[0, 0].abs().sum() > 0) == flag and e.grad[1, 0].abs().sum() > 0


def mixed_reference(seq_out, slot_emb, ids, log_q, extra_emb, extra_ids, pool, history_negatives=False):
    """NIP with M extra candidates one query at a time; debias by the expected count of each item among the
    candidates: C q(i) + M / pool (C = non-padding slots). ``history_negatives``: only the target's item is
    left out of the candidates, not the rest of the user's window."""
    b_size, width = ids.shape
    n_slots, m = int((ids != 0).sum()), len(extra_ids)
    terms = []
    for b in range(b_size):
        for l in range(width - 1):
            if ids[b, l] == 0 or ids[b, l + 1] == 0:
                continue
            window = set(ids[b].tolist())
            if history_negatives == "window":  # (not nip_loss: every other item of the user a negative)
                window = {int(ids[b, l + 1])}
            elif history_negatives:  # the items the user had up to position l are negatives, except the target's
                window -= set(ids[b, :l + 1].tolist()) - {int(ids[b, l + 1])}
            cands = [(int(ids[b2, l2]), slot_emb[b2, l2], b2 == b and l2 == l + 1)
                     for b2 in range(b_size) for l2 in range(width)]
            cands += [(int(i), e, False) for i, e in zip(extra_ids, extra_emb)]
            logits, pos = [], None
            for item, emb, is_pos in cands:
                if item == 0 or (item in window and not is_pos):
                    continue
                z = float(seq_out[b, l] @ emb)
                if log_q is not None:
                    z -= math.log(n_slots * math.exp(float(log_q[item])) + m / pool)
                if is_pos:
                    pos = len(logits)
                logits.append(z)
            terms.append(_logsumexp(logits) - logits[pos])
    return sum(terms) / len(terms)


@pytest.mark.parametrize("debias", [False, True])
def test_nip_with_sampled_negatives_matches_loop_reference(debias):
    """Mixed negatives: extra items join every query's candidates, except those in the query user's window (here
    item 5, in users 0 and 1, and 9, the target of user 1, in user 3's), and the debias counts both sources."""
    seq_out, slot_emb = _nip_inputs(seed=2)
    extra_ids = torch.tensor([5, 9, 6, 6, 2])
    extra_emb = torch.randn(5, 8, dtype=F64, generator=torch.Generator().manual_seed(3), requires_grad=True)
    log_q = popularity_log_q(torch.arange(N_ITEMS).float()).to(F64) if debias else None
    got = nip_loss(seq_out, slot_emb, IDS, log_q, extra_emb, extra_ids, n_sampled_from=9)
    want = mixed_reference(seq_out.detach(), slot_emb.detach(), IDS, log_q, extra_emb.detach(), extra_ids, 9)
    assert abs(got.item() - want) < 1e-6
    assert abs(got.item() - nip_loss(seq_out, slot_emb, IDS, log_q).item()) > 1e-3  # the extras count
    got.backward()
    assert extra_emb.grad[0].abs().sum() > 0  # item 5 is a negative for users 2 and 3, not in their windows
    # no extra item: the in-batch loss exactly
    none = nip_loss(seq_out, slot_emb, IDS, log_q, extra_emb[:0], extra_ids[:0], n_sampled_from=9)
    assert none.item() == pytest.approx(nip_loss(seq_out, slot_emb, IDS, log_q).item(), abs=1e-12)
    if debias:
        with pytest.raises(PMMRecConfigError, match="n_sampled_from"):
            nip_loss(seq_out, slot_emb, IDS, log_q, extra_emb, extra_ids)


# ------------------------------------------------------------------------------------------ NICL


def nicl_reference(text_vec, image_vec, ids, has_text, has_image, tau):
    """NICL one anchor at a time, from per-slot vectors (B, L+1, p) and flags (B, L+1), in differentiable tensor
    ops (for value and gradient checks)."""
    b_size, width = ids.shape
    vecs = [F.normalize(text_vec, dim=-1), F.normalize(image_vec, dim=-1)]
    has = [has_text, has_image]

    def present(m, b, l):
        return 0 <= l < width and ids[b, l] != 0 and bool(has[m][b, l])

    terms = []
    for m in range(2):
        for b in range(b_size):
            for l in range(width):
                if not present(m, b, l):
                    continue
                anchor, next_item = int(ids[b, l]), int(ids[b, l + 1]) if l + 1 < width else 0
                negs = [vecs[m2][b2, l2] for b2 in range(b_size) if b2 != b for l2 in range(width)
                        for m2 in range(2) if present(m2, b2, l2) and int(ids[b2, l2]) != anchor
                        and not (next_item != 0 and int(ids[b2, l2]) == next_item)]
                for l_pos in (l, l + 1):
                    if present(1 - m, b, l_pos):
                        s_p = vecs[m][b, l] @ vecs[1 - m][b, l_pos] / tau
                        s_n = torch.stack(negs) @ vecs[m][b, l] / tau if negs else s_p.new_zeros(0)
                        terms.append(torch.logsumexp(torch.cat([s_p[None], s_n]), 0) - s_p)
    return torch.stack(terms).mean()


def _nicl_inputs(seed=0, p=6):
    """Per-item vectors and modality flags (rows = item ids 0..N_ITEMS-1), as the item tower gives them."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(N_ITEMS, p, generator=g, dtype=F64, requires_grad=True)
    image = torch.randn(N_ITEMS, p, generator=g, dtype=F64, requires_grad=True)
    has_text = torch.rand(N_ITEMS, generator=g) > 0.2
    has_image = torch.rand(N_ITEMS, generator=g) > 0.3
    return text, image, has_text, has_image


def _nicl(text, image, has_text, has_image, ids, tau=0.1):
    """nicl_loss on the batch's distinct items, the way the model calls it."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    return nicl_loss(text[uniq], image[uniq], has_text[uniq], has_image[uniq], ids, inverse, tau)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_nicl_matches_loop_reference(seed):
    text, image, has_text, has_image = _nicl_inputs(seed)
    want = nicl_reference(text.detach()[IDS], image.detach()[IDS], IDS, has_text[IDS], has_image[IDS], 0.1).item()
    got = _nicl(text, image, has_text, has_image, IDS)
    assert abs(got.item() - want) < 1e-9
    # rows = the whole catalogue (loss_type CE), inverse = ids: the same loss
    whole = nicl_loss(text, image, has_text, has_image, IDS, IDS, 0.1)
    assert abs(whole.item() - want) < 1e-9
    got.backward()
    assert torch.isfinite(text.grad).all() and text.grad.abs().sum() > 0 and image.grad.abs().sum() > 0


def test_nicl_gradient_matches_loop_reference():
    text, image, has_text, has_image = _nicl_inputs(5)
    got = torch.autograd.grad(_nicl(text, image, has_text, has_image, IDS), (text, image))

    def reference(t, i):
        return nicl_reference(t[IDS], i[IDS], IDS, has_text[IDS], has_image[IDS], 0.1)

    want = torch.autograd.grad(reference(text, image), (text, image))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_nicl_ignores_padding_and_missing_modalities():
    text, image, has_text, has_image = _nicl_inputs(3)
    base = _nicl(text, image, has_text, has_image, IDS)
    text2 = torch.where(~has_text[:, None], torch.randn_like(text) * 50, text)
    image2 = torch.where(~has_image[:, None], torch.randn_like(image) * 50, image)
    text2[0], image2[0] = 99.0, -99.0  # the padding row
    torch.testing.assert_close(_nicl(text2, image2, has_text, has_image, IDS), base)


def test_nicl_has_no_negatives_within_a_user_or_among_false_negatives():
    text, image, _, _ = _nicl_inputs(4)
    ones = torch.ones(N_ITEMS, dtype=torch.bool)
    # a single user: no other users, so every term is log(e^s / e^s) = 0
    assert abs(_nicl(text, image, ones, ones, IDS[:1]).item()) < 1e-12
    # user 1 holds only item 7, which for user 0 = [3, 7] is the next item of anchor 3 and the item of anchor 7:
    # a false negative that never enters user 0's denominators. User 1's own anchors (7) see item 3 as negative.
    ids = torch.tensor([[3, 7, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    z = {k: F.normalize(v.detach(), dim=-1) for k, v in (("t", text), ("v", image))}

    def term(a, pos, negs):
        s_p = float(a @ pos) / 0.1
        return _logsumexp([s_p] + [float(a @ n) / 0.1 for n in negs]) - s_p

    t3, v3, t7, v7 = z["t"][3], z["v"][3], z["t"][7], z["v"][7]
    terms = [term(t3, v3, []), term(t3, v7, []), term(v3, t3, []), term(v3, t7, []),  # user 0: no true negative
             term(t7, v7, []), term(v7, t7, []),
             term(t7, v7, [t3, v3]), term(v7, t7, [t3, v3])]  # user 1: item 3 of user 0
    assert abs(_nicl(text, image, ones, ones, ids).item() - sum(terms) / len(terms)) < 1e-9
    # no image anywhere: no pair, a zero that keeps the graph
    empty = _nicl(text, image, ones, torch.zeros_like(ones), IDS)
    assert empty.item() == 0.0 and empty.requires_grad


# ------------------------------------------------------------------------------------ corruption


def _random_ids(b=16, width=9, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, n_items, (b, width), generator=g)
    lengths = torch.randint(1, width + 1, (b,), generator=g)
    lengths[0], lengths[1] = 1, 2  # one valid input only (l=0, no noise at ratio 0.2), exactly 2 -> 1 noise
    return ids.masked_fill(torch.arange(width)[None, :] >= lengths[:, None], 0)


@pytest.mark.parametrize("ratio", [0.2, 0.5])
def test_corrupt_window_properties(ratio):
    ids = _random_ids()
    src_b, src_l, noise = corrupt_window(ids, ratio, torch.Generator().manual_seed(7))
    length = ids.shape[1] - 1
    assert src_b.shape == src_l.shape == noise.shape == (16, length) and noise.dtype == torch.bool
    inputs = ids[:, :length]
    new = ids[src_b, src_l]
    # untouched positions are identity, padding is never replaced
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(length), indexing="ij")
    assert torch.equal(src_b[~noise], rows[~noise]) and torch.equal(src_l[~noise], cols[~noise])
    assert not noise[inputs == 0].any() and (new[inputs == 0] == 0).all()
    # a noise position gets a real item that differs from the original
    assert (new[noise] != inputs[noise]).all() and (new[noise] != 0).all()
    # only history positions (an item followed by an item): never the target of a short window
    history = (inputs != 0) & (ids[:, 1:] != 0)
    assert not noise[~history].any()
    # the count per sequence is the rounded ratio, at least one with >= 2 history positions
    for b in range(16):
        n_valid = int(history[b].sum())
        want = round(ratio * n_valid)
        if n_valid >= 2:
            want = max(want, 1)
        assert int(noise[b].sum()) == want
    # deterministic given the generator, different for another seed
    again = corrupt_window(ids, ratio, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip((src_b, src_l, noise), again))
    other = corrupt_window(ids, ratio, torch.Generator().manual_seed(8))
    assert not (torch.equal(noise, other[2]) and torch.equal(src_b, other[0]))


def test_corrupt_window_never_replaces_the_target_of_a_short_window():
    """A window shorter than L holds its target inside the input positions (row [1, 2, 3, 0, 0, 0]: the target 3
    sits at position 2). NID must not replace it: it is the item NIP predicts. (It did in 34% of draws.)"""
    ids = torch.tensor([[1, 2, 3, 0, 0, 0], [4, 5, 6, 7, 8, 9]])
    for seed in range(200):
        src_b, src_l, noise = corrupt_window(ids, 0.5, torch.Generator().manual_seed(seed))
        assert not noise[0, 2:].any() and ids[src_b, src_l][0, 2] == 3, seed
    hits = sum(bool(corrupt_window(ids, 0.5, torch.Generator().manual_seed(s))[2][0, :2].any()) for s in range(50))
    assert hits == 50  # the history itself is still corrupted (k = 1 of its 2 positions)


def test_corrupt_window_edge_cases():
    ids = _random_ids()
    assert not corrupt_window(ids, 0.0, torch.Generator().manual_seed(0))[2].any()
    mono = torch.tensor([[4, 4, 4, 0], [4, 4, 0, 0]])  # no other item to draw from
    src_b, src_l, noise = corrupt_window(mono, 0.5, torch.Generator().manual_seed(0))
    assert not noise.any() and torch.equal(mono[src_b, src_l], mono[:, :3])
    with pytest.raises(PMMRecConfigError, match="nid_ratio"):
        corrupt_window(ids, 1.5, torch.Generator())


# --------------------------------------------------------------------------------------- NID, RCL


def test_nid_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, generator=g, dtype=F64, requires_grad=True)
    noise = torch.rand(4, 5, generator=g) > 0.6
    valid = IDS[:, :5] != 0
    want = []
    for b in range(4):
        for l in range(5):
            if valid[b, l]:
                p = 1 / (1 + math.exp(-logits[b, l].item()))
                want.append(-math.log(p) if noise[b, l] else -math.log(1 - p))
    got = nid_loss(logits, noise, valid)
    assert abs(got.item() - sum(want) / len(want)) < 1e-5
    got.backward()
    assert (logits.grad[~valid] == 0).all() and (logits.grad[valid] != 0).all()
    assert nid_loss(logits, noise, torch.zeros_like(valid)).item() == 0.0


def test_rcl_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(5, 8, generator=g, dtype=F64, requires_grad=True)
    noisy = torch.randn(5, 8, generator=g, dtype=F64, requires_grad=True)
    c, n = F.normalize(clean.detach(), dim=-1), F.normalize(noisy.detach(), dim=-1)
    tau, terms = 0.2, []
    for i in range(5):
        row = [float(c[i] @ n[j]) / tau for j in range(5)]
        col = [float(n[i] @ c[j]) / tau for j in range(5)]
        terms.append(0.5 * (_logsumexp(row) - row[i]) + 0.5 * (_logsumexp(col) - col[i]))
    got = rcl_loss(clean, noisy, tau)
    assert abs(got.item() - sum(terms) / 5) < 1e-5
    got.backward()
    assert clean.grad.abs().sum() > 0 and noisy.grad.abs().sum() > 0


def test_popularity_log_q():
    counts = torch.tensor([7, 0, 1, 3, 0, 4])  # row 0 (padding) is ignored
    log_q = popularity_log_q(counts)
    assert torch.isfinite(log_q).all() and log_q.shape == (6,)
    torch.testing.assert_close(log_q[[2, 3, 5]], torch.tensor([1 / 8, 3 / 8, 4 / 8]).log())
    torch.testing.assert_close(log_q[[0, 1, 4]], torch.full((3,), math.log(1 / 8)))
    torch.testing.assert_close(popularity_log_q(torch.zeros(5)), torch.full((5,), math.log(1 / 4)))
    with pytest.raises(PMMRecDataError, match="item_counts"):
        popularity_log_q(torch.tensor([0.0, -1.0, 2.0]))


# ------------------------------------------------------------------- objectives teach what they should


def _grouped_windows(g, b=64, width=9, n_groups=8, per_group=5):
    """Each user draws its items from one group of items; replacements from other users mostly come
    from another group, so a noisy item is detectable from its context."""
    group = torch.randint(0, n_groups, (b, 1), generator=g)
    return 1 + group * per_group + torch.randint(0, per_group, (b, width), generator=g)


class _TinyEncoder(nn.Module):
    def __init__(self, n_items=41, d=16, bidirectional=False):
        super().__init__()
        self.emb = nn.Embedding(n_items, d)
        self.gru = nn.GRU(d, d, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(d * (2 if bidirectional else 1), 1)

    def forward(self, ids):
        return self.gru(self.emb(ids))[0]  # (B, L, d or 2d)


def test_nid_alone_trains_a_noise_detector():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = _TinyEncoder(bidirectional=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def step(train):
        ids = _grouped_windows(g)
        src_b, src_l, noise = corrupt_window(ids, 0.25, g)
        noisy = ids[src_b, src_l]
        logits = model.head(model(noisy)).squeeze(-1)
        loss = nid_loss(logits, noise, noisy != 0)
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        pred = logits > 0
        return 0.5 * ((pred[noise]).float().mean() + (~pred[~noise]).float().mean())  # balanced accuracy

    with torch.no_grad():
        before = float(sum(step(False) for _ in range(5)) / 5)
    for _ in range(150):
        step(True)
    with torch.no_grad():
        after = float(sum(step(False) for _ in range(5)) / 5)
    print(f"NID balanced accuracy {before:.3f} -> {after:.3f}")
    assert after > 0.8 and after > before + 0.2, (before, after)


def test_rcl_alone_aligns_clean_and_noisy_user_vectors():
    """A random GRU already maps a sequence and its 30%-corrupted copy close together; RCL alone must
    widen the positive/negative cosine gap and make a user's corrupted copy its nearest neighbour."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = _TinyEncoder()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def users(ids):
        return model(ids).mean(1)  # (B, d): mean of the GRU states

    def step(train):
        ids = torch.randint(1, 41, (64, 9), generator=g)
        src_b, src_l, _ = corrupt_window(ids, 0.3, g)
        clean, noisy = users(ids[:, :-1]), users(ids[src_b, src_l])
        loss = rcl_loss(clean, noisy, tau=0.1)
        if train:
            opt.zero_grad()
            loss.backward()
            opt.step()
        sim = F.normalize(clean, dim=-1) @ F.normalize(noisy, dim=-1).t()  # (B, B)
        gap = sim.diagonal().mean() - (sim.sum() - sim.diagonal().sum()) / (sim.numel() - len(sim))
        top1 = (sim.argmax(1) == torch.arange(len(sim))).float().mean()  # chance: 1/64
        return torch.stack([gap, top1])

    with torch.no_grad():
        gap_before, acc_before = (sum(step(False) for _ in range(5)) / 5).tolist()
    for _ in range(150):
        step(True)
    with torch.no_grad():
        gap_after, acc_after = (sum(step(False) for _ in range(5)) / 5).tolist()
    print(f"RCL gap {gap_before:.3f} -> {gap_after:.3f}, top-1 {acc_before:.3f} -> {acc_after:.3f}")
    assert gap_after > gap_before + 0.2, (gap_before, gap_after)
    assert acc_after > 0.75 and acc_after > acc_before + 0.15, (acc_before, acc_after)
