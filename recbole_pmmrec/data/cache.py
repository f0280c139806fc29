"""Encoder-state cache: the frozen bottom's token states of every item, computed once.

Layout: ``<root_dir>/<name>-<hash16>/`` with ``states.npy`` (n_items, L, D) in float16 or
float32, ``mask.npy`` (n_items, L) bool and ``meta.json`` = {key, shape, dtype, rows_done,
complete}. ``hash16`` is a hash of the full key (encoder identity, boundary layer, max length,
image size/grid, dtype, content hashes, n_items): a changed setting or changed content lands in
another directory and is built afresh; a stale cache is never read.

Building streams batches of ``compute_fn(ids) -> (states, mask)`` straight into the ``.npy``
files (created with ``np.lib.format.open_memmap``, then written with positioned file writes so the
written pages count against the page cache, not the process), so memory stays bounded by one
batch whatever the catalogue size. Every few seconds the files are flushed and ``rows_done`` is
written to ``meta.json`` (atomically): an interrupted build resumes from ``rows_done``. A missing
file, an unreadable meta, a wrong shape or dtype is detected, logged and rebuilt. An exclusive
lock serialises concurrent builders of the same cache. A disk that fills up during the build is a
``PMMRecDataError`` naming the file (the rows built so far are kept: the next run resumes).

Content check: a completed build stores a CRC-32 of every 16 MiB block of ``states.npy`` and
``mask.npy`` in ``meta.json`` (``checksums``), and every load recomputes them (one sequential read,
about 0.6 s per GB from the page cache). A file changed in place (same size, other bytes) is
logged as a warning that names the file and the changed byte range, and the cache is rebuilt. A
cache built before checksums were kept is trusted once: its checksums are computed and stored at
its first load (the key, hence the folder, stays the same).

Loading: ``states`` stay on disk, wrapped in ``CachedStates``: ``states[ids]`` gathers the rows
with positioned reads into a fresh (writable) array and returns a torch tensor, so the process
holds only the rows it asked for. A memory map was the first choice, but every page it touches
counts in the process's RSS (one pass over a 2.5 GB cache reads as 2.5 GB), and
``torch.from_numpy`` on a read-only map warns. ``mask`` is small and is returned as an in-RAM
bool tensor. ``CachedStates.to_tensor()`` copies everything into RAM for small caches;
``CachedStates.numpy()`` still gives the memory map.

For images the stored mask row is True where the image decoded and False where it did not
(missing / bad file): ``has_image & mask[:, 0]`` is the per-item image flag after a build or load.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecDataError
from recbole_pmmrec.preflight import check_output_dir, write_failure

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
DTYPES = {"float16": np.float16, "float32": np.float32}
ComputeFn = Callable[[Tensor], "tuple[Tensor, Tensor]"]
CHECKSUM = "crc32"           # zlib's: ~2x faster than sha256 here; it guards against changed bytes, not forgery
CHECK_BLOCK_BYTES = 16 << 20
CHECKED_FILES = ("states.npy", "mask.npy")


def _normalise(obj):
    """JSON round trip: tuples -> lists, numpy scalars -> str, so keys compare equal after reload (the exact
    form every existing cache key was hashed in: do not change it, or every cache is rebuilt)."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(_normalise(key), sort_keys=True).encode()).hexdigest()


def file_checksums(path: str | os.PathLike, block_bytes: int = CHECK_BLOCK_BYTES) -> list[str]:
    """CRC-32 (hex) of every ``block_bytes`` block of a file, read sequentially (no memory map: RSS stays
    at one block)."""
    out = []
    buf = bytearray(block_bytes)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while True:
            filled = 0
            while filled < block_bytes and (n := fh.readinto(view[filled:])):
                filled += n
            if not filled:
                break
            out.append(format(zlib.crc32(view[:filled]), "08x"))
            if filled < block_bytes:
                break
    return out


def array_sha256(*arrays) -> str:
    """sha256 over shapes, dtypes and bytes of numpy arrays / torch tensors."""
    h = hashlib.sha256()
    for a in arrays:
        a = a.numpy() if isinstance(a, Tensor) else np.asarray(a)
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class CachedStates:
    """Read-only (n_items, L, D) states in a ``.npy`` file; ``states[ids]`` -> torch tensor (a copy).

    Rows are gathered with positioned reads (``os.preadv``; contiguous ids in one read) into a
    fresh array, so the process holds only the rows it asked for: reading through a memory map
    instead would count every touched page of the file in the process's RSS (a full pass over a
    2.5 GB cache shows up as 2.5 GB). The OS page cache still keeps hot rows in memory.
    ``numpy()`` gives the memory map itself; ``to_tensor()`` copies everything into RAM.
    Indexing accepts a LongTensor / ndarray / list / int / slice. Rows keep the cache dtype
    (float16 or float32): cast with ``.float()`` where needed.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # header only: shape, dtype, data offset
        self.shape, self.np_dtype, self.offset = tuple(header.shape), header.dtype, int(header.offset)
        del header
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.np_dtype.itemsize
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: the fd is reopened there
        return {k: v for k, v in self.__dict__.items() if k != "_fd"} | {"_fd": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.zeros(0, dtype=self.np_dtype)).dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> Tensor:
        if isinstance(index, Tensor):
            index = index.detach().cpu().numpy()
        if isinstance(index, slice):
            index = np.arange(*index.indices(self.shape[0]))
        idx = np.asarray(index)
        if idx.dtype == bool or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"index cached states with integer ids, got {idx.dtype}")
        n = self.shape[0]
        flat = idx.reshape(-1).astype(np.int64)
        flat = np.where(flat < 0, flat + n, flat)
        if flat.size and (flat.min() < 0 or flat.max() >= n):
            raise IndexError(f"item id out of range for cached states with {n} rows")
        if flat.size == 0:
            return torch.from_numpy(np.empty((*idx.shape, *self.row_shape), dtype=self.np_dtype))
        uniq, inverse = np.unique(flat, return_inverse=True)
        buf = np.empty((len(uniq), *self.row_shape), dtype=self.np_dtype)
        raw = memoryview(buf.reshape(-1).view(np.uint8))
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1  # runs of consecutive ids: one read each
        starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(uniq)]])
        fd, rb = self._file(), self.row_bytes
        for lo, hi in zip(starts.tolist(), ends.tolist()):
            want = (hi - lo) * rb
            got = os.preadv(fd, [raw[lo * rb:hi * rb]], self.offset + int(uniq[lo]) * rb)
            if got != want:
                raise PMMRecDataError(f"{self.path}: short read ({got} of {want} bytes); delete the cache folder")
        out = buf if np.array_equal(flat, uniq) else buf[inverse]  # back to the asked order
        return torch.from_numpy(np.ascontiguousarray(out).reshape(*idx.shape, *self.row_shape))

    def numpy(self) -> np.memmap:
        """The whole array as a read-only memory map (touched pages count in RSS)."""
        return np.load(self.path, mmap_mode="r")

    def to_tensor(self) -> Tensor:
        """Copy the whole cache into RAM (small caches)."""
        return self[slice(None)]


class EncoderStateCache:
    """A keyed, resumable, memory-mapped cache of encoder states (see the module docstring)."""

    def __init__(self, root_dir: str | os.PathLike, name: str, key: dict, dtype: str = "float16",
                 flush_every_s: float = 10.0, progress: bool = True) -> None:
        if dtype not in DTYPES:
            raise PMMRecConfigError(f"cache_dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.root = Path(root_dir)
        self.name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)) or "cache"
        self.key = _normalise(key)
        self.dtype = dtype
        self.flush_every_s = flush_every_s
        self.progress = progress
        self.dir: Path | None = None
        self.built_rows = 0  # rows computed by the last load_or_build (0: loaded as is)

    # -- paths ---------------------------------------------------------------------------------------
    def full_key(self, n_items: int) -> dict:
        return _normalise({"format": CACHE_FORMAT, "n_items": int(n_items), "dtype": self.dtype, **self.key})

    def directory(self, n_items: int) -> Path:
        return self.root / f"{self.name}-{key_hash(self.full_key(n_items))[:16]}"

    # -- public ----------------------------------------------------------------------------------------
    def load_or_build(self, n_items: int, compute_fn: ComputeFn, batch_size: int = 256
                      ) -> tuple[CachedStates, Tensor]:
        """-> (states (n_items, L, D) on disk, mask (n_items, L) bool in RAM)."""
        if n_items < 1 or batch_size < 1:
            raise PMMRecConfigError(f"n_items and batch_size must be >= 1, got {n_items}, {batch_size}")
        key = self.full_key(n_items)
        self.dir = d = self.directory(n_items)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            check_output_dir("cache_dir", self.root)  # a file in the way, no permission, a full disk: say which
            raise
        self.built_rows = 0
        with self._lock(d):
            meta, problem = self._read_meta(d, key, n_items)
            if meta is not None and meta["complete"]:
                problem = self._verify(d, meta)
                if problem is None:
                    logger.info("encoder-state cache %s: loaded (%s %s)", d, meta["shape"], meta["dtype"])
                    return self._open(d)
            if problem:
                logger.warning("encoder-state cache %s: %s; rebuilding it", d, problem)
                self._clear(d)
                meta = None
            try:
                self._build(d, key, n_items, compute_fn, batch_size, meta)
            except OSError as exc:
                raise PMMRecDataError(f"{write_failure(d / 'states.npy', exc, 'encoder-state cache')} (the rows "
                                      f"built so far are kept: the next run resumes the build)") from exc
            return self._open(d)

    # -- internals ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, d: Path):
        with open(d / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_meta(self, d: Path, key: dict, n_items: int) -> tuple[dict | None, str | None]:
        """-> (usable meta or None, problem to log or None)."""
        meta_path = d / "meta.json"
        if not meta_path.exists():
            has_files = (d / "states.npy").exists() or (d / "mask.npy").exists()
            return None, "array files without meta.json" if has_files else None
        try:
            meta = json.loads(meta_path.read_text())
            shape = [int(s) for s in meta["shape"]]
            rows_done, complete = int(meta["rows_done"]), bool(meta["complete"])
            stored_key, dtype = meta["key"], meta["dtype"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return None, f"unreadable meta.json ({exc.__class__.__name__})"
        if stored_key != key:
            return None, "meta.json key differs from the requested key"
        if dtype != self.dtype or len(shape) != 3 or shape[0] != n_items or not 0 <= rows_done <= n_items:
            return None, f"meta.json shape/dtype/rows_done inconsistent ({shape}, {dtype}, {rows_done})"
        for fname, want_shape, want_dtype in (
            ("states.npy", tuple(shape), np.dtype(DTYPES[self.dtype])),
            ("mask.npy", tuple(shape[:2]), np.dtype(bool)),
        ):
            try:
                arr = np.load(d / fname, mmap_mode="r")
            except (OSError, ValueError, EOFError) as exc:
                return None, f"{fname} unreadable ({exc.__class__.__name__}: {exc})"
            if arr.shape != want_shape or arr.dtype != want_dtype:
                return None, f"{fname} has shape {arr.shape} {arr.dtype}, expected {want_shape} {want_dtype}"
            del arr
        meta.update(shape=shape, rows_done=rows_done, complete=complete and rows_done == n_items)
        return meta, None

    def _verify(self, d: Path, meta: dict) -> str | None:
        """Recompute the block checksums of a complete cache -> the problem, or None when they match.
        A cache without checksums (built before they were kept) gets them now."""
        stored = meta.get("checksums")
        if not isinstance(stored, dict) or stored.get("algorithm") != CHECKSUM or \
                stored.get("block_bytes") != CHECK_BLOCK_BYTES or any(f not in stored for f in CHECKED_FILES):
            meta["checksums"] = self._checksums(d)
            self._write_meta(d, meta)
            logger.info("encoder-state cache %s: built before checksums were kept; stored them now, every later "
                        "load checks them", d)
            return None
        for fname in CHECKED_FILES:
            now, then = file_checksums(d / fname), stored[fname]
            changed = [i for i in range(max(len(now), len(then))) if i >= len(now) or i >= len(then) or now[i] != then[i]]
            if changed:
                lo, hi = changed[0] * CHECK_BLOCK_BYTES, (changed[-1] + 1) * CHECK_BLOCK_BYTES
                return (f"{d / fname} changed since it was built: {len(changed)} of {len(then)} blocks of "
                        f"{CHECK_BLOCK_BYTES >> 20} MiB differ from the checksums in meta.json (bytes {lo}..{hi})")
        return None

    @staticmethod
    def _checksums(d: Path) -> dict:
        return {"algorithm": CHECKSUM, "block_bytes": CHECK_BLOCK_BYTES,
                **{fname: file_checksums(d / fname) for fname in CHECKED_FILES}}

    @staticmethod
    def _clear(d: Path) -> None:
        for fname in ("states.npy", "mask.npy", "meta.json", "meta.json.tmp"):
            with contextlib.suppress(FileNotFoundError):
                (d / fname).unlink()

    @staticmethod
    def _write_meta(d: Path, meta: dict) -> None:
        tmp = d / "meta.json.tmp"
        try:
            tmp.write_text(json.dumps(meta, indent=1, sort_keys=True))
            os.replace(tmp, d / "meta.json")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _build(self, d: Path, key: dict, n_items: int, compute_fn: ComputeFn, batch_size: int,
               meta: dict | None) -> None:
        from tqdm.auto import tqdm

        np_dtype = DTYPES[self.dtype]
        start = 0
        first = None
        if meta is None:  # fresh: the first batch tells L and D
            first = self._compute(compute_fn, 0, min(batch_size, n_items), np_dtype)
            _, length, dim = first[0].shape
            shape = [n_items, length, dim]
            for fname, shp, dt in (("states.npy", shape, np_dtype), ("mask.npy", shape[:2], bool)):
                arr = np.lib.format.open_memmap(d / fname, mode="w+", dtype=dt, shape=tuple(shp))
                del arr  # header written, data sparse on disk
            meta = {"key": key, "shape": shape, "dtype": self.dtype, "rows_done": 0, "complete": False}
            self._write_meta(d, meta)
        else:
            start = meta["rows_done"]
            logger.info("encoder-state cache %s: resuming at row %d of %d", d, start, n_items)
        shape = meta["shape"]
        writers = [_RowWriter(d / "states.npy"), _RowWriter(d / "mask.npy")]
        bar = tqdm(total=n_items, initial=start, desc=f"cache {self.name}", unit="item",
                   disable=not self.progress, leave=False)
        last_flush = time.monotonic()
        done = start
        try:
            while done < n_items:
                end = min(done + batch_size, n_items)
                if first is not None:
                    states, mask = first
                    first = None
                else:
                    states, mask = self._compute(compute_fn, done, end, np_dtype)
                if states.shape != (end - done, shape[1], shape[2]) or mask.shape != (end - done, shape[1]):
                    raise PMMRecDataError(
                        f"encoder-state cache {d}: compute_fn returned states {states.shape} / mask "
                        f"{mask.shape} for rows {done}:{end}, expected ({end - done}, {shape[1]}, {shape[2]})"
                    )
                writers[0].write_rows(done, states)
                writers[1].write_rows(done, mask)
                done = end
                bar.update(end - bar.n)
                if time.monotonic() - last_flush >= self.flush_every_s and done < n_items:
                    self._checkpoint(d, meta, writers, done)
                    last_flush = time.monotonic()
        finally:
            self.built_rows = done - start
            self._checkpoint(d, meta, writers, done, complete=done == n_items)
            for w in writers:
                w.close()
            bar.close()
        logger.info("encoder-state cache %s: built %d rows (%s %s)", d, done - start, shape, self.dtype)

    @staticmethod
    def _compute(compute_fn: ComputeFn, lo: int, hi: int, np_dtype) -> tuple[np.ndarray, np.ndarray]:
        ids = torch.arange(lo, hi, dtype=torch.long)
        with torch.inference_mode():
            states, mask = compute_fn(ids)
        with np.errstate(over="ignore"):  # overflow is reported below, with advice
            states = states.detach().cpu().float().numpy().astype(np_dtype, copy=False)
        if not np.isfinite(states).all():
            raise PMMRecDataError(
                f"non-finite encoder states for items {lo}..{hi - 1} after casting to {np.dtype(np_dtype).name}: "
                "use cache_dtype: float32 if float16 overflows, or check the encoder"
            )
        return np.ascontiguousarray(states), np.ascontiguousarray(mask.detach().cpu().numpy().astype(bool))

    def _checkpoint(self, d: Path, meta: dict, writers, rows_done: int, complete: bool = False) -> None:
        for w in writers:
            w.flush()
        meta.update(rows_done=int(rows_done), complete=bool(complete))
        meta.pop("checksums", None)
        if complete:
            meta["checksums"] = self._checksums(d)
        self._write_meta(d, meta)

    @staticmethod
    def _open(d: Path) -> tuple[CachedStates, Tensor]:
        mask = np.load(d / "mask.npy")  # small: into RAM
        return CachedStates(d / "states.npy"), torch.from_numpy(mask)


class _RowWriter:
    """Positioned writes of whole rows into an existing ``.npy`` file (no mapping kept open)."""

    def __init__(self, path: Path) -> None:
        arr = np.load(path, mmap_mode="r")
        self.offset, self.row_bytes = arr.offset, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.dtype.itemsize
        self.dtype = arr.dtype
        del arr
        self.fh = open(path, "r+b")

    def write_rows(self, start: int, rows: np.ndarray) -> None:
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        os.pwrite(self.fh.fileno(), memoryview(data).cast("B"), self.offset + start * self.row_bytes)

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


# --------------------------------------------------------------------------------------------
# the two caches PMMRec uses
# --------------------------------------------------------------------------------------------


def text_state_cache(encoder, content, root_dir, name: str = "text", dtype: str = "float16",
                     batch_size: int = 256, progress: bool = True) -> tuple[CachedStates, Tensor]:
    """Bottom states of every item's text: (n_items, max_length, state_dim), mask (n_items, L)."""
    if content.text_ids is None:
        raise PMMRecConfigError("text_state_cache: the item content has no text")
    key = {"encoder": encoder.identity(), "content": content.text_sha256()}
    cache = EncoderStateCache(root_dir, name, key, dtype=dtype, progress=progress)
    return cache.load_or_build(content.n_items, lambda ids: encoder.encode_bottom(content.text_batch(ids)),
                               batch_size)


def image_state_cache(encoder, content, root_dir, name: str = "image", dtype: str = "float16",
                      batch_size: int = 64, progress: bool = True) -> tuple[CachedStates, Tensor]:
    """Bottom states of every item's image; the mask row is False where the image did not decode.

    Only items with a decoded image run through the encoder; the rows of the others are zeros (mask False), so a
    catalogue where few items have an image (a merged corpus: 3,327 posters among 105,486 items) costs what its
    images cost."""
    if not content.use_image:
        raise PMMRecConfigError("image_state_cache: the item content has no image_dir")
    key = {"encoder": encoder.identity(), "content": content.image_sha256(), "rows": "images only"}
    state_shape: list = []  # (tokens, dim, dtype) once known: a batch without any image needs no encoder pass

    def compute(ids: Tensor) -> tuple[Tensor, Tensor]:
        images, ok = content.image_batch(ids)
        rows = ok.nonzero().flatten()
        if len(rows) or not state_shape:
            states, mask = encoder.encode_bottom(images[rows] if len(rows) else images[:1])
            state_shape[:] = [states.shape[1], states.shape[2], states.dtype]
        out = torch.zeros(len(ids), state_shape[0], state_shape[1], dtype=state_shape[2])
        out_mask = torch.zeros(len(ids), state_shape[0], dtype=torch.bool)
        if len(rows):
            out[rows], out_mask[rows] = states, mask
        return out, out_mask

    cache = EncoderStateCache(root_dir, name, key, dtype=dtype, progress=progress)
    states, mask = cache.load_or_build(content.n_items, compute, batch_size)
    content.has_image &= mask[:, 0]
    return states, mask


__all__ = ["EncoderStateCache", "CachedStates", "text_state_cache", "image_state_cache", "array_sha256", "key_hash",
           "file_checksums"]
