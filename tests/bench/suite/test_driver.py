"""bench/suite/driver.py and the user-facing command bench/run.py."""

import argparse
import re
import subprocess
import sys

import pytest

from bench.suite import driver, labels

REPO = driver.REPO


def test_cold_start_takes_two_extra_seeds_and_quality_does_not():
    args = argparse.Namespace(seed_list=[2023, 2024], seeds=1)
    assert driver.run_seeds(args, labels.SEEDS + labels.COLD_EXTRA_SEEDS) == [2023, 2024]
    with pytest.raises(SystemExit, match="2023"):
        driver.run_seeds(args)
    assert driver.run_seeds(argparse.Namespace(seed_list=None, seeds=2)) == [2020, 2021]


def test_the_command_is_bench_run_py_and_it_lists_the_parts():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for part in ("quality", "coldstart", "speed", "scaling", "salvage", "report"):
        assert part in out.stdout


def test_a_part_runs_each_label_in_a_worker_process_records_and_reports_it(synth, tmp_path, monkeypatch):
    """``bench/run.py quality`` on a tiny data set: the run goes to a worker process (with the chosen threads), its
    record lands in results/quality.json with its identity and defaults, the report shows it, and a second
    invocation reuses the finished run instead of training again."""
    import json

    from bench.suite import results

    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    for name, path in (("MARKDOWN", "B.md"), ("PLOTS", "plots"), ("HISTORY", "H.md"), ("README", "README.md")):
        monkeypatch.setattr(driver, name, tmp_path / path)
    argv = ["quality", "--models", "SASRec", "--data-dir", str(synth.root), "--dataset", synth.name,
            "--work-dir", str(tmp_path / "work"), "--max-epochs", "2", "--threads", "1"]
    assert driver.main(argv) == 0
    (run,) = json.loads((tmp_path / "results" / "quality.json").read_text())["runs"]
    assert run["status"] == "done" and run["label"] == "SASRec" and run["spec"]["threads"] == 1, run.get("error")
    assert run["defaults"] == results.defaults_digest("SASRec", synth.name) and len(run["curve"]) == 2
    # two epochs, all used: marked † where early stopping was not yet due (report.capped)
    assert re.search(rf"\| SASRec on {synth.name}( †)? \| 1 \|", (tmp_path / "B.md").read_text())
    assert driver.main(argv) == 0
    (again,) = json.loads((tmp_path / "results" / "quality.json").read_text())["runs"]
    assert again["process_s"] == run["process_s"]  # the same record: nothing was trained again


def test_the_default_timeout_leaves_room_past_the_fit_budget():
    """A run must reach its graceful stop at --max-fit-s before --timeout kills it (a killed run needs salvage)."""
    assert driver.parse_args(["quality"]).timeout == 3600
    assert driver.parse_args(["quality", "--max-fit-s", "3600"]).timeout == 3600 + 3600
    assert driver.parse_args(["quality", "--max-fit-s", "600"]).timeout == 600 + 1800
    with pytest.raises(SystemExit):
        driver.parse_args(["quality", "--max-fit-s", "3600", "--timeout", "3600"])


def test_a_training_free_model_gets_one_epoch_whatever_max_epochs_says(tmp_path, monkeypatch):
    """ContentKNN has nothing to train: 40 epochs would repeat one validation 40 times, and a time budget would then
    mark as 'stopped by its budget' a run that could not improve (no verdict for the rows that use it)."""
    from bench.suite import results

    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    seen = []
    monkeypatch.setattr(driver, "run_spec", lambda spec, *a, **k: seen.append(spec) or {"status": "error"})
    args = driver.parse_args(["quality", "--max-epochs", "40", "--data-dir", str(tmp_path), "--dataset", "d"])
    driver.part_fits("quality", ["ContentKNN", "SASRec"], [2020], args, tmp_path / "work", {})
    assert {s["label"]: s["config"]["epochs"] for s in seen} == {"ContentKNN": 1, "SASRec": 40}
