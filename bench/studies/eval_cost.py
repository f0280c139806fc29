"""Cost of one full evaluation, PMMRec against RecBole's SASRec, measured side by side in one process.

    .venv/bin/python bench/studies/eval_cost.py --data-dir /tmp/pmmrec_data [--threads 1] [--repeats 7] [--train-epochs 5]

Builds both models on ml100k-posters with the plugin's factories (as ``run_recbole_pmmrec`` does; PMMRec
reads its encoder-state cache from ``--cache-dir``) and times ``trainer.evaluate`` on the validation data,
alternating SASRec, PMMRec and PMMRec with ``eval_item_dtype: bfloat16`` so that all three see the same
machine load. Before every evaluation the model is put through ``train()``, as after a training epoch, so
PMMRec recomputes its item vectors (the fixed item-tower pass each evaluation pays). The cost does not depend
on the weights, so the models are untrained unless ``--train-epochs`` is given.

``--train-epochs N`` first trains PMMRec for N epochs (no early stopping) and then also reports what bfloat16
changes on those weights: test metrics under each dtype, and the share of test users whose top 10 (and whose
target's rank) is the same.

Prints the medians, their ratios and PMMRec's item-tower share; writes ``bench/results/eval_cost.json``. A
narrower check than ``bench/run.py speed``, whose evaluation times come from full training runs: this one
needs a minute, not an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def build(model_name: str, args, **overrides):
    """(trainer, train, valid, test) for ``model_name`` with the plugin's defaults plus ``overrides``."""
    from recbole_pmmrec.utils import get_trainer

    from bench.suite.worker import built

    work = Path(args.work_dir)
    config, _, (train_data, valid_data, test_data), model = built({"model": model_name, "dataset": args.dataset, "config": {
        "data_path": str(args.data_dir), "cache_dir": str(args.cache_dir), "checkpoint_dir": str(work / "saved"),
        "log_dir": str(work / "log"), "tensorboard_dir": str(work / "tb"), "show_progress": False,
        "state": "warning", "seed": 2020, **overrides}})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return trainer, train_data, valid_data, test_data


def one_evaluation(trainer, data, dtype: str | None = None) -> float:
    if dtype is not None:
        trainer.model.eval_item_dtype = dtype
    trainer.model.train()  # as after a training epoch: PMMRec drops its item vectors
    start = time.perf_counter()
    trainer.evaluate(data, load_best_model=False, show_progress=False)
    return time.perf_counter() - start


def dtype_agreement(trainer, test_data) -> dict:
    """Test metrics of the current PMMRec weights with float32 and with bfloat16 item vectors, and how many
    test users keep the same top 10 and the same target rank (scored and ranked as ``bench/suite/ranks.py`` does)."""
    import torch
    from bench.suite.ranks import rank_of_target

    model = trainer.model
    out, top, ranks = {}, {}, {}
    for dtype in ("float32", "bfloat16"):
        model.eval_item_dtype = dtype
        model.train()
        out[dtype] = {k: float(v) for k, v in trainer.evaluate(test_data, load_best_model=False,
                                                                  show_progress=False).items()}
        model.eval()
        tops, rks = [], []
        with torch.no_grad():
            for batch in test_data:
                _, scores, pos_u, pos_i = trainer._full_sort_batch_eval(batch)  # RecBole's scores and masks
                rows = scores[pos_u]
                tops.append(rows.topk(10, dim=1).indices)
                rks.append(rank_of_target(rows, pos_i))
        top[dtype], ranks[dtype] = torch.cat(tops), torch.cat(rks)
    same_top = (top["float32"] == top["bfloat16"]).all(dim=1).float().mean().item()
    same_rank = (ranks["float32"] == ranks["bfloat16"]).float().mean().item()
    return {"test": out, "users": len(ranks["float32"]), "same_top10_share": same_top, "same_target_rank_share": same_rank,
            "max_target_rank_change": int((ranks["float32"] - ranks["bfloat16"]).abs().max())}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="/tmp/pmmrec_data")
    ap.add_argument("--dataset", default="ml100k-posters")
    ap.add_argument("--cache-dir", default="/tmp/pmmrec_bench/cache")
    ap.add_argument("--work-dir", default="/tmp/pmmrec_bench/eval_cost")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--train-epochs", type=int, default=0,
                    help="train PMMRec this many epochs first and compare bfloat16 with float32 on its weights")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "eval_cost.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    sasrec, _, sasrec_valid, _ = build("SASRec", args)
    pmmrec, pm_train, pm_valid, pm_test = build("PMMRec", args, epochs=max(args.train_epochs, 1))
    agreement, train_s = None, None
    if args.train_epochs > 0:
        start = time.perf_counter()
        pmmrec.fit(pm_train, None, saved=False, show_progress=False)
        train_s = time.perf_counter() - start
        agreement = dtype_agreement(pmmrec, pm_test)
    contenders = {"SASRec": (sasrec, sasrec_valid, None), "PMMRec": (pmmrec, pm_valid, "float32"),
                  "PMMRec bfloat16": (pmmrec, pm_valid, "bfloat16")}
    for trainer, data, dtype in contenders.values():  # warm-up: first-call allocations and lazy imports
        one_evaluation(trainer, data, dtype)
    times = {name: [] for name in contenders}
    tower = {"float32": [], "bfloat16": []}
    model = pmmrec.model
    for _ in range(args.repeats):
        for name, (trainer, data, dtype) in contenders.items():
            times[name].append(one_evaluation(trainer, data, dtype))
        for dtype in tower:
            model.eval_item_dtype = dtype
            model.eval()
            model._item_cache = None
            start = time.perf_counter()
            with torch.no_grad():
                model.item_vectors()
            tower[dtype].append(time.perf_counter() - start)
    model.eval_item_dtype = "float32"

    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "dataset": args.dataset, "threads": args.threads,
        "repeats": args.repeats, "load_average_at_end": os.getloadavg()[0], "seconds": times,
        "median_s": median, "ratio_pmmrec_over_sasrec": median["PMMRec"] / median["SASRec"],
        "ratio_pmmrec_bfloat16_over_sasrec": median["PMMRec bfloat16"] / median["SASRec"],
        "pmmrec_item_tower_median_s": {dtype: statistics.median(t) for dtype, t in tower.items()},
        "train_epochs": args.train_epochs, "train_s": train_s, "bfloat16_agreement": agreement,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    t = result["pmmrec_item_tower_median_s"]
    print(f"full evaluation ({args.dataset} validation, {args.threads} thread(s), median of {args.repeats}): "
          f"SASRec {median['SASRec']:.3f} s, PMMRec {median['PMMRec']:.3f} s (ratio "
          f"{result['ratio_pmmrec_over_sasrec']:.2f}), PMMRec bfloat16 {median['PMMRec bfloat16']:.3f} s (ratio "
          f"{result['ratio_pmmrec_bfloat16_over_sasrec']:.2f}); item tower alone {t['float32']:.3f} s / "
          f"{t['bfloat16']:.3f} s; load average {result['load_average_at_end']:.1f}")
    if agreement:
        a = agreement
        print(f"after {args.train_epochs} epochs: test NDCG@10 float32 {a['test']['float32']['ndcg@10']:.4f}, "
              f"bfloat16 {a['test']['bfloat16']['ndcg@10']:.4f}; same top 10 for {a['same_top10_share']:.1%} and "
              f"same target rank for {a['same_target_rank_share']:.1%} of {a['users']} users "
              f"(largest rank change {a['max_target_rank_change']})")
    return result


if __name__ == "__main__":
    main()
