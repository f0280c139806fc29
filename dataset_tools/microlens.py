"""``microlens``: MicroLens-50k interaction sequences with video titles (text only).

Input folder (``--input``)::

    MicroLens-50k_pairs.tsv     user \\t item item ...   (each user's items in chronological order)
    MicroLens-50k_titles.csv    item,title               (header; titles may be quoted)

Timestamps are the positions in each user's sequence. Text field: ``title``. No images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import ItemRecord, Report, SourceDataset
from dataset_tools.text import iter_csv, read_sequences, text_field

FORMAT = "microlens"
DEFAULT_NAME = "microlens-50k"
TEXT_FIELDS = ["title"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="folder with MicroLens-50k_pairs.tsv and _titles.csv")
    parser.add_argument("--pairs", type=Path, default=None, help="sequence file (default: INPUT/MicroLens-50k_pairs.tsv)")
    parser.add_argument("--titles", type=Path, default=None, help="title file (default: INPUT/MicroLens-50k_titles.csv)")


def read_titles(path: Path, src: SourceDataset, report: Report, encoding: str | None) -> None:
    rows = iter_csv(path, report, encoding)
    _, header = next(rows, (0, []))
    if [h.strip().lower() for h in header[:2]] != ["item", "title"]:
        raise PMMRecDataError(f"{path}: expected the header 'item,title', got {','.join(header)[:80]!r}")
    for line, row in rows:
        if not row:
            continue
        item = row[0].strip()
        if not item:
            report.bad_input("item_malformed_line", f"{path}, line {line}: empty item id")
            continue
        if len(row) > 2:  # an unquoted comma inside the title
            report.fallback("title_unquoted_comma", example=f"{path.name}:{line}")
        if item in src.items:
            report.drop("item_duplicate_row", example=f"{path.name}:{line} item {item}")
            continue
        src.items[item] = ItemRecord(text={"title": text_field(",".join(row[1:]), report, f"{path.name}:{line}")})


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    root = Path(args.input)
    pairs = Path(args.pairs) if args.pairs else root / "MicroLens-50k_pairs.tsv"
    titles = Path(args.titles) if args.titles else root / "MicroLens-50k_titles.csv"
    src = SourceDataset(FORMAT, TEXT_FIELDS, {"input": str(root.resolve()), "pairs": str(pairs), "titles": str(titles)})
    read_titles(titles, src, report, args.encoding)
    read_sequences(pairs, src, report, args.encoding, args.quiet)
    return src
