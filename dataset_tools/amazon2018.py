"""``amazon2018``: Amazon Review Data (2018), one category.

Files::

    --reviews  X.json(.gz)       one review per line: reviewerID, asin, unixReviewTime, overall, ...
    --meta     meta_X.json(.gz)  one product per line: asin, title, brand, category (list), description
    --image-dir DIR              optional: DIR/<asin>.jpg (or .jpeg/.png/.webp)

Both files are streamed line by line. A line that is not JSON is read with ``ast.literal_eval``
(some 2018 meta files hold Python dict literals; never ``eval``); a line that is neither, or one
nested too deeply to read, is dropped and counted (an error with ``--strict``). A review whose
``unixReviewTime`` is missing or not a finite number is dropped as ``interaction_bad_timestamp``.
Exact duplicate reviews (same user, item, time) are dropped unless ``--keep-duplicates``. Only the meta of reviewed items is kept in memory.
Text fields: ``title``, ``brand``, ``categories`` (joined with ``, ``), ``description`` (a list is
joined), all with HTML tags removed. ``--kcore K`` (default 5, 0 = off) keeps the iterative
K-core of users and items, after items without meta or content are removed.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path
from typing import Iterator

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import BAD_TIMESTAMP, ItemRecord, Report, SourceDataset, parse_timestamp, progress
from dataset_tools.images import item_image
from dataset_tools.text import clean_text, count_entities, iter_lines, strip_html

FORMAT = "amazon2018"
DEFAULT_NAME = None  # "amazon-<category>" from the reviews file name
TEXT_FIELDS = ["title", "brand", "categories", "description"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reviews", type=Path, required=True, help="reviews json lines (.json or .json.gz)")
    parser.add_argument("--meta", type=Path, required=True, help="product meta json lines (.json or .json.gz)")
    parser.add_argument("--image-dir", type=Path, default=None, help="folder of <asin>.jpg images (optional)")
    parser.add_argument("--kcore", type=int, default=5, help="iterative k-core on users and items (default 5; 0 = off)")
    parser.add_argument("--keep-duplicates", action="store_true", help="keep repeated (user, item, time) reviews")


def default_name(reviews: Path) -> str:
    stem = re.sub(r"\.(json|jsonl)(\.gz)?$", "", Path(reviews).name)
    stem = re.sub(r"^reviews_", "", stem)
    stem = re.sub(r"_5$", "", stem)
    return "amazon-" + re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-").lower()


def iter_records(path: Path, report: Report, encoding: str | None, quiet: bool, what: str) -> Iterator[tuple[int, dict]]:
    """``(line, dict)`` for every JSON (or Python-literal) object line of ``path``."""
    for line, text in progress(iter_lines(path, report, encoding), quiet, Path(path).name, unit="line"):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except RecursionError:  # valid JSON or not, nested beyond the interpreter's recursion limit
            report.bad_input(f"{what}_unparseable_line", f"{path}, line {line}: nested too deeply to read")
            continue
        except json.JSONDecodeError:
            try:
                record = ast.literal_eval(text)  # literals only: no names, calls or attributes
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                report.bad_input(f"{what}_unparseable_line", f"{path}, line {line}: neither JSON nor a Python dict literal")
                continue
            report.fallback(f"{what}_python_literal_line", example=f"{Path(path).name}:{line}")
        if not isinstance(record, dict):
            report.bad_input(f"{what}_unparseable_line", f"{path}, line {line}: a {type(record).__name__}, not an object")
            continue
        yield line, record


def _text(value, report: Report | None = None, where: str | None = None) -> str:
    """A string, or a list of strings, as one HTML-free line (character references counted per field)."""
    parts = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if isinstance(v, str)]
    count_entities(" ".join(parts), report, where)
    return clean_text(" ".join(strip_html(v) for v in parts))


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    if args.kcore < 0:
        raise PMMRecDataError(f"--kcore must be >= 0, got {args.kcore}")
    image_dir = Path(args.image_dir) if args.image_dir else None
    if image_dir is not None and not image_dir.is_dir():
        raise PMMRecDataError(f"--image-dir {image_dir} is not a folder")
    src = SourceDataset(FORMAT, TEXT_FIELDS, {"reviews": str(args.reviews), "meta": str(args.meta),
                                               "image_dir": str(image_dir) if image_dir else None}, kcore=args.kcore)
    seen: set[tuple[str, str, float]] = set()
    for line, review in iter_records(args.reviews, report, args.encoding, args.quiet, "review"):
        user, item, stamp = review.get("reviewerID"), review.get("asin"), review.get("unixReviewTime")
        if not isinstance(user, str) or not isinstance(item, str) or not user or not item:
            report.bad_input("review_missing_field", f"{args.reviews}, line {line}: no reviewerID/asin")
            continue
        stamp, raw = parse_timestamp(stamp), stamp
        if stamp is None:
            report.bad_input(BAD_TIMESTAMP, f"{args.reviews}, line {line}, key unixReviewTime: {raw!r} is not a finite number")
            continue
        if not args.keep_duplicates:
            key = (user, item, stamp)
            if key in seen:
                report.drop("interaction_duplicate", example=f"{Path(args.reviews).name}:{line}")
                continue
            seen.add(key)
        src.add(user, item, stamp)
    seen.clear()
    reviewed = set(src.item_ids)
    for line, meta in iter_records(args.meta, report, args.encoding, args.quiet, "meta"):
        item = meta.get("asin")
        if not isinstance(item, str) or item not in reviewed:
            continue
        if item in src.items:
            report.drop("item_duplicate_row", example=f"{Path(args.meta).name}:{line} asin {item}")
            continue
        category = meta.get("category", meta.get("categories"))
        if isinstance(category, list) and category and isinstance(category[0], list):  # 2014 style: list of paths
            category = [c for path in category for c in path]
        category = category if isinstance(category, list) else [category]
        where = f"{Path(args.meta).name}:{line}"
        count_entities(" ".join(c for c in category if isinstance(c, str)), report, f"{where} categories")
        categories = ", ".join(t for t in (_text(c) for c in category) if t)
        image = item_image(image_dir, item, report) if image_dir is not None else None
        src.items[item] = ItemRecord(
            text={"title": _text(meta.get("title"), report, f"{where} title"),
                  "brand": _text(meta.get("brand"), report, f"{where} brand"),
                  "categories": categories,
                  "description": _text(meta.get("description"), report, f"{where} description")},
            image=image,
        )
    return src
