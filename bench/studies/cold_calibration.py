"""Cold start: does PMMRec tell new items apart, and would knowing their popularity close the gap?

For each seed this trains PMMRec (the properties' defaults, or ``--set key=value`` overrides) on the cold-start
split of a data set (``cold_item_ratio: 0.1``, as ``python bench/run.py coldstart``), keeps the full-ranking scores of
every validation and test row, and asks four things of them. "New items" are the items without a training
interaction (the cold items, and any item first seen after training).

1. ``among_new``: the rank of each cold test target among the new items only, for the model and for a
   content prior alone (below). An ID model can only rank them at random.
2. ``offset``: one score offset for every new item, chosen on validation NDCG@10 over all rows (as
   ``new_item_offset`` in ``bench/suite/ranks.py``).
3. ``content_prior``: new item i gets ``scale * (b + a * z_i)`` added, where z_i is a ridge regression from
   the frozen encoder features (``bench/studies/content_popularity.py``) to log(1 + training interactions), fitted
   on the trained items and standardised over them; a and b chosen on validation NDCG@10 over all rows.
   This is something a deployment could do.
4. ``oracle_popularity``: each new item's mean validation score is moved to the mean validation score of
   trained items with the same popularity in the whole data set (a Gaussian kernel over log popularity).
   The whole data set includes the test period, so this is a bound, not a method.

    python bench/studies/cold_calibration.py --seeds 2020 2021 [--data-dir /tmp/pmmrec_data] [--work-dir /tmp/pmmrec_bench]

Scores are kept under ``<work-dir>/cold_scores/`` (safetensors; reused unless ``--fresh``); results go to
``bench/results/cold_calibration.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.studies.content_popularity import features  # noqa: E402
from bench.suite.ranks import (new_item_mask, rank_among, rank_metrics, rank_of_target, score_spans,  # noqa: E402
                               scored_rows)
from bench.suite.results import defaults_digest  # noqa: E402
from bench.suite.worker import remove_checkpoints  # noqa: E402

OFFSETS = tuple(k / 10 for k in range(-30, 31, 2))  # b, in score scales
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # a, in score scales per standard deviation of the prior
PENALTY = 100.0  # ridge penalty (content_popularity.py: the best or near it for every modality)
BANDWIDTH = 0.25  # oracle kernel width, in log(1 + interactions)


# ---------------------------------------------------------------------------- scores
def train_and_score(seed: int, args) -> dict:
    """Train one model on the cold split (``run_recbole_pmmrec``, as a user would) and return its validation / test
    scores with the best weights, and the item facts."""
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    work = args.work_dir
    cfg = {"data_path": str(args.data_dir), "checkpoint_dir": str(work / "cold_scores" / f"saved-{seed}"),
           "log_dir": str(work / "log"), "tensorboard_dir": str(work / "tb"), "cache_dir": str(work / "cache"),
           "show_progress": False, "epochs": args.max_epochs, "stopping_step": 3, "state": "warning",
           "seed": seed, "cold_item_ratio": 0.1, **args.overrides}
    fit = {"s": 0.0}

    def clock(record, trainer, valid_data):  # training + validation seconds, as the trainer counts them
        fit["s"] = record["wall_s"]

    run = run_recbole_pmmrec("PMMRec", args.dataset, config_dict=cfg, saved=True, epoch_callback=clock)
    trainer, dataset, valid, test = run["trainer"], run["dataset"], run["valid_data"], run["test_data"]
    # the whole data set (the cold split filters the training copy only); the trainer holds the best weights
    popularity = torch.bincount(torch.as_tensor(np.asarray(dataset.inter_feat[dataset.iid_field])),
                                minlength=dataset.item_num)
    fit_s = fit["s"]
    out = {"cold_items": dataset.cold_items.clone(), "train_item_counts": dataset.train_item_counts.clone(),
           "popularity": popularity, "fit_s": torch.tensor(fit_s)}
    for name, data in (("valid", valid), ("test", test)):
        rows, targets = [], []
        for _, r, _, pos_i in scored_rows(trainer, data):
            rows.append(r.float())
            targets.append(pos_i)
        out[f"{name}_rows"], out[f"{name}_targets"] = torch.cat(rows), torch.cat(targets)
    for modality, (pooled, present) in features(dataset).items():  # items 1..n-1
        out[f"{modality}_features"] = torch.as_tensor(pooled)
        out[f"has_{modality}"] = torch.as_tensor(present)
    remove_checkpoints(run["checkpoint"])
    return out


def load_or_train(seed: int, args) -> dict:
    from safetensors.torch import load_file, save_file

    tag = json.dumps(args.overrides, sort_keys=True) if args.overrides else ""
    digest = defaults_digest("PMMRec", args.dataset)
    name = f"PMMRec-{args.dataset}-{seed}-{digest}" + (f"-{hashlib.sha256(tag.encode()).hexdigest()[:8]}" if tag else "")
    path = args.work_dir / "cold_scores" / f"{name}.safetensors"
    if path.exists() and not args.fresh:
        print(f"[cold_calibration] seed {seed}: reusing {path}", flush=True)
        return load_file(path)
    print(f"[cold_calibration] seed {seed}: training (scores -> {path})", flush=True)
    out = train_and_score(seed, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, path)
    return out


# ---------------------------------------------------------------------------- the four questions
def ranks_with(rows: torch.Tensor, targets: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """Target ranks when ``add`` (n_items,) is added to every row's scores (ties by item id, as the worker)."""
    return rank_of_target(rows.double() + add.double()[None, :], targets)


def split(ranks: torch.Tensor, cold: torch.Tensor) -> dict:
    return {"all": rank_metrics(ranks), "cold": rank_metrics(ranks[cold]), "warm": rank_metrics(ranks[~cold])}


def choose(valid_rows, valid_targets, test_rows, test_targets, cold_test, new, z, weights, offsets, scale):
    """Grid over (a, b): new items get ``scale * (b + a * z)``; the pair with the best validation NDCG@10 over all
    rows (ties: the smaller |a|, then |b|), and the test metrics with it."""
    best = None
    for a in weights:
        for b in offsets:
            add = torch.where(new, scale * (b + a * z), torch.zeros(()))
            ndcg = rank_metrics(ranks_with(valid_rows, valid_targets, add))["ndcg@10"]
            key = (ndcg, -abs(a), -abs(b))
            if best is None or key > best[0]:
                best = (key, a, b)
    (ndcg, _, _), a, b = best
    add = torch.where(new, scale * (b + a * z), torch.zeros(()))
    return {"weight": a, "offset": b, "valid_ndcg@10": ndcg,
            "test": split(ranks_with(test_rows, test_targets, add), cold_test)}


def ridge_prior(x: np.ndarray, y: np.ndarray, fit: np.ndarray, penalty: float = PENALTY) -> torch.Tensor:
    """Ridge predictions of y from x for every row, fitted on the rows in ``fit``, standardised over them."""
    xm, ym = x[fit].mean(axis=0), y[fit].mean()
    a = x[fit] - xm
    w = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (y[fit] - ym))
    pred = (x - xm) @ w + ym
    return torch.as_tensor((pred - pred[fit].mean()) / pred[fit].std())


def oracle_shift(mean_score: torch.Tensor, popularity: torch.Tensor, new: torch.Tensor,
                 bandwidth: float = BANDWIDTH) -> torch.Tensor:
    """Per new item: the kernel-weighted mean score of trained items of about its popularity, minus its own mean
    score; zero for the other items."""
    trained = ~new
    trained[0] = False
    lp = torch.log1p(popularity.double())
    w = torch.exp(-(lp[new][:, None] - lp[trained][None, :]) ** 2 / (2 * bandwidth**2))
    shift = torch.zeros_like(mean_score, dtype=torch.float64)
    shift[new] = (w @ mean_score[trained].double()) / w.sum(dim=1) - mean_score[new].double()
    return shift


def mean_scores(rows: torch.Tensor) -> torch.Tensor:
    ok = torch.isfinite(rows)
    return torch.where(ok, rows.double(), torch.zeros((), dtype=torch.float64)).sum(0) / ok.sum(0).clamp(min=1)


def analyse(d: dict) -> dict:
    cold_items = d["cold_items"].bool()
    new = new_item_mask(d["train_item_counts"])
    n = len(new)
    vr, vt, tr, tt = d["valid_rows"], d["valid_targets"], d["test_rows"], d["test_targets"]
    cold_test = cold_items[tt]
    scale = float(score_spans(vr.double()).median())
    out = {"n_new_items": int(new.sum()), "n_cold_test_rows": int(cold_test.sum()), "scale": scale,
           "fit_s": float(d["fit_s"]), "model": split(ranks_with(tr, tt, torch.zeros(n)), cold_test)}
    model_among = rank_among(tr, tt, new)[cold_test]
    out["among_new"] = {"model": {"median_rank": float(model_among.double().median()),
                                  "recall@10": float((model_among < 10).double().mean())},
                        "random_recall@10": 10 / int(new.sum())}
    out["offset"] = choose(vr, vt, tr, tt, cold_test, new, torch.zeros(n, dtype=torch.float64), (0.0,), OFFSETS,
                           scale)
    counts = d["train_item_counts"].double().numpy()
    y = np.log1p(counts[1:])
    fit = counts[1:] > 0
    out["content_prior"] = {}
    sets = [m for m in ("text", "image") if f"{m}_features" in d]
    if len(sets) == 2:
        sets.append("text+image")
    for label in sets:
        mods = label.split("+")
        x = np.hstack([d[f"{m}_features"].double().numpy() for m in mods])
        z = torch.zeros(n, dtype=torch.float64)
        z[1:] = ridge_prior(x, y, fit)  # items without an image have a zero image feature here
        prior_rows = torch.where(torch.isfinite(tr), z[None, :].float(), tr)  # the model's history mask
        prior_among = rank_among(prior_rows, tt, new)[cold_test]
        out["among_new"][f"prior_{label}"] = {"median_rank": float(prior_among.double().median()),
                                              "recall@10": float((prior_among < 10).double().mean())}
        out["content_prior"][label] = choose(vr, vt, tr, tt, cold_test, new, z, PRIOR_WEIGHTS, OFFSETS, scale)
    shift = oracle_shift(mean_scores(vr), d["popularity"], new)
    out["oracle_popularity"] = {"test": split(ranks_with(tr, tt, shift), cold_test)}
    return out


def ratio(r: dict) -> float:
    w = r["warm"]["recall@10"]
    return r["cold"]["recall@10"] / w if w else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021])
    ap.add_argument("--dataset", default="ml100k-posters")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"))
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/pmmrec_bench"))
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="PMMRec config override (value parsed as YAML), e.g. --set text_skip=true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="train again even if scores are kept")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "cold_calibration.json")
    args = ap.parse_args(argv)
    import yaml  # a dependency of recbole

    args.overrides = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.overrides)}
    torch.set_num_threads(args.threads)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    for seed in args.seeds:
        r = {"dataset": args.dataset, "seed": seed, "overrides": args.overrides,
             "date": time.strftime("%Y-%m-%d"), **analyse(load_or_train(seed, args))}
        results["runs"] = [x for x in results["runs"] if (x["dataset"], x["seed"], x["overrides"])
                           != (args.dataset, seed, args.overrides)] + [r]
        args.out.write_text(json.dumps(results, indent=1))
        line = [f"seed {seed}: model cold/warm R@10 {ratio(r['model']):.2f}, all NDCG@10 "
                f"{r['model']['all']['ndcg@10']:.4f}; among {r['n_new_items']} new items: median rank "
                f"{r['among_new']['model']['median_rank']:.0f}, R@10 {r['among_new']['model']['recall@10']:.2f} "
                f"(random {r['among_new']['random_recall@10']:.2f})"]
        for name, c in [("offset", r["offset"])] + [(f"prior {k}", v) for k, v in r["content_prior"].items()] \
                + [("oracle popularity", r["oracle_popularity"])]:
            t = c["test"]
            line.append(f"  {name}: a {c.get('weight', '-')} b {c.get('offset', '-')} -> cold/warm {ratio(t):.2f}, "
                        f"cold R@10 {t['cold']['recall@10']:.3f}, warm {t['warm']['recall@10']:.3f}, all NDCG@10 "
                        f"{t['all']['ndcg@10']:.4f}")
        print("\n".join(line), flush=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
