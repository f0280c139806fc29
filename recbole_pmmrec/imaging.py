"""Pillow helpers shared by the runner (recbole_pmmrec.data.images) and the converters (dataset_tools)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB (transparency on white, 16-bit scaled to 8-bit)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if mode.startswith("I;16") or (mode == "I" and peak > 255):
            top = 65535.0  # 16-bit range -> 8 bit
        elif mode == "F" and peak > 255:
            top = peak
        else:
            top = 255.0
        arr8 = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    return im.convert("RGB")
