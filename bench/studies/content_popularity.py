"""How much of an item's popularity its content predicts: a check behind the cold-start section.

A model that never trained on an item can only guess its popularity from its content. This script fits a ridge
regression from the frozen encoder features PMMRec reads (the mean of the cached MiniLM tokens, the mean of the
pooled EfficientNet-Lite0 grid) to log(1 + interactions of the item in the whole data set), 10-fold cross-
validated over the items, and prints the Spearman correlation of the held-out predictions with the truth
for each modality and both, at three ridge penalties. No training of PMMRec; the cached encoder states are
read (built first if missing, as a run would).

    python bench/studies/content_popularity.py --data-dir /tmp/pmmrec_data --datasets ml100k-posters microlens-50k

Results go to bench/results/content_popularity.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
PENALTIES = (10.0, 100.0, 1000.0)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation; tied values (many items share a count) get their average rank."""
    from scipy.stats import spearmanr  # a dependency of recbole

    return float(spearmanr(a, b).statistic)


def ridge_cv(x: np.ndarray, y: np.ndarray, penalty: float, folds: int = 10, seed: int = 0) -> np.ndarray:
    """Held-out predictions of y from x, ``folds``-fold cross-validation, centred ridge regression."""
    order = np.random.default_rng(seed).permutation(len(y))
    pred = np.empty(len(y))
    for part in np.array_split(order, folds):
        train = np.setdiff1d(order, part)
        xm, ym = x[train].mean(axis=0), y[train].mean()
        a = x[train] - xm
        w = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (y[train] - ym))
        pred[part] = (x[part] - xm) @ w + ym
    return pred


def features(dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality the dataset prepared: the mean-pooled frozen encoder features of the real items (rows 1..n-1;
    ``ItemFeatures.pooled``, the item tower's summary: text over its valid tokens, image over every grid token)
    and which of them have that content."""
    feats = dataset.item_features
    return {m: (feats.pooled(m).float().numpy()[1:], getattr(feats, f"has_{m}").bool().numpy()[1:])
            for m in feats.modalities}


def check(name: str, args) -> dict:
    from recbole_pmmrec.config import Config
    from recbole_pmmrec.utils import create_dataset

    cfg = {"data_path": str(args.data_dir), "cache_dir": str(args.cache_dir), "state": "warning",
           "show_progress": False, "use_gpu": False}
    dataset = create_dataset(Config(model="PMMRec", dataset=name, config_dict=cfg))
    counts = np.bincount(np.asarray(dataset.inter_feat[dataset.iid_field]), minlength=dataset.item_num)
    y_all = np.log1p(counts[1:].astype(float))
    feats = features(dataset)
    result = {"dataset": name, "n_items": int(dataset.item_num - 1), "spearman": {}}
    sets = {m: [m] for m in feats}
    if len(feats) == 2:
        sets["text+image"] = ["text", "image"]
    for label, mods in sets.items():
        keep = np.logical_and.reduce([feats[m][1] for m in mods])  # items with every modality of the set
        x = np.hstack([feats[m][0][keep] for m in mods])
        y = y_all[keep]
        result["spearman"][label] = {"items": int(keep.sum()),
                                     **{str(p): round(spearman(ridge_cv(x, y, p), y), 3) for p in PENALTIES}}
        print(f"{name} {label}: " + ", ".join(f"penalty {p:g} -> {result['spearman'][label][str(p)]}"
                                                for p in PENALTIES), flush=True)
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"))
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/pmmrec_bench/cache"))
    ap.add_argument("--datasets", nargs="+", default=["ml100k-posters"])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "content_popularity.json")
    args = ap.parse_args(argv)
    results = [check(name, args) for name in args.datasets]
    args.out.write_text(json.dumps({"target": "log(1 + interactions) per item, whole data set",
                                    "method": "ridge on mean-pooled frozen encoder features, 10-fold CV, Spearman",
                                    "results": results}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
