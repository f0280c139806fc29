"""Malformed atomic files are refused before RecBole's pandas reads them, each with the file, line and column;
blank lines are the one thing dropped (counted and logged). The command line says it in one line, exit 2."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from recbole_pmmrec import quick_start
from recbole_pmmrec.atomic_rows import check_rows
from recbole_pmmrec.cli import main
from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.provenance import check_atomic_files
from recbole_pmmrec.quick_start import load_config

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\ttitle:token_seq\tdescription:token_seq\n"


def _rewrite(synth, suffix: str, edit) -> Path:
    path = synth.folder / f"{synth.name}.{suffix}"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(edit(lines)), encoding="utf-8")
    return path


# (case, file, edit of its lines, expected message): each line number counts the header as line 1
CASES = [
    ("non-numeric timestamp", "inter", lambda ls: ls[:4] + ["u1\t24\t2020-01-01\n"] + ls[4:],
     r"synth\.inter, line 5, column 3 \('timestamp:float'\): '2020-01-01' is not a number"),
    ("nan timestamp", "inter", lambda ls: ls[:2] + ["u1\t24\tnan\n"] + ls[2:],
     r"synth\.inter, line 3, column 3 \('timestamp:float'\): 'nan': every interaction needs a finite timestamp"),
    ("inf timestamp", "inter", lambda ls: ls[:2] + ["u1\t24\tinf\n"] + ls[2:],
     r"line 3, column 3 \('timestamp:float'\): 'inf' is not a finite number"),
    ("1e400 timestamp", "inter", lambda ls: ls[:7] + ["u1\t24\t1e400\n"] + ls[7:],
     r"line 8, column 3 \('timestamp:float'\): '1e400' is not a finite number"),
    ("empty timestamp", "inter", lambda ls: ls[:2] + ["u1\t24\t\n"] + ls[2:],
     r"line 3, column 3 \('timestamp:float'\): no timestamp"),
    ("row without its timestamp", "inter", lambda ls: ls[:3] + ["u1\t24\n"] + ls[3:],
     r"synth\.inter, line 4: 2 field\(s\), the header has 3: column 3 \('timestamp:float'\) is missing"),
    ("too many fields", "inter", lambda ls: ls[:3] + ["u1\t24\t5\t6\n"] + ls[3:],
     r"synth\.inter, line 4: 4 fields, the header has 3"),
    ("empty inter", "inter", lambda ls: [], r"synth\.inter is empty: an atomic file starts with a header line"),
    ("header-only inter", "inter", lambda ls: ls[:1], r"synth\.inter has a header but no rows"),
    ("missing timestamp column", "inter", lambda ls: [l.rsplit("\t", 1)[0] + "\n" for l in ls],
     r"synth\.inter: the time field 'timestamp' is not in the header \(user_id:token, item_id:token\) but the "
     r"split orders interactions by time \(eval_args order: TO\)"),
    ("header cell without a type", "inter", lambda ls: ["user_id:token\titem_id\ttimestamp:float\n"] + ls[1:],
     r"synth\.inter, line 1, column 2: header cell 'item_id' is not name:type"),
    ("byte-order mark", "inter", lambda ls: ["\ufeff" + ls[0]] + ls[1:],
     r"synth\.inter, line 1: the file starts with a byte-order mark.*'\\ufeffuser_id:token'"),
    ("header-only item", "item", lambda ls: ls[:1], r"synth\.item has a header but no rows: add one row per item"),
    ("empty item", "item", lambda ls: [], r"synth\.item is empty"),
    ("raw newline inside a title", "item", lambda ls: ls[:3] + ["77\tThe Great\n", "Escape\tabout escape\n"] + ls[3:],
     r"synth\.item, line 4: the row breaks off inside column 2 \('title:token_seq'\) and continues on line 5 "
     r"\(2 fields; read alone it would be a phantom row 'Escape'\): a raw newline inside a cell"),
    ("not utf-8", "item", lambda ls: ls[:5] + ["78\tcaf\udce9\tx\n"] + ls[5:], r"synth\.item, line 6, byte 7: not utf-8"),
]


@pytest.mark.parametrize("case,suffix,edit,message", CASES, ids=[c[0] for c in CASES])
def test_a_malformed_atomic_file_is_refused_before_recbole_reads_it(case, suffix, edit, message, synth, quick_config,
                                                                     monkeypatch):
    path = synth.folder / f"{synth.name}.{suffix}"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write("".join(edit(lines)))

    def refuse(config):
        raise AssertionError("RecBole read the file before it was checked")

    monkeypatch.setattr(quick_start, "create_dataset", refuse)
    with pytest.raises(PMMRecDataError, match=message):
        quick_start.run_recbole_pmmrec("SASRec", synth.name, config_dict=quick_config(synth))


def test_the_command_line_names_the_broken_line_in_one_line(synth, tmp_path, capsys):
    _rewrite(synth, "inter", lambda ls: ls[:9] + ["u3\t7\tlater\n"] + ls[9:])
    with pytest.raises(SystemExit) as exit_info:
        main(["--model=SASRec", f"--dataset={synth.name}", f"--data_path={synth.root}", "--use_gpu=False",
              f"--checkpoint_dir={tmp_path / 'saved'}", f"--log_dir={tmp_path / 'logs'}",
              f"--tensorboard_dir={tmp_path / 'tb'}", "--state=WARNING"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    assert "synth.inter, line 10, column 3 ('timestamp:float'): 'later' is not a number; fix or remove that row" in err


def test_blank_lines_are_dropped_counted_and_logged(synth, quick_config, caplog):
    _rewrite(synth, "inter", lambda ls: ls[:3] + ["\n", "\n"] + ls[3:] + ["\n"])
    config = load_config("SASRec", synth.name, config_dict=quick_config(synth))
    with caplog.at_level(logging.WARNING, logger="recbole_pmmrec.atomic_rows"):
        info = check_atomic_files(config)[f"{synth.name}.inter"]
    assert info["blank_lines_skipped"] == 3 and info["rows"] == synth.n_interactions
    assert "synth.inter: 3 blank line(s) skipped" in caplog.text


def test_what_is_not_loaded_or_not_time_ordered_is_not_refused(synth, quick_config):
    """A column load_col leaves out, a random split without timestamps, a missing optional float, a quoted title
    with a newline (pandas reads it as one cell) all load."""
    _rewrite(synth, "inter", lambda ls: [l.rsplit("\t", 1)[0] + "\n" for l in ls])  # no timestamp column
    _rewrite(synth, "item", lambda ls: [ls[0].rstrip("\n") + "\tprice:float\n"]
             + [l.rstrip("\n") + ("\t\n" if i % 2 else "\t9.5\n") for i, l in enumerate(ls[1:])]
             + ['99\t"The Great\nEscape"\tabout\t1\n'])
    config = load_config("SASRec", synth.name, config_dict=quick_config(synth, eval_args={
        "split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"}))
    info = check_atomic_files(config)
    assert info[f"{synth.name}.item"]["rows"] == synth.n_items + 1
    item = synth.folder / f"{synth.name}.item"
    _rewrite(synth, "item", lambda ls: ls + ["100\tbroken\n"])  # no description: refused when it is loaded ...
    with pytest.raises(PMMRecDataError, match=r"column 3 \('description:token_seq'\) is missing"):
        check_rows(item)
    assert check_rows(item, load_col={"item": ["item_id", "title"]})["rows"] == synth.n_items + 2  # ... not otherwise
    assert check_rows(item, load_col={"inter": ["user_id"]})["rows"] is None  # the file is not loaded at all


def test_checking_a_million_interactions_takes_seconds():
    path = Path("/tmp/pmmrec_data/ml1m-posters/ml1m-posters.inter")
    if not path.exists():
        pytest.skip(f"{path} is not here (bench data)")
    start = time.perf_counter()
    info = check_rows(path, time_field="timestamp", time_ordered=True)
    seconds = time.perf_counter() - start
    assert info["rows"] > 990_000 and seconds < 5, seconds  # ~1.0-1.4 s on a busy 2-core machine
