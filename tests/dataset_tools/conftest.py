"""Tiny source files for the converter tests, written into each test's temporary folder."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def image_bytes(mode: str = "RGB", size=(8, 6), fmt: str = "JPEG", color=None, **save) -> bytes:
    """An encoded test image; pixel values are a deterministic gradient unless ``color`` is given."""
    w, h = size
    if color is not None:
        im = Image.new(mode, size, color)
    elif mode in ("I;16", "I"):
        im = Image.fromarray((np.arange(w * h, dtype=np.uint16).reshape(h, w) * 997).astype(np.uint16))
    else:
        base = Image.fromarray(((np.arange(w * h * 3).reshape(h, w, 3) * 7) % 256).astype(np.uint8), "RGB")
        im = base.convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels but holds (almost) no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


REPO = Path(__file__).resolve().parents[2]


def recbole_dataset(name: str, data_path: Path):
    """``data_path/name`` loaded by RecBole with ``properties/dataset/<name>.yaml``, as the runner loads it."""
    import recbole_pmmrec  # noqa: F401  (compat first)
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="SASRec", dataset=name, config_file_list=[str(REPO / "properties" / "dataset" / f"{name}.yaml")],
                    config_dict={"data_path": str(data_path), "train_neg_sample_args": None,
                                 "state": "ERROR", "show_progress": False})
    return create_dataset(config)


def nothing_written(output: Path) -> bool:
    """No dataset folder and no hidden staging folder: ``output`` is missing or empty."""
    return not output.exists() or not any(output.iterdir())


@pytest.fixture
def make_image():
    def make(path: Path, mode="RGB", size=(8, 6), fmt="JPEG", **kw) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image_bytes(mode, size, fmt, **kw))
        return path

    return make


@pytest.fixture
def ml100k_dir(tmp_path, make_image):
    """MovieLens-100K shaped input: 4 users, 6 movies (movie 6 unrated), Latin-1 u.item,
    a TMDB csv with a duplicate row and an overview holding a tab and a newline,
    posters: 1 RGB, 2 CMYK, 3 missing, 4 truncated, 5 grayscale PNG saved as .jpg name."""
    root = tmp_path / "ml"
    (root / "ml-100k").mkdir(parents=True)
    flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
    u_item = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags(3, 4, 5)}",
        f"2|Café Society (1995)|01-Jan-1995||http://x|{flags(8)}",
        f"3|Three (1996)|01-Jan-1996||http://x|{flags(0)}",
        f"4|Four (1996)|01-Jan-1996||http://x|{flags(1, 17)}",
        f"5|Five (1997)|01-Jan-1997||http://x|{flags(16)}",
        f"6|Six (1997)|01-Jan-1997||http://x|{flags(1)}",
        f"1|Duplicate Toy Story|01-Jan-1995||http://x|{flags(1)}",
    ]
    (root / "ml-100k" / "u.item").write_bytes(("\n".join(u_item) + "\n").encode("latin-1"))
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
              "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    (root / "ml-100k" / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(genres)))
    data = []
    for u in range(1, 5):
        for j, item in enumerate([1, 2, 3, 4, 5]):
            data.append(f"{u}\t{item}\t{(u + item) % 5 + 1}\t{880000000 + 100 * j + u}")
    data.append("1\t99\t5\t880000999")  # item 99 is not in u.item
    (root / "ml-100k" / "u.data").write_text("\n".join(data) + "\n")
    header = "movie_id,title," + ",".join(f"g{i}" for i in range(19)) + ",year,overview,original_language"
    zeros = ",".join("0" * 19)
    rows = [
        f'1,Toy Story (1995),{zeros},1995,"Woody and Buzz.\tA tab and a\nnewline",en',
        f"1,Toy Story Wrong,{zeros},1995,Second row must be ignored,en",
        f'2,Café Society,{zeros},1995,"She said ""hi"" in Paris",fr',
        f"3,Three,{zeros},1996,,en",
        f'4,Four,{zeros},1996,"""Four"" is a film",en',
    ]
    (root / "items_tmdb.csv").write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    posters = root / "posters"
    make_image(posters / "1.jpg")
    make_image(posters / "2.jpg", mode="CMYK")
    full = image_bytes(size=(64, 64))
    (posters / "4.jpg").write_bytes(full[: len(full) // 2])
    make_image(posters / "5.jpg", mode="L", fmt="PNG")
    return root


@pytest.fixture
def microlens_dir(tmp_path):
    root = tmp_path / "microlens"
    root.mkdir()
    (root / "MicroLens-50k_pairs.tsv").write_text("u1\t10 11 12 10\nu2\t12 13 99\nu3\t11\n")
    (root / "MicroLens-50k_titles.csv").write_text(
        'item,title\n10,"a cat, a dog"\n11,plain title\n12,"multi\nline # tag"\n13,thirteen\n10,duplicate\n14,unused\n'
    )
    return root


def write_jsonl_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


@pytest.fixture
def amazon_files(tmp_path, make_image):
    """Reviews (gz) and meta for a 2-core test: users A..E, items i1..i5 (+ i9 without meta)."""
    root = tmp_path / "amazon"
    root.mkdir()
    reviews = [("A", "i1", 1), ("A", "i2", 2), ("A", "i3", 3), ("B", "i1", 1), ("B", "i2", 2), ("C", "i2", 5),
               ("C", "i3", 6), ("D", "i4", 1), ("D", "i1", 2), ("E", "i5", 1), ("A", "i9", 4), ("B", "i9", 5)]
    lines = [json.dumps({"reviewerID": u, "asin": i, "unixReviewTime": t, "overall": 5.0}) for u, i, t in reviews]
    lines.append(lines[0])  # an exact duplicate review
    lines.append("{not json at all")
    write_jsonl_gz(root / "Toys_and_Games.json.gz", lines)
    meta = [
        json.dumps({"asin": "i1", "title": "Robot <b>Toy</b>", "brand": "Acme", "category": ["Toys & Games", "Robots"],
                    "description": ["<p>Walks &amp; talks.</p>", "<script>bad()</script>Batteries included"]}),
        repr({"asin": "i2", "title": "Python literal", "brand": "", "category": [], "description": "A <i>plain</i> string"}),
        json.dumps({"asin": "i3", "title": "", "brand": "", "category": [], "description": []}),
        json.dumps({"asin": "i4", "title": "Four", "category": ["Toys & Games"]}),
        json.dumps({"asin": "i5", "title": "Five"}),
        json.dumps({"asin": "i1", "title": "duplicate meta row"}),
    ]
    write_jsonl_gz(root / "meta_Toys_and_Games.json.gz", meta)
    make_image(root / "images" / "i1.jpg")
    make_image(root / "images" / "i3.jpg")
    return root
