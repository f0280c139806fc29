"""bench/studies/cold_calibration.py on stored scores made up here (no training, no real data)."""

import numpy as np
import pytest
import torch

from bench.studies import cold_calibration as cc


def test_choose_picks_the_validation_best_and_applies_it_to_test():
    # items 1..5; item 5 is new and is every row's target; trained items score 1..4
    rows = torch.tensor([[float("-inf"), 1.0, 2.0, 3.0, 4.0, 2.5]] * 2)
    targets = torch.tensor([5, 5])
    new = torch.tensor([False, False, False, False, False, True])
    zero = torch.zeros(6, dtype=torch.float64)
    # offsets -1, 0, +1, +2 (scale 1): +2 puts item 5 first (4.5 > 4); +1 leaves it second (3.5 < 4)
    c = cc.choose(rows, targets, rows, targets, torch.tensor([True, True]), new, zero, (0.0,), (-1.0, 0.0, 1.0, 2.0),
                  1.0)
    assert c["offset"] == 2.0 and c["weight"] == 0.0 and c["valid_ndcg@10"] == pytest.approx(1.0)
    assert c["test"]["cold"]["mrr@10"] == pytest.approx(1.0) and c["test"]["all"]["n"] == 2
    # with equal validation NDCG@10 the smaller |offset| wins: both +2 and +3 put the target first
    c = cc.choose(rows, targets, rows, targets, torch.tensor([True, True]), new, zero, (0.0,), (3.0, 2.0), 1.0)
    assert c["offset"] == 2.0
    # a prior z moves new items by scale * (b + a * z): a = 1 with z = 2 does what b = 2 did
    z = torch.tensor([0, 0, 0, 0, 0, 2.0], dtype=torch.float64)
    c = cc.choose(rows, targets, rows, targets, torch.tensor([True, True]), new, z, (0.0, 1.0), (0.0,), 1.0)
    assert (c["weight"], c["offset"]) == (1.0, 0.0)


def test_oracle_shift_moves_new_items_to_trained_items_of_their_popularity():
    mean_score = torch.tensor([0.0, 1.0, 1.0, 5.0, 5.0, 0.0, 2.0])
    popularity = torch.tensor([0, 10, 10, 1000, 1000, 10, 1000])
    new = torch.tensor([False, False, False, False, False, True, True])
    shift = cc.oracle_shift(mean_score, popularity, new)
    assert shift[:5].abs().max() == 0  # trained items and padding stay
    assert shift[5] == pytest.approx(1.0 - 0.0, abs=1e-6)  # like items 1, 2 (popularity 10, mean score 1)
    assert shift[6] == pytest.approx(5.0 - 2.0, abs=1e-6)  # like items 3, 4 (popularity 1000, mean score 5)


def test_ridge_prior_is_standardised_over_the_fitted_items():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = x @ np.array([2.0, 0.0, -1.0]) + 0.01 * rng.normal(size=60)
    fit = np.arange(60) < 50
    z = cc.ridge_prior(x, y, fit, penalty=1e-3)
    assert float(z[torch.as_tensor(fit)].mean()) == pytest.approx(0.0, abs=1e-9)
    assert float(z[torch.as_tensor(fit)].std(unbiased=False)) == pytest.approx(1.0)
    assert np.corrcoef(z[~torch.as_tensor(fit)].numpy(), y[~fit])[0, 1] > 0.99  # held-out items follow y


def test_analyse_reports_every_question_on_made_up_scores():
    g = torch.Generator().manual_seed(0)
    n, n_rows = 41, 30  # items 31..40 have no training interaction; 31..38 are the cold items
    counts = torch.cat([torch.tensor([0]), torch.randint(1, 50, (30,), generator=g), torch.zeros(10, dtype=torch.long)])
    cold = torch.zeros(n, dtype=torch.bool)
    cold[31:39] = True

    def rows_and_targets():
        rows = torch.randn(n_rows, n, generator=g)
        rows[:, 0] = float("-inf")
        targets = torch.randint(1, n, (n_rows,), generator=g)
        targets[:6] = torch.arange(31, 37)  # some cold targets in every split
        return rows, targets

    d = {"cold_items": cold, "train_item_counts": counts, "popularity": counts + 3, "fit_s": torch.tensor(1.0),
         "text_features": torch.randn(n - 1, 4, generator=g)}
    d["valid_rows"], d["valid_targets"] = rows_and_targets()
    d["test_rows"], d["test_targets"] = rows_and_targets()
    r = cc.analyse(d)
    assert r["n_new_items"] == 10 and r["among_new"]["random_recall@10"] == pytest.approx(1.0)
    assert r["n_cold_test_rows"] == int(cold[d["test_targets"]].sum())
    ranks = cc.rank_of_target(d["test_rows"].double(), d["test_targets"])
    assert r["model"]["all"]["ndcg@10"] == pytest.approx(cc.rank_metrics(ranks)["ndcg@10"])
    assert r["among_new"]["model"]["recall@10"] == 1.0  # 10 new items: every cold target is in their top 10
    assert set(r["content_prior"]) == {"text"} and set(r["among_new"]) >= {"model", "prior_text"}
    # the chosen offset is at least as good on validation as no offset (0 is on the grid)
    assert r["offset"]["valid_ndcg@10"] >= cc.rank_metrics(
        cc.rank_of_target(d["valid_rows"].double(), d["valid_targets"]))["ndcg@10"] - 1e-12
    assert "oracle_popularity" in r and r["oracle_popularity"]["test"]["cold"]["n"] == r["n_cold_test_rows"]


def test_train_and_score_runs_the_entry_point_on_a_tiny_cold_split(synth, pmmrec_config, tmp_path):
    """The study trains through ``run_recbole_pmmrec`` and keeps every row's scores with the best weights: one row
    per validation / test user, targets among the items, the cold mask of the split and its checkpoint removed."""
    import argparse

    keys = {k: v for k, v in pmmrec_config(synth).items()
            if k not in ("data_path", "checkpoint_dir", "log_dir", "tensorboard_dir", "cache_dir", "epochs")}
    args = argparse.Namespace(work_dir=tmp_path / "work", data_dir=synth.root, dataset=synth.name, max_epochs=1,
                              overrides=dict(keys, cold_item_ratio=0.2))
    out = cc.train_and_score(2020, args)
    n_items = len(out["cold_items"])
    assert out["test_rows"].shape == (40, n_items) and out["valid_rows"].shape == (40, n_items)
    assert int(out["cold_items"].sum()) == round(0.2 * (n_items - 1)) and out["fit_s"] > 0
    assert int(out["popularity"].sum()) > int(out["train_item_counts"].sum())  # the whole data set, not training
    assert not list((tmp_path / "work" / "cold_scores" / "saved-2020").glob("*.pth"))
    for modality in ("text", "image"):  # the content-prior features: one pooled encoder state per real item
        assert out[f"{modality}_features"].shape[0] == out[f"has_{modality}"].shape[0] == n_items - 1
    assert out["text_features"].shape[1] == 32  # the tiny BERT's hidden size
