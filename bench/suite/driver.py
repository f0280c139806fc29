"""The suite's parts: PMMRec against RecBole's baselines on ml100k-posters, quality and cost.

    python bench/run.py [quality|coldstart|speed|scaling|salvage|stamp|report|all] [--seeds 3] [--data-dir DIR]
        [--quick]

Convert the data first, outside the repository (it is never committed):

    python -m dataset_tools.convert movielens-posters --input /path/ml100k_posters --output /tmp/pmmrec_data

Every model run is a fresh subprocess (``python -m bench.suite.worker``), so its peak RSS is its own. Results
are JSON under ``bench/results/`` (one file per part, rewritten after every run, so an interrupted suite keeps
what finished and a rerun skips it); ``report`` (run at the end of every part) writes the plots under
``bench/plots/``, this suite's sections of ``BENCHMARKS.md`` and ``docs/benchmarks-history.md``. All comparisons
are ratios of runs made in one invocation on the same machine.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.suite import children, report, results
from bench.suite.labels import (COLD_EXTRA_SEEDS, COLD_ORDER, DATASET, QUALITY_ORDER, SEEDS, SELECT, TRAINING_FREE,
                                model_of, stamp)
from bench.suite.results import (REPO, add_run, claimed, defaults_digest, find_done, load_results, machine,
                                 note_invocation, run_key, save_results)

MARKDOWN, PLOTS = REPO / "BENCHMARKS.md", REPO / "bench" / "plots"
HISTORY = REPO / "docs" / "benchmarks-history.md"  # the report's history and studies (generated)
README = REPO / "README.md"  # the report fills its results table (between <!-- results:start/end -->)


# ---------------------------------------------------------------------------- running one spec
def base_config(args, work: Path, **extra) -> dict:
    cfg = {"data_path": str(args.data_dir), "checkpoint_dir": str(work / "saved"), "log_dir": str(work / "log"),
           "tensorboard_dir": str(work / "tb"), "cache_dir": str(work / "cache"), "show_progress": False,
           "epochs": args.max_epochs, "stopping_step": args.stopping_step, "state": "warning"}
    cfg.update(extra)
    return cfg


def run_spec(spec: dict, work: Path, timeout: float, threads: int | None = None) -> dict:
    """Run one spec in a fresh subprocess; its record (with its own peak RSS), also when it fails or times out."""
    runs = work / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if getattr(run_spec, "max_fit_s", None) and spec.get("mode", "fit") == "fit":
        spec = dict(spec, max_fit_s=run_spec.max_fit_s)
    key = run_key(spec)  # threads are not part of a run's identity
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO))
    if threads:  # the worker hands the package its ``threads`` key; the native libraries read these
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        spec = dict(spec, threads=threads)
    spec_file, out_file, log_file = runs / f"{key}.spec.json", runs / f"{key}.json", runs / f"{key}.log"
    spec_file.write_text(json.dumps(spec, indent=1))
    if out_file.exists():
        out_file.unlink()
    label = spec.get("label", spec["model"])
    defaults = defaults_digest(spec["model"], spec["dataset"])  # what the worker reads as it starts
    print(f"[bench] {label} ({spec.get('mode', 'fit')}) ... log: {log_file}", flush=True)
    t0 = time.perf_counter()
    with open(log_file, "w") as log:
        try:  # a run killed by the command's SIGTERM (also another lane's) raises Stopped: it is not a result
            children.run([sys.executable, "-m", "bench.suite.worker", str(spec_file), str(out_file)],
                         timeout=timeout, stdout=log, stderr=subprocess.STDOUT, cwd=str(work), env=env)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    record = json.loads(out_file.read_text()) if out_file.exists() else {"spec": spec, "status": "error"}
    record["key"], record["reuse_key"], record["label"] = key, run_key(spec, with_tag=False), label
    record["defaults"] = defaults
    record["process_s"] = time.perf_counter() - t0
    record["children_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if timed_out:
        record["status"] = "timeout" if record.get("status") != "done" else "done"
        record["timeout_s"] = timeout
    if record.get("status") == "error" and "error" not in record:
        record["error"] = log_file.read_text()[-2000:]
    print(f"[bench] {label}: {record.get('status')} in {record['process_s']:.0f} s"
          + (f" ({record.get('error', '')[:300]})" if record.get("status") == "error" else ""), flush=True)
    return record


# ---------------------------------------------------------------------------- parts
def part_fits(part: str, labels: list[str], seeds: list[int], args, work: Path, extra: dict) -> None:
    """Train every label x seed to early stopping (reusing finished identical runs from any part).

    Seed-major order (every label once before any label twice). With ``--jobs N`` the runs go N at a time,
    each child limited to ``--threads`` torch threads. (``add_run``'s file lock also serialises the lanes'
    writes: each call opens the lock file anew, and flock excludes other open files in the same process.)"""
    note_invocation(part, jobs=args.jobs, threads=args.threads, models=labels)
    todo = []
    for seed in seeds:
        for label in labels:
            model, overrides = model_of(label)
            cfg = base_config(args, work, seed=seed, **overrides, **extra)
            if model in TRAINING_FREE:
                cfg["epochs"] = 1
            spec = {"label": label, "model": model, "dataset": args.dataset, "config": cfg, "mode": "fit"}
            if label in SELECT:
                spec["select"] = SELECT[label]
            key = run_key(spec, with_tag=False)
            done = find_done(key, defaults_digest(model, args.dataset))
            if done is not None and not args.fresh:
                print(f"[bench] {label} seed {seed}: reusing finished run {key}")
                if not any(r.get("reuse_key", r.get("key")) == key for r in load_results(part)["runs"]):
                    add_run(part, dict(done, label=label))
                continue
            todo.append((spec, seed))

    def one(item):
        spec, seed = item
        key = run_key(spec, with_tag=False)
        with claimed(work, key) as mine:
            if not mine:
                print(f"[bench] {spec['label']} seed {seed}: another process is running {key}; skipped", flush=True)
                return
            done = None if args.fresh else find_done(key, defaults_digest(spec["model"], spec["dataset"]))
            if done is not None:  # finished by another lane while this one waited
                add_run(part, dict(done, label=spec["label"]))
                return
            record = run_spec(spec, work, args.timeout, threads=args.threads)
            record["seed"] = seed
            add_run(part, record)

    if args.jobs <= 1:
        for item in todo:
            one(item)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, todo))


def part_quality(args, work: Path) -> None:
    labels = args.models or (["PMMRec", "SASRec", "PMMRec text-only"] if args.quick else QUALITY_ORDER)
    part_fits("quality", labels, run_seeds(args), args, work, {})


def run_seeds(args, allowed: list[int] = SEEDS) -> list[int]:
    """The seeds of a quality / cold-start invocation: the first ``--seeds`` of SEEDS, or ``--seed-list`` (any
    of ``allowed``)."""
    if args.seed_list:
        unknown = [s for s in args.seed_list if s not in allowed]
        if unknown:
            raise SystemExit(f"--seed-list {unknown}: this part's seeds are {allowed}")
        return list(args.seed_list)
    return SEEDS[:args.seeds]


def part_coldstart(args, work: Path) -> None:
    labels = args.models or (["PMMRec", "SASRec"] if args.quick else COLD_ORDER)
    part_fits("coldstart", labels, run_seeds(args, SEEDS + COLD_EXTRA_SEEDS), args, work, {"cold_item_ratio": 0.1})


def part_speed(args, work: Path) -> None:
    """Side by side in this one invocation: SASRec, PMMRec default, PMMRec with k = 1 trainable text block;
    cached top-k against end_to_end on a subset; encoder-state cache build time."""
    if not args.only:  # a full speed run replaces the previous one: its ratios come from this run only
        save_results("speed", {"part": "speed", "meta": machine(), "runs": []})
    note_invocation("speed", only=args.only, threads=args.threads)
    seed = SEEDS[0]

    def go(label, model, cfg, mode="fit", n_epochs=None, timeout=None, tag=None):
        if args.only and tag not in args.only:
            return None
        spec = {"label": label, "model": model, "dataset": DATASET, "config": cfg, "mode": mode,
                "tag": tag or label}
        if n_epochs is not None:
            spec["n_epochs"] = n_epochs
        record = run_spec(spec, work, timeout or args.timeout, threads=args.threads)
        record["seed"], record["tag"] = seed, tag or label
        add_run("speed", record)
        return record

    fit_cfg = lambda **kw: base_config(args, work, seed=seed, **kw)  # noqa: E731
    # 1. encoder-state cache build (an empty cache folder) vs read (the filled one), text + image
    fresh = work / f"cache-fresh-{int(time.time())}"
    go("PMMRec build (fresh cache)", "PMMRec", dict(fit_cfg(), cache_dir=str(fresh)), mode="build", tag="build_fresh")
    if not (work / "cache").exists() and fresh.exists():
        fresh.rename(work / "cache")  # keyed by encoder and content, not by folder: reuse it for every later run
    shutil.rmtree(fresh, ignore_errors=True)
    go("PMMRec build (cached)", "PMMRec", fit_cfg(), mode="build", tag="build_warm")
    # 2. time to quality, epoch and evaluation time, peak RSS
    go("SASRec", "SASRec", fit_cfg(), tag="sasrec")
    go("PMMRec", "PMMRec", fit_cfg(), tag="pmmrec")
    # 3. cached top-k against end_to_end, same k, on a subset of the training users: the default modalities
    #    (text + image, k = 1 block of each encoder), and text only (k = 1 MiniLM block)
    for suffix, sub in (("_ti", dict(text_train_layers=1, image_train_layers=1)),
                        ("", dict(modalities=["text"], text_train_layers=1))):
        sub = dict(sub, few_shot_ratio=args.subset_ratio)
        what = "text + image" if suffix else "text"
        go(f"PMMRec {what} k=1 cached (subset)", "PMMRec", fit_cfg(**sub), mode="epochs",
           n_epochs=args.subset_epochs, tag=f"subset_cached{suffix}")
        go(f"PMMRec {what} k=1 end_to_end (subset)", "PMMRec", dict(fit_cfg(**sub), encoder_mode="end_to_end"),
           mode="epochs", n_epochs=args.subset_epochs, tag=f"subset_e2e{suffix}")
    # 4. k = 1 trainable text block, full data (expensive on a CPU: capped epochs and time)
    go("PMMRec k=1", "PMMRec", fit_cfg(text_train_layers=1, epochs=args.k1_epochs),
       timeout=args.k1_timeout, tag="pmmrec_k1")


def tiny_text_encoder(folder: Path) -> str:
    """A random 1-layer BERT (hidden 64) with a word-level vocabulary of the synthetic texts, saved locally:
    the scaling runs measure the recommender's cost per interaction, not a large encoder's cache build."""
    from recbole_pmmrec.synthetic import make_tiny_text_encoder

    return str(make_tiny_text_encoder(folder, hidden_size=64, layers=1))
    import torch
    import transformers

    from recbole_pmmrec.synthetic import _FILLER, _TOPIC_WORDS

    words = sorted(set(_TOPIC_WORDS + _FILLER + ["item"])) + [f"##{d}" for d in range(10)] + [str(d) for d in range(10)]
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=128, vocab_size=len(vocab), max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(str(folder))
    return str(folder)


def part_scaling(args, work: Path) -> None:
    """Synthetic data from 10^4 to 10^6 interactions (10^3 to 10^5 items): PMMRec text epoch time, peak RSS."""
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    sizes = [(10**4, 10**3), (10**5, 10**4), (10**6, 10**5)] if not args.quick else [(10**4, 10**3), (3 * 10**4, 3 * 10**3)]
    sizes += [(10**5, 10**3), (10**5, 10**5)] if not args.quick else []  # interactions and items varied alone
    if args.sizes:
        sizes = [tuple(int(float(v)) for v in size.split(":")) for size in args.sizes]
    data = load_results("scaling")
    data["meta"] = machine()
    save_results("scaling", data)
    root = work / "synthetic"
    encoder = tiny_text_encoder(work / "tiny-bert")
    for n_inter, n_items in sizes:
        if args.max_inter and n_inter > args.max_inter:
            continue
        name = f"synth-{n_inter}-{n_items}"
        gen_s = None
        if not (root / name / f"{name}.inter").exists():
            t0 = time.perf_counter()
            make_synthetic_dataset(root, name, n_users=n_inter // 50, n_items=n_items, n_topics=16, min_len=30,
                                   max_len=70, images=False, seed=0)
            gen_s = time.perf_counter() - t0
        cfg = {"data_path": str(root), "checkpoint_dir": str(work / "saved"), "log_dir": str(work / "log"),
               "tensorboard_dir": str(work / "tb"), "cache_dir": str(work / "cache"), "show_progress": False,
               "state": "warning", "modalities": ["text"], "text_encoder": encoder, "text_fields": ["title",
               "description"], "text_max_length": 16, "seed": SEEDS[0], "image_dir": None}
        spec = {"label": name, "model": "PMMRec", "dataset": name, "config": cfg, "mode": "epochs", "n_epochs": 2}
        record = run_spec(spec, work, args.timeout, threads=args.threads)
        record.update(n_inter_target=n_inter, n_items_target=n_items, generate_s=gen_s)
        add_run("scaling", record)


def part_salvage(args, work: Path) -> None:
    """Test the best checkpoint a fit run left behind when ``--timeout`` killed it (``--key KEY``): its record
    keeps its curve, gets the test metrics, and is marked stopped by a budget (the report's †)."""
    for part in ("quality", "coldstart"):
        rec = next((r for r in load_results(part)["runs"] if r.get("key") == args.key), None)
        if rec is not None:
            break
    else:
        raise SystemExit(f"no run {args.key} in bench/results/quality.json or coldstart.json")
    if rec.get("status") == "done":
        raise SystemExit(f"run {args.key} ({rec.get('label')}) is done already")
    checkpoint = rec.get("checkpoint")
    if not checkpoint or not Path(checkpoint).exists():
        raise SystemExit(f"run {args.key} left no checkpoint ({checkpoint}); rerun it with --max-fit-s instead")
    spec = dict(rec["spec"], mode="test", checkpoint=checkpoint, tag="salvage")
    spec.pop("max_fit_s", None)
    tested = run_spec(spec, work, args.timeout, threads=args.threads)
    if tested.get("status") != "done":
        raise SystemExit(f"testing {checkpoint} failed: {tested.get('error', '')[:500]}")
    scored = [p for p in rec.get("curve", []) if "score" in p]
    best = max(scored, key=lambda p: p["score"])
    rec.update(status="done", stopped_by_budget=True, stopped_by="timeout", fit_s=scored[-1]["wall_s"],
               best_valid={"epoch": best["epoch"], "score": best["score"], "wall_s": best["wall_s"]},
               **{k: tested[k] for k in ("test", "test_recbole", "test_eval_s")})
    rec["max_fit_s"] = rec.get("timeout_s")
    add_run(part, rec)
    print(f"[bench] {rec.get('label')}: tested the checkpoint of epoch {best['epoch']} (its best validation)")


def part_stamp(args, work: Path) -> None:
    """After a default changes (``--set KEY=VALUE ...``: the old values, ``--model``, PMMRec unless given): the
    stored runs of the model made with the older defaults get the values they ran with as explicit keys
    (``labels.stamp``), so the report keeps them apart from today's default. Prints what it would change; writes
    only with ``--write``."""
    import yaml  # a dependency of recbole

    if not args.set:
        raise SystemExit("stamp: give the old defaults, e.g. --set hidden_size=64 w_nid=0.1")

    def pairs(items, option):
        out = {}
        for item in items or ():
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SystemExit(f"stamp: {option} {item!r} is not KEY=VALUE")
            out[key] = yaml.safe_load(value)
        return out

    values, where = pairs(args.set, "--set"), pairs(args.where, "--where")
    for part in ("quality", "coldstart"):
        with results.locked(part):
            data = load_results(part)
            changed = stamp(data["runs"], args.model, values, defaults_digest, where=where,
                            every_digest=args.every_digest)
            for run, added in changed:
                print(f"[bench] {part}: {run.get('label')} on {run['spec'].get('dataset')} seed {run.get('seed')} "
                      f"({run.get('key')}): + {added}")
                # under its new spec's key, so that a later run of today's default is never matched to it
                run.update(results.rekeyed(run))
            if changed and args.write:
                results.save_results(part, data)
            print(f"[bench] {part}: {len(changed)} runs {'stamped' if args.write else 'would be stamped (--write)'}")


def part_report(args, work: Path) -> None:
    report.write_report(results.RESULTS, PLOTS, MARKDOWN, history=HISTORY, readme=README)
    print(f"[bench] wrote {MARKDOWN} and {HISTORY}")


PARTS = {"speed": part_speed, "quality": part_quality, "coldstart": part_coldstart, "scaling": part_scaling,
         "salvage": part_salvage, "stamp": part_stamp, "report": part_report}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", nargs="?", default="all", choices=[*PARTS, "all"])
    ap.add_argument("--seeds", type=int, default=1, help="seeds per model (quality, cold start), at most 3")
    ap.add_argument("--seed-list", type=int, nargs="*",
                    help="these seeds of the suite's three instead of the first --seeds (e.g. to split a model's seeds "
                         "over two invocations); the cold-start part also takes 2023 and 2024 (few cold rows per seed)")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/pmmrec_data"),
                    help="data_path holding ml100k-posters/ (converted by dataset_tools)")
    ap.add_argument("--dataset", default=DATASET,
                    help="quality / cold start: another data set under --data-dir (converted by dataset_tools), "
                         "reported in rows of its own; speed and scaling always use " + DATASET)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/pmmrec_bench"),
                    help="checkpoints, logs, caches and synthetic data (outside the repository)")
    ap.add_argument("--quick", action="store_true", help="few models, 2 epochs, small scaling sizes")
    ap.add_argument("--models", nargs="*", help="labels to run (quality, cold start); default: all")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--stopping-step", type=int, default=3, help="early stopping patience (validation NDCG@10)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per run before its process is killed (default 3600; with --max-fit-s, that budget "
                         "plus room for the setup, the last epoch and the test: max-fit-s + max(1800, max-fit-s); the "
                         "budget is checked after each epoch, so an epoch begun just before it runs to its end)")
    ap.add_argument("--k1-epochs", type=int, default=2, help="epochs of the k = 1 speed run")
    ap.add_argument("--k1-timeout", type=float, default=1800)
    ap.add_argument("--subset-epochs", type=int, default=2, help="epochs of each cached / end_to_end subset run")
    ap.add_argument("--subset-ratio", type=float, default=0.1,
                    help="fraction of training users for cached vs end_to_end")
    ap.add_argument("--max-inter", type=int, default=None, help="scaling: skip sizes above this")
    ap.add_argument("--sizes", nargs="*", help="scaling: INTERACTIONS:ITEMS pairs instead of the default five "
                    "(e.g. 1e4:1e3 1e5:1e4 1e6:1e5)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="quality / cold start: runs at a time (their wall times are then contended)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per run (default: torch's own). With 1, two bench/run.py processes can share a "
                         "2-core machine, one core each (every run of a comparison should then use 1)")
    ap.add_argument("--fresh", action="store_true", help="rerun runs that already finished")
    ap.add_argument("--key", help="salvage: the run key (bench/results) of a fit run killed by --timeout")
    ap.add_argument("--max-fit-s", type=float, default=None,
                    help="training + validation wall-time budget per run; a run over it stops at the next epoch "
                         "boundary and is tested with its best checkpoint (marked in the report)")
    ap.add_argument("--only", nargs="*", help="speed: run only these steps (build_fresh build_warm sasrec pmmrec "
                    "subset_cached_ti subset_e2e_ti subset_cached subset_e2e pmmrec_k1), keeping the other stored speed runs")
    ap.add_argument("--set", nargs="*", action="extend",
                    help="stamp: KEY=VALUE, the defaults the older stored runs ran with")
    ap.add_argument("--model", default="PMMRec", help="stamp: the model whose stored runs to stamp")
    ap.add_argument("--write", action="store_true", help="stamp: write the stamped runs (default: only print them)")
    ap.add_argument("--where", nargs="*", action="extend",
                    help="stamp: KEY=VALUE, only the runs with these settings (unset: today's default)")
    ap.add_argument("--every-digest", action="store_true",
                    help="stamp: also runs made with today's properties files (a default that changed in the code)")
    args = ap.parse_args(argv)
    if args.timeout is None:  # a kill must not come before the graceful stop at the fit budget
        # (max-fit-s / 2 was too little on ml1m-posters: setup 344 s + 2 epochs of ~1,100 s under a 2,400 s budget,
        # then a third epoch begun at 2,218 s; the kill at 3,600 s came before its end and the test)
        args.timeout = 3600.0 if args.max_fit_s is None else args.max_fit_s + max(1800.0, args.max_fit_s)
    elif args.max_fit_s is not None and args.timeout <= args.max_fit_s:
        ap.error(f"--timeout {args.timeout:g} kills a run before its --max-fit-s {args.max_fit_s:g} budget can stop it "
                 f"at an epoch boundary: give a longer --timeout, or leave it out")
    args.seeds = max(1, min(args.seeds, len(SEEDS)))
    if args.quick:
        args.max_epochs = min(args.max_epochs, 2)
        args.k1_epochs = 1
    args.data_dir = args.data_dir.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    children.stop_children_on_sigterm()
    run_spec.max_fit_s = args.max_fit_s
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.dataset != DATASET and args.part not in ("quality", "coldstart"):
        raise SystemExit(f"--dataset applies to quality and coldstart only (speed and scaling use {DATASET})")
    if args.part in ("speed", "quality", "coldstart", "all"):
        name = args.dataset
        if not (args.data_dir / name / f"{name}.inter").exists():
            how = (f"movielens-posters --input PATH/ml100k_posters --output {args.data_dir}" if name == DATASET else
                   f"FORMAT --input PATH --output {args.data_dir} --name {name}  (formats: --help)")
            print(f"no {name} under {args.data_dir}: convert it first with\n  python -m dataset_tools.convert {how}",
                  file=sys.stderr)
            return 2
    parts = ["speed", "quality", "coldstart", "scaling"] if args.part == "all" else [args.part]
    for part in parts:
        PARTS[part](args, work)
        if part != "report" and (part != "stamp" or args.write):
            part_report(args, work)
    if args.part == "all":
        part_report(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
