"""Reading and writing video: a clip's frames in, the stylised frames out (with the
source's audio), or a folder of PNG frames.

A frame is RGB ``float32`` in ``[0, 1]``, ``(H, W, 3)``, as everywhere in nst_jax.
:func:`read` takes a video file or a folder of frame images and returns a :class:`Clip`
(part of it: ``start``, ``duration``; fewer frames: ``fps``, ``every``; smaller:
``long_side``). :func:`write_video` writes H.264 (MP4, MOV or MKV, atomically) and can
carry over the audio of the source; :func:`write_frames` writes numbered PNGs. Every
problem with the user's files or values raises :class:`NSTError` with one line.

**Why PyAV** (the ``video`` extra, like OpenCV for :mod:`nst_jax.flow`). Its wheels
bundle FFmpeg's libraries, libx264 and the AAC encoder included, so no system FFmpeg is
needed, and it gives us FFmpeg's objects in-process: packets with their timestamps
(frame times and counts without decoding; audio copied packet by packet), frames with
their colour tags and display rotation. imageio-ffmpeg runs an ``ffmpeg`` executable
and pipes raw frames through it: reading yields no frame timestamps, and its writer
takes an audio file only whole (``audio_path``), with no place in its command line for
the cut from ``start`` for ``duration`` that a part of a clip needs. OpenCV's
``VideoWriter`` writes no audio at all. PyAV is imported only when a video is read or
written, so the library imports without it.
"""
from __future__ import annotations

import bisect
import contextlib
import math
import numbers
import os
import pathlib
import re
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from PIL import Image

from nst_jax import images
from nst_jax.errors import NSTError, one_line
from nst_jax.files import atomic_write, check_writable_folder, name_too_long, shorten_path

# Suffixes of the video files the tools offer to read (read() tries any file with PyAV).
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif")
# Suffixes of the frame images in a folder that read() takes as a clip.
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# What write_video writes: suffix -> FFmpeg muxer (None: a GIF, written by Pillow).
WRITE_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".gif": None}

_INSTALL = "pip install 'nst_jax[video]'"
# Seconds: timestamps closer than this are the same instant (they are exact fractions in
# the file, but float seconds here), so a frame at 0.4999999 s counts as at 0.5 s.
_EPS = 1e-6
# An fps within this fraction of the source's rate keeps every frame: resampling 29.97 to
# 30000/1001 fps would drop one frame in a thousand for nothing.
_RATE_TOLERANCE = 1e-3
# Seconds of fade-in and fade-out where write_video cuts the source's audio.
_FADE = 0.005
# The pixel format H.264 players all decode; it halves chroma, so sides must be even.
_PIX_FMT = "yuv420p"


class Clip(NamedTuple):
    """Frames read by :func:`read`.

    Attributes:
      frames: RGB float32 in [0, 1], all the same ``(H, W, 3)``.
      fps: frames per second of ``frames`` (after ``fps`` and ``every``).
      times: each frame's time in seconds in the source (its presentation timestamp,
        as the file stores it; a folder's frame ``i`` is at ``i / folder_fps``).
      source: the path read, as given.
      has_audio: whether the source has an audio stream (a folder never has).
    """

    frames: list[np.ndarray]
    fps: float
    times: list[float]
    source: str
    has_audio: bool


def frame_name(index: int) -> str:
    """The file name of frame ``index`` in :func:`write_frames`: ``frame_00001.png`` for 1."""
    if not _is_int(index) or index < 0:
        raise ValueError(f"index must be an int >= 0, got {index!r}")
    return f"frame_{index:05d}.png"


# ----------------------------------------------------------------------------- checks


def _av(doing: str):
    """The ``av`` module (PyAV), or NSTError saying how to install it."""
    try:
        import av
    except ImportError:
        raise NSTError(f"{doing} video needs PyAV: {_INSTALL}") from None
    return av


def _is_int(value: object) -> bool:
    """True for Python and NumPy integers, but not for bools."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _number(name: str, value: object, *, zero: bool = False, integer: bool = False) -> float | int:
    """``value`` as a float (an int if ``integer``), if it is a finite number above 0 (or
    0 itself, if ``zero``); else NSTError naming ``name``."""
    kind = "a whole number" if integer else "a number"
    good = _is_int(value) if integer else isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not good or not math.isfinite(value) or not (value >= 0 if zero else value > 0):
        raise NSTError(f"{name} must be {kind} {'at least' if zero else 'above'} 0, got {value!r}")
    return int(value) if integer else float(value)


def _check_input(path: pathlib.Path, what: str = "video") -> None:
    """NSTError unless ``path`` is an existing regular file or folder; ``what`` it should be."""
    problem = name_too_long(path)  # else exists() raises ENAMETOOLONG
    if problem is not None:
        raise NSTError(f"cannot read {shorten_path(path)}: {problem}; shorten it")
    if not path.exists():
        if path.is_symlink():
            raise NSTError(f"{path} is a broken symbolic link; point it at an existing file")
        raise NSTError(f"{what} {path} does not exist; check the path")
    if not (path.is_file() or path.is_dir()):  # a FIFO or device would block or read garbage
        raise NSTError(f"{path} is not a regular file; give a {what} file")


def _av_reason(error: BaseException) -> str:
    """An FFmpeg error's reason without the path it carries (which may be a temporary)."""
    return getattr(error, "strerror", None) or one_line(error)


# ----------------------------------------------------------------------------- selection


def _select(times: Sequence[float], rate: float, start: float, duration: float | None,
            fps: float | None, every: int) -> tuple[list[int], float]:
    """Which frames to keep, and at what rate they follow each other.

    ``times`` are the source's frame times in seconds, sorted; ``rate`` its frame rate.
    The frames in ``[start, start + duration)`` are taken; with ``fps`` below ``rate``,
    for each output time ``t0 + k / fps`` (``t0`` the first frame taken, while inside the
    span those frames cover) the nearest source frame (the earlier on a tie); then
    every ``every``-th of those. Returns ``(indices into times, rate of the result)``;
    the indices may be empty.
    """
    end = math.inf if duration is None else start + duration
    lo = bisect.bisect_left(times, start - _EPS)
    hi = bisect.bisect_left(times, end - _EPS)
    picked = list(range(lo, hi))
    out_rate = rate
    if picked and fps is not None and fps < rate * (1.0 - _RATE_TOLERANCE):
        t0, stop = times[lo], min(end, times[hi - 1] + 1.0 / rate)
        picked = []
        k = 0
        while (target := t0 + k / fps) < stop - _EPS:
            j = bisect.bisect_left(times, target, lo, hi)
            if j == hi or (j > lo and target - times[j - 1] <= times[j] - target + _EPS):
                j -= 1
            picked.append(j)
            k += 1
        out_rate = fps
    return picked[::every], out_rate / every


def _too_many(count: int, limit: int, about: bool = False) -> NSTError:
    return NSTError(f"the clip has {'about ' if about else ''}{count} frames, more than the limit "
                    f"{limit}; use --duration or --every")


def _nothing_selected(path: pathlib.Path, start: float, duration: float | None,
                      length: float) -> NSTError:
    """The error for a selection with no frame: ``start`` past the end, or a gap too short."""
    if start >= length - _EPS:
        return NSTError(f"start {start:g} s is beyond the end of {path} ({length:.3f} s long); "
                        f"give an earlier start")
    if duration is None:  # after the last frame's time, before its end
        return NSTError(f"no frame of {path} begins at or after {start:g} s ({length:.3f} s "
                        f"long); give an earlier start")
    return NSTError(f"no frame of {path} lies between {start:g} s and {start + duration:g} s; "
                    f"give a longer duration")


# ----------------------------------------------------------------------------- reading


def read(path: str | os.PathLike, *, long_side: int | None = None, fps: float | None = None,
         start: float = 0.0, duration: float | None = None, every: int = 1,
         max_frames: int | None = None, folder_fps: float = 24.0) -> Clip:
    """Read a video file, or a folder of frame images, as a :class:`Clip`.

    A video is decoded with PyAV (any format FFmpeg reads; :data:`VIDEO_SUFFIXES` are
    the usual ones), turned upright by its display rotation, and converted to RGB with
    the matrix its colour tags name. Sizes are kept as they are (odd ones too). A folder
    holds images (:data:`FRAME_SUFFIXES`, hidden files skipped) taken in natural order
    of their names (``frame2`` before ``frame10``), ``folder_fps`` a second, each read
    by :func:`nst_jax.images.load_image`; those read must all have one size.

    Only the frames selected are decoded into RGB. For a video the frames' timestamps
    are first read from the packets, without decoding, so the count is exact before
    any decoding (and a container that states its length is checked even before that).

    Args:
      path: a video file, or a folder of frame images.
      long_side: resize each frame so that its long side is this many px, keeping the
        aspect ratio (Lanczos, as ``--size`` resizes an image); None keeps the size.
      fps: resample to this rate by taking, for each output time, the nearest source
        frame. A rate at or above the source's (within 0.1 %) keeps every source frame
        and the source's rate (no frame is repeated to reach a higher rate):
        ``Clip.fps`` says which rate applies.
      start: the first time taken, seconds in the source.
      duration: how many seconds from ``start`` (frames in ``[start, start +
        duration)``); None: to the end.
      every: keep every ``every``-th frame of those (``Clip.fps`` is divided by it).
      max_frames: refuse a selection of more frames than this.
      folder_fps: the frame rate of a folder of images.

    Raises:
      NSTError: a missing path, a file that is not a video, a video without a video
        stream, ``start`` beyond the end, no frame selected, more than ``max_frames``,
        a value that is not a positive number (``start``: not negative), frames of a
        folder that differ in size, or PyAV missing.
    """
    given = path
    path = pathlib.Path(path).expanduser()
    if long_side is not None:
        long_side = _number("long_side", long_side, integer=True)
    if fps is not None:
        fps = _number("fps", fps)
    start = _number("start", start, zero=True)
    if duration is not None:
        duration = _number("duration", duration)
    every = _number("every", every, integer=True)
    if max_frames is not None:
        max_frames = _number("max_frames", max_frames, integer=True)
    folder_fps = _number("folder_fps", folder_fps)
    _check_input(path)
    if path.is_dir():
        return _read_folder(path, str(given), long_side=long_side, fps=fps, start=start,
                            duration=duration, every=every, max_frames=max_frames,
                            folder_fps=folder_fps)
    if path.suffix.lower() in FRAME_SUFFIXES:
        raise NSTError(f"{path} is an image, not a video; give a video file or a folder of frames")
    return _read_video(path, str(given), long_side=long_side, fps=fps, start=start,
                       duration=duration, every=every, max_frames=max_frames)


def _natural_key(name: str) -> tuple:
    """Sort key that orders the numbers in names by value: ``frame2`` before ``frame10``.

    ``re.split`` with a group alternates text and digits, so equal positions always
    compare like with like; the name itself breaks ties (``f01`` and ``f1``).
    """
    parts = re.split(r"(\d+)", name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _read_folder(folder: pathlib.Path, source: str, *, long_side, fps, start, duration, every,
                 max_frames, folder_fps) -> Clip:
    try:
        files = sorted((p for p in folder.iterdir()
                        if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith(".")
                        and p.is_file()), key=lambda p: _natural_key(p.name))
    except OSError as e:
        raise NSTError(f"cannot list the folder {folder}: {e.strerror or one_line(e)}") from None
    if not files:
        raise NSTError(f"the folder {folder} holds no frame images "
                       f"({', '.join(FRAME_SUFFIXES)}); give a folder of frames or a video")
    times = [i / folder_fps for i in range(len(files))]
    picked, rate = _select(times, folder_fps, start, duration, fps, every)
    if not picked:
        raise _nothing_selected(folder, start, duration, len(files) / folder_fps)
    if max_frames is not None and len(picked) > max_frames:
        raise _too_many(len(picked), max_frames)
    loaded: dict[int, np.ndarray] = {}
    first: pathlib.Path | None = None
    for i in picked:
        if i in loaded:
            continue
        rgb = images.load_image(files[i])
        if first is None:
            first, shape = files[i], rgb.shape
        elif rgb.shape != shape:
            raise NSTError(f"frame {files[i].name} is {rgb.shape[1]}x{rgb.shape[0]} px but "
                           f"{first.name} is {shape[1]}x{shape[0]}; the frames of {folder} "
                           f"must all have one size")
        if long_side is not None:
            size_hw = images.scaled_shape(rgb.shape[:2], long_side)
            if size_hw != rgb.shape[:2]:
                rgb = images.resize_to(rgb, size_hw)
        loaded[i] = rgb
    return Clip([loaded[i] for i in picked], rate, [times[i] for i in picked], source, False)


@contextlib.contextmanager
def _opened(av, path: pathlib.Path) -> Iterator:
    """``av.open(path)`` for reading, its errors as NSTError naming ``path``."""
    try:
        container = av.open(str(path), "r")
    except PermissionError:
        raise NSTError(f"cannot read {path}: permission denied; check the file's permissions") from None
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise NSTError(f"{path} is not a video PyAV can read ({_av_reason(e)}); convert it to "
                       f"MP4 (H.264)") from None
    with container:
        yield container


def _video_stream(container, path: pathlib.Path):
    """The first video stream that is not a still picture (an audio file's cover art)."""
    import av
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise NSTError(f"{path} has no video stream; give a video file or a folder of frames")


def _stream_rate(stream, times: Sequence[float]) -> float:
    """The frame rate of ``stream``: its average rate, else guessed, else from ``times``."""
    for rate in (stream.average_rate, stream.guessed_rate):
        if rate and rate > 0:
            return float(rate)
    if len(times) > 1 and times[-1] > times[0]:
        return (len(times) - 1) / (times[-1] - times[0])
    return 24.0  # a single frame: its rate only matters for the end of a selection


def _stated_length(container, stream) -> tuple[float, float] | None:
    """``(first time, seconds)`` of ``stream`` as the container states them, or None."""
    tb = stream.time_base
    first = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if stream.duration and tb:
        return first, float(stream.duration * tb)
    if container.duration:
        return first, container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_stated_count(stated: tuple[float, float] | None, rate: float, start, duration, fps,
                        every, max_frames) -> None:
    """Refuse at once a clip whose stated length shows it clearly has over ``max_frames``."""
    if max_frames is None or stated is None:
        return
    first, length = stated
    end = first + length if duration is None else min(first + length, start + duration)
    out_rate = rate if fps is None or fps >= rate * (1 - _RATE_TOLERANCE) else fps
    count = math.ceil((end - max(start, first)) * out_rate / every)
    if count > max_frames * 1.02 + 2:  # an estimate: refuse only when clearly over
        raise _too_many(count, max_frames, about=True)


def _seek(av, container, stream, start: float) -> bool:
    """Seek to the keyframe at or before ``start``, if it is past the beginning; whether it did."""
    tb = stream.time_base
    first = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
    if not tb or start <= first + _EPS:
        return False
    try:
        container.seek(math.floor((start - _EPS) / tb), stream=stream, backward=True)
    except av.error.FFmpegError:
        return False  # not seekable: read from the beginning instead
    return True


class _Scan(NamedTuple):
    """What a video's packets tell without decoding (:func:`_scan`)."""

    pts: list[int]  # timestamps of the frames met, sorted, in the stream's time base
    times: list[float]  # the same in seconds
    rate: float  # the stream's frame rate
    seeked: bool  # whether the scan began at a seek point (decoding must begin there too)
    end: float  # seconds: when the last frame met ends


def _scan(av, path: pathlib.Path, start: float, duration: float | None, *,
          seek: bool = True) -> _Scan:
    """The video frames' timestamps from (the keyframe before) ``start`` to the end of the
    window ``[start, start + duration)``, read from the packets: exact, and fast."""
    end = math.inf if duration is None else start + duration
    with _opened(av, path) as container:
        stream = _video_stream(container, path)
        tb = stream.time_base or Fraction(1, 1000)
        seeked = seek and _seek(av, container, stream, start)
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is None:
                    continue  # the empty packet that ends the stream
                pts.append(stamp)
                # Packets come in decoding order: once one's dts is past the end, so is
                # every later one's pts (pts >= dts, and dts only grows).
                if packet.dts is not None and float(packet.dts * tb) > end + _EPS:
                    break
        except av.error.FFmpegError as e:
            raise NSTError(f"cannot read {path}: {_av_reason(e)} (the file is truncated or "
                           f"corrupt; re-encode it)") from None
        pts.sort()
        times = [float(p * tb) for p in pts]
        rate = _stream_rate(stream, times)
    if seeked and (not times or times[0] > start + _EPS):
        # The demuxer landed after `start` (or nowhere): do without seeking.
        return _scan(av, path, start, duration, seek=False)
    return _Scan(pts, times, rate, seeked, times[-1] + 1.0 / rate if times else 0.0)


def _read_video(path: pathlib.Path, source: str, *, long_side, fps, start, duration, every,
                max_frames) -> Clip:
    av = _av("reading")
    with _opened(av, path) as container:
        stream = _video_stream(container, path)
        has_audio = bool(container.streams.audio)
        stated = _stated_length(container, stream)
        _check_stated_count(stated, _stream_rate(stream, ()), start, duration, fps, every,
                            max_frames)
    scan = _scan(av, path, start, duration)
    picked, out_rate = _select(scan.times, scan.rate, start, duration, fps, every)
    if not picked:
        length = max(scan.end, sum(stated) if stated else 0.0)
        raise _nothing_selected(path, start, duration, length)
    if max_frames is not None and len(picked) > max_frames:
        raise _too_many(len(picked), max_frames)
    wanted: dict[int, list[int]] = {}  # pts -> positions in the clip
    for position, i in enumerate(picked):
        wanted.setdefault(scan.pts[i], []).append(position)
    frames: list[np.ndarray | None] = [None] * len(picked)
    converted = 0
    with _opened(av, path) as container:
        stream = _video_stream(container, path)
        stream.codec_context.thread_type = "AUTO"
        if scan.seeked:
            _seek(av, container, stream, start)
        try:
            for k, frame in enumerate(container.decode(stream)):
                # Frames come in presentation order: the k-th is the k-th timestamp if it has none.
                stamp = frame.pts if frame.pts is not None else (
                    scan.pts[k] if k < len(scan.pts) else None)
                positions = wanted.pop(stamp, None)
                if positions:
                    rgb = _to_rgb(frame, long_side)
                    for position in positions:
                        frames[position] = rgb
                    converted += len(positions)
                    if max_frames is not None and converted > max_frames:
                        raise _too_many(len(picked), max_frames)  # the scan miscounted
                if not wanted:
                    break
        except av.error.FFmpegError as e:
            raise NSTError(f"cannot decode {path}: {_av_reason(e)} (the file is truncated or "
                           f"corrupt; re-encode it)") from None
    # A frame the decoder dropped (a damaged packet) is left out rather than guessed.
    kept = [position for position, rgb in enumerate(frames) if rgb is not None]
    if not kept:
        raise NSTError(f"cannot decode any frame of {path} in the part selected; re-encode it")
    return Clip([frames[p] for p in kept], out_rate, [scan.times[picked[p]] for p in kept],
                source, has_audio)


def _to_rgb(frame, long_side: int | None) -> np.ndarray:
    """A decoded video frame as upright RGB float32 in [0, 1], (H, W, 3), resized if asked.

    The conversion to RGB uses the YUV matrix and range the frame is tagged with (PyAV 18
    hands the tags to swscale; an untagged frame gets swscale's default, BT.601 limited).
    The 8-bit RGB is resized as :func:`nst_jax.images.load_image` resizes an 8-bit image
    (Lanczos).
    """
    rgb8 = frame.to_ndarray(format="rgb24")
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as phones tag portrait clips
    if quarter_turns:
        rgb8 = np.ascontiguousarray(np.rot90(rgb8, quarter_turns))
    if long_side is not None:
        size_hw = images.scaled_shape(rgb8.shape[:2], long_side)
        if size_hw != rgb8.shape[:2]:
            rgb8 = np.asarray(Image.fromarray(rgb8).resize(size_hw[::-1], Image.Resampling.LANCZOS))
    return rgb8.astype(np.float32) / np.float32(255.0)


# ----------------------------------------------------------------------------- writing


def write_frames(folder: str | os.PathLike, frames: Sequence[np.ndarray], *,
                 start_number: int = 1) -> list[pathlib.Path]:
    """Write each frame as an 8-bit PNG (sRGB profile, as :func:`nst_jax.images.save_png`)
    named :func:`frame_name` from ``start_number`` on, each atomically, creating
    ``folder`` if needed. Returns the paths written, in order.

    Raises:
      NSTError: the folder cannot be created or written, or a frame has NaN values.
    """
    folder = pathlib.Path(folder).expanduser()
    start_number = _number("start_number", start_number, zero=True, integer=True)
    problem = name_too_long(folder)
    if problem is not None:
        raise NSTError(f"cannot write frames to {shorten_path(folder)}: {problem}; shorten it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NSTError(f"cannot create the folder {folder}: {e.strerror or one_line(e)}") from None
    check_writable_folder(folder)
    return [images.save_png(folder / frame_name(start_number + i), frame)
            for i, frame in enumerate(frames)]


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    """NSTError for no frames, or frames that are not all one ``(H, W, 3)``."""
    if len(frames) == 0:
        raise NSTError("there are no frames to write")
    shape = np.shape(frames[0])
    if len(shape) != 3 or shape[2] != 3 or 0 in shape:
        raise NSTError(f"a frame must be (H, W, 3) RGB, got shape {shape}")
    for i, frame in enumerate(frames):
        if np.shape(frame) != shape:
            raise NSTError(f"frame {i} has shape {np.shape(frame)}, frame 0 {shape}; all frames "
                           f"of a video must have one size")


def _even(rgb8: np.ndarray) -> np.ndarray:
    """``rgb8`` with its last row and column repeated where a side is odd (yuv420p halves
    the chroma, so H.264 takes even sides only)."""
    pad_h, pad_w = rgb8.shape[0] % 2, rgb8.shape[1] % 2
    if pad_h or pad_w:
        rgb8 = np.pad(rgb8, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return rgb8


def write_video(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float, *,
                audio_from: str | os.PathLike | None = None, start: float = 0.0,
                duration: float | None = None, codec: str = "libx264", crf: int = 18) -> None:
    """Write ``frames`` as a video at ``fps`` frames a second, atomically.

    ``.mp4``, ``.mov`` and ``.mkv`` hold H.264 (``codec``, ``crf``), in ``yuv420p`` with
    BT.709 colour tags (the conversion from RGB uses that matrix, limited range): what
    browsers and players all decode. An MP4 or MOV has its index at the front
    (``faststart``), so it plays while it downloads. yuv420p needs even sides: a frame with an odd
    height or width is padded by repeating its last row or column (so the video is one
    px larger there). ``fps`` may be fractional (30000/1001 as 29.97...): the time base
    is a fraction. ``.gif`` is written by Pillow (a palette of 256 colours per frame,
    delays in whole hundredths of a second, looping; no audio: ``audio_from`` is
    ignored).

    The file is written under a temporary name in the same folder and renamed over
    ``path`` at the end (:func:`nst_jax.files.atomic_write`): on any error, Ctrl-C
    included, the temporary is removed and a file already at ``path`` is left as it was.

    Args:
      path: the video to write, ending in .mp4, .mov, .mkv or .gif.
      frames: RGB float in [0, 1], all the same ``(H, W, 3)``.
      fps: frames per second, above 0.
      audio_from: a file whose audio goes with the frames: the part from ``start`` for
        ``duration`` seconds (None: to its end), placed at the video's beginning. AAC
        taken whole (``start`` 0, no ``duration``) is copied packet by packet, unchanged;
        otherwise it is decoded, cut to the sample (a 5 ms fade at each cut, against
        clicks) and encoded as AAC (mono stays mono, more channels become stereo). A
        source without audio gives a video without, silently.
      start: seconds into ``audio_from`` where the audio starts: the source time of the
        first frame (``Clip.times[0]``, or the ``start`` given to :func:`read`).
      duration: seconds of audio, or None for the rest.
      codec: the FFmpeg video encoder.
      crf: the encoder's constant rate factor, 0-51 (lower is better and larger; 18
        looks lossless to most eyes). Encoders without the option ignore it.

    Raises:
      NSTError: an unsupported suffix, an unwritable folder, no frames or frames of
        differing shapes, a frame with NaN values, a bad number, an encoder PyAV lacks,
        ``audio_from`` missing or unreadable, or PyAV missing.
    """
    path = pathlib.Path(path).expanduser()
    allowed = f"{', '.join(list(WRITE_FORMATS)[:-1])} or {list(WRITE_FORMATS)[-1]}"
    problem = name_too_long(path)  # else is_dir() raises ENAMETOOLONG
    if problem is not None:
        raise NSTError(f"cannot write {shorten_path(path)}: {problem}; shorten it")
    if path.is_dir():
        raise NSTError(f"output path {path} is a directory; give a file name ending in {allowed}")
    suffix = path.suffix.lower()
    if suffix not in WRITE_FORMATS:
        got = repr(path.suffix) if path.suffix else "no suffix"
        raise NSTError(f"output video {path} must end in {allowed} (got {got})")
    fps = _number("fps", fps)
    start = _number("start", start, zero=True)
    if duration is not None:
        duration = _number("duration", duration)
    crf = _number("crf", crf, zero=True, integer=True)
    if crf > 51:
        raise NSTError(f"crf must be a whole number from 0 to 51, got {crf}")
    _check_frames(frames)
    if WRITE_FORMATS[suffix] is None:
        check_writable_folder(path.parent, path)
        return _write_gif(path, frames, fps)
    av = _av("writing")
    if codec not in av.codecs_available or not _is_encoder(av, codec):
        raise NSTError(f"PyAV has no video encoder {codec!r}; use libx264")
    audio_path = None
    if audio_from is not None:
        audio_path = pathlib.Path(audio_from).expanduser()
        _check_input(audio_path, "audio source")
        if audio_path.is_dir():
            raise NSTError(f"{audio_path} is a folder; audio_from must be a video or audio file")
    # An exact fraction for the time base (30000/1001 from 29.97002997...).
    rate = max(Fraction(fps).limit_denominator(10_000), Fraction(1, 10_000))
    check_writable_folder(path.parent, path)
    try:
        with atomic_write(path) as tmp:
            _write_av(av, tmp, WRITE_FORMATS[suffix], frames, rate, codec, crf, audio_path, start,
                      duration)
    except av.error.FFmpegError as e:
        raise NSTError(f"cannot write {path}: {_av_reason(e)}") from None
    except OSError as e:
        raise NSTError(f"cannot write {path}: {e.strerror or one_line(e)}") from None


def _is_encoder(av, name: str) -> bool:
    try:
        return av.Codec(name, "w").type == "video"
    except (av.error.FFmpegError, ValueError):  # UnknownCodecError is a ValueError
        return False


def _write_gif(path: pathlib.Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """An animated GIF by Pillow; GIF delays are hundredths of a second (at least 2)."""
    delay_ms = max(20, round(100.0 / fps) * 10)
    pictures = [Image.fromarray(images.quantize(frame)) for frame in frames]
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as f:
            pictures[0].save(f, format="GIF", save_all=True, append_images=pictures[1:],
                             duration=delay_ms, loop=0)
    except OSError as e:
        raise NSTError(f"cannot write {path}: {e.strerror or one_line(e)}") from None


def _packet_time(packet) -> float:
    """A packet's decoding time in seconds (for interleaving the streams)."""
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None and packet.time_base else 0.0


def _write_av(av, tmp: pathlib.Path, muxer: str, frames: Sequence[np.ndarray], rate: Fraction,
              codec: str, crf: int, audio_path: pathlib.Path | None, start: float,
              duration: float | None) -> None:
    """Encode ``frames`` (and the audio of ``audio_path``) into the file ``tmp``."""
    options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
    container = av.open(str(tmp), "w", format=muxer, options=options)
    # Not `with container`: closing after an error writes the trailer, and an error in that
    # must not replace the first one (a Ctrl-C above all).
    try:
        height, width = (side + side % 2 for side in np.shape(frames[0])[:2])
        stream = container.add_stream(codec, rate=rate, options={"crf": str(crf)})
        stream.width, stream.height, stream.pix_fmt = width, height, _PIX_FMT
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
        context.color_range = 1  # limited ("tv"), what players expect of H.264
        with contextlib.ExitStack() as stack:
            audio = None
            if audio_path is not None:
                audio = _AudioSource(av, audio_path, start, duration)
                stack.callback(audio.close)
                audio.add_to(container)
            pending = audio.packets() if audio else iter(())
            waiting = next(pending, None)

            def mux(packets) -> None:
                nonlocal waiting
                for packet in packets:
                    # Audio up to this packet's time first, so the streams interleave.
                    while waiting is not None and _packet_time(waiting) <= _packet_time(packet):
                        container.mux(waiting)
                        waiting = next(pending, None)
                    container.mux(packet)

            to_yuv = av.video.reformatter.VideoReformatter()  # one swscale context for all
            for i, frame in enumerate(frames):
                picture = av.VideoFrame.from_ndarray(_even(images.quantize(frame)), format="rgb24")
                picture = to_yuv.reformat(picture, format=_PIX_FMT, dst_colorspace="ITU709",
                                          dst_color_range="MPEG")
                picture.pts = i
                mux(stream.encode(picture))
            mux(stream.encode(None))
            while waiting is not None:
                container.mux(waiting)
                waiting = next(pending, None)
    except BaseException:
        with contextlib.suppress(Exception):
            container.close()
        raise
    container.close()


class _AudioSource:
    """The audio of ``path`` from ``start`` for ``duration`` seconds, as packets for a new
    stream of an output container: AAC taken whole is copied; anything else is decoded,
    cut to the sample and encoded as AAC. Opens ``path`` at once (errors name it);
    :meth:`close` closes it."""

    def __init__(self, av, path: pathlib.Path, start: float, duration: float | None):
        self.av, self.path, self.start, self.duration = av, path, start, duration
        self.end = math.inf if duration is None else start + duration
        self.stream = self.output = None
        try:
            self.input = av.open(str(path), "r")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise NSTError(f"cannot read the audio of {path} ({_av_reason(e)})") from None
        if self.input.streams.audio:
            self.stream = self.input.streams.audio[0]

    def close(self) -> None:
        self.input.close()

    def add_to(self, container) -> None:
        """Add the audio stream to the output ``container`` (none if the source has no audio)."""
        if self.stream is None:
            return
        context = self.stream.codec_context
        self.copy = context.name == "aac" and self.start <= _EPS and self.duration is None
        if self.copy:
            self.output = container.add_stream_from_template(self.stream)
            return
        rates = self.av.Codec("aac", "w").audio_rates or ()
        self.rate = context.sample_rate if context.sample_rate in rates else 48_000
        self.layout = "mono" if context.channels == 1 else "stereo"
        # FFmpeg's AAC encoder at its default rate: set rates of 96k and 128k made it click
        # at the start of a pure tone in our tests, where its default did not.
        self.output = container.add_stream("aac", rate=self.rate, layout=self.layout)

    def packets(self) -> Iterator:
        """The packets to mux, in order; none if the source has no audio."""
        if self.output is None:
            return
        try:
            if self.copy:
                for packet in self.input.demux(self.stream):
                    if packet.dts is None:
                        continue  # the empty packet that ends the stream
                    packet.stream = self.output
                    yield packet
            else:
                yield from self._encoded()
        except self.av.error.FFmpegError as e:
            raise NSTError(f"cannot read the audio of {self.path}: {_av_reason(e)} (the file is "
                           f"truncated or corrupt)") from None

    def _encoded(self) -> Iterator:
        """Decode, convert to float planar at the output's rate and layout, keep the
        samples in ``[start, end)``, and encode them (PyAV cuts them into AAC frames)."""
        av = self.av
        convert = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        time_base = Fraction(1, self.rate)
        written = None  # samples of the output so far, from the first one kept
        if self.start > _EPS:
            with contextlib.suppress(av.error.FFmpegError):
                self.input.seek(math.floor(max(0.0, self.start - 1.0) / self.stream.time_base),
                                stream=self.stream, backward=True)
        done = False
        for decoded in self.input.decode(self.stream):
            for piece in convert.resample(decoded):
                out, done = self._cut(piece, time_base, written)
                if out is not None:
                    written = out.pts + out.samples
                    yield from self.output.encode(out)
                if done:
                    break
            if done:
                break
        if not done:
            for piece in convert.resample(None):
                out, _ = self._cut(piece, time_base, written)
                if out is not None:
                    written = out.pts + out.samples
                    yield from self.output.encode(out)
        yield from self.output.encode(None)

    def _cut(self, piece, time_base: Fraction, written: int | None):
        """``(frame, done)``: the samples of ``piece`` in ``[start, end)`` as a frame with its
        output pts (None if none), and whether ``end`` has been reached."""
        if piece.pts is None or piece.time_base is None:
            begin = written / self.rate + self.start if written is not None else self.start
        else:
            begin = float(piece.pts * piece.time_base)
        samples = piece.to_ndarray()  # (channels, n) float32
        first = max(0, round((self.start - begin) * self.rate))
        last = samples.shape[1] if math.isinf(self.end) else min(
            samples.shape[1], round((self.end - begin) * self.rate))
        done = begin + samples.shape[1] / self.rate >= self.end - _EPS
        if last <= first:
            return None, done
        kept = samples[:, first:last]
        # A short fade where the sound is cut, so that a waveform cut mid-swing does not click.
        at = begin + np.arange(first, last) / self.rate
        gain = np.ones_like(at)
        if self.start > _EPS:
            gain = np.minimum(gain, (at - self.start) / _FADE)
        if not math.isinf(self.end):
            gain = np.minimum(gain, (self.end - at) / _FADE)
        if gain.min() < 1.0:
            kept = kept * np.clip(gain, 0.0, 1.0).astype(np.float32)
        frame = self.av.AudioFrame.from_ndarray(np.ascontiguousarray(kept, np.float32),
                                                format="fltp", layout=self.layout)
        frame.sample_rate = self.rate
        frame.time_base = time_base
        # Output time 0 is the source's `start`; contiguous after the first piece.
        frame.pts = (max(0, round((begin - self.start) * self.rate) + first)
                     if written is None else written)
        return frame, done
