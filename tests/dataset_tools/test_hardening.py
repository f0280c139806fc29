"""Hostile input for every converter: HTML character references, timestamps that are not finite
numbers, deeply nested JSON, an --output that is a file, image links out of the image folder,
staging folders of killed runs, raw tabs and newlines in text. Each case: the exit code, a message
or a meta.json example naming the file (and line, column or key), and nothing half-written."""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dataset_tools import writer
from dataset_tools.base import ItemRecord, Report, SourceDataset
from dataset_tools.convert import main, run
from dataset_tools.text import strip_html, text_field
from dataset_tools.writer import WriteOptions, remove_stale_staging, write_dataset
from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.synthetic import make_synthetic_dataset

from .conftest import nothing_written, write_jsonl_gz


def _meta(out: Path, name: str) -> dict:
    return json.loads((out / name / f"{name}.meta.json").read_text())


def _items(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name / f"{name}.item", sep="\t", dtype=str, keep_default_na=False)


# ---------------------------------------------------------------- HTML character references

@pytest.mark.parametrize("raw, text", [
    ("Barnes &amp; Noble", "Barnes & Noble"), ("24&quot; TV", '24" TV'), ("Kid&#39;s", "Kid's"),
    ("&#x2605; star", "\u2605 star"), ("Dieu&#8230;Cr\u00e9a", "Dieu\u2026Cr\u00e9a"), ("it&#146;s", "it\u2019s"),
    ("a&nbsp;b", "a b"), ("tab&#9;and&#10;newline", "tab and newline"),
    ("Barnes&noble Rock&reg AT&T &bogus; & alone", "Barnes&noble Rock&reg AT&T &bogus; & alone"),  # left as they are
])
def test_only_terminated_references_are_decoded_and_counted(raw, text):
    report = Report()
    assert text_field(raw, report, "f:1") == text
    assert report.fallbacks["html_entities_decoded"] == (raw != text)
    assert strip_html(f"<p>{raw}</p>") == text


def test_movielens_titles_and_overviews(ml100k_dir, tmp_path):
    u_item = ml100k_dir / "ml-100k" / "u.item"
    u_item.write_bytes(u_item.read_bytes().replace(b"Three (1996)", b"Three &amp; Four &quot;1996&quot;"))
    tmdb = ml100k_dir / "items_tmdb.csv"
    tmdb.write_text(tmdb.read_text().replace("Second row must be ignored", "x").replace(",,en", ",Q&amp;A&#39;s,en"))
    meta = run(["movielens-posters", "--input", str(ml100k_dir), "--output", str(tmp_path / "out"), "--quiet"])
    items = _items(tmp_path / "out", "ml100k-posters").set_index("item_id:token")
    assert items.loc["3", "title:token_seq"] == 'Three & Four "1996"' and items.loc["3", "overview:token_seq"] == "Q&A's"
    assert meta["fallbacks"]["html_entities_decoded"] == 2
    assert meta["examples"]["html_entities_decoded"] == ["items_tmdb.csv:6 overview: &amp;", "u.item:3 title: &amp;"]


def test_microlens_and_pmmrec_titles(microlens_dir, tmp_path):
    titles = microlens_dir / "MicroLens-50k_titles.csv"
    titles.write_text(titles.read_text().replace("plain title", "plain &amp; simple &#35;tag"))
    meta = run(["microlens", "--input", str(microlens_dir), "--output", str(tmp_path / "ml"), "--quiet"])
    assert _items(tmp_path / "ml", "microlens-50k")["title:token_seq"].tolist()[1] == "plain & simple #tag"
    assert meta["fallbacks"]["html_entities_decoded"] == 1
    (tmp_path / "b.tsv").write_text("u1\t1 2\n")
    (tmp_path / "t.tsv").write_text("1\tR&amp;B &lt;3\n2\ttwo\n")
    meta = run(["pmmrec", "--behaviors", str(tmp_path / "b.tsv"), "--texts", str(tmp_path / "t.tsv"),
                "--output", str(tmp_path / "pm"), "--name", "pm", "--quiet"])
    assert _items(tmp_path / "pm", "pm")["title:token_seq"].tolist() == ["R&B <3", "two"]
    assert meta["fallbacks"]["html_entities_decoded"] == 1


def test_amazon_counts_each_field_once(amazon_files, tmp_path):
    meta = run(["amazon2018", "--reviews", str(amazon_files / "Toys_and_Games.json.gz"),
                "--meta", str(amazon_files / "meta_Toys_and_Games.json.gz"), "--kcore", "0",
                "--output", str(tmp_path / "out"), "--quiet"])
    # i1's description list holds one reference ("Walks &amp; talks"): one field, counted once
    assert meta["fallbacks"]["html_entities_decoded"] == 1
    assert meta["examples"]["html_entities_decoded"] == ["meta_Toys_and_Games.json.gz:1 description: &amp;"]


# ---------------------------------------------------------------- timestamps

BAD_STAMPS = ["nan", "inf", "-inf", "1e400", "abc", ""]


@pytest.mark.parametrize("stamp", BAD_STAMPS)
def test_movielens_bad_timestamps_are_counted_drops(ml100k_dir, tmp_path, stamp, capsys):
    u_data = ml100k_dir / "ml-100k" / "u.data"
    lines = u_data.read_text().splitlines()
    lines[0] = "\t".join(lines[0].split("\t")[:3] + [stamp])
    u_data.write_text("\n".join(lines) + "\n")
    base = ["movielens-posters", "--input", str(ml100k_dir), "--quiet"]
    assert main(base + ["--output", str(tmp_path / "out")]) == 0
    meta = _meta(tmp_path / "out", "ml100k-posters")
    assert meta["dropped"]["interaction_bad_timestamp"] == 1 and meta["counts"]["interactions"] == 19
    assert meta["examples"]["interaction_bad_timestamp"] == [f"{u_data}, line 1, column 4: timestamp {stamp!r} is not a finite number"]
    assert main(base + ["--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert f"{u_data}, line 1, column 4" in capsys.readouterr().err and nothing_written(tmp_path / "strict")


@pytest.mark.parametrize("stamp", ["NaN", "Infinity", "-Infinity", "1e400", '"1e400"', '"abc"', "true", "null", "[1]", None])
def test_amazon_bad_timestamps_are_counted_drops(amazon_files, tmp_path, stamp, capsys):
    review = '{"reviewerID": "A", "asin": "i4", "overall": 5.0' + ("" if stamp is None else f', "unixReviewTime": {stamp}') + "}"
    reviews = write_jsonl_gz(amazon_files / "bad.json.gz", [review, '{"reviewerID": "A", "asin": "i5", "unixReviewTime": 9}'])
    base = ["amazon2018", "--reviews", str(reviews), "--meta", str(amazon_files / "meta_Toys_and_Games.json.gz"),
            "--kcore", "0", "--quiet", "--name", "bad"]
    assert main(base + ["--output", str(tmp_path / "out")]) == 0
    meta = _meta(tmp_path / "out", "bad")
    assert meta["dropped"]["interaction_bad_timestamp"] == 1 and meta["counts"]["interactions"] == 1
    assert meta["examples"]["interaction_bad_timestamp"][0].startswith(f"{reviews}, line 1, key unixReviewTime: ")
    assert main(base + ["--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert f"{reviews}, line 1, key unixReviewTime" in capsys.readouterr().err and nothing_written(tmp_path / "strict")


@pytest.mark.parametrize("stamp", BAD_STAMPS)
def test_merge_bad_timestamps_are_counted_drops(tmp_path, stamp, capsys):
    a = make_synthetic_dataset(tmp_path / "src", name="a", n_users=6, n_items=5, seed=1, images=False)
    inter = a.folder / "a.inter"
    lines = inter.read_text().splitlines()
    lines[2] = "\t".join(lines[2].split("\t")[:2] + [stamp])  # line 3
    inter.write_text("\n".join(lines) + "\n")
    base = ["merge", "--inputs", str(a.folder), "--name", "m", "--quiet"]
    assert main(base + ["--output", str(tmp_path / "out")]) == 0
    meta = _meta(tmp_path / "out", "m")
    assert meta["dropped"]["interaction_bad_timestamp"] == 1 and meta["counts"]["interactions"] == len(lines) - 2
    assert meta["examples"]["interaction_bad_timestamp"][0].startswith(f"{inter}, line 3, column timestamp: ")
    assert main(base + ["--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert f"{inter}, line 3, column timestamp" in capsys.readouterr().err and nothing_written(tmp_path / "strict")


def test_the_writer_never_writes_a_time_that_is_not_finite(tmp_path):
    src = SourceDataset("test", ["title"], {})
    for n, stamp in enumerate([1.0, math.nan, math.inf, -math.inf, 2.0]):
        src.items[f"i{n}"] = ItemRecord(text={"title": f"t{n}"})
        src.add("u", f"i{n}", stamp)
    meta = write_dataset(src, Report(), tmp_path / "out", "w", WriteOptions())
    assert meta["dropped"]["interaction_bad_timestamp"] == 3 and meta["counts"]["interactions"] == 2
    assert (tmp_path / "out" / "w" / "w.inter").read_text().split("\n")[1:] == ["u\ti0\t1", "u\ti4\t2", ""]
    with pytest.raises(PMMRecDataError, match=r"interaction 1 \('u', 'i1'\): timestamp nan is not a finite number"):
        write_dataset(src, Report(strict=True), tmp_path / "strict", "w", WriteOptions())
    assert nothing_written(tmp_path / "strict")


# ---------------------------------------------------------------- deeply nested JSON

@pytest.mark.parametrize("which", ["reviews", "meta"])
def test_deeply_nested_json_is_a_malformed_line(amazon_files, tmp_path, which, capsys):
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    for name in ("Toys_and_Games.json.gz", "meta_Toys_and_Games.json.gz"):
        with gzip.open(amazon_files / name, "rt", encoding="utf-8") as fh:
            lines = [line for line in fh.read().splitlines() if not line.startswith("{not json")]
        write_jsonl_gz(amazon_files / name, ([deep] if name.startswith("meta") == (which == "meta") else []) + lines)
    path = amazon_files / ("meta_Toys_and_Games.json.gz" if which == "meta" else "Toys_and_Games.json.gz")
    base = ["amazon2018", "--reviews", str(amazon_files / "Toys_and_Games.json.gz"),
            "--meta", str(amazon_files / "meta_Toys_and_Games.json.gz"), "--kcore", "0", "--quiet", "--name", "deep"]
    assert main(base + ["--output", str(tmp_path / "out")]) == 0
    meta = _meta(tmp_path / "out", "deep")
    reason = "review_unparseable_line" if which == "reviews" else "meta_unparseable_line"
    assert f"{path}, line 1: nested too deeply to read" in meta["examples"][reason]
    assert main(base + ["--output", str(tmp_path / "strict"), "--strict"]) == 2
    assert f"{path}, line 1: nested too deeply" in capsys.readouterr().err and nothing_written(tmp_path / "strict")


# ---------------------------------------------------------------- --output

@pytest.mark.parametrize("below", [False, True])
def test_output_that_is_a_file_is_a_clear_error(microlens_dir, tmp_path, below, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    output = blocker / "sub" if below else blocker
    code = main(["microlens", "--input", str(microlens_dir), "--output", str(output), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err  # 2: every converter error, as argparse and the package CLI
    assert f"--output {output}: {blocker} exists and is not a folder" in err
    assert blocker.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["microlens", "not-a-folder"]


def test_output_that_is_a_file_from_the_command_line(microlens_dir, tmp_path):
    blocker = tmp_path / "out.txt"
    blocker.write_text("mine")
    done = subprocess.run([sys.executable, "-m", "dataset_tools.convert", "microlens", "--input", str(microlens_dir),
                           "--output", str(blocker), "--quiet"], cwd=Path(__file__).resolve().parents[2],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and str(blocker) in done.stderr and "FileExistsError" not in done.stderr
    assert blocker.read_text() == "mine"


# ---------------------------------------------------------------- image links

def test_image_links_out_of_the_image_folder_are_refused(tmp_path, make_image, caplog):
    root = tmp_path / "in"
    (root / "posters").mkdir(parents=True)
    (root / "interactions.tsv").write_text("user_id\titem_id\ttimestamp\n" + "".join(f"u\t{i}\t{i}\n" for i in range(1, 5)))
    (root / "items.tsv").write_text("item_id\ttitle\n1\tone\n2\ttwo\n3\tthree\n4\tfour\n")
    secret = make_image(tmp_path / "outside" / "secret.jpg")
    make_image(root / "posters" / "1.jpg")
    (root / "posters" / "2.jpg").symlink_to(secret)  # absolute link out of the folder
    (root / "posters" / "3.jpg").symlink_to(Path("..") / ".." / "outside" / "secret.jpg")  # relative link out
    (root / "posters" / "4.jpg").symlink_to("1.jpg")  # a link inside the folder is fine
    with caplog.at_level(logging.WARNING, logger="dataset_tools"):
        assert main(["tsv", "--input", str(root), "--output", str(tmp_path / "out"), "--quiet"]) == 0
    meta = _meta(tmp_path / "out", "in")
    assert meta["dropped"] == {"image_link_outside_folder": 2} and meta["counts"]["images"] == 2
    assert meta["counts"]["items"] == 4  # the items keep their text
    assert sorted(p.name for p in (tmp_path / "out" / "in" / "in.images").iterdir()) == ["1.jpg", "4.jpg"]
    assert any(f"{root / 'posters' / '2.jpg'} resolves outside the image folder" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- staging folders of killed runs

def _staging(output: Path, name: str, tag: str, age_s: float = 0) -> Path:
    folder = output / f".{name}.tmp-{tag}"
    (folder / f"{name}.images").mkdir(parents=True)
    (folder / f"{name}.inter").write_text("half")
    if age_s:
        old = time.time() - age_s
        for p in (folder / f"{name}.images", folder / f"{name}.inter", folder):
            os.utime(p, (old, old))
    return folder


def test_stale_staging_folders_are_removed_live_ones_kept(microlens_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    host = writer._HOST
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        day = writer.STALE_AFTER_S
        stale = [_staging(out, "microlens-50k", f"{host}-{done.pid}-abc12345"),  # its process is gone
                 _staging(out, "microlens-50k", "otherhost-1-abc12345", age_s=day + 60),  # another host, untouched a day
                 _staging(out, "microlens-50k", "x1y2z3_a", age_s=day + 60)]  # an old pid-less one
        kept = [_staging(out, "microlens-50k", f"{host}-{live.pid}-abc12345", age_s=day * 3),  # a live conversion
                _staging(out, "microlens-50k", "otherhost-1-def67890", age_s=60),  # another host, recent
                _staging(out, "microlens-50k", "q9w8e7_r"),  # pid-less, recent
                _staging(out, "other", f"{host}-{done.pid}-abc12345"),  # another dataset's
                _staging(out, "microlens-50k.tmp-x", f"{host}-{done.pid}-abc12345")]  # a NAME that only looks alike
        meta = run(["microlens", "--input", str(microlens_dir), "--output", str(out), "--quiet"])
        assert sorted(meta["removed_stale_staging"]) == sorted(p.name for p in stale)
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
        assert sorted(p.name for p in out.iterdir()) == sorted(["microlens-50k"] + [p.name for p in kept])
    finally:
        live.kill()
        live.wait()
    assert remove_stale_staging(out, "microlens-50k") == [kept[0].name]  # its process is gone now


def test_a_killed_conversion_is_cleaned_by_the_next_run(microlens_dir, tmp_path):
    out = tmp_path / "out"
    code = ("import os, sys; from dataset_tools import writer; from dataset_tools.convert import main\n"
            "writer._publish = lambda *a: os._exit(9)  # killed just before the rename\n"
            f"main(['microlens', '--input', {str(microlens_dir)!r}, '--output', {str(out)!r}, '--quiet'])\n")
    killed = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert killed.returncode == 9
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".microlens-50k.tmp-{writer._HOST}-")
    meta = run(["microlens", "--input", str(microlens_dir), "--output", str(out), "--quiet"])
    assert meta["removed_stale_staging"] == left and [p.name for p in out.iterdir()] == ["microlens-50k"]


# ---------------------------------------------------------------- raw tabs and newlines

def test_the_writer_cleans_raw_tabs_and_newlines_a_reader_let_through(tmp_path):
    src = SourceDataset("test", ["title", "other"], {})
    src.items["a"] = ItemRecord(text={"title": "tab\there", "other": "line\nbreak\r\nand\x00nul\u2028sep"})
    src.items["b"] = ItemRecord(text={"title": '"quoted\tcell', "other": ""})
    src.add("u", "a", 1.0)
    src.add("u", "b", 2.0)
    write_dataset(src, Report(), tmp_path / "out", "raw", WriteOptions())
    lines = (tmp_path / "out" / "raw" / "raw.item").read_text(encoding="utf-8").split("\n")
    assert lines == ["item_id:token\ttitle:token_seq\tother:token_seq", "a\ttab here\tline break and nul sep",
                     'b\t"""quoted cell"\t', ""]
    frame = _items(tmp_path / "out", "raw")
    assert frame["title:token_seq"].tolist() == ["tab here", '"quoted cell']
