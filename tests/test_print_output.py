"""Output for print: 16-bit PNG and TIFF, an sRGB ICC profile in every output, and
ICC-tagged inputs converted to sRGB as they are read.

The tagged inputs are made here: the ICC profiles are written byte by byte
(:func:`matrix_shaper_icc`, :func:`grey_icc`) from the published primaries, and the
expected sRGB values come from the same primaries by plain matrix algebra
(:func:`expected_srgb`), not from LittleCMS, so a wrong conversion is caught.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from nst_jax import image_writers, images, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.cli import stylize as stylize_cli
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE

HAVE_TIFFFILE = importlib.util.find_spec("tifffile") is not None  # the 'tiff' extra

# ------------------------------------------------------------------------ ICC profiles

D65 = (0.3127, 0.3290)
D50_XYZ = np.array([0.9642, 1.0, 0.8249])
# Primaries (x, y of red, green, blue) and tone curves of the colour spaces, as published.
SRGB = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))
ADOBE_RGB = ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))  # Adobe RGB (1998), gamma 563/256
DISPLAY_P3 = ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060))  # sRGB's tone curve
ADOBE_GAMMA = ("gamma", 563 / 256)
SRGB_CURVE = ("srgb",)
SPACES = {"adobe-rgb": (ADOBE_RGB, ADOBE_GAMMA), "display-p3": (DISPLAY_P3, SRGB_CURVE)}
BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367],
                     [0.0389, -0.0685, 1.0296]])


def _xyz(xy) -> np.ndarray:
    x, y = xy
    return np.array([x / y, 1.0, (1 - x - y) / y])


def rgb_to_xyz(primaries) -> np.ndarray:
    """The 3x3 matrix from linear RGB to XYZ for these primaries and the D65 white."""
    m = np.stack([_xyz(p) for p in primaries], 1)
    return m * np.linalg.solve(m, _xyz(D65))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))  # ICC s15Fixed16Number


def _curve_tag(curve) -> bytes:
    if curve[0] == "gamma":
        return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(curve[1] * 256))
    # IEC 61966-2-1's curve as a parametric curve of function type 3
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        _s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))


def _profile(space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 display profile of ``space`` (b'RGB ' or b'GRAY') with these tags."""
    xyz = b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in D50_XYZ)
    name = b"nst_jax test profile\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 78
    tags = [(b"desc", desc), (b"wtpt", xyz), *tags, (b"cprt", b"text\0\0\0\0none\0")]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    header = (struct.pack(">I", offset + len(body)) + b"\0" * 4 + struct.pack(">I", 0x02100000)
              + b"mntr" + space + b"XYZ " + struct.pack(">6H", 2024, 1, 1, 0, 0, 0) + b"acsp"
              + b"\0" * 28 + b"".join(_s15(c) for c in D50_XYZ) + b"\0" * 48)
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def matrix_shaper_icc(primaries, curve) -> bytes:
    """An RGB profile: the colorants adapted from D65 to D50 (Bradford), as ICC asks."""
    cone_d65, cone_d50 = BRADFORD @ _xyz(D65), BRADFORD @ D50_XYZ
    adapt = np.linalg.inv(BRADFORD) @ np.diag(cone_d50 / cone_d65) @ BRADFORD
    colorants = adapt @ rgb_to_xyz(primaries)
    tags = [(name, b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in colorants[:, i]))
            for i, name in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
    tags += [(name, _curve_tag(curve)) for name in (b"rTRC", b"gTRC", b"bTRC")]
    return _profile(b"RGB ", tags)


def grey_icc(gamma: float) -> bytes:
    return _profile(b"GRAY", [(b"kTRC", _curve_tag(("gamma", gamma)))])


def _decode(v: np.ndarray, curve) -> np.ndarray:
    if curve[0] == "gamma":
        return v ** curve[1]
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _encode_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def expected_srgb(values: np.ndarray, primaries, curve) -> np.ndarray:
    """Colours in [0, 1] of a matrix/TRC space as sRGB, relative colorimetric (D65 to D65)."""
    to_srgb = np.linalg.solve(rgb_to_xyz(SRGB), rgb_to_xyz(primaries))
    return _encode_srgb(_decode(values, curve) @ to_srgb.T)


def in_gamut_colours(shape_hw=(12, 10), seed=0) -> np.ndarray:
    """Colours in [0.25, 0.75]: inside sRGB's gamut from Adobe RGB and Display P3 too,
    so the conversion there is exact, not clipped."""
    return np.random.default_rng(seed).uniform(0.25, 0.75, (*shape_hw, 3))


def _save(tmp_path, name: str, array: np.ndarray, icc: bytes | None = None, **kwargs):
    path = tmp_path / name
    Image.fromarray(array).save(path, **({"icc_profile": icc} if icc else {}), **kwargs)
    return path


def _save16(tmp_path, name: str, samples: np.ndarray, icc: bytes | None = None):
    """A 16-bit RGB PNG (our writer) or TIFF (tifffile) of uint16 ``samples``, tagged ``icc``."""
    path = tmp_path / name
    if name.endswith(".png"):
        with open(path, "wb") as f:
            image_writers.write_png16(f, samples, icc=icc)
    else:
        tifffile = pytest.importorskip("tifffile")
        tifffile.imwrite(path, samples, photometric="rgb", iccprofile=icc, compression="zlib")
    return path


def _one_line_error(excinfo, path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message, message
    return message


# ------------------------------------------------------------------- ICC inputs: 8 bits


@pytest.mark.parametrize("space", sorted(SPACES))
def test_a_tagged_input_is_converted_to_srgb(tmp_path, space):
    primaries, curve = SPACES[space]
    stored = np.round(in_gamut_colours() * 255).astype(np.uint8)
    path = _save(tmp_path, "tagged.png", stored, matrix_shaper_icc(primaries, curve))
    rgb = images.load_image(path)
    want = expected_srgb(stored / 255.0, primaries, curve)
    np.testing.assert_allclose(rgb, want, atol=1.0 / 255)  # LittleCMS, rounded to 8 bits
    naive = stored / np.float32(255)  # the numbers taken as sRGB: what happened before
    assert np.abs(rgb - naive).max() > 20 / 255


def test_a_tagged_jpeg_is_converted_too(tmp_path):
    path = _save(tmp_path, "photo.jpg", np.round(in_gamut_colours((16, 16)) * 255).astype(np.uint8),
                 matrix_shaper_icc(ADOBE_RGB, ADOBE_GAMMA), quality=95)
    with Image.open(path) as img:
        stored = np.asarray(img.convert("RGB")) / 255.0  # the decoded numbers, in Adobe RGB
    np.testing.assert_allclose(images.load_image(path), expected_srgb(stored, ADOBE_RGB, ADOBE_GAMMA),
                               atol=1.0 / 255)


def test_a_grey_profile_is_applied_to_8_and_16_bit_grey(tmp_path):
    levels = np.arange(0, 256, 5, dtype=np.uint8)[None]
    want = _encode_srgb((levels[0] / 255.0) ** 1.8)
    for name, pixels in (("grey.png", levels), ("grey16.png", levels.astype(np.uint16) * 257)):
        rgb = images.load_image(_save(tmp_path, name, pixels, grey_icc(1.8)))
        for c in range(3):  # LittleCMS's grey pipeline is off by up to 1.5/255 near black,
            # where sRGB's curve is steepest; a missing conversion is off by up to 14/255
            np.testing.assert_allclose(rgb[0, :, c], want, atol=2.0 / 255)
        assert np.abs(rgb[0, :, 0] - levels[0] / 255.0).max() > 10 / 255


def test_a_mask_is_read_through_its_profile(tmp_path):
    colour = np.array([100, 180, 60], np.uint8)
    path = _save(tmp_path, "mask.png", np.tile(colour, (16, 16, 1)),
                 matrix_shaper_icc(ADOBE_RGB, ADOBE_GAMMA))
    mask = images.load_mask(path, (16, 16))
    luma = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as load_mask weighs colours
    srgb = expected_srgb(colour / 255.0, ADOBE_RGB, ADOBE_GAMMA)
    np.testing.assert_allclose(mask, srgb @ luma, atol=1.0 / 255)
    assert abs(mask[0, 0] - colour / 255.0 @ luma) > 0.1  # not the numbers read as sRGB


@pytest.mark.parametrize("tag", ["untagged", "srgb-written-by-us", "srgb-v2-parametric"])
@pytest.mark.parametrize("bits", [8, 16])
def test_untagged_and_srgb_tagged_inputs_are_read_as_stored(tmp_path, tag, bits):
    icc = {"untagged": None, "srgb-written-by-us": images.srgb_icc(),
           "srgb-v2-parametric": matrix_shaper_icc(SRGB, SRGB_CURVE)}[tag]
    rng = np.random.default_rng(3)
    if bits == 8:
        stored = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
        path = _save(tmp_path, "in.png", stored, icc)
    else:
        stored = rng.integers(0, 65536, (9, 11, 3), dtype=np.uint16)
        path = _save16(tmp_path, "in.png", stored, icc)
    np.testing.assert_array_equal(images.load_image(path),
                                  stored.astype(np.float32) / np.float32(2**bits - 1))


# ------------------------------------------------------------------ ICC inputs: 16 bits


@pytest.mark.parametrize("name", ["tagged16.png", "tagged16.tif"])
def test_a_tagged_16_bit_input_is_converted_and_keeps_its_precision(tmp_path, name):
    primaries, curve = SPACES["adobe-rgb"]
    icc = matrix_shaper_icc(primaries, curve)
    stored = np.round(in_gamut_colours() * 65535).astype(np.uint16)
    rgb = images.load_image(_save16(tmp_path, name, stored, icc))
    np.testing.assert_allclose(rgb, expected_srgb(stored / 65535.0, primaries, curve), atol=1.0 / 255)
    # A smooth 16-bit ramp over 16/255 of the range stays smooth: thousands of levels and
    # increasing, not the 17 steps of an 8-bit conversion.
    t = np.linspace(0.4, 0.4 + 16 / 255, 2048)
    ramp = np.round(np.stack([t, 0.9 * t, 1.1 * t], -1)[None] * 65535).astype(np.uint16)
    converted = images.load_image(_save16(tmp_path, "ramp" + name[-4:], ramp, icc))[0]
    assert len(np.unique(converted[:, 1])) > 1000
    assert np.all(np.diff(converted[:, 1]) >= 0)
    np.testing.assert_allclose(converted, expected_srgb(ramp[0] / 65535.0, primaries, curve),
                               atol=1.0 / 255)


# --------------------------------------------------------------------- bad ICC profiles


def _bad_profiles():
    srgb = images.srgb_icc()
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    return {
        "garbage": ("rgb", b"not an ICC profile at all " * 8, "damaged"),
        "truncated": ("rgb", srgb[:200], "damaged"),
        "grey profile on RGB": ("rgb", grey_icc(2.2), "grey colours"),
        "RGB profile on grey": ("grey", matrix_shaper_icc(ADOBE_RGB, ADOBE_GAMMA), "RGB colours"),
        "RGB profile on 16-bit grey": ("grey16", matrix_shaper_icc(ADOBE_RGB, ADOBE_GAMMA),
                                       "RGB colours"),
        "Lab profile": ("rgb", lab, "Lab"),
    }


@pytest.mark.parametrize("case", sorted(_bad_profiles()))
def test_a_bad_profile_is_one_clear_error(tmp_path, case):
    kind, icc, words = _bad_profiles()[case]
    pixels = {"rgb": np.full((8, 8, 3), 100, np.uint8), "grey": np.full((8, 8), 100, np.uint8),
              "grey16": np.full((8, 8), 30000, np.uint16)}[kind]
    path = _save(tmp_path, "bad.png", pixels, icc)
    with pytest.raises(NSTError) as excinfo:
        images.load_image(path)
    assert words in _one_line_error(excinfo, path)


# ---------------------------------------------------------------- 16-bit files, round trip


def _random_rgb(shape_hw=(13, 17), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape_hw, 3), dtype=np.float32)


@pytest.mark.parametrize("name", ["out.png", "out.tif", "OUT.TIFF"])
@pytest.mark.parametrize("bits", [8, 16])
def test_round_trip_is_exact_at_the_bit_depth(tmp_path, name, bits):
    if name != "out.png":
        pytest.importorskip("tifffile")
    rgb = _random_rgb()
    path = images.save_image(tmp_path / name, rgb, bits=bits)
    assert sorted(os.listdir(tmp_path)) == [name]  # no temporary file left
    levels = np.float32(2**bits - 1)
    want = np.round(np.clip(rgb, 0, 1) * levels) / levels
    np.testing.assert_array_equal(images.load_image(path), want)
    with Image.open(path) as img:  # any reader sees an RGB image of that depth
        assert img.mode == "RGB" and img.size == (17, 13)
        assert img.format == ("PNG" if name.endswith(".png") else "TIFF")
        high_bytes = np.asarray(img)
    np.testing.assert_array_equal(high_bytes, images.quantize(rgb, bits) >> (bits - 8))
    if bits == 16 and name.endswith(".png"):
        assert path.read_bytes()[24:26] == b"\x10\x02"  # IHDR: bit depth 16, colour type RGB


def test_a_16_bit_png_made_elsewhere_keeps_its_16_bits(tmp_path):
    """RGBA, unfiltered, in several IDAT chunks: not the layout of our writer."""
    rgba = np.random.default_rng(5).integers(0, 65536, (6, 5, 4), dtype=np.uint16)
    raw = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgba)
    data = zlib.compress(raw)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
            ">I", zlib.crc32(kind + payload))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 6, 16, 6, 0, 0, 0))
           + chunk(b"IDAT", data[:10]) + chunk(b"IDAT", data[10:]) + chunk(b"IEND", b""))
    path = tmp_path / "rgba16.png"
    path.write_bytes(png)
    np.testing.assert_array_equal(images.load_image(path),
                                  rgba[..., :3].astype(np.float32) / np.float32(65535))


@pytest.mark.parametrize("layout", [{"byteorder": ">"}, {"tile": (16, 16)},
                                    {"compression": None, "rowsperstrip": 3}])
def test_16_bit_tiffs_of_other_layouts_keep_their_16_bits(tmp_path, layout):
    tifffile = pytest.importorskip("tifffile")
    samples = np.random.default_rng(6).integers(0, 65536, (20, 18, 3), dtype=np.uint16)
    path = tmp_path / "in.tif"
    tifffile.imwrite(path, samples, photometric="rgb", **{"compression": "zlib", **layout})
    np.testing.assert_array_equal(images.load_image(path),
                                  samples.astype(np.float32) / np.float32(65535))


def test_a_16_bit_tiff_is_turned_upright_by_its_orientation_tag(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    samples = np.random.default_rng(7).integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    path = tmp_path / "rotated.tif"
    # Orientation 6: the stored rows are the picture's columns (turn 90 degrees clockwise).
    tifffile.imwrite(path, samples, photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    np.testing.assert_array_equal(images.load_image(path),
                                  np.rot90(samples, -1).astype(np.float32) / np.float32(65535))


# ----------------------------------------------------------- sRGB profile out, metadata


@pytest.mark.parametrize("name", ["out.png", "out.tif"])
@pytest.mark.parametrize("bits", [8, 16])
def test_every_output_embeds_the_srgb_profile_and_is_reproducible(tmp_path, name, bits):
    if name.endswith(".tif"):
        pytest.importorskip("tifffile")
    path = images.save_image(tmp_path / name, _random_rgb(), bits=bits)
    with Image.open(path) as img:
        icc = img.info.get("icc_profile")
    assert icc == images.srgb_icc()
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    assert "sRGB" in ImageCms.getProfileDescription(profile)
    first = path.read_bytes()
    images.save_image(path, _random_rgb(), bits=bits)
    assert path.read_bytes() == first  # no clock in the file (LittleCMS stamps one)


def test_the_png_helper_embeds_it_too(tmp_path):  # the sweep's and figures' PNGs
    with Image.open(images.save_png(tmp_path / "a.png", _random_rgb())) as img:
        assert img.info["icc_profile"] == images.srgb_icc()


def test_metadata_survives_in_16_bit_png_and_tiff(tmp_path):
    metadata = {"Software": "nst_jax", "nst_jax:config": json.dumps({"alpha": 1e-3}) * 200,
                "note": "ünïcödé ✓ 風景", "latin": "café"}
    png = images.save_image(tmp_path / "out.png", _random_rgb(), metadata, bits=16)
    assert images.read_png_metadata(png) == metadata
    assert images.read_metadata(png) == metadata
    if HAVE_TIFFFILE:
        tif = images.save_image(tmp_path / "out.tif", _random_rgb(), metadata, bits=16)
        assert images.read_metadata(tif) == metadata


# ------------------------------------------------------------------- errors when saving


def test_output_suffixes(tmp_path):
    for name in ("a.png", "b.PNG", "c.tif", "d.tiff"):
        if name.endswith((".tif", ".tiff")) and not HAVE_TIFFFILE:
            continue
        assert images.check_output_path(tmp_path / name) == tmp_path / name
    for name in ("a.jpg", "a.webp", "a"):
        with pytest.raises(NSTError) as excinfo:
            images.check_output_path(tmp_path / name)
        assert ".png, .tif or .tiff" in _one_line_error(excinfo, tmp_path / name)
    with pytest.raises(NSTError, match=r"end in \.png"):
        images.save_png(tmp_path / "a.tif", _random_rgb())  # save_png stays PNG-only
    assert os.listdir(tmp_path) == []


def test_tiff_without_tifffile_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile -> ImportError
    for call in (lambda: images.check_output_path(tmp_path / "a.tif"),
                 lambda: images.save_image(tmp_path / "a.tif", _random_rgb(), bits=16)):
        with pytest.raises(NSTError) as excinfo:
            call()
        assert "pip install 'nst_jax[tiff]'" in _one_line_error(excinfo, tmp_path / "a.tif")
    assert os.listdir(tmp_path) == []


def test_a_too_old_tifffile_is_refused(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    monkeypatch.setattr(tifffile, "__version__", "2023.12.9")
    with pytest.raises(NSTError, match="too old"):
        images.check_output_path(tmp_path / "a.tif")


@pytest.mark.parametrize("name", ["out.png", "out.tif"])
@pytest.mark.parametrize("exception, expected", [(KeyboardInterrupt(), KeyboardInterrupt),
                                                 (OSError(28, "No space left on device"), NSTError)])
def test_a_failed_16_bit_write_leaves_the_old_file(tmp_path, monkeypatch, name, exception, expected):
    if name.endswith(".tif"):
        tifffile = pytest.importorskip("tifffile")
    path = images.save_image(tmp_path / name, np.zeros((4, 4, 3), np.float32), bits=16)
    old = path.read_bytes()

    def half_then_fail(f, *args, **kwargs):
        f.write(b"half a picture")
        raise exception

    if name.endswith(".tif"):
        monkeypatch.setattr(tifffile, "imwrite", half_then_fail)
    else:
        monkeypatch.setattr(image_writers, "write_png16", half_then_fail)
    with pytest.raises(expected):
        images.save_image(path, np.ones((4, 4, 3), np.float32), bits=16)
    assert os.listdir(tmp_path) == [name] and path.read_bytes() == old


def test_quantize():
    rgb = np.array([[[0.0, 0.5, 1.0], [-0.2, 1.3, 1 / 65535 * 0.49]]], np.float32)
    np.testing.assert_array_equal(images.quantize(rgb, 8), [[[0, 128, 255], [0, 255, 0]]])
    np.testing.assert_array_equal(images.to_uint16(rgb), [[[0, 32768, 65535], [0, 65535, 0]]])
    assert images.quantize(rgb, 16).dtype == np.uint16 and images.to_uint8(rgb).dtype == np.uint8
    eight = np.array([[[0, 1, 255]]], np.uint8)
    np.testing.assert_array_equal(images.quantize(eight, 16), [[[0, 257, 65535]]])  # exact
    np.testing.assert_array_equal(images.quantize(np.array([[[128, 129, 65535]]], np.uint16), 8),
                                  [[[0, 1, 255]]])  # rounded to the nearest
    with pytest.raises(ValueError, match="bits"):
        images.quantize(rgb, 12)
    with pytest.raises(NSTError, match="NaN"):
        images.quantize(np.full((2, 2, 3), np.nan, np.float32), 16)


# ------------------------------------------------------------------ library and command line


@pytest.fixture
def pictures():
    rng = np.random.default_rng(0)
    return rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)


def test_saved_16_bits_is_uint16_with_the_loss_of_those_pixels(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    job = stylize.prepare(content, style, tiny_params, Config(iterations=3, beta=1e4),
                          module=tiny_vgg)
    job.step(3)
    image16, total16, _ = job.saved(16)
    image8, total8, _ = job.saved()
    assert image16.dtype == np.uint16 and image8.dtype == np.uint8
    assert total16 == pytest.approx(job.terms(image16 / np.float32(65535))[0], rel=1e-6)
    assert total8 == pytest.approx(job.terms(image8 / np.float32(255))[0], rel=1e-6)
    np.testing.assert_array_equal(images.quantize(image16, 8), image8)


def test_snapshot_names_keep_the_output_format(tmp_path):
    assert stylize_cli.snapshot_path(tmp_path / "print.tif", 50) == tmp_path / "print_iter00050.tif"
    assert stylize_cli.snapshot_path(tmp_path / "a.png", 7) == tmp_path / "a_iter00007.png"


@pytest.fixture
def tiny_network(monkeypatch, tiny_vgg, tiny_params):
    """The command line runs on the tiny VGG: its weights are not read."""
    monkeypatch.setattr(stylize, "load_network", lambda config, content, styles, **kwargs:
                        stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"}))


def _run_cli(args, capsys):
    code = runner.launch("nst_jax.apps.cli.stylize", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_a_16_bit_png_whose_recorded_loss_is_of_its_pixels(
        image_files, tmp_path, capsys, tiny_network, tiny_vgg, tiny_params):
    content, style = image_files
    out = tmp_path / "print.png"
    code, stdout, err = _run_cli(["--content", content, "--style", style, "--output", out,
                                  "--size", "32", "--iterations", "3", "--beta", "1e4",
                                  "--bit-depth", "16"], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout and "(16-bit)" in err + stdout
    assert out.read_bytes()[24:26] == b"\x10\x02"  # a 48-bit RGB PNG
    meta = images.read_png_metadata(out)
    assert meta["nst_jax:bit_depth"] == "16"
    with Image.open(out) as img:
        assert img.info["icc_profile"] == images.srgb_icc()
    config = Config(content=str(content), style=str(style), size=32, iterations=3, beta=1e4)
    assert json.loads(meta["nst_jax:config"]) == json.loads(json.dumps(config.to_dict(),
                                                                       default=str))
    inputs = stylize.load_inputs(config)
    job = stylize.prepare(inputs.content, inputs.styles, tiny_params, config, module=tiny_vgg)
    pixels = images.load_image(out)
    recorded = float(meta["nst_jax:loss_total"])
    assert recorded == pytest.approx(job.terms(pixels)[0], rel=1e-6)
    # the same pixels rounded to 8 bits have another loss, so the check above can fail
    assert recorded != pytest.approx(job.terms(np.round(pixels * 255) / 255)[0], rel=1e-6)


@pytest.mark.parametrize("flags, words", [(["--output", "out.jpg"], ".png, .tif or .tiff"),
                                          (["--output", "out.png", "--bit-depth", "12"],
                                           "--bit-depth")])
def test_cli_refuses_a_bad_output_in_one_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                               flags, words):
    def no_work(*args, **kwargs):
        raise AssertionError("the inputs were read before the output was checked")

    monkeypatch.setattr(stylize, "load_inputs", no_work)
    monkeypatch.chdir(tmp_path)
    code, _, err = _run_cli(flags, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert os.listdir(tmp_path) == []
