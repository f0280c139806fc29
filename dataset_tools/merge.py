"""``merge``: several converted datasets as one, with domain-distinct users and items (multi-source pre-training).

``--inputs DIR1/NAME1 DIR2/NAME2 ...`` are dataset folders written by this tool (``NAMEi.inter``,
``NAMEi.item``, optional ``NAMEi.images/``). Every user and item token ``t`` of input ``NAMEi`` becomes
``NAMEi_t`` (or ``PREFIXi_t`` with ``--prefixes``), so no user or item of one domain meets another's, and
one training stream mixes the domains' users. Text fields are the union of the inputs' (in order of first
appearance; a field an input lacks is empty for its items); images are copied (an RGB JPEG byte for byte)
into ``NAME.images/`` (other formats become JPEG); timestamps are kept (a row whose timestamp is
not a finite number is dropped as ``interaction_bad_timestamp``, an error with ``--strict``).
``NAME.meta.json`` lists the sources under ``source.datasets`` (name, prefix, folder, counts, file
hashes). Text is taken as written: character references were decoded when the inputs were converted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import BAD_TIMESTAMP, ItemRecord, Report, SourceDataset, parse_timestamp, progress
from dataset_tools.images import folder_image
from dataset_tools.tokens import SAFE_TOKEN

FORMAT = "merge"
DEFAULT_NAME = "merged"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inputs", nargs="+", required=True,
                        help="dataset folders DIR/NAME (atomic files NAME.inter, NAME.item, NAME.images/)")
    parser.add_argument("--prefixes", nargs="+", default=None,
                        help="token prefix per input (default: each input's NAME)")


def _read_atomic(path: Path) -> pd.DataFrame:
    """An atomic file as strings, header types stripped (``item_id:token`` -> ``item_id``)."""
    if not path.is_file():
        raise PMMRecDataError(f"{path} does not exist; --inputs takes dataset folders DIR/NAME written by "
                              f"python -m dataset_tools.convert")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def _source_meta(folder: Path, name: str) -> dict:
    meta = folder / f"{name}.meta.json"
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    inputs = [Path(p) for p in args.inputs]
    prefixes = args.prefixes or [p.name for p in inputs]
    if len(prefixes) != len(inputs):
        raise PMMRecDataError(f"--prefixes has {len(prefixes)} entries for {len(inputs)} --inputs")
    if len(set(prefixes)) != len(prefixes):
        raise PMMRecDataError(f"--prefixes {prefixes} repeat a prefix: domains would share tokens; give distinct ones")
    for prefix in prefixes:
        if not SAFE_TOKEN.fullmatch(prefix) or prefix.startswith("."):
            raise PMMRecDataError(f"prefix {prefix!r} is not a plain token; use letters, digits, '_', '-', '.'")

    sources, fields = [], []
    frames = []
    for folder, prefix in zip(inputs, prefixes):
        name = folder.name
        items = _read_atomic(folder / f"{name}.item")
        inter = _read_atomic(folder / f"{name}.inter")
        for column in ("user_id", "item_id", "timestamp"):
            if column not in inter.columns:
                raise PMMRecDataError(f"{folder / f'{name}.inter'} has no {column} column (columns: {list(inter.columns)})")
        if "item_id" not in items.columns:
            raise PMMRecDataError(f"{folder / f'{name}.item'} has no item_id column")
        text_fields = [c for c in items.columns if c != "item_id"]
        fields += [f for f in text_fields if f not in fields]
        frames.append((folder, name, prefix, items, inter, text_fields))
        meta = _source_meta(folder, name)
        sources.append({"name": name, "prefix": prefix, "folder": str(folder.resolve()),
                        "format": meta.get("format"), "counts": meta.get("counts"),
                        "sha256": (meta.get("files") or {}).get("sha256"),
                        "text_fields": text_fields})

    src = SourceDataset(FORMAT, fields, {"datasets": sources})
    for folder, name, prefix, items, inter, text_fields in frames:
        image_dir = folder / f"{name}.images"
        columns = list(items.columns)
        rows = items.itertuples(index=False, name=None)
        for values in progress(rows, args.quiet, f"items {name}", total=len(items)):
            row = dict(zip(columns, values))
            token = row["item_id"]
            merged = f"{prefix}_{token}"
            if merged in src.items:
                report.drop("item_duplicate_row", example=f"{name}: item {token}")
                continue
            text = {f: row.get(f, "") for f in fields}
            image = None
            if image_dir.is_dir() and "/" not in token and "\\" not in token and not token.startswith("."):
                image = folder_image(image_dir, token)  # written tokens are file-name safe (or %-encoded)
            src.items[merged] = ItemRecord(text=text, image=image)
        times = [parse_timestamp(t) for t in inter["timestamp"].tolist()]
        finite = np.array([t is not None for t in times], dtype=bool)
        for row in np.flatnonzero(~finite).tolist():  # line = row + 2 (the header is line 1)
            report.bad_input(BAD_TIMESTAMP, f"{folder / f'{name}.inter'}, line {row + 2}, column timestamp: "
                                            f"{inter['timestamp'].iat[row]!r} is not a finite number")
        inter = inter[finite]
        src.users += (prefix + "_" + inter["user_id"]).tolist()
        src.item_ids += (prefix + "_" + inter["item_id"]).tolist()
        src.times += [t for t in times if t is not None]
    return src
