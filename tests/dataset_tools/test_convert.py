"""The converters end to end on tiny inputs: counts, file contents, RecBole can load the result,
bad input is counted (or refused with --strict), output is never overwritten silently or half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dataset_tools import writer
from dataset_tools.base import ItemRecord, Report, SourceDataset
from dataset_tools.convert import main, run
from dataset_tools.images import file_ref
from dataset_tools.text import clean_text
from dataset_tools.writer import WriteOptions, write_dataset
from recbole_pmmrec.errors import PMMRecDataError

from .conftest import image_bytes, recbole_dataset

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")[:-1]]


def _convert_ml(ml100k_dir, out, *extra):
    return run(["movielens-posters", "--input", str(ml100k_dir), "--output", str(out), "--quiet", *extra])


def test_movielens_posters(ml100k_dir, tmp_path):
    meta = _convert_ml(ml100k_dir, tmp_path / "out")
    root = tmp_path / "out" / "ml100k-posters"
    assert meta["counts"] == {"users": 4, "items": 5, "interactions": 20, "images": 3, "items_without_image": 2,
                              "items_without_text": 0, "empty_text_fields": {"title": 0, "genres": 1, "overview": 2}}
    assert meta["dropped"] == {"image_corrupt": 1, "image_missing": 2, "interaction_unknown_item": 1,
                               "item_duplicate_row": 1, "item_without_interactions": 1, "tmdb_duplicate_row": 1}
    assert meta["fallbacks"] == {"image_reencoded_JPEG_CMYK": 1, "image_reencoded_PNG_L": 1, "text_lines_decoded_as_latin-1": 1}
    inter = _rows(root / "ml100k-posters.inter")
    assert inter[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    assert inter[1:6] == [["1", str(i), str(880000000 + 100 * (i - 1) + 1)] for i in range(1, 6)]
    items = _rows(root / "ml100k-posters.item")
    assert items[0] == ["item_id:token", "title:token_seq", "genres:token_seq", "overview:token_seq"]
    assert all(len(r) == 4 for r in items) and len(items) == 6  # tab and newline in an overview did not break rows
    assert items[1] == ["1", "Toy Story (1995)", "Animation Children's Comedy", "Woody and Buzz. A tab and a newline"]
    assert items[2] == ["2", "Café Society (1995)", "Drama", 'She said "hi" in Paris']
    assert items[3] == ["3", "Three (1996)", "", ""]
    assert items[4] == ["4", "Four (1996)", "Action War", '"""Four"" is a film"']  # starts with '"': CSV-quoted
    images = root / "ml100k-posters.images"
    assert sorted(p.name for p in images.iterdir()) == ["1.jpg", "2.jpg", "5.jpg"]
    assert (images / "1.jpg").read_bytes() == (ml100k_dir / "posters" / "1.jpg").read_bytes()
    for name in ("2.jpg", "5.jpg"):
        with Image.open(images / name) as im:
            im.load()
            assert (im.format, im.mode) == ("JPEG", "RGB")
    on_disk = json.loads((root / "ml100k-posters.meta.json").read_text())
    assert on_disk["counts"] == meta["counts"] and on_disk["text_fields"] == ["title", "genres", "overview"]
    assert on_disk["options"]["input"] == str(ml100k_dir) and on_disk["converter"]["version"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left


def test_recbole_loads_the_converted_files_with_the_dataset_yaml(ml100k_dir, tmp_path):
    _convert_ml(ml100k_dir, tmp_path / "data")
    dataset = recbole_dataset("ml100k-posters", tmp_path / "data")
    assert (dataset.user_num, dataset.item_num, dataset.inter_num) == (5, 6, 20)  # + [PAD]
    row = dataset.token2id("item_id", "2")
    words = lambda f: [dataset.field2id_token[f][t] for t in dataset.item_feat[f][row].tolist() if t]  # noqa: E731
    assert words("title") == ["Café", "Society", "(1995)"]
    assert words("overview") == ["She", "said", '"hi"', "in", "Paris"]
    row = dataset.token2id("item_id", "4")
    assert words("overview") == ['"Four"', "is", "a", "film"]
    text = pd.read_csv(tmp_path / "data" / "ml100k-posters" / "ml100k-posters.item", sep="\t", dtype=str,
                       keep_default_na=False, engine="c")
    assert text["overview:token_seq"].tolist()[1:4] == ['She said "hi" in Paris', "", '"Four" is a film']


def test_strict_refuses_an_unknown_item(ml100k_dir, tmp_path):
    with pytest.raises(PMMRecDataError, match=r"item '99' is not in the item file.*--strict"):
        _convert_ml(ml100k_dir, tmp_path / "out", "--strict")
    assert not (tmp_path / "out" / "ml100k-posters").exists()


def test_existing_output_is_never_overwritten_silently(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "out"
    _convert_ml(ml100k_dir, out)
    marker = out / "ml100k-posters" / "mine.txt"
    marker.write_text("keep")
    with pytest.raises(PMMRecDataError, match=r"already exists and is not empty; pass --force"):
        _convert_ml(ml100k_dir, out)
    assert marker.read_text() == "keep"
    assert main(["movielens-posters", "--input", str(ml100k_dir), "--output", str(out), "--quiet"]) == 2
    assert "error: output folder" in capsys.readouterr().err
    _convert_ml(ml100k_dir, out, "--force")
    assert not marker.exists() and (out / "ml100k-posters" / "ml100k-posters.inter").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["ml100k-posters"]


def test_an_interrupted_conversion_leaves_nothing_under_the_final_name(ml100k_dir, tmp_path, monkeypatch):
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return "copied"

    monkeypatch.setattr(writer, "save_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _convert_ml(ml100k_dir, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_microlens_positions_become_timestamps(microlens_dir, tmp_path):
    meta = run(["microlens", "--input", str(microlens_dir), "--output", str(tmp_path / "out"), "--quiet"])
    root = tmp_path / "out" / "microlens-50k"
    assert meta["counts"]["users"] == 3 and meta["counts"]["items"] == 4 and meta["counts"]["interactions"] == 7
    assert meta["counts"]["images"] == 0 and meta["counts"]["items_without_image"] == 4
    assert meta["dropped"] == {"interaction_unknown_item": 1, "item_duplicate_row": 1, "item_without_interactions": 1}
    assert _rows(root / "microlens-50k.inter")[1:] == [
        ["u1", "10", "0"], ["u1", "11", "1"], ["u1", "12", "2"], ["u1", "10", "3"],
        ["u2", "12", "0"], ["u2", "13", "1"], ["u3", "11", "0"]]
    assert _rows(root / "microlens-50k.item") == [["item_id:token", "title:token_seq"], ["10", "a cat, a dog"],
                                                  ["11", "plain title"], ["12", "multi line # tag"], ["13", "thirteen"]]


def test_command_line_entry_point(microlens_dir, tmp_path):
    cmd = [sys.executable, "-m", "dataset_tools.convert", "microlens", "--input", str(microlens_dir),
           "--output", str(tmp_path / "out"), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 users, 4 items, 7 interactions, 0 images" in done.stdout
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "--force" in again.stderr


def _kcore_reference(pairs: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    while True:
        users, items = Counter(u for u, _ in pairs), Counter(i for _, i in pairs)
        kept = [(u, i) for u, i in pairs if users[u] >= k and items[i] >= k]
        if kept == pairs:
            return pairs
        pairs = kept


@pytest.mark.parametrize("i3_image", ["valid", "corrupt"])
def test_amazon2018(amazon_files, tmp_path, i3_image):
    if i3_image == "corrupt":  # i3 has no text: without its image it goes, and the 2-core shrinks again
        (amazon_files / "images" / "i3.jpg").write_bytes(image_bytes(size=(64, 64))[:300])  # truncated
    meta = run(["amazon2018", "--reviews", str(amazon_files / "Toys_and_Games.json.gz"),
                "--meta", str(amazon_files / "meta_Toys_and_Games.json.gz"), "--image-dir", str(amazon_files / "images"),
                "--kcore", "2", "--output", str(tmp_path / "out"), "--quiet"])
    assert meta["name"] == "amazon-toys_and_games"
    root = tmp_path / "out" / meta["name"]
    got = [(u, i) for u, i, _ in _rows(root / f"{meta['name']}.inter")[1:]]
    reviews = [("A", "i1"), ("A", "i2"), ("A", "i3"), ("B", "i1"), ("B", "i2"), ("C", "i2"), ("C", "i3"),
               ("D", "i4"), ("D", "i1"), ("E", "i5")]  # without the duplicate and the item lacking meta
    if i3_image == "corrupt":
        reviews = [p for p in reviews if p[1] != "i3"]
    expected = _kcore_reference(reviews, 2)
    assert sorted(got) == sorted(expected) and len(expected) == (7 if i3_image == "valid" else 4)
    assert meta["dropped"]["interaction_duplicate"] == 1 and meta["dropped"]["review_unparseable_line"] == 1
    assert meta["dropped"]["interaction_unknown_item"] == 2 and meta["dropped"]["item_duplicate_row"] == 1
    assert meta["fallbacks"]["meta_python_literal_line"] == 1
    items = {r[0]: r[1:] for r in _rows(root / f"{meta['name']}.item")[1:]}
    assert items["i1"] == ["Robot Toy", "Acme", "Toys & Games, Robots", "Walks & talks. Batteries included"]
    assert items["i2"] == ["Python literal", "", "", "A plain string"]
    images = sorted(p.name for p in (root / f"{meta['name']}.images").iterdir())
    assert images == (["i1.jpg", "i3.jpg"] if i3_image == "valid" else ["i1.jpg"])
    if i3_image == "corrupt":
        assert meta["dropped"]["image_corrupt"] == 1 and meta["dropped"]["item_without_text_or_image"] == 1


def test_empty_dataset_is_a_clear_error(microlens_dir, tmp_path):
    (microlens_dir / "MicroLens-50k_pairs.tsv").write_text("u1\t98 99\n")
    with pytest.raises(PMMRecDataError, match=r"nothing to write.*interaction_unknown_item': 2"):
        run(["microlens", "--input", str(microlens_dir), "--output", str(tmp_path / "out"), "--quiet"])
    assert list((tmp_path / "out").iterdir()) == []


def _traversal_source(image: Path) -> SourceDataset:
    src = SourceDataset("test", ["title"], {})
    for token in ["../../evil", ".hidden", "ok"]:
        src.items[token] = ItemRecord(text={"title": f"t {token}"}, image=file_ref(image))
        src.add("../u", token, 1.0)
        src.add("u2", token, 2.0)
    return src


def test_path_traversal_tokens_stay_inside_the_image_folder(tmp_path, make_image):
    image = make_image(tmp_path / "src.jpg")
    meta = write_dataset(_traversal_source(image), Report(), tmp_path / "out", "trav", WriteOptions())
    root = tmp_path / "out" / "trav"
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jpg"))
    assert files == [Path("out/trav/trav.images/%%2E%2E%2F%2E%2E%2Fevil.jpg"), Path("out/trav/trav.images/%%2Ehidden.jpg"),
                     Path("out/trav/trav.images/ok.jpg"), Path("src.jpg")]
    assert {r[1] for r in _rows(root / "trav.inter")[1:]} == {"%%2E%2E%2F%2E%2E%2Fevil", "%%2Ehidden", "ok"}
    assert {r[0] for r in _rows(root / "trav.inter")[1:]} == {"%%2E%2E%2Fu", "u2"}
    assert meta["renamed_tokens"]["item"] == {"../../evil": "%%2E%2E%2F%2E%2E%2Fevil", ".hidden": "%%2Ehidden"}
    with pytest.raises(PMMRecDataError, match=r"item token '\.\./\.\./evil' cannot be used as a file name"):
        write_dataset(_traversal_source(image), Report(), tmp_path / "out2", "trav", WriteOptions(unsafe_tokens="error"))
    assert list((tmp_path / "out2").iterdir()) == []
    for name in ["../escape", "a/b", ".hidden"]:
        with pytest.raises(PMMRecDataError, match="not a plain folder name"):
            write_dataset(_traversal_source(image), Report(), tmp_path / "out3", name, WriteOptions())
    assert not (tmp_path / "escape").exists()


def test_items_are_limited_by_pixels_and_counted(ml100k_dir, tmp_path):
    meta = _convert_ml(ml100k_dir, tmp_path / "out", "--max-pixels", "40")  # posters: 8x6 = 48 and 64x64 pixels
    assert meta["counts"]["images"] == 0 and meta["dropped"]["image_too_large"] == 4
    assert meta["counts"]["items"] == 5 and meta["counts"]["items_without_text"] == 0  # items keep their text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_item_cells_read_back_exactly_with_pandas(titles):
    """Whatever the text, each .item row stays one row and pandas (RecBole's reader) returns the cleaned text."""
    src = SourceDataset("test", ["title", "other"], {})
    for n, title in enumerate(titles):
        src.items[f"i{n}"] = ItemRecord(text={"title": clean_text(title), "other": clean_text('"' + title)})
        src.add("u", f"i{n}", float(n))
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(src, Report(), Path(tmp), "p", WriteOptions())
        for engine in ("python", "c"):
            df = pd.read_csv(Path(tmp) / "p" / "p.item", sep="\t", dtype=str, keep_default_na=False, engine=engine)
            assert df["title:token_seq"].tolist() == [clean_text(t) for t in titles]
            assert df["other:token_seq"].tolist() == [clean_text('"' + t) for t in titles]
