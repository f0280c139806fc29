"""Smoke test of the benchmark report: fake results in, BENCHMARKS.md sections and plots out (no real data)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import worker  # noqa: E402


def fit_run(label, tag, scores, epoch_s, valid_s, rss_gb, seed=2020, test=None, cold=None):
    curve, wall = [], 0.0
    for e, s in enumerate(scores):
        wall += epoch_s + valid_s
        curve.append({"epoch": e, "train_s": epoch_s, "valid_s": valid_s, "wall_s": wall, "score": s})
    t = {"all": {"n": 100, "recall@10": test or 0.1, "ndcg@10": (test or 0.1) / 2, "mrr@10": (test or 0.1) / 3}}
    if cold is not None:
        t["cold"] = {"n": 10, "recall@10": cold[0], "ndcg@10": cold[0] / 2, "mrr@10": cold[0] / 3}
        t["warm"] = {"n": 90, "recall@10": cold[1], "ndcg@10": cold[1] / 2, "mrr@10": cold[1] / 3}
    return {"label": label, "tag": tag, "status": "done", "seed": seed, "curve": curve, "test": t,
            "test_recbole": {"ndcg@10": (test or 0.1) / 2}, "peak_rss_bytes": int(rss_gb * 1024**3),
            "data_s": 1.0, "model_s": 0.5, "spec": {"model": label, "config": {"stopping_step": 3}}}


@pytest.fixture()
def results(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    speed = {"meta": {"cpus": 2, "date": "today", "loadavg_at_start": [1.0, 1.0, 1.0]}, "runs": [
        fit_run("SASRec", "sasrec", [0.05, 0.08, 0.10, 0.09], epoch_s=10, valid_s=2, rss_gb=1.0),
        fit_run("PMMRec", "pmmrec", [0.07, 0.11, 0.12], epoch_s=2, valid_s=1, rss_gb=2.0),
        {"label": "c", "tag": "subset_cached", "status": "done", "epoch_s": [2.0, 3.0], "n_train_rows": 50,
         "spec": {"config": {"few_shot_ratio": 0.03}}, "peak_rss_bytes": 1},
        {"label": "e", "tag": "subset_e2e", "status": "done", "epoch_s": [30.0], "spec": {"config": {}},
         "peak_rss_bytes": 1},
        {"label": "cti", "tag": "subset_cached_ti", "status": "done", "epoch_s": [4.0, 5.0], "n_train_rows": 50,
         "spec": {"config": {"few_shot_ratio": 0.1}}, "peak_rss_bytes": 1, "data_s": 3.0},
        {"label": "eti", "tag": "subset_e2e_ti", "status": "done", "epoch_s": [40.0, 44.0], "spec": {"config": {}},
         "peak_rss_bytes": 1, "data_s": 1.0},
        {"label": "f", "tag": "build_fresh", "status": "done", "data_s": 100.0, "peak_rss_bytes": 1},
        {"label": "w", "tag": "build_warm", "status": "done", "data_s": 10.0, "peak_rss_bytes": 1},
    ]}
    quality = {"runs": [fit_run("PMMRec", None, [0.1], 1, 1, 1, seed=s, test=t) for s, t in ((1, 0.2), (2, 0.3))]
               + [fit_run("SASRec", None, [0.1], 1, 1, 1, test=0.2), fit_run("PMMRec CE", None, [0.1], 1, 1, 1, test=0.4)]}
    diagnosed = fit_run("PMMRec", None, [0.1], 1, 1, 1, cold=(0.1, 0.3))
    diagnosed["test"]["diagnosis"] = {
        "median_rank": {"cold": 530.0, "warm": 152.0}, "target_popularity_median": {"cold": 66.0, "warm": 123.0},
        "buckets": [{"lo": 1, "hi": 10, "n_cold": 60, "n_warm": 470, "score_cold": -0.571, "score_warm": -0.738},
                    {"lo": 150, "hi": 10**9, "n_cold": 11, "n_warm": 190, "score_cold": -0.227, "score_warm": 0.073}],
        "among_new": {"n_new_items": 50, "n_rows": 10, "median_rank": 7.0, "recall@10": 0.6}}
    diagnosed["new_item_offset"] = {  # with the offset: 3 of the 10 cold rows hit (1 without), warm 0.25
        "step": -0.4, "scale": 2.0, "offset": -0.8, "n_new_items": 5,
        "valid_ndcg@10": {"zero": 0.05, "chosen": 0.06},
        "test": {"all": {"n": 100, "recall@10": 0.255, "ndcg@10": 0.12},
                 "cold": {"n": 10, "recall@10": 0.3, "ndcg@10": 0.1}, "warm": {"n": 90, "recall@10": 0.25}}}
    cold = {"runs": [diagnosed,
                     fit_run("SASRec", None, [0.1], 1, 1, 1, cold=(0.0, 0.3))]}
    scaling = {"runs": [{"label": f"s{i}", "status": "done", "n_inter": n, "n_items": n // 10, "n_train_rows": n // 20,
                         "epoch_s": [0.001 * n], "peak_rss_bytes": 10**8, "n_inter_target": n,
                         "n_items_target": n // 10} for i, n in enumerate((10**4, 10**5, 10**6))]}
    for name, data in (("speed", speed), ("quality", quality), ("coldstart", cold), ("scaling", scaling)):
        (res / f"{name}.json").write_text(json.dumps(data))
    return res


def test_report_sections_ratios_and_plots(results, tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("## Transfer\n\nkeep me 0.1234\n")
    text = report.write_report(results, tmp_path / "plots", md)

    # SASRec's best 0.10 at 3 epochs x 12 s = 36 s; PMMRec reaches 0.11 at epoch 2: 2 x 3 s = 6 s -> 6/36
    sp = report.speed_numbers(json.loads((results / "speed.json").read_text()))
    assert sp["pmmrec_reached"] and sp["pmmrec_ttq"] == pytest.approx(6 / 36)
    assert sp["pmmrec_epoch_ratio"] == pytest.approx(0.2) and sp["pmmrec_eval_ratio"] == pytest.approx(0.5)
    assert sp["cached_speedup"] == pytest.approx(15.0) and sp["cache_build_s"] == pytest.approx(90.0)
    assert sp["cached_speedup_ti"] == pytest.approx(10.0)  # text + image pair: the faster epoch of each, 40 / 4
    assert "**0.17**" in text and "15.0x" in text and "**10.0x**" in text
    # quality: mean and sample std over two seeds; targets table compares with SASRec
    assert "0.1250 ± 0.0354" in text  # ndcg@10 = recall/2 over (0.2, 0.3)
    assert "0.1250 vs 0.1000 (1.25x)" in text
    # a label outside the suite's list goes to the second table, even when it scores best
    checks = text.index("Settings checked outside the suite's list")
    assert text.index("| SASRec | 1 |") < checks < text.index("| PMMRec CE | 1 |")
    # cold start ratio 0.1 / 0.3
    assert "0.1000 / 0.3000 = 0.33" in text
    assert "| PMMRec | 1 | 530 / 152 | 66 / 123 | -0.571 / -0.738 (60 cold) | -0.227 / 0.073 (11 cold) | 7 of 50, 0.60 (6/10; random 0.2) |" in text
    assert "| PMMRec | 1 | -0.4 | 0.0500 / 0.0600 | 1 / 3 of 10 | 0.300 / 0.250 | 0.0500 / 0.1200 |" in text
    # scaling: epoch time exactly linear -> slope 1
    assert "**1.00**" in text
    # other sections survive, ours come before them, plots exist and are referenced
    assert text.index("<!-- bench:scaling -->") < text.index("## Transfer") and "keep me 0.1234" in text
    for png in ("quality_valid_curves.png", "speed_valid_vs_time.png", "speed_ratios.png", "scaling.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000 and f"plots/{png}" in text
    # idempotent: a second run rewrites our sections in place
    assert report.write_report(results, tmp_path / "plots", md) == text


def test_report_marks_missing_parts_and_unreached_quality(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    speed = {"runs": [fit_run("SASRec", "sasrec", [0.05, 0.2], 10, 2, 1.0),
                      fit_run("PMMRec", "pmmrec", [0.07, 0.11], 2, 1, 5.0)]}
    (res / "speed.json").write_text(json.dumps(speed))
    text = report.write_report(res, tmp_path / "plots", tmp_path / "B.md")
    assert "never reaches it" in text and "not run" in text
    # at PMMRec's best (0.11): PMMRec after 2 x 3 s, SASRec (first >= 0.11 at its second epoch) after 2 x 12 s
    assert "6 / 24 = 0.25" in text
    assert "**missed**" in text  # RSS 5 GiB > 4 GB and time to quality not reached


def test_rank_metrics_and_tie_breaking():
    m = worker.rank_metrics(torch.tensor([0, 1, 9, 10]))
    assert m["recall@10"] == pytest.approx(0.75)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(11)) / 4)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 4)

    class FakeTrainer:
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            scores = torch.tensor([[-math.inf, 0.5, 0.5, 0.9, 0.1], [-math.inf, 0.2, 0.2, 0.2, 0.3]])
            return None, scores, torch.tensor([0, 1]), torch.tensor([2, 3])

    ranks, targets, mean_score = worker.target_ranks(FakeTrainer(), [None])
    # row 0: item 3 scores higher, item 1 ties with a lower id -> rank 2; row 1: item 4 higher, items 1, 2 tie
    assert ranks.tolist() == [2, 3] and targets.tolist() == [2, 3]

    class FakeDataset:  # item 2 is cold; popularity (all interactions): items 1..4 have 1, 12, 60, 200
        iid_field = "item_id"
        inter_feat = {"item_id": torch.tensor([1] + [2] * 12 + [3] * 60 + [4] * 200)}

    cold_items = torch.tensor([False, False, True, False, False])
    d = worker.cold_diagnosis(ranks, targets, mean_score, cold_items, FakeDataset())
    assert d["median_rank"] == {"cold": 2.0, "warm": 3.0}
    assert d["target_popularity_median"] == {"cold": 12.0, "warm": 60.0}
    by_lo = {b["lo"]: b for b in d["buckets"]}
    assert by_lo[10]["n_cold"] == 1 and by_lo[10]["score_cold"] == pytest.approx(0.35)  # mean of 0.5, 0.2
    assert by_lo[150]["score_warm"] == pytest.approx(0.2) and by_lo[150]["score_cold"] is None
    assert by_lo[1]["score_warm"] == pytest.approx(0.35)  # item 1 (history-masked nowhere here)


def test_among_new_items_ranks_cold_targets_against_new_items_only():
    """The cold-start diagnostic ``among_new_items``: a cold target's rank among the items without a training
    interaction (trained items are not ranked), over the rows whose target is cold."""
    scores = torch.tensor([[-math.inf, 0.5, 0.5, 0.9, 0.1, 0.7],
                           [-math.inf, 0.2, 0.2, 0.2, 0.3, 0.1],
                           [-math.inf, 0.9, 0.1, 0.8, 0.6, 0.7]])

    class FakeTrainer:
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            return None, scores, torch.tensor([0, 1, 2]), torch.tensor([2, 2, 5])

    class FakeDataset:  # items 2, 4, 5 have no training interaction; 2 and 5 are the cold items
        train_item_counts = torch.tensor([0, 3, 0, 5, 0, 0])
        cold_items = torch.tensor([False, False, True, False, False, True])

    new = torch.tensor([False, False, True, False, True, True])
    ranks, targets, _, subset = worker.target_ranks(FakeTrainer(), [None], among=new)
    # row 0: of items 2, 4, 5 only item 5 (0.7) beats item 2 (0.5); row 1: item 4 (0.3) does; row 2: item 5 is
    # first among new items although trained items 1 and 3 score higher
    assert subset.tolist() == [1, 1, 0] and targets.tolist() == [2, 2, 5]
    assert ranks.tolist() == [3, 2, 2]  # the ranks among all items come from the same pass
    d = worker.among_new_items(subset, targets, FakeDataset.cold_items,
                               worker.new_item_mask(FakeDataset.train_item_counts))
    assert d == {"n_new_items": 3, "n_rows": 3, "median_rank": 1.0, "recall@10": 1.0}
    assert FakeDataset.train_item_counts[0] == 0  # the mask is a copy: padding is not changed in the data set


def test_shifted_ranks_equal_ranking_the_shifted_scores():
    """``shifted_ranks`` (sorted once, a binary search per shift) gives ``rank_of_target`` of the shifted scores,
    ties by item id included: integer scores make exact ties within and across the two groups."""
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(-6, 7, (200, 40), generator=g).double()
    rows[:, 0] = -math.inf  # padding
    rows[torch.rand(200, 40, generator=g) < 0.1] = -math.inf  # history items
    pos_i = torch.randint(1, 40, (200,), generator=g)
    new = torch.rand(40, generator=g) < 0.3
    new[0] = False
    shifts = [-3.0, -1.0, 0.0, 0.5, 2.0, 7.0]
    expected = torch.stack([worker.rank_of_target(rows + new.double()[None, :] * d, pos_i) for d in shifts])
    assert torch.equal(worker.shifted_ranks(rows, pos_i, new, shifts), expected)


def test_new_item_offset_is_chosen_on_validation_and_applied_to_test():
    """The cold-start diagnostic ``new_item_offset``: an offset added to the items without a training interaction,
    in units of the score scale (median of the 10th-highest score minus the median score), chosen on the
    validation rows by NDCG@10 and applied to the test rows."""
    scores = torch.cat([torch.tensor([-math.inf]), torch.arange(1, 31, dtype=torch.float)])[None].repeat(2, 1)

    class FakeTrainer:  # items 1..30 score 1..30 in both rows; targets: item 15 (new) and item 30
        model = torch.nn.Linear(1, 1)

        def _full_sort_batch_eval(self, batch):
            return None, scores, torch.tensor([0, 1]), torch.tensor([15, 30])

    new = torch.zeros(31, dtype=torch.bool)
    new[15] = True
    ranks, targets, scale = worker.offset_ranks(FakeTrainer(), [None], new, (0.0, 1.0, 2.5, 2.6))
    assert scale == pytest.approx(21 - 15)  # 10th-highest 21, median 15
    # the new target climbs past 15, then 9 items; at 2.5 it ties with item 30 and, the lower id, goes first
    # (ties by item id, as everywhere in the worker), which also puts it above the other row's target
    assert ranks.tolist() == [[15, 0], [9, 0], [0, 1], [0, 1]] and targets.tolist() == [15, 30]

    class FakeDataset:
        train_item_counts = (~new).long()
        cold_items = new

    d = worker.new_item_offset(FakeTrainer(), [None], [None], FakeDataset())
    # no offset puts both targets first: from 2.5 on item 15 also displaces item 30. The best, second in one row
    # and first in the other, starts at 2.4 (15 + 14.4 passes item 29), the smallest such step
    assert d["step"] == 2.4 and d["offset"] == pytest.approx(14.4) and d["n_new_items"] == 1
    half = (1 + 1 / math.log2(3)) / 2
    assert d["valid_ndcg@10"] == {"zero": pytest.approx(0.5), "chosen": pytest.approx(half)}
    assert d["test"]["cold"]["recall@10"] == 1.0 and d["test"]["cold"]["mrr@10"] == 0.5
    assert d["test"]["warm"]["mrr@10"] == 1.0


def _add_many(results_dir, start, n):
    import run

    run.RESULTS = Path(results_dir)
    for i in range(start, start + n):
        run.add_run("quality", {"key": f"k{i}", "label": "x", "status": "done"})


def test_add_run_keeps_every_record_when_processes_write_at_once(tmp_path):
    """bench/run.py processes sharing a results file (two lanes on two cores) must not lose each other's runs."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_add_many, args=(tmp_path, start, 25)) for start in (0, 100, 200)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    keys = {r["key"] for r in json.loads((tmp_path / "quality.json").read_text())["runs"]}
    assert keys == {f"k{i}" for start in (0, 100, 200) for i in range(start, start + 25)}


def test_add_run_keeps_every_record_when_threads_of_one_process_write_at_once(tmp_path, monkeypatch):
    """The --jobs lanes are threads of one bench/run.py: add_run's file lock must exclude them too."""
    import threading

    import run

    monkeypatch.setattr(run, "RESULTS", Path(tmp_path))

    def many(start):
        for i in range(start, start + 25):
            run.add_run("quality", {"key": f"k{i}", "label": "x", "status": "done"})

    threads = [threading.Thread(target=many, args=(start,)) for start in (0, 100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    keys = {r["key"] for r in json.loads((tmp_path / "quality.json").read_text())["runs"]}
    assert keys == {f"k{i}" for start in (0, 100, 200) for i in range(start, start + 25)}


def test_a_finished_run_is_reused_only_with_the_same_defaults(tmp_path, monkeypatch):
    """run_key holds a run's overrides only: after a .yaml default changes, a finished run of the same overrides is
    another model and must be rerun, not reused."""
    import run

    monkeypatch.setattr(run, "RESULTS", Path(tmp_path))
    now = run.defaults_digest("PMMRec", "ml100k-posters")
    assert now == run.defaults_digest("PMMRec", "ml100k-posters")
    assert now != run.defaults_digest("SASRec", "ml100k-posters") != run.defaults_digest("SASRec", "microlens-50k")
    run.add_run("quality", {"key": "a", "reuse_key": "r", "status": "done", "defaults": "older"})
    assert run.find_done("r", now) is None
    run.add_run("quality", {"key": "b", "reuse_key": "r", "status": "done", "defaults": now})
    assert run.find_done("r", now)["key"] == "b"

    props = tmp_path / "properties" / "model"
    props.mkdir(parents=True)
    yaml_text = (run.REPO / "properties" / "model" / "PMMRec.yaml").read_text()
    (props / "PMMRec.yaml").write_text(yaml_text + "\n# a comment does not change the defaults\n")
    (tmp_path / "properties" / "overall.yaml").write_text((run.REPO / "properties" / "overall.yaml").read_text())
    (tmp_path / "properties" / "dataset").mkdir()
    (tmp_path / "properties" / "dataset" / "ml100k-posters.yaml").write_text(
        (run.REPO / "properties" / "dataset" / "ml100k-posters.yaml").read_text())
    monkeypatch.setattr(run, "REPO", tmp_path)
    assert run.defaults_digest("PMMRec", "ml100k-posters") == now
    (props / "PMMRec.yaml").write_text(yaml_text.replace("text_tokens: 8 ", "text_tokens: 16"))
    assert run.defaults_digest("PMMRec", "ml100k-posters") != now


def test_a_run_key_is_claimed_by_one_process_at_a_time(tmp_path):
    """Two bench/run.py lanes asked for the same run: the second skips it instead of running it twice."""
    import run

    with run.claimed(tmp_path, "abc") as first:
        with run.claimed(tmp_path, "abc") as second, run.claimed(tmp_path, "other") as third:
            assert first and not second and third
    with run.claimed(tmp_path, "abc") as again:
        assert again  # released when the first holder is done


def test_wilson_interval_and_pooled_cold_hits():
    """The cold-start table's interval: Wilson's score interval (checked against its closed form at p = 0 and a
    textbook value) and hits pooled over seeds from each seed's Recall@10 and row count."""
    lo, hi = report.wilson(0, 89)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(1.96**2 / (89 + 1.96**2))
    lo, hi = report.wilson(7, 261)
    assert (round(lo, 4), round(hi, 4)) == (0.0131, 0.0543)
    row = {"n_cold": [89, 86, 86], "cold": {"recall@10": [6 / 89, 0.0, 1 / 86]}}
    text = report._pooled_hits(row, 0.1)
    assert text.startswith("7 / 261 (0.13-0.54)"), text


def test_cold_by_epoch_pools_validation_hits_over_seeds():
    def point(score, hits, n, warm):
        return {"score": score, "valid_cold": {"n": n, "recall@10": hits / n}, "valid_warm": {"n": 500, "recall@10": warm}}
    runs = [{"label": "PMMRec", "seed": 2020, "curve": [point(0.03, 4, 80, 0.10), point(0.05, 1, 80, 0.12)]},
            {"label": "PMMRec", "seed": 2021, "curve": [point(0.04, 2, 70, 0.10)]},
            {"label": "SASRec", "seed": 2020, "curve": [{"score": 0.05}]}]
    for r in runs:
        r.update(status="done", spec={"model": r["label"]})
    lines = report._cold_by_epoch(runs)
    text = "\n".join(lines)
    assert "SASRec" not in text  # no split recorded: no table
    assert "| 1 | 2 | 6 / 150 | 0.0400 | 0.1000 | 0.40 |" in text
    assert "| 2 | 1 | 1 / 80 |" in text
    assert "| selected | 2 | 3 / 150 | 0.0200 | 0.1100 | 0.18 |" in text  # seed 2020's epoch 2, seed 2021's epoch 1


def test_runs_on_another_dataset_get_rows_of_their_own():
    """bench/run.py --dataset: a cold-start run on another data set is neither pooled with the suite's runs of the
    same label nor taken for them in the targets."""
    main = fit_run("PMMRec", "q", [0.05], 10, 1, 1.0, cold=(0.02, 0.2))
    other = fit_run("PMMRec", "q", [0.05], 10, 1, 1.0, cold=(0.15, 0.2))
    other["spec"]["dataset"] = "microlens-50k"
    rows = report.quality_table_rows([main, other])
    assert rows["PMMRec"]["n"] == 1 and rows["PMMRec"]["cold"]["recall@10"] == [0.02]
    assert rows["PMMRec on microlens-50k"]["cold"]["recall@10"] == [0.15]
    text = report.section_coldstart({"runs": [main, other]})
    assert "| PMMRec on microlens-50k | 1 |" in text and "| PMMRec | 1 |" in text
    targets = report.section_targets({}, {}, rows, {})
    assert "| PMMRec Recall@10 on cold targets / warm targets | >= 0.5 | 0.0200 / 0.2000 = 0.10 | **missed** |" in targets
    assert "PMMRec on microlens-50k: Recall@10 on cold targets / warm targets (1 seed, ~10 cold rows each) | >= 0.5 | " \
           "0.1500 / 0.2000 = 0.75 (budget-capped or < 3 seeds: no verdict) | — |" in targets


def test_time_to_quality_under_one_protocol():
    """With ``valid_history_removed`` on both curves, time to quality is also computed on it (SASRec's best under
    that rule, PMMRec's first epoch at or above it)."""
    sas = fit_run("SASRec", "sasrec", [0.03, 0.05, 0.06], epoch_s=10, valid_s=0, rss_gb=1)
    pmm = fit_run("PMMRec", "pmmrec", [0.05, 0.08, 0.07], epoch_s=5, valid_s=0, rss_gb=1)
    for p, v in zip(sas["curve"], [0.04, 0.07, 0.09]):
        p["valid_history_removed"] = v
    for p in pmm["curve"]:
        p["valid_history_removed"] = p["score"]
    sp = report.speed_numbers({"runs": [sas, pmm]})
    assert sp["sasrec_best_hr"] == 0.09 and sp["sasrec_time_hr"] == 30
    assert not sp["pmmrec_reached_hr"] and sp["pmmrec_best_hr"] == 0.08  # never reached: the ratio at its own best
    assert sp["pmmrec_ttq_hr"] == pytest.approx(10 / 30)
    assert sp["pmmrec_reached"]
    assert sp["pmmrec_ttq"] == pytest.approx(10 / 30)  # RecBole's own numbers: SASRec's best 0.06 at 30 s
    del sas["curve"][0]["valid_history_removed"]  # older runs: no same-protocol ratio
    assert "pmmrec_ttq_hr" not in report.speed_numbers({"runs": [sas, pmm]})


def test_worker_selects_by_history_removed_validation_when_asked(synth, quick_config, tmp_path):
    """spec select 'history_removed': RecBole's fit stops and keeps its checkpoint by validation NDCG@10 with the
    input history removed; the curve keeps RecBole's own score beside it."""
    cfg = quick_config(synth, epochs=4, stopping_step=10, seed=1)
    spec = {"label": "SASRec hr-selected", "model": "SASRec", "dataset": synth.name, "config": cfg, "mode": "fit",
            "select": "history_removed"}
    r = worker.run(spec, tmp_path / "out.json")
    assert r["status"] == "done" and len(r["curve"]) == 4
    for point in r["curve"]:
        assert point["score"] == point["valid_history_removed"]
        assert point["score_recbole"] == point["valid"]["ndcg@10"]
    best = max(r["curve"], key=lambda p: p["score"])
    assert r["best_valid"]["score"] == best["score"]
    with pytest.raises(ValueError, match="select"):
        worker.run(dict(spec, select="test"), tmp_path / "bad.json")


def test_content_popularity_ridge_finds_a_linear_signal_and_not_noise():
    """bench/content_popularity.py: held-out predictions of a linear target rank it almost perfectly, of an
    unrelated target near zero; the rank correlation matches its definition on a small case."""
    import numpy as np

    import content_popularity as cp

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 20))
    y = x @ rng.normal(size=20) + 0.1 * rng.normal(size=400)
    assert cp.spearman(cp.ridge_cv(x, y, 10.0), y) > 0.95
    noise = rng.normal(size=400)
    # cross-validated predictions of pure noise lean slightly negative (each fold's training mean excludes it)
    assert abs(cp.spearman(cp.ridge_cv(x, noise, 10.0), noise)) < 0.35
    assert cp.spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])) == pytest.approx(0.5)


def test_cold_start_takes_two_extra_seeds_and_quality_does_not():
    import argparse

    import run

    args = argparse.Namespace(seed_list=[2023, 2024], seeds=1)
    assert run.run_seeds(args, run.SEEDS + run.COLD_EXTRA_SEEDS) == [2023, 2024]
    with pytest.raises(SystemExit, match="2023"):
        run.run_seeds(args)
    assert run.run_seeds(argparse.Namespace(seed_list=None, seeds=2)) == [2020, 2021]


def test_old_default_note_names_only_keys_the_run_wrote():
    """The speed section's note on old defaults: a key a run's config does not name is the current default,
    even where the old default's value is None (``text_tokens``)."""
    assert report._v01_note({}) == ""
    note = report._v01_note({"w_rcl": 0.1, "text_tokens": None, "modalities": ["text"]})
    assert "w_rcl" in note and "text_tokens" in note and "default until" in note
    assert "text_tokens" not in report._v01_note({"w_rcl": 0.1})


def test_split_metrics_end_to_end_on_a_real_cold_split(tmp_path, quick_config):
    """A fit run of the worker on a tiny cold-start split: the cold / warm rows it reports are exactly the test
    rows whose target is a cold item (recounted from the data set built again), they partition the rows, the
    all-row metrics agree with RecBole's evaluator, and the new-item diagnostic counts the items without a
    training interaction."""
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.synthetic import make_synthetic_dataset
    from recbole_pmmrec.utils import create_dataset, data_preparation

    data = make_synthetic_dataset(tmp_path / "cold", "cold", n_users=60, n_items=40, n_topics=4, seed=3)
    cfg = quick_config(data, epochs=2, cold_item_ratio=0.2, seed=7)
    r = worker.run({"label": "SASRec", "model": "SASRec", "dataset": data.name, "config": cfg, "mode": "fit"},
                   tmp_path / "out.json")
    assert r["status"] == "done" and r["n_cold_items"] == 8

    dataset = create_dataset(load_config("SASRec", data.name, config_dict=cfg))
    _, _, test = data_preparation(dataset.config, dataset)
    targets = test._dataset.inter_feat["item_id"]
    n_cold_rows = int(dataset.cold_items[targets].sum())
    assert 0 < n_cold_rows < len(targets), "the split should put some cold and some warm targets in test"

    t = r["test"]
    assert (t["all"]["n"], t["cold"]["n"], t["warm"]["n"]) == (len(targets), n_cold_rows, len(targets) - n_cold_rows)
    for k in ("recall@10", "ndcg@10", "mrr@10"):  # the cold and warm rows partition the rows
        pooled = (t["cold"][k] * t["cold"]["n"] + t["warm"][k] * t["warm"]["n"]) / t["all"]["n"]
        assert pooled == pytest.approx(t["all"][k], abs=1e-9), k
        assert t["all"][k] == pytest.approx(r["test_recbole"][k], abs=1e-4), k  # no ties among random scores
    new = dataset.train_item_counts[1:] == 0
    assert t["diagnosis"]["among_new"]["n_new_items"] == int(new.sum()) >= 8
    assert t["diagnosis"]["among_new"]["n_rows"] == n_cold_rows
    assert 0 <= t["diagnosis"]["among_new"]["median_rank"] < int(new.sum())
    assert "all_history_removed" in t and r["new_item_offset"]["n_new_items"] == int(new.sum())
