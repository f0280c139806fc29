"""Target ranks and metrics from a trainer's own full-ranking scores, and the cold-start diagnostics.

Every rank is 0-based among all candidates (history items and padding masked as RecBole does), ties broken by
item id, lower first. Used by the worker (per epoch on validation, after training on test) and by the studies.
"""

from __future__ import annotations

KS = (10, 20)


def rank_metrics(ranks, ks=KS) -> dict:
    """ranks (N,) 0-based rank of each row's single target among all candidates -> Recall/NDCG/MRR@k."""
    import torch

    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    out = {"n": int(ranks.numel())}
    for k in ks:
        hit = (ranks < k).double()
        out[f"recall@{k}"] = float(hit.mean()) if ranks.numel() else float("nan")
        out[f"ndcg@{k}"] = float((hit / torch.log2(ranks + 2)).mean()) if ranks.numel() else float("nan")
        out[f"mrr@{k}"] = float((hit / (ranks + 1)).mean()) if ranks.numel() else float("nan")
    return out


def rank_of_target(rows, pos_i):
    """0-based rank of each row's target item ``pos_i`` (N,) among the scores ``rows`` (N, n_items); ties are
    broken by item id, lower first."""
    import torch

    target = rows[torch.arange(len(pos_i)), pos_i][:, None]  # (N, 1)
    lower_id = torch.arange(rows.shape[1])[None, :] < pos_i[:, None]
    return ((rows > target) | ((rows == target) & lower_id)).sum(dim=1)


def scored_rows(trainer, eval_data):
    """Per evaluation batch: (batch, rows, pos_u, pos_i), where ``rows`` (N, n_items) are the trainer's own
    full-ranking scores of the batch's rows on the CPU (history items and padding masked as RecBole does) and
    ``pos_i`` (N,) their targets; the model in eval mode, without gradients."""
    import torch

    trainer.model.eval()
    with torch.no_grad():
        for batch in eval_data:
            _, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batch)
            pos_u = pos_u.cpu()
            yield batch, scores.cpu()[pos_u], pos_u, pos_i.cpu()


def target_ranks(trainer, eval_data, history_removed: bool = False, among=None):
    """0-based rank of each evaluation row's target under the trainer's own full-ranking scores (history
    items and padding masked as RecBole does). Ties are broken by item id, lower first (as a stable
    descending sort, and in practice RecBole's ``torch.topk``, orders them). Returns (ranks, targets,
    mean_scores): ``mean_scores`` (n_items,) is each item's mean score over the rows where it is a candidate
    (not masked as history), for the cold diagnosis. ``history_removed``: a fourth value, the ranks from the
    same scores when the items of each row's input sequence are not ranked (the authors' evaluation
    protocol), for any sequential model. ``among`` (a boolean mask over the items): one more value after
    those, ``rank_among`` these items from the same scores (one scoring pass for all of them)."""
    import torch

    ranks, targets, removed, subset = [], [], [], []
    score_sum = score_n = 0
    for batch, rows, pos_u, pos_i in scored_rows(trainer, eval_data):
        ranks.append(rank_of_target(rows, pos_i))
        if history_removed:
            seq = batch[0][trainer.model.ITEM_SEQ].cpu()[pos_u]
            removed.append(rank_of_target(rows.scatter(1, seq, float("-inf")), pos_i))
        if among is not None:
            subset.append(rank_among(rows, pos_i, among))
        targets.append(pos_i)
        ok = torch.isfinite(rows)
        score_sum = score_sum + torch.where(ok, rows, torch.zeros(())).double().sum(dim=0)
        score_n = score_n + ok.sum(dim=0)
    out = torch.cat(ranks), torch.cat(targets), score_sum / score_n.clamp(min=1)
    out += (torch.cat(removed),) if history_removed else ()
    return out + (torch.cat(subset),) if among is not None else out


def rank_among(rows, pos_i, items):
    """``rank_of_target`` among ``items`` (a boolean mask over the items) only: the other items are not ranked,
    so for a target outside ``items`` the value means nothing."""
    return rank_of_target(rows.masked_fill(~items[None, :], float("-inf")), pos_i)


def new_item_mask(train_item_counts):
    """Items without a training interaction (the cold items, and any item first seen after training); a new
    tensor, padding excluded."""
    new = train_item_counts == 0
    new[0] = False
    return new


def among_new_items(ranks, targets, cold_items, new_items) -> dict:
    """Diagnostic for the rows whose target is a cold item: its rank among the items without a training
    interaction only (``new_items``, from ``new_item_mask``: the cold items, and any item first seen after
    training; ``ranks`` from ``target_ranks`` with ``among=new_items``). It measures whether the model tells
    cold items apart from each other, apart from where it places them against the trained items; an ID model
    can only rank them at random (recall@10 about 10 / n_new_items)."""
    cold = cold_items[targets]
    out = {"n_new_items": int(new_items.sum()), "n_rows": int(cold.sum())}
    if bool(cold.any()):
        out["median_rank"] = float(ranks[cold].double().median())
        out["recall@10"] = float((ranks[cold] < 10).double().mean())
    return out


OFFSET_STEPS = tuple(k / 10 for k in range(-30, 31))  # new-item offsets, in units of the score scale below


def score_spans(rows):
    """Per row of scores (masked items at -inf): the 10th-highest score minus the median finite score. Their
    median over the rows is the "score scale" of the new-item diagnostics."""
    import torch

    finite = torch.where(torch.isfinite(rows), rows, torch.tensor(float("nan"), dtype=rows.dtype))
    return rows.topk(10, dim=1).values[:, -1] - finite.nanmedian(dim=1).values


def offset_ranks(trainer, eval_data, new_items, steps, scale=None):
    """0-based rank of each row's target when ``steps[k] * scale`` is added to the score of every item in
    ``new_items`` (items without a training interaction), for each k: (len(steps), N) ranks, the targets (N,)
    and ``scale`` (given, or else from these rows, in a first pass: the median over the rows of the 10th-highest
    score minus the median score). Scores and ties as in ``target_ranks`` (the trainer's full-ranking scores,
    history masked; ties by item id); one batch of them at a time."""
    import torch

    def batches():
        for _, rows, _, pos_i in scored_rows(trainer, eval_data):
            yield rows.double(), pos_i

    if scale is None:
        scale = float(torch.cat([score_spans(rows) for rows, _ in batches()]).median())
    ranks, targets = [], []
    for rows, pos_i in batches():
        ranks.append(torch.cat([shifted_ranks(rows[i:i + 1024], pos_i[i:i + 1024], new_items,
                                              [step * scale for step in steps])
                                for i in range(0, len(pos_i), 1024)], dim=1))
        targets.append(pos_i)
    return torch.cat(ranks, dim=1), torch.cat(targets), scale


def shifted_ranks(rows, pos_i, new_items, shifts):
    """``rank_of_target(rows + shift * new_items, pos_i)`` for each shift: (len(shifts), N), without building a
    shifted score matrix per shift. Each row's trained and new items are sorted once; a shift then moves only
    the threshold a group is compared with (a trained target's against new items, a new target's against trained
    items), so a shift costs two binary searches per row. Rows where an item ties with the target are ranked
    directly, so ties go by item id exactly as in ``rank_of_target``; a cross-group comparison can differ from
    the direct sum only in the last bit of a float."""
    import torch

    n_items = rows.shape[1]
    is_new = new_items.bool()
    sorted_trained = rows.masked_fill(is_new[None, :], float("-inf")).sort(dim=1).values
    sorted_new = rows.masked_fill(~is_new[None, :], float("-inf")).sort(dim=1).values
    target = rows[torch.arange(len(pos_i)), pos_i]
    target_new = is_new[pos_i]

    def above_and_equal(sorted_rows, threshold):
        threshold = threshold[:, None].contiguous()
        right = torch.searchsorted(sorted_rows, threshold, right=True)[:, 0]
        return n_items - right, right - torch.searchsorted(sorted_rows, threshold)[:, 0]

    out = []
    for shift in shifts:
        above_t, equal_t = above_and_equal(sorted_trained, torch.where(target_new, target + shift, target))
        above_n, equal_n = above_and_equal(sorted_new, torch.where(target_new, target, target - shift))
        rank = above_t + above_n
        tied = equal_t + equal_n > 1  # the target equals itself once
        if bool(tied.any()):
            rank[tied] = rank_of_target(rows[tied] + is_new.to(rows.dtype)[None, :] * shift, pos_i[tied])
        out.append(rank)
    return torch.stack(out)


def new_item_offset(trainer, valid_data, test_data, dataset) -> dict:
    """Diagnostic: the score offset for items without a training interaction that maximises validation NDCG@10
    (all rows), chosen from ``OFFSET_STEPS``, and the test metrics (all, cold, warm rows) with it."""
    new_items = new_item_mask(dataset.train_item_counts)
    valid_ranks, _, scale = offset_ranks(trainer, valid_data, new_items, OFFSET_STEPS)
    ndcg = [rank_metrics(r)["ndcg@10"] for r in valid_ranks]
    best = max(range(len(OFFSET_STEPS)), key=lambda k: (ndcg[k], -abs(OFFSET_STEPS[k])))
    zero = OFFSET_STEPS.index(0.0)
    test_ranks, targets, _ = offset_ranks(trainer, test_data, new_items, (OFFSET_STEPS[best],), scale)
    cold = dataset.cold_items[targets]
    return {"step": OFFSET_STEPS[best], "scale": scale, "offset": OFFSET_STEPS[best] * scale,
            "n_new_items": int(new_items.sum()), "valid_ndcg@10": {"chosen": ndcg[best], "zero": ndcg[zero]},
            "valid_ndcg@10_by_step": dict(zip(OFFSET_STEPS, ndcg)),
            "test": {"all": rank_metrics(test_ranks[0]), "cold": rank_metrics(test_ranks[0][cold]),
                     "warm": rank_metrics(test_ranks[0][~cold])}}


POPULARITY_BUCKETS = ((1, 10), (10, 50), (50, 150), (150, 10**9))


def cold_diagnosis(ranks, targets, mean_score, cold_items, dataset) -> dict:
    """Why cold targets rank where they do: median target rank and target popularity (all interactions of the
    data set, so cold items have one too), and the mean score of cold vs warm items of similar popularity."""
    import torch

    pop = torch.bincount(dataset.inter_feat[dataset.iid_field], minlength=len(cold_items)).double()
    cold = cold_items[targets]
    out = {"median_rank": {"cold": float(ranks[cold].double().median()), "warm": float(ranks[~cold].double().median())},
           "target_popularity_median": {"cold": float(pop[targets[cold]].median()),
                                        "warm": float(pop[targets[~cold]].median())},
           "buckets": []}
    for lo, hi in POPULARITY_BUCKETS:
        m = (pop >= lo) & (pop < hi)
        m[0] = False
        c, w = m & cold_items, m & ~cold_items
        out["buckets"].append({"lo": lo, "hi": hi, "n_cold": int(c.sum()), "n_warm": int(w.sum()),
                               "score_cold": float(mean_score[c].mean()) if c.any() else None,
                               "score_warm": float(mean_score[w].mean()) if w.any() else None})
    return out


def split_metrics(trainer, eval_data, dataset) -> dict:
    """Test metrics for all rows, rows whose target is a cold item, and the rest."""
    sequential = hasattr(trainer.model, "ITEM_SEQ")  # sequential models: also with the input history removed
    cold_items = cold_items_of(dataset)
    new = new_item_mask(dataset.train_item_counts) if cold_items is not None and hasattr(dataset, "train_item_counts") else None
    ranks, targets, mean_score, *more = target_ranks(trainer, eval_data, history_removed=sequential, among=new)
    out = {"all": rank_metrics(ranks)}
    if sequential:
        out["all_history_removed"] = rank_metrics(more[0])
    if cold_items is not None:
        cold = cold_items[targets]
        out["cold"], out["warm"] = rank_metrics(ranks[cold]), rank_metrics(ranks[~cold])
        if bool(cold.any()) and bool((~cold).any()):
            out["diagnosis"] = cold_diagnosis(ranks, targets, mean_score, cold_items, dataset)
            if new is not None:
                out["diagnosis"]["among_new"] = among_new_items(more[-1], targets, cold_items, new)
    return out


def cold_items_of(dataset):
    """The data set's cold-item mask (``cold_item_ratio``), or None when it has no cold item."""
    cold = getattr(dataset, "cold_items", None)
    return cold if cold is not None and bool(cold.any()) else None


def valid_extras(trainer, valid_data) -> dict:
    """After a validation epoch, from one more scoring pass (PMMRec's item vectors are cached): the rows split by
    cold / warm target (``valid_cold``, ``valid_warm``; data sets with cold items) and NDCG@10 with the input
    history removed (``valid_history_removed``; sequential models: every model under one protocol)."""
    cold_items = cold_items_of(valid_data._dataset)
    sequential = hasattr(trainer.model, "ITEM_SEQ")
    if cold_items is None and not sequential:
        return {}
    ranks, targets, _, *removed = target_ranks(trainer, valid_data, history_removed=sequential)
    out = {}
    if cold_items is not None:
        cold = cold_items[targets]
        out["valid_cold"], out["valid_warm"] = rank_metrics(ranks[cold]), rank_metrics(ranks[~cold])
    if removed:
        out["valid_history_removed"] = rank_metrics(removed[0])["ndcg@10"]
    return out
