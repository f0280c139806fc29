"""Safe image decoding and image-path resolution.

``load_image(path, size)`` never raises on bad image data: it returns ``(None, reason)`` and the
caller counts the reason. Reasons: ``ok``, ``missing``, ``empty``, ``corrupt``, ``truncated``,
``too_large``. It raises only on programmer errors (a size that is not a positive int).

Decoding, in order:
1. the header is read (``Image.open`` is lazy) and the pixel count is checked against
   ``max_pixels`` before any pixel is decoded (decompression bombs are rejected from the header);
2. JPEGs are decoded at a reduced scale when the file is much larger than ``size`` (``draft``);
3. EXIF orientation is applied;
4. every mode becomes RGB: transparency (RGBA, LA, palette with a transparent index) is
   composited on white; 16-bit grayscale (I;16 / I) is scaled to 8 bit, not clipped; CMYK,
   grayscale, palette, 1-bit, YCbCr etc. use Pillow's conversion;
5. resize: the shorter side becomes ``size`` and the centre is cropped to ``size x size``
   (bicubic), the usual ImageNet-style evaluation transform without a crop margin.

``resolve_image_path(image_dir, token)`` maps an item token onto ``<image_dir>/<token>.<ext>``
and refuses tokens that would leave ``image_dir`` (``..``, absolute paths, NUL bytes, links that
point outside), checked on resolved paths.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from recbole_pmmrec.imaging import to_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
MAX_PIXELS = 64_000_000  # 8000 x 8000; a poster or a product photo is far below this
REASONS = ("ok", "missing", "empty", "corrupt", "truncated", "too_large", "unsafe")


def load_image(
    path: str | os.PathLike | None, size: int, max_pixels: int = MAX_PIXELS
) -> tuple[torch.Tensor | None, str]:
    """Decode ``path`` into a uint8 tensor (3, size, size), or (None, reason) on bad data."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if path is None:
        return None, "missing"
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: embedded NUL byte
        return None, "missing"
    if not os.path.isfile(path):
        return None, "missing"
    if st.st_size == 0:
        return None, "empty"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w <= 0 or h <= 0:
                    return None, "corrupt"
                if w * h > max_pixels:
                    return None, "too_large"
                if im.format == "JPEG" and min(w, h) >= 2 * size:
                    im.draft("RGB", (size, size))  # DCT scaling: both sides stay >= size
                im.load()
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:  # unreadable EXIF: keep the pixels as stored
                    pass
                im = to_rgb(im)
                im = ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
                arr = np.array(im, dtype=np.uint8)  # (H, W, 3), a writable copy
    except Image.DecompressionBombError:
        return None, "too_large"
    except OSError as exc:
        return None, "truncated" if "truncated" in str(exc).lower() else "corrupt"
    except MemoryError:
        return None, "too_large"
    except Exception:  # Pillow raises many types on malformed data (SyntaxError, ValueError, ...)
        return None, "corrupt"
    if arr.ndim != 3 or arr.shape[2] != 3:
        return None, "corrupt"
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), "ok"


def _unsafe_token(token: str) -> bool:
    return (
        not token
        or "\x00" in token
        or token in (".", "..")
        or os.path.isabs(token)
        or token.startswith(("/", "\\"))
        or (len(token) > 1 and token[1] == ":")  # a Windows drive
    )


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def index_image_dir(image_dir: str | os.PathLike) -> dict[str, str]:
    """One directory listing: file stem -> file name, for the known image extensions.

    When several files share a stem, the first extension of ``IMAGE_EXTENSIONS`` wins.
    """
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    with os.scandir(image_dir) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            r = rank.get(ext.lower())
            if r is not None and (stem not in best or r < best[stem][0]):
                best[stem] = (r, entry.name)
    return {stem: name for stem, (_, name) in best.items()}


def resolve_image_path(
    image_dir: str | os.PathLike, item_token: str, index: dict[str, str] | None = None
) -> tuple[Path | None, str]:
    """-> (path, 'ok') | (None, 'missing') | (None, 'unsafe').

    ``index`` (from ``index_image_dir``) avoids one stat per extension for large catalogues.
    """
    root = Path(image_dir).resolve()
    token = str(item_token)
    if _unsafe_token(token) or not _inside(root / (token + IMAGE_EXTENSIONS[0]), root):
        return None, "unsafe"
    if index is not None:
        names = [index[token]] if token in index else []
    else:
        names = [token + ext for ext in IMAGE_EXTENSIONS] + [token + ext.upper() for ext in IMAGE_EXTENSIONS]
    for name in names:
        candidate = root / name
        if not _inside(candidate, root):
            return None, "unsafe"
        if candidate.is_file():
            return candidate, "ok"
    return None, "missing"


__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "REASONS", "load_image", "resolve_image_path", "index_image_dir"]


def probe_image(path: str | os.PathLike | None, max_pixels: int = MAX_PIXELS) -> str:
    """Cheap check from the file header only (no pixel decoding): a reason of ``REASONS``."""
    if path is None:
        return "missing"
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "missing"
    if st.st_size == 0:
        return "empty"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        return "too_large"
    except Exception:
        return "corrupt"
    if w <= 0 or h <= 0:
        return "corrupt"
    return "too_large" if w * h > max_pixels else "ok"


__all__.append("probe_image")
