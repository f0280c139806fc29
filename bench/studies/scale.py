"""Scale: seconds per epoch, full evaluation time and peak RSS of PMMRec against SASRec, side by side in one run.

```
python bench/studies/scale.py --dataset ml1m-posters --data-dir /tmp/pmmrec_data --epochs 2 --work-dir /tmp/scale \\
    --out bench/results/scale_ml1m-posters.json [--models PMMRec SASRec] [--max-fit-s S] [--cache-dir DIR]
```

Both models start AT THE SAME TIME, each in its own process with one torch thread (``threads: 1``, and
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``), so the two runs share the machine without oversubscribing it. Each
process is ``bench/suite/worker.py``'s fit mode (the users' entry point ``run_recbole_pmmrec`` with its per-epoch
recording): ``--epochs`` training epochs, each followed by a full validation over all items (``eval_step: 1``;
``stopping_step`` larger than the epochs, so no early stop), then the best checkpoint's test evaluation. The run
config keys are the suite's (``bench/suite/driver.py``): data_path, checkpoint_dir, log_dir, tensorboard_dir under
WORK, ``cache_dir`` ``--cache-dir`` (default /tmp/pmmrec_bench/cache: the suite's MiniLM / EfficientNet state
caches are reused; a missing cache is built in the setup time).

Per model the result holds each epoch's training seconds and their mean after the first epoch (the first may pay
for warm-up; with one epoch, that epoch), the validation (full evaluation) seconds, setup seconds (data, encoder
state cache, model), peak RSS (``peak_rss_bytes``: the worker's own ``ru_maxrss`` at its last record, as the
suite measures it; ``peak_rss_bytes_process``: what ``wait4`` reports for the whole process, which also counts the
interpreter's exit and comes out ~0.13 GiB higher on tiny data), validation NDCG@10 per epoch, the config, and the
share of its epoch seconds during which the other process was alive; then ratios first model / second model
(PMMRec / SASRec) for epoch time, evaluation time and peak RSS, the 4 GB target on PMMRec's larger peak RSS,
machine info (cpus, load average at start and end), the command line, the date and the git commit. Each process's
output goes to WORK/logs/MODEL.log.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.studies.transfer import _say, extra_config  # noqa: E402
from bench.suite import children as child_procs  # noqa: E402
from bench.suite.results import machine, write_json  # noqa: E402

RSS_TARGET_BYTES = 4 * 1024**3  # the target: PMMRec peak RSS <= 4 GB (GiB, as the suite's report counts)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ml1m-posters")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"), help="converted data sets (DATA/NAME)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/scale"), help="specs, logs, checkpoints")
    p.add_argument("--out", type=Path, default=None, help="default bench/results/scale_DATASET.json")
    p.add_argument("--models", nargs="+", default=["PMMRec", "SASRec"], help="ratios are first / second")
    p.add_argument("--max-fit-s", type=float, default=None,
                   help="a run stops at the first epoch boundary past this many seconds of training + validation")
    p.add_argument("--cache-dir", type=Path, default=Path("/tmp/pmmrec_bench/cache"), help="encoder state caches")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before a run's process is killed")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides of every run (values read as JSON where they parse)")
    return p.parse_args(argv)


def run_config(args) -> dict:
    """The suite's run keys (``bench/suite/driver.py``'s ``base_config``) for this study."""
    w = args.work_dir
    return {"data_path": str(args.data_dir), "checkpoint_dir": str(w / "saved"), "log_dir": str(w / "log"),
            "tensorboard_dir": str(w / "tb"), "cache_dir": str(args.cache_dir), "show_progress": False,
            "epochs": args.epochs, "stopping_step": args.epochs + 10, "eval_step": 1, "state": "warning",
            **extra_config(args)}


def spec_of(args, model: str) -> dict:
    return {"label": model, "model": model, "dataset": args.dataset, "config": run_config(args), "mode": "fit",
            "threads": args.threads, "max_fit_s": args.max_fit_s}


# ------------------------------------------------------------------------------------------------ the runs


class Child:
    """One worker process (``bench/suite/worker.py``'s ``main``: fit mode) and what the parent sees of it."""

    def __init__(self, args, model: str):
        self.model, self.spec = model, spec_of(args, model)
        folder = args.work_dir / "specs"
        folder.mkdir(parents=True, exist_ok=True)
        self.spec_file, self.out_file = folder / f"{model}.json", folder / f"{model}.out.json"
        self.log = args.work_dir / "logs" / f"{model}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.spec_file.write_text(json.dumps(self.spec, indent=1))
        self.out_file.unlink(missing_ok=True)
        self.proc = self.rusage = None
        self.timed_out = False
        self.started = self.ended = None
        self.epoch_seen = []  # unix time when each epoch's curve point was first seen in OUT

    def start(self, threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=str(REPO),
                   HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        code = "import sys; from bench.suite import worker; sys.exit(worker.main(sys.argv[1:]))"
        with open(self.log, "w") as fh:
            self.proc = child_procs.start([sys.executable, "-c", code, str(self.spec_file), str(self.out_file)],
                                          cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.started = time.time()

    def poll(self, timeout: float) -> bool:
        """True once the process has ended (reaped with its resource usage); kills it past ``timeout``."""
        if self.ended is not None:
            return True
        self.watch()
        pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            if time.time() - self.started > timeout:
                self.proc.kill()
                self.timed_out = True
            return False
        self.ended, self.rusage = time.time(), rusage
        child_procs.forget(self.proc)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.watch()
        return True

    def watch(self) -> None:
        """Note when new epochs appear in OUT (the worker rewrites it after every epoch)."""
        record = self.record()
        for _ in range(len(record.get("curve") or []) - len(self.epoch_seen)):
            self.epoch_seen.append(time.time())

    def record(self) -> dict:
        try:
            return json.loads(self.out_file.read_text())
        except (OSError, ValueError):
            return {}


def run_side_by_side(args) -> list[Child]:
    children = [Child(args, m) for m in args.models]
    for child in children:
        child.start(args.threads)
        _say(f"{child.model} started (pid {child.proc.pid}), log {child.log}")
    while not all(c.poll(args.timeout) for c in children):
        time.sleep(0.5)
    for child in children:
        _say(f"{child.model}: exit {child.proc.returncode} after {child.ended - child.started:.0f} s")
    return children


# ------------------------------------------------------------------------------------------------ the result


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def overlap_fraction(child: Child, others: list[Child]) -> float | None:
    """Share of ``child``'s epoch seconds (training + validation) during which every other process was alive."""
    curve = child.record().get("curve") or []
    total = shared = 0.0
    for point, seen in zip(curve, child.epoch_seen):
        length = point["train_s"] + (point.get("valid_s") or 0.0) + (point.get("extra_s") or 0.0)
        lo, hi = seen - length, seen
        alive = [(max(lo, o.started), min(hi, o.ended or hi)) for o in others]
        total += length
        shared += min(max(0.0, b - a) for a, b in alive) if alive else length
    return round(shared / total, 3) if total else None


def summarise_child(child: Child, others: list[Child]) -> dict:
    r = child.record()
    curve = r.get("curve") or []
    epoch_s = [p["train_s"] for p in curve]
    eval_s = [p["valid_s"] for p in curve if p.get("valid_s") is not None]
    process_rss = child.rusage.ru_maxrss * 1024 if child.rusage else None
    out = {
        "status": r.get("status", "error") if child.proc.returncode == 0 else f"exit {child.proc.returncode}",
        "epochs": len(curve),
        "epoch_s": [round(v, 3) for v in epoch_s],
        "epoch_s_mean_after_first": _mean(epoch_s[1:] or epoch_s),
        "eval_s": [round(v, 3) for v in eval_s],
        "eval_s_mean": _mean(eval_s),
        "setup_s": None if r.get("setup_s") is None else round(r["setup_s"], 3),
        "peak_rss_bytes": r.get("peak_rss_bytes") or process_rss,
        "peak_rss_bytes_process": process_rss,
        "valid_ndcg@10": [p["valid"]["ndcg@10"] for p in curve if p.get("valid")],
        "test_ndcg@10": (r.get("test_recbole") or {}).get("ndcg@10"),
        "stopped_by_budget": r.get("stopped_by_budget"),
        "process_s": round(child.ended - child.started, 1),
        "epochs_side_by_side": overlap_fraction(child, others),
        "counts": {k: r.get(k) for k in ("n_users", "n_items", "n_inter", "n_params_trainable")},
        "config": child.spec["config"], "threads": child.spec["threads"], "max_fit_s": child.spec["max_fit_s"],
        "log": str(child.log),
    }
    if child.timed_out:
        out["status"] = "timeout"
    if r.get("error"):
        out["error"] = r["error"]
    return out


def ratios(models: dict, first: str, second: str) -> dict:
    def ratio(key):
        a, b = models[first].get(key), models[second].get(key)
        return round(a / b, 3) if a and b else None

    return {"of": f"{first}/{second}", "epoch_s": ratio("epoch_s_mean_after_first"), "eval_s": ratio("eval_s_mean"),
            "peak_rss": ratio("peak_rss_bytes")}


def summarise(args, children: list[Child], meta: dict, command: str) -> dict:
    models = {c.model: summarise_child(c, [o for o in children if o is not c]) for c in children}
    out = {"study": "scale", "dataset": args.dataset, "epochs": args.epochs, "threads_per_run": args.threads,
           "side_by_side": True, "models": models,
           "protocol": "every model in its own process, all started at the same time, one torch thread each; "
                       "bench/suite/worker.py fit mode (run_recbole_pmmrec): --epochs epochs, a full validation "
                       "over all items after each; epoch_s = training seconds; eval_s = validation seconds; "
                       "epoch_s_mean_after_first = mean of epochs 2.. (epoch 1 when only one ran); "
                       "peak_rss_bytes = the worker's ru_maxrss, peak_rss_bytes_process = wait4's"}
    if len(args.models) >= 2:
        out["ratios"] = ratios(models, args.models[0], args.models[1])
    pmmrec = models.get("PMMRec", {})
    rss = max((v for v in (pmmrec.get("peak_rss_bytes"), pmmrec.get("peak_rss_bytes_process")) if v), default=None)
    out["pmmrec_peak_rss_target"] = {"bytes": RSS_TARGET_BYTES, "judged_on": rss,
                                     "met": None if rss is None else rss <= RSS_TARGET_BYTES}
    out["machine"] = dict(meta, loadavg_at_end=os.getloadavg() if hasattr(os, "getloadavg") else None)
    out["command"], out["date"], out["commit"] = command, meta.get("date"), meta.get("commit")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    child_procs.stop_children_on_sigterm()
    if not (args.data_dir / args.dataset / f"{args.dataset}.inter").is_file():
        print(f"scale.py: error: no converted data set {args.data_dir / args.dataset} (expected DATA/NAME/NAME.inter)",
              file=sys.stderr)
        return 2
    out_path = args.out or REPO / "bench" / "results" / f"scale_{args.dataset}.json"
    args.work_dir.mkdir(parents=True, exist_ok=True)
    meta = machine()
    children = run_side_by_side(args)
    summary = summarise(args, children, meta, shlex.join(["python", "bench/studies/scale.py", *argv]))
    write_json(out_path, summary)
    for name, m in summary["models"].items():
        _say(f"{name}: {m['status']}, s/epoch {m['epoch_s']}, eval s {m['eval_s']}, "
             f"peak RSS {(m['peak_rss_bytes'] or 0) / 1024**3:.2f} GiB")
    if "ratios" in summary:
        _say(f"ratios {summary['ratios']}; written {out_path}")
    return 0 if all(m["status"] == "done" for m in summary["models"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
