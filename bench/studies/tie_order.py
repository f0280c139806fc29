"""Does the order of a user's same-timestamp rows carry a label? A training-free check per data set.

Day-granular data ties many rows (a user's purchases of one day); RecBole keeps their file order, and the last row
becomes the test target. Where that order follows the item ids (the SeqRec Amazon copies), a model that learns
*directed* item-to-item transitions gains from it, and one that learns similarity does not. This study scores two
item-to-item transition-count models, training-free, on the leave-one-out split (train = all but each user's last two
items; test = the last item given the rest; history items removed; full ranking; ties broken by item id):

- directed: score(j | last item i) = count(i -> j), the next-item counts;
- undirected: count(i -> j) + count(j -> i).

Each on the file order of the converted atomic files, and on the same rows with every tie ordered by a hash of (user,
item) (what ``dataset_tools.convert --ties hash`` writes). If the file order holds an id label, the directed model
wins on the file order and loses it on the hashed one.

    python bench/studies/tie_order.py --data-dir /tmp/pmmrec_data --datasets seqrec-toys ml100k-posters ...

Writes bench/results/tie_order.json (``--out``) and prints one line per data set and order. Seconds per data set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


INTER_COLS = ("user_id:token", "item_id:token", "timestamp:float")


def read_sequences(folder: Path, name: str) -> dict[str, list[tuple[float, str]]]:
    """user -> [(time, item)] in the .inter file's order (which the converter sorted by time, ties as written); the
    users in the order they first appear. A missing column or a bad row exits with the file and line."""
    path = folder / name / f"{name}.inter"
    seqs: dict[str, list[tuple[float, str]]] = defaultdict(list)
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        missing = [c for c in INTER_COLS if c not in header]
        if missing:
            raise SystemExit(f"{path}: no column {', '.join(missing)} (a file written by dataset_tools.convert has them)")
        u, i, t = (header.index(c) for c in INTER_COLS)
        for n, line in enumerate(fh, start=2):
            cells = line.rstrip("\n").split("\t")
            try:
                seqs[cells[u]].append((float(cells[t]), cells[i]))
            except (IndexError, ValueError):
                raise SystemExit(f"{path}, line {n}: not a (user, item, timestamp) row: {line[:80]!r}") from None
    return seqs


def _hash(user: str, item: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{user}\t{item}".encode(), digest_size=8).digest(), "big")


def ordered(seqs: dict, order: str) -> dict[str, list[str]]:
    """Item sequences: the file order (``file``; time-sorted already), or by (time, hash(user, item)) (``hash``)."""
    if order == "file":
        return {u: [i for _, i in s] for u, s in seqs.items()}
    return {u: [i for _, _, i in sorted((t, _hash(u, i), i) for t, i in s)] for u, s in seqs.items()}


def tie_stats(seqs: dict) -> dict:
    pairs = tied = last_tied = 0
    for s in seqs.values():
        pairs += len(s) - 1
        tied += sum(a[0] == b[0] for a, b in zip(s, s[1:]))
        last_tied += len(s) > 1 and s[-1][0] == s[-2][0]
    return {"rows_tied_with_previous": round(tied / max(pairs, 1), 4),
            "test_targets_tied_with_previous": round(last_tied / max(len(seqs), 1), 4)}


def transition_scores(sequences: dict[str, list[str]]) -> dict:
    """NDCG@10 / Recall@10 of the directed and undirected transition counts on the last item of each user."""
    forward: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for s in sequences.values():
        train = s[:-2]
        for a, b in zip(train, train[1:]):
            forward[a][b] += 1
    backward: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for a, row in forward.items():
        for b, c in row.items():
            backward[b][a] += c
    out = {}
    for kind in ("directed", "undirected"):
        ndcg = hits = n = 0.0
        for s in sequences.values():
            if len(s) < 3:
                continue
            history, target, last = s[:-1], s[-1], s[-2]
            scores: dict[str, int] = defaultdict(int)
            for b, c in forward.get(last, {}).items():
                scores[b] += c
            if kind == "undirected":
                for b, c in backward.get(last, {}).items():
                    scores[b] += c
            seen = set(history)
            top = sorted((item for item in scores if item not in seen), key=lambda i: (-scores[i], i))[:10]
            n += 1
            if target in top:
                hits += 1
                ndcg += 1.0 / math.log2(top.index(target) + 2)
        out[kind] = {"ndcg@10": round(ndcg / max(n, 1), 4), "recall@10": round(hits / max(n, 1), 4), "rows": int(n)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="converted data sets (DATA/NAME/NAME.inter)")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tie_order.json")
    args = ap.parse_args(argv)
    results = {}
    for name in args.datasets:
        if not (args.data_dir / name / f"{name}.inter").is_file():
            print(f"error: {args.data_dir / name / (name + '.inter')} not found: convert {name} first", file=sys.stderr)
            return 2
        started = time.time()
        seqs = read_sequences(args.data_dir, name)
        row = {"users": len(seqs), **tie_stats(seqs)}
        for order in ("file", "hash"):
            row[order] = transition_scores(ordered(seqs, order))
            d, u = row[order]["directed"]["ndcg@10"], row[order]["undirected"]["ndcg@10"]
            print(f"{name:22s} {order:4s} order: directed NDCG@10 {d:.4f}, undirected {u:.4f} "
                  f"(directed / undirected {d / max(u, 1e-12):.2f}); rows tied {row['rows_tied_with_previous']:.2f}, "
                  f"test targets tied {row['test_targets_tied_with_previous']:.2f}", flush=True)
        row["seconds"] = round(time.time() - started, 1)
        results[name] = row
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {"study": "tie_order", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "data_dir": str(args.data_dir),
              "command": "python bench/studies/tie_order.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "datasets": results}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
