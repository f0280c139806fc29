"""Make recbole 1.2.1 run on the libraries this project pins.

Imported (and applied) first by ``recbole_pmmrec/__init__.py``. Each fix is small, idempotent and
covered by a regression test in ``tests/test_compat.py``:

* numpy >= 2 removed ``np.float_``, ``np.bool8`` ... that recbole 1.2.1 uses: restore the aliases.
* pandas >= 3 breaks recbole's ``token_seq`` fields and NaN filling without an error: refuse to run
  with a clear message (the fix is the ``pandas<3`` pin).
* torch >= 2.6 loads checkpoints weights-only; recbole's trainer pickles its ``Config`` into its own
  checkpoints. :func:`load_own_checkpoint` reloads a file that the trainer wrote itself, under the
  run's ``checkpoint_dir``, and refuses anything else (see ``recbole_pmmrec.trainer``).
* ``recbole.quick_start`` imports ``ray`` and runs a FLOPs count: this package never imports it.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError

# Aliases removed in numpy 2.0 and still used by recbole 1.2.1 (and ray 2.6.3).
_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "bool8": "bool_",
    "int_": "int64",
    "unicode_": "str_",
    "string_": "bytes_",
    "Inf": "inf",
    "NaN": "nan",
}

_applied = False


def restore_numpy_aliases() -> list[str]:
    """Re-create numpy aliases removed in numpy 2; returns the names it had to add."""
    added = []
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__ and hasattr(np, target):
            setattr(np, alias, getattr(np, target))
            added.append(alias)
    return added


def check_pandas(version: str | None = None) -> None:
    """Refuse pandas >= 3, which silently corrupts recbole 1.2.1 datasets."""
    import pandas as pd

    version = version or pd.__version__
    major = int(version.split(".")[0])
    if major >= 3:
        raise PMMRecConfigError(
            f"pandas {version} is installed, but recbole 1.2.1 breaks on pandas >= 3 (token_seq fields "
            f"fail and missing values are not filled). Install the pinned set: "
            f"pip install -c constraints.txt 'pandas<3'"
        )


def apply() -> None:
    """Apply every fix once."""
    global _applied
    if _applied:
        return
    restore_numpy_aliases()
    check_pandas()
    # RecBole reads atomic files with pandas' python engine, which stops at the csv module's 128 KiB field
    # limit: a long item text would fail with a pandas error. Long texts are truncated by the tokenizer.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    # recbole 1.2.1's own pandas/torch deprecation noise (chained fillna, Series.agg(len), cuda.amp): not the user's
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")
    _applied = True


def is_inside(path: str | os.PathLike, directory: str | os.PathLike) -> bool:
    """True when ``path`` resolves to a location inside ``directory``."""
    path, directory = Path(path).resolve(), Path(directory).resolve()
    return path == directory or directory in path.parents


def load_own_checkpoint(path: str | os.PathLike, checkpoint_dir: str | os.PathLike, map_location=None):
    """Load a checkpoint that RecBole's trainer wrote itself.

    RecBole pickles its ``Config`` into the checkpoint, so it cannot be read weights-only. A pickle can
    run code when loaded, so this is allowed only for files inside the run's own ``checkpoint_dir``.
    Weights from anywhere else go through ``recbole_pmmrec.transfer`` (safetensors) instead.
    """
    import torch

    if not is_inside(path, checkpoint_dir):
        raise PMMRecCheckpointError(
            f"refusing to unpickle '{path}': it is not inside this run's checkpoint_dir '{checkpoint_dir}'. "
            f"RecBole checkpoints can run code when loaded; only files the trainer wrote itself are read "
            f"this way. To start from someone else's weights, use --pretrained=FOLDER (safetensors)."
        )
    if not Path(path).is_file():
        raise PMMRecCheckpointError(f"checkpoint '{path}' does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated or corrupt file
        raise PMMRecCheckpointError(
            f"checkpoint '{path}' could not be read ({type(exc).__name__}: {exc}); it is truncated or "
            f"corrupt. Delete it and train again, or resume from an earlier checkpoint."
        ) from exc
