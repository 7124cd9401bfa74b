"""Writing image files: the samples of an image (uint8 or uint16, RGB) as an 8- or
16-bit PNG or TIFF with an sRGB ICC profile and text metadata, atomically.

:func:`nst_jax.images.save_image` (a float image in [0, 1]: quantised, then written here)
is what most callers use; :mod:`nst_jax.images` reads the files back, metadata too, and
re-exports :func:`check_output_path`, :data:`OUTPUT_FORMATS` and :func:`srgb_icc` for its
callers. This module imports nothing of :mod:`nst_jax.images` (that one imports this),
so the arrow points one way.

**Why our own 16-bit PNG encoder** (:func:`write_png16`). No library at hand writes a
48-bit RGB PNG as this one does:

- Pillow (a dependency; 12.3.0 checked) has no 16-bit RGB mode: ``Image.fromarray`` of
  a ``uint16 (H, W, 3)`` array raises ``TypeError: Cannot handle this data type: (1, 1,
  3), <u2``, ``Image.new("RGB;16B", ...)`` is an unrecognised mode, and its 16-bit
  modes (``I;16``) are grey only (colour type 0).
- pypng (0.20220715.0, pure Python) writes 16-bit RGB, but filters every row with
  filter type 0 (None; hard-coded in ``Writer.write_packed``), so its files differ from
  ours byte for byte and are larger: a 1024x1024 16-bit gradient was 3,879,252 bytes
  against our Paeth-filtered 134,559; its ``Writer`` takes no ICC profile and no text
  chunks either, which we would splice in by hand. Not byte-identical, so not adopted.
- imageio (2.38) writes PNG through Pillow: the same ``TypeError``, or (``PNG-PIL``)
  8 bits with a "lossy conversion" warning; its FreeImage plugin needs a native library
  fetched at run time.

So :func:`write_png16` stays: about 60 lines of the PNG spec (IHDR, iCCP, tEXt/iTXt,
Paeth-filtered IDAT through ``zlib``, IEND), vectorised with NumPy. TIFF is tifffile
(the ``tiff`` extra: Pillow cannot write 16-bit RGB TIFF either).
"""
from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

from nst_jax.errors import NSTError, one_line
from nst_jax.files import atomic_write, check_writable_folder, name_too_long, shorten_path

PathLike = str | os.PathLike

# Output files: suffix -> format.
OUTPUT_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
# The first tifffile whose TiffWriter.write takes iccprofile (pyproject's 'tiff' extra).
_TIFFFILE_MIN = (2024, 5, 22)
# zlib level of our 16-bit PNG writer: Pillow's default for its 8-bit PNGs.
_PNG_COMPRESSION = 6
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A fixed creation date (that of IEC 61966-2-1, which defines sRGB) for the sRGB profile
# we embed: LittleCMS stamps the current time, which would make identical runs differ.
_SRGB_PROFILE_DATE = (1999, 10, 18, 0, 0, 0)


@functools.cache
def srgb_icc() -> bytes:
    """The sRGB ICC profile that every output embeds: LittleCMS's built-in sRGB (ICC v4,
    matrix/TRC, IEC 61966-2-1 primaries and tone curve), with a fixed creation date so
    that identical runs write identical files."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[24:36] = struct.pack(">6H", *_SRGB_PROFILE_DATE)  # the header's dateTimeNumber
    return bytes(data)


# ----------------------------------------------------------------------------- writing


def check_output_path(path: PathLike) -> pathlib.Path:
    """Check, before any long work, that an image can be written at ``path``; return it as a Path.

    Raises:
      NSTError: the name does not end in .png, .tif or .tiff (or TIFF is asked for
        and the tifffile package is missing), it is a directory, or its parent
        directory is missing, is a file, or refuses a new file (tried, not asked:
        ``os.access`` says yes to root everywhere).
    """
    path = output_name(path)
    if OUTPUT_FORMATS[path.suffix.lower()] == "TIFF":
        _tifffile(path)
    check_writable_folder(path.parent, path)
    return path


def output_name(path: PathLike, suffixes: Sequence[str] = tuple(OUTPUT_FORMATS)) -> pathlib.Path:
    """``path`` as a Path, if it is not a directory and ends in one of ``suffixes``."""
    path = pathlib.Path(path).expanduser()
    allowed = suffixes[0] if len(suffixes) == 1 else f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"
    problem = name_too_long(path)  # else is_dir() raises ENAMETOOLONG
    if problem is not None:
        raise NSTError(f"cannot write {shorten_path(path)}: {problem}; shorten it")
    if path.is_dir():
        raise NSTError(f"output path {path} is a directory; give a file name ending in {allowed}")
    if path.suffix.lower() not in suffixes:
        got = repr(path.suffix) if path.suffix else "no suffix"
        example = f"; e.g. {path.with_suffix('.png')}" if path.name else ""
        raise NSTError(f"output file {path} must end in {allowed} (got {got}){example}")
    return path


def _tifffile(path: pathlib.Path):
    """The tifffile module (TIFF output only: Pillow cannot write 16-bit RGB TIFF)."""
    install = "pip install 'nst_jax[tiff]'"
    try:
        import tifffile
    except ImportError:
        raise NSTError(f"cannot write {path}: TIFF output needs the tifffile package "
                       f"({install}), or write a .png") from None
    version = tuple(int(part) for part in re.findall(r"\d+", tifffile.__version__)[:3])
    if version < _TIFFFILE_MIN:
        raise NSTError(f"cannot write {path}: tifffile {tifffile.__version__} is too old to embed "
                       f"an ICC profile; upgrade it ({install} --upgrade)")
    return tifffile


def _text_chunks(metadata: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``metadata`` as checked (key, value) pairs; a bad one is a caller's bug (TypeError, ValueError)."""
    items = []
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"PNG metadata keys and values must be str, got {key!r}: {value!r}")
        # The PNG spec: a keyword is 1-79 Latin-1 characters.
        if not 1 <= len(key) <= 79 or not key.isprintable() or any(ord(ch) > 255 for ch in key):
            raise ValueError(f"PNG metadata key {key!r} must be 1-79 printable Latin-1 characters")
        items.append((key, value))
    return items


def _png_info(metadata: Mapping[str, str] | None) -> PngImagePlugin.PngInfo:
    """PNG text chunks for ``metadata``; Latin-1 values go in tEXt, others in UTF-8 iTXt."""
    info = PngImagePlugin.PngInfo()
    for key, value in _text_chunks(metadata):
        info.add_text(key, value)
    return info


def write_pixels(path: PathLike, pixels: np.ndarray, metadata: Mapping[str, str] | None = None
                 ) -> pathlib.Path:
    """Write the samples ``pixels`` as an 8- or 16-bit RGB PNG or TIFF with an sRGB ICC
    profile, atomically; return the path written.

    The format follows the suffix (.png, .tif, .tiff), the depth the dtype. The pixels go
    to a hidden temporary file in the destination directory, are fsynced, then renamed
    over ``path``: a reader never sees half a file, and an existing file survives any
    failure. On any exception (KeyboardInterrupt too) the temporary file is removed and
    the exception re-raised (OSError as NSTError).

    Which writer: 8-bit PNG, Pillow; 16-bit PNG, :func:`write_png16` (Pillow cannot
    write 48-bit PNG: the module docstring says why it is ours); TIFF, tifffile (Adobe
    Deflate with a predictor, which Pillow, libtiff, Photoshop and GIMP read).

    Args:
      path: destination, ending in .png, .tif or .tiff.
      pixels: uint8 or uint16 ``(H, W, 3)`` (:func:`nst_jax.images.quantize`).
      metadata: PNG text chunks (read back by :func:`nst_jax.images.read_png_metadata`);
        in a TIFF, a JSON object in its ImageDescription (read back by
        :func:`nst_jax.images.read_metadata`).
    """
    path = output_name(path)  # the folder was checked before the run (check_output_path)
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    pixels = np.asarray(pixels)
    if (pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 3 or pixels.shape[2] != 3
            or 0 in pixels.shape):
        raise ValueError(f"pixels must be uint8 or uint16 (H, W, 3), got {pixels.dtype} "
                         f"{pixels.shape}")
    text = _text_chunks(metadata)
    tifffile = _tifffile(path) if fmt == "TIFF" else None
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            if tifffile is not None:
                tifffile.imwrite(f, pixels, photometric="rgb", compression="zlib", predictor=True,
                                 iccprofile=srgb_icc(), metadata=None, software=False,
                                 description=json.dumps(dict(text)) if text else None)
            elif pixels.dtype == np.uint16:
                write_png16(f, pixels, text, icc=srgb_icc())
            else:
                Image.fromarray(pixels).save(f, format="PNG", pnginfo=_png_info(metadata),
                                             icc_profile=srgb_icc())
    except OSError as e:
        raise NSTError(f"cannot write {path}: {e.strerror or one_line(e)}") from e
    return path


# ------------------------------------------------------------------------- 16-bit PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data (PNG spec, section 5.3)."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_text_chunk(key: str, value: str) -> bytes:
    """tEXt when ``value`` is Latin-1, else uncompressed iTXt in UTF-8 (as Pillow writes)."""
    try:
        return _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # keyword, NUL, compression flag 0, method 0, empty language tag and translated
        # keyword (each NUL-terminated), then the text.
        return _png_chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


def _paeth_rows(rows: np.ndarray, above: np.ndarray, bpp: int) -> np.ndarray:
    """PNG filter type 4 (Paeth) of byte rows ``rows`` (R, N), ``above`` (R, N) being the
    row before each; ``bpp`` bytes per pixel. Returns the filtered bytes, uint8 (R, N)."""
    def left(x):
        return np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]

    a, b, c = (x.astype(np.int16) for x in (left(rows), above, left(above)))
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    return (rows.astype(np.int16) - predictor).astype(np.uint8)  # modulo 256


def write_png16(f: BinaryIO, pixels: np.ndarray, text: Sequence[tuple[str, str]] = (), *,
                icc: bytes | None = None) -> None:
    """Write a 48-bit RGB PNG (colour type 2, bit depth 16) to the binary file ``f``.

    Pillow has no 16-bit RGB mode, so it cannot write this. The chunks, in the order
    the PNG spec asks: IHDR; iCCP with ``icc`` (zlib-compressed, named "sRGB" when it is
    :func:`srgb_icc`); tEXt/iTXt for ``text`` (key, value) pairs; IDAT, every row Paeth-
    filtered (vectorised: encoding needs no sequential loop) and deflated in slices;
    IEND. Any PNG reader reads it (Pillow as 8-bit; :func:`nst_jax.images.load_image` at
    16 bits).

    Args:
      f: a file opened for binary writing.
      pixels: uint16 (H, W, 3).
      text: checked metadata pairs (see :func:`write_pixels`).
      icc: an ICC profile to embed, or None.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[2] != 3 or 0 in pixels.shape:
        raise ValueError(f"pixels must be uint16 (H, W, 3), got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    f.write(_PNG_SIGNATURE)
    f.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)))
    if icc is not None:
        name = b"sRGB" if icc == srgb_icc() else b"ICC profile"
        f.write(_png_chunk(b"iCCP", name + b"\0\0" + zlib.compress(icc)))
    f.writelines(_png_text_chunk(key, value) for key, value in text)
    rows = pixels.astype(">u2").reshape(height, width * 3).view(np.uint8)  # big-endian bytes
    step = max(1, (4 << 20) // rows.shape[1])  # about 4 MiB of rows per slice
    deflate = zlib.compressobj(_PNG_COMPRESSION)
    above = np.zeros((1, rows.shape[1]), np.uint8)
    for start in range(0, height, step):
        block = rows[start:start + step]
        filtered = _paeth_rows(block, np.concatenate([above, block[:-1]]), bpp=6)
        lines = np.concatenate([np.full((len(block), 1), 4, np.uint8), filtered], axis=1)
        data = deflate.compress(lines.tobytes())
        if data:
            f.write(_png_chunk(b"IDAT", data))
        above = block[-1:]
    f.write(_png_chunk(b"IDAT", deflate.flush()))
    f.write(_png_chunk(b"IEND", b""))
