"""Validating and copying item images: every image is decoded once, fully, under limits.

Output is always an RGB JPEG ``<token>.jpg``. An RGB JPEG with no EXIF rotation is copied byte for
byte; anything else (CMYK, grayscale, palette, alpha, 16-bit, PNG/WebP/GIF/BMP/TIFF, raw pixels) is
converted to RGB and re-encoded (quality ``--jpeg-quality``). An image that cannot be used is
rejected with a reason that the writer counts: ``image_missing``, ``image_empty``,
``image_unreadable`` (not an image format we accept), ``image_corrupt`` (truncated or broken
data), ``image_too_large`` (more than ``--max-pixels`` pixels or ``--max-image-bytes`` bytes; the
size is read from the header, so such an image is never allocated), ``image_unsupported_mode``,
``image_link_outside_folder`` (a link in the image folder that resolves outside it: refused, as the
runner's ``resolve_image_path`` refuses it).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps, UnidentifiedImageError

from dataset_tools.base import Report
from recbole_pmmrec.imaging import to_rgb
from dataset_tools.tokens import is_safe_token

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
OUTPUT_SUFFIX = ".jpg"
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = Image.MAX_IMAGE_PIXELS  # Pillow's own bomb threshold (about 89.5 M)
    max_bytes: int = 64 << 20
    jpeg_quality: int = 95


class ImageRejected(Exception):
    """An image that is counted and skipped; the item keeps its text."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageRef:
    """Where an item's image comes from. ``read(limits)`` gives encoded bytes or a decoded PIL image
    (raw pixel records) and raises :class:`ImageRejected` for unusable data."""

    where: str
    read: Callable[[ImageLimits], "bytes | Image.Image"]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # outside, unreadable, or a link loop
        return False
    return True


def file_ref(path: Path, root: Path | None = None) -> ImageRef:
    """An image file; with ``root``, a path that resolves (through links) outside ``root`` is refused."""
    path = Path(path)

    def read(limits: ImageLimits) -> bytes:
        if root is not None and not _inside(path, Path(root)):
            raise ImageRejected("image_link_outside_folder", f"{path} resolves outside the image folder {root}; refused")
        if not path.is_file():
            raise ImageRejected("image_missing", f"{path} does not exist or is not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise ImageRejected("image_empty", f"{path} has zero bytes")
        if size > limits.max_bytes:
            raise ImageRejected("image_too_large", f"{path} has {size} bytes > --max-image-bytes {limits.max_bytes}")
        return path.read_bytes()

    return ImageRef(str(path), read)


def find_image_file(folder: Path, stem: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> Path | None:
    """``folder/<stem><suffix>`` for the first suffix that exists as a regular file.

    ``stem`` must already be a safe token (see ``dataset_tools.tokens``): never a path.
    """
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def folder_image(folder: Path, stem: str, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> ImageRef | None:
    """The image of ``stem`` in ``folder`` (see :func:`find_image_file`), confined to ``folder``."""
    path = find_image_file(folder, stem, suffixes)
    return file_ref(path, root=folder) if path is not None else None


def item_image(folder: Path, item: str, report: Report, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> ImageRef | None:
    """:func:`folder_image` for an item token, counting ``image_missing``; a token that is not a safe
    file name is never turned into a path (counted as ``image_lookup_skipped_unsafe_token``)."""
    if not is_safe_token(item):
        report.drop("image_lookup_skipped_unsafe_token", example=repr(item))
        return None
    image = folder_image(folder, item, suffixes)
    if image is None:
        report.drop("image_missing", example=f"{folder}/{item}{suffixes[0]}")
    return image


def check_pixels(width: int, height: int, limits: ImageLimits, where: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected("image_corrupt", f"{where}: size {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "image_too_large",
            f"{where}: {width}x{height} = {width * height} pixels > --max-pixels {limits.max_pixels} (refused unread)",
        )


def decode(data: bytes, limits: ImageLimits, where: str) -> Image.Image:
    """Open ``data``, check its size from the header, then decode it fully (``load``)."""
    if not data:
        raise ImageRejected("image_empty", f"{where} has zero bytes")
    Image.init()  # register every plugin, so that formats= can name them all
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we check the size ourselves
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as err:
        raise ImageRejected("image_too_large", f"{where}: {err}") from None
    except UnidentifiedImageError:
        raise ImageRejected("image_unreadable", f"{where}: not a {'/'.join(ALLOWED_FORMATS)} image") from None
    except Exception as err:  # Pillow raises many types on broken headers
        raise ImageRejected("image_corrupt", f"{where}: {type(err).__name__}: {err}") from None
    check_pixels(*image.size, limits, where)
    try:
        image.load()
    except Exception as err:  # truncated data, broken chunks, decoder errors
        raise ImageRejected("image_corrupt", f"{where}: {type(err).__name__}: {err}") from None
    return image


def save_image(ref: ImageRef, dst: Path, limits: ImageLimits) -> str:
    """Validate the image behind ``ref`` and write it to ``dst`` as an RGB JPEG.

    Returns ``"copied"`` or ``"reencoded_<FORMAT>_<MODE>"``; raises :class:`ImageRejected`.
    """
    data = ref.read(limits)
    if isinstance(data, Image.Image):
        image, source = data, b""
        check_pixels(*image.size, limits, ref.where)
    else:
        image, source = decode(data, limits, ref.where), data
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1) if image.format in ("JPEG", "MPO", "TIFF", "WEBP", "PNG") else 1
    if source and image.format == "JPEG" and image.mode == "RGB" and orientation in (0, 1):
        dst.write_bytes(source)
        return "copied"
    label = f"reencoded_{image.format or 'RAW'}_{image.mode}"
    try:
        if orientation not in (0, 1):
            image = ImageOps.exif_transpose(image)
        rgb = to_rgb(image)
        rgb.save(dst, "JPEG", quality=limits.jpeg_quality)
    except (ValueError, OSError) as err:
        dst.unlink(missing_ok=True)
        raise ImageRejected("image_unsupported_mode", f"{ref.where}: mode {image.mode}: {err}") from None
    return label
