"""``pmmrec``: the format of the PMMRec authors' release.

Files (``--behaviors``, ``--texts``, ``--images``, or ``--input DIR`` to find them by name)::

    behaviors   user \\t item item ...      (each user's items in order; positions become timestamps)
    texts       item \\t title              (no header)
    images      an LMDB keyed by item (optional; ``pip install lmdb``)

LMDB keys: the item token's UTF-8 bytes; when that key is absent and the token is ``v123`` or
``123``, the authors' key ``b"123"`` is tried (their loader strips the ``v``).

LMDB values are either encoded image bytes (JPEG/PNG/GIF/WebP magic) or the authors' pickled
record (class ``LMDB_Image`` with ``image`` = raw uint8 pixels, ``size`` = (height, width),
``channels``; or an ``img``/``data`` field with encoded bytes). They are never unpickled freely:
:class:`_RecordUnpickler` resolves the record class, in any module, to :class:`ImageRecord` (an
attribute holder defined here), admits the three helpers old pickle protocols need (each replaced
by a checked stand-in), and refuses every other global. Anything else is an error naming the key.
"""

from __future__ import annotations

import argparse
import io
import logging
import pickle
import re
from pathlib import Path

from PIL import Image

from recbole_pmmrec.errors import PMMRecDataError

from dataset_tools.base import ItemRecord, Report, SourceDataset, progress
from dataset_tools.images import ImageLimits, ImageRef, ImageRejected, check_pixels
from dataset_tools.text import iter_lines, read_sequences, text_field

logger = logging.getLogger(__name__)

FORMAT = "pmmrec"
DEFAULT_NAME = None  # the input folder's (or behaviours file's) name
TEXT_FIELDS = ["title"]

RECORD_CLASS_NAMES = frozenset(["LMDB_Image", "LMDB_IMAGE", "LMDBImage", "LmdbImage", "ImageRecord"])
IMAGE_FIELDS = ("image", "img", "data", "image_bytes")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
_PLAIN_TYPES = (bytes, bytearray, str, int, float, bool, tuple, list, type(None))


def _is_encoded_image(data: bytes) -> bool:
    return data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


class ImageRecord:
    """Plain attribute holder standing in for the authors' pickled image class."""

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError("record state is not a mapping of attribute names")
        bad = [k for k, v in state.items() if not isinstance(v, _PLAIN_TYPES)]
        if bad:
            raise pickle.UnpicklingError(f"record attributes {bad} are not plain values")
        self.__dict__.update(state)


def _reconstructor(cls, base, state):
    """Checked stand-in for ``copyreg._reconstructor`` (pickle protocols 0 and 1)."""
    if cls is not ImageRecord or base is not object or state is not None:
        raise pickle.UnpicklingError("copyreg._reconstructor is only admitted for the image record")
    return ImageRecord()


def _latin1_bytes(text, encoding):
    """Checked stand-in for ``_codecs.encode``: how protocols 0-2 spell a bytes object."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only admitted as encode(str, 'latin1')")
    return text.encode("latin1")


class _RecordUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name in RECORD_CLASS_NAMES:
            return ImageRecord
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return _reconstructor
        if module in ("builtins", "__builtin__") and name == "object":
            return object
        if module == "_codecs" and name == "encode":
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed")


def decode_value(value: bytes | None, where: str, limits: ImageLimits) -> bytes | Image.Image:
    """Encoded image bytes, or a decoded image for a raw-pixel record.

    Raises :class:`ImageRejected` for a missing, oversized or inconsistent image and
    :class:`PMMRecDataError` (naming ``where``) for a value that is not an image or a known record.
    """
    if value is None:
        raise ImageRejected("image_missing", f"{where}: no such key")
    if len(value) == 0:
        raise ImageRejected("image_empty", f"{where}: empty value")
    if len(value) > limits.max_bytes:
        raise ImageRejected("image_too_large", f"{where}: {len(value)} bytes > --max-image-bytes {limits.max_bytes}")
    value = bytes(value)
    if _is_encoded_image(value):
        return value
    try:
        record = _RecordUnpickler(io.BytesIO(value)).load()
    except Exception as err:  # a refused global, a truncated stream, a bad opcode ...
        raise PMMRecDataError(
            f"{where}: the value is neither JPEG/PNG bytes nor a pickled image record ({type(err).__name__}: {err}). "
            f"Only records with the fields image/size/channels (class {'/'.join(sorted(RECORD_CLASS_NAMES))}) are "
            f"read, never arbitrary pickles; re-export this LMDB with encoded image bytes as values."
        ) from None
    if isinstance(record, (bytes, bytearray)) and _is_encoded_image(bytes(record)):
        return bytes(record)
    if not isinstance(record, ImageRecord):
        raise PMMRecDataError(f"{where}: the pickled value is a {type(record).__name__}, not an image record")
    fields = vars(record)
    name = next((f for f in IMAGE_FIELDS if isinstance(fields.get(f), (bytes, bytearray))), None)
    if name is None:
        raise PMMRecDataError(f"{where}: the image record has none of the fields {IMAGE_FIELDS} as bytes (has {sorted(fields)})")
    data = bytes(fields[name])
    if _is_encoded_image(data):
        return data
    return _raw_pixels(data, fields, where, limits)


def _raw_pixels(data: bytes, fields: dict, where: str, limits: ImageLimits) -> Image.Image:
    """The authors' layout: ``image`` = uint8 pixels, ``size`` = (height, width), ``channels``."""
    shape = fields.get("shape") or fields.get("size")
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 3) or not all(isinstance(s, int) for s in shape):
        raise PMMRecDataError(f"{where}: raw-pixel record without a (height, width) 'size' or 'shape' (got {shape!r})")
    height, width = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else fields.get("channels")
    check_pixels(width, height, limits, where)
    if channels is None and len(data) % (height * width) == 0:
        channels = len(data) // (height * width)
    if channels not in CHANNEL_MODES:
        raise ImageRejected("image_corrupt", f"{where}: {channels!r} channels (expected 1, 3 or 4)")
    if len(data) != height * width * channels:
        raise ImageRejected("image_corrupt", f"{where}: {len(data)} bytes for {height}x{width}x{channels} pixels")
    mode = CHANNEL_MODES[channels]
    return Image.frombuffer(mode, (width, height), data, "raw", mode, 0, 1)


def lmdb_keys(token: str) -> list[bytes]:
    """Keys to try for an item: the token itself, then the authors' ``int(token without 'v')``."""
    keys = [token.encode("utf-8")]
    if re.fullmatch(r"v?[0-9]+", token):
        numeric = str(int(token.lstrip("v"))).encode("ascii")
        if numeric not in keys:
            keys.append(numeric)
    return keys


def open_lmdb(path: Path):
    try:
        import lmdb
    except ImportError:
        raise PMMRecDataError(
            f"reading images from the LMDB {path} needs the optional package lmdb: pip install lmdb "
            f"(or pip install 'recbole-pmmrec[lmdb]'); or convert text only by leaving out --images"
        ) from None
    if not path.exists():
        raise PMMRecDataError(f"image LMDB {path} does not exist; check --images")
    try:
        return lmdb.open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        raise PMMRecDataError(f"cannot open image LMDB {path}: {err}") from None


def _lmdb_ref(env, path: Path, key: bytes) -> ImageRef:
    where = f"LMDB {path} key {key!r}"

    def read(limits: ImageLimits):
        with env.begin(buffers=False) as txn:
            return decode_value(txn.get(key), where, limits)

    return ImageRef(where, read)


def _pick(folder: Path, explicit: Path | None, names: list[str], patterns: list[str], what: str, required: bool) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    for name in names:
        if (folder / name).exists():
            return folder / name
    found = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    if len(found) == 1:
        return found[0]
    if found or required:
        raise PMMRecDataError(
            f"cannot tell which file in {folder} holds the {what} "
            f"({'candidates: ' + ', '.join(p.name for p in found) if found else 'none found'}); pass it explicitly"
        )
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, default=None, help="folder holding the three files (found by name)")
    parser.add_argument("--behaviors", type=Path, default=None, help="user \\t item item ... (default: INPUT/behaviors.tsv or INPUT/*users*.tsv)")
    parser.add_argument("--texts", type=Path, default=None, help="item \\t title (default: INPUT/texts.tsv or INPUT/*items*.tsv)")
    parser.add_argument("--images", type=Path, default=None, help="image LMDB (default: INPUT/images.lmdb or INPUT/*.lmdb if present)")


def read(args: argparse.Namespace, report: Report) -> SourceDataset:
    if args.input is None and (args.behaviors is None or args.texts is None):
        raise PMMRecDataError("pmmrec needs --input DIR, or both --behaviors FILE and --texts FILE (and optionally --images LMDB)")
    folder = Path(args.input) if args.input else Path(".")
    behaviors = _pick(folder, args.behaviors, ["behaviors.tsv"], ["*users*.tsv", "*behaviors*.tsv"], "user sequences", True)
    texts = _pick(folder, args.texts, ["texts.tsv"], ["*items*.tsv", "*texts*.tsv"], "item texts", True)
    images = _pick(folder, args.images, ["images.lmdb"], ["*.lmdb"], "images", False) if args.input or args.images else None
    src = SourceDataset(FORMAT, TEXT_FIELDS, {"behaviors": str(behaviors), "texts": str(texts), "images": str(images) if images else None})
    for line, text in iter_lines(texts, report, args.encoding):
        if not text.strip():
            continue
        item, tab, title = text.partition("\t")
        item = item.strip()
        if not tab or not item:
            report.bad_input("item_malformed_line", f"{texts}, line {line}: expected 'item<TAB>title'")
            continue
        if item in src.items:
            report.drop("item_duplicate_row", example=f"{texts.name}:{line} item {item}")
            continue
        src.items[item] = ItemRecord(text={"title": text_field(title, report, f"{texts.name}:{line}")})
    if images is not None:
        env = open_lmdb(images)
        src.cleanup.append(env.close)
        found = {"token": 0, "numeric": 0}
        with env.begin() as txn, txn.cursor() as cursor:
            for token, record in progress(src.items.items(), args.quiet, "lmdb keys", total=len(src.items)):
                for kind, key in zip(("token", "numeric"), lmdb_keys(token)):
                    if cursor.set_key(key):
                        record.image = _lmdb_ref(env, images, key)
                        found[kind] += 1
                        break
                else:
                    report.drop("image_missing", example=f"item {token}: no LMDB key {lmdb_keys(token)}")
        if found["numeric"]:
            report.fallback("lmdb_key_without_v_prefix", found["numeric"])
    read_sequences(behaviors, src, report, args.encoding, args.quiet)
    return src
