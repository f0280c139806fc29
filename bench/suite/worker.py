"""One benchmark run in this process, through the entry point users run: ``run_recbole_pmmrec``.

``bench/suite/driver.py`` starts one process per run (so each run's peak RSS is its own)::

    python -m bench.suite.worker SPEC.json OUT.json

SPEC: ``{"model", "dataset", "config": {...}, "mode": "fit" | "epochs" | "build" | "test", "n_epochs": int,
"threads": int, "select": "history_removed", "max_fit_s": float, "checkpoint": path}``.

* ``fit``: ``run_recbole_pmmrec`` trains with early stopping on ``valid_metric`` and tests the best checkpoint;
  its ``epoch_callback`` records each epoch (the package's seconds, loss and validation) and adds, from one more
  scoring pass, validation split by cold / warm target and NDCG@10 with the input history removed. After the
  call the test rows are scored again on the returned trainer and split by ``dataset.cold_items[target]``.
  ``select: history_removed``: early stopping and the tested weights follow validation NDCG@10 with the input
  history removed instead of RecBole's score (the callback keeps the best weights and stops the run).
  ``max_fit_s``: the run stops at the first epoch boundary past that many seconds of training + validation
  and its best checkpoint is tested (as in ``test``).
* ``epochs``: ``n_epochs`` training epochs, validated only after the last (``eval_step``): epoch time.
* ``build``: data and model construction only, with the package's public factories (cache build time).
* ``test``: the checkpoint a killed fit run left behind, scored on the test rows.

OUT is rewritten after every epoch, so a run killed by a timeout still leaves its curve.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if __package__ in (None, ""):  # run as a file: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.suite.ranks import new_item_offset, split_metrics, valid_extras  # noqa: E402
from bench.suite.results import write_json  # noqa: E402

SELECT_RULES = ("recbole", "history_removed")


class StopRun(Exception):
    """Raised by the epoch callback at an epoch boundary: the wall-time budget is spent, or (``select``) the
    selection rule's patience ran out."""


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def fit_budget(spec: dict) -> float | None:
    """Seconds of training + validation a run may spend: ``spec["max_fit_s"]``, else the number in the file
    ``<checkpoint_dir>/../max_fit_s`` (lets an operator cap the runs of a suite that is already running)."""
    if spec.get("max_fit_s"):
        return float(spec["max_fit_s"])
    control = Path(spec["config"].get("checkpoint_dir", "saved")).parent / "max_fit_s"
    try:
        return float(control.read_text().strip())
    except (OSError, ValueError):
        return None


def package_config(spec: dict) -> dict:
    """The config_dict handed to the package: the spec's keys, plus ``threads`` (one setting for torch's
    threads, read by the package) when the driver chose it."""
    cfg = dict(spec.get("config") or {})
    if spec.get("threads"):
        cfg["threads"] = int(spec["threads"])
    return cfg


# config keys whose value a run records as the package resolved it (``spec["resolved"]``)
RESOLVED_KEYS = ("train_batch_size", "content_skip", "exclude_history")


def _get(config, key: str):
    """``config[key]``, or None where the config has no such key."""
    try:
        return config[key]
    except KeyError:
        return None


class Recorder:
    def __init__(self, out_path: Path, record: dict):
        self.out_path, self.record, self.started = Path(out_path), record, time.perf_counter()

    def save(self):
        self.record["peak_rss_bytes"] = peak_rss_bytes()
        write_json(self.out_path, self.record)


class EpochLog:
    """The ``epoch_callback``: one curve point per epoch, the extra validation measures, the wall-time budget and
    (``select: history_removed``) the selection by validation NDCG@10 with the input history removed.

    The package calls it after an epoch's validation and before the trainer saves that epoch's checkpoint, so
    the weights of an epoch that the run must keep and the trainer will not save (a better epoch at which the
    run stops, or every better epoch under ``select``) are saved here, to ``state_file``."""

    def __init__(self, rec: Recorder, select: str, budget: float | None, patience: int, state_file: Path):
        self.rec, self.select, self.budget, self.patience, self.state_file = rec, select, budget, patience, state_file
        self.start = None  # perf_counter when training started (the package's wall_s of the first epoch back)
        self.extra = 0.0  # seconds spent here, not counted in the curve's wall_s
        self.best, self.since_best, self.trainer, self.kept = None, 0, None, False

    def __call__(self, record: dict, trainer, valid_data) -> None:
        now = time.perf_counter()
        if self.start is None:
            self.start = now - record["wall_s"]
            self.rec.record["setup_s"] = self.start - self.rec.started  # data, encoder-state cache, model
            self.rec.record["checkpoint"] = getattr(trainer, "saved_model_file", None)
            # what the package decided from the data where the config left it to the data (train_batch_size ~);
            # the report compares a run's overrides with it (bench/suite/labels.py: overrides_of)
            given = self.rec.record["spec"].get("config") or {}  # an explicit value is an override, not resolved
            config = {k: _get(trainer.config, k) for k in RESOLVED_KEYS}  # a baseline has no content_skip
            self.rec.record["spec"] = dict(self.rec.record["spec"], resolved={
                k: v for k, v in config.items() if given.get(k) is None and v is not None})
        self.trainer = trainer
        point = {"epoch": record["epoch"], "train_s": record["train_s"], "loss": record["loss"]}
        improved = False
        if record.get("valid") is not None:
            # training + validation since fit started, without the extra measurements below
            point.update(valid_s=record["valid_s"], wall_s=now - self.start - self.extra,
                         valid={k: float(v) for k, v in record["valid"].items()}, score=float(record["score"]))
            point.update(valid_extras(trainer, valid_data))
            if self.select == "history_removed":
                if "valid_history_removed" not in point:
                    raise ValueError(f"select 'history_removed' needs a sequential model, not {type(trainer.model).__name__}")
                point["score_recbole"], point["score"] = point["score"], point["valid_history_removed"]
            # a tie keeps the earlier epoch (RecBole's own early stopping resets on a tie)
            improved = self.best is None or point["score"] > self.best
            self.best, self.since_best = (point["score"], 0) if improved else (self.best, self.since_best + 1)
            if improved and self.select == "history_removed":
                self.keep(trainer)
            point["extra_s"] = time.perf_counter() - now
            self.extra += point["extra_s"]
        self.rec.record["curve"].append(point)
        self.rec.save()
        if self.budget is not None and time.perf_counter() - self.start > self.budget:
            if self.since_best > self.patience:
                # early stopping stops the run on this same validation (in "recbole" mode the trainer's own, which
                # counts the same validations): it converged, and its record says so
                raise StopRun("patience")
            if improved and not self.kept:
                self.keep(trainer)  # this epoch is the best, and its checkpoint would be written after this call
            raise StopRun("budget")
        if self.select == "history_removed" and self.since_best > self.patience:
            raise StopRun("patience")

    def keep(self, trainer) -> None:
        import torch

        torch.save(trainer.model.state_dict(), self.state_file)
        self.kept = True


def built(spec: dict):
    """(config, dataset, (train, valid, test), model) from the package's public factories, seeded as
    ``run_recbole_pmmrec`` seeds them."""
    from recbole.utils import init_seed

    from recbole_pmmrec.logger import init_logger
    from recbole_pmmrec.quick_start import load_config, resolve_from_checkpoint
    from recbole_pmmrec.utils import create_dataset, data_preparation, get_model

    config = load_config(spec["model"], spec["dataset"], config_dict=package_config(spec))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    splits = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    resolve_from_checkpoint(config)  # as the run did: a pre-trained projection's kind (the weights come from the run)
    model = get_model(config["model"])(config, splits[0]._dataset).to(config["device"])
    return config, dataset, splits, model


def describe(r: dict, dataset, train_data, model) -> None:
    r["n_params_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    r["n_train_rows"] = len(train_data.dataset) if hasattr(train_data, "dataset") else None
    r["n_items"], r["n_users"], r["n_inter"] = int(dataset.item_num), int(dataset.user_num), int(dataset.inter_num)
    r["n_cold_items"] = int(dataset.cold_items.sum()) if hasattr(dataset, "cold_items") else 0


def run(spec: dict, out_path: Path) -> dict:
    mode = spec.get("mode", "fit")
    select = spec.get("select") or "recbole"
    if select not in SELECT_RULES:
        raise ValueError(f"spec select={select!r}: use one of {SELECT_RULES}")
    rec = Recorder(out_path, {"spec": spec, "status": "started", "curve": []})
    r = rec.record
    if mode == "build":
        run_build(spec, rec)
    elif mode == "test":
        run_test(spec, rec, checkpoint=spec["checkpoint"])
    elif mode == "epochs":
        run_epochs(spec, rec)
    elif mode == "fit":
        run_fit(spec, rec, select)
    else:
        raise ValueError(f"spec mode={mode!r}: use fit, epochs, build or test")
    r["status"] = "done"
    r["total_s"] = time.perf_counter() - rec.started
    rec.save()
    return r


def run_build(spec: dict, rec: Recorder) -> None:
    """Data and model construction only: ``data_s`` includes the encoder-state cache (read or build)."""
    t0 = time.perf_counter()
    config, dataset, (train_data, _, _), model = built(spec)
    rec.record["data_s"] = time.perf_counter() - t0  # the model's construction is a small part of it
    describe(rec.record, dataset, train_data, model)


def run_epochs(spec: dict, rec: Recorder) -> None:
    """``n_epochs`` training epochs; the validation after the last and the test evaluation are not in ``epoch_s``."""
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    n = int(spec.get("n_epochs", 1))
    # one validation, after the last epoch (RecBole caps eval_step at epochs; with 0, "never", the entry point has no
    # best_valid_result to return); the epoch times do not include it
    cfg = dict(package_config(spec), epochs=n, eval_step=n)
    out = run_recbole_pmmrec(spec["model"], spec["dataset"], config_dict=cfg, saved=False,
                             epoch_callback=EpochLog(rec, "recbole", None, 0, Path(os.devnull)))
    rec.record["epoch_s"] = [p["train_s"] for p in rec.record["curve"]]
    describe(rec.record, out["dataset"], out["train_data"], out["trainer"].model)


def run_fit(spec: dict, rec: Recorder, select: str) -> None:
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    r = rec.record
    cfg = package_config(spec)
    patience = int(cfg.get("stopping_step", 10))
    if select == "history_removed":
        cfg["stopping_step"] = 10**6  # the callback stops the run by its own rule, with the run's patience
    budget = fit_budget(spec)
    r["max_fit_s"] = budget
    log = EpochLog(rec, select, budget, patience, rec.out_path.with_suffix(".best.pt"))
    r["status"] = "training"
    try:
        out = run_recbole_pmmrec(spec["model"], spec["dataset"], config_dict=cfg, saved=True, epoch_callback=log)
        r["stopped_by_budget"] = False
    except StopRun as stop:
        out = None
        r["stopped_by_budget"] = str(stop) == "budget"
    r["fit_s"] = r["curve"][-1].get("wall_s", 0.0) if r["curve"] else 0.0
    checkpoint = getattr(log.trainer, "saved_model_file", None)
    if log.kept:  # the weights the callback kept: the selected ones, or the best epoch, where the budget ran out
        run_test(spec, rec, state_file=log.state_file, out=out)
        log.state_file.unlink(missing_ok=True)
    elif out is None:  # stopped by the budget: test the best checkpoint the trainer saved
        run_test(spec, rec, checkpoint=checkpoint)
    else:
        t0 = time.perf_counter()
        r["test_recbole"] = {k: float(v) for k, v in out["test_result"].items()}
        trainer, dataset = out["trainer"], out["dataset"]
        describe(r, dataset, out["train_data"], trainer.model)
        r["test"] = split_metrics(trainer, out["test_data"], dataset)
        r["test_split_s"] = time.perf_counter() - t0
        offset_diagnostic(r, trainer, out["valid_data"], out["test_data"], dataset)
    remove_checkpoints(checkpoint)  # only a process killed by the driver's timeout leaves one (for salvage)
    scored = [p for p in r["curve"] if "score" in p]
    if scored:
        best = max(scored, key=lambda p: p["score"])
        r["best_valid"] = {"epoch": best["epoch"], "score": best["score"], "wall_s": best["wall_s"]}


def run_test(spec: dict, rec: Recorder, checkpoint=None, state_file=None, out=None) -> None:
    """Score the test rows with a checkpoint (``trainer.evaluate(model_file=...)``) or with weights the epoch
    callback kept (``state_file``), on the returned run (``out``) or on data and model built again."""
    import torch

    from recbole_pmmrec.utils import get_trainer

    r = rec.record
    if out is not None:
        trainer, dataset, valid_data, test_data = out["trainer"], out["dataset"], out["valid_data"], out["test_data"]
        describe(r, dataset, out["train_data"], trainer.model)
    else:
        config, dataset, (train_data, valid_data, test_data), model = built(spec)
        describe(r, dataset, train_data, model)
        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    t0 = time.perf_counter()
    if state_file is not None:
        trainer.model.load_state_dict(torch.load(state_file))
        trainer.model.train()  # as after a training epoch: a model that caches item vectors computes them again
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    else:
        result = trainer.evaluate(test_data, load_best_model=True, model_file=checkpoint, show_progress=False)
    r["test_eval_s"] = time.perf_counter() - t0
    r["test_recbole"] = {k: float(v) for k, v in dict(result).items()}
    r["test"] = split_metrics(trainer, test_data, dataset)
    offset_diagnostic(r, trainer, valid_data, test_data, dataset)


def offset_diagnostic(r: dict, trainer, valid_data, test_data, dataset) -> None:
    """``new_item_offset`` for sequential models on data sets with cold items."""
    if "cold" in r["test"] and hasattr(trainer.model, "ITEM_SEQ") and hasattr(dataset, "train_item_counts"):
        t0 = time.perf_counter()
        r["new_item_offset"] = new_item_offset(trainer, valid_data, test_data, dataset)
        r["new_item_offset"]["seconds"] = time.perf_counter() - t0


def remove_checkpoints(saved: str | None) -> None:
    """Delete a run's best and latest checkpoint files: they are not results; keep the work dir small."""
    from recbole_pmmrec.trainer import latest_file_of

    for path in (saved, latest_file_of(saved)) if saved else ():
        if os.path.exists(path):
            os.remove(path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1])
    try:
        run(spec, out)
    except BaseException as exc:  # record the failure for the driver, then fail
        import traceback

        record = json.loads(out.read_text()) if out.exists() else {"spec": spec}
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-3000:],
                      peak_rss_bytes=peak_rss_bytes())
        write_json(out, record)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
