"""The sources of a data set merged from several (``dataset_tools.convert merge``): which source each user or item
token came from, read from the merge's meta.json (``source.datasets``: name, token prefix, counts, file hashes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def token_domains(dataset, field: str) -> np.ndarray | None:
    """For a data set merged from several sources (``dataset_tools.convert merge``): the source index of every id
    of ``field`` (the source whose ``PREFIX_`` its token starts with, from the merge's meta.json; -1 for the
    padding id), else None."""
    meta_file = Path(dataset.dataset_path) / f"{dataset.dataset_name}.meta.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sources = (meta.get("source") or {}).get("datasets") if meta.get("format") == "merge" else None
    if not sources:
        return None
    prefixes = sorted(((s["prefix"] + "_", i) for i, s in enumerate(sources)), key=lambda p: -len(p[0]))
    return np.array([next((i for p, i in prefixes if str(t).startswith(p)), -1)
                     for t in dataset.field2id_token[field]])
