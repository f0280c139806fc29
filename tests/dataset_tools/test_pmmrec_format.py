"""The authors' LMDB records are decoded without unpickling arbitrary code; the pmmrec converter end to end."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import sys
import types

import numpy as np
import pytest
from PIL import Image

from dataset_tools.convert import run
from dataset_tools.images import ImageLimits, ImageRejected
from dataset_tools.pmmrec import decode_value, lmdb_keys
from recbole_pmmrec.errors import PMMRecDataError

from .conftest import image_bytes

LIMITS = ImageLimits()


@pytest.fixture(scope="module")
def authors_class():
    """``LMDB_Image`` as the authors define it, in a module we cannot import when reading."""
    module = types.ModuleType("lmdb_build")

    class LMDB_Image:  # noqa: N801  (their name)
        def __init__(self, image, id):
            self.channels = image.shape[2]
            self.size = image.shape[:2]
            self.image = image.tobytes()
            self.id = id

    LMDB_Image.__module__ = "lmdb_build"
    LMDB_Image.__qualname__ = "LMDB_Image"
    module.LMDB_Image = LMDB_Image
    sys.modules["lmdb_build"] = module
    yield LMDB_Image
    del sys.modules["lmdb_build"]


def _pixels(h=5, w=7, c=3):
    return ((np.arange(h * w * c).reshape(h, w, c) * 5) % 256).astype(np.uint8)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_authors_record_decodes_to_the_same_pixels(authors_class, protocol):
    pixels = _pixels()
    value = pickle.dumps(authors_class(pixels, "v3"), protocol=protocol)
    image = decode_value(value, "LMDB x key b'3'", LIMITS)
    assert image.mode == "RGB" and image.size == (7, 5)
    assert np.array_equal(np.asarray(image), pixels)


def test_gray_record_and_encoded_bytes_in_a_record(authors_class):
    gray = decode_value(pickle.dumps(authors_class(_pixels(c=1), 1)), "k", LIMITS)
    assert gray.mode == "L" and np.array_equal(np.asarray(gray), _pixels(c=1)[:, :, 0])
    record = authors_class(_pixels(), 1)
    record.img = image_bytes(fmt="PNG")
    del record.image
    assert decode_value(pickle.dumps(record), "k", LIMITS) == record.img


def test_raw_image_bytes_are_taken_as_they_are():
    jpeg = image_bytes()
    assert decode_value(jpeg, "k", LIMITS) == jpeg
    assert decode_value(pickle.dumps(jpeg), "k", LIMITS) == jpeg


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_code_carrying_pickles_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    for value in (
        pickle.dumps(_Evil(f"touch {marker}")),
        pickle.dumps((builtins.eval, (f"open({str(marker)!r}, 'w')",)), protocol=0),
        b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.",
    ):
        with pytest.raises(PMMRecDataError, match=r"key b'9'.*neither JPEG/PNG bytes nor a pickled image record"):
            decode_value(value, "LMDB db key b'9'", LIMITS)
    assert not marker.exists()


def test_record_class_name_cannot_smuggle_a_call(authors_class, tmp_path):
    # REDUCE on the admitted class name only builds our attribute holder, which takes no arguments.
    value = b"clmdb_build\nLMDB_Image\n(S'rm -rf /'\ntR."
    with pytest.raises(PMMRecDataError, match="key b'1'"):
        decode_value(value, "key b'1'", LIMITS)


def test_other_values_are_clear_errors(authors_class):
    with pytest.raises(PMMRecDataError, match="key b'5'.*not an image record"):
        decode_value(pickle.dumps({"image": b"x"}), "key b'5'", LIMITS)
    with pytest.raises(PMMRecDataError, match="neither JPEG/PNG"):
        decode_value(b"random bytes that are not a pickle", "key b'6'", LIMITS)
    record = authors_class(_pixels(), 1)
    record.image = 12
    with pytest.raises(PMMRecDataError, match="none of the fields"):
        decode_value(pickle.dumps(record), "k", LIMITS)


def test_inconsistent_or_huge_records_are_counted_rejections(authors_class):
    record = authors_class(_pixels(), 1)
    record.image = record.image[:-3]
    with pytest.raises(ImageRejected, match="image_corrupt.*102 bytes for 5x7x3"):
        decode_value(pickle.dumps(record), "k", LIMITS)
    record = authors_class(_pixels(), 1)
    record.size = (100_000, 100_000)  # claims 10 G pixels: refused before any buffer is built
    with pytest.raises(ImageRejected, match="image_too_large"):
        decode_value(pickle.dumps(record), "k", LIMITS)
    with pytest.raises(ImageRejected, match="image_missing"):
        decode_value(None, "k", LIMITS)


def test_lmdb_keys_follow_the_authors_convention():
    assert lmdb_keys("v0123") == [b"v0123", b"123"]
    assert lmdb_keys("42") == [b"42"]
    assert lmdb_keys("abc") == [b"abc"]


def test_missing_lmdb_package_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "b.tsv").write_text("u1\t1 2\n")
    (tmp_path / "t.tsv").write_text("1\tone\n2\ttwo\n")
    (tmp_path / "x.lmdb").mkdir()
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError
    with pytest.raises(PMMRecDataError, match="pip install lmdb"):
        run(["pmmrec", "--behaviors", str(tmp_path / "b.tsv"), "--texts", str(tmp_path / "t.tsv"),
             "--images", str(tmp_path / "x.lmdb"), "--output", str(tmp_path / "out"), "--quiet"])


def test_pmmrec_conversion_with_a_real_lmdb(tmp_path, authors_class):
    lmdb = pytest.importorskip("lmdb", reason="lmdb is optional (pip install lmdb)")
    smooth = np.broadcast_to(np.array([200, 40, 90], dtype=np.uint8), (8, 8, 3)).copy()
    src = tmp_path / "bili_toy"
    src.mkdir()
    (src / "bili_toy_users.tsv").write_text("u1\tv1 v2 v3 v1\nu2\tv2 v4 v5\nu3\tv3 v1\n")
    (src / "bili_toy_items.tsv").write_bytes("v1\tfirst\ttitle\nv2\tCafé crème\n".encode("latin-1") + b"v3\t\nv4\tfour\nv5\tfive\n")
    env = lmdb.open(str(src / "bili_toy.lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"1", pickle.dumps(authors_class(smooth, 1)))  # authors' key for v1: no 'v'
        txn.put(b"v2", image_bytes("CMYK"))  # exact token key, encoded bytes
        txn.put(b"3", pickle.dumps(authors_class(_pixels(4, 4), 3))[:-20])  # truncated pickle
        txn.put(b"4", pickle.dumps(authors_class(_pixels(), 4))[:40] + b"\x00" * 8)
    env.close()
    args = ["pmmrec", "--input", str(src), "--output", str(tmp_path / "out"), "--quiet"]
    with pytest.raises(PMMRecDataError, match="line 2: not valid UTF-8"):
        run(args)
    with pytest.raises(PMMRecDataError, match=r"key b'3'.*neither JPEG/PNG"):
        run(args + ["--encoding", "latin-1"])
    env = lmdb.open(str(src / "bili_toy.lmdb"), map_size=1 << 24)
    with env.begin(write=True) as txn:
        txn.put(b"3", pickle.dumps(authors_class(_pixels(4, 4), 3)))  # v3: an image but no text
        txn.delete(b"4")
    env.close()
    meta = run(args + ["--encoding", "latin-1"])
    out = tmp_path / "out" / "bili_toy"
    assert meta["name"] == "bili_toy"
    assert meta["counts"] == {"users": 3, "items": 5, "interactions": 9, "images": 3, "items_without_image": 2,
                              "items_without_text": 1, "empty_text_fields": {"title": 1}}
    assert meta["dropped"] == {"image_missing": 2}
    assert meta["fallbacks"]["lmdb_key_without_v_prefix"] == 2
    assert sorted(p.name for p in (out / "bili_toy.images").iterdir()) == ["v1.jpg", "v2.jpg", "v3.jpg"]
    with Image.open(out / "bili_toy.images" / "v1.jpg") as im:
        assert im.mode == "RGB" and np.abs(np.asarray(im).astype(int) - smooth).max() < 6
    item_rows = (out / "bili_toy.item").read_text(encoding="utf-8").splitlines()
    assert item_rows[1:3] == ["v1\tfirst title", "v2\tCafé crème"]
    inter = [r.split("\t") for r in (out / "bili_toy.inter").read_text().splitlines()[1:]]
    assert [r for r in inter if r[0] == "u1"] == [["u1", "v1", "0"], ["u1", "v2", "1"], ["u1", "v3", "2"], ["u1", "v1", "3"]]
    assert json.loads((out / "bili_toy.meta.json").read_text())["counts"] == meta["counts"]
