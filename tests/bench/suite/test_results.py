"""bench/suite/results.py: run identity, reuse by defaults, and results files shared by several writers."""

import json
from pathlib import Path

from bench.suite import results


def _add_many(results_dir, start, n):
    results.RESULTS = Path(results_dir)
    for i in range(start, start + n):
        results.add_run("quality", {"key": f"k{i}", "label": "x", "status": "done"})


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

    monkeypatch.setattr(results, "RESULTS", Path(tmp_path))

    def many(start):
        for i in range(start, start + 25):
            results.add_run("quality", {"key": f"k{i}", "label": "x", "status": "done"})

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
    monkeypatch.setattr(results, "RESULTS", Path(tmp_path))
    now = results.defaults_digest("PMMRec", "ml100k-posters")
    assert now == results.defaults_digest("PMMRec", "ml100k-posters")
    assert now != results.defaults_digest("SASRec", "ml100k-posters") != results.defaults_digest("SASRec", "microlens-50k")
    results.add_run("quality", {"key": "a", "reuse_key": "r", "status": "done", "defaults": "older"})
    assert results.find_done("r", now) is None
    results.add_run("quality", {"key": "b", "reuse_key": "r", "status": "done", "defaults": now})
    assert results.find_done("r", now)["key"] == "b"

    props = tmp_path / "properties" / "model"
    props.mkdir(parents=True)
    yaml_text = (results.REPO / "properties" / "model" / "PMMRec.yaml").read_text()
    (props / "PMMRec.yaml").write_text(yaml_text + "\n# a comment does not change the defaults\n")
    (tmp_path / "properties" / "overall.yaml").write_text((results.REPO / "properties" / "overall.yaml").read_text())
    (tmp_path / "properties" / "dataset").mkdir()
    (tmp_path / "properties" / "dataset" / "ml100k-posters.yaml").write_text(
        (results.REPO / "properties" / "dataset" / "ml100k-posters.yaml").read_text())
    monkeypatch.setattr(results, "REPO", tmp_path)
    assert results.defaults_digest("PMMRec", "ml100k-posters") == now
    (props / "PMMRec.yaml").write_text(yaml_text + "\nhidden_size: 1234\n")  # a default changes
    assert results.defaults_digest("PMMRec", "ml100k-posters") != now


def test_a_run_key_is_claimed_by_one_process_at_a_time(tmp_path):
    """Two bench/run.py lanes asked for the same run: the second skips it instead of running it twice."""
    with results.claimed(tmp_path, "abc") as first:
        with results.claimed(tmp_path, "abc") as second, results.claimed(tmp_path, "other") as third:
            assert first and not second and third
    with results.claimed(tmp_path, "abc") as again:
        assert again  # released when the first holder is done


def test_a_new_run_does_not_replace_an_amended_older_run_with_the_same_key(tmp_path, monkeypatch):
    """A stored run whose spec was amended after it ran (stamped with the default it ran with) keeps its old key;
    a new run of today's default gets that same key. The new run is added, the old one stays under its spec's key;
    the same run done again (same spec) still replaces its record."""
    monkeypatch.setattr(results, "RESULTS", Path(tmp_path))
    today = {"label": "PMMRec content skip", "model": "PMMRec", "dataset": "seqrec-toys",
             "config": {"seed": 2020, "content_skip": 5.0}}
    old_spec = dict(today, config=dict(today["config"], train_batch_size=64))
    key = results.run_key(today)
    results.add_run("quality", {"key": key, "spec": old_spec, "status": "done", "test": 0.0501})
    results.add_run("quality", {"key": key, "spec": today, "status": "done", "test": 0.0550})
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert sorted(r["test"] for r in runs) == [0.0501, 0.0550]
    assert {r["key"] for r in runs} == {key, results.run_key(old_spec)}
    assert [r.get("ran_as") for r in runs if r["test"] == 0.0501] == [key]  # the name of its files
    results.add_run("quality", {"key": key, "spec": today, "status": "done", "test": 0.0560})
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert sorted(r["test"] for r in runs) == [0.0501, 0.0560]
    # the same run again with a larger time budget (--max-fit-s, not part of a run's identity) replaces it too:
    # one record per run, so the report does not count the seed twice
    results.add_run("quality", {"key": key, "spec": dict(today, max_fit_s=7200.0), "status": "done", "test": 0.0570})
    runs = json.loads((tmp_path / "quality.json").read_text())["runs"]
    assert sorted(r["test"] for r in runs) == [0.0501, 0.0570]


def test_stamp_default_writes_the_old_default_into_the_runs_that_did_not_set_it_and_rekeys_them(tmp_path, monkeypatch):
    """After a default changes, ``stamp_default`` writes the value the stored runs of that model ran with into
    the specs that did not set the key (a run that set it, or another model, is left alone), gives each its spec's
    key and keeps the old key as ``ran_as``; stamping again changes nothing."""
    monkeypatch.setattr(results, "RESULTS", Path(tmp_path))
    specs = [{"label": "PMMRec", "model": "PMMRec", "dataset": "d", "config": {"seed": 1}},
             {"label": "PMMRec skip", "model": "PMMRec", "dataset": "d", "config": {"seed": 1, "content_skip": 5.0}},
             {"label": "SASRec", "model": "SASRec", "dataset": "d", "config": {"seed": 1}}]
    for spec in specs:
        results.add_run("quality", {"key": results.run_key(spec), "spec": spec, "status": "done"})
    assert results.stamp_default("quality", "PMMRec", "content_skip", 0.0) == 1
    runs = {r["spec"]["label"]: r for r in json.loads((tmp_path / "quality.json").read_text())["runs"]}
    stamped = runs["PMMRec"]
    assert stamped["spec"]["config"] == {"seed": 1, "content_skip": 0.0}
    assert stamped["key"] == results.run_key(stamped["spec"]) != stamped["ran_as"] == results.run_key(specs[0])
    assert runs["PMMRec skip"]["spec"] == specs[1] and runs["SASRec"]["spec"] == specs[2]
    assert "ran_as" not in runs["PMMRec skip"] and "ran_as" not in runs["SASRec"]
    assert results.stamp_default("quality", "PMMRec", "content_skip", 0.0) == 0
