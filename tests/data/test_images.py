"""Safe image decoding: odd modes, EXIF, broken files and bombs never raise; paths cannot escape."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from recbole_pmmrec.data.images import index_image_dir, load_image, probe_image, resolve_image_path

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _halves(w, h, first, second, vertical_split=True):
    """An image whose left (or top) half is ``first`` and the other half ``second``."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    if vertical_split:
        arr[:, : w // 2], arr[:, w // 2 :] = first, second
    else:
        arr[: h // 2], arr[h // 2 :] = first, second
    return Image.fromarray(arr)


def test_rgb_jpeg_resized_and_center_cropped(tmp_path):
    path = tmp_path / "a.jpg"
    _halves(120, 60, RED, BLUE).save(path, quality=95)
    img, reason = load_image(path, 32)
    assert reason == "ok" and img.dtype == torch.uint8 and img.shape == (3, 32, 32)
    # shorter side -> 32 (64 x 32), centre crop keeps the middle: left red, right blue
    assert img[0, 16, 2] > 200 and img[2, 16, 2] < 60
    assert img[2, 16, 29] > 200 and img[0, 16, 29] < 60


def test_large_jpeg_uses_draft_and_keeps_content(tmp_path):
    path = tmp_path / "big.jpg"
    _halves(1600, 1200, RED, BLUE).save(path, quality=90)
    img, reason = load_image(path, 64)
    assert reason == "ok" and img.shape == (3, 64, 64)
    assert img[0, 32, 4] > 200 and img[2, 32, 60] > 200


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display = rotate 90 degrees clockwise
    _halves(64, 32, RED, BLUE).save(path, exif=exif.tobytes(), quality=95)
    img, reason = load_image(path, 16)
    assert reason == "ok"
    # after rotation the left (red) half is on top: top rows red, bottom rows blue, in every column
    assert img[0, 1, 1] > 200 and img[0, 1, 14] > 200
    assert img[2, 14, 1] > 200 and img[2, 14, 14] > 200


def test_modes_become_rgb(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(cmyk)  # red in CMYK
    gray = tmp_path / "gray.png"
    Image.new("L", (20, 20), 128).save(gray)
    for path in (cmyk, gray):
        img, reason = load_image(path, 8)
        assert reason == "ok" and img.shape == (3, 8, 8)
    assert load_image(cmyk, 8)[0][0].float().mean() > 200 and load_image(cmyk, 8)[0][1].float().mean() < 60
    assert (load_image(gray, 8)[0] - 128).abs().max() <= 1


def test_palette_transparency_is_composited_on_white(tmp_path):
    path = tmp_path / "pal.png"
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), 1 red
    im.paste(1, (8, 0, 16, 16))
    im.save(path, transparency=0)
    img, reason = load_image(path, 16)
    assert reason == "ok"
    assert img[:, 8, 2].tolist() == [255, 255, 255]  # transparent -> white, not palette black
    assert img[:, 8, 13].tolist() == [255, 0, 0]

    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 8), (0, 0, 255, 0)).save(rgba)
    assert load_image(rgba, 8)[0].min() == 255


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img, reason = load_image(path, 64)
    assert reason == "ok"
    row = img[0, 32].float()
    assert row[0] < 5 and row[-1] > 250 and 100 < row[32] < 155  # a ramp, not 255 everywhere


def test_bad_files_give_reasons(tmp_path):
    assert load_image(tmp_path / "nope.jpg", 8) == (None, "missing")
    assert load_image(None, 8) == (None, "missing")
    assert load_image(tmp_path, 8) == (None, "missing")  # a directory
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert load_image(tmp_path / "empty.jpg", 8) == (None, "empty")
    (tmp_path / "junk.jpg").write_bytes(os.urandom(500))
    assert load_image(tmp_path / "junk.jpg", 8) == (None, "corrupt")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    assert load_image(tmp_path / "cut.jpg", 8) == (None, "truncated")
    (tmp_path / "header_only.jpg").write_bytes(data[:200])
    assert load_image(tmp_path / "header_only.jpg", 8)[0] is None
    png = tmp_path / "g.png"
    Image.new("RGB", (30, 30)).save(png)
    raw = bytearray(png.read_bytes())
    raw[40:60] = b"\x00" * 20  # damage the compressed data
    (tmp_path / "damaged.png").write_bytes(bytes(raw))
    assert load_image(tmp_path / "damaged.png", 8)[1] in ("corrupt", "truncated")


def _png_header_only(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_decompression_bomb_rejected_from_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 100_000, 100_000)  # 10^10 pixels claimed, no pixel data at all
    # refused from the header alone: decoding is never attempted (a decode would also fail as truncated)
    def no_decode(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "load", no_decode)
        patch.setattr(Image.Image, "convert", no_decode)
        assert load_image(bomb, 8) == (None, "too_large")
        assert probe_image(bomb) == "too_large"
    # our own limit applies below Pillow's: a modest image over max_pixels is refused too
    small = tmp_path / "s.png"
    Image.new("RGB", (100, 100)).save(small)
    assert load_image(small, 8, max_pixels=5000) == (None, "too_large")
    assert load_image(small, 8)[1] == "ok" and probe_image(small) == "ok"


def test_programmer_errors_raise(tmp_path):
    with pytest.raises(ValueError):
        load_image(tmp_path / "x.jpg", 0)
    with pytest.raises(ValueError):
        load_image(tmp_path / "x.jpg", 2.5)


def test_resolve_image_path(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (4, 4)).save(root / "i1.png")
    Image.new("RGB", (4, 4)).save(root / "i2.JPG")
    Image.new("RGB", (4, 4)).save(root / "i3.jpg")
    Image.new("RGB", (4, 4)).save(root / "i3.gif")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "link.jpg")
    index = index_image_dir(root)
    assert index["i3"] == "i3.jpg"  # .jpg preferred over .gif
    for idx in (None, index):
        assert resolve_image_path(root, "i1", idx) == (root.resolve() / "i1.png", "ok")
        assert resolve_image_path(root, "i2", idx)[1] == "ok"
        assert resolve_image_path(root, "i3", idx)[0].name == "i3.jpg"
        assert resolve_image_path(root, "nope", idx) == (None, "missing")
        for token in ("../secret", "../../etc/passwd", "/etc/passwd", "a\x00b", "..", "", "link"):
            assert resolve_image_path(root, token, idx) == (None, "unsafe"), token
