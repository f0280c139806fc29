"""bench/studies/repeats.py on atomic files made up here: re-purchases added to users who never repeat."""

import random

from bench.studies import repeats as rp
from bench.studies.tie_order import read_sequences


def _write(folder, name, users=400, length=12):
    (folder / name).mkdir(parents=True)
    with open(folder / name / f"{name}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u in range(users):
            items = random.Random(u).sample(range(500), length)
            fh.writelines(f"u{u}\ti{i}\t{86400.0 * (k // 2)}\n" for k, i in enumerate(items))  # two rows a day
    with open(folder / name / f"{name}.item", "w") as fh:
        fh.write("item_id:token\ttitle:token_seq\n")
        fh.writelines(f"i{i}\ttitle {i}\n" for i in range(600))  # 100 items nobody has


def _read(folder, name):
    seqs = {u: [(i, t) for t, i in rows] for u, rows in read_sequences(folder, name).items()}
    return list(seqs), seqs


def test_repeats_are_earlier_items_of_the_same_user_in_order_and_shares_follow_the_rates(tmp_path):
    _write(tmp_path, "d")
    stats = rp.make(tmp_path, "d", users=300, rebuyers=0.5, rate=0.4, seed=1)
    order, seqs = _read(tmp_path, "d-repeats")
    _, before = _read(tmp_path, "d")
    assert stats["users"] == len(order) == 300 and set(order) <= set(before)
    n_rebuyers = 0
    for u in order:
        rows = seqs[u]
        times = [t for _, t in rows]
        assert times == sorted(times) and len(set(times)) == len(times)  # one order, no ties
        original = [i for i, _ in before[u]]
        added = len(rows) - len(original)
        n_rebuyers += added > 0
        # the original rows in their order, each added row a copy of one of the user's earlier items
        kept, seen = [], []
        for item, _ in rows:
            if kept != original and item == original[len(kept)] and item not in seen:
                kept.append(item)
            else:
                assert item in seen, (u, item)
            seen.append(item)
        assert kept == original
    assert 100 < n_rebuyers < 200  # about half the users re-buy
    # about rebuyers * rate of the test targets repeat (0.2 here), none in the source
    assert 0.12 < stats["repeat_share"]["test"] < 0.28 and rp.repeat_shares(before)["test"] == 0.0
    items = {line.split("\t", 1)[0] for line in open(tmp_path / "d-repeats" / "d-repeats.item").readlines()[1:]}
    assert items == {i for rows in seqs.values() for i, _ in rows}  # only items that someone has
    assert (tmp_path / "d-repeats" / "d-repeats.images").is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_repeats_refuses_a_missing_data_set_and_bad_rates(tmp_path, capsys):
    assert rp.main(["--data-dir", str(tmp_path), "--dataset", "nope"]) == 2
    assert "convert it first" in capsys.readouterr().err
    _write(tmp_path, "d", users=5)
    assert rp.main(["--data-dir", str(tmp_path), "--dataset", "d", "--rate", "1.5"]) == 2
    assert rp.main(["--data-dir", str(tmp_path), "--dataset", "d", "--seed", "3"]) == 0
