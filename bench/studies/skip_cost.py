"""What ``content_skip`` costs per training step and per full evaluation, measured side by side in one process.

    .venv/bin/python bench/studies/skip_cost.py --data-dir /tmp/pmmrec_data --dataset seqrec-toys [--threads 1]

Builds PMMRec twice on a text data set with the plugin's factories (the same seed, data and batches), once with
``content_skip: 0`` and once with the text default's 5.0, and a RecBole SASRec for scale. It then alternates:
``--steps`` training steps of each PMMRec (forward, backward, Adam step) on the same batches, and a full
evaluation of each on the validation data, ``--rounds`` times, so that every model sees the same machine load.
With ``--zca`` a third PMMRec joins them: the skip in ContentKNN zca's geometry (``knn_whiten: zca``,
``content_skip_dim: 384``, every direction of MiniLM's space instead of the top 64). Prints the medians and their
ratios; writes ``bench/results/skip_cost_<dataset>.json`` (with ``--zca``: ``skip_cost_<dataset>_zca.json``, so
the two-model file stays as it was). The time is the cost of
the term itself (the recency-weighted profile of each window position, one more matrix product against the
catalogue), not of training to convergence, which the quality runs report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.studies.eval_cost import build, one_evaluation  # noqa: E402  (the same factories and evaluation)


def batches(loader, n: int) -> list:
    out = []
    for batch in itertools.islice(iter(loader), n):
        out.append(batch[0] if isinstance(batch, tuple) else batch)
    return out


def steps_s(trainer, batch_list) -> float:
    """Seconds for one training step on each batch (forward, backward, optimizer step)."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    start = time.perf_counter()
    for batch in batch_list:
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss = sum(loss) if isinstance(loss, tuple) else loss
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def step_study_parser(doc: str, work_dir: str, steps: int, rounds: int) -> argparse.ArgumentParser:
    """The options of a study that alternates training steps and evaluations of models built side by side."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="seqrec-toys")
    ap.add_argument("--cache-dir", default="/tmp/pmmrec_bench/cache")
    ap.add_argument("--work-dir", default=work_dir)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--rounds", type=int, default=rounds)
    return ap


def main(argv=None) -> dict:
    ap = step_study_parser(__doc__, "/tmp/pmmrec_bench/skip_cost", steps=20, rounds=5)
    ap.add_argument("--zca", action="store_true", help="also the skip in ContentKNN zca's geometry on 384 directions")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    models = {"off": build("PMMRec", args, content_skip=0.0, threads=args.threads),
              "skip 5.0": build("PMMRec", args, content_skip=5.0, threads=args.threads)}
    if args.zca:
        models["skip zca 384"] = build("PMMRec", args, content_skip=5.0, knn_whiten="zca", content_skip_dim=384,
                                       threads=args.threads)
    sasrec = build("SASRec", args, threads=args.threads)
    train_batches = batches(models["off"][1], args.steps)
    sas_batches = batches(sasrec[1], args.steps)
    times = {name: {"steps": [], "eval": []} for name in [*models, "SASRec"]}
    for _ in range(args.rounds):
        for name, (trainer, _, valid, _) in models.items():
            times[name]["steps"].append(steps_s(trainer, train_batches))
            times[name]["eval"].append(one_evaluation(trainer, valid))
        times["SASRec"]["steps"].append(steps_s(sasrec[0], sas_batches))
        times["SASRec"]["eval"].append(one_evaluation(sasrec[0], sasrec[2]))
    median = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    result = {
        "dataset": args.dataset, "threads": args.threads, "steps": args.steps, "rounds": args.rounds,
        "windows_per_batch": int(train_batches[0]["item_id_list"].shape[0]) if train_batches else None,
        "sasrec_rows_per_batch": int(sas_batches[0]["item_id_list"].shape[0]) if sas_batches else None,
        "median_s": median, "all_s": times,
        "step_ratio_skip_vs_off": median["skip 5.0"]["steps"] / median["off"]["steps"],
        "eval_ratio_skip_vs_off": median["skip 5.0"]["eval"] / median["off"]["eval"],
    }
    if args.zca:
        result["step_ratio_zca_vs_skip"] = median["skip zca 384"]["steps"] / median["skip 5.0"]["steps"]
        result["eval_ratio_zca_vs_skip"] = median["skip zca 384"]["eval"] / median["skip 5.0"]["eval"]
    for name, m in median.items():
        print(f"{name:>9}: {args.steps} training steps {m['steps']:.2f} s, full evaluation {m['eval']:.2f} s")
    print(f"content_skip 5.0 / off: training steps {result['step_ratio_skip_vs_off']:.2f}x, "
          f"evaluation {result['eval_ratio_skip_vs_off']:.2f}x (medians of {args.rounds} rounds)")
    if args.zca:
        print(f"skip zca 384 / skip 5.0: training steps {result['step_ratio_zca_vs_skip']:.2f}x, "
              f"evaluation {result['eval_ratio_zca_vs_skip']:.2f}x")
    out = REPO / "bench" / "results" / f"skip_cost_{args.dataset}{'_zca' if args.zca else ''}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
