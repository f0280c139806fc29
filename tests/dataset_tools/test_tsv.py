"""The ``tsv`` converter (the seqrec_* / ml1m_posters layout): counts, file contents, options,
timestamps that are not finite numbers, raw tabs and newlines, HTML character references."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dataset_tools.convert import main, run
from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.hashing import file_sha256

from .conftest import REPO, nothing_written, recbole_dataset


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


def _write(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tsv_dir(tmp_path, make_image):
    """ml1m_posters-shaped input: 3 users, items 1..4 (4 unused), a rating column, posters for 1 and 2."""
    root = tmp_path / "mini_posters"
    _write(root / "interactions.tsv", ["user_id\titem_id\ttimestamp\trating",
                                       "100\t2\t20\t5", "100\t1\t10\t3", "101\t1\t10\t4", "101\t3\t30\t1",
                                       "102\t3\t5\t2", "102\t2\t5\t2", "102\t9\t7\t1"])  # item 9 is unknown
    _write(root / "items.tsv", ["item_id\ttitle\tgenres",
                                "1\tToy Story (1995)\tAnimation Children's Comedy",
                                "2\tBarnes &amp; Noble &quot;Nook&quot; Rock&reg Barnes&noble\tDrama",
                                "3\t\"Quoted\" title\t",
                                "4\tUnused\tDrama",
                                "1\tDuplicate\tDrama"])
    make_image(root / "posters" / "1.jpg")
    make_image(root / "posters" / "2.png", fmt="PNG")
    return root


def _convert(root: Path, out: Path, *extra: str) -> dict:
    return run(["tsv", "--input", str(root), "--output", str(out), "--quiet", *extra])


def test_tsv_layout(tsv_dir, tmp_path):
    meta = _convert(tsv_dir, tmp_path / "out")
    assert meta["name"] == "mini-posters"  # the folder's name, '_' written '-'
    root = tmp_path / "out" / "mini-posters"
    assert meta["counts"] == {"users": 3, "items": 3, "interactions": 6, "images": 2, "items_without_image": 1,
                              "items_without_text": 0, "empty_text_fields": {"title": 0, "genres": 1}}
    assert meta["dropped"] == {"image_missing": 2, "interaction_unknown_item": 1, "item_duplicate_row": 1,
                               "item_without_interactions": 1}
    assert meta["fallbacks"] == {"html_entities_decoded": 1, "image_reencoded_PNG_RGB": 1}
    assert meta["text_fields"] == ["title", "genres"] and meta["format"] == "tsv"
    # by user (first appearance), then time; ties keep the file's order; the rating column is ignored
    assert _rows(root / "mini-posters.inter") == [["user_id:token", "item_id:token", "timestamp:float"],
                                                  ["100", "1", "10"], ["100", "2", "20"], ["101", "1", "10"],
                                                  ["101", "3", "30"], ["102", "3", "5"], ["102", "2", "5"]]
    assert _rows(root / "mini-posters.item") == [
        ["item_id:token", "title:token_seq", "genres:token_seq"],
        ["1", "Toy Story (1995)", "Animation Children's Comedy"],
        ["2", 'Barnes & Noble "Nook" Rock&reg Barnes&noble', "Drama"],  # only ';'-terminated references
        ["3", '"""Quoted"" title"', ""]]
    assert sorted(p.name for p in (root / "mini-posters.images").iterdir()) == ["1.jpg", "2.jpg"]
    assert (root / "mini-posters.images" / "1.jpg").read_bytes() == (tsv_dir / "posters" / "1.jpg").read_bytes()
    sha = meta["files"]["sha256"]
    assert sha == {n: file_sha256(root / n) for n in ("mini-posters.inter", "mini-posters.item")}
    assert json.loads((root / "mini-posters.meta.json").read_text())["counts"] == meta["counts"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mini-posters"]  # no staging left


def test_tsv_loads_in_recbole(tsv_dir, tmp_path):
    _convert(tsv_dir, tmp_path / "data", "--name", "ml1m-posters")
    dataset = recbole_dataset("ml1m-posters", tmp_path / "data")
    assert (dataset.user_num, dataset.item_num, dataset.inter_num) == (4, 4, 6)  # + [PAD]
    text = pd.read_csv(tmp_path / "data" / "ml1m-posters" / "ml1m-posters.item", sep="\t", dtype=str, keep_default_na=False)
    assert text["title:token_seq"].tolist()[2] == '"Quoted" title'


@pytest.mark.parametrize("name", ["ml1m-posters", "seqrec-toys", "seqrec-beauty", "seqrec-clothing", "seqrec-health",
                                  "seqrec-books", "seqrec-electronics", "seqrec-food"])
def test_dataset_yaml_matches_the_converter(name):
    import yaml

    config = yaml.safe_load((REPO / "properties" / "dataset" / f"{name}.yaml").read_text())
    fields = ["title", "genres"] if name == "ml1m-posters" else ["title"]
    assert config["text_fields"] == fields and config["load_col"]["item"] == ["item_id", *fields]
    assert config["load_col"]["inter"] == ["user_id", "item_id", "timestamp"] and config["image_dir"] is None
    assert "modalities" not in config and f"--input <{name.replace('-', '_')}>" in (REPO / "properties" / "dataset" / f"{name}.yaml").read_text()


def _tied_input(root: Path, id_ordered: bool) -> Path:
    """60 users who each have 5 items on one day and 1 later: the day's items listed by ascending id
    (``id_ordered``, as the SeqRec Amazon copies list them) or in a scrambled order."""
    import random

    rng = random.Random(0)
    rows = ["user_id\titem_id\ttimestamp"]
    for u in range(60):
        day = sorted(rng.sample(range(100, 140), 5))
        if not id_ordered:
            rng.shuffle(day)
        rows += [f"{u}\t{i}\t86400" for i in day] + [f"{u}\t{140 + u % 5}\t172800"]
    _write(root / "interactions.tsv", rows)
    _write(root / "items.tsv", ["item_id\ttitle"] + [f"{i}\titem {i}" for i in range(100, 145)])
    return root


def _sequences(root: Path) -> dict[str, list[str]]:
    seqs: dict[str, list[str]] = {}
    for user, item, _ in _rows(root)[1:]:
        seqs.setdefault(user, []).append(item)
    return seqs


def test_ties_in_id_order_are_hashed_by_default_and_kept_on_request(tmp_path):
    src = _tied_input(tmp_path / "sorted_days", id_ordered=True)
    meta = _convert(src, tmp_path / "auto")
    ties = meta["ties"]
    assert ties["option"] == "auto" and ties["applied"] == "hash" and ties["tied_pairs"] == 60 * 4
    assert ties["one_way_share"]["item_id_order"] == 1.0
    hashed = _sequences(tmp_path / "auto" / "sorted-days" / "sorted-days.inter")
    kept = _sequences(tmp_path / "keep" / "sorted-days" / "sorted-days.inter") if _convert(
        src, tmp_path / "keep", "--ties", "keep")["ties"]["applied"] == "keep" else None
    assert kept is not None and hashed.keys() == kept.keys()
    for user in kept:  # same rows, same days; only the order within the day moved (and not by id any more)
        assert kept[user][:5] == sorted(kept[user][:5]) and sorted(hashed[user][:5]) == kept[user][:5]
        assert hashed[user][5] == kept[user][5]
    moved = sum(hashed[u][:5] != kept[u][:5] for u in kept)
    assert moved >= 55  # a random order of 5 items is the sorted one 1 time in 120
    pairs = [(int(a), int(b)) for seq in hashed.values() for a, b in zip(seq[:4], seq[1:5])]
    assert 0.35 < sum(a < b for a, b in pairs) / len(pairs) < 0.65
    again = _convert(src, tmp_path / "again")  # deterministic: the hash of (user, item), not a random draw
    assert (tmp_path / "again" / "sorted-days" / "sorted-days.inter").read_bytes() == \
        (tmp_path / "auto" / "sorted-days" / "sorted-days.inter").read_bytes()
    assert again["ties"] == ties


def test_ties_in_no_id_order_keep_the_file_order(tmp_path):
    src = _tied_input(tmp_path / "scrambled", id_ordered=False)
    meta = _convert(src, tmp_path / "out")
    assert meta["ties"]["applied"] == "keep" and meta["ties"]["tied_pairs"] == 60 * 4
    assert max(meta["ties"]["one_way_share"].values()) < 0.9
    written = _sequences(tmp_path / "out" / "scrambled" / "scrambled.inter")
    given = _sequences(src / "interactions.tsv")
    assert written == given
    forced = _convert(src, tmp_path / "forced", "--ties", "hash")["ties"]
    assert forced["option"] == "hash" and forced["applied"] == "hash"


def test_tsv_options(tmp_path, make_image):
    root = tmp_path / "in"
    _write(root / "clicks.txt", ["when\twho\twhat", "3\tu1\ta", "1\tu1\tb", "2\tu2\ta"])
    _write(root / "catalogue.txt", ["desc\twhat\tname", "first &amp; best\ta\tA", "second\tb\tB"])
    make_image(root / "pics" / "a.jpg")
    make_image(root / "posters" / "b.jpg")  # ignored: --images names another folder
    args = ["--interactions", str(root / "clicks.txt"), "--items", str(root / "catalogue.txt"), "--user-column", "who",
            "--item-column", "what", "--time-column", "when", "--text-columns", "name", "desc", "--images", str(root / "pics")]
    meta = _convert(root, tmp_path / "out", "--name", "custom", *args)
    out = tmp_path / "out" / "custom"
    assert _rows(out / "custom.inter")[1:] == [["u1", "b", "1"], ["u1", "a", "3"], ["u2", "a", "2"]]
    assert _rows(out / "custom.item") == [["item_id:token", "name:token_seq", "desc:token_seq"],
                                          ["a", "A", "first & best"], ["b", "B", "second"]]
    assert meta["counts"]["images"] == 1 and meta["dropped"] == {"image_missing": 1}
    meta = _convert(root, tmp_path / "out2", "--name", "custom", *args, "--no-images", "--time-column", "")
    assert meta["counts"]["images"] == 0 and meta["source"]["images"] is None
    # no time column: each user's rows keep their file order as positions
    assert _rows(tmp_path / "out2" / "custom" / "custom.inter")[1:] == [["u1", "a", "0"], ["u1", "b", "1"], ["u2", "a", "0"]]


@pytest.mark.parametrize("args, message", [
    (["--user-column", "uid"], r"interactions.tsv: no column 'uid' .*--user-column"),
    (["--text-columns", "plot"], r"items.tsv: no column 'plot' .*--text-columns"),
    (["--text-columns", "item_id"], r"text column 'item_id' cannot be an .item field name"),
    (["--images", "/nonexistent/pics"], r"--images /nonexistent/pics is not a folder"),
])
def test_tsv_bad_options_are_errors_that_name_the_file(tsv_dir, tmp_path, args, message):
    with pytest.raises(PMMRecDataError, match=message):
        _convert(tsv_dir, tmp_path / "out", *args)
    assert nothing_written(tmp_path / "out")


@pytest.mark.parametrize("stamp", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1e400", "abc", "", " ", "1_000", "0x10"])
def test_tsv_timestamps_that_are_not_finite_numbers_are_counted_drops(tsv_dir, tmp_path, stamp, capsys):
    path = tsv_dir / "interactions.tsv"
    lines = path.read_text().splitlines()
    lines[2] = f"100\t1\t{stamp}\t3"  # line 3 of the file
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert main(["tsv", "--input", str(tsv_dir), "--output", str(out), "--quiet"]) == 0
    meta = json.loads((out / "mini-posters" / "mini-posters.meta.json").read_text())
    assert meta["dropped"]["interaction_bad_timestamp"] == 1 and meta["counts"]["interactions"] == 5
    assert meta["examples"]["interaction_bad_timestamp"] == [
        f"{path}, line 3, column 'timestamp': {stamp!r} is not a finite number"]
    assert "dropped: " in capsys.readouterr().out
    inter = pd.read_csv(out / "mini-posters" / "mini-posters.inter", sep="\t")
    assert inter["timestamp:float"].notna().all() and (inter["timestamp:float"].abs() < 1e300).all()
    # --strict: an error naming file, line and column; nothing written
    assert main(["tsv", "--input", str(tsv_dir), "--output", str(tmp_path / "strict"), "--quiet", "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"{path}, line 3, column 'timestamp'" in err and "--strict" in err
    assert nothing_written(tmp_path / "strict")


def test_tsv_short_row_and_raw_tab_or_newline_in_a_title(tsv_dir, tmp_path):
    (tsv_dir / "items.tsv").write_text(
        "item_id\ttitle\tgenres\n1\tToy\tStory\tComedy\n2\tline\nbreak\tDrama\n3\tok\tDrama\n", encoding="utf-8")
    with open(tsv_dir / "interactions.tsv", "a") as fh:
        fh.write("103\t3\n")  # a short row: no timestamp cell
    meta = _convert(tsv_dir, tmp_path / "out")
    assert meta["dropped"]["item_malformed_line"] == 3 and meta["dropped"]["interaction_malformed_line"] == 1
    assert meta["examples"]["item_malformed_line"][0] == f"{tsv_dir / 'items.tsv'}, line 2: 4 cells, the header has 3"
    items = _rows(tmp_path / "out" / "mini-posters" / "mini-posters.item")
    assert items == [["item_id:token", "title:token_seq", "genres:token_seq"], ["3", "ok", "Drama"]]
