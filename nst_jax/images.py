"""Images in memory and from files: decode, validate, colour conversion, resize, quantise.

Everything here works on NumPy arrays and Pillow images; nothing is traced by JAX.
An image in memory is always RGB ``float32`` in ``[0, 1]`` with shape ``(H, W, 3)``,
in sRGB: an input with an embedded ICC profile is converted to sRGB as it is read
(:func:`load_image`), and every output embeds an sRGB profile (:func:`save_image`:
8- or 16-bit PNG or TIFF). Every problem with a user's file raises :class:`NSTError`
with a one-line message that names the file.

Writing lives in :mod:`nst_jax.image_writers` (the file formats, the ICC profile, the
metadata, the atomic write, our 16-bit PNG encoder); :func:`save_image` and
:func:`save_png` here quantise a float image and hand it over. For the many callers that
name them here, :func:`~nst_jax.image_writers.check_output_path`,
:data:`~nst_jax.image_writers.OUTPUT_FORMATS` and
:func:`~nst_jax.image_writers.srgb_icc` are re-exported (``images.check_output_path``);
the writer imports nothing of this module.
"""
from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import pathlib
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from nst_jax.errors import NSTError, one_line
from nst_jax.files import name_too_long, shorten_path
# Writing is nst_jax.image_writers'; these names are re-exported for callers of this module.
from nst_jax.image_writers import (  # noqa: F401
    OUTPUT_FORMATS, check_output_path, output_name, srgb_icc, write_pixels)

# The smallest long side we accept: VGG's five 2x2 poolings need 2**4 = 16 px
# for conv5_x to have at least one pixel.
MIN_SIDE = 16
# The largest long side we accept by default; larger is almost surely a typo.
MAX_SIDE = 4096
# Gap, in px, between the pictures that `side_by_side` joins.
GAP = 4

# Modes with more than 8 bits per sample: Pillow's convert('RGB') would clip
# them to 255, so we scale them ourselves.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_FLOAT_MODES = frozenset({"F"})
# What Pillow raises for a damaged file, besides OSError.
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error)
PathLike = str | os.PathLike

# Pillow reads a 16-bit RGB(A) PNG or TIFF as 8-bit RGB(A) by unpacking the high byte
# of each sample with one of these raw modes; the other one unpacks the low byte.
_LOW_BYTE_RAWMODES = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B",
                      "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B"}
_NATIVE_ORDER = "L" if sys.byteorder == "little" else "B"  # what ';16N' means here

# The intent of the ICC conversion of inputs to sRGB. Perceptual, as ICC recommends for
# photographs: a profile with perceptual tables (CMYK press profiles, some camera and
# printer RGB profiles) then compresses its wider gamut smoothly into sRGB's instead
# of clipping it, and a matrix/TRC profile (Adobe RGB, Display P3, ProPhoto), which
# has no such tables, is converted relative colorimetrically by LittleCMS (white to
# white, in-gamut colours exact, out-of-gamut ones clipped).
INPUT_INTENT = ImageCms.Intent.PERCEPTUAL
# The Pillow mode in which LittleCMS reads each ICC colour space we convert from, and
# the Pillow modes of an 8-bit image that can be brought to it.
_PROFILE_MODES = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}
_MODES_FOR_PROFILE = {"RGB": frozenset({"RGB", "RGBA", "RGBX", "RGBa", "P", "PA"}),
                      "L": frozenset({"L", "LA", "La", "1", "P", "PA"}),
                      "CMYK": frozenset({"CMYK"})}
# Pixels per slice when converting 16-bit or float RGB, to bound the temporary arrays.
_DEEP_SLICE = 1 << 20
# The sample depths an image can be quantised to, and written in (8- or 16-bit files).
BIT_DEPTHS = (8, 16)


# ----------------------------------------------------------------------------- reading


def _check_is_file(path: pathlib.Path) -> None:
    """Raise NSTError unless ``path`` names an existing regular file."""
    problem = name_too_long(path)  # else exists() raises ENAMETOOLONG
    if problem is not None:
        raise NSTError(f"cannot read the image file {shorten_path(path)}: {problem}; "
                       f"shorten it")
    if not path.exists():
        if path.is_symlink():
            raise NSTError(f"image file {path} is a broken symbolic link; point it at an existing file")
        raise NSTError(f"image file {path} does not exist; check the path")
    if path.is_dir():
        raise NSTError(f"{path} is a directory, not an image file; give the path of an image inside it")
    if not path.is_file():  # a FIFO or device would make Pillow block or read garbage
        raise NSTError(f"{path} is not a regular file; give the path of an image file")


@contextlib.contextmanager
def _opened(path: pathlib.Path) -> Iterator[Image.Image]:
    """Open ``path`` with Pillow, turning every decoding problem into NSTError.

    A DecompressionBombWarning is an error here (only inside this block: the
    global warning filters and ``ImageFile.LOAD_TRUNCATED_IMAGES`` stay as they
    are, so a truncated file fails in ``load()``).
    """
    _check_is_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                yield img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow words its warning and its error with different limits (the error's is
        # twice the warning's); we refuse both, so name the one limit that applies.
        declared = re.search(r"\((\d+) pixels\)", str(e))
        size = f" declares {int(declared.group(1)):,} pixels, which" if declared else ""
        raise NSTError(
            f"refusing to read {path}: it{size} is more than {Image.MAX_IMAGE_PIXELS:,} pixels, "
            f"the limit that guards against decompression bombs; shrink it below that first"
        ) from e
    except UnidentifiedImageError as e:
        raise NSTError(
            f"{path} is not an image Pillow can read (unknown format, empty file or "
            f"corrupt header); convert it to PNG or JPEG"
        ) from e
    except PermissionError as e:
        raise NSTError(f"cannot read {path}: permission denied; check the file's permissions") from e
    except _DECODE_ERRORS as e:
        raise NSTError(
            f"cannot decode {path}: {one_line(e)} (the file is truncated or corrupt; "
            f"re-download or re-export it)"
        ) from e


def _read(path: pathlib.Path) -> tuple[Image.Image, np.ndarray | None]:
    """Fully decode ``path`` and apply its EXIF orientation; the file is closed after.

    Returns ``(image, deep)``: the upright Pillow image and, when the file holds more
    than 8 bits a sample, those samples as float32 in [0, 1], ``(H, W, C)`` with C = 1
    (16-bit, 32-bit or float grey) or 3 (16-bit RGB(A), alpha dropped); else None.
    """
    with _opened(path) as img:
        low_byte_tiles = _low_byte_tiles(img)  # before load(), which empties img.tile
        img.load()  # decode every byte now, so truncation is found here
        # exif_transpose returns a new, file-independent image even without EXIF.
        upright = ImageOps.exif_transpose(img)
    width, height = upright.size
    if width <= 0 or height <= 0:
        raise NSTError(f"{path} has a zero dimension ({width}x{height} px); it holds no pixels")
    if upright.mode in _SIXTEEN_BIT_MODES or upright.mode in _FLOAT_MODES:
        return upright, _wide_to_float(upright)
    if low_byte_tiles is not None:
        return upright, _sixteen_bit_rgb(path, upright, low_byte_tiles)
    return upright, None


def _low_byte_tiles(img: Image.Image) -> list | None:
    """For a 16-bit RGB(A) PNG or TIFF not yet loaded, its tiles with the raw mode that
    unpacks the low byte of each sample instead of the high one; None for other files.

    Pillow has no 16-bit RGB mode: it decodes such a file (through its own zlib and
    PNG unfiltering, or libtiff) to 8-bit RGB keeping the high bytes. Decoding it a
    second time with these tiles gives the low bytes, so every file Pillow reads keeps
    its 16 bits, whatever its filters, interlacing, compression or byte order.
    """
    if img.format not in ("PNG", "TIFF") or not img.tile:
        return None
    tiles = []
    for tile in img.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else (
            args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else None)
        if rawmode is None:
            return None
        if rawmode.endswith(";16N"):
            rawmode = rawmode[:-1] + _NATIVE_ORDER
        low = _LOW_BYTE_RAWMODES.get(rawmode)
        if low is None:
            return None
        low_args = low if isinstance(args, str) else (low, *args[1:])
        # Pillow >= 11 keeps tiles as the named tuple ImageFile._Tile, older ones as tuples.
        tiles.append(tile._replace(args=low_args) if hasattr(tile, "_replace")
                     else (*tile[:3], low_args))
    return tiles


def _sixteen_bit_rgb(path: pathlib.Path, high: Image.Image, low_byte_tiles: list) -> np.ndarray | None:
    """The 16-bit samples of ``path`` (see :func:`_low_byte_tiles`) as RGB float32 in
    [0, 1], ``(H, W, 3)``, oriented as ``high`` (its upright 8-bit decoding). None if
    the second decoding fails or disagrees, so the file is still read, in 8 bits."""
    try:
        with _opened(path) as img:
            img.tile = low_byte_tiles
            img.load()
            low = np.asarray(ImageOps.exif_transpose(img))[..., :3]
    except (NSTError, *_DECODE_ERRORS):
        return None
    high_bytes = np.asarray(high)[..., :3]
    if low.shape != high_bytes.shape or low.dtype != np.uint8:
        return None
    samples = (high_bytes.astype(np.uint16) << 8) | low
    return samples.astype(np.float32) / np.float32(65535.0)


def _wide_to_float(img: Image.Image) -> np.ndarray:
    """A 16-bit ('I;16*', 'I') or float ('F') grey image as float32 in [0, 1], (H, W, 1).

    16-bit and 'I' samples are divided by 65535. 'F' samples are taken as [0, 1]
    when none exceeds 1, else as [0, 255] (Pillow's own scale for 'F').
    """
    grey = np.asarray(img).astype(np.float32)
    if img.mode in _FLOAT_MODES:
        grey = np.nan_to_num(grey, nan=0.0, posinf=1.0, neginf=0.0)
        if grey.size and grey.max() > 1.0:
            grey = grey / 255.0
    else:
        grey = grey / 65535.0
    return np.clip(grey, 0.0, 1.0)[:, :, None]


def _to_rgb8(img: Image.Image, path: pathlib.Path) -> Image.Image:
    """An 8-bit-per-sample image of any mode as a Pillow 'RGB' image; alpha is dropped."""
    if img.mode == "RGB":
        return img
    try:
        if img.mode in ("P", "PA"):
            # Through RGBA so a palette's transparency is read, not warned about.
            img = img.convert("RGBA")
        return img.convert("RGB")
    except ValueError as e:
        raise NSTError(
            f"cannot convert {path} from colour mode {img.mode} to RGB ({one_line(e)}); "
            f"convert it to an RGB PNG or JPEG"
        ) from e


# ------------------------------------------------------------------------ colour profiles


@functools.cache
def _srgb_profile() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(io.BytesIO(srgb_icc()))


def _damaged_profile(path: pathlib.Path, error: BaseException) -> NSTError:
    return NSTError(
        f"the ICC colour profile embedded in {path} is damaged or unusable ({one_line(error)}); "
        f"re-export the image with a valid profile, or without one to have it read as sRGB")


def _converter(profile: ImageCms.ImageCmsProfile, mode: str, path: pathlib.Path,
               intent: ImageCms.Intent = INPUT_INTENT) -> Callable[[Image.Image], Image.Image]:
    """LittleCMS's conversion from ``profile`` (images in Pillow mode ``mode``) to 8-bit sRGB."""
    try:
        transform = ImageCms.buildTransform(profile, _srgb_profile(), mode, "RGB", intent)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        raise _damaged_profile(path, e) from e

    def convert(img: Image.Image) -> Image.Image:
        try:
            out = ImageCms.applyTransform(img, transform)
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
            raise _damaged_profile(path, e) from e
        assert out is not None  # None only with inPlace=True
        return out

    return convert


def _probe(mode: str) -> Image.Image:
    """Colours that tell whether a profile is sRGB: every grey level, and for RGB a 9^3 lattice."""
    ramp = np.arange(256, dtype=np.uint8)
    if mode == "L":
        return Image.fromarray(ramp[None, :])
    axis = np.round(np.linspace(0, 255, 9)).astype(np.uint8)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    return Image.fromarray(np.concatenate([lattice, np.repeat(ramp[:, None], 3, 1)])[None])


def _input_profile(img: Image.Image, path: pathlib.Path) -> tuple[ImageCms.ImageCmsProfile, str] | None:
    """The ICC profile embedded in ``img`` and the Pillow mode LittleCMS reads it in; None
    when there is none or it is sRGB (the pixels are then used exactly as stored).

    "sRGB" is tested, not read from the profile's name: a profile counts as sRGB when it
    maps every grey level and a 9^3 lattice of colours to themselves (relative
    colorimetric, within 1/255), as the common sRGB profiles do (the 1998 IEC 61966-2.1
    v2 profile, its v4 successors, LittleCMS's built-in one that outputs embed).

    Raises:
      NSTError: the profile cannot be parsed, or is for a colour space we do not convert
        from (only RGB, grey and CMYK).
    """
    data = img.info.get("icc_profile")
    if not data:
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(data))
        space = profile.profile.xcolor_space.strip()
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError, AttributeError) as e:
        raise _damaged_profile(path, e) from e
    mode = _PROFILE_MODES.get(space)
    if mode is None:
        raise NSTError(f"{path} has an ICC profile for {space or 'unknown'} colours, which cannot "
                       f"be converted to sRGB here (only RGB, grey and CMYK); export it as sRGB")
    if mode != "CMYK":
        probe = _probe(mode)
        got = np.asarray(_converter(profile, mode, path, ImageCms.Intent.RELATIVE_COLORIMETRIC)(probe))
        expected = np.asarray(probe.convert("RGB"))
        if np.abs(got.astype(np.int16) - expected).max() <= 1:
            return None
    return profile, mode


def _profile_mismatch(path: pathlib.Path, image_mode: str, mode: str) -> NSTError:
    """The error for an image whose pixels (Pillow mode ``image_mode``) do not fit its profile."""
    if image_mode in ("P", "PA"):
        kind = "palette"
    elif image_mode.startswith("RGB") or image_mode == "CMYK":
        kind = image_mode[:4].rstrip("AXa")
    elif image_mode in {"L", "LA", "La", "1"} | _SIXTEEN_BIT_MODES | _FLOAT_MODES:
        kind = "grey"
    else:
        kind = image_mode
    space = {"RGB": "RGB", "L": "grey", "CMYK": "CMYK"}[mode]
    return NSTError(f"{path} has {kind} pixels but its ICC profile is for {space} colours, so "
                    f"its colours are unknown; re-export it with a matching profile, or without one")


def _to_srgb8(img: Image.Image, profile: ImageCms.ImageCmsProfile, mode: str,
              path: pathlib.Path) -> Image.Image:
    """An 8-bit image with profile ``(profile, mode)`` as 8-bit sRGB; alpha is dropped."""
    if img.mode not in _MODES_FOR_PROFILE[mode]:
        raise _profile_mismatch(path, img.mode, mode)
    if mode == "RGB":
        source = _to_rgb8(img, path)
    else:
        source = img if img.mode == mode else img.convert(mode)
    return _converter(profile, mode, path)(source)


def _deep_to_srgb(values: np.ndarray, profile: ImageCms.ImageCmsProfile, mode: str,
                  path: pathlib.Path) -> np.ndarray:
    """16-bit or float samples ``(H, W, C)`` in [0, 1] with a profile, as sRGB float32
    ``(H, W, 3)``, without quantising them to 8 bits.

    Pillow's LittleCMS binding converts 8-bit images only. So each sample is converted
    at the 8-bit colours around it (the 2 grey levels, or the 8 corners of its 1/255
    RGB cube) and the results interpolated (linearly, or trilinearly): a continuous
    function of the samples, so smooth gradients stay smooth (no 8-bit steps), within
    about 1/255 of the exact conversion like an 8-bit input.
    """
    channels = values.shape[2]
    if (mode, channels) not in (("L", 1), ("RGB", 3)):
        raise _profile_mismatch(path, "L" if channels == 1 else "RGB", mode)
    convert = _converter(profile, mode, path)
    if mode == "L":  # all 256 levels, then a lookup
        levels = np.arange(256, dtype=np.float32)
        table = np.asarray(convert(Image.fromarray(levels.astype(np.uint8)[None])), np.float32)[0]
        x = values[:, :, 0] * 255.0
        return np.stack([np.interp(x, levels, table[:, c] / 255.0) for c in range(3)], -1
                        ).astype(np.float32)
    out = np.empty(values.shape, np.float32)
    rows = max(1, _DEEP_SLICE // values.shape[1])
    for start in range(0, values.shape[0], rows):
        x = np.clip(values[start:start + rows], 0.0, 1.0) * np.float32(255.0)
        base = np.minimum(x.astype(np.uint8), 254)  # the cube's lower corner, 0..254
        f = x - base
        total = np.zeros(x.shape, np.float32)
        for corner in itertools.product((0, 1), repeat=3):
            weight = np.prod(np.where(np.asarray(corner, bool), f, 1.0 - f), axis=2, keepdims=True)
            colours = base + np.asarray(corner, np.uint8)
            total += weight * np.asarray(convert(Image.fromarray(colours)), np.float32)
        out[start:start + rows] = total / np.float32(255.0)
    return np.clip(out, 0.0, 1.0)


def _scale_side(side: int, new: int, old: int) -> int:
    """``side * new / old`` rounded half up (exactly, in integers), at least 1."""
    return max(1, (2 * side * new + old) // (2 * old))


def scaled_shape(shape_hw: Sequence[int], long_side: int) -> tuple[int, int]:
    """The (H, W) that makes the longer of ``shape_hw`` equal ``long_side``.

    Keeps the aspect ratio, rounds half up, and never returns a side below 1.
    """
    height, width = (int(s) for s in shape_hw)
    long = max(height, width)
    return _scale_side(height, long_side, long), _scale_side(width, long_side, long)


def _is_int(value: object) -> bool:
    """True for Python and NumPy integers, but not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def load_image(path: PathLike, *, max_side: int | None = None) -> np.ndarray:
    """Read an image file as sRGB float32 in [0, 1], shape (H, W, 3).

    Accepts any mode Pillow reads (RGB, L, 1, P, RGBA, LA, CMYK, 16-bit, I, F, ...);
    alpha is dropped without compositing, and EXIF orientation is applied. 16-bit
    RGB(A) PNGs and TIFFs keep their 16 bits (Pillow alone reads them as 8-bit).

    An embedded ICC profile that is not sRGB (Adobe RGB, Display P3, ProPhoto, a
    grey or CMYK profile) is applied: the pixels are converted to sRGB by LittleCMS
    (Pillow's ImageCms) with the perceptual intent (:data:`INPUT_INTENT` says why).
    Untagged and sRGB-tagged files are read exactly as stored.

    Args:
      path: the image file.
      max_side: if given, resize (Lanczos) so that the long side is exactly this
        many px, keeping the aspect ratio; upscaling is allowed. 8-bit images are
        resized as 8-bit RGB, deeper ones in float32 so no precision is lost.

    Raises:
      NSTError: the file is missing, unreadable, not an image, truncated, a
        possible decompression bomb, or empty; or its ICC profile is damaged or does
        not fit its pixels.
    """
    path = pathlib.Path(path)
    if max_side is not None and not (_is_int(max_side) and max_side >= 1):
        raise ValueError(f"max_side must be a positive int or None, got {max_side!r}")
    img, deep = _read(path)
    tagged = _input_profile(img, path)
    size_hw = (img.height, img.width) if max_side is None else scaled_shape((img.height, img.width), max_side)
    if deep is not None:
        rgb = deep if tagged is None else _deep_to_srgb(deep, *tagged, path)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        return rgb if size_hw == rgb.shape[:2] else resize_to(rgb, size_hw)
    rgb8 = _to_rgb8(img, path) if tagged is None else _to_srgb8(img, *tagged, path)
    if size_hw != (rgb8.height, rgb8.width):
        rgb8 = rgb8.resize(size_hw[::-1], Image.Resampling.LANCZOS)
    return np.asarray(rgb8, dtype=np.float32) / np.float32(255.0)


def check_size(size: int, *, min_side: int = MIN_SIDE, max_side: int = MAX_SIDE) -> int:
    """Validate a requested long side in px and return it as a Python int.

    Raises:
      NSTError: ``size`` is not an int in ``[min_side, max_side]``.
    """
    allowed = f"the long side must be a whole number of px from {min_side} to {max_side}"
    if not _is_int(size):
        raise NSTError(f"image size {size!r} is not a whole number; {allowed}")
    if not min_side <= size <= max_side:
        hint = " (VGG's five poolings need at least 16)" if size < min_side else ""
        raise NSTError(f"image size {size} px is out of range; {allowed}{hint}")
    return int(size)


# ------------------------------------------------------------------------ array helpers


def _check_image_array(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    """``rgb`` as an ndarray of shape (H, W, C); a wrong shape is a caller's bug (ValueError)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"{name} must have shape (H, W, C) with H, W >= 1, got {rgb.shape}")
    return rgb


def quantize(rgb: np.ndarray, bits: int = 8) -> np.ndarray:
    """RGB in [0, 1], (H, W, 3) -> uint8 (``bits=8``) or uint16 (``bits=16``) (H, W, 3):
    clipped, then rounded to the nearest of the 2**bits levels. What a file of that
    depth holds; ``quantize(x, b) / (2**b - 1)`` is what reading it back gives.

    ``rgb`` may also be uint8 or uint16 (an image already quantised): it is converted
    exactly (x 257) or rounded (/ 257) to the other depth, or copied.

    Raises:
      NSTError: the image has NaN or infinite values (the optimisation diverged).
    """
    if bits not in BIT_DEPTHS:
        raise ValueError(f"bits must be one of {BIT_DEPTHS}, got {bits!r}")
    rgb = _check_image_array(rgb)
    if rgb.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (H, W, 3), got {rgb.shape}")
    dtype = np.uint8 if bits == 8 else np.uint16
    if rgb.dtype in (np.uint8, np.uint16):
        if rgb.dtype == dtype:
            return rgb.copy()
        return (rgb.astype(np.uint16) * 257 if bits == 16
                else ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8))
    bad = int(np.size(rgb) - np.count_nonzero(np.isfinite(rgb)))
    if bad:
        raise NSTError(
            f"the image has {bad} NaN or infinite values, so it cannot be saved; "
            f"the optimisation probably diverged (try a smaller learning rate or style weight)"
        )
    scale = np.float32(2**bits - 1)
    return np.round(np.clip(rgb.astype(np.float32), 0.0, 1.0) * scale).astype(dtype)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """:func:`quantize` to 8 bits: RGB float in [0, 1], (H, W, 3) -> uint8 (H, W, 3)."""
    return quantize(rgb, 8)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    """:func:`quantize` to 16 bits: RGB float in [0, 1], (H, W, 3) -> uint16 (H, W, 3)."""
    return quantize(rgb, 16)


def resize_to(
    rgb: np.ndarray, shape_hw: Sequence[int], *, resample: Image.Resampling = Image.Resampling.LANCZOS
) -> np.ndarray:
    """Resize a float image without quantising it.

    Args:
      rgb: float array in [0, 1], shape (H, W, C) (any C).
      shape_hw: the target (H', W'), each >= 1.
      resample: a Pillow filter; LANCZOS (default) or BICUBIC suit photographs.

    Returns:
      float32 array in [0, 1], shape (H', W', C): each channel resized as a
      32-bit float Pillow image ('F'), then clipped (Lanczos overshoots at edges).
    """
    rgb = _check_image_array(rgb)
    height, width = (int(s) for s in shape_hw)
    if height < 1 or width < 1:
        raise ValueError(f"shape_hw must be two sides >= 1, got {tuple(shape_hw)}")
    channels = []
    for c in range(rgb.shape[2]):
        channel = Image.fromarray(np.ascontiguousarray(rgb[:, :, c], dtype=np.float32))  # mode 'F'
        channels.append(np.asarray(channel.resize((width, height), resample)))
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32, copy=False)


def load_mask(path: PathLike, shape_hw: Sequence[int]) -> np.ndarray:
    """Read a region mask: greyscale float32 in [0, 1], ``(H, W)``, white = inside.

    Any image Pillow reads; a colour image counts by its luminance (ITU-R 601). It is
    resized to ``shape_hw`` bilinearly, so its edge stays soft rather than jagged.

    Raises:
      NSTError: as :func:`load_image`, or the mask is black everywhere (no region).
    """
    rgb = load_image(path)
    grey = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32)
    if grey.shape != tuple(shape_hw):
        grey = resize_to(grey[:, :, None], shape_hw, resample=Image.Resampling.BILINEAR)[:, :, 0]
    if not np.any(grey > 0):
        raise NSTError(f"the mask {path} is black everywhere: white marks the region, so it "
                       f"has none")
    return np.asarray(grey, np.float32)


def side_by_side(images: Sequence[np.ndarray], height: int, *, gap: int = GAP) -> np.ndarray:
    """Join images left to right at one height, with a white gap between them.

    Args:
      images: RGB float arrays in [0, 1], each (H_i, W_i, 3).
      height: the height of the result, px; each image keeps its aspect ratio.
      gap: width in px of the white strip between neighbours.

    Returns:
      float32 array in [0, 1], shape (height, sum W_i' + gap * (n - 1), 3).
    """
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if height < 1 or gap < 0:
        raise ValueError(f"height must be >= 1 and gap >= 0, got height={height}, gap={gap}")
    white = np.ones((height, gap, 3), np.float32)
    pieces: list[np.ndarray] = []
    for i, image in enumerate(images):
        image = _check_image_array(image, f"images[{i}]")
        width = _scale_side(image.shape[1], height, image.shape[0])
        if i:
            pieces.append(white)
        pieces.append(resize_to(image, (height, width)))
    return np.concatenate(pieces, axis=1)


# ----------------------------------------------------------------------------- writing


def save_image(path: PathLike, rgb: np.ndarray, metadata: Mapping[str, str] | None = None, *,
               bits: int = 8) -> pathlib.Path:
    """Write ``rgb`` as an 8- or 16-bit RGB PNG or TIFF with an sRGB ICC profile,
    atomically; return the path written. It is :func:`quantize` to ``bits``, then
    :func:`nst_jax.image_writers.write_pixels`, which says which writer takes which
    format (the suffix's) and how an old file survives any failure.

    :func:`load_image` reads every such file back at full depth:
    ``load_image(save_image(p, x, bits=b)) == quantize(x, b) / (2**b - 1)``.

    Args:
      path: destination, ending in .png, .tif or .tiff.
      rgb: float array in [0, 1], (H, W, 3) (or uint8 / uint16: see :func:`quantize`).
      metadata: PNG text chunks (read back by :func:`read_png_metadata`); in a TIFF,
        a JSON object in its ImageDescription (read back by :func:`read_metadata`).
      bits: 8 or 16 bits per sample.
    """
    path = output_name(path)  # the folder was checked before the run (check_output_path)
    pixels = quantize(rgb, bits)  # NaN is refused before any file is made
    return write_pixels(path, pixels, metadata)


def save_png(path: PathLike, rgb: np.ndarray, metadata: Mapping[str, str] | None = None, *,
             bits: int = 8) -> pathlib.Path:
    """:func:`save_image` for a path that must end in .png."""
    return save_image(output_name(path, (".png",)), rgb, metadata, bits=bits)


# ----------------------------------------------------------------------------- metadata


def read_png_metadata(path: PathLike) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file, as ``{key: value}``."""
    path = pathlib.Path(path)
    with _opened(path) as img:
        if img.format != "PNG":
            raise NSTError(f"{path} is a {img.format} file, not a PNG, so it has no PNG text metadata")
        text = img.text  # reads to the end of the file, so chunks after the pixels count too
        return {str(key): str(value) for key, value in text.items()}


def read_metadata(path: PathLike) -> dict[str, str]:
    """The metadata :func:`save_image` wrote: a PNG's text chunks, or the JSON object in
    a TIFF's ImageDescription (``{}`` when it has none, or it is not such an object)."""
    path = pathlib.Path(path)
    with _opened(path) as img:
        if img.format == "PNG":
            return {str(key): str(value) for key, value in img.text.items()}
        if img.format != "TIFF":
            raise NSTError(f"{path} is a {img.format} file, not a PNG or TIFF, so it has no "
                           f"metadata of ours")
        description = img.tag_v2.get(270)  # ImageDescription
    try:
        document = json.loads(description) if isinstance(description, str) else None
    except ValueError:
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(key): str(value) for key, value in document.items()}
