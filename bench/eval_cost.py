"""Cost of one full evaluation, PMMRec against RecBole's SASRec, measured side by side in one process.

    .venv/bin/python bench/eval_cost.py --data-dir /tmp/pmmrec_data [--threads 1] [--repeats 7]

Builds both models on ml100k-posters with the plugin's factories (as ``run_recbole_pmmrec`` does; PMMRec
reads its encoder-state cache from ``--cache-dir``) and times ``trainer.evaluate`` on the validation data,
alternating SASRec and PMMRec so that both see the same machine load. Before every evaluation the model is
put through ``train()``, as after a training epoch, so PMMRec recomputes its item vectors (the fixed
item-tower pass each evaluation pays). The cost does not depend on the weights, so the models are
untrained. Prints the medians, their ratio and PMMRec's item-tower share; writes
``bench/results/eval_cost.json``. A narrower check than ``bench/run.py speed``, whose evaluation times come
from full training runs: this one needs a minute, not an hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(model_name: str, args):
    from recbole.utils import init_seed

    from recbole_pmmrec.logger import init_logger
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer

    work = Path(args.work_dir)
    config = load_config(model_name, args.dataset, config_dict={
        "data_path": str(args.data_dir), "cache_dir": str(args.cache_dir), "checkpoint_dir": str(work / "saved"),
        "log_dir": str(work / "log"), "tensorboard_dir": str(work / "tb"), "show_progress": False,
        "state": "warning", "seed": 2020})
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    return get_trainer(config["MODEL_TYPE"], config["model"])(config, model), valid_data


def one_evaluation(trainer, data) -> float:
    trainer.model.train()  # as after a training epoch: PMMRec drops its item vectors
    start = time.perf_counter()
    trainer.evaluate(data, load_best_model=False, show_progress=False)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="/tmp/pmmrec_data")
    ap.add_argument("--dataset", default="ml100k-posters")
    ap.add_argument("--cache-dir", default="/tmp/pmmrec_bench/cache")
    ap.add_argument("--work-dir", default="/tmp/pmmrec_bench/eval_cost")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "eval_cost.json"))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    runs = {name: build(name, args) for name in ("SASRec", "PMMRec")}
    for trainer, data in runs.values():  # warm-up: first-call allocations and lazy imports
        one_evaluation(trainer, data)
    times = {name: [] for name in runs}
    tower = []
    pmmrec = runs["PMMRec"][0].model
    for _ in range(args.repeats):
        for name, (trainer, data) in runs.items():
            times[name].append(one_evaluation(trainer, data))
        pmmrec.eval()
        pmmrec._item_cache = None
        start = time.perf_counter()
        with torch.no_grad():
            pmmrec.item_vectors()
        tower.append(time.perf_counter() - start)

    median = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "dataset": args.dataset, "threads": args.threads,
        "repeats": args.repeats, "load_average_at_end": os.getloadavg()[0], "seconds": times,
        "median_s": median, "ratio_pmmrec_over_sasrec": median["PMMRec"] / median["SASRec"],
        "pmmrec_item_tower_median_s": statistics.median(tower),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"full evaluation ({args.dataset} validation, {args.threads} thread(s), median of {args.repeats}): "
          f"SASRec {median['SASRec']:.3f} s, PMMRec {median['PMMRec']:.3f} s, ratio {result['ratio_pmmrec_over_sasrec']:.2f}; "
          f"PMMRec item tower alone {result['pmmrec_item_tower_median_s']:.3f} s; load average {result['load_average_at_end']:.1f}")
    return result


if __name__ == "__main__":
    main()
