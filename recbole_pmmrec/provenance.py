"""What a run ran on, and a look at the atomic files before RecBole reads them.

:func:`check_atomic_files` reads each atomic file of the dataset once, streaming: its sha256, size,
column count and longest line. It refuses a file with more columns than RecBole can sensibly load
(unless ``load_col`` picks columns for it). Then each file RecBole reads is checked row by row
(:mod:`recbole_pmmrec.atomic_rows`: empty files, broken rows, bad timestamps, each named by file,
line and column) before pandas sees it.

:func:`run_provenance` gathers library versions, the config, those hashes and the encoder-state cache
directories (their names carry the cache key hash); ``run_recbole_pmmrec`` writes it into the run log
(one JSON line after ``run provenance:``) and next to it as ``<log>.provenance.json``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from recbole_pmmrec.atomic_rows import check_rows
from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.hashing import jsonable
from recbole_pmmrec.preflight import write_failure

logger = logging.getLogger(__name__)

ATOMIC_SUFFIXES = ("inter", "item", "user", "kg", "link", "net")
MAX_COLUMNS = 4096           # more columns than any recommendation data set needs; 10^6 would take hours
MAX_LINE_BYTES = 1 << 30     # one line (one row) of 1 GiB is refused
_CHUNK = 1 << 20
LIBRARIES = ("torch", "recbole", "numpy", "pandas", "scipy", "transformers", "tokenizers", "timm", "safetensors",
             "pillow", "pyyaml", "recbole-pmmrec")


def atomic_files(config) -> list[Path]:
    """The dataset's atomic files: ``data_path/<dataset>[.<benchmark>].<suffix>``."""
    folder = Path(config["data_path"])
    if not folder.is_dir():
        return []
    name = str(config["dataset"])
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.startswith(name + ".") and p.suffix.lstrip(".") in ATOMIC_SUFFIXES)


def inspect_file(path: Path, separator: str = "\t") -> dict:
    """One streaming pass: sha256, bytes, header column count, longest line (bytes)."""
    digest, size, longest, current = hashlib.sha256(), 0, 0, 0
    sep, header_seps, in_header = separator.encode(), 0, True
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            start = 0
            while (end := chunk.find(b"\n", start)) != -1:
                if in_header:
                    header_seps += chunk.count(sep, start, end)
                    in_header = False
                longest, current = max(longest, current + end - start), 0
                start = end + 1
            if in_header:
                header_seps += chunk.count(sep, start)
            current += len(chunk) - start
            if current > MAX_LINE_BYTES:
                raise PMMRecDataError(f"{path}: a line longer than {MAX_LINE_BYTES} bytes; the file is not a RecBole "
                                      f"atomic file (tab-separated, one row per line) or holds a runaway cell")
    return {"sha256": digest.hexdigest(), "bytes": size, "columns": header_seps + 1 if size else 0,
            "max_line_bytes": max(longest, current)}


def loaded_by_recbole(config, path: Path) -> bool:
    """Whether RecBole reads ``path``: ``<dataset>.<suffix>``, or with ``benchmark_filename`` only the
    ``<dataset>.<part>.inter`` files it names (instead of ``<dataset>.inter``)."""
    name, suffix = str(config["dataset"]), path.suffix.lstrip(".")
    benchmark = config["benchmark_filename"] or []
    if suffix == "inter" and benchmark:
        return path.name in {f"{name}.{part}.inter" for part in benchmark}
    return path.name == f"{name}.{suffix}"


def check_atomic_files(config) -> dict[str, dict]:
    """Inspect every atomic file (see the module docstring) and check the rows of those RecBole reads
    (:func:`recbole_pmmrec.atomic_rows.check_rows`); ``{file name: inspect_file(...) + rows}``."""
    separator = str(config["field_separator"] or "\t")
    load_col = config["load_col"]
    eval_args = config["eval_args"] or {}
    found = {}
    for path in atomic_files(config):
        info = inspect_file(path, separator)
        suffix = path.suffix.lstrip(".")
        # RecBole loads every column when load_col is None or '*' for the file; a file missing from a load_col
        # dict is not loaded at all
        loads_all = load_col is None or (isinstance(load_col, dict) and load_col.get(suffix) == "*")
        if info["columns"] > MAX_COLUMNS and loads_all:
            raise PMMRecDataError(
                f"{path} has {info['columns']} columns (more than {MAX_COLUMNS}); RecBole would load every one of them. "
                f"Keep only the columns you need in the file, or name them with load_col, e.g. "
                f"load_col: {{inter: [user_id, item_id, timestamp], item: [item_id, title]}}")
        if loaded_by_recbole(config, path):
            # the csv module (RecBole's pandas engine too) stops at its field size limit: make room for the longest line
            csv.field_size_limit(max(csv.field_size_limit(), info["max_line_bytes"] + 1))
            info.update(check_rows(path, separator=separator, encoding=str(config["encoding"] or "utf-8"),
                                   load_col=load_col, unload_col=config["unload_col"], time_field=config["TIME_FIELD"],
                                   time_ordered=isinstance(eval_args, dict) and eval_args.get("order") == "TO"))
        found[path.name] = info
    return found


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        versions["torch"] = torch.__version__  # with its build tag (e.g. +cu130)
        versions["torch_cuda"] = str(torch.version.cuda)
    except ImportError:
        pass
    commit = _git_commit()
    if commit:
        versions["recbole-pmmrec_git"] = commit
    return versions


def _git_commit() -> str | None:
    """The checkout's commit (+ '-dirty') when the package runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cache_dirs(dataset) -> dict[str, str]:
    """{modality: encoder-state cache directory} of a PMMRecDataset (empty for other datasets)."""
    features = getattr(dataset, "item_features", None)
    return dict(features.cache_dirs) if features is not None else {}


def run_provenance(config, files: dict | None = None, dataset=None) -> dict:
    """Library versions, config, atomic-file hashes and cache directories of this run (JSON-able)."""
    final = {k: v if isinstance(v, (int, float, bool, str, type(None))) else str(v)
             for k, v in sorted(jsonable(config.final_config_dict).items())}
    return {
        "versions": library_versions(),
        "config_sha256": hashlib.sha256(json.dumps(final, sort_keys=True).encode()).hexdigest(),
        "config": final,
        "unknown_config_keys": getattr(config, "unknown_keys", {}),
        "data_files": files if files is not None else {},
        "cache_dirs": cache_dirs(dataset) if dataset is not None else {},
    }


def log_provenance(info: dict, log_file: str | None) -> None:
    """One JSON line in the run log, and ``<log>.provenance.json`` beside it."""
    logging.getLogger().info("run provenance: " + json.dumps(info, sort_keys=True))
    if log_file:
        target = Path(log_file).with_suffix(".provenance.json")
        try:
            target.write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
        except OSError as exc:  # a full disk: no half-written file, and an error that says so
            target.unlink(missing_ok=True)
            raise write_failure(target, exc, "run provenance") from exc


__all__ = ["check_atomic_files", "inspect_file", "atomic_files", "library_versions", "cache_dirs", "run_provenance",
           "log_provenance", "MAX_COLUMNS"]
