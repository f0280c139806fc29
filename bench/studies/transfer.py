"""Transfer study: pre-train PMMRec on a corpus merged from several data sets, transfer to targets it never saw.

```
python bench/studies/transfer.py --steps merge pretrain zeroshot grid report --data-dir D --work-dir W \\
    --targets seqrec-toys ml100k-posters --seeds 2020 2021 2022 [--max-source-users N] [...]
```

Every training or evaluation is one call of the users' entry point ``run_recbole_pmmrec`` in its own process (one
torch thread by default), through ``bench/suite/worker.py``'s recording (per-epoch validation curve, test metrics
with and without the input history). Finished runs are appended to WORK/runs.jsonl and skipped when the study runs
again; each run prints one progress line, its process's output goes to WORK/logs/KEY.log.

Steps:

1. ``merge``: the corpus ``--corpus-name`` = the ``--sources`` (converted data sets under DATA), merged with
   ``python -m dataset_tools.convert merge`` into WORK/data; with ``--with-sources`` (default ml1m-posters) a second
   corpus NAME-with-ml1m-posters that also holds those. ``--max-source-users N`` first keeps N random users of each
   source (WORK/sources/uN/NAME, its own meta.json with counts and file hashes); ``--source-users NAME=N`` sets
   another cap for one source. Targets are linked into WORK/data.
2. ``pretrain``: PMMRec on each corpus (``domain_batches: True``: every batch from one source), ``--pretrain-epochs``
   epochs or fewer when ``--pretrain-budget-s`` seconds of training are spent (the run stops at the epoch boundary);
   the components go to WORK/pretrained/CORPUS (``save_pretrained``; its header lists the corpus: sources' names,
   counts and file hashes).
3. ``zeroshot``: on each target's full training data without a training step (``epochs: 0``): the pre-trained model
   (``pretrained: WORK/pretrained/CORPUS``), the same architecture with random weights, and ContentKNN. These use the
   modalities the checkpoint and the target share (a text-only checkpoint is scored on ml100k-posters' text).
4. ``grid``: fine-tuning at ``--ratios`` (few_shot_ratio) x ``--seeds`` x ``--settings`` = INIT/FINETUNE, INIT one
   of scratch or a corpus (pre-trained weights, ``transfer_components`` ~: every component the checkpoint and the
   model share), FINETUNE one of all, adaptor, user_encoder (``finetune``). The seed sets the initial weights and the
   few-shot users, so runs of one seed see the same users. Fine-tuning trains next-item prediction only (FINETUNE
   weights) with early stopping on validation NDCG@10; the target's own modalities (ml100k-posters: text + image).
   Targets in ``--with-targets`` (default ml100k-posters) run with both corpora, the others with the first only.
5. ``report`` (``--variant TEXT``: what this work dir changes, e.g. ``--set whiten=zca``; BENCHMARKS.md shows each
   ``bench/results/transfer_corpus_*.json`` as a variant after the main study): per target and setting, mean and sample sd over seeds of test NDCG@10 / Recall@10, the paired
   per-seed difference to scratch/all, ratios to scratch/all and to ContentKNN, and the fine-tuning wall time until
   validation NDCG@10 first reached scratch/all's best (same ratio and seed) -> ``--out`` (default
   bench/results/transfer_corpus.json) and one markdown table per target on stdout.

All on CPU; run it with nohup:

    nohup .venv/bin/python bench/studies/transfer.py --steps merge pretrain zeroshot grid report > /tmp/xfer.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.suite import children  # noqa: E402

STEPS = ("merge", "pretrain", "zeroshot", "grid", "report")
SOURCES = ["seqrec-beauty", "seqrec-clothing", "seqrec-health", "seqrec-books", "seqrec-electronics", "seqrec-food",
           "microlens-50k"]
INITS_FINETUNE = ("all", "adaptor", "user_encoder")
FINETUNE = {"w_nicl": 0.0, "w_nid": 0.0, "w_rcl": 0.0}  # fine-tuning: next-item prediction (NIP) only
REFERENCE = "scratch/all"
METRICS = ("ndcg@10", "recall@10")


class StudyError(Exception):
    """A problem with the study's input: printed as one line, exit status 2."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", nargs="+", default=list(STEPS), help=f"any of {' '.join(STEPS)} (run in that order)")
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"), help="converted data sets (DATA/NAME)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/pmmrec_xfer_corpus"),
                   help="corpora, checkpoints, caches, logs, runs.jsonl")
    p.add_argument("--sources", nargs="+", default=SOURCES, help="data sets merged into the pre-training corpus")
    p.add_argument("--with-sources", nargs="*", default=["ml1m-posters"],
                   help="a second corpus: --sources plus these (none: one corpus)")
    p.add_argument("--targets", nargs="+", default=["seqrec-toys", "ml100k-posters"])
    p.add_argument("--with-targets", nargs="*", default=["ml100k-posters"],
                   help="targets also run with the second corpus")
    p.add_argument("--corpus-name", default="xfer-corpus")
    p.add_argument("--max-source-users", type=int, default=None, help="keep this many random users per source")
    p.add_argument("--source-users", nargs="*", default=[], metavar="NAME=N",
                   help="per-source user caps that replace --max-source-users for those sources (e.g. "
                        "ml1m-posters=1000: its users have ~20x the interactions of the text sources)")
    p.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.05, 0.2, 1.0])
    p.add_argument("--settings", nargs="+", default=None,
                   help="INIT/FINETUNE: INIT scratch or pretrained (every corpus of the target) or a corpus name, "
                        f"FINETUNE one of {', '.join(INITS_FINETUNE)}; default: every combination")
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--pretrain-budget-s", type=float, default=None,
                   help="stop pre-training at the first epoch boundary past this many seconds of training")
    p.add_argument("--pretrain-batch-size", type=int, default=256)
    p.add_argument("--no-pretrain-test", action="store_true",
                   help="skip the corpus's own test evaluation after pre-training (eval_test: False; on every user "
                        "of the seven text sources it took 27 min); the report then gives no corpus test score")
    p.add_argument("--no-domain-batches", action="store_true", help="pre-train on batches that mix the sources")
    p.add_argument("--epochs", type=int, default=50, help="fine-tuning epochs (early stopping)")
    p.add_argument("--stopping-step", type=int, default=3)
    p.add_argument("--max-fit-s", type=float, default=None, help="fine-tuning: stop past this many seconds")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each run")
    p.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides of every run (values read as JSON where they parse)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "transfer_corpus.json")
    p.add_argument("--variant", default=None,
                   help="what this work dir changes against the main study (e.g. 'whiten zca'): the report then "
                        "shows it as a variant; write it to --out bench/results/transfer_corpus_NAME.json")
    return p.parse_args(argv)


def check_args(args) -> None:
    """Every input problem found before any work, as one line."""
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown:
        raise StudyError(f"unknown step(s) {unknown}: use any of {' '.join(STEPS)}")
    wanted = set(args.sources) | set(args.with_sources) | set(args.targets)
    missing = sorted(n for n in wanted if not (args.data_dir / n / f"{n}.inter").is_file())
    if missing:
        raise StudyError(f"no converted data set {missing} under {args.data_dir} (expected DATA/NAME/NAME.inter; "
                         f"python -m dataset_tools.convert ... --output {args.data_dir})")
    leaked = sorted(set(args.targets) & (set(args.sources) | set(args.with_sources)))
    if leaked:
        raise StudyError(f"target(s) {leaked} are also pre-training sources: a target must stay unseen")
    strays = sorted(set(source_caps(args)) - set(args.sources) - set(args.with_sources))
    if strays:
        raise StudyError(f"--source-users names {strays}, which are not sources")
    for setting in settings_of(args, None):
        init, _, mode = setting.partition("/")
        if mode not in INITS_FINETUNE or init not in ("scratch", "pretrained", *corpora(args)):
            raise StudyError(f"setting {setting!r}: use INIT/FINETUNE with INIT scratch, pretrained or one of "
                             f"{list(corpora(args))} and FINETUNE one of {list(INITS_FINETUNE)}")


def extra_config(args) -> dict:
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    return extra


def source_caps(args) -> dict[str, int]:
    """{source: its user cap} from ``--source-users NAME=N``."""
    caps = {}
    for item in args.source_users:
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            raise StudyError(f"--source-users {item!r}: use NAME=N with N a positive number of users")
        caps[name] = int(n)
    return caps


def caps_of(args, sources: list[str]) -> dict[str, int]:
    """The ``--source-users`` caps of ``sources`` (a corpus's)."""
    return {s: n for s, n in source_caps(args).items() if s in sources}


def max_users_of(args, source: str) -> int | None:
    return source_caps(args).get(source, args.max_source_users)


def corpora(args) -> dict[str, list[str]]:
    """{corpus name: its sources}."""
    out = {args.corpus_name: list(args.sources)}
    if args.with_sources:
        out[f"{args.corpus_name}-with-{'-'.join(args.with_sources)}"] = list(args.sources) + list(args.with_sources)
    return out


def corpora_of(args, target: str) -> list[str]:
    names = list(corpora(args))
    return names if target in args.with_targets else names[:1]


def settings_of(args, target: str | None) -> list[str]:
    """The grid's settings of a target (``pretrained/MODE`` expanded to each of its corpora)."""
    wanted = args.settings or [f"{init}/{mode}" for init in ("scratch", "pretrained") for mode in INITS_FINETUNE]
    if target is None:
        return wanted
    out = []
    for setting in wanted:
        init, _, mode = setting.partition("/")
        names = corpora_of(args, target) if init == "pretrained" else [init]
        out += [f"{name}/{mode}" for name in names if name == "scratch" or name in corpora_of(args, target)]
    return list(dict.fromkeys(out))


def pretrained_folder(args, corpus: str) -> Path:
    return args.work_dir / "pretrained" / corpus


# ------------------------------------------------------------------------------------------------ runs


class Runs:
    """runs.jsonl: one JSON object per finished run, keyed by ``key``."""

    def __init__(self, path: Path):
        self.path = path
        self.done = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.done[row["key"]] = row

    def add(self, row: dict) -> None:
        import fcntl

        self.done[row["key"]] = row
        with open(self.path, "a") as fh:  # two study processes may share the file
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _safe(key: str) -> str:
    return key.replace("/", "__")


class Study:
    def __init__(self, args):
        self.args = args
        self.runs = Runs(args.work_dir / "runs.jsonl")
        self.data = args.work_dir / "data"
        self.failed = []
        for name, sources in corpora(args).items():  # a corpus name stands for one set of sources in a work dir
            done = self.runs.done.get(f"merge/{name}")
            if done is not None and done["spec"] != self.corpus_spec(sources):
                raise StudyError(f"corpus {name} was merged from other sources ({done['spec']}): use another "
                                 f"--corpus-name or --work-dir")

    def corpus_spec(self, sources: list[str]) -> dict:
        spec = {"sources": sources, "max_source_users": self.args.max_source_users}
        caps = caps_of(self.args, sources)
        return dict(spec, source_users=caps) if caps else spec

    def base_config(self, seed: int) -> dict:
        w = self.args.work_dir
        return {"data_path": str(self.data), "checkpoint_dir": str(w / "saved"), "log_dir": str(w / "log"),
                "tensorboard_dir": str(w / "tb"), "cache_dir": str(w / "cache"), "show_progress": False,
                "use_gpu": False, "state": "INFO", "seed": seed, **extra_config(self.args)}

    def execute(self, plan: list[tuple[str, dict]], step: str) -> None:
        """Run each (key, spec) not in runs.jsonl, each in its own process, one progress line per run."""
        for n, (key, spec) in enumerate(plan, 1):
            where = f"{step} {n}/{len(plan)} {key}"
            done = self.runs.done.get(key)
            if done is not None:
                if done.get("spec", {}).get("config") != spec["config"]:
                    changed = sorted(k for k in set(done["spec"]["config"]) | set(spec["config"])
                                     if done["spec"]["config"].get(k) != spec["config"].get(k))
                    raise StudyError(f"{key} is in runs.jsonl with other settings ({changed}): use another "
                                     f"--work-dir or remove its line")
                _say(f"{where}: done before, skipped")
                continue
            missing = spec["config"].get("pretrained")
            if missing and not (Path(missing) / "pmmrec.json").is_file():
                self.failed.append(key)
                _say(f"{where}: FAILED, no pre-trained checkpoint {missing} (run the pretrain step)")
                continue
            started = time.time()
            record = self.child(key, spec)
            if record.get("status") != "done":
                self.failed.append(key)
                _say(f"{where}: FAILED ({record.get('error', 'no result')}); log {self.log_of(key)}")
                continue
            row = {"key": key, "spec": spec, "wall_s": round(time.time() - started, 1), "result": record}
            self.runs.add(row)
            _say(f"{where}: {summary_line(record)}, {row['wall_s']:.0f} s")

    def log_of(self, key: str) -> Path:
        return self.args.work_dir / "logs" / f"{_safe(key)}.log"

    def child(self, key: str, spec: dict) -> dict:
        """One run in a fresh process: ``run_child`` below, which calls ``run_recbole_pmmrec``."""
        folder = self.args.work_dir / "specs"
        folder.mkdir(parents=True, exist_ok=True)
        spec_file, out_file = folder / f"{_safe(key)}.json", folder / f"{_safe(key)}.out.json"
        spec_file.write_text(json.dumps(spec, indent=1))
        out_file.unlink(missing_ok=True)
        log = self.log_of(key)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads), PYTHONPATH=str(REPO))
        code = "import sys; from bench.studies.transfer import run_child; sys.exit(run_child(sys.argv[1], sys.argv[2]))"
        with open(log, "w") as fh:
            rc = children.run([sys.executable, "-c", code, str(spec_file), str(out_file)], cwd=REPO, env=env,
                              stdout=fh, stderr=subprocess.STDOUT)
        record = json.loads(out_file.read_text()) if out_file.is_file() else {}
        if rc != 0 and record.get("status") == "done":
            record["status"] = f"exit {rc}"
        if rc != 0 and "error" not in record:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            record["error"] = lines[-1][:300] if lines else f"exit {rc}"
        return record

    # ------------------------------------------------------------------------------------------ steps

    def merge(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        for target in self.args.targets:  # the targets next to the corpora: one data_path for every run
            link = self.data / target
            if not link.exists():
                link.symlink_to((self.args.data_dir / target).resolve(), target_is_directory=True)
        plan = list(corpora(self.args).items())
        for n, (name, sources) in enumerate(plan, 1):
            key, where = f"merge/{name}", f"merge {n}/{len(plan)} merge/{name}"
            if key in self.runs.done and (self.data / name / f"{name}.inter").is_file():
                _say(f"{where}: done before, skipped")
                continue
            started = time.time()
            inputs = [str(self.source_folder(s)) for s in sources]
            rc = children.run([sys.executable, "-m", "dataset_tools.convert", "merge", "--inputs", *inputs,
                               "--output", str(self.data), "--name", name, "--force", "--quiet"], cwd=REPO)
            if rc != 0:
                raise StudyError(f"merging {name} failed (exit {rc}): see the converter's message above")
            meta = json.loads((self.data / name / f"{name}.meta.json").read_text())
            row = {"key": key, "spec": self.corpus_spec(sources), "wall_s": round(time.time() - started, 1),
                   "counts": meta["counts"]}
            self.runs.add(row)
            c = meta["counts"]
            _say(f"{where}: {c['users']} users, {c['items']} items, {c['interactions']} interactions, "
                 f"{row['wall_s']:.0f} s")

    def source_folder(self, name: str) -> Path:
        """DATA/NAME, or its subsample of ``--max-source-users`` users (written once)."""
        src = self.args.data_dir / name
        n = max_users_of(self.args, name)
        if not n:
            return src.resolve()
        folder = self.args.work_dir / "sources" / f"u{n}" / name
        if not (folder / f"{name}.meta.json").is_file():
            subsample(src, folder, name, n, seed=0)
        return folder

    def pretrain(self) -> None:
        args, plan = self.args, []
        for name in corpora(args):
            cfg = dict(self.base_config(0), epochs=args.pretrain_epochs, eval_step=0, stopping_step=args.stopping_step,
                       train_batch_size=args.pretrain_batch_size, domain_batches=not args.no_domain_batches,
                       save_pretrained=str(pretrained_folder(args, name)))
            if args.no_pretrain_test:  # only then: the key joins the spec, so older work dirs still match
                cfg["eval_test"] = False
            plan.append((f"pretrain/{name}", {"kind": "pretrain", "model": "PMMRec", "dataset": name, "config": cfg,
                                              "threads": args.threads, "max_fit_s": args.pretrain_budget_s}))
        self.execute(plan, "pretrain")

    def zeroshot(self) -> None:
        args, plan = self.args, []
        for target in args.targets:
            for name in corpora_of(args, target):
                folder = pretrained_folder(args, name)
                modalities = self.shared_modalities(folder, target)
                cfg = dict(self.base_config(args.seeds[0]), epochs=0, eval_step=1, **FINETUNE, modalities=modalities)
                plan.append((f"zeroshot/{target}/{name}", self.fit_spec(target, dict(cfg, pretrained=str(folder)))))
                plan.append((f"zeroshot/{target}/random-{'+'.join(modalities)}", self.fit_spec(target, cfg)))
                knn = {k: v for k, v in cfg.items() if k not in FINETUNE}
                plan.append((f"zeroshot/{target}/ContentKNN-{'+'.join(modalities)}",
                             self.fit_spec(target, knn, model="ContentKNN")))
        self.execute(list(dict(plan).items()), "zeroshot")

    def shared_modalities(self, folder: Path, target: str) -> list[str]:
        """The checkpoint's modalities the target has (its header; a missing checkpoint: text)."""
        try:
            saved = json.loads((folder / "pmmrec.json").read_text())["modalities"]
        except (OSError, ValueError, KeyError):
            saved = ["text"]
        images = self.data / target / f"{target}.images"
        has = ["text"] + (["image"] if images.is_dir() and any(images.iterdir()) else [])
        return [m for m in ("text", "image") if m in saved and m in has] or ["text"]

    def fit_spec(self, target: str, cfg: dict, model: str = "PMMRec") -> dict:
        return {"kind": "fit", "label": model, "model": model, "dataset": target, "config": cfg, "mode": "fit",
                "threads": self.args.threads, "max_fit_s": self.args.max_fit_s}

    def grid(self) -> None:
        args, plan = self.args, []
        for target in args.targets:
            for ratio in args.ratios:
                for seed in args.seeds:
                    for setting in settings_of(args, target):
                        init, _, mode = setting.partition("/")
                        cfg = dict(self.base_config(seed), epochs=args.epochs, stopping_step=args.stopping_step,
                                   eval_step=1, few_shot_ratio=ratio, finetune=mode, **FINETUNE)
                        if init != "scratch":
                            cfg["pretrained"] = str(pretrained_folder(args, init))
                        plan.append((grid_key(target, setting, ratio, seed), self.fit_spec(target, cfg)))
        self.execute(plan, "grid")


def grid_key(target: str, setting: str, ratio: float, seed: int) -> str:
    return f"grid/{target}/{setting}/{ratio:g}/{seed}"


def subsample(src: Path, folder: Path, name: str, n_users: int, seed: int) -> None:
    """``n_users`` random users of a converted data set (all their rows, the items they touch) into ``folder``,
    with a meta.json that gives counts and file hashes (the merge copies them into the corpus's meta)."""
    import numpy as np
    import pandas as pd

    from recbole_pmmrec.hashing import file_sha256

    inter = pd.read_csv(src / f"{name}.inter", sep="\t", dtype=str, keep_default_na=False)
    items = pd.read_csv(src / f"{name}.item", sep="\t", dtype=str, keep_default_na=False)
    user_col = next(c for c in inter.columns if c.split(":")[0] == "user_id")
    item_col = next(c for c in inter.columns if c.split(":")[0] == "item_id")
    users = sorted(inter[user_col].unique())
    keep = set(np.random.default_rng(seed).permutation(users)[:n_users].tolist())
    inter = inter[inter[user_col].isin(keep)]
    items = items[items[next(c for c in items.columns if c.split(":")[0] == "item_id")].isin(set(inter[item_col]))]
    folder.mkdir(parents=True, exist_ok=True)
    inter.to_csv(folder / f"{name}.inter", sep="\t", index=False)
    items.to_csv(folder / f"{name}.item", sep="\t", index=False)
    images = src / f"{name}.images"
    if images.is_dir() and not (folder / f"{name}.images").exists():
        (folder / f"{name}.images").symlink_to(images.resolve(), target_is_directory=True)
    meta = {"name": name, "format": "subsample",
            "subsample": {"of": str(src.resolve()), "max_users": n_users, "seed": seed},
            "counts": {"users": len(keep), "items": len(items), "interactions": len(inter)},
            "files": {"sha256": {f"{name}.{ext}": file_sha256(folder / f"{name}.{ext}") for ext in ("inter", "item")}}}
    (folder / f"{name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------ one run


def run_child(spec_file: str, out_file: str) -> int:
    """The process of one run: fine-tuning and zero-shot runs are ``bench/suite/worker.py``'s fit mode (the
    entry point with its epoch recording); pre-training is the entry point with ``save_pretrained`` and a callback
    that ends training at the first epoch boundary past ``max_fit_s`` (the checkpoint is then still written)."""
    from bench.suite import worker

    spec = json.loads(Path(spec_file).read_text())
    if spec.get("kind") != "pretrain":
        return worker.main([spec_file, out_file])
    import recbole_pmmrec  # noqa: F401  (compatibility fixes before recbole is used)
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    rec = worker.Recorder(Path(out_file), {"spec": spec, "status": "training", "curve": [],
                                           "stopped_by_budget": False})
    log = worker.EpochLog(rec, "recbole", None, 0, Path(os.devnull))  # the curve; the budget is ours
    budget = spec.get("max_fit_s")

    def callback(record, trainer, valid_data):
        log(record, trainer, valid_data)
        rec.record["fit_s"] = record["wall_s"]  # training (and validation) seconds so far
        if budget and record["wall_s"] > budget:
            rec.record["stopped_by_budget"] = True
            return "stop"
        return None

    out = run_recbole_pmmrec(spec["model"], spec["dataset"], config_dict=worker.package_config(spec), saved=True,
                             epoch_callback=callback)
    worker.remove_checkpoints(out["checkpoint"])
    worker.describe(rec.record, out["dataset"], out["train_data"], out["trainer"].model)
    rec.record.update(status="done", test_recbole={k: float(v) for k, v in out["test_result"].items()},
                      pretrained_folder=out["pretrained_folder"], total_s=time.perf_counter() - rec.started)
    rec.save()
    return 0


def summary_line(record: dict) -> str:
    test = record.get("test_recbole") or {}
    epochs = len(record.get("curve") or [])
    budget = ", stopped by the budget" if record.get("stopped_by_budget") else ""
    scored = f"test NDCG@10 {test['ndcg@10']:.4f}" if "ndcg@10" in test else "no test evaluation"
    return f"{scored}, {epochs} epochs{budget}"


# ------------------------------------------------------------------------------------------------ report


def _stats(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(mean, 5), "std": round(std, 5), "n": len(values), "values": [round(v, 5) for v in values]}


def _test(row: dict) -> dict:
    r = row["result"]
    out = {m: float(r["test_recbole"][m]) for m in METRICS}
    removed = (r.get("test") or {}).get("all_history_removed") or {}
    if "ndcg@10" in removed:
        out["ndcg@10_history_removed"] = float(removed["ndcg@10"])
    return out


def _best_valid(row: dict) -> tuple[float | None, float | None]:
    """(best validation NDCG@10, wall s of fine-tuning when it was reached) of a run's curve (the worker's ``score``
    is the validation NDCG@10 these PMMRec / ContentKNN runs select by), as the suite's report reads it."""
    from bench.suite.report import best_point

    best = best_point(row["result"])
    return (None, None) if best is None else (best["score"], best["wall_s"])


def _time_to(row: dict, score: float | None) -> float | None:
    """Fine-tuning seconds until validation NDCG@10 first reached ``score`` (None: never)."""
    from bench.suite.report import time_to_reach

    return None if score is None else time_to_reach(row["result"], score)


def zero_shot_anchors(target: str, corpora_names: list[str], zero: dict, done: dict) -> dict:
    """{corpus: {modalities, model, contentknn, random}}: each corpus's zero-shot NDCG@10 next to ContentKNN's and
    the random-weight model's on the same modalities (the ones the checkpoint and the target share)."""
    out = {}
    for corpus in corpora_names:
        row = done.get(f"zeroshot/{target}/{corpus}")
        if row is None:
            continue
        mods = "+".join(row["spec"]["config"].get("modalities") or ["text"])
        out[corpus] = {"modalities": mods.split("+"), "model": zero[corpus].get("ndcg@10"),
                       "contentknn": (zero.get(f"ContentKNN-{mods}") or {}).get("ndcg@10"),
                       "random": (zero.get(f"random-{mods}") or {}).get("ndcg@10")}
    return out


def summarise(args, runs: Runs) -> dict:
    import torch

    from bench.suite.report import capped

    done = runs.done
    out = {"experiment": "PMMRec transfer: pre-training on a merged corpus, fine-tuning on unseen targets",
           "protocol": "leave-one-out (time order), full ranking over all items; test metrics of the best validation "
                       "epoch; few_shot_ratio keeps that fraction of training users (valid/test users unchanged); "
                       "mean and sample sd over seeds; paired differences per seed to scratch/all",
           "seeds": args.seeds, "ratios": args.ratios, "corpora": {}, "targets": {}, "variant": args.variant,
           "config_overrides": extra_config(args), "file": args.out.name}
    for name, sources in corpora(args).items():
        merged, pre = done.get(f"merge/{name}"), done.get(f"pretrain/{name}")
        header = pretrained_folder(args, name) / "pmmrec.json"
        out["corpora"][name] = {
            "sources": sources, "max_source_users": args.max_source_users,
            "source_users": caps_of(args, sources),
            "counts": merged and merged["counts"], "merge_s": merged and merged["wall_s"],
            "pretrain": pre and {"epochs": len(pre["result"]["curve"]),
                                 "stopped_by_budget": pre["result"]["stopped_by_budget"],
                                 "fit_s": round(pre["result"].get("fit_s", 0.0), 1), "wall_s": pre["wall_s"],
                                 "loss": [round(p["loss"], 4) for p in pre["result"]["curve"]],
                                 "test": {m: pre["result"]["test_recbole"][m] for m in METRICS
                                          if m in pre["result"]["test_recbole"]} or None,
                                 "config": pre["spec"]["config"]},
            "header_corpus": json.loads(header.read_text()).get("corpus") if header.is_file() else None,
        }
    for target in args.targets:
        zero = {key.split("/", 2)[2]: _test(row) for key, row in done.items() if key.startswith(f"zeroshot/{target}/")}
        anchors = zero_shot_anchors(target, corpora_of(args, target), zero, done)
        widest = max(anchors.values(), key=lambda a: len(a["modalities"]), default={})
        results = {}
        for setting in settings_of(args, target):
            knn = anchors.get(setting.partition("/")[0], widest).get("contentknn")
            for ratio in args.ratios:
                pairs = [(done.get(grid_key(target, setting, ratio, s)),
                          done.get(grid_key(target, REFERENCE, ratio, s))) for s in args.seeds]
                rows = [r for r, _ in pairs if r]
                if not rows:
                    continue
                tests = [_test(r) for r in rows]
                cell = {m: _stats([t[m] for t in tests if m in t]) for m in tests[0]}
                paired = [(_test(r)["ndcg@10"], _test(ref)["ndcg@10"]) for r, ref in pairs if r and ref]
                if paired and setting != REFERENCE:
                    cell["diff_vs_scratch"] = _stats([a - b for a, b in paired])
                    cell["wins_vs_scratch"] = sum(a > b for a, b in paired)
                    ref_mean = statistics.fmean(b for _, b in paired)
                    mean = statistics.fmean(a for a, _ in paired)
                    cell["ratio_vs_scratch"] = round(mean / ref_mean, 3) if ref_mean else None
                if knn:
                    cell["ratio_vs_contentknn"] = round(cell["ndcg@10"]["mean"] / knn, 3)
                reach = [_time_to(r, _best_valid(ref)[0]) for r, ref in pairs if r and ref]
                cell["s_to_scratch_best_valid"] = [None if t is None else round(t, 1) for t in reach]
                own = [_best_valid(r)[1] for r in rows]
                cell["s_to_own_best_valid"] = [None if t is None else round(t, 1) for t in own]
                cell["epochs"] = [len(r["result"].get("curve") or []) for r in rows]
                cell["fit_s"] = [round(r["result"].get("fit_s", 0.0), 1) for r in rows]
                # budget stops before early stopping would have stopped the run (the suite's report.capped)
                cell["stopped_by_budget"] = [capped(r["result"]) for r in rows]
                results.setdefault(setting, {})[f"{ratio:g}"] = cell
        out["targets"][target] = {"corpora": corpora_of(args, target), "zero_shot": zero,
                                  "zero_shot_anchors": anchors, "results": results}
    out["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                      "threads_per_run": args.threads}
    out["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return out


def report(args, runs: Runs) -> dict:
    summary = summarise(args, runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    from bench.suite.report import transfer_tables

    print(transfer_tables(summary), flush=True)
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    children.stop_children_on_sigterm()
    try:
        check_args(args)
        args.work_dir.mkdir(parents=True, exist_ok=True)
        study = Study(args)
        for step in [s for s in STEPS if s in args.steps]:
            started = time.time()
            if step == "report":
                report(args, study.runs)
            else:
                getattr(study, step)()
            _say(f"step {step}: {time.time() - started:.0f} s")
    except StudyError as exc:
        print(f"transfer.py: error: {exc}", file=sys.stderr)
        return 2
    if study.failed:
        print(f"transfer.py: {len(study.failed)} run(s) failed: {' '.join(study.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
