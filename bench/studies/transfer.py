"""Transfer experiment: pre-train PMMRec on MicroLens-50K (text), transfer to ml100k-posters.

```
python bench/studies/transfer.py [--data-dir /tmp/pmmrec_xfer/data] [--work-dir /tmp/pmmrec_xfer] [--steps ...]
```

Steps (each resumable; finished runs are read back from WORK/runs.jsonl):

1. ``prepare``: convert the raw data (``python -m dataset_tools.convert``) into DATA unless already there.
2. ``pretrain``: PMMRec on microlens-50k, text only (frozen MiniLM, cached states), all objectives that apply
   to one modality (NIP + NID + RCL); components saved to WORK/pretrained/microlens-50k-text.
3. ``zeroshot``: the pre-trained model scored on ml100k-posters without a training step (text-only model; and
   text+image with the text side and user encoder from the checkpoint, image side and fusion fresh).
4. ``grid``: ml100k-posters fine-tuning at few_shot_ratio 5%, 20%, 100% of the training users x seeds x
   {text-only, text+image} x {from scratch, pre-trained}. Pre-trained = transfer_components
   [text_encoder, user_encoder] (the text projection and the user encoder: what a text-only checkpoint
   holds; in the text+image model the image projection and fusion start fresh). The seed sets both the
   initial weights and the few-shot user subset, so scratch and pre-trained runs of a seed see the same users.
5. ``report``: mean and sample standard deviation over seeds of test NDCG@10 / Recall@10 ->
   bench/results/transfer.json and the "## Transfer" section of BENCHMARKS.md.

Everything runs on CPU with the frozen-encoder default (``encoder_mode: cached``); run it with nohup:

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nohup .venv/bin/python bench/studies/transfer.py > /tmp/transfer.log 2>&1 &
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.suite.worker import remove_checkpoints  # noqa: E402

SOURCE, TARGET = "microlens-50k", "ml100k-posters"
RAW = {SOURCE: ("microlens", "/work/shared/data/microlens50k_text"),
       TARGET: ("movielens-posters", "/work/shared/data/ml100k_posters")}
SETTINGS = {  # name -> (modalities, transfer_components or None for from scratch)
    "text/scratch": (["text"], None),
    "text/pretrained": (["text"], ["text_encoder", "user_encoder"]),
    "text+image/scratch": (["text", "image"], None),
    "text+image/pretrained-text": (["text", "image"], ["text_encoder", "user_encoder"]),
    # diagnostics (not in the default grid): which transferred part helps or hurts
    "text/pretrained-proj": (["text"], ["text_encoder"]),
    "text/pretrained-user": (["text"], ["user_encoder"]),
    "text/pretrained-nopos": (["text"], ["text_encoder", "user_encoder"]),  # + fresh position embeddings
}
RESET_POSITIONS = {"text/pretrained-nopos"}
DEFAULT_SETTINGS = ["text/scratch", "text/pretrained", "text+image/scratch", "text+image/pretrained-text"]
METRICS = ("ndcg@10", "recall@10")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_xfer/data"), help="atomic files (outside the repo)")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/pmmrec_xfer"), help="checkpoints, caches, logs, runs.jsonl")
    p.add_argument("--steps", nargs="+", default=["prepare", "pretrain", "zeroshot", "grid", "report"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ratios", nargs="+", type=float, default=[0.05, 0.2, 1.0])
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, choices=list(SETTINGS))
    p.add_argument("--pretrain-epochs", type=int, default=6)
    p.add_argument("--pretrain-users", type=float, default=1.0, help="fraction of MicroLens users to pre-train on")
    p.add_argument("--pretrain-batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is faster on a shared 2-core machine)")
    p.add_argument("--epochs", type=int, default=50, help="fine-tuning epochs (with early stopping)")
    p.add_argument("--stopping-step", type=int, default=3)
    p.add_argument("--wait-minutes", type=float, default=60, help="grid: wait this long for the pre-trained checkpoint")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run (values parsed as JSON when they can be)")
    p.add_argument("--tag", default="", help="suffix of the run keys (for variants of the grid)")
    return p.parse_args(argv)


def base_config(args) -> dict:
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    return {
        "data_path": str(args.data_dir), "checkpoint_dir": str(args.work_dir / "saved"),
        "log_dir": str(args.work_dir / "log"), "tensorboard_dir": str(args.work_dir / "tb"),
        "cache_dir": str(args.work_dir / "cache"), "show_progress": False, "use_gpu": False, "state": "INFO",
        "stopping_step": args.stopping_step, "eval_batch_size": 1024, **extra,
    }


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
        with open(self.path, "a") as fh:  # two bench processes may share the file
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fresh_copy(dataset):
    """A copy of a loaded dataset that can be split again (RecBole's build() converts its frames in place)."""
    new = copy.copy(dataset)
    for name in ("inter_feat", "user_feat", "item_feat"):
        feat = getattr(dataset, name, None)
        if feat is not None:
            setattr(new, name, feat.copy())
    return new


class Session:
    """Loads each (dataset, modalities) once (atomic files, encoder-state caches) and runs many trainings on it:
    the same calls as ``run_recbole_pmmrec`` (split, build, load_pretrained, fit, evaluate with the best model),
    without re-reading the data for every run."""

    def __init__(self, args):
        self.args = args
        self.loaded = {}

    def dataset(self, name: str, modalities: list[str]):
        from recbole.utils import init_seed

        from recbole_pmmrec.quick_start import load_config
        from recbole_pmmrec.utils import create_dataset

        key = (name, tuple(modalities))
        if key not in self.loaded:
            started = time.time()
            config = load_config("PMMRec", name, config_dict=dict(base_config(self.args), modalities=modalities))
            init_seed(config["seed"], config["reproducibility"])
            self.loaded[key] = (config, create_dataset(config))
            print(f"[{time.strftime('%H:%M:%S')}] loaded {name} {modalities} in {time.time() - started:.0f} s",
                  flush=True)
        return self.loaded[key]

    def run(self, runs: Runs, key: str, name: str, modalities: list[str], settings: dict, pretrained=None,
            components=None, save_to=None, reset_positions=False) -> dict:
        """Train (epochs > 0) or only evaluate (epochs = 0); ``settings`` must name every key that varies."""
        if key in runs.done:
            return runs.done[key]
        from recbole.utils import init_seed

        from recbole_pmmrec.transfer import load_pretrained, save_pretrained
        from recbole_pmmrec.utils import data_preparation, get_model, get_trainer

        config, dataset = self.dataset(name, modalities)
        for k, v in settings.items():
            config[k] = v
        print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
        started = time.time()
        init_seed(config["seed"], config["reproducibility"])
        train, valid, test = data_preparation(config, _fresh_copy(dataset))
        init_seed(config["seed"], config["reproducibility"])
        model = get_model("PMMRec")(config, train._dataset)
        report = None
        if pretrained is not None:
            report = load_pretrained(model, pretrained, components, freeze=bool(config["freeze_transferred"]),
                                     config=config)
        if reset_positions:  # diagnostic: the source's position table, trained on short sequences, replaced
            model._init_weights(model.user_encoder.position_embedding)
        trainer = get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model)
        use_valid = config["eval_step"] is None or config["eval_step"] > 0
        epochs, best = [0], {"epoch": None, "score": None}

        def note_epoch(record, trainer, valid_data):  # the trainer's epoch_callback, as run_recbole_pmmrec sets it
            epochs[0] += 1
            # the epoch whose checkpoint the trainer keeps: the best validation, or without validation every epoch
            if not use_valid or (record["score"] is not None and (best["score"] is None or record["score"] > best["score"])):
                best.update(epoch=record["epoch"], score=record["score"])

        trainer.epoch_callback = note_epoch
        if config["epochs"] > 0:
            _, valid_result = trainer.fit(train, valid if use_valid else None, saved=True, show_progress=False)
            test_result = trainer.evaluate(test, load_best_model=True)
        else:
            valid_result = trainer.evaluate(valid, load_best_model=False)
            test_result = trainer.evaluate(test, load_best_model=False)
        remove_checkpoints(trainer.saved_model_file)  # the pickled trainer checkpoints are not needed after the best-model reload
        if save_to is not None:
            save_pretrained(model, save_to, config, [name])
        row = {
            "key": key, "dataset": name, "modalities": modalities, "settings": settings,
            "pretrained": str(pretrained) if pretrained else None,
            "loaded": {c: len(r.loaded) for c, r in report.components.items()} if report else None,
            "valid": {k: float(v) for k, v in dict(valid_result or {}).items()},
            "test": {k: float(v) for k, v in dict(test_result).items()},
            "epochs_trained": epochs[0], "best_epoch": best["epoch"], "wall_s": round(time.time() - started, 1),
        }
        runs.add(row)
        print(f"[{time.strftime('%H:%M:%S')}] {key}: test {({m: row['test'][m] for m in METRICS})} "
              f"({row['epochs_trained']} epochs, best {row['best_epoch']}, {row['wall_s']} s)", flush=True)
        return row


def prepare(args) -> None:
    for name, (fmt, raw) in RAW.items():
        if (args.data_dir / name / f"{name}.inter").is_file():
            continue
        subprocess.run([sys.executable, "-m", "dataset_tools.convert", fmt, "--input", raw, "--output",
                        str(args.data_dir), "--name", name, "--quiet"], check=True, cwd=REPO)


def pretrained_folder(args) -> Path:
    return args.work_dir / "pretrained" / f"{SOURCE}-text"


FINETUNE = {"w_nicl": 0.0, "w_nid": 0.0, "w_rcl": 0.0}  # fine-tuning: next-item prediction (NIP) only


def pretrain(args, session: Session, runs: Runs) -> dict:
    folder = pretrained_folder(args)
    settings = {"seed": 0, "epochs": args.pretrain_epochs, "few_shot_ratio": args.pretrain_users, "eval_step": 0,
                "train_batch_size": args.pretrain_batch_size, "w_nid": 0.1, "w_rcl": 0.1, "w_nicl": 0.0}
    row = session.run(runs, "pretrain/" + SOURCE, SOURCE, ["text"], settings, save_to=folder)
    if not (folder / "model.safetensors").is_file():
        raise SystemExit(f"{folder} is missing although runs.jsonl has the pre-training run: delete that line")
    return row


def zeroshot(args, session: Session, runs: Runs) -> None:
    folder = pretrained_folder(args)
    for setting in ("text/pretrained", "text+image/pretrained-text", "text/scratch", "text+image/scratch"):
        modalities, components = SETTINGS[setting]  # scratch: a randomly initialised model, for reference
        settings = {"seed": 0, "epochs": 0, "few_shot_ratio": 1.0, "eval_step": 1, **FINETUNE}
        session.run(runs, f"zeroshot/{setting}{args.tag}", TARGET, modalities, settings,
                    folder if components else None, components)


def wait_for(folder: Path, minutes: float) -> None:
    """Another process may still be pre-training: wait for its checkpoint."""
    deadline = time.time() + 60 * minutes
    while not (folder / "pmmrec.json").is_file():
        if time.time() > deadline:
            raise SystemExit(f"no pre-trained checkpoint in {folder} after {minutes} min: run the pretrain step")
        time.sleep(20)


def grid(args, session: Session, runs: Runs) -> None:
    folder = pretrained_folder(args)
    for ratio in args.ratios:
        for seed in args.seeds:
            for setting in args.settings:
                modalities, components = SETTINGS[setting]
                settings = {"seed": seed, "epochs": args.epochs, "few_shot_ratio": ratio, "eval_step": 1,
                            "train_batch_size": 64, **FINETUNE}
                if components:
                    wait_for(folder, args.wait_minutes)
                session.run(runs, f"grid/{setting}/{ratio:g}/{seed}{args.tag}", TARGET, modalities, settings,
                            folder if components else None, components,
                            reset_positions=setting in RESET_POSITIONS)


# ------------------------------------------------------------------------------------------------ report


def _stats(values: list[float]) -> dict:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(mean, 4), "std": round(std, 4), "n": len(values), "values": values}


def summarise(args, runs: Runs) -> dict:
    table = {}
    for setting in SETTINGS:
        for ratio in (0.05, 0.2, 1.0):
            rows = [runs.done.get(f"grid/{setting}/{ratio:g}/{seed}{args.tag}") for seed in args.seeds]
            rows = [r for r in rows if r]
            if not rows:
                continue
            table.setdefault(setting, {})[f"{ratio:g}"] = {
                **{m: _stats([r["test"][m] for r in rows]) for m in METRICS},
                "epochs_trained": [r["epochs_trained"] for r in rows],
                "best_epoch": [r["best_epoch"] for r in rows],
                "wall_s": [r["wall_s"] for r in rows],
            }
    pre = runs.done.get("pretrain/" + SOURCE)
    zero = {s: {m: runs.done[f"zeroshot/{s}{args.tag}"]["test"][m] for m in METRICS}
            for s in ("text/pretrained", "text+image/pretrained-text", "text/scratch", "text+image/scratch")
            if f"zeroshot/{s}{args.tag}" in runs.done}
    import torch

    return {
        "experiment": "PMMRec transfer: MicroLens-50K (text) -> ml100k-posters",
        "protocol": "leave-one-out (time order), full ranking over all items, test split; few_shot_ratio keeps "
                    "that fraction of training users (valid/test users unchanged); mean and sample std over seeds",
        "seeds": args.seeds, "ratios": args.ratios, "tag": args.tag,
        "pretrain": pre and {"test": pre["test"], "epochs_trained": pre["epochs_trained"], "wall_s": pre["wall_s"],
                             "settings": pre["settings"]},
        "zero_shot": zero,
        "results": table,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _fmt(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['mean']:.4f} (1 seed)" if s["n"] == 1 else f"{s['mean']:.4f} ± {s['std']:.4f}"


def markdown(summary: dict, notes: str) -> str:
    lines = ["## Transfer", "",
             "PMMRec pre-trained on MicroLens-50K (text only) and transferred to ml100k-posters, against the same "
             "model trained from scratch. Produced by `bench/studies/transfer.py`; numbers in "
             "`bench/results/transfer.json`. Test NDCG@10 / Recall@10, mean ± sample std over seeds "
             f"{summary['seeds']} (seed = initial weights and few-shot users; scratch and pre-trained share users "
             "per seed). Frozen MiniLM-L6 text encoder and EfficientNet-Lite0 image encoder (cached states), "
             "linear projections, d = 64, 2-layer user encoder; CPU.", ""]
    pre = summary.get("pretrain")
    if pre:
        lines += [f"Pre-training: {pre['epochs_trained']} epochs in {pre['wall_s'] / 60:.1f} min; MicroLens-50K test "
                  f"NDCG@10 {pre['test']['ndcg@10']:.4f}, Recall@10 {pre['test']['recall@10']:.4f}.", ""]
    if summary["zero_shot"]:
        lines += ["Zero-shot (no training step on ml100k-posters): " + "; ".join(
            f"{s}: NDCG@10 {v['ndcg@10']:.4f}, Recall@10 {v['recall@10']:.4f}" for s, v in summary["zero_shot"].items())
            + ".", ""]
    for metric in METRICS:
        lines += [f"| {metric} | " + " | ".join(f"{float(r):.0%} users" for r in summary["ratios"]) + " |",
                  "|---|" + "---|" * len(summary["ratios"])]
        for setting, by_ratio in summary["results"].items():
            cells = [_fmt(by_ratio.get(f"{float(r):g}", {}).get(metric)) for r in summary["ratios"]]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += [notes.strip(), ""]
    return "\n".join(lines)


def write_report(args, runs: Runs) -> dict:
    summary = summarise(args, runs)
    out = REPO / "bench" / "results" / f"transfer{args.tag}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    notes_file = REPO / "bench" / "results" / "transfer_notes.md"
    section = markdown(summary, notes_file.read_text() if notes_file.is_file() and not args.tag else "")
    if args.tag:
        print(section)
        return summary
    bench_md = REPO / "BENCHMARKS.md"
    text = bench_md.read_text() if bench_md.is_file() else "# Benchmarks\n"
    pattern = re.compile(r"^## Transfer\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    bench_md.write_text(text)
    print(section)
    return summary


def main(argv=None) -> None:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    import recbole_pmmrec  # noqa: F401  (compatibility fixes first)

    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    runs = Runs(args.work_dir / "runs.jsonl")
    session = Session(args)
    for step in args.steps:
        started = time.time()
        if step == "prepare":
            prepare(args)
        elif step == "pretrain":
            pretrain(args, session, runs)
        elif step == "zeroshot":
            zeroshot(args, session, runs)
        elif step == "grid":
            grid(args, session, runs)
        elif step == "report":
            write_report(args, runs)
        else:
            raise SystemExit(f"unknown step {step!r}")
        print(f"step {step}: {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
