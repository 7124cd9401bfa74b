"""Image files in and out: decode, validate, resize, colour conversion, atomic save.

Everything here works on NumPy arrays and Pillow images; nothing is traced by JAX.
An image in memory is always RGB ``float32`` in ``[0, 1]`` with shape ``(H, W, 3)``.
Every problem with a user's file raises :class:`NSTError` with a one-line message
that names the file.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import re
import struct
import warnings
import zlib
from typing import Iterator, Mapping, Sequence

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from nst_jax.errors import NSTError, one_line
from nst_jax.files import atomic_write, check_writable_folder

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



# ----------------------------------------------------------------------------- reading


def _check_is_file(path: pathlib.Path) -> None:
    """Raise NSTError unless ``path`` names an existing regular file."""
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


def _read(path: pathlib.Path) -> Image.Image:
    """Fully decode ``path`` and apply its EXIF orientation; the file is closed after."""
    with _opened(path) as img:
        img.load()  # decode every byte now, so truncation is found here
        # exif_transpose returns a new, file-independent image even without EXIF.
        upright = ImageOps.exif_transpose(img)
    width, height = upright.size
    if width <= 0 or height <= 0:
        raise NSTError(f"{path} has a zero dimension ({width}x{height} px); it holds no pixels")
    return upright


def _wide_to_float(img: Image.Image) -> np.ndarray:
    """A 16-bit ('I;16*', 'I') or float ('F') grey image as RGB float32 in [0, 1], (H, W, 3).

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
    grey = np.clip(grey, 0.0, 1.0)
    return np.repeat(grey[:, :, None], 3, axis=2)


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
    """Read an image file as RGB float32 in [0, 1], shape (H, W, 3).

    Accepts any mode Pillow reads (RGB, L, 1, P, RGBA, LA, CMYK, 16-bit, I, F, ...);
    alpha is dropped without compositing, and EXIF orientation is applied.

    Args:
      path: the image file.
      max_side: if given, resize (Lanczos) so that the long side is exactly this
        many px, keeping the aspect ratio; upscaling is allowed. 8-bit images are
        resized as 8-bit RGB, deeper ones in float32 so no precision is lost.

    Raises:
      NSTError: the file is missing, unreadable, not an image, truncated, a
        possible decompression bomb, or empty.
    """
    path = pathlib.Path(path)
    if max_side is not None and not (_is_int(max_side) and max_side >= 1):
        raise ValueError(f"max_side must be a positive int or None, got {max_side!r}")
    img = _read(path)
    size_hw = (img.height, img.width) if max_side is None else scaled_shape((img.height, img.width), max_side)
    if img.mode in _SIXTEEN_BIT_MODES or img.mode in _FLOAT_MODES:
        rgb = _wide_to_float(img)
        return rgb if size_hw == rgb.shape[:2] else resize_to(rgb, size_hw)
    rgb8 = _to_rgb8(img, path)
    if size_hw != (rgb8.height, rgb8.width):
        rgb8 = rgb8.resize(size_hw[::-1], Image.Resampling.LANCZOS)
    return np.asarray(rgb8, dtype=np.float32) / np.float32(255.0)


def read_png_metadata(path: PathLike) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file, as ``{key: value}``."""
    path = pathlib.Path(path)
    with _opened(path) as img:
        if img.format != "PNG":
            raise NSTError(f"{path} is a {img.format} file, not a PNG, so it has no PNG text metadata")
        text = img.text  # reads to the end of the file, so chunks after the pixels count too
        return {str(key): str(value) for key, value in text.items()}


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


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB float in [0, 1], (H, W, 3) -> uint8 (H, W, 3): clipped, then rounded to nearest.

    Raises:
      NSTError: the image has NaN or infinite values (the optimisation diverged).
    """
    rgb = _check_image_array(rgb)
    if rgb.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (H, W, 3), got {rgb.shape}")
    if rgb.dtype == np.uint8:
        return rgb.copy()
    bad = int(np.size(rgb) - np.count_nonzero(np.isfinite(rgb)))
    if bad:
        raise NSTError(
            f"the image has {bad} NaN or infinite values, so it cannot be saved; "
            f"the optimisation probably diverged (try a smaller learning rate or style weight)"
        )
    return np.round(np.clip(rgb.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


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


def check_output_path(path: PathLike) -> pathlib.Path:
    """Check, before any long work, that a PNG can be written at ``path``; return it as a Path.

    Raises:
      NSTError: the name does not end in .png, it is a directory, or its parent
        directory is missing, is a file, or refuses a new file (tried, not
        asked: ``os.access`` says yes to root everywhere).
    """
    path = _png_name(path)
    check_writable_folder(path.parent, path)
    return path


def _png_name(path: PathLike) -> pathlib.Path:
    path = pathlib.Path(path).expanduser()
    if path.is_dir():
        raise NSTError(f"output path {path} is a directory; give a file name ending in .png")
    if path.suffix.lower() != ".png":
        got = repr(path.suffix) if path.suffix else "no suffix"
        example = f"; e.g. {path.with_suffix('.png')}" if path.name else ""
        raise NSTError(f"output file {path} must end in .png (got {got}){example}")
    return path


def _png_info(metadata: Mapping[str, str] | None) -> PngImagePlugin.PngInfo:
    """PNG text chunks for ``metadata``; Latin-1 values go in tEXt, others in UTF-8 iTXt."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"PNG metadata keys and values must be str, got {key!r}: {value!r}")
        # The PNG spec: a keyword is 1-79 Latin-1 characters.
        if not 1 <= len(key) <= 79 or not key.isprintable() or any(ord(ch) > 255 for ch in key):
            raise ValueError(f"PNG metadata key {key!r} must be 1-79 printable Latin-1 characters")
        info.add_text(key, value)
    return info


def save_png(path: PathLike, rgb: np.ndarray, metadata: Mapping[str, str] | None = None) -> pathlib.Path:
    """Write ``rgb`` as an 8-bit RGB PNG, atomically; return the path written.

    The pixels go to a hidden temporary file in the destination directory, are
    fsynced, then renamed over ``path``: a reader never sees half a file, and an
    existing file survives any failure. On any exception (KeyboardInterrupt too)
    the temporary file is removed and the exception re-raised (OSError as NSTError).

    Args:
      path: destination, ending in .png.
      rgb: float array in [0, 1], (H, W, 3) (or uint8).
      metadata: stored as PNG text chunks, read back by :func:`read_png_metadata`.
    """
    path = _png_name(path)  # the folder was checked before the run (check_output_path)
    image = Image.fromarray(to_uint8(rgb))
    info = _png_info(metadata)
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
    except OSError as e:
        raise NSTError(f"cannot write {path}: {e.strerror or one_line(e)}") from e
    return path
