"""bench/suite/report.py: made-up results in, BENCHMARKS.md sections, the history document and plots out."""

import json

import pytest

from bench.suite import report


def fit_run(label, tag, scores, epoch_s, valid_s, rss_gb, seed=2020, test=None, cold=None, keys=None):
    """A stored fit run; ``keys``: the config overrides its spec holds (as bench/suite/driver.py writes them)."""
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
            "data_s": 1.0, "model_s": 0.5,
            "spec": {"model": label.split(" ")[0], "config": {"stopping_step": 3, "seed": seed, **(keys or {})}}}


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
               + [fit_run("SASRec", None, [0.1], 1, 1, 1, test=0.2),
                  # a setting of today's registry outside the table, and a label the registry no longer has
                  # (an old default's run: its label and keys are only in its record)
                  fit_run("PMMRec mlp", None, [0.1], 1, 1, 1, test=0.3, keys={"projection": "mlp"}),
                  fit_run("PMMRec v0.2 dropout 0.5", None, [0.1], 1, 1, 1, test=0.4,
                          keys={"hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "exclude_history": False})]}
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
                     fit_run("SASRec", None, [0.1], 1, 1, 1, cold=(0.0, 0.3)),
                     fit_run("PMMRec text skip", None, [0.1], 1, 1, 1, cold=(0.2, 0.3), keys={"text_skip": True})]}
    scaling = {"runs": [{"label": f"s{i}", "status": "done", "n_inter": n, "n_items": n // 10, "n_train_rows": n // 20,
                         "epoch_s": [0.001 * n], "peak_rss_bytes": 10**8, "n_inter_target": n,
                         "n_items_target": n // 10} for i, n in enumerate((10**4, 10**5, 10**6))]}
    for name, data in (("speed", speed), ("quality", quality), ("coldstart", cold), ("scaling", scaling)):
        (res / f"{name}.json").write_text(json.dumps(data))
    return res


def test_report_sections_ratios_and_plots(results, tmp_path):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("## Notes by hand\n\nkeep me 0.1234\n")
    history = tmp_path / "history.md"
    text = report.write_report(results, tmp_path / "plots", md, history=history)
    old = history.read_text()

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
    # a setting of today outside the suite's list goes to the second table with its keys, even when it scores best;
    # a label the registry no longer has goes to the history document only, its keys read from its spec
    others = text.index("Other settings of today's package")
    assert text.index("| SASRec | 1 |") < others < text.index("| PMMRec mlp | 1 |")
    assert "`projection: mlp` |" in text[others:]
    assert "dropout" not in text and "text skip" not in text
    row = next(line for line in old.splitlines() if line.startswith("| PMMRec v0.2 dropout 0.5 | 1 |"))
    assert "0.2000 |" in row and row.endswith(
        "| `attn_dropout_prob: 0.5`, `exclude_history: False`, `hidden_dropout_prob: 0.5` |")
    assert "| PMMRec text skip | 1 | 10 | 0.3000 | 0.2000 | 0.67 |" in old and "`text_skip: True` |" in old
    # cold start ratio 0.1 / 0.3; its diagnostics are in the history document
    assert "0.1000 / 0.3000 = 0.33" in text
    assert "| PMMRec | 1 | 530 / 152 | 66 / 123 | -0.571 / -0.738 (60 cold) | -0.227 / 0.073 (11 cold) | 7 of 50, 0.60 (6/10; random 0.2) |" in old
    assert "| PMMRec | 1 | -0.4 | 0.0500 / 0.0600 | 1 / 3 of 10 | 0.300 / 0.250 | 0.0500 / 0.1200 |" in old
    assert "530 / 152" not in text
    # scaling: epoch time exactly linear -> slope 1
    assert "**1.00**" in text
    # text outside our sections survives; the transfer section says how to fill it when its study has not run
    assert "keep me 0.1234" in text and "## Transfer\n\nNot measured yet: `python bench/studies/transfer.py" in text
    for png in ("quality_valid_curves.png", "speed_valid_vs_time.png", "speed_ratios.png", "scaling.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000 and f"plots/{png}" in text
    # the first screen: the targets table comes before every other table
    assert text.index("## Targets at a glance") < text.index("## Quality") < text.index("## How these numbers are made")
    # idempotent: a second run rewrites our sections in place
    assert report.write_report(results, tmp_path / "plots", md, history=history) == text
    assert history.read_text() == old


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


def test_readme_results_table_between_the_markers(tmp_path):
    from bench.suite.report import README_END, README_START, readme_results, write_readme_results

    def row(dataset, values):
        return {"dataset": dataset, "history_removed": values, "n": len(values)}

    rows = {"PMMRec": row("ml100k-posters", [0.10, 0.12]), "SASRec hr-selected": row("ml100k-posters", [0.08, 0.12]),
            "PMMRec on seqrec-toys": row("seqrec-toys", [0.05]), "ContentKNN on seqrec-toys": row("seqrec-toys", [0.03]),
            "SASRec hr-selected on seqrec-toys": row("seqrec-toys", [0.04])}
    cold = {"PMMRec text-only on microlens-50k": {"dataset": "microlens-50k", "test": {"ndcg@10": [0.02]}},
            "SASRec on microlens-50k": {"dataset": "microlens-50k", "test": {"ndcg@10": [0.04]}, "budget": True}}
    table = readme_results(rows, cold).splitlines()
    assert table[2] == ("| ml100k-posters | leave-one-out, history removed | 0.1100 ± 0.0141 (2) | 0.1000 ± 0.0283 (2) "
                        "| – | – | 1.10x |")
    assert table[3] == "| seqrec-toys | leave-one-out, history removed | 0.0500 (1) | 0.0400 (1) | – | 0.0300 (1) | 1.25x |"
    assert table[4].startswith("| microlens-50k (text-only) | cold split") and table[4].endswith(
        "| 0.0200 (1) | – | 0.0400 (1) † | – | 0.50x |")
    # a leave-one-out row without a SASRec run does not hide the cold-split comparison; one with SASRec does
    rows["PMMRec on microlens-50k"] = row("microlens-50k", [0.03])
    table = readme_results(rows, cold).splitlines()
    assert table[3].startswith("| microlens-50k | leave-one-out") and table[3].endswith("| 0.0300 (1) | – | – | – | – |")
    assert table[5].startswith("| microlens-50k (text-only) | cold split")
    rows["SASRec hr-selected on microlens-50k"] = row("microlens-50k", [0.03])
    assert not any("cold split" in line for line in readme_results(rows, cold).splitlines())
    # a recommended setting that ran on a data set gets its own row under the default's, against the same baselines
    rows["PMMRec with item ID on seqrec-toys"] = row("seqrec-toys", [0.06])
    table = readme_results(rows, cold).splitlines()
    assert table[4] == "| seqrec-toys | leave-one-out, history removed | 0.0500 (1) | 0.0400 (1) | – | 0.0300 (1) | 1.25x |"
    assert table[5] == ("| seqrec-toys (with item ID) | leave-one-out, history removed | 0.0600 (1) | 0.0400 (1) | – "
                        "| 0.0300 (1) | 1.50x |")
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nrest\n")
    write_readme_results(readme, rows)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{README_END}\nrest\n") and "old" not in text


def test_recommend_section_reads_the_speed_results(tmp_path):
    import json

    from bench.suite.report import section_recommend

    assert "Not measured yet" in section_recommend(tmp_path)
    run = {"dataset": "speed", "items": 20000, "modalities": ["text", "image"], "users_per_s": 5000.0,
           "one_user_ms": {"p50": 1.0, "p99": 40.0}, "add_1000_text_items_s": 2.5, "ratio_vs_recbole": 1.3,
           "recbole_users_per_s": 3800.0, "same_top10_as_recbole": "4000/4000"}
    (tmp_path / "recommend_speed_synthetic.json").write_text(json.dumps(run))
    text = section_recommend(tmp_path)
    assert "| batch top-10, users/s | >= 2,000 | 5,000.0 met |" in text
    assert "| one user, p99 ms | <= 30 | 40.0 **missed** |" in text
    assert "1.3x **missed**" in text and "4000/4000" in text


def test_transfer_section_judges_each_target_on_its_pretrained_runs(tmp_path):
    import json

    from bench.suite.report import section_transfer

    assert "Not measured yet" in section_transfer(tmp_path)

    def cell(values, **extra):
        n = len(values)
        mean = sum(values) / n
        return {"ndcg@10": {"mean": mean, "std": 0.001, "n": n, "values": values},
                "recall@10": {"mean": 2 * mean, "std": 0.002, "n": n, "values": values}, "epochs": [5] * n, **extra}

    diff = {"mean": 0.01, "std": 0.0, "n": 3, "values": [0.01] * 3}
    summary = {
        "protocol": "leave-one-out", "created": "2026-12-03 12:00:00",
        "corpora": {"corp": {"sources": ["a", "b"], "max_source_users": 100, "source_users": {"b": 7}, "merge_s": 3.0,
                             "counts": {"users": 200, "items": 50, "interactions": 900},
                             "pretrain": {"epochs": 4, "fit_s": 600.0, "wall_s": 720.0, "stopped_by_budget": True,
                                          "loss": [9.5, 8.25], "test": {"ndcg@10": 0.05}}}},
        "targets": {"tgt": {"corpora": ["corp", "corp2"],
                            "zero_shot": {"corp": {"ndcg@10": 0.030}, "ContentKNN-text": {"ndcg@10": 0.020},
                                          "random-text": {"ndcg@10": 0.005}, "corp2": {"ndcg@10": 0.030},
                                          "ContentKNN-text+image": {"ndcg@10": 0.040}},
                            "zero_shot_anchors": {  # each corpus against ContentKNN on the modalities it was scored on
                                "corp": {"modalities": ["text"], "model": 0.030, "contentknn": 0.020, "random": 0.005},
                                "corp2": {"modalities": ["text", "image"], "model": 0.030, "contentknn": 0.040}},
                            "results": {
                                "scratch/all": {"0.05": cell([0.04] * 3, s_to_scratch_best_valid=[10.0] * 3),
                                                "1": cell([0.05], s_to_own_best_valid=[100.0],
                                                          s_to_scratch_best_valid=[100.0])},
                                "corp/all": {"0.05": cell([0.05] * 3, ratio_vs_scratch=1.25, wins_vs_scratch=3,
                                                          diff_vs_scratch=diff, s_to_scratch_best_valid=[4.0] * 3),
                                             "1": cell([0.05], ratio_vs_scratch=1.0, wins_vs_scratch=0,
                                                       diff_vs_scratch=dict(diff, n=1),
                                                       s_to_scratch_best_valid=[60.0])}}}}}
    (tmp_path / "transfer_corpus.json").write_text(json.dumps(summary))
    text = section_transfer(tmp_path)
    assert "| tgt, corp | zero-shot NDCG@10 >= 1.2x ContentKNN (same modalities) | 1.50x (0.0300 vs 0.0200) | met |" in text
    assert "| tgt, corp2 | zero-shot NDCG@10 >= 1.2x ContentKNN (same modalities) | 0.75x (0.0300 vs 0.0400) " \
           "| **missed** |" in text
    assert "(100 random users of each, 7 of b)" in text
    summary["corpora"]["corp2"] = {"sources": ["a"], "header_corpus": {"sources": [{"name": "a"}]}}
    (tmp_path / "transfer_corpus.json").write_text(json.dumps(summary))
    assert "`corp2`: a. Pre-trained outside the study's `pretrain` step" in section_transfer(tmp_path)
    assert "| tgt, corp/all | 5% of users: >= 1.15x scratch, ahead on every seed | 1.250x, ahead on 3/3 | met |" in text
    # 100% with one paired seed: the value, no verdict (a verdict needs 3 paired seeds)
    assert "| 1.000x; time 0.60x (1 paired seed: no verdict) | — |" in text
    # with 3: equal to scratch passes the first half, but 60 s of scratch's 100 s is 0.60x > 0.5x
    three = json.loads(json.dumps(summary))
    three["targets"]["tgt"]["results"]["corp/all"]["1"]["diff_vs_scratch"]["n"] = 3
    (tmp_path / "transfer_corpus.json").write_text(json.dumps(three))
    assert "| 1.000x; time 0.60x | **missed** |" in section_transfer(tmp_path)
    # the same 3 pairs with one scratch run stopped by its time budget: the value, no verdict
    three["targets"]["tgt"]["results"]["scratch/all"]["1"]["stopped_by_budget"] = [True]
    (tmp_path / "transfer_corpus.json").write_text(json.dumps(three))
    assert "| 1.000x; time 0.60x (1 run stopped by the time budget: no verdict) | — |" in section_transfer(tmp_path)
    (tmp_path / "transfer_corpus.json").write_text(json.dumps(summary))
    assert "200 users, 50 items, 900 interactions" in text and "stopped by its time budget" in text
    assert "loss 9.500 -> 8.250" in text and "### tgt" in text and "| corp/all | 5% | 0.0500 ± 0.0010 |" in text
    # a variant (the same study with other keys, its own work dir) follows the main one, with its own verdicts
    variant = dict(summary, variant="whiten zca", config_overrides={"whiten": "zca", "cache_dir": "/x"},
                   file="transfer_corpus_zca.json")
    variant["targets"]["tgt"]["zero_shot_anchors"]["corp"]["model"] = 0.010
    (tmp_path / "transfer_corpus_zca.json").write_text(json.dumps(variant))
    text = section_transfer(tmp_path)
    main, _, rest = text.partition("### Variant: whiten zca")
    assert "1.50x (0.0300 vs 0.0200) | met |" in main and "`whiten: zca`" in rest and "cache_dir" not in rest
    assert "| tgt, corp | zero-shot NDCG@10 >= 1.2x ContentKNN (same modalities) | 0.50x (0.0100 vs 0.0200) " \
           "| **missed** |" in rest and "#### tgt" in rest and "transfer_corpus_zca.json" in rest
    assert "Variants, each in its own section below" in main and "whiten zca (" in main
    # the grid sets finetune from each setting (INIT/FINETUNE): a --set finetune reaches only pre-training
    variant["config_overrides"]["finetune"] = "user_encoder"
    (tmp_path / "transfer_corpus_zca.json").write_text(json.dumps(variant))
    assert "`finetune: user_encoder` (pre-training; each fine-tuning run keeps its setting's own)" in \
        section_transfer(tmp_path)
    # a variant with zero-shot runs only says so instead of an empty table
    zero_only = dict(variant, variant="zero-shot only", file="transfer_corpus_zero.json")
    zero_only["targets"] = {"tgt": dict(variant["targets"]["tgt"], results={})}
    (tmp_path / "transfer_corpus_zero.json").write_text(json.dumps(zero_only))
    rest = section_transfer(tmp_path).partition("### Variant: zero-shot only")[2].partition("### Variant:")[0]
    assert "Zero-shot (no training step)" in rest and "No fine-tuning runs." in rest and "| setting |" not in rest


def test_cold_hits_are_set_against_content_knn_on_the_same_rows():
    """Issue 22's cold-start goal: PMMRec's cold-target Recall@10 over ContentKNN's, only where both ran the same
    seeds (the same cold items and rows); a seed set that differs gives no row."""
    pm = fit_run("PMMRec", "q", [0.05], 10, 1, 1.0, cold=(0.06, 0.2))
    knn = fit_run("ContentKNN", "q", [0.05], 10, 1, 1.0, cold=(0.04, 0.1))
    for run in (pm, knn):
        run["spec"]["dataset"] = "seqrec-toys"
    rows = report.quality_table_rows([pm, knn])
    targets = report.section_targets({}, {}, rows, {})
    assert "| PMMRec on seqrec-toys: Recall@10 on cold targets / ContentKNN's on the same rows (1 seed) | >= 1.5 | " \
           "0.0600 / 0.0400 = 1.50 (budget-capped or < 3 seeds: no verdict) | — |" in targets
    knn["seed"] = knn["spec"]["config"]["seed"] = 2021
    rows = report.quality_table_rows([pm, knn])
    assert "ContentKNN's on the same rows" not in report.section_targets({}, {}, rows, {})
    # ContentKNN with more seeds than PMMRec: compared on PMMRec's seeds only (the same rows)
    knn2020 = fit_run("ContentKNN", "q", [0.05], 10, 1, 1.0, cold=(0.03, 0.1))
    knn2020["spec"]["dataset"] = "seqrec-toys"
    rows = report.quality_table_rows([pm, knn, knn2020])
    assert "(1 seed) | >= 1.5 | 0.0600 / 0.0300 = 2.00 (budget-capped or < 3 seeds: no verdict)" in \
        report.section_targets({}, {}, rows, {})


def test_other_data_sets_get_quality_and_time_targets_against_sasrec_hr_selected():
    """Issue 22's targets on each data set besides the main one: test NDCG@10 with the history removed against
    SASRec hr-selected, and per seed PMMRec's wall time to SASRec's best validation (history removed). A verdict
    only with 3 seeds of each and no budget stop; a seed where PMMRec never gets there says so."""
    runs = []
    for seed, (pm_valid, pm_test) in zip((2020, 2021, 2022), (([0.04, 0.06], 0.06), ([0.05, 0.07], 0.05),
                                                                ([0.03, 0.05], 0.07))):
        sas = fit_run("SASRec hr-selected", "q", [0.03, 0.05, 0.06], 20, 0, 1.0, seed=seed)
        pmm = fit_run("PMMRec", "q", pm_valid, 10, 0, 1.0, seed=seed)
        for run, test in ((sas, 0.05), (pmm, pm_test)):
            run["spec"]["dataset"] = "seqrec-toys"
            run["test"]["all_history_removed"] = {"ndcg@10": test}
            for p in run["curve"]:
                p["valid_history_removed"] = p["score"]
        runs += [sas, pmm]
    rows = report.quality_table_rows(runs)
    targets = report.section_targets({}, {}, {}, {}, runs)
    assert "| seqrec-toys: test NDCG@10, PMMRec vs SASRec hr-selected, both with the input history removed (mean " \
           "of 3 / 3 seeds) | >= 1.0x | 0.0600 vs 0.0500 (1.20x) | met |" not in targets  # rows come from q
    targets = report.section_targets({}, rows, {}, {}, runs)
    assert "| seqrec-toys: test NDCG@10, PMMRec vs SASRec hr-selected, both with the input history removed (mean " \
           "of 3 / 3 seeds) | >= 1.0x | 0.0600 vs 0.0500 (1.20x) | met |" in targets
    # SASRec's best 0.06 at 60 s; PMMRec gets there at 20 s (seed 2021), never on 2020 and 2022
    assert "seed 2020: not reached (0.0600 against 0.0600)" not in targets
    assert "seed 2021: 0 / 1 min = 0.33" in targets and "seed 2022: not reached (0.0500 against 0.0600)" in targets
    assert targets.count("**missed**") == 0 and "| <= 1.0 |" in targets  # a seed not reached: no verdict
    runs[0]["stopped_by_budget"] = True
    rows = report.quality_table_rows(runs)
    assert "(1.20x) (budget-capped or < 3 seeds: no verdict) | — |" in report.section_targets({}, rows, {}, {}, runs)


def test_a_budget_stop_that_coincides_with_early_stopping_counts_as_converged():
    """A run whose time budget ran out on the validation where early stopping would have stopped it too (more than
    ``stopping_step`` validations after its best, as RecBole counts) is converged; one stopped before that is
    budget-capped (†, no verdict)."""
    early = fit_run("PMMRec", "q", [0.04, 0.06, 0.05, 0.05, 0.05, 0.05], 10, 0, 1.0)  # best at 1, 4 after it
    short = fit_run("PMMRec", "q", [0.04, 0.06, 0.05, 0.05, 0.05], 10, 0, 1.0)  # 3 after: one more was due
    for run in (early, short):
        run["stopped_by_budget"] = True
    assert not report.capped(early) and report.capped(short)
    assert not report.quality_table_rows([early])["PMMRec"]["budget"]
    assert report.quality_table_rows([short])["PMMRec"]["budget"]
    del early["spec"]["config"]["stopping_step"]  # no patience recorded: no way to tell, so capped
    assert report.capped(early)


def test_a_recommended_setting_is_judged_on_its_mean_and_on_every_seed():
    """A data set's recommended setting other than the default (``report.RECOMMENDED``: the item-ID row) gets its own
    target against SASRec hr-selected: the goal ratio on the mean and ahead on each seed both ran. A mean above the
    goal with one seed behind is missed; fewer than 3 seeds gives no verdict."""
    def runs_with(ids_tests):
        runs = []
        for seed, ids_test in zip((2020, 2021, 2022), ids_tests):
            for label, test in (("SASRec hr-selected", 0.05), ("PMMRec", 0.05), ("PMMRec with item ID", ids_test)):
                run = fit_run(label, "q", [0.03, 0.05], 10, 0, 1.0, seed=seed)
                run["spec"]["dataset"] = "seqrec-toys"
                run["test"]["all_history_removed"] = {"ndcg@10": test}
                for p in run["curve"]:
                    p["valid_history_removed"] = p["score"]
                runs.append(run)
        return runs

    title = ("| seqrec-toys: test NDCG@10, PMMRec with item ID (recommended where every item to rank has training "
             "interactions) vs SASRec hr-selected, both with the input history removed (mean of 3 / 3 seeds) "
             "| >= 1.05x, ahead on each seed | ")
    runs = runs_with([0.055, 0.056, 0.054])
    targets = report.section_targets({}, report.quality_table_rows(runs), {}, {}, runs)
    assert title + "0.0550 vs 0.0500 (1.10x; ahead on 3 of 3 paired seeds) | met |" in targets
    # and its own time row: its wall time to SASRec's best validation, per seed (the same curve here: 1.00x)
    time_row = [line for line in targets.splitlines() if "PMMRec with item ID / SASRec, wall time per seed" in line]
    assert len(time_row) == 1 and "seed 2020:" in time_row[0] and "= 1.00" in time_row[0], time_row
    runs = runs_with([0.070, 0.056, 0.049])  # 1.17x on the mean, behind on seed 2022
    targets = report.section_targets({}, report.quality_table_rows(runs), {}, {}, runs)
    assert title + "0.0583 vs 0.0500 (1.17x; ahead on 2 of 3 paired seeds) | **missed** |" in targets
    runs = [r for r in runs_with([0.055, 0.056, 0.054]) if not (r["label"] == "PMMRec with item ID" and r["seed"] == 2022)]
    targets = report.section_targets({}, report.quality_table_rows(runs), {}, {}, runs)
    assert "(1.11x; ahead on 2 of 2 paired seeds) (budget-capped or < 3 seeds: no verdict) | — |" in targets


def test_a_seed_run_again_under_another_key_counts_once_the_later_run():
    """The same label, data set and seed finished twice (e.g. once with 40 epochs, again with another cap): the
    report counts the later run only, and the earlier one goes with the older runs, in a row of its own."""
    from bench.suite.report import split_current

    def run(seed, value, key):
        return {"label": "ContentKNN", "seed": seed, "status": "done", "key": key, "test": value,
                "spec": {"model": "ContentKNN", "dataset": "seqrec-toys", "config": {"seed": seed}}}

    old, other, new = run(2020, 0.1, "a"), run(2021, 0.2, "b"), run(2020, 0.3, "c")
    current, older = split_current([old, other, new])
    assert [r["key"] for r in current] == ["b", "c"] and [r["key"] for r in older] == ["a"]
    assert older[0]["label"] == "ContentKNN (superseded)" and old["label"] == "ContentKNN"


def test_readme_results_compare_data_whose_users_repeat_items_as_recbole_ranks():
    """Where the data's users repeat items (a run recorded exclude_history resolved to False), the README row uses
    every model's all-items NDCG@10 (history ranked), says so, and is against SASRec."""
    from bench.suite.report import readme_results

    def row(dataset, removed, ranked, repeats=False):
        return {"dataset": dataset, "history_removed": removed, "test": {"ndcg@10": ranked}, "n": len(ranked),
                "repeats": repeats}

    rows = {"PMMRec on seqrec-beauty-repeats": row("seqrec-beauty-repeats", [0.05], [0.06], repeats=True),
            "SASRec on seqrec-beauty-repeats": row("seqrec-beauty-repeats", [0.02], [0.04]),
            "PMMRec on seqrec-toys": row("seqrec-toys", [0.05], [0.05]),
            "SASRec hr-selected on seqrec-toys": row("seqrec-toys", [0.04], [0.03])}
    table = readme_results(rows).splitlines()
    assert table[2] == ("| seqrec-beauty-repeats | leave-one-out, RecBole's rule (users repeat items) ‡ | 0.0600 (1) | – "
                        "| 0.0400 (1) | – | 1.50x |")
    assert table[3] == "| seqrec-toys | leave-one-out, history removed | 0.0500 (1) | 0.0400 (1) | – | – | 1.25x |"
    assert "‡ where users repeat items" in table[-1]
    assert "‡" not in readme_results({k: v for k, v in rows.items() if "toys" in k})


def test_a_run_that_used_up_its_epochs_while_still_improving_is_capped():
    """The epoch budget counts like the time budget: a run that ran all ``epochs`` with its best within
    ``stopping_step`` validations of the end was still improving (†); one whose early stopping was due is
    converged, and a one-epoch (training-free) run is never capped."""
    rising = fit_run("SASRec", "q", [0.01, 0.02, 0.03, 0.04, 0.05], 10, 0, 1.0)
    flat = fit_run("SASRec", "q", [0.01, 0.05, 0.04, 0.04, 0.04, 0.04], 10, 0, 1.0)
    knn = fit_run("ContentKNN", "q", [0.03], 1, 0, 1.0)
    for run, epochs in ((rising, 5), (flat, 6), (knn, 1)):
        run["spec"]["config"]["epochs"] = epochs
    assert report.capped(rising) and not report.capped(flat) and not report.capped(knn)
    rising["spec"]["config"]["epochs"] = 40  # stopped by patience long before its epoch budget
    assert not report.capped(rising)
