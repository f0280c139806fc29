"""One benchmark run in this process: build data and model with the plugin's factories, train, time, evaluate.

Called by ``bench/run.py`` in a fresh subprocess per run (so each run's peak RSS is its own)::

    python bench/worker.py SPEC.json OUT.json

SPEC: ``{"model", "dataset", "config": {...}, "mode": "fit" | "epochs" | "build", "n_epochs": int}``.

* ``fit``: the same steps as ``run_recbole_pmmrec`` (``load_config`` -> ``create_dataset`` ->
  ``data_preparation`` -> ``get_model`` -> ``get_trainer`` -> ``trainer.fit`` with early stopping on
  ``valid_metric`` -> ``trainer.evaluate(test, load_best_model=True)``), with the trainer's
  ``_train_epoch`` / ``_valid_epoch`` wrapped to record seconds and the validation curve (with cold items:
  also per epoch split by cold / warm target); then the test rows are scored again and split by
  ``dataset.cold_items[target]`` (cold vs warm targets).
* ``epochs``: ``n_epochs`` training epochs without validation (epoch time only).
* ``build``: data and model construction only (encoder-state cache build time).

OUT is rewritten after every epoch, so a run killed by a timeout still leaves its curve.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KS = (10, 20)


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


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
    cold_items = getattr(dataset, "cold_items", None)
    has_cold = cold_items is not None and bool(cold_items.any())
    new = new_item_mask(dataset.train_item_counts) if has_cold and hasattr(dataset, "train_item_counts") else None
    ranks, targets, mean_score, *more = target_ranks(trainer, eval_data, history_removed=sequential, among=new)
    out = {"all": rank_metrics(ranks)}
    if sequential:
        out["all_history_removed"] = rank_metrics(more[0])
    if has_cold:
        cold = cold_items[targets]
        out["cold"], out["warm"] = rank_metrics(ranks[cold]), rank_metrics(ranks[~cold])
        if bool(cold.any()) and bool((~cold).any()):
            out["diagnosis"] = cold_diagnosis(ranks, targets, mean_score, cold_items, dataset)
            if new is not None:
                out["diagnosis"]["among_new"] = among_new_items(more[-1], targets, cold_items, new)
    return out


class BudgetSpent(Exception):
    """Raised at an epoch boundary when the run's training wall-time budget is spent."""


def fit_budget(spec: dict, config) -> float | None:
    """Seconds of training + validation a run may spend: ``spec["max_fit_s"]``, else the number in the file
    ``<checkpoint_dir>/../max_fit_s`` (lets an operator cap the runs of a suite that is already running)."""
    if spec.get("max_fit_s"):
        return float(spec["max_fit_s"])
    control = Path(config["checkpoint_dir"]).parent / "max_fit_s"
    try:
        return float(control.read_text().strip())
    except (OSError, ValueError):
        return None


class Recorder:
    def __init__(self, out_path: Path, record: dict):
        self.out_path, self.record = out_path, record

    def save(self):
        self.record["peak_rss_bytes"] = peak_rss_bytes()
        tmp = self.out_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=1, default=str))
        os.replace(tmp, self.out_path)


def run(spec: dict, out_path: Path) -> dict:
    from recbole.utils import init_seed

    from recbole_pmmrec.logger import init_logger
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer

    rec = Recorder(out_path, {"spec": spec, "status": "started", "curve": []})
    r = rec.record
    t_all = time.perf_counter()
    config = load_config(spec["model"], spec["dataset"], config_dict=spec.get("config") or {})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    t0 = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    r["data_s"] = time.perf_counter() - t0  # includes the encoder-state cache (read or build) for PMMRec
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    t0 = time.perf_counter()
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    r["model_s"] = time.perf_counter() - t0
    r["n_params_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    r["n_train_rows"] = len(train_data.dataset) if hasattr(train_data, "dataset") else None
    r["n_items"], r["n_users"] = int(dataset.item_num), int(dataset.user_num)
    r["n_inter"] = int(dataset.inter_num)
    r["n_cold_items"] = int(dataset.cold_items.sum()) if hasattr(dataset, "cold_items") else 0
    rec.save()
    mode = spec.get("mode", "fit")
    if mode == "build":
        r["status"] = "done"
        r["total_s"] = time.perf_counter() - t_all
        rec.save()
        return r

    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if mode == "test":  # evaluate a checkpoint a killed fit run left behind (its best validation epoch)
        t0 = time.perf_counter()
        test_result = trainer.evaluate(test_data, load_best_model=True, model_file=spec["checkpoint"],
                                       show_progress=False)
        r["test_eval_s"] = time.perf_counter() - t0
        r["test_recbole"] = {k: float(v) for k, v in dict(test_result).items()}
        r["test"] = split_metrics(trainer, test_data, dataset)
        r["status"] = "done"
        rec.save()
        return r
    if mode == "epochs":
        r["epoch_s"] = []
        for epoch in range(int(spec.get("n_epochs", 1))):
            t0 = time.perf_counter()
            trainer._train_epoch(train_data, epoch, show_progress=False)
            r["epoch_s"].append(time.perf_counter() - t0)
            rec.save()
        r["status"] = "done"
        r["total_s"] = time.perf_counter() - t_all
        rec.save()
        return r

    # ---- fit: RecBole's loop, timed; stopped at an epoch boundary once the wall-time budget is spent
    valid_metric = config["valid_metric"].lower()
    # spec["select"] = "history_removed": early stopping and the checkpoint follow validation NDCG@10 with the
    # input history removed (the rule PMMRec ranks by), instead of RecBole's score
    select = spec.get("select") or "recbole"
    if select not in ("recbole", "history_removed"):
        raise ValueError(f"spec select={select!r}: use 'recbole' or 'history_removed'")
    if select == "history_removed" and (not hasattr(model, "ITEM_SEQ") or valid_metric != "ndcg@10"):
        raise ValueError("select 'history_removed' needs a sequential model and valid_metric NDCG@10")
    clock = {"start": None, "extra": 0.0}
    budget = fit_budget(spec, config)
    r["max_fit_s"] = budget
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train(train, epoch_idx, loss_func=None, show_progress=False):
        if clock["start"] is None:
            clock["start"] = time.perf_counter()
        elif budget is not None and time.perf_counter() - clock["start"] > budget:
            raise BudgetSpent()
        t = time.perf_counter()
        loss = train_epoch(train, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        r["curve"].append({"epoch": epoch_idx, "train_s": time.perf_counter() - t,
                           "loss": float(loss if not isinstance(loss, tuple) else sum(loss))})
        rec.save()
        return loss

    def timed_valid(valid, show_progress=False):
        t = time.perf_counter()
        score, result = valid_epoch(valid, show_progress=show_progress)
        point = r["curve"][-1]
        point["valid_s"] = time.perf_counter() - t
        # training + validation since fit started, without the extra measurements below
        point["wall_s"] = time.perf_counter() - clock["start"] - clock["extra"]
        point["valid"] = {k: float(v) for k, v in dict(result).items()}
        point["score"] = float(result[valid_metric]) if valid_metric in result else float(score)
        t = time.perf_counter()
        if cold_split is not None or sequential:  # one more scoring pass (the item vectors are cached)
            ranks, targets, _, *removed = target_ranks(trainer, valid, history_removed=sequential)
            if cold_split is not None:  # validation split by cold / warm target, every epoch
                cold = cold_split[targets]
                point["valid_cold"], point["valid_warm"] = rank_metrics(ranks[cold]), rank_metrics(ranks[~cold])
            if removed:  # validation NDCG@10 with the input history removed: every model under one protocol
                point["valid_history_removed"] = rank_metrics(removed[0])["ndcg@10"]
        if select == "history_removed":  # RecBole's fit stops and keeps its best model by the score returned
            point["score_recbole"], point["score"] = point["score"], point["valid_history_removed"]
            score = point["score"]
        point["extra_s"] = time.perf_counter() - t
        clock["extra"] += point["extra_s"]
        rec.save()
        return score, result

    cold_items = getattr(dataset, "cold_items", None)
    cold_split = cold_items if cold_items is not None and bool(cold_items.any()) else None
    sequential = hasattr(model, "ITEM_SEQ")
    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid
    r["status"] = "training"
    r["checkpoint"] = getattr(trainer, "saved_model_file", None)
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False)
        r["stopped_by_budget"] = False
    except BudgetSpent:
        r["stopped_by_budget"] = True
    r["fit_s"] = time.perf_counter() - clock["start"] if clock["start"] else 0.0
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    r["test_eval_s"] = time.perf_counter() - t0
    r["test_recbole"] = {k: float(v) for k, v in dict(test_result).items()}
    r["test"] = split_metrics(trainer, test_data, dataset)
    if sequential and cold_split is not None and hasattr(dataset, "train_item_counts"):
        t0 = time.perf_counter()
        r["new_item_offset"] = new_item_offset(trainer, valid_data, test_data, dataset)
        r["new_item_offset"]["seconds"] = time.perf_counter() - t0
    scored = [p for p in r["curve"] if "score" in p]
    if scored:
        best = max(scored, key=lambda p: p["score"])
        r["best_valid"] = {"epoch": best["epoch"], "score": best["score"], "wall_s": best["wall_s"]}
    remove_checkpoints(trainer)
    r["status"] = "done"
    r["total_s"] = time.perf_counter() - t_all
    rec.save()
    return r


def remove_checkpoints(trainer) -> None:
    """Delete the trainer's best and latest checkpoint files: they are not results; keep the work dir small."""
    from recbole_pmmrec.trainer import latest_file_of

    saved = getattr(trainer, "saved_model_file", None)
    for path in (saved, latest_file_of(saved)) if saved else ():
        if os.path.exists(path):
            os.remove(path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    try:
        run(spec, out)
    except BaseException as exc:  # record the failure for the orchestrator, then fail
        import traceback

        record = json.loads(out.read_text()) if out.exists() else {"spec": spec}
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:],
                      peak_rss_bytes=peak_rss_bytes())
        out.write_text(json.dumps(record, indent=1, default=str))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
