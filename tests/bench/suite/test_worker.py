"""bench/suite/worker.py against the real entry point (``run_recbole_pmmrec`` and its ``epoch_callback``) on tiny
synthetic data: what each mode records, and that the recorded test metrics belong to the weights it reports."""

import json
import os
import subprocess
import sys

import pytest

from bench.suite import worker
from bench.suite.results import REPO


def _spec(data, cfg, model="SASRec", **more):
    return {"label": model, "model": model, "dataset": data.name, "config": cfg, "mode": "fit", "threads": 1, **more}


def _same_weights_tested(r):
    """The worker's own ranks and RecBole's evaluator scored the same weights (random scores have no ties)."""
    for k in ("recall@10", "ndcg@10", "mrr@10"):
        assert r["test"]["all"][k] == pytest.approx(r["test_recbole"][k], abs=1e-4), k


def test_fit_records_every_epoch_from_the_callback(synth, quick_config, tmp_path):
    cfg = quick_config(synth, epochs=3, stopping_step=10, seed=1)
    r = worker.run(_spec(synth, cfg), tmp_path / "out.json")
    assert r["status"] == "done" and [p["epoch"] for p in r["curve"]] == [0, 1, 2]
    walls = [p["wall_s"] for p in r["curve"]]
    assert walls == sorted(walls) and all(p["train_s"] > 0 and p["valid_s"] > 0 for p in r["curve"])
    for point in r["curve"]:  # RecBole's score, and the same validation with the input history removed
        assert point["score"] == point["valid"]["ndcg@10"] and 0 <= point["valid_history_removed"] <= 1
    assert r["best_valid"]["score"] == max(p["score"] for p in r["curve"])
    assert r["setup_s"] > 0 and r["n_items"] == 61 and not r["stopped_by_budget"]
    _same_weights_tested(r)
    assert not os.path.exists(r["checkpoint"])  # checkpoints are not results
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "done"


def test_worker_selects_by_history_removed_validation_when_asked(synth, quick_config, tmp_path):
    """spec select 'history_removed': early stopping and the tested weights follow validation NDCG@10 with the
    input history removed; the curve keeps RecBole's own score beside it."""
    cfg = quick_config(synth, epochs=6, stopping_step=1, seed=1)
    r = worker.run(_spec(synth, cfg, label="SASRec hr-selected", select="history_removed"), tmp_path / "out.json")
    assert r["status"] == "done" and 2 <= len(r["curve"]) <= 6
    for point in r["curve"]:
        assert point["score"] == point["valid_history_removed"]
        assert point["score_recbole"] == point["valid"]["ndcg@10"]
    scores = [p["score"] for p in r["curve"]]
    best = scores.index(max(scores))
    assert r["best_valid"]["epoch"] == best
    if len(scores) < 6:  # stopped by the rule's own patience: two validations without a better one
        assert len(scores) == best + 3
    _same_weights_tested(r)
    assert not (tmp_path / "out.best.pt").exists()
    with pytest.raises(ValueError, match="select"):
        worker.run(dict(_spec(synth, cfg), select="test"), tmp_path / "bad.json")


def test_a_spent_budget_stops_at_the_epoch_boundary_and_tests_that_epoch(synth, quick_config, tmp_path):
    """``max_fit_s``: the run stops after the first epoch past the budget; that epoch is the best so far, and its
    weights (which the trainer would save only after the callback) are the ones tested."""
    cfg = quick_config(synth, epochs=5, seed=1)
    r = worker.run(_spec(synth, cfg, max_fit_s=1e-6), tmp_path / "out.json")
    assert r["status"] == "done" and r["stopped_by_budget"] and len(r["curve"]) == 1
    assert r["max_fit_s"] == 1e-6 and r["best_valid"]["epoch"] == 0
    _same_weights_tested(r)


def test_a_budget_stopped_fine_tuning_is_tested_on_the_checkpoints_layers(synth, pmmrec_config, tmp_path):
    """A fine-tuning run from a checkpoint whose projection the target would not choose itself (a text-only
    checkpoint: mlp; text + image decides linear) is rebuilt with the checkpoint's projection when the budget stops
    it and its best weights are tested (it was rebuilt linear and failed on the mlp weights)."""
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    folder = tmp_path / "pre"
    run_recbole_pmmrec("PMMRec", synth.name, config_dict=pmmrec_config(synth, modalities=["text"], epochs=1,
                                                                       save_pretrained=str(folder)))
    cfg = pmmrec_config(synth, epochs=3, seed=1, pretrained=str(folder), w_nicl=0.0, w_nid=0.0)
    r = worker.run(_spec(synth, cfg, model="PMMRec", max_fit_s=1e-6), tmp_path / "out.json")
    assert r["status"] == "done" and r["stopped_by_budget"] and len(r["curve"]) == 1
    _same_weights_tested(r)


def test_epochs_mode_trains_n_epochs_and_validates_after_the_last_only(synth, quick_config, tmp_path):
    cfg = quick_config(synth, epochs=40, seed=1)
    r = worker.run(_spec(synth, cfg, mode="epochs", n_epochs=3), tmp_path / "out.json")
    assert r["status"] == "done" and len(r["epoch_s"]) == 3 and all(s > 0 for s in r["epoch_s"])
    assert ["score" in p for p in r["curve"]] == [False, False, True]


def test_build_mode_as_the_driver_starts_it(synth, quick_config, tmp_path):
    """``python -m bench.suite.worker SPEC OUT`` in a fresh process, as bench/suite/driver.py runs it."""
    spec = _spec(synth, quick_config(synth), mode="build")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "bench.suite.worker", str(tmp_path / "spec.json"),
                           str(tmp_path / "out.json")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    r = json.loads((tmp_path / "out.json").read_text())
    assert proc.returncode == 0 and r["status"] == "done", r.get("error", proc.stderr[-2000:])
    assert r["data_s"] > 0 and r["n_items"] == 61 and r["n_params_trainable"] > 0 and r["peak_rss_bytes"] > 0


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
    r = worker.run(_spec(data, cfg), tmp_path / "out.json")
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


@pytest.mark.parametrize("select", ["recbole", "history_removed"])
def test_a_budget_that_runs_out_where_patience_does_stops_the_run_by_patience(select, tmp_path, monkeypatch):
    """When the budget runs out on the very validation at which early stopping stops the run (more than
    ``stopping_step`` validations after the best), the record says "patience": the run converged. One validation
    earlier it is a budget stop."""
    monkeypatch.setattr(worker, "valid_extras", lambda trainer, valid_data: {"valid_history_removed": 0.0})
    trainer = type("Trainer", (), {"config": {"train_batch_size": 8, "content_skip": None}})()

    def stop_reason(scores):
        rec = worker.Recorder(tmp_path / "out.json", {"spec": {}, "curve": []})
        log = worker.EpochLog(rec, select, budget=0.0, patience=2, state_file=tmp_path / "best.pt")
        log.keep = lambda trainer: None  # no weights here
        before = scores[:-1]  # the validations this log has already seen
        log.best, log.since_best = max(before), len(before) - 1 - before.index(max(before))
        if select == "history_removed":
            monkeypatch.setattr(worker, "valid_extras", lambda t, v: {"valid_history_removed": scores[-1]})
        with pytest.raises(worker.StopRun) as stop:
            log({"epoch": len(scores) - 1, "train_s": 1.0, "loss": 1.0, "valid_s": 0.1, "valid": {},
                 "score": scores[-1], "wall_s": 1.0}, trainer, None)
        return str(stop.value)

    assert stop_reason([0.3, 0.2, 0.2]) == "budget"  # 2 validations after the best: patience 2 is not yet spent
    assert stop_reason([0.3, 0.2, 0.2, 0.1]) == "patience"  # 3 after it: early stopping stops here too
    assert stop_reason([0.1, 0.2, 0.2, 0.3]) == "budget"  # improved on the last one
