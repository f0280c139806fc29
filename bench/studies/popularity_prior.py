"""How much a popularity prior adds to the training-free ContentKNN: a check behind the transfer notes.

Zero-shot on a new domain, a model pre-trained elsewhere can only bring what holds across domains. Item popularity
is one such signal: a model could learn on its sources how much to weigh it, and read each target item's count
from the target's training data without a training step. This script bounds what that is worth: it scores every
item by ContentKNN's cosine plus ``b * log(1 + c_i) / max_j log(1 + c_j)``, c_i the item's training
interactions, for a grid of b, and prints validation and test NDCG@10 (full ranking; the input history removed
as ContentKNN removes it, RecBole's leave-one-out split). No training; the encoder-state cache is read (built first
if missing, as a run would).

``--space principal`` takes the cosine where PMMRec's ``content_skip`` takes it instead (the catalogue's top
``--dim`` principal directions, centred, 64 as ``content_skip_dim``: ``similarity.ContentSkip`` with weight 1),
i.e. what a text model with random weights and the skip scores zero-shot, less its random part.

    python bench/studies/popularity_prior.py --data-dir /tmp/pmmrec_data --datasets seqrec-toys [--space principal]

Results go to bench/results/popularity_prior.json (``popularity_prior_principal.json`` with ``--space principal``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)


def ndcg_at_10(model, loader, prior, weights) -> dict[float, float]:
    """Mean NDCG@10 over the loader's rows of ``model``'s full-sort scores + w * prior, for each w (ranks and
    metrics by ``bench.suite.ranks``, ties broken by item id as everywhere in the suite)."""
    import torch

    from bench.suite.ranks import rank_metrics, rank_of_target

    ranks = {w: [] for w in weights}
    with torch.no_grad():
        for interaction, _history, row, target in loader:
            base = model.full_sort_predict(interaction)[row]
            base[:, 0] = -float("inf")  # padding
            for w in weights:
                ranks[w].append(rank_of_target(base + w * prior, target))
    return {w: round(rank_metrics(torch.cat(r), ks=(10,))["ndcg@10"], 4) for w, r in ranks.items()}


class PrincipalKNN:
    """ContentKNN's score taken in the principal space of PMMRec's content skip: ``cos(P q_u, P c_i)``."""

    def __init__(self, knn, features, dim: int):
        from recbole_pmmrec.model.similarity import ContentSkip

        self.knn = knn  # its recency weighting (knn_decay, knn_history: the same keys and values as PMMRec's)
        self.skip = ContentSkip(features, dim, knn.decay, knn.history, 1.0)

    def full_sort_predict(self, interaction):
        knn, skip = self.knn, self.skip
        item_seq = interaction[knn.ITEM_SEQ]
        scores = skip.query(item_seq, interaction[knn.ITEM_SEQ_LEN], skip.catalogue) @ skip.catalogue.t()
        return scores.scatter(1, item_seq, float("-inf")) if knn.exclude_history else scores


def check(name: str, args) -> dict:
    import numpy as np
    import torch

    from recbole_pmmrec.config import Config
    from recbole_pmmrec.model.content_knn import ContentKNN
    from recbole_pmmrec.utils import create_dataset, data_preparation

    cfg = {"data_path": str(args.data_dir), "cache_dir": str(args.cache_dir), "state": "warning",
           "show_progress": False, "use_gpu": False}
    config = Config(model=ContentKNN, dataset=name, config_dict=cfg)
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = ContentKNN(config, train.dataset).eval()
    if args.space == "principal":
        model = PrincipalKNN(model, train.dataset.item_features, args.dim)
    items = torch.as_tensor(np.asarray(train.dataset.inter_feat[train.dataset.iid_field]))
    prior = torch.log1p(torch.bincount(items, minlength=dataset.item_num).float())
    prior = prior / prior.max()
    result = {"dataset": name, "space": args.space, "weights": list(WEIGHTS),
              "valid": ndcg_at_10(model, valid, prior, WEIGHTS), "test": ndcg_at_10(model, test, prior, WEIGHTS)}
    best = max(WEIGHTS, key=lambda w: result["valid"][w])
    result["chosen_on_valid"] = {"weight": best, "test": result["test"][best],
                                 # b = 0 is ContentKNN itself in the raw space, its principal-space twin otherwise
                                 "x_no_prior": round(result["test"][best] / result["test"][0.0], 3)}
    shown = f"{name} ({args.space})"
    print(f"{shown}: valid {result['valid']}\n{shown}: test {result['test']}\n{shown}: b {best} chosen on validation, "
          f"test {result['test'][best]} ({result['chosen_on_valid']['x_no_prior']}x the same score without the prior)",
          flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"))
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/pmmrec_bench/cache"))
    p.add_argument("--datasets", nargs="+", default=["seqrec-toys"])
    p.add_argument("--space", choices=("raw", "principal"), default="raw",
                   help="raw: ContentKNN's cosine; principal: the content skip's (centred top principal directions)")
    p.add_argument("--dim", type=int, default=64, help="with --space principal: the directions kept (PMMRec's "
                   "content_skip_dim default)")
    p.add_argument("--out", type=Path, help="default: bench/results/popularity_prior.json, or "
                   "popularity_prior_principal.json with --space principal")
    args = p.parse_args(argv)
    suffix = "" if args.space == "raw" else f"_{args.space}"
    args.out = args.out or REPO / "bench" / "results" / f"popularity_prior{suffix}.json"
    import torch

    torch.set_num_threads(1)
    results = [check(name, args) for name in args.datasets]
    args.out.write_text(json.dumps({"results": results}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
