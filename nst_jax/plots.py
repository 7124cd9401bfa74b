"""Pictures for parameter sweeps: a labelled contact sheet of results and loss-curve plots.

Pillow and NumPy only (no matplotlib, no JAX), and no file IO: every function
returns an RGB ``uint8`` array of shape ``(H, W, 3)`` that the caller saves with
:func:`nst_jax.images.save_png`.
"""
from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax.errors import NSTError

Colour = tuple[int, int, int]
AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont

WHITE: Colour = (255, 255, 255)
BLACK: Colour = (0, 0, 0)
# Fill and text of the cell drawn for a run that produced no image.
PLACEHOLDER_GREY: Colour = (220, 220, 220)
PLACEHOLDER_TEXT: Colour = (110, 110, 110)
GRID_GREY: Colour = (232, 232, 232)
NOTE_GREY: Colour = (130, 130, 130)
# Matplotlib's "tab10": distinct, colour-blind-tolerant, none of them grey or black.
CURVE_COLOURS: tuple[Colour, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127),
)

# Font sizes in px.
TITLE_SIZE = 18
LABEL_SIZE = 14
CAPTION_SIZE = 12
TICK_SIZE = 11

# Spacing in px: outer margin, between cells, between a label and what it names.
PAD = 10
GAP = 6
LABEL_GAP = 6
TICK_LEN = 4
# Cell box used when every cell of a sheet is missing.
EMPTY_CELL = 64
# The plot area of loss_curves must be at least this many px each way.
MIN_PLOT_SIDE = 40


# -------------------------------------------------------------------------------- text


@functools.lru_cache(maxsize=None)
def font(size: int) -> AnyFont:
    """Pillow's built-in font at ``size`` px (scalable in Pillow >= 10.1, else the fixed bitmap)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # old Pillow, or no FreeType
        return ImageFont.load_default()


_SCRATCH = ImageDraw.Draw(Image.new("L", (1, 1)))


def _ink_box(text: str, fnt: AnyFont, align: str = "center") -> tuple[int, int, int, int]:
    """(left, top, width, height) of ``text`` drawn at the origin; zeros if empty.

    Horizontally the box is the ink's; vertically it also spans a capital and a
    descender on every line, so that labels with the same number of lines share
    baselines whether or not they have letters like "g" or "_".
    """
    if not text:
        return 0, 0, 0, 0
    left, top, right, bottom = _SCRATCH.multiline_textbbox((0, 0), text, font=fnt, align=align)
    reference = "\n".join(["Hg"] * (text.count("\n") + 1))
    _, ref_top, _, ref_bottom = _SCRATCH.multiline_textbbox((0, 0), reference, font=fnt, align=align)
    top, bottom = min(top, ref_top), max(bottom, ref_bottom)
    return int(left), int(top), int(math.ceil(right - left)), int(math.ceil(bottom - top))


def _text_size(text: str | None, fnt: AnyFont) -> tuple[int, int]:
    """(width, height) in px of ``text``'s ink (possibly multi-line); (0, 0) for None or ''."""
    _, _, width, height = _ink_box(text or "", fnt)
    return width, height


def _draw_text(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fnt: AnyFont,
    fill: Colour = BLACK, align: str = "center",
) -> None:
    """Draw ``text`` so that its ink box starts exactly at ``xy`` (top-left)."""
    left, top, _, _ = _ink_box(text, fnt, align)
    if text:
        draw.multiline_text((round(xy[0]) - left, round(xy[1]) - top), text, font=fnt, fill=fill, align=align)


def _draw_vertical_text(canvas: Image.Image, xy: tuple[float, float], text: str, fnt: AnyFont) -> None:
    """Draw ``text`` rotated 90 degrees (reading bottom to top), its ink box's top-left at ``xy``."""
    width, height = _text_size(text, fnt)
    if not width:
        return
    mask = Image.new("L", (width, height), 0)
    _draw_text(ImageDraw.Draw(mask), (0, 0), text, fnt, fill=255)  # type: ignore[arg-type]
    mask = mask.rotate(90, expand=True)
    canvas.paste(BLACK, (round(xy[0]), round(xy[1])), mask)


# ---------------------------------------------------------------------- contact sheet


def _as_rgb8(image: np.ndarray, index: int) -> Image.Image:
    """One cell as a Pillow RGB image.

    Args:
      image: (h, w, 3), uint8, or float in [0, 1] (clipped; NaN and inf, from a
        diverged run, are drawn black rather than refusing the whole sheet).
      index: the cell's position in ``images``, for the error message.
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"images[{index}] must have shape (h, w, 3) with h, w >= 1, got {array.shape}")
    if array.dtype != np.uint8:
        array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _fit(image: Image.Image, box_hw: tuple[int, int]) -> Image.Image:
    """``image`` scaled (up or down, aspect kept) to the largest size that fits ``box_hw``."""
    box_h, box_w = box_hw
    scale = min(box_h / image.height, box_w / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _check_count(name: str, items: Sequence | None, expected: int, what: str) -> None:
    """Raise NSTError unless ``items`` is None or has ``expected`` entries."""
    if items is not None and len(items) != expected:
        raise NSTError(
            f"contact sheet has {expected} {what} but {len(items)} {name}; give one per {what[:-1]}"
        )


def _placeholder(box_hw: tuple[int, int]) -> Image.Image:
    """A light-grey cell of size ``box_hw`` that says "missing" (a run that never finished)."""
    cell = Image.new("RGB", (box_hw[1], box_hw[0]), PLACEHOLDER_GREY)
    fnt = font(CAPTION_SIZE)
    width, height = _text_size("missing", fnt)
    if width > box_hw[1] - 4:  # a tiny cell: shrink the word rather than crop it
        fnt = font(max(6, CAPTION_SIZE * (box_hw[1] - 4) // width))
        width, height = _text_size("missing", fnt)
    xy = ((box_hw[1] - width) / 2, (box_hw[0] - height) / 2)
    _draw_text(ImageDraw.Draw(cell), xy, "missing", fnt, fill=PLACEHOLDER_TEXT)
    return cell


def contact_sheet(
    images: Sequence[np.ndarray | None],
    rows: int,
    cols: int,
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[str | None] | None = None,
    title: str | None = None,
    row_title: str | None = None,
    col_title: str | None = None,
) -> np.ndarray:
    """Lay out a grid of images with labels, on white.

    Every cell gets the same box, (max h, max w) over the images; each image is
    scaled into it keeping its aspect ratio and centred. Labels may be multi-line
    ("ratio=1e-3\\nseed=1"); the margins grow to fit the measured text, and a
    column widens to its widest label or caption so that no text overlaps.

    Args:
      images: ``rows * cols`` cells in row-major order (cell (r, c) is
        ``images[r * cols + c]``); each an RGB array (h, w, 3), float in [0, 1]
        or uint8, or None for a missing result (drawn as a grey "missing" box).
      rows, cols: the grid's shape, each >= 1.
      row_labels: ``rows`` strings, drawn left of each row.
      col_labels: ``cols`` strings, drawn above each column.
      captions: ``rows * cols`` strings (or None for none), drawn small under each cell.
      title: drawn on top of the sheet.
      row_title, col_title: axis titles, e.g. "alpha/beta": the row title is
        drawn vertically left of the row labels, the column title above the
        column labels.

    Returns:
      uint8 array (H, W, 3).

    Raises:
      NSTError: rows or cols < 1, or a count of images, labels or captions
        does not match the grid.
    """
    if rows < 1 or cols < 1:
        raise NSTError(f"contact sheet needs at least one row and one column, got {rows}x{cols}")
    n = rows * cols
    if len(images) != n:
        raise NSTError(f"contact sheet of {rows}x{cols} cells needs {n} images, got {len(images)}")
    _check_count("row labels", row_labels, rows, "rows")
    _check_count("column labels", col_labels, cols, "columns")
    _check_count("captions", captions, n, "cells")

    cells = [None if image is None else _as_rgb8(image, i) for i, image in enumerate(images)]
    present = [cell for cell in cells if cell is not None]
    box_h = max((cell.height for cell in present), default=EMPTY_CELL)
    box_w = max((cell.width for cell in present), default=EMPTY_CELL)

    title_font, label_font, caption_font = font(TITLE_SIZE), font(LABEL_SIZE), font(CAPTION_SIZE)
    row_label_sizes = [_text_size(label, label_font) for label in row_labels or ()]
    col_label_sizes = [_text_size(label, label_font) for label in col_labels or ()]
    caption_sizes = [_text_size(caption, caption_font) for caption in captions or ()]
    title_w, title_h = _text_size(title, title_font)
    row_title_w, row_title_h = _text_size(row_title, label_font)  # drawn rotated: h is its width
    col_title_w, col_title_h = _text_size(col_title, label_font)

    def block(extent: int) -> int:
        """Space taken by a text block of ``extent`` px and the gap after it (none if empty)."""
        return extent + LABEL_GAP if extent else 0

    # Each cell sits in a slot: wide enough for its column label and caption, tall
    # enough for its row label; the caption goes in a strip under the image.
    slot_w = max([box_w] + [w for w, _ in col_label_sizes] + [w for w, _ in caption_sizes])
    band_h = max([box_h] + [h for _, h in row_label_sizes])
    caption_h = max((h for _, h in caption_sizes), default=0)
    row_h = band_h + (LABEL_GAP // 2 + caption_h if caption_h else 0)
    grid_w = cols * slot_w + (cols - 1) * GAP
    grid_h = rows * row_h + (rows - 1) * GAP

    grid_x = PAD + block(row_title_h) + block(max((w for w, _ in row_label_sizes), default=0))
    col_labels_h = max((h for _, h in col_label_sizes), default=0)
    grid_y = PAD + block(title_h) + block(col_title_h) + block(col_labels_h)
    natural_w = max(grid_x + grid_w, grid_x + col_title_w) + PAD
    width = max(natural_w, title_w + 2 * PAD)
    shift = (width - natural_w) // 2  # a title wider than the grid: centre the grid under it
    grid_x += shift
    height = max(grid_y + grid_h + PAD, grid_y + row_title_w + PAD)

    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        _draw_text(draw, ((width - title_w) / 2, PAD), title, title_font)
    if col_title:
        x = min(max(grid_x + (grid_w - col_title_w) / 2, PAD), width - PAD - col_title_w)
        _draw_text(draw, (x, PAD + block(title_h)), col_title, label_font)
    if row_title:
        y = min(grid_y + (grid_h - row_title_w) / 2, height - PAD - row_title_w)
        _draw_vertical_text(canvas, (PAD + shift, max(y, grid_y)), row_title, label_font)

    for c, (w, h) in enumerate(col_label_sizes):
        slot_x = grid_x + c * (slot_w + GAP)
        _draw_text(draw, (slot_x + (slot_w - w) / 2, grid_y - LABEL_GAP - h), col_labels[c], label_font)
    for r, (w, h) in enumerate(row_label_sizes):
        band_y = grid_y + r * (row_h + GAP)
        xy = (grid_x - LABEL_GAP - w, band_y + (band_h - h) / 2)
        _draw_text(draw, xy, row_labels[r], label_font, align="right")

    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        slot_x, band_y = grid_x + c * (slot_w + GAP), grid_y + r * (row_h + GAP)
        picture = _placeholder((box_h, box_w)) if cell is None else _fit(cell, (box_h, box_w))
        corner = (slot_x + (slot_w - picture.width) // 2, band_y + (band_h - picture.height) // 2)
        canvas.paste(picture, corner)
        if captions is not None and captions[i]:
            w, _ = caption_sizes[i]
            xy = (slot_x + (slot_w - w) / 2, band_y + band_h + LABEL_GAP // 2)
            _draw_text(draw, xy, captions[i], caption_font)
    return np.array(canvas, dtype=np.uint8)


# ------------------------------------------------------------------------------- ticks


def _nice_step(span: float, target: int = 5) -> float:
    """The 1, 2 or 5 x 10^k step that cuts ``span`` (> 0) into about ``target`` parts."""
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0):
        if multiple * magnitude >= raw * (1 - 1e-9):
            return multiple * magnitude
    return 10.0 * magnitude


def _format_tick(value: float, step: float) -> str:
    """``value`` as a short label precise to ``step``: "0.02", "300", "1.5e9", "2e-5"."""
    if value == 0 or abs(value) < abs(step) * 1e-9:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    step_exponent = math.floor(math.log10(abs(step)))
    if -3 <= exponent < 5:
        return f"{value:.{max(0, -step_exponent)}f}"
    mantissa, _, power = f"{value:.{max(0, exponent - step_exponent)}e}".partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(power)}"


def _linear_ticks(lo: float, hi: float, *, integer: bool = False) -> list[tuple[float, str]]:
    """(value, label) pairs at round values in [lo, hi]; whole numbers only if ``integer``."""
    step = _nice_step(hi - lo)
    if integer:
        step = max(step, 1.0)
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    for k in range(first, first + 100):
        value = k * step
        if value > hi + step * 1e-9:
            break
        ticks.append((value, _format_tick(value, step)))
    return ticks


def _log_ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """(log10 value, label) pairs for a log axis spanning 10**lo .. 10**hi.

    Decades (1e8, 1e9, ...) where at least two fit, thinned to at most 7;
    otherwise 1-2-5 steps, then 1..9 steps, then plain round values.
    """
    decades = list(range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1))
    if len(decades) >= 2:
        every = math.ceil(len(decades) / 7)
        kept = [e for e in decades if e % every == 0]
        kept = kept if len(kept) >= 2 else decades[::every]
        return [(float(e), _format_tick(10.0**e, 10.0**e)) for e in kept]
    for mantissas in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [
            (math.log10(m * 10.0**e), _format_tick(m * 10.0**e, 10.0**e))
            for e in range(math.floor(lo) - 1, math.ceil(hi) + 1)
            for m in mantissas
            if lo - 1e-9 <= math.log10(m * 10.0**e) <= hi + 1e-9
        ]
        if len(ticks) >= 2:
            return ticks
    linear = _linear_ticks(10.0**lo, 10.0**hi)
    return [(math.log10(value), label) for value, label in linear if value > 0]


def _padded(lo: float, hi: float, fraction: float, flat_pad: float) -> tuple[float, float]:
    """[lo, hi] widened by ``fraction`` of its span each side, or by ``flat_pad`` if lo == hi."""
    pad = (hi - lo) * fraction if hi > lo else flat_pad
    return lo - pad, hi + pad


# ------------------------------------------------------------------------- loss curves


def _as_curves(curves: Mapping[str, object] | np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Normalise ``curves`` to [(label, x, y)], x and y float64 1-D arrays of equal length.

    A value that is not a tuple is y, with x = 1, 2, ... (the iteration number).
    """
    items = curves.items() if isinstance(curves, Mapping) else [("", curves)]
    out = []
    for label, value in items:
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"curve {label!r}: a tuple value must be (x, y), got {len(value)} items")
            x, y = (np.asarray(v, dtype=np.float64) for v in value)
        else:
            y = np.asarray(value, dtype=np.float64)
            x = np.arange(1, y.size + 1, dtype=np.float64)
        if y.ndim != 1 or x.shape != y.shape:
            raise ValueError(
                f"curve {label!r}: x and y must be 1-D of equal length, got {x.shape} and {y.shape}"
            )
        out.append((str(label), x, y))
    return out


def _plotted(x: np.ndarray, y: np.ndarray, log_y: bool) -> np.ndarray:
    """Boolean mask of the points that can be drawn: finite, and y > 0 on a log axis."""
    keep = np.isfinite(x) & np.isfinite(y)
    if log_y:
        keep &= y > 0
    return keep


def _runs(keep: np.ndarray) -> list[slice]:
    """Slices of the consecutive True stretches of ``keep`` (a NaN breaks a line)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], keep.astype(np.int8), [0]])))
    return [slice(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _draw_legend(
    draw: ImageDraw.ImageDraw, entries: list[tuple[Colour, str]], box_right: int, box_top: int, fnt: AnyFont
) -> None:
    """A framed legend whose top-right corner is at (box_right, box_top): a swatch and label per curve."""
    swatch, inner = 18, 5
    sizes = [_text_size(label or " ", fnt) for _, label in entries]
    line_h = max(h for _, h in sizes) + 4
    width = inner * 3 + swatch + max(w for w, _ in sizes)
    height = inner * 2 + line_h * len(entries) - 4
    left = box_right - width
    draw.rectangle((left, box_top, box_right, box_top + height), fill=WHITE, outline=NOTE_GREY)
    for k, ((colour, label), (_, h)) in enumerate(zip(entries, sizes)):
        y = box_top + inner + k * line_h
        mid = y + h // 2
        draw.line((left + inner, mid, left + inner + swatch, mid), fill=colour, width=3)
        _draw_text(draw, (left + 2 * inner + swatch, y), label, fnt, align="left")


def loss_curves(
    curves: Mapping[str, object] | np.ndarray,
    *,
    title: str | None = None,
    xlabel: str = "iteration",
    ylabel: str = "total loss",
    log_y: bool = True,
    size: tuple[int, int] = (480, 320),
) -> np.ndarray:
    """A line plot of one or more loss curves.

    Args:
      curves: ``{label: y}`` or ``{label: (x, y)}`` with 1-D arrays, or a single
        1-D y array. Without x, x is the 1-based iteration. NaN points are not
        drawn (a trace is NaN past its last iteration) and break the line; on a
        log axis neither are y <= 0. A curve with nothing to draw is allowed.
      title: drawn above the plot.
      xlabel, ylabel: axis titles ('' for none).
      log_y: log-scaled y axis with ticks at decades ("1e9").
      size: (width, height) of the picture in px.

    Returns:
      uint8 array (height, width, 3). Curves are drawn in ``CURVE_COLOURS``
      order, with a legend when there are two or more; with nothing to draw
      the axes say "no data".
    """
    width, height = (int(s) for s in size)
    parsed = _as_curves(curves)
    masks = [_plotted(x, y, log_y) for _, x, y in parsed]
    xs = np.concatenate([x[keep] for (_, x, _), keep in zip(parsed, masks)] + [np.zeros(0)])
    ys = np.concatenate([y[keep] for (_, _, y), keep in zip(parsed, masks)] + [np.zeros(0)])
    ts = np.log10(ys) if log_y else ys  # the y axis's own coordinate
    has_data = xs.size > 0

    if has_data:
        x_lo, x_hi = _padded(float(xs.min()), float(xs.max()), 0.0, max(1.0, abs(float(xs[0])) * 0.1))
        flat_pad = 0.2 if log_y else (abs(float(ts[0])) * 0.1 or 1.0)
        t_lo, t_hi = _padded(float(ts.min()), float(ts.max()), 0.05, flat_pad)
    else:  # empty axes: 1..10 on a log axis, 0..1 on a linear one
        x_lo, x_hi, t_lo, t_hi = 1.0, 2.0, 0.0, 1.0
    integer_x = bool(np.all(xs == np.round(xs)))
    x_ticks = _linear_ticks(x_lo, x_hi, integer=integer_x) if has_data else []
    y_ticks = (_log_ticks(t_lo, t_hi) if log_y else _linear_ticks(t_lo, t_hi)) if has_data else []

    tick_font, label_font, title_font = font(TICK_SIZE), font(LABEL_SIZE), font(TITLE_SIZE)
    tick_h = _text_size("0", tick_font)[1]  # reserved even without ticks, so empty plots look alike
    y_tick_w = max((_text_size(label, tick_font)[0] for _, label in y_ticks), default=0)
    x_tick_w = max((_text_size(label, tick_font)[0] for _, label in x_ticks), default=0)
    _, title_h = _text_size(title, title_font)
    xlabel_w, xlabel_h = _text_size(xlabel, label_font)
    ylabel_w, ylabel_h = _text_size(ylabel, label_font)  # drawn rotated

    left = PAD + (ylabel_h + LABEL_GAP if ylabel else 0) + y_tick_w + LABEL_GAP // 2 + TICK_LEN
    right = width - PAD - x_tick_w // 2
    top = PAD + max(tick_h // 2, title_h + LABEL_GAP if title else 0)
    bottom = height - PAD - (xlabel_h + LABEL_GAP if xlabel else 0) - tick_h - LABEL_GAP // 2 - TICK_LEN
    if right - left < MIN_PLOT_SIDE or bottom - top < MIN_PLOT_SIDE:
        raise ValueError(f"size {width}x{height} px leaves no room for the plot; make it larger")

    # Data map into a box inset from the frame, so lines at the extremes stay visible.
    inset = 4

    def px(x: np.ndarray | float) -> np.ndarray:
        return left + inset + (np.asarray(x) - x_lo) / (x_hi - x_lo) * (right - left - 2 * inset)

    def py(t: np.ndarray | float) -> np.ndarray:
        return bottom - inset - (np.asarray(t) - t_lo) / (t_hi - t_lo) * (bottom - top - 2 * inset)

    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    for value, label in x_ticks:
        x = round(float(px(value)))
        draw.line((x, top + 1, x, bottom - 1), fill=GRID_GREY)
        draw.line((x, bottom, x, bottom + TICK_LEN), fill=BLACK)
        w, _ = _text_size(label, tick_font)
        _draw_text(draw, (x - w / 2, bottom + TICK_LEN + LABEL_GAP // 2), label, tick_font)
    for value, label in y_ticks:
        y = round(float(py(value)))
        draw.line((left + 1, y, right - 1, y), fill=GRID_GREY)
        draw.line((left - TICK_LEN, y, left, y), fill=BLACK)
        w, h = _text_size(label, tick_font)
        _draw_text(draw, (left - TICK_LEN - LABEL_GAP // 2 - w, y - h / 2), label, tick_font)
    draw.rectangle((left, top, right, bottom), outline=BLACK)

    legend = []
    for k, ((label, x, y), keep) in enumerate(zip(parsed, masks)):
        colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
        legend.append((colour, label if keep.any() else f"{label} (no data)"))
        t = np.log10(np.where(keep, y, 1.0)) if log_y else y
        points_x, points_y = px(x), py(t)
        for run in _runs(keep):
            points = list(zip(points_x[run].tolist(), points_y[run].tolist()))
            if len(points) == 1:
                (cx, cy), r = points[0], 2
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
            else:
                draw.line(points, fill=colour, width=2, joint="curve")

    if not has_data:
        w, h = _text_size("no data", label_font)
        xy = ((left + right - w) / 2, (top + bottom - h) / 2)
        _draw_text(draw, xy, "no data", label_font, fill=NOTE_GREY)
    if len(parsed) > 1:
        _draw_legend(draw, legend, right - inset, top + inset, tick_font)
    if title:
        w, _ = _text_size(title, title_font)
        _draw_text(draw, ((width - w) / 2, PAD), title, title_font)
    if xlabel:
        _draw_text(draw, ((left + right - xlabel_w) / 2, height - PAD - xlabel_h), xlabel, label_font)
    if ylabel:
        _draw_vertical_text(canvas, (PAD, (top + bottom - ylabel_w) / 2), ylabel, label_font)
    return np.array(canvas, dtype=np.uint8)
