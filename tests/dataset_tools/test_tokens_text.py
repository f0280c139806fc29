"""Token safety (file names) and text cleaning / decoding."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataset_tools.base import Report
from dataset_tools.text import clean_text, iter_csv, iter_lines, strip_html
from dataset_tools.tokens import TokenMapper, encode_token, is_safe_token
from recbole_pmmrec.errors import PMMRecDataError

NASTY = ["../../etc/passwd", "..", ".", ".hidden", "a/b", "a\\b", "a\x00b", "a b", "a\tb", "NA", "null", "None",
         "", "%41", "ünï", "/abs", "C:\\x", "v1.jpg"]


def _is_plain_file_name(name: str, folder: Path) -> bool:
    return ("/" not in name and "\\" not in name and "\x00" not in name and not name.startswith(".")
            and (folder / name).parent == folder and len(name) <= 255)


def test_safe_tokens_pass_through_and_nasty_ones_are_encoded(tmp_path):
    mapper = TokenMapper("item")
    for token in ["1", "B00X4WHP5E", "v123", "item_7-a.b"]:
        assert mapper(token) == token
    written = [mapper(t) for t in NASTY]
    assert written[-1] == "v1.jpg"  # safe: kept
    for token, name in zip(NASTY[:-1], written[:-1]):
        assert name.startswith("%") and _is_plain_file_name(name + ".jpg", tmp_path), (token, name)
    assert mapper("../../etc/passwd") == "%%2E%2E%2F%2E%2E%2Fetc%2Fpasswd"
    assert len(set(written)) == len(written)
    assert set(mapper.renamed) == set(NASTY[:-1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=30), min_size=2, max_size=6, unique=True))
def test_token_mapping_is_injective_and_always_a_plain_file_name(tokens):
    mapper = TokenMapper("item")
    names = [mapper(t) for t in tokens]
    assert len(set(names)) == len(names)
    for name in names:
        assert _is_plain_file_name(name + ".jpg", Path("/images"))
        assert is_safe_token(name) or name.startswith("%")


def test_error_mode_refuses_unsafe_tokens_by_name():
    with pytest.raises(PMMRecDataError, match=r"'\.\./x'.*--unsafe-tokens encode"):
        TokenMapper("item", mode="error")("../x")
    assert encode_token("a") == "%a"


def test_overlong_encodings_become_digests():
    mapper = TokenMapper("item")
    long_a, long_b = "/" * 100, "/" * 99 + "\\"
    assert mapper(long_a).startswith("%~") and len(mapper(long_a)) == 66
    assert mapper(long_a) != mapper(long_b) and mapper("x" * 201).startswith("%~")
    assert len(mapper("/" * 66)) == 199  # still fits: percent-encoded


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_clean_text_gives_one_tab_free_line_with_single_spaces(text):
    out = clean_text(text)
    assert not any(c in out for c in "\t\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    assert "  " not in out and out == out.strip()


WORD = st.text(st.characters(blacklist_categories=("Cc", "Zs", "Zl", "Zp", "Cs")), min_size=1, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=6), st.lists(st.sampled_from(["\t", "\n", "\r\n", " ", "\x00", "  \t"]), min_size=6, max_size=6))
def test_clean_text_keeps_every_word_in_order(words, seps):
    text = "".join(w + s for w, s in zip(words, seps))
    assert clean_text(text) == " ".join(words)


def test_clean_text_keeps_words():
    assert clean_text("  Toy\tStory\r\n(1995)\x00 x  ") == "Toy Story (1995) x"


def test_strip_html_removes_tags_scripts_and_decodes_entities():
    html = "<p>Walks &amp; talks.</p><script>var x = '<b>';</script><br/>Batteries<style>p{}</style> included"
    assert strip_html(html) == "Walks & talks. Batteries included"
    assert strip_html("no tags & fine") == "no tags & fine"


def test_non_utf8_line_names_file_and_line_then_falls_back(tmp_path):
    path = tmp_path / "texts.tsv"
    path.write_bytes("a\tok\n".encode() + "b\tCafé\n".encode("latin-1"))
    report = Report()
    with pytest.raises(PMMRecDataError, match=r"texts\.tsv, line 2: not valid UTF-8.*--encoding"):
        list(iter_lines(path, report))
    lines = list(iter_lines(path, report, encoding="latin-1"))
    assert lines == [(1, "a\tok"), (2, "b\tCafé")]
    assert report.fallbacks == {"text_lines_decoded_as_latin-1": 1}
    with pytest.raises(PMMRecDataError, match="line 2: neither valid UTF-8 nor ascii"):
        list(iter_lines(path, Report(), encoding="ascii"))


def test_gzip_and_bom_and_multiline_csv(tmp_path):
    path = tmp_path / "x.csv.gz"
    with gzip.open(path, "wb") as fh:
        fh.write('\ufeffitem,title\n1,"two\nlines"\n2,x\n'.encode("utf-8"))
    rows = list(iter_csv(path, Report()))
    assert rows == [(1, ["item", "title"]), (3, ["1", "two\nlines"]), (4, ["2", "x"])]
