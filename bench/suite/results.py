"""The suite's results: the identity of a run, and the JSON files under ``bench/results/`` (one per part).

Several ``bench/run.py`` processes (or ``--jobs`` lanes, threads of one) may write the same part: every
read-modify-write holds an exclusive file lock. A record is never dropped here; ``add_run`` replaces only the
record with the same key. A record whose key was recomputed after it ran (its spec amended) keeps the key it ran
under as ``ran_as``: the name of its files (``runs/<key>.log``) in the work directory.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
PATH_KEYS = frozenset({"data_path", "checkpoint_dir", "log_dir", "tensorboard_dir", "cache_dir", "text_encoder"})
# Keys added after runs were stored, whose default keeps the behaviour those runs had: at this value a key is left
# out of ``defaults_digest``, so adding it does not make every stored run of the model stale.
# (score_tau left this list when its default became ~: at ~ it makes other models on text with the item ID)
# (skip_calibration acts only with pretrained, which no quality or cold-start run sets)
NEUTRAL_DEFAULTS = {"PMMRec": {"item_id_neighbours": 0, "item_id_dropout": 0.0, "item_id_learning_rate": None,
                               "item_id_shrink": 0.0, "eval_test": True, "knn_whiten": "raw",
                               "skip_calibration": None},
                    "ContentKNN": {"knn_whiten": "raw"}}


# ---------------------------------------------------------------------------- identity of a run
def run_key(spec: dict, with_tag: bool = True) -> str:
    """Identity of a run: model, dataset, mode, tag and every config key that is not a path (``with_tag=False``:
    the identity of its training, for reusing a finished run of another part)."""
    ident = {"model": spec["model"], "dataset": spec["dataset"], "mode": spec.get("mode", "fit"),
             "tag": spec.get("tag") if with_tag else None,  # same config, another purpose (cache build fresh / warm)
             "n_epochs": spec.get("n_epochs"),
             "config": {k: v for k, v in sorted(spec["config"].items()) if k not in PATH_KEYS}}
    if spec.get("select"):  # checkpoint selection rule (bench/suite/worker.py); absent = RecBole's, as in older keys
        ident["select"] = spec["select"]
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def defaults_digest(model: str, dataset: str) -> str:
    """Digest of the defaults a run of ``model`` on ``dataset`` starts from: this project's overall, model and data
    set ``.yaml`` properties (parsed, so comments do not count) and the RecBole version, whose own model defaults a
    baseline takes. ``run_key`` holds only a run's overrides, so a finished run is reused only while its digest
    matches: after a default changes, the same overrides make another model. A new key at its
    ``NEUTRAL_DEFAULTS`` value (the behaviour before it existed) does not count."""
    import yaml  # a dependency of recbole

    props = REPO / "properties"
    files = [props / "overall.yaml", props / "model" / f"{model}.yaml", props / "dataset" / f"{dataset}.yaml"]
    parsed = {f.relative_to(REPO).as_posix(): yaml.safe_load(f.read_text()) for f in files if f.is_file()}
    model_props = parsed.get(f"properties/model/{model}.yaml")
    for key, value in NEUTRAL_DEFAULTS.get(model, {}).items():
        if isinstance(model_props, dict) and key in model_props and model_props[key] == value:
            del model_props[key]
    parsed["recbole"] = importlib.metadata.version("recbole")
    return hashlib.sha256(json.dumps(parsed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = None
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
            "cpus": os.cpu_count(), "loadavg_at_start": load, "python": platform.python_version(),
            "commit": commit}


# ---------------------------------------------------------------------------- the files
def load_results(part: str, results_dir: Path | None = None) -> dict:
    path = Path(results_dir or RESULTS) / f"{part}.json"
    return json.loads(path.read_text()) if path.exists() else {"part": part, "runs": []}


def save_results(part: str, data: dict) -> None:
    write_json(RESULTS / f"{part}.json", data)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def slim(record: dict) -> dict:
    """Drop bulky fields before storing a record in bench/results."""
    return {k: v for k, v in record.items() if k not in ("traceback",)}


def find_done(key: str, defaults: str, parts=("speed", "quality", "coldstart")) -> dict | None:
    """A finished run with this reuse key that started from the same defaults (``defaults_digest``), or None."""
    stale = None
    for part in parts:
        for rec in load_results(part)["runs"]:
            if rec.get("reuse_key", rec.get("key")) == key and rec.get("status") == "done":
                if rec.get("defaults") == defaults:
                    return rec
                stale = rec
    if stale is not None:
        print(f"[bench] run {key} ({stale.get('label')}) finished with other defaults (properties/*.yaml or the "
              f"RecBole version changed since): not reused", flush=True)
    return None


def add_run(part: str, record: dict) -> None:
    """Add (or replace) one run in ``bench/results/<part>.json``. A stored run with the same key is replaced only
    if it is the same run: the same spec, or a spec of the same identity (``run_key``; e.g. the run done again with
    a larger ``--max-fit-s`` after its budget stopped it). A run whose spec was amended after it ran (e.g. stamped
    with a default it ran with, such as ``train_batch_size: 64``) kept its old key, and is kept here under its
    spec's key instead."""
    with locked(part):
        data = load_results(part)
        kept = []
        for r in data["runs"]:
            if r.get("key") == record.get("key"):
                if ("spec" not in r or r.get("spec") == record.get("spec")
                        or ("spec" in record and run_key(r["spec"]) == run_key(record["spec"]))):
                    continue  # the same run, done again (another budget) or salvaged
                r = rekeyed(r)
            kept.append(r)
        data["runs"] = kept + [slim(record)]
        save_results(part, data)


def rekeyed(record: dict) -> dict:
    """``record`` under its spec's key (and reuse key), the key it ran under kept as ``ran_as``."""
    return dict(record, key=run_key(record["spec"]), reuse_key=run_key(record["spec"], with_tag=False),
                ran_as=record.get("ran_as", record.get("key")))


def stamp_default(part: str, model: str, key: str, value) -> int:
    """After a default changed: write the value a stored run of ``model`` ran with (``key: value``, the old
    default) into the spec of every such run that did not set ``key``, so that the report no longer takes it for a
    run of today's default. Each amended record gets its spec's key (the old one kept as ``ran_as``, the name of
    its files). Returns how many records were amended."""
    with locked(part):
        data = load_results(part)
        n = 0
        for r in data["runs"]:
            spec = r.get("spec")
            if not spec or spec.get("model") != model or key in (spec.get("config") or {}):
                continue
            r.update(rekeyed(dict(r, spec=dict(spec, config=dict(spec.get("config") or {}, **{key: value})))))
            n += 1
        save_results(part, data)
    return n


def note_invocation(part: str, **info) -> None:
    """Record this invocation (date, threads, ...) under the part's ``meta["lanes"]``; the report reads it."""
    with locked(part):
        data = load_results(part)
        data.setdefault("meta", machine())
        data["meta"].setdefault("lanes", []).append({"date": machine()["date"], **info})
        save_results(part, data)


@contextlib.contextmanager
def locked(part: str):
    """An exclusive lock on a part's file; each call opens the lock file anew, so it also excludes the other
    threads of this process."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f".{part}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextlib.contextmanager
def claimed(work: Path, key: str):
    """Yields True while this process holds run ``key`` (a non-blocking lock on ``runs/<key>.lock``), False when
    another process (a second ``bench/run.py`` lane) is running it already."""
    runs = Path(work) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    with open(runs / f"{key}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
