"""Checks before any work: every output folder can be written, and what a failed write says.

``run_recbole_pmmrec`` calls :func:`check_output_dirs` right after the config is built, before the data set
is read or a model is built: each output folder (``checkpoint_dir``, ``log_dir``, ``tensorboard_dir``,
``cache_dir``, the ``save_pretrained`` folder) is created if needed, and a 64 KiB probe file is written,
synced and deleted in it. A folder that is a file, cannot be created, is read-only or sits on a full disk
is a :class:`~recbole_pmmrec.errors.PMMRecConfigError` naming the key, the path and what to do, instead of
a ``NotADirectoryError`` or ``basic_ios::clear`` after an epoch of training.

:func:`write_failure` turns an ``OSError`` (or torch's ``RuntimeError`` for a failed stream) raised while
writing a file into a :class:`~recbole_pmmrec.errors.PMMRecError` that names the file and, for a full
disk, says to free space; the callers remove their temporary file first.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Mapping

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecError

PROBE_BYTES = 64 * 1024  # a write this small still fails on a full disk (the first block of a new file)
_FULL = (errno.ENOSPC, errno.EDQUOT)


def _free_space(path: Path) -> str:
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MiB"


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full; torch reports it as a RuntimeError with no errno."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc).lower()
    return any(s in text for s in ("no space left", "disk quota", "basic_ios::clear", "file write failed"))


def check_output_dir(key: str, path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it writable with a probe file; -> the folder."""
    folder = Path(os.path.expanduser(str(path)))
    for parent in (folder, *folder.parents):  # a file where a folder must be: this path or one above it
        if parent.exists() and not parent.is_dir():
            raise PMMRecConfigError(
                f"{key}: '{folder}' cannot be a folder because '{parent}' is a file; give {key} a folder path "
                f"(e.g. --{key}={folder}_dir) or move the file away")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PMMRecConfigError(
            f"{key}: cannot create the folder '{folder}' ({exc.strerror or exc}); give {key} a folder you can "
            f"write to") from None
    probe = folder / f".pmmrec-write-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if disk_full(exc):
            advice = f"the disk is full ({_free_space(folder)} free): free space on it or point {key} at another disk"
        else:
            advice = f"{exc.strerror or exc}: give {key} a folder you can write to"
        raise PMMRecConfigError(f"{key}: cannot write into '{folder}' ({advice})") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return folder


def check_output_dirs(folders: Mapping[str, str | os.PathLike | None]) -> dict[str, Path]:
    """:func:`check_output_dir` for each ``{config key: folder}`` (None: the key writes nowhere)."""
    return {key: check_output_dir(key, path) for key, path in folders.items() if path not in (None, "")}


def write_failure(path: str | os.PathLike, exc: BaseException, what: str = "file",
                  error: type[PMMRecError] = PMMRecError) -> PMMRecError:
    """The ``error`` to raise when writing ``path`` failed with ``exc`` (the temporary file already removed)."""
    folder = Path(path).parent
    if disk_full(exc):
        return error(f"cannot write the {what} '{path}': the disk is full ({_free_space(folder)} free in "
                     f"'{folder}'); free space there or point the run at another disk, then start it again")
    return error(f"cannot write the {what} '{path}': {exc}; check that '{folder}' is writable and has room")


__all__ = ["check_output_dir", "check_output_dirs", "disk_full", "write_failure", "PROBE_BYTES"]
