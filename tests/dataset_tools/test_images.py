"""Image validation and conversion: every bad-image case ends as a counted reason, never a crash."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from dataset_tools.images import ImageLimits, ImageRejected, file_ref, save_image

from .conftest import image_bytes, png_header_only


def _save(tmp_path, data: bytes, limits=ImageLimits(), name="src.bin"):
    src = tmp_path / name
    src.write_bytes(data)
    dst = tmp_path / "out.jpg"
    outcome = save_image(file_ref(src), dst, limits)
    with Image.open(dst) as im:
        im.load()
        assert im.format == "JPEG" and im.mode == "RGB"
        return outcome, np.asarray(im).astype(int)


def test_rgb_jpeg_is_copied_byte_for_byte(tmp_path):
    data = image_bytes(size=(20, 10))
    outcome, pixels = _save(tmp_path, data)
    assert outcome == "copied" and (tmp_path / "out.jpg").read_bytes() == data
    assert pixels.shape == (10, 20, 3)


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("L", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"),
                                       ("RGB", "WEBP"), ("1", "BMP"), ("RGB", "TIFF")])
def test_other_modes_and_formats_become_rgb_jpeg(tmp_path, mode, fmt):
    outcome, pixels = _save(tmp_path, image_bytes(mode, (12, 9), fmt))
    assert outcome == f"reencoded_{fmt}_{mode}"
    assert pixels.shape == (9, 12, 3)


def test_cmyk_colours_survive(tmp_path):
    _, pixels = _save(tmp_path, image_bytes("CMYK", (16, 16), "JPEG", color=(0, 255, 255, 0)))  # pure red in CMYK
    assert np.abs(pixels.reshape(-1, 3).mean(0) - [255, 0, 0]).max() < 12


def test_transparent_palette_is_composited_on_white(tmp_path):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0] * 256)
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    _, pixels = _save(tmp_path, buf.getvalue())
    assert pixels.min() > 245  # transparent black -> white, not black


def test_16_bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    buf = io.BytesIO()
    Image.fromarray(values).save(buf, "PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.mode.startswith("I")  # really a 16-bit source
    outcome, pixels = _save(tmp_path, buf.getvalue())
    assert outcome.startswith("reencoded_PNG_I")
    means = [pixels[2:6, 8 * k + 2 : 8 * k + 6].mean() for k in range(4)]
    assert means[0] < 5 and 120 < means[2] < 136 and means[3] > 248  # 16-bit range mapped onto 0..255


def test_exif_rotation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    outcome, pixels = _save(tmp_path, image_bytes(size=(20, 10), exif=exif.tobytes()))
    assert outcome == "reencoded_JPEG_RGB" and pixels.shape == (20, 10, 3)


@pytest.mark.parametrize("data, reason", [
    (b"", "image_empty"),
    (b"this is not an image at all", "image_unreadable"),
    (image_bytes(size=(64, 64))[:400], "image_corrupt"),  # truncated JPEG
    (image_bytes(size=(64, 64), fmt="PNG")[:-30], "image_corrupt"),  # truncated PNG
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "image_unreadable"),  # PNG magic, garbage header
])
def test_broken_files_are_rejected_with_a_reason(tmp_path, data, reason):
    src = tmp_path / "bad.jpg"
    src.write_bytes(data)
    with pytest.raises(ImageRejected) as err:
        save_image(file_ref(src), tmp_path / "out.jpg", ImageLimits())
    assert err.value.reason == reason and str(src) in err.value.detail
    assert not (tmp_path / "out.jpg").exists()


def test_missing_file_and_byte_limit(tmp_path):
    with pytest.raises(ImageRejected, match="image_missing"):
        save_image(file_ref(tmp_path / "nope.jpg"), tmp_path / "out.jpg", ImageLimits())
    src = tmp_path / "a.jpg"
    src.write_bytes(image_bytes())
    with pytest.raises(ImageRejected, match="image_too_large.*max-image-bytes"):
        save_image(file_ref(src), tmp_path / "out.jpg", ImageLimits(max_bytes=100))


def test_pixel_limit_refuses_before_decoding(tmp_path):
    src = tmp_path / "big.png"
    src.write_bytes(image_bytes(size=(100, 100), fmt="PNG"))
    with pytest.raises(ImageRejected, match=r"image_too_large.*100x100 = 10000 pixels > --max-pixels 5000"):
        save_image(file_ref(src), tmp_path / "out.jpg", ImageLimits(max_pixels=5000))


@pytest.mark.parametrize("side", [20_000, 100_000])  # 400 M (above our limit) and 10 G pixels (above Pillow's)
def test_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch, side):
    src = tmp_path / "bomb.png"
    src.write_bytes(png_header_only(side, side))

    def no_decoding(self):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageRejected, match="image_too_large"):
        save_image(file_ref(src), tmp_path / "out.jpg", ImageLimits())
