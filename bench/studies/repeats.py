"""A data set whose users repeat items, made from a converted one: the benchmark for ``exclude_history: ~``.

None of the real data sets here has a repeat (every SOURCE.md: "No user has the same item twice"), yet users of
re-purchase and replay data have many. This study writes a semi-synthetic copy: real users, real items, real
order, with re-purchases added. A seeded share of the users (``--rebuyers``) re-buy: after each of their
interactions, with probability ``--rate``, they buy again one of their last five distinct items (the most recent
twice as likely as the one before). About ``rebuyers * rate`` of the test targets then repeat an item of the
user's history (5% at the defaults, the share measured on a public Amazon set with repeat purchases).
``--users`` keeps a seeded sample of the users (the baselines' run time grows with them).

    python bench/studies/repeats.py --data-dir /tmp/pmmrec_data --dataset seqrec-beauty --users 6000

writes ``<data-dir>/<dataset>-repeats/`` (atomic files of the same columns; timestamps keep each user's order, a
second apart within a day) and prints the counts and the repeat shares. ``properties/dataset/<dataset>-repeats.yaml``
must exist for the suite to run it (seqrec-beauty-repeats has one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.studies.tie_order import INTER_COLS, read_sequences  # noqa: E402
from recbole_pmmrec.data.dataset import repeat_shares as dataset_repeat_shares  # noqa: E402


def with_repeats(history: list[tuple[str, float]], rate: float, rng: random.Random) -> list[tuple[str, float]]:
    """``history`` with a re-purchase after each row with probability ``rate``: one of the last five distinct items
    so far, weight 2^-age by recency; every row gets time = its day's time + its index (seconds), keeping order."""
    out: list[tuple[str, float]] = []
    recent: list[str] = []  # distinct items, most recent last
    for item, time in history:
        out.append((item, time))
        recent = [x for x in recent if x != item] + [item]
        if rng.random() < rate:
            last = recent[-5:][::-1]
            again = rng.choices(last, weights=[2.0 ** -age for age in range(len(last))])[0]
            out.append((again, time))
            recent = [x for x in recent if x != again] + [again]
    return [(item, time + k) for k, (item, time) in enumerate(out)]


def repeat_shares(seqs: dict[str, list[tuple[str, float]]]) -> dict[str, float]:
    """Share of leave-one-out targets that repeat an item of the user's earlier rows, per part (train, valid,
    test), by the definition ``exclude_history: ~`` decides with (``recbole_pmmrec.data.dataset.repeat_shares``)."""
    users = [u for u, rows in seqs.items() for _ in rows]
    items = [i for rows in seqs.values() for i, _ in rows]
    return {part: round(share, 4) for part, share in dataset_repeat_shares(users, items).items()}


def make(data_dir: Path, dataset: str, users: int | None, rebuyers: float, rate: float, seed: int) -> dict:
    src = data_dir / dataset
    name = f"{dataset}-repeats"
    seqs = {u: [(i, t) for t, i in rows] for u, rows in read_sequences(data_dir, dataset).items()}
    order = list(seqs)  # users in file order
    rng = random.Random(seed)
    if users and users < len(order):
        chosen = set(rng.sample(order, users))
        order = [u for u in order if u in chosen]
    out = {u: with_repeats(seqs[u], rate if rng.random() < rebuyers else 0.0, rng) for u in order}
    items = {i for rows in out.values() for i, _ in rows}

    tmp = data_dir / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with open(tmp / f"{name}.inter", "w", encoding="utf-8", newline="\n") as fh:
            fh.write("\t".join(INTER_COLS) + "\n")
            for u, rows in out.items():
                fh.writelines(f"{u}\t{i}\t{t:.0f}\n" for i, t in rows)
        with open(src / f"{dataset}.item", encoding="utf-8") as fin, \
                open(tmp / f"{name}.item", "w", encoding="utf-8", newline="\n") as fout:
            fout.write(fin.readline())
            fout.writelines(line for line in fin if line.split("\t", 1)[0] in items)
        (tmp / f"{name}.images").mkdir()
        stats = {"name": name, "from": dataset, "users": len(out), "items": len(items),
                 "interactions": sum(map(len, out.values())), "rebuyers": rebuyers, "rate": rate, "seed": seed,
                 "repeat_share": repeat_shares(out)}
        (tmp / f"{name}.meta.json").write_text(json.dumps({"name": name, "format": "repeats study",
                                                           "source": stats}, indent=1) + "\n")
        final = data_dir / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="folder of converted data sets")
    ap.add_argument("--dataset", required=True, help="a converted data set in --data-dir")
    ap.add_argument("--users", type=int, default=None, help="keep this many users (seeded sample); default all")
    ap.add_argument("--rebuyers", type=float, default=0.2, help="share of users who re-buy (default 0.2)")
    ap.add_argument("--rate", type=float, default=0.25, help="a re-buyer's chance of a re-purchase after a row")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.data_dir / args.dataset / f"{args.dataset}.inter").is_file():
        print(f"no {args.dataset}.inter in {args.data_dir / args.dataset}: convert it first (python -m "
              f"dataset_tools.convert ...)", file=sys.stderr)
        return 2
    if not (0 <= args.rebuyers <= 1 and 0 <= args.rate <= 1):
        print("--rebuyers and --rate are probabilities in [0, 1]", file=sys.stderr)
        return 2
    print(json.dumps(make(args.data_dir, args.dataset, args.users, args.rebuyers, args.rate, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
