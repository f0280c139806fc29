"""Fuzzing (hypothesis, bounded): random small input files through the converters (``dataset_tools``) and
the item-content readers (``read_item_text``, ``ItemContent``). Each call ends in a clean result or one of
our documented errors (``PMMRecError`` subclasses), never in another exception from deep inside a library;
and whatever a converter writes, our readers read without an error."""

from __future__ import annotations

import json
import math
import re
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dataset_tools.convert import run as convert
from recbole_pmmrec.data.content import ItemContent, read_item_text
from recbole_pmmrec.errors import PMMRecError

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# A cell: mostly text, sometimes raw bytes (not UTF-8) or a separator (a malformed row).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).map(str.encode)
JUNK = st.binary(max_size=16) | st.sampled_from(
    [b"", b" ", b"\t", b"\xff\xfe", b"\xef\xbb\xbf", b'"', b'"a\tb"', b"nan", b"None", b"1e309", b"..", b"../x"])
CELL = st.one_of(TEXT, TEXT, TEXT, JUNK).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
TOKEN = st.sampled_from(["1", "2", "3", "4", "a b", "\u00e9", "../../etc/passwd", "", " 1", "1.0", "x" * 300, "\x00",
                         "[PAD]"])
ITEM = st.one_of(TOKEN, TOKEN, TOKEN, CELL.map(lambda b: b.decode("utf-8", "replace"))).map(str.encode)
NAME = st.sampled_from(["title", "description", "brand", "item_id", "tags", "t\u00eftle", "", "a:b"])
KIND = st.sampled_from(["token", "token_seq", "float", "float_seq", "", "weird"])


def _outcome(call):
    """The result, or the documented error; any other exception fails the test (hypothesis shrinks it)."""
    try:
        result = call()
    except PMMRecError as exc:
        assert str(exc), "an error without a message"
        event(f"{type(exc).__name__}: {re.sub(r'/tmp/[^ ,:]*', 'FILE', str(exc))[:60]}")
        return exc
    event("clean result")
    return result


@pytest.fixture(scope="module")
def tokenize(tiny_bert_dir):
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(tiny_bert_dir))

    def run(texts):
        out = tokenizer(list(texts), padding="max_length", truncation=True, max_length=8, return_tensors="pt")
        return out["input_ids"], out["attention_mask"].bool()

    return run


def _check_content(content: ItemContent, tokens: list[str]) -> None:
    n = len(tokens)
    assert content.n_items == n and content.text_ids.shape == (n, 8) and content.has_text.dtype == torch.bool
    assert not content.has_text[0] and all(isinstance(t, str) for t in content.texts)
    assert bool(content.has_text[1:].all())  # an item without text or image is an error, never a silent row


@FUZZ
@given(extra=st.lists(st.tuples(NAME, KIND), max_size=4), item_first=st.booleans(), bom=st.booleans(),
       rows=st.lists(st.tuples(ITEM, st.lists(CELL, max_size=6)), max_size=8), pick=st.lists(st.integers(0, 4), max_size=3))
def test_random_item_files_read_cleanly_or_fail_with_our_errors(extra, item_first, bom, rows, pick, tokenize):
    header = [f"{name}:{kind}".encode() for name, kind in extra]
    header.insert(0 if item_first else len(header), b"item_id:token")
    lines = [(b"\xef\xbb\xbf" if bom else b"") + b"\t".join(header)]
    lines += [b"\t".join([token, *cells]) for token, cells in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fz.item"
        path.write_bytes(b"\n".join(lines) + b"\n")
        names = [name for name, _ in extra] + ["nosuch"] * 5  # mostly columns of the file, sometimes not
        fields = list(dict.fromkeys(names[i] for i in pick if names[i] != "item_id"))
        df = _outcome(lambda: read_item_text(path, fields))
        if isinstance(df, PMMRecError):
            return
        assert isinstance(df, pd.DataFrame) and list(df.columns) == fields and df.index.is_unique
        assert all(isinstance(v, str) for col in fields for v in df[col])
        tokens = ["[PAD]", *dict.fromkeys(str(t) for t in df.index if t and t != "[PAD]")]
        if len(tokens) < 2 or not fields:
            return
        content = _outcome(lambda: ItemContent.from_item_file(tokens, path, fields, tokenize))
        if not isinstance(content, PMMRecError):
            _check_content(content, tokens)


def _lines(draw_lines: list[bytes]) -> bytes:
    return b"\n".join(draw_lines) + b"\n"


# Converter inputs: a well-formed small data set over an item pool, then 0-3 random edits (junk lines inserted,
# lines replaced or extended with junk), so that the fuzzing explores the neighbourhood of valid input.
POOL = st.sampled_from([b"1", b"2", b"3", b"a b", b"\xc3\xa9", b"../../etc/passwd", b"x" * 300, b" 1", b"1.0"])
JUNK_LINE = CELL | st.sampled_from([b"\t", b"\t\t\t", b",", b'"', b"\xff\xfe\x00", b"u1\t", b"\tx y", b"{", b"[1]"])
TITLE = st.one_of(*[TEXT] * 7, JUNK).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))


@st.composite
def edited(draw, lines: list[bytes]) -> list[bytes]:
    lines = list(lines)
    for _ in range(draw(st.integers(0, 3))):
        junk, at = draw(JUNK_LINE), draw(st.integers(0, len(lines)))
        how = draw(st.sampled_from(["insert", "replace", "extend"]))
        if how == "insert" or not lines:
            lines.insert(at, junk)
        elif how == "replace":
            lines[min(at, len(lines) - 1)] = junk
        else:
            lines[min(at, len(lines) - 1)] += junk
    return lines


@st.composite
def source(draw, item_line, user_line):
    """(item lines, user lines) of a small data set: every pool item has a line, users pick among them."""
    items = draw(st.lists(POOL, min_size=1, max_size=5, unique=True))
    item_lines = [item_line(item, draw(TITLE)) for item in items]
    users = draw(st.lists(st.sampled_from([b"u1", b"u2", b"u3", b"\xc3\xa9", b" u1"]), min_size=1, max_size=3))
    user_lines = [user_line(user, draw(st.lists(st.sampled_from(items), min_size=1, max_size=5))) for user in users]
    return draw(edited(item_lines)), draw(edited(user_lines))


def _sequences(user: bytes, items: list[bytes]) -> bytes:
    return user + b"\t" + b" ".join(items)


def _read_output(out: Path, name: str, text_fields: list[str], tokenize) -> None:
    """A converter's output must always be readable by our readers: no error at all."""
    item_file = out / name / f"{name}.item"
    df = read_item_text(item_file, text_fields)
    assert not any(df.attrs["fallbacks"].values()), df.attrs["fallbacks"]  # a converter writes clean rows
    inter = pd.read_csv(out / name / f"{name}.inter", sep="\t", dtype=str, keep_default_na=False)
    tokens = ["[PAD]", *sorted(set(inter["item_id:token"]))]
    assert set(tokens[1:]) <= set(df.index)  # every interacted item has a row
    _check_content(ItemContent(tokens, df, text_fields, tokenize), tokens)


@FUZZ
@given(data=source(lambda item, title: item + b"," + title, _sequences), header=st.sampled_from([True, True, True, False]),
       encoding=st.sampled_from([None, None, "latin-1", "nope"]))
def test_random_microlens_inputs_convert_cleanly_or_fail_with_our_errors(data, header, encoding, tokenize):
    titles, pairs = data
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        (src / "MicroLens-50k_pairs.tsv").write_bytes(_lines(pairs))
        (src / "MicroLens-50k_titles.csv").write_bytes(_lines(([b"item,title"] if header else []) + titles))
        argv = ["microlens", "--input", str(src), "--output", str(out), "--name", "fz", "--quiet"]
        meta = _outcome(lambda: convert(argv + (["--encoding", encoding] if encoding else [])))
        if not isinstance(meta, PMMRecError):
            _read_output(out, "fz", ["title"], tokenize)


@FUZZ
@given(data=source(lambda item, title: item + b"\t" + title, _sequences))
def test_random_pmmrec_format_inputs_convert_cleanly_or_fail_with_our_errors(data, tokenize):
    texts, behaviors = data
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        (src / "behaviors.tsv").write_bytes(_lines(behaviors))
        (src / "texts.tsv").write_bytes(_lines(texts))
        meta = _outcome(lambda: convert(["pmmrec", "--input", str(src), "--output", str(out), "--name", "fz",
                                         "--quiet"]))
        if not isinstance(meta, PMMRecError):
            _read_output(out, "fz", ["title"], tokenize)


JSON_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=6)
META_FIELDS = st.fixed_dictionaries({}, optional={
    "brand": st.text(max_size=8) | JSON_VALUE, "category": st.lists(st.text(max_size=8), max_size=3) | JSON_VALUE,
    "description": st.text(max_size=30) | JSON_VALUE, "title": JSON_VALUE})
ODD_REVIEW = st.fixed_dictionaries({}, optional={"reviewerID": JSON_VALUE, "asin": JSON_VALUE,
                                                 "unixReviewTime": st.integers(-2, 2**40) | JSON_VALUE})


@st.composite
def amazon(draw):
    """(reviews, meta) lines: JSON (or Python literal) records over the pool, then random edits."""
    def meta_line(item: bytes, title: bytes) -> bytes:
        record = {"asin": item.decode(), "title": title.decode("utf-8", "replace"), **draw(META_FIELDS)}
        return (json.dumps(record) if draw(st.booleans()) else repr(record)).encode()

    def review_lines(user: bytes, items: list[bytes]) -> bytes:
        rows = [{"reviewerID": user.decode(), "asin": item.decode(), "unixReviewTime": draw(st.integers(0, 2**33))}
                for item in items]
        rows += draw(st.lists(ODD_REVIEW, max_size=1))
        return b"\n".join(json.dumps(r).encode() for r in rows)

    return draw(source(meta_line, review_lines))


@FUZZ
@given(data=amazon())
def test_random_amazon_inputs_convert_cleanly_or_fail_with_our_errors(data, tokenize):
    meta, reviews = data
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in", Path(tmp) / f"out-{uuid.uuid4().hex[:6]}"
        src.mkdir()
        (src / "reviews.json").write_bytes(_lines(reviews))
        (src / "meta.json").write_bytes(_lines(meta))
        result = _outcome(lambda: convert(["amazon2018", "--reviews", str(src / "reviews.json"), "--meta",
                                           str(src / "meta.json"), "--kcore", "0", "--output", str(out),
                                           "--name", "fz", "--quiet"]))
        if not isinstance(result, PMMRecError):
            _read_output(out, "fz", ["title", "brand", "categories", "description"], tokenize)


# Interaction rows: tokens, timestamps that are numbers, text, non-finite, missing; rows short, long or split.
STAMP = st.sampled_from([b"1", b"978300019", b"2.5", b"-3", b"1e9", b" 7", b"nan", b"NaN", b"inf", b"-inf", b"1e400",
                         b"", b"abc", b"0x10", b"1_000", b'"5"', b'"', b"None", b"NA", b"1,5"]) | TEXT
INTER_ROW = st.tuples(ITEM, ITEM, STAMP).map(lambda r: b"\t".join(r)) | st.sampled_from([b"", b"u1\t2", b"u1\t2\t3\t4"])


@FUZZ
@given(rows=st.lists(INTER_ROW, max_size=8), header=st.sampled_from([True, True, True, False]))
def test_random_interaction_files_pass_the_row_check_only_when_recbole_reads_them_cleanly(rows, header):
    """Whatever ``check_rows`` lets through, RecBole's own read (pandas' python engine, float timestamps) reads
    with as many rows and only finite timestamps; everything else is one of our errors."""
    from recbole_pmmrec.atomic_rows import check_rows

    lines = ([b"user_id:token\titem_id:token\ttimestamp:float"] if header else []) + rows
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fz.inter"
        path.write_bytes(_lines(lines))
        info = _outcome(lambda: check_rows(path, time_field="timestamp", time_ordered=True))
        if isinstance(info, PMMRecError):
            return
        cols = ["user_id:token", "item_id:token", "timestamp:float"]
        df = pd.read_csv(path, delimiter="\t", usecols=cols, engine="python", encoding="utf-8",
                         dtype={"user_id:token": str, "item_id:token": str, "timestamp:float": float})
        assert len(df) == info["rows"] and df["timestamp:float"].map(math.isfinite).all()
