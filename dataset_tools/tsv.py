"""``tsv``: plain tab-separated interactions and items, each with a header line, and optional images.

Input folder (``--input``)::

    interactions.tsv   user_id \\t item_id \\t timestamp [\\t ...]   (--interactions; --user-column,
                                                                  --item-column, --time-column)
    items.tsv          item_id \\t title [\\t genres ...]           (--items; --item-column, --text-columns)
    posters/<item_id>.jpg                                         (optional: --images DIR, --no-images)

This is the layout of the SeqRec copies (``seqrec_*``: ``item_id  title``) and of ``ml1m_posters``
(``item_id  title  genres`` plus ``posters/``). Cells are raw, neither quoted nor escaped, so each
line is split at every tab: a line with another number of cells than its header, or an empty id, is
malformed (counted; an error with ``--strict``). Extra interaction columns (a rating) are ignored.

Text fields: the items columns other than the id, in file order, or ``--text-columns``; character
references (``&amp;``) are decoded and counted. Timestamps must be finite numbers: ``nan``,
``inf``, ``1e400``, text and empty cells are dropped as ``interaction_bad_timestamp`` (errors with
``--strict``), naming file, line and column. ``--time-column ''``: the file has no times; each
user's rows keep their file order as positions 0, 1, 2 ... Rows are never deduplicated or
re-ordered; ``--kcore K`` (default 0: off) keeps the iterative K-core.

Default NAME: the input folder's name with ``_`` written ``-`` (``seqrec_toys`` -> ``seqrec-toys``).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Iterator

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import BAD_TIMESTAMP, ItemRecord, Report, SourceDataset, parse_timestamp, progress
from dataset_tools.images import item_image
from dataset_tools.text import iter_lines, text_field

FORMAT = "tsv"
DEFAULT_NAME = None  # the input folder's name
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # an .item column name RecBole can read


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="folder with interactions.tsv, items.tsv, optional posters/")
    parser.add_argument("--interactions", type=Path, default=None, help="interaction file (default: INPUT/interactions.tsv)")
    parser.add_argument("--items", type=Path, default=None, help="item file (default: INPUT/items.tsv)")
    parser.add_argument("--user-column", default="user_id", help="user column of the interaction file (default user_id)")
    parser.add_argument("--item-column", default="item_id", help="item column of both files (default item_id)")
    parser.add_argument("--time-column", default="timestamp",
                        help="time column of the interaction file (default timestamp; '' = none: file order per user)")
    parser.add_argument("--text-columns", nargs="+", default=None,
                        help="item columns that make the text, in this order (default: all but the item column)")
    parser.add_argument("--images", type=Path, default=None, help="image folder of <item_id>.jpg (default: INPUT/posters if present)")
    parser.add_argument("--no-images", action="store_true", help="text only, even if INPUT/posters exists")
    parser.add_argument("--kcore", type=int, default=0, help="iterative k-core on users and items (default 0 = off)")


def default_name(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9.-]+", "-", Path(folder).resolve().name.replace("_", "-"))
    return name.strip(".-") or "tsv-dataset"


def _table(path: Path, report: Report, args: argparse.Namespace, what: str) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header of ``path`` and an iterator of ``(line, cells)`` over its well-formed rows."""
    lines = iter_lines(path, report, args.encoding)
    first = next(lines, None)
    if first is None or not first[1].strip():
        raise PMMRecDataError(f"{path}: no header line; expected column names such as '{args.item_column}'")
    header = [name.strip() for name in first[1].split("\t")]

    def rows() -> Iterator[tuple[int, list[str]]]:
        for line, text in progress(lines, args.quiet, path.name, unit="line"):
            if not text.strip():
                continue
            cells = text.split("\t")
            if len(cells) != len(header):
                report.bad_input(f"{what}_malformed_line", f"{path}, line {line}: {len(cells)} cells, the header has {len(header)}")
                continue
            yield line, cells

    return header, rows()


def _column(header: list[str], name: str, path: Path, option: str) -> int:
    if name not in header:
        raise PMMRecDataError(f"{path}: no column {name!r} (the header has {header}); name it with {option}")
    return header.index(name)


def _read_items(path: Path, src: SourceDataset, report: Report, args: argparse.Namespace, image_dir: Path | None) -> None:
    header, rows = _table(path, report, args, "item")
    id_col = _column(header, args.item_column, path, "--item-column")
    fields = args.text_columns or [c for c in header if c != args.item_column]
    for field in fields:
        if not FIELD_NAME.fullmatch(field) or field == "item_id":
            raise PMMRecDataError(f"{path}: text column {field!r} cannot be an .item field name "
                                  f"(letters, digits, '_', not item_id); rename it in the header")
    columns = [(field, _column(header, field, path, "--text-columns")) for field in fields]
    src.text_fields = fields
    for line, cells in rows:
        item = cells[id_col].strip()
        if not item:
            report.bad_input("item_malformed_line", f"{path}, line {line}: empty {args.item_column}")
            continue
        if item in src.items:
            report.drop("item_duplicate_row", example=f"{path.name}:{line} item {item}")
            continue
        image = item_image(image_dir, item, report) if image_dir is not None else None
        text = {field: text_field(cells[col], report, f"{path.name}:{line} {field}") for field, col in columns}
        src.items[item] = ItemRecord(text=text, image=image)


def _read_interactions(path: Path, src: SourceDataset, report: Report, args: argparse.Namespace) -> None:
    header, rows = _table(path, report, args, "interaction")
    user_col = _column(header, args.user_column, path, "--user-column")
    item_col = _column(header, args.item_column, path, "--item-column")
    time_col = _column(header, args.time_column, path, "--time-column") if args.time_column else None
    next_position: dict[str, int] = {}
    for line, cells in rows:
        user, item = cells[user_col].strip(), cells[item_col].strip()
        if not user or not item:
            column = args.user_column if not user else args.item_column
            report.bad_input("interaction_malformed_line", f"{path}, line {line}: empty {column}")
            continue
        if time_col is None:
            stamp = float(next_position.get(user, 0))
            next_position[user] = int(stamp) + 1
        else:
            stamp = parse_timestamp(cells[time_col])
            if stamp is None:
                report.bad_input(BAD_TIMESTAMP, f"{path}, line {line}, column {args.time_column!r}: "
                                                f"{cells[time_col]!r} is not a finite number")
                continue
        src.add(user, item, stamp)


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    if args.kcore < 0:
        raise PMMRecDataError(f"--kcore must be >= 0, got {args.kcore}")
    root = Path(args.input)
    if not root.is_dir():
        raise PMMRecDataError(f"--input {root} is not a folder")
    interactions = Path(args.interactions) if args.interactions else root / "interactions.tsv"
    items = Path(args.items) if args.items else root / "items.tsv"
    image_dir = None
    if args.images is not None and not args.no_images:
        image_dir = Path(args.images)
        if not image_dir.is_dir():
            raise PMMRecDataError(f"--images {image_dir} is not a folder")
    elif not args.no_images and (root / "posters").is_dir():
        image_dir = root / "posters"
    src = SourceDataset(FORMAT, [], {"input": str(root.resolve()), "interactions": str(interactions), "items": str(items),
                                     "images": str(image_dir) if image_dir else None}, kcore=args.kcore)
    _read_items(items, src, report, args, image_dir)
    _read_interactions(interactions, src, report, args)
    return src
