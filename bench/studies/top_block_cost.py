"""What a trainable top text block costs per training step and per full evaluation, side by side in one process.

    .venv/bin/python bench/studies/top_block_cost.py --data-dir /tmp/pmmrec_data --dataset seqrec-toys [--threads 1]

Builds, with the plugin's factories (the same seed, data and batches), PMMRec on a text data set with today's
defaults (a frozen, cached MiniLM: one pooled state per item) and with ``text_train_layers: 1`` (MiniLM's top block
trains over the cached states of the five below it; the other text defaults set as the bench label ``PMMRec text
block 1`` sets them), and a RecBole SASRec for scale. The block-1 model runs twice per round: with its item chunks
in id order (each chunk padded to its longest title, as before 0.9) and in order of text length (today's
``ItemTower.forward``). It then alternates ``--steps`` training steps of each (forward, backward, Adam step) on the
same batches and a full evaluation of each on the validation data, ``--rounds`` times, so that every model sees the
same machine load. Prints the medians, an epoch's time estimated from them (steps x batches per epoch + one
evaluation), and their ratios; writes ``bench/results/top_block_cost_<dataset>.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.studies.eval_cost import build, one_evaluation  # noqa: E402  (the same factories and evaluation)
from bench.studies.skip_cost import batches, step_study_parser, steps_s  # noqa: E402
from bench.suite.labels import PMMREC  # noqa: E402

BLOCK_LABEL = "PMMRec text block 1"


def main(argv=None) -> dict:
    args = step_study_parser(__doc__, "/tmp/pmmrec_bench/top_block_cost", steps=5, rounds=3).parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    frozen = build("PMMRec", args, threads=args.threads)
    block = build("PMMRec", args, threads=args.threads, **PMMREC[BLOCK_LABEL])
    sasrec = build("SASRec", args, threads=args.threads)
    features = block[0].model.item_tower.features
    by_length = features.token_counts

    def in_id_order(modality, ids):  # every item the same length: the stable sort keeps the chunks in id order
        return torch.zeros_like(by_length(modality, ids))

    runs = {"frozen (default)": (frozen, None), "block 1, chunks in id order": (block, in_id_order),
            "block 1, chunks by length": (block, by_length), "SASRec": (sasrec, None)}
    train_batches = batches(frozen[1], args.steps)
    sas_batches = batches(sasrec[1], args.steps)
    times = {name: {"steps": [], "eval": []} for name in runs}
    for _ in range(args.rounds):
        for name, ((trainer, _, valid, _), counts) in runs.items():
            if counts is not None:
                features.token_counts = counts
            own = sas_batches if name == "SASRec" else train_batches
            times[name]["steps"].append(steps_s(trainer, own))
            times[name]["eval"].append(one_evaluation(trainer, valid))
    features.token_counts = by_length
    median = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    for name, ((_, train, _, _), _) in runs.items():  # one epoch's training steps and its validation, estimated
        median[name]["epoch"] = median[name]["steps"] / args.steps * len(train) + median[name]["eval"]
    sorted_, unsorted, base = (median["block 1, chunks by length"], median["block 1, chunks in id order"],
                               median["frozen (default)"])
    result = {
        "dataset": args.dataset, "threads": args.threads, "steps": args.steps, "rounds": args.rounds,
        "windows_per_batch": int(train_batches[0]["item_id_list"].shape[0]) if train_batches else None,
        "sasrec_rows_per_batch": int(sas_batches[0]["item_id_list"].shape[0]) if sas_batches else None,
        "block_settings": PMMREC[BLOCK_LABEL], "median_s": median, "all_s": times,
        "epoch_ratio_block_vs_sasrec": sorted_["epoch"] / median["SASRec"]["epoch"],
        "step_ratio_id_order_vs_by_length": unsorted["steps"] / sorted_["steps"],
        "eval_ratio_id_order_vs_by_length": unsorted["eval"] / sorted_["eval"],
        "step_ratio_block_vs_frozen": sorted_["steps"] / base["steps"],
        "eval_ratio_block_vs_frozen": sorted_["eval"] / base["eval"],
    }
    for name, m in median.items():
        print(f"{name:>28}: {args.steps} training steps {m['steps']:.2f} s, full evaluation {m['eval']:.2f} s, "
              f"one epoch ~{m['epoch']:.0f} s")
    print(f"block 1, id order / by length: training steps {result['step_ratio_id_order_vs_by_length']:.2f}x, "
          f"evaluation {result['eval_ratio_id_order_vs_by_length']:.2f}x (medians of {args.rounds} rounds)")
    print(f"block 1 (by length) / frozen: training steps {result['step_ratio_block_vs_frozen']:.2f}x, "
          f"evaluation {result['eval_ratio_block_vs_frozen']:.2f}x; one epoch "
          f"{result['epoch_ratio_block_vs_sasrec']:.2f}x SASRec's")
    out = REPO / "bench" / "results" / f"top_block_cost_{args.dataset}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
