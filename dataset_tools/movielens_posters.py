"""``movielens-posters``: MovieLens-100K with TMDB overviews and poster thumbnails.

Input folder (``--input``)::

    ml-100k/u.data        user \\t item \\t rating \\t unix time      (all ratings kept, like RecBole's ml-100k)
    ml-100k/u.item        id|title|release|video release|url|19 genre flags   (Latin-1)
    ml-100k/u.genre       genre name|index                          (optional; built-in names otherwise)
    items_tmdb.csv        movie_id,title,<genre flags>,year,overview,...   (UTF-8; first row per id wins)
    posters/<id>.jpg      (``--posters`` to use another folder)

The ``ml-100k/`` files may also lie directly in ``--input``. Text fields: ``title`` (u.item),
``genres`` (names of the set flags, ``unknown`` left out), ``overview`` (TMDB). A movie without a
poster keeps its text.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import BAD_TIMESTAMP, ItemRecord, Report, SourceDataset, parse_timestamp, progress
from dataset_tools.images import item_image
from dataset_tools.text import clean_text, iter_csv, iter_lines, text_field

logger = logging.getLogger(__name__)

FORMAT = "movielens-posters"
DEFAULT_NAME = "ml100k-posters"
TEXT_FIELDS = ["title", "genres", "overview"]
GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="folder holding ml-100k/, items_tmdb.csv, posters/")
    parser.add_argument("--posters", type=Path, default=None, help="poster folder (default: INPUT/posters)")
    parser.add_argument("--tmdb", type=Path, default=None, help="TMDB csv (default: INPUT/items_tmdb.csv; optional)")
    parser.set_defaults(encoding="latin-1")  # u.item is Latin-1


def _ml_file(root: Path, name: str) -> Path:
    for candidate in (root / "ml-100k" / name, root / name):
        if candidate.is_file():
            return candidate
    raise PMMRecDataError(f"{name} not found in {root}/ml-100k/ or {root}/; pass --input with the MovieLens-100K folder")


def _genre_names(root: Path, report: Report, encoding: str | None) -> list[str]:
    try:
        path = _ml_file(root, "u.genre")
    except PMMRecDataError:
        return GENRES
    names = {}
    for _, line in iter_lines(path, report, encoding):
        name, _, index = line.partition("|")
        if name and index.strip().isdigit():
            names[int(index)] = name
    return [names.get(i, GENRES[i] if i < len(GENRES) else "") for i in range(max(len(GENRES), len(names)))]


def _overviews(path: Path, report: Report, encoding: str | None) -> dict[str, str]:
    rows = iter_csv(path, report, encoding)
    _, header = next(rows, (0, []))
    if "movie_id" not in header or "overview" not in header:
        raise PMMRecDataError(f"{path}: expected a header with movie_id and overview, got {header[:5]}")
    id_col, text_col = header.index("movie_id"), header.index("overview")
    overviews: dict[str, str] = {}
    for line, row in rows:
        if len(row) != len(header):
            report.bad_input("tmdb_malformed_row", f"{path}, line {line}: {len(row)} fields, expected {len(header)}")
            continue
        movie = row[id_col].strip()
        if movie in overviews:
            report.drop("tmdb_duplicate_row", example=f"{path.name}:{line} movie_id {movie}")
            continue
        overviews[movie] = text_field(row[text_col], report, f"{path.name}:{line} overview")
    return overviews


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    root = Path(args.input)
    u_item, u_data = _ml_file(root, "u.item"), _ml_file(root, "u.data")
    posters = Path(args.posters) if args.posters else root / "posters"
    tmdb = Path(args.tmdb) if args.tmdb else root / "items_tmdb.csv"
    if not posters.is_dir():
        raise PMMRecDataError(f"poster folder {posters} does not exist; pass --posters")
    overviews = _overviews(tmdb, report, args.encoding) if tmdb.is_file() or args.tmdb else {}
    if not overviews:
        logger.warning("no TMDB overviews read from %s: items get title and genres only", tmdb)
    genres = _genre_names(root, report, args.encoding)
    src = SourceDataset(FORMAT, TEXT_FIELDS, {"input": str(root.resolve()), "u.item": str(u_item),
                                               "u.data": str(u_data), "tmdb": str(tmdb) if overviews else None,
                                               "posters": str(posters)})
    for line, text in iter_lines(u_item, report, args.encoding):
        fields = text.split("|")
        if len(fields) < 5 or not fields[0].strip():
            if text.strip():
                report.bad_input("item_malformed_line", f"{u_item}, line {line}: {len(fields)} fields")
            continue
        movie = fields[0].strip()
        if movie in src.items:
            report.drop("item_duplicate_row", example=f"{u_item.name}:{line} id {movie}")
            continue
        flags = fields[5:]
        names = [genres[i] for i, flag in enumerate(flags) if flag.strip() == "1" and i < len(genres) and genres[i] != "unknown"]
        poster = item_image(posters, movie, report, (".jpg", ".jpeg", ".png"))
        src.items[movie] = ItemRecord(
            text={"title": text_field(fields[1], report, f"{u_item.name}:{line} title"),
                  "genres": clean_text(" ".join(names)), "overview": overviews.get(movie, "")},
            image=poster,
        )
    for line, text in progress(iter_lines(u_data, report, args.encoding), args.quiet, "u.data", unit="line"):
        fields = text.split("\t")
        if len(fields) < 4:
            if text.strip():
                report.bad_input("interaction_malformed_line", f"{u_data}, line {line}: {len(fields)} fields, expected 4")
            continue
        stamp = parse_timestamp(fields[3])
        if stamp is None:
            report.bad_input(BAD_TIMESTAMP, f"{u_data}, line {line}, column 4: timestamp {fields[3]!r} is not a finite number")
            continue
        src.add(fields[0].strip(), fields[1].strip(), stamp)
    return src
