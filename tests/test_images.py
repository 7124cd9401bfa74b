"""Tests for nst_jax.images: every fixture is a tiny file made here in tmp_path."""
from __future__ import annotations

import errno
import os
import pathlib
import stat
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from nst_jax import images
from nst_jax.errors import NSTError

is_root = hasattr(os, "geteuid") and os.geteuid() == 0
skip_if_root = pytest.mark.skipif(
    is_root, reason="root ignores file permissions, so chmod cannot deny access (a simulated test covers it)"
)


# ------------------------------------------------------------------------------ helpers


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(width: int, height: int, bit_depth: int, colour_type: int, raw: bytes = b"") -> bytes:
    """A hand-made PNG: any declared size, with ``raw`` (filtered scanlines) as its pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _save(tmp_path, name: str, img: Image.Image, **kwargs):
    path = tmp_path / name
    img.save(path, **kwargs)
    return path


def _check_rgb(rgb: np.ndarray, shape_hw: tuple[int, int]) -> None:
    assert rgb.shape == (*shape_hw, 3)
    assert rgb.dtype == np.float32
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0


def _check_error(excinfo: pytest.ExceptionInfo, path) -> str:
    """The error is one line and names ``path``; returns the message."""
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def _random_rgb(shape_hw=(12, 20), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape_hw, 3), dtype=np.float32)


# ---------------------------------------------------------------- load_image: modes


def test_load_rgb_png(tmp_path):
    arr = np.zeros((3, 4, 3), np.uint8)
    arr[1, 2] = (10, 128, 255)
    rgb = images.load_image(_save(tmp_path, "rgb.png", Image.fromarray(arr)))
    _check_rgb(rgb, (3, 4))
    np.testing.assert_allclose(rgb[1, 2], np.array([10, 128, 255]) / 255, atol=1e-7)
    np.testing.assert_array_equal(rgb[0, 0], 0.0)


def test_load_grayscale_l(tmp_path):
    rgb = images.load_image(_save(tmp_path, "l.png", Image.new("L", (5, 3), 51)))
    _check_rgb(rgb, (3, 5))
    np.testing.assert_allclose(rgb, 0.2, atol=1e-7)


def test_load_16bit_grey_png_is_scaled_not_clipped(tmp_path):
    arr = np.full((4, 6), 40000, np.uint16)
    arr[0, 0] = 65535
    arr[0, 1] = 1  # below one 8-bit step: must survive as its own value
    path = _save(tmp_path, "g16.png", Image.fromarray(arr))
    assert Image.open(path).mode.startswith("I")
    rgb = images.load_image(path)
    _check_rgb(rgb, (4, 6))
    np.testing.assert_allclose(rgb[2, 3], 40000 / 65535, atol=1e-6)
    np.testing.assert_allclose(rgb[0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], 1 / 65535, atol=1e-9)


def test_load_16bit_rgb_png(tmp_path):
    # Pillow has no 48-bit RGB mode: it reads the high bytes, so 1/255 is the tolerance.
    row = b"\x00" + struct.pack(">HHH", 40000, 1000, 65535) * 2
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_bytes(2, 2, 16, 2, row * 2))
    rgb = images.load_image(path)
    _check_rgb(rgb, (2, 2))
    np.testing.assert_allclose(rgb[1, 1], np.array([40000, 1000, 65535]) / 65535, atol=1 / 255)


def test_load_mode_i_tiff(tmp_path):
    img = Image.new("I", (3, 2), 40000)
    img.putpixel((1, 0), 70000)  # beyond 16 bits: clipped to white
    img.putpixel((2, 0), -5)  # negative: clipped to black
    path = _save(tmp_path, "i.tif", img)
    assert Image.open(path).mode == "I"
    rgb = images.load_image(path)
    _check_rgb(rgb, (2, 3))
    np.testing.assert_allclose(rgb[1, 1], 40000 / 65535, atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], 1.0)
    np.testing.assert_allclose(rgb[0, 2], 0.0)


@pytest.mark.parametrize(
    "values, expected",
    [
        ((0.25, 1.0), (0.25, 1.0)),  # max <= 1: already [0, 1]
        ((51.0, 255.0), (0.2, 1.0)),  # max > 1: Pillow's [0, 255] scale
    ],
)
def test_load_mode_f_tiff(tmp_path, values, expected):
    img = Image.new("F", (2, 2), values[0])
    img.putpixel((1, 1), values[1])
    path = _save(tmp_path, "f.tif", img)
    assert Image.open(path).mode == "F"
    rgb = images.load_image(path)
    _check_rgb(rgb, (2, 2))
    np.testing.assert_allclose(rgb[0, 0], expected[0], atol=1e-6)
    np.testing.assert_allclose(rgb[1, 1], expected[1], atol=1e-6)


def test_load_rgba_drops_alpha_without_compositing(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 1] = (10, 20, 30, 0)  # fully transparent: colour kept, not blended to black or white
    arr[1, 2] = (200, 100, 50, 128)
    rgb = images.load_image(_save(tmp_path, "rgba.png", Image.fromarray(arr, "RGBA")))
    _check_rgb(rgb, (2, 3))
    np.testing.assert_allclose(rgb[0, 1], np.array([10, 20, 30]) / 255, atol=1e-7)
    np.testing.assert_allclose(rgb[1, 2], np.array([200, 100, 50]) / 255, atol=1e-7)


def test_load_la_drops_alpha(tmp_path):
    rgb = images.load_image(_save(tmp_path, "la.png", Image.new("LA", (4, 2), (100, 0))))
    _check_rgb(rgb, (2, 4))
    np.testing.assert_allclose(rgb, 100 / 255, atol=1e-7)


def _palette_image() -> Image.Image:
    img = Image.new("P", (4, 3), 0)
    img.putpalette([0, 0, 0, 10, 20, 30, 200, 100, 50])
    img.putpixel((1, 0), 1)
    img.putpixel((2, 1), 2)
    return img


def test_load_palette(tmp_path):
    path = _save(tmp_path, "p.png", _palette_image())
    assert Image.open(path).mode == "P"
    rgb = images.load_image(path)
    _check_rgb(rgb, (3, 4))
    np.testing.assert_allclose(rgb[1, 2], np.array([200, 100, 50]) / 255, atol=1e-7)
    np.testing.assert_allclose(rgb[0, 1], np.array([10, 20, 30]) / 255, atol=1e-7)


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_load_palette_with_transparency_warns_nothing(tmp_path, suffix):
    path = _save(tmp_path, "pt" + suffix, _palette_image(), transparency=1)
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" in img.info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = images.load_image(path)
    _check_rgb(rgb, (3, 4))
    # The transparent pixel keeps its palette colour.
    np.testing.assert_allclose(rgb[0, 1], np.array([10, 20, 30]) / 255, atol=1e-7)
    np.testing.assert_allclose(rgb[1, 2], np.array([200, 100, 50]) / 255, atol=1e-7)


def test_load_cmyk_jpeg(tmp_path):
    path = _save(tmp_path, "cmyk.jpg", Image.new("CMYK", (16, 16), (0, 255, 0, 0)), quality=95)
    assert Image.open(path).mode == "CMYK"
    rgb = images.load_image(path)
    _check_rgb(rgb, (16, 16))
    np.testing.assert_allclose(rgb[8, 8], [1.0, 0.0, 1.0], atol=0.03)  # magenta


def test_load_one_bit(tmp_path):
    img = Image.new("1", (5, 4), 0)
    img.putpixel((3, 2), 1)
    path = _save(tmp_path, "one.png", img)
    assert Image.open(path).mode == "1"
    rgb = images.load_image(path)
    _check_rgb(rgb, (4, 5))
    np.testing.assert_array_equal(rgb[2, 3], 1.0)
    assert rgb.sum() == 3.0


def test_load_honours_exif_orientation(tmp_path):
    arr = np.zeros((16, 32, 3), np.uint8)  # stored 32 wide, 16 high: red left, blue right
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path, "rotated.jpg", Image.fromarray(arr), exif=exif, quality=95)
    rgb = images.load_image(path)
    _check_rgb(rgb, (32, 16))  # now 16 wide, 32 high
    np.testing.assert_allclose(rgb[4, 8], [1, 0, 0], atol=0.05)  # left column became the top
    np.testing.assert_allclose(rgb[27, 8], [0, 0, 1], atol=0.05)


# -------------------------------------------------------------- load_image: max_side


@pytest.mark.parametrize(
    "shape_hw, max_side, expected",
    [
        ((20, 40), 16, (8, 16)),  # landscape, down
        ((5, 10), 32, (16, 32)),  # up
        ((30, 10), 18, (18, 6)),  # portrait
        ((7, 7), 7, (7, 7)),  # unchanged
    ],
)
def test_load_max_side_sets_long_side(tmp_path, shape_hw, max_side, expected):
    arr = (_random_rgb(shape_hw) * 255).astype(np.uint8)
    rgb = images.load_image(_save(tmp_path, "a.png", Image.fromarray(arr)), max_side=max_side)
    _check_rgb(rgb, expected)
    if expected == shape_hw:
        np.testing.assert_array_equal(rgb, arr / np.float32(255))


def test_load_max_side_keeps_16bit_precision(tmp_path):
    path = _save(tmp_path, "g16.png", Image.fromarray(np.full((10, 20), 40000, np.uint16)))
    rgb = images.load_image(path, max_side=16)
    _check_rgb(rgb, (8, 16))
    np.testing.assert_allclose(rgb, 40000 / 65535, atol=1e-5)  # an 8-bit detour would be off by ~2e-3


@pytest.mark.parametrize(
    "shape_hw, long_side, expected",
    [
        ((20, 40), 16, (8, 16)),
        ((1, 100), 16, (1, 16)),  # would round to 0
        ((3, 8), 4, (2, 4)),  # 1.5 rounds up
        ((100, 3), 10, (10, 1)),  # 0.3 -> at least 1
        ((512, 512), 4096, (4096, 4096)),
    ],
)
def test_scaled_shape(shape_hw, long_side, expected):
    assert images.scaled_shape(shape_hw, long_side) == expected


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_load_rejects_bad_max_side(tmp_path, bad):
    path = _save(tmp_path, "a.png", Image.new("RGB", (4, 4)))
    with pytest.raises(ValueError, match="max_side"):
        images.load_image(path, max_side=bad)


# ------------------------------------------------------------------ load_image: errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "does not exist" in _check_error(excinfo, path)


def test_broken_symlink(tmp_path):
    path = tmp_path / "link.png"
    path.symlink_to(tmp_path / "gone.png")
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "broken symbolic link" in _check_error(excinfo, path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(NSTError) as excinfo:
        images.load_image(tmp_path)
    assert "directory" in _check_error(excinfo, tmp_path)


@pytest.mark.parametrize("content", [b"hello, this is not an image\n", b""], ids=["text", "empty"])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "not an image" in _check_error(excinfo, path)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    full = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray((_random_rgb((64, 64)) * 255).astype(np.uint8)).save(full, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "truncated" in _check_error(excinfo, path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decompression_bomb_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(20000, 20000, 1, 0))  # 4e8 px declared, ~100 bytes on disk
    assert path.stat().st_size < 200
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    message = _check_error(excinfo, path)
    assert "decompression bomb" in message
    # Defect: the message named two different limits (Pillow's warning and error limits).
    assert f"declares 400,000,000 pixels, which is more than {Image.MAX_IMAGE_PIXELS:,} pixels" in message
    assert message.count("pixels") == 2 and str(2 * Image.MAX_IMAGE_PIXELS) not in message


def test_decompression_bomb_warning_is_an_error(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(10000, 10000, 1, 0))  # 1e8 px: over the warning limit, under the error one
    filters = list(warnings.filters)
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    message = _check_error(excinfo, path)
    assert f"declares 100,000,000 pixels, which is more than {Image.MAX_IMAGE_PIXELS:,}" in message
    assert warnings.filters == filters  # the filter was local


def test_decompression_bomb_warning_with_lowered_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    small = _save(tmp_path, "small.png", Image.new("RGB", (9, 9)))  # 81 px: fine
    _check_rgb(images.load_image(small), (9, 9))
    big = _save(tmp_path, "big.png", Image.new("RGB", (12, 12)))  # 144 px: a warning, so an error
    with pytest.raises(NSTError) as excinfo:
        images.load_image(big)
    _check_error(excinfo, big)


def test_zero_dimension_png(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(_png_bytes(0, 5, 8, 2))
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    _check_error(excinfo, path)


def test_zero_dimension_image(tmp_path, monkeypatch):
    # Pillow refuses to open or save a 0 px image, but can make one: feed it in directly.
    path = _save(tmp_path, "a.png", Image.new("RGB", (4, 4)))
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: Image.new("RGB", (0, 4)))
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "zero dimension" in _check_error(excinfo, path)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    # Runs as root too: Pillow's open fails as it would on a chmod 000 file.
    path = _save(tmp_path, "secret.png", Image.new("RGB", (4, 4)))

    def deny(fp, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(fp))

    monkeypatch.setattr(Image, "open", deny)
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert "permission" in _check_error(excinfo, path)


@skip_if_root
def test_unreadable_file(tmp_path):
    path = _save(tmp_path, "secret.png", Image.new("RGB", (4, 4)))
    path.chmod(0)
    try:
        with pytest.raises(NSTError) as excinfo:
            images.load_image(path)
        assert "permission" in _check_error(excinfo, path)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------- check_size


@pytest.mark.parametrize("size", [16, 512, 4096, np.int64(300)])
def test_check_size_accepts(size):
    result = images.check_size(size)
    assert result == size and type(result) is int


@pytest.mark.parametrize("size", [0, -1, 15, 4097, 100000])
def test_check_size_out_of_range(size):
    with pytest.raises(NSTError) as excinfo:
        images.check_size(size)
    message = str(excinfo.value)
    assert "\n" not in message and "16" in message and "4096" in message and str(size) in message


@pytest.mark.parametrize("size", [512.0, "512", True, None])
def test_check_size_not_an_int(size):
    with pytest.raises(NSTError, match="16 to 4096"):
        images.check_size(size)


def test_check_size_override():
    assert images.check_size(5000, max_side=8192) == 5000
    with pytest.raises(NSTError, match="32 to 64"):
        images.check_size(16, min_side=32, max_side=64)


# -------------------------------------------------------------------------------- to_uint8


def test_to_uint8_clips_and_rounds():
    rgb = np.array(
        [[[-0.5, 0.0, 0.4 / 255], [0.6 / 255, 0.5, 1.0], [1.0 - 0.4 / 255, 2.0, 127.5 / 255]]], np.float32
    )
    out = images.to_uint8(rgb)
    assert out.dtype == np.uint8 and out.shape == (1, 3, 3)
    np.testing.assert_array_equal(out, [[[0, 0, 0], [1, 128, 255], [255, 255, 128]]])


def test_to_uint8_rejects_nan():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0, 0] = np.nan
    with pytest.raises(NSTError, match="NaN"):
        images.to_uint8(rgb)


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4), (0, 4, 3)])
def test_to_uint8_rejects_bad_shape(shape):
    with pytest.raises(ValueError):
        images.to_uint8(np.zeros(shape, np.float32))


# ------------------------------------------------------------------------------- resize_to


@pytest.mark.parametrize("shape_hw", [(6, 10), (24, 40), (12, 20), (1, 1)])
def test_resize_to_shape_dtype_range(shape_hw):
    out = images.resize_to(_random_rgb((12, 20)), shape_hw)
    _check_rgb(out, shape_hw)


def test_resize_to_keeps_float_precision():
    rgb = np.full((10, 14, 3), 0.123456, np.float32)
    out = images.resize_to(rgb, (17, 9))
    np.testing.assert_allclose(out, 0.123456, atol=1e-6)  # uint8 would give 31/255 = 0.12157


def test_resize_to_clips_lanczos_overshoot():
    step = np.zeros((8, 8, 3), np.float32)
    step[:, 4:] = 1.0
    for resample in (Image.Resampling.LANCZOS, Image.Resampling.BICUBIC):
        out = images.resize_to(step, (32, 32), resample=resample)
        assert out.min() == 0.0 and out.max() == 1.0


def test_resize_to_any_channel_count_and_mean():
    rgb = np.random.default_rng(1).random((32, 32, 5), dtype=np.float32)
    out = images.resize_to(rgb, (16, 16))
    assert out.shape == (16, 16, 5)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), rgb.mean(axis=(0, 1)), atol=0.02)


# ---------------------------------------------------------------------------- side_by_side


def test_side_by_side():
    a, b = _random_rgb((10, 20), seed=1), _random_rgb((20, 20), seed=2)
    out = images.side_by_side([a, b], height=10)
    _check_rgb(out, (10, 20 + 4 + 10))
    np.testing.assert_allclose(out[:, :20], a, atol=1e-6)  # already 10 high: unchanged
    np.testing.assert_array_equal(out[:, 20:24], 1.0)  # the white gap
    np.testing.assert_allclose(out[:, 24:], images.resize_to(b, (10, 10)))


def test_side_by_side_rejects_empty():
    with pytest.raises(ValueError):
        images.side_by_side([], height=10)


# --------------------------------------------------------------- save_png / check_output_path


def _listing(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_save_png_round_trip(tmp_path):
    rgb = _random_rgb()
    path = images.save_png(tmp_path / "out.png", rgb)
    assert path == tmp_path / "out.png"
    assert _listing(tmp_path) == ["out.png"]  # no temporary file left
    np.testing.assert_array_equal(images.load_image(path), images.to_uint8(rgb) / np.float32(255))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # like open(), not mkstemp's 0600


def test_save_png_metadata(tmp_path):
    metadata = {"content": "photos/a b.jpg", "alpha": "1e-3", "note": "ünïcödé ✓ 風景", "config": "x" * 5000}
    path = images.save_png(tmp_path / "out.png", _random_rgb(), metadata)
    assert images.read_png_metadata(path) == metadata


def test_save_png_overwrites_and_accepts_upper_case_suffix(tmp_path):
    path = tmp_path / "OUT.PNG"
    images.save_png(path, np.zeros((4, 4, 3), np.float32))
    images.save_png(path, np.ones((4, 4, 3), np.float32))
    np.testing.assert_array_equal(images.load_image(path), 1.0)
    assert _listing(tmp_path) == ["OUT.PNG"]


@pytest.mark.parametrize("name", ["out.jpg", "out", "out.png.bak"])
def test_output_must_be_png(tmp_path, name):
    path = tmp_path / name
    for call in (lambda: images.check_output_path(path), lambda: images.save_png(path, _random_rgb())):
        with pytest.raises(NSTError) as excinfo:
            call()
        assert ".png" in _check_error(excinfo, path)
    assert _listing(tmp_path) == []


def _unwritable(tmp_path, case: str):
    """An output path that cannot be written, and a word its error message contains."""
    if case == "missing parent":
        return tmp_path / "no" / "such" / "out.png", "does not exist"
    if case == "is a directory":
        (tmp_path / "taken.png").mkdir()
        return tmp_path / "taken.png", "directory"
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "out.png", "not a directory"


@pytest.mark.parametrize("case", ["missing parent", "is a directory", "parent is a file"])
def test_unwritable_output(tmp_path, case):
    path, word = _unwritable(tmp_path, case)
    before = _listing(tmp_path)
    with pytest.raises(NSTError) as excinfo:
        images.check_output_path(path)
    assert word in _check_error(excinfo, path)
    with pytest.raises(NSTError) as excinfo:
        images.save_png(path, _random_rgb())
    _check_error(excinfo, path)
    assert _listing(tmp_path) == before


def test_output_permission_denied_simulated(tmp_path, monkeypatch):
    # Runs as root too: creating a file fails as it would in a read-only directory. The
    # check tries to create one (os.access says yes to root everywhere, /proc included).
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and pathlib.Path(path).parent == tmp_path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    path = tmp_path / "out.png"
    for call in (lambda: images.check_output_path(path), lambda: images.save_png(path, _random_rgb())):
        with pytest.raises(NSTError) as excinfo:
            call()
        assert "permission denied" in _check_error(excinfo, path).lower()
    assert _listing(tmp_path) == []


def test_os_access_is_not_trusted(tmp_path, monkeypatch):
    """As root, os.access says yes for /proc: the check must try instead."""
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: True)
    with pytest.raises(NSTError, match="cannot create files in /proc"):
        images.check_output_path("/proc/nst_jax_test.png")
    images.check_output_path(tmp_path / "fine.png")
    assert _listing(tmp_path) == []  # the probe file is gone


@skip_if_root
def test_output_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(NSTError) as excinfo:
            images.check_output_path(locked / "out.png")
        assert "permission denied" in _check_error(excinfo, locked / "out.png").lower()
    finally:
        locked.chmod(0o700)


def test_check_output_path_returns_path(tmp_path):
    assert images.check_output_path(str(tmp_path / "a.png")) == tmp_path / "a.png"


def _failing_save(exception: BaseException):
    def save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n half a picture")
        fp.flush()
        raise exception

    return save


@pytest.mark.parametrize(
    "exception, expected",
    [
        (RuntimeError("encoder broke"), RuntimeError),
        (KeyboardInterrupt(), KeyboardInterrupt),
        (OSError(errno.ENOSPC, "No space left on device"), NSTError),
    ],
)
def test_save_png_failure_leaves_nothing(tmp_path, monkeypatch, exception, expected):
    path = tmp_path / "out.png"
    images.save_png(path, np.zeros((4, 4, 3), np.float32))
    old = path.read_bytes()
    monkeypatch.setattr(Image.Image, "save", _failing_save(exception))
    with pytest.raises(expected) as excinfo:
        images.save_png(path, np.ones((4, 4, 3), np.float32))
    if expected is NSTError:
        assert "No space left" in _check_error(excinfo, path)
    assert _listing(tmp_path) == ["out.png"]  # no temporary file
    assert path.read_bytes() == old  # the earlier result is intact


def test_save_png_failure_in_rename_leaves_nothing(tmp_path, monkeypatch):
    def replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        images.save_png(tmp_path / "out.png", _random_rgb())
    assert _listing(tmp_path) == []


@pytest.mark.parametrize(
    "metadata, error", [({"": "v"}, ValueError), ({"k" * 80: "v"}, ValueError), ({"k": 1}, TypeError)]
)
def test_save_png_bad_metadata(tmp_path, metadata, error):
    with pytest.raises(error):
        images.save_png(tmp_path / "out.png", _random_rgb(), metadata)
    assert _listing(tmp_path) == []


def test_save_png_nan_image(tmp_path):
    with pytest.raises(NSTError, match="NaN"):
        images.save_png(tmp_path / "out.png", np.full((4, 4, 3), np.nan, np.float32))
    assert _listing(tmp_path) == []


# ------------------------------------------------------------------------ read_png_metadata


def test_read_png_metadata_errors(tmp_path):
    jpeg = _save(tmp_path, "a.jpg", Image.new("RGB", (4, 4)))
    with pytest.raises(NSTError) as excinfo:
        images.read_png_metadata(jpeg)
    assert "not a PNG" in _check_error(excinfo, jpeg)
    missing = tmp_path / "missing.png"
    with pytest.raises(NSTError) as excinfo:
        images.read_png_metadata(missing)
    _check_error(excinfo, missing)


def test_read_png_metadata_empty(tmp_path):
    path = images.save_png(tmp_path / "out.png", _random_rgb())
    assert images.read_png_metadata(path) == {}
