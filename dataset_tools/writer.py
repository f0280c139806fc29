"""Filter a :class:`SourceDataset`, validate its images and write the atomic files, atomically.

Output, in ``OUTPUT/NAME/``::

    NAME.inter      user_id:token  item_id:token  timestamp:float     (sorted by user, then time; ties below)
    NAME.item       item_id:token  <text field>:token_seq ...          (source order)
    NAME.images/    <item_id>.jpg  for items with a valid image
    NAME.meta.json  source, options, counts, drops and fallbacks per reason, renamed tokens

Everything is written into a hidden temporary folder ``.NAME.tmp-<host>-<pid>-<random>`` next to
``NAME/`` and renamed at the end, so an interrupted run never leaves a half-written dataset under the
final name. A killed run can leave only that hidden folder; the next run of the same NAME removes it
once it is stale: its process is gone (same host), or, for a folder of another host or without a
pid, nothing in it changed for :data:`STALE_AFTER_S`. A live conversion's folder is never touched.

Filtering, repeated until nothing changes: interactions with an item missing from the item source
are dropped (``--strict``: an error); items with neither text nor a usable image are dropped with
their interactions; the iterative k-core (``kcore`` > 0) is applied; only items that still have
interactions are kept; images of the kept items are validated and written.

Ties: rows of one user with the same timestamp (day-granular data has many) have no true order, yet RecBole keeps
their file order, and the last one becomes a test target. Where that order follows the item ids (the SeqRec Amazon
copies list a day's items by ascending id: every tied pair of seqrec_toys), it is a label that an ID model can learn
and content cannot. ``ties`` (``--ties``): ``keep`` the file order; ``hash`` orders each tie by a hash of (user,
item), which depends on neither the ids' order nor the file's; ``auto`` (default) hashes only when at least
:data:`ID_ORDER_SHARE` of the tied pairs (>= :data:`MIN_TIED_PAIRS`) run one way in the item file's order or the
ids' natural order, and keeps the file order otherwise. The decision, its counts and shares are logged in one line
and written to ``meta.json`` (``ties``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.hashing import file_sha256

from dataset_tools import __version__
from dataset_tools.base import BAD_TIMESTAMP, Report, SourceDataset, progress
from dataset_tools.images import OUTPUT_SUFFIX, ImageLimits, ImageRejected, save_image
from dataset_tools.text import clean_text
from dataset_tools.tokens import SAFE_TOKEN, TokenMapper

logger = logging.getLogger(__name__)

NO_IMAGE, PENDING, VALID, REJECTED = 0, 1, 2, 3
STALE_AFTER_S = 24 * 3600  # a staging folder of another host (or without a pid) untouched this long is stale
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"
_LOUD_REJECTIONS = ("image_too_large", "image_link_outside_folder")  # logged as warnings, the rest at debug
TIE_ORDERS = ("auto", "keep", "hash")
ID_ORDER_SHARE = 0.9  # ties: auto hashes when this share of the tied pairs runs one way in an item order
MIN_TIED_PAIRS = 100  # ... and there are at least this many tied pairs (fewer cannot show a pattern)


@dataclass
class WriteOptions:
    force: bool = False
    quiet: bool = True
    unsafe_tokens: str = "encode"
    limits: ImageLimits = field(default_factory=ImageLimits)
    options: dict = field(default_factory=dict)  # the command line, recorded in meta.json
    started: float | None = None  # when reading began (for wall_time_s); default: when writing began
    ties: str = "auto"  # order of a user's rows with the same timestamp: auto, keep, hash (module docstring)


def check_name(name: str) -> None:
    if not SAFE_TOKEN.fullmatch(name) or name.startswith("."):
        raise PMMRecDataError(f"dataset name {name!r} is not a plain folder name; use letters, digits, '_', '-', '.'")


def check_output(final: Path, force: bool) -> None:
    """Refuse an output folder that is a file (or lies below one), and an existing, non-empty
    ``final`` unless ``force``."""
    for folder in (final.parent, *final.parent.parents):  # the nearest existing one must be a folder
        if folder.is_symlink() or folder.exists():
            if not folder.is_dir():
                raise PMMRecDataError(f"--output {final.parent}: {folder} exists and is not a folder; "
                                      f"remove it or choose another --output")
            break
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise PMMRecDataError(f"output path {final} exists and is not a folder; remove it or choose another --name")
    if final.is_dir() and any(final.iterdir()) and not force:
        raise PMMRecDataError(
            f"output folder {final} already exists and is not empty; pass --force to replace it, "
            f"or choose another --output / --name"
        )


def _hidden_prefix(name: str, kind: str) -> str:
    """``.NAME.tmp-<host>-<pid>-`` (``kind`` ``tmp``: staging; ``old``: a replaced dataset being removed)."""
    return f".{name}.{kind}-{_HOST}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OverflowError:
        return False
    return True


def _last_change(folder: Path) -> float:
    """Newest modification time of ``folder`` and its direct entries (images land in a sub-folder)."""
    times = [folder.lstat().st_mtime]
    with os.scandir(folder) as entries:
        times += [e.stat(follow_symlinks=False).st_mtime for e in entries]
    return max(times)


def remove_stale_staging(output: Path, name: str, now: float | None = None) -> list[str]:
    """Remove the hidden folders of killed conversions of ``name`` in ``output``; returns their names.

    Stale: ``.NAME.(tmp|old)-<host>-<pid>-*`` of this host whose process is gone; one of another
    host, or an older pid-less ``.NAME.tmp-*``, unchanged for :data:`STALE_AFTER_S`. Anything else
    (a live conversion, a folder we cannot read) is left alone.
    """
    pattern = re.compile(rf"\.{re.escape(name)}\.(?:tmp|old)-(?:([A-Za-z0-9]+)-([0-9]{{1,10}})-)?[a-z0-9_]+")
    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(output))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if not found or entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
            continue
        host, pid = found.group(1), found.group(2)
        try:
            if host == _HOST and pid is not None:
                stale = not _alive(int(pid))
            else:
                stale = now - _last_change(Path(entry.path)) > STALE_AFTER_S
        except OSError:
            continue
        if stale:
            logger.warning("removing %s, left by a conversion of %r that was killed", entry.path, name)
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _kcore(users: np.ndarray, items: np.ndarray, alive: np.ndarray, k: int) -> np.ndarray:
    """Iterative k-core: drop interactions until every user and item has >= k of them."""
    alive = alive.copy()
    while True:
        user_count = np.bincount(users[alive], minlength=users.max(initial=0) + 1)
        item_count = np.bincount(items[alive], minlength=items.max(initial=0) + 1)
        weak = alive & ((user_count[users] < k) | (item_count[items] < k))
        if not weak.any():
            return alive
        alive &= ~weak


def _cell(text: str) -> str:
    """A text cell as pandas.read_csv (RecBole's reader) reads it back unchanged.

    Cells never hold tabs or newlines: readers clean their text and the cell is cleaned once more
    here (``text.clean_text``, idempotent), so no reader can break a row. pandas treats a quote as
    special only at the start of a cell, so only a cell starting with ``"`` is quoted, CSV-style.
    """
    text = clean_text(text)
    return '"' + text.replace('"', '""') + '"' if text.startswith('"') else text


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except TypeError:  # None, text: a reader let something through
        return False


def _format_time(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))



class _Builder:
    """Holds the arrays of one conversion while it filters and writes into ``root``."""

    def __init__(self, src: SourceDataset, report: Report, opts: WriteOptions, root: Path, name: str):
        self.src, self.report, self.opts, self.root, self.name = src, report, opts, root, name
        self.item_tokens = list(src.items)  # source order
        self.item_index = {token: i for i, token in enumerate(self.item_tokens)}
        records = [src.items[t] for t in self.item_tokens]
        self.has_text = np.array([r.has_text() for r in records], dtype=bool)
        self.image_state = np.array([PENDING if r.image is not None else NO_IMAGE for r in records], dtype=np.int8)
        self.image_dir = root / f"{name}.images"
        self.image_dir.mkdir()
        self.item_map = TokenMapper("item", opts.unsafe_tokens)
        self.user_map = TokenMapper("user", opts.unsafe_tokens)

    def image_path(self, i: int) -> Path:
        """``NAME.images/<written token>.jpg``; the token mapping guarantees it stays in that folder."""
        path = self.image_dir / f"{self.item_map(self.item_tokens[i])}{OUTPUT_SUFFIX}"
        if path.parent != self.image_dir or os.sep in path.name or path.name.startswith("."):
            raise PMMRecDataError(f"item {self.item_tokens[i]!r} maps to unsafe image path {path}")
        return path

    def interactions(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Integer-coded interactions; those with an unknown item or a time that is not a finite number
        (readers drop these first, naming file and line) are dropped (or refused with --strict)."""
        user_index: dict[str, int] = {}
        users, items, keep = [], [], []
        for n, (user, item, stamp) in enumerate(zip(self.src.users, self.src.item_ids, self.src.times)):
            if not _finite(stamp):
                self.report.bad_input(BAD_TIMESTAMP, f"interaction {n} ({user!r}, {item!r}): timestamp {stamp!r} is not a finite number")
                continue
            i = self.item_index.get(item)
            if i is None:
                self.report.bad_input("interaction_unknown_item", f"interaction {n} ({user!r}, {item!r}): item {item!r} is not in the item file")
                continue
            users.append(user_index.setdefault(user, len(user_index)))
            items.append(i)
            keep.append(n)
        times = np.asarray(self.src.times, dtype=np.float64)[np.asarray(keep, dtype=np.int64)]
        return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), times, list(user_index)

    def validate_images(self, wanted: np.ndarray) -> None:
        todo = np.flatnonzero(wanted & (self.image_state == PENDING))
        for i in progress(todo, self.opts.quiet, "images", total=len(todo), unit="img"):
            ref = self.src.items[self.item_tokens[i]].image
            try:
                outcome = save_image(ref, self.image_path(i), self.opts.limits)
            except ImageRejected as err:
                self.image_state[i] = REJECTED
                self.report.drop(err.reason, example=err.detail)
                log = logger.warning if err.reason in _LOUD_REJECTIONS else logger.debug
                log("item %s: image refused: %s", self.item_tokens[i], err)
                continue
            self.image_state[i] = VALID
            if outcome != "copied":
                self.report.fallback(f"image_{outcome}", example=ref.where)

    def filter(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Returns the coded interactions, their ``alive`` mask, the user tokens and ``item_alive``."""
        users, items, times, user_tokens = self.interactions()
        alive = np.ones(len(items), dtype=bool)
        item_alive = np.ones(len(self.item_tokens), dtype=bool)
        while True:
            content = self.has_text | (self.image_state == PENDING) | (self.image_state == VALID)
            empty = item_alive & ~content
            if empty.any():
                lost = alive & empty[items]
                self.report.drop("item_without_text_or_image", int(empty.sum()), example=self.item_tokens[int(np.flatnonzero(empty)[0])])
                self.report.drop("interaction_item_without_text_or_image", int(lost.sum()))
                item_alive &= ~empty
                alive &= ~lost
            if self.src.kcore > 0:
                cored = _kcore(users, items, alive, self.src.kcore)
                self.report.drop(f"interaction_below_{self.src.kcore}_core", int((alive & ~cored).sum()))
                alive = cored
            used = np.zeros(len(self.item_tokens), dtype=bool)
            used[items[alive]] = True
            unused = np.flatnonzero(item_alive & ~used)
            if len(unused):
                self.report.drop("item_without_interactions", len(unused), example=self.item_tokens[int(unused[0])])
            item_alive &= used
            before = self.image_state.copy()
            self.validate_images(item_alive)
            newly_rejected = (before == PENDING) & (self.image_state == REJECTED)
            if not (newly_rejected & item_alive & ~self.has_text).any():
                break
        # images validated in an earlier round for items that a later k-core round removed
        for i in np.flatnonzero(~item_alive & (self.image_state == VALID)):
            self.image_path(i).unlink()
            self.image_state[i] = NO_IMAGE
        return users, items, times, alive, user_tokens, item_alive

    def write(self) -> dict:
        users, items, times, alive, user_tokens, item_alive = self.filter()
        if not alive.any():
            dropped = dict(self.report.dropped) or "nothing"
            raise PMMRecDataError(
                f"nothing to write: no interactions are left for dataset {self.name!r} from {self.src.source} "
                f"(dropped: {dropped}). Check the input paths and formats, or lower --kcore."
            )
        users, items, times = users[alive], items[alive], times[alive]
        order, ties = self.order(users, items, times, user_tokens)
        written_users = {u: self.user_map(user_tokens[u]) for u in np.unique(users).tolist()}
        written_items = {i: self.item_map(self.item_tokens[i]) for i in np.flatnonzero(item_alive).tolist()}
        inter_path = self.root / f"{self.name}.inter"
        with open(inter_path, "w", encoding="utf-8", newline="") as fh:
            fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
            for u, i, t in zip(users[order].tolist(), items[order].tolist(), times[order].tolist()):
                fh.write(f"{written_users[u]}\t{written_items[i]}\t{_format_time(t)}\n")
        fields = self.src.text_fields
        item_path = self.root / f"{self.name}.item"
        kept = np.flatnonzero(item_alive)
        with open(item_path, "w", encoding="utf-8", newline="") as fh:
            fh.write("\t".join(["item_id:token"] + [f"{f}:token_seq" for f in fields]) + "\n")
            for i in kept.tolist():
                text = self.src.items[self.item_tokens[i]].text
                fh.write("\t".join([written_items[i]] + [_cell(text.get(f, "")) for f in fields]) + "\n")
        n_images = int((self.image_state[kept] == VALID).sum())
        empty_fields = {f: sum(1 for i in kept.tolist() if not self.src.items[self.item_tokens[i]].text.get(f)) for f in fields}
        return {
            "counts": {
                "users": int(len(np.unique(users))),
                "items": int(len(kept)),
                "interactions": int(len(users)),
                "images": n_images,
                "items_without_image": int(len(kept)) - n_images,
                "items_without_text": int((~self.has_text[kept]).sum()),
                "empty_text_fields": empty_fields,
            },
            "files": {
                "inter": inter_path.name,
                "item": item_path.name,
                "images": self.image_dir.name,
                "image_name": "<item_id>" + OUTPUT_SUFFIX,
                "sha256": {inter_path.name: file_sha256(inter_path), item_path.name: file_sha256(item_path)},
            },
            "renamed_tokens": {"item": self.item_map.renamed, "user": self.user_map.renamed},
            "ties": ties,
        }

    def order(self, users: np.ndarray, items: np.ndarray, times: np.ndarray, user_tokens: list[str]) -> tuple[np.ndarray, dict]:
        """Row order of the .inter file: by user (first appearance), then time, then within a tie the file order or
        the (user, item) hash (``opts.ties``, module docstring); and the ``ties`` record of meta.json."""
        if self.opts.ties not in TIE_ORDERS:
            raise PMMRecDataError(f"ties must be one of {', '.join(TIE_ORDERS)}, got {self.opts.ties!r}")
        order = np.lexsort((times, users))  # stable: the file order within a tie
        u, t, i = users[order], times[order], items[order]
        tied = (u[1:] == u[:-1]) & (t[1:] == t[:-1]) & (i[1:] != i[:-1])
        shares = {"item_file_order": _one_way_share(np.arange(len(self.item_tokens)), i, tied),
                  "item_id_order": _one_way_share(_natural_ranks(self.item_tokens), i, tied)}
        n_tied = int(tied.sum())
        follows_ids = n_tied >= MIN_TIED_PAIRS and max(shares.values()) >= ID_ORDER_SHARE
        applied = "hash" if self.opts.ties == "hash" or (self.opts.ties == "auto" and follows_ids) else "keep"
        if applied == "hash":
            key = np.array([_tie_hash(user_tokens[a], self.item_tokens[b]) for a, b in zip(users.tolist(), items.tolist())],
                           dtype=np.uint64)
            order = np.lexsort((key, times, users))
        record = {"option": self.opts.ties, "applied": applied, "rows": int(len(users)), "tied_pairs": n_tied,
                  "one_way_share": {k: round(v, 4) for k, v in shares.items()}}
        why = (f"{max(shares.values()):.0%} of them run one way in the items' order, so the file order is a label "
               f"the ids give away" if follows_ids else "their order does not follow the item ids")
        say = logger.warning if applied == "hash" and self.opts.ties == "auto" else logger.info  # a change the user did not ask for
        say("ties: %d pairs of consecutive rows of one user share a timestamp; %s: %s (--ties %s)", n_tied, why,
            "ordered by a hash of (user, item)" if applied == "hash" else "file order kept", self.opts.ties)
        return order, record


def _one_way_share(rank: np.ndarray, items: np.ndarray, tied: np.ndarray) -> float:
    """Of the tied consecutive pairs (``tied[k]``: rows k and k+1), the share that runs the majority way in
    ``rank`` (ascending or descending); 0.5 = no pattern, 1.0 = the order is the ranks'."""
    if not tied.any():
        return 0.0
    up = int((rank[items[1:]][tied] > rank[items[:-1]][tied]).sum())
    return max(up, int(tied.sum()) - up) / int(tied.sum())


def _natural_ranks(tokens: list[str]) -> np.ndarray:
    """Rank of each token in the ids' natural order: numeric when every token is an integer, else by string."""
    numeric = all(t.lstrip("-").isdigit() for t in tokens)
    keys = [int(t) for t in tokens] if numeric else tokens
    ranks = np.empty(len(tokens), dtype=np.int64)
    ranks[np.array(sorted(range(len(tokens)), key=keys.__getitem__), dtype=np.int64)] = np.arange(len(tokens))
    return ranks


def _tie_hash(user: str, item: str) -> int:
    """A 63-bit hash of (user, item): the order of tied rows that neither the ids nor the file decide."""
    digest = hashlib.blake2b(f"{user}\t{item}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def write_dataset(src: SourceDataset, report: Report, output: Path, name: str, opts: WriteOptions) -> dict:
    """Filter ``src`` and write ``output/name/``; returns the meta dictionary (also written as JSON)."""
    started = opts.started or time.time()
    check_name(name)
    output = Path(output)
    final = output / name
    check_output(final, opts.force)
    try:
        output.mkdir(parents=True, exist_ok=True)
        removed = remove_stale_staging(output, name)
        staging = Path(tempfile.mkdtemp(prefix=_hidden_prefix(name, "tmp"), dir=output))
    except OSError as err:
        raise PMMRecDataError(f"cannot create the output folder {output} ({err.strerror or err}); choose another --output") from None
    try:
        meta = {
            "name": name,
            "format": src.format,
            "converter": {"package": "dataset_tools", "version": __version__},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": src.source,
            "options": opts.options,
            "text_fields": list(src.text_fields),
            "kcore": src.kcore,
            "removed_stale_staging": removed,
        }
        meta.update(_Builder(src, report, opts, staging, name).write())
        meta["dropped"] = dict(sorted(report.dropped.items()))
        meta["fallbacks"] = dict(sorted(report.fallbacks.items()))
        meta["examples"] = {k: v for k, v in sorted(report.examples.items())}
        meta["wall_time_s"] = round(time.time() - started, 3)
        with open(staging / f"{name}.meta.json", "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        _publish(staging, final, opts.force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return meta


def _publish(staging: Path, final: Path, force: bool) -> None:
    """Rename the finished staging folder to ``final`` (replacing it only with ``force``)."""
    check_output(final, force)  # again: something may have appeared while we worked
    old = None
    if final.is_dir():
        if any(final.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=_hidden_prefix(final.name, "old"), dir=final.parent))
            os.rename(final, old / final.name)
        else:
            final.rmdir()
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)  # mkdtemp made it private
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
