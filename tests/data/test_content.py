"""Item content: .item text reading, tokenisation in internal-id order, modality masks, fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
import recbole
import torch
import transformers
from PIL import Image

from recbole_pmmrec.data.content import ItemContent, read_item_text
from recbole_pmmrec.errors import PMMRecDataError

WORDS = "toy story animation comedy heat action ; golden eye café x".split()


@pytest.fixture(scope="module")
def tokenizer():
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    return transformers.BertTokenizer(vocab=vocab)


@pytest.fixture
def tokenize(tokenizer):
    def run(texts):
        enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=8, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"].bool()

    return run


def _write_item_file(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_read_item_text(tmp_path, caplog):
    path = _write_item_file(tmp_path / "d.item", [
        b"item_id:token\ttitle:token_seq\tyear:float\tgenre:token_seq",
        b"i1\tToy Story\t1995\tAnimation Comedy",
        b"i2\tHeat\t1995\t",
        "i3\tCafé X\t2001\tComedy".encode("latin-1"),  # not UTF-8
        b"i1\tDuplicate\t2000\tAction",  # duplicate: first row wins
        b"i4\tShort row",  # trailing fields missing: padded
        b"i6\ttoo\tmany\tfields\there",  # cannot be trusted: skipped
        "i5\tGolden Eye ¦\t1995\tAction".encode("utf-8"),
    ])
    with caplog.at_level(logging.WARNING):
        df = read_item_text(path, ["title", "genre"])
    assert list(df.columns) == ["title", "genre"] and list(df.index) == ["i1", "i2", "i3", "i4", "i5"]
    assert df.loc["i1", "title"] == "Toy Story" and df.loc["i1", "genre"] == "Animation Comedy"
    assert df.loc["i2", "genre"] == "" and df.loc["i3", "title"] == "Café X"
    assert df.loc["i5", "title"] == "Golden Eye ¦"
    assert df.loc["i4"].tolist() == ["Short row", ""]
    assert df.attrs["fallbacks"] == {"latin1_lines": 1, "duplicate_items": 1, "malformed_rows": 1, "short_rows": 1}
    assert "1 duplicate item rows" in caplog.text

    with pytest.raises(PMMRecDataError, match=r"\['plot'\] not found.*item_id, title, year, genre"):
        read_item_text(path, ["title", "plot"])
    with pytest.raises(PMMRecDataError, match="does not exist"):
        read_item_text(tmp_path / "none.item", ["title"])


def test_read_recbole_ml100k():
    path = Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.item"
    df = read_item_text(path, ["movie_title", "release_year", "class"])
    assert len(df) == 1682 and df.attrs["fallbacks"]["duplicate_items"] == 0
    assert df.loc["1"].tolist() == ["Toy Story", "1995", "Animation Children's Comedy"]


def test_content_text_in_internal_order(tokenize, tokenizer):
    tokens = ["[PAD]", "i3", "i1", "i2", "i9"]  # RecBole's internal-id order, not file order
    texts = pd.DataFrame(
        {"title": ["Toy Story", "Heat", "", None], "genre": ["Animation Comedy", "Action", "", "x"]},
        index=["i1", "i2", "i3", "i9"],
    )
    texts.loc["i3", "title"] = "Golden Eye"
    c = ItemContent(tokens, texts, ["title", "genre"], tokenize, lowercase=True)
    assert c.texts == ["", "golden eye", "toy story ; animation comedy", "heat ; action", "x"]
    assert c.has_text.tolist() == [False, True, True, True, True]
    assert c.text_ids.dtype == torch.int32 and c.text_ids.shape == (5, 8) and c.text_mask.dtype == torch.bool
    for iid, text in enumerate(c.texts):  # each row equals tokenising that item alone
        ids, mask = tokenize([text])
        assert torch.equal(c.text_ids[iid].long(), ids[0]) and torch.equal(c.text_mask[iid], mask[0])
    assert c.text_mask[0].sum() == 2  # padding row: [CLS] [SEP], never an all-padding row
    ids, mask = c.text_batch(torch.tensor([2, 0]))
    assert ids.dtype == torch.long and torch.equal(ids[0], c.text_ids[2].long())
    assert tokenizer.decode(c.text_ids[2][c.text_mask[2]].tolist()) == "[CLS] toy story ; animation comedy [SEP]"

    upper = ItemContent(tokens, texts, ["title", "genre"], tokenize, lowercase=False)
    assert upper.texts[2] == "Toy Story ; Animation Comedy"


def test_missing_modalities_error_names_items(tokenize):
    texts = {"a": {"title": "toy"}, "b": {"title": "  "}, "c": {"title": None}}
    with pytest.raises(PMMRecDataError, match=r"2 item\(s\).*\['b', 'c'\]"):
        ItemContent(["[PAD]", "a", "b", "c"], texts, ["title"], tokenize)
    with pytest.raises(PMMRecDataError, match=r"\['zz'\]"):
        ItemContent(["[PAD]", "a", "zz"], texts, ["title"], tokenize)


def test_non_utf8_bytes_are_replaced_and_counted(tokenize, caplog):
    texts = {"a": {"t": b"caf\xe9 toy"}, "b": {"t": "heat"}, "c": {"t": "story".encode()}}
    with caplog.at_level(logging.WARNING):
        c = ItemContent(["[PAD]", "a", "b", "c"], texts, ["t"], tokenize)
    assert c.texts[1] == "caf\ufffd toy" and c.texts[3] == "story"
    assert c.fallbacks["non_utf8_text"] == 1
    assert "non_utf8_text=1" in caplog.text


def test_images_and_fallbacks(tmp_path, tokenize, caplog):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(img_dir / "a.jpg")
    Image.new("RGB", (30, 30), (0, 0, 255)).save(img_dir / "b.png")
    (img_dir / "c.jpg").write_bytes(b"")  # empty
    good = Image.new("RGB", (300, 300), (0, 255, 0))
    good.save(img_dir / "d.jpg")
    data = (img_dir / "d.jpg").read_bytes()
    (img_dir / "d.jpg").write_bytes(data[: len(data) // 2])  # header fine, pixels truncated
    texts = {"a": "toy", "c": "heat", "d": "story", "e": "x"}
    tokens = ["[PAD]", "a", "b", "c", "d", "e"]
    with caplog.at_level(logging.WARNING):
        c = ItemContent(tokens, texts, (), tokenize, image_dir=img_dir, image_size=16)
    assert c.has_image.tolist() == [False, True, True, False, True, False]
    assert c.fallbacks["image_empty"] == 1 and c.fallbacks["image_missing"] == 1
    images, ok = c.image_batch(torch.tensor([1, 2, 3, 4, 0]))
    assert images.shape == (5, 3, 16, 16) and images.dtype == torch.uint8
    assert ok.tolist() == [True, True, False, False, False]
    assert images[0, 0].float().mean() > 200 and images[1, 2].float().mean() > 200
    assert images[2:].sum() == 0
    assert not c.has_image[4] and c.fallbacks["image_truncated_on_decode"] == 1  # found out on decode
    assert c.report()["with_image"] == 2

    # image only: items need an image; text only: items need text
    with pytest.raises(PMMRecDataError, match=r"2 item.*\['c', 'e'\]"):  # d's truncation shows on decode only
        ItemContent(tokens[:-1] + ["e"], None, (), None, image_dir=img_dir, image_size=16)
    image_only = ItemContent(["[PAD]", "a", "b"], None, (), None, image_dir=img_dir, image_size=16)
    assert image_only.text_ids is None and image_only.has_image.tolist() == [False, True, True]


def test_content_hashes_follow_content(tmp_path, tokenize):
    img_dir = tmp_path / "im"
    img_dir.mkdir()
    Image.new("RGB", (8, 8)).save(img_dir / "a.jpg")
    texts = {"a": "toy", "b": "heat"}
    c1 = ItemContent(["[PAD]", "a", "b"], texts, (), tokenize, image_dir=img_dir, image_size=8)
    c2 = ItemContent(["[PAD]", "a", "b"], texts, (), tokenize, image_dir=img_dir, image_size=8)
    assert c1.text_sha256() == c2.text_sha256() and c1.image_sha256() == c2.image_sha256()
    c3 = ItemContent(["[PAD]", "a", "b"], {"a": "toy", "b": "story"}, (), tokenize, image_dir=img_dir, image_size=8)
    assert c3.text_sha256() != c1.text_sha256()
    Image.new("RGB", (9, 9)).save(img_dir / "b.png")
    c4 = ItemContent(["[PAD]", "a", "b"], texts, (), tokenize, image_dir=img_dir, image_size=8)
    assert c4.image_sha256() != c1.image_sha256()
    assert ItemContent(["[PAD]", "a", "b"], texts, (), tokenize, image_dir=img_dir, image_size=16
                       ).image_sha256() != c4.image_sha256()


def test_from_item_file(tmp_path, tokenize):
    path = _write_item_file(tmp_path / "d.item", [b"item_id:token\ttitle:token_seq", b"1\tToy Story", b"2\tHeat"])
    c = ItemContent.from_item_file(["[PAD]", "2", "1"], path, ["title"], tokenize)
    assert c.texts == ["", "heat", "toy story"]
    df = pd.DataFrame({"title": ["toy", "heat", "story"]}, index=["1", "2", "1"])  # duplicate index
    assert ItemContent(["[PAD]", "1"], df, [], tokenize).texts == ["", "toy"]  # first row wins


def test_a_huge_text_cell_is_cut_before_tokenising_and_counted():
    from recbole_pmmrec.data.content import MAX_TEXT_CHARS, ItemContent

    seen = []

    def tokenize(texts):
        seen.extend(texts)
        import torch

        return torch.ones(len(texts), 4, dtype=torch.long), torch.ones(len(texts), 4, dtype=torch.bool)

    content = ItemContent(["[PAD]", "a", "b"], {"a": {"title": "x" * 10_000_000}, "b": {"title": "short"}},
                          ["title"], tokenize)
    assert max(len(t) for t in seen) == MAX_TEXT_CHARS
    assert content.fallbacks["long_text_truncated"] == 1 and content.has_text[1:].all()
