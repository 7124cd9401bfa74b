"""Pictures for parameter sweeps: a labelled contact sheet of results and loss-curve plots.

Two libraries, each where it is the simpler tool:

- :func:`contact_sheet` uses Pillow. It pastes result images into a grid and
  writes labels and captions around them: image composition with text, where
  the cells must keep their exact pixels. matplotlib would resample the images
  and need a figure layout for what is a few ``paste`` calls.
- :func:`loss_curves` uses matplotlib (the optional extra ``plots``), the
  library made for line plots: axes, tick placement and labels (log axes
  included), grid and legend are its job, not hand-written code here. It is
  imported when a plot is drawn, never when this module is imported; call
  :func:`have_matplotlib` to know beforehand whether plots can be drawn.

No JAX and no file IO: every function returns an RGB ``uint8`` array of shape
``(H, W, 3)`` that the caller saves with :func:`nst_jax.images.save_png`.
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
# Matplotlib's "tab10", fixed here so that a user's matplotlibrc cannot change it:
# distinct and colour-blind-tolerant; the one grey is the tenth.
CURVE_COLOURS: tuple[Colour, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (127, 127, 127),
)

# Font sizes of the contact sheet, in px.
TITLE_SIZE = 18
LABEL_SIZE = 14
CAPTION_SIZE = 12

# Spacing in px: outer margin, between cells, between a label and what it names.
PAD = 10
GAP = 6
LABEL_GAP = 6
# Cell box used when every cell of a sheet is missing.
EMPTY_CELL = 64

# loss_curves: matplotlib sizes are in points (1/72 in); at DPI = 100 a point is
# 100/72 px, so these fonts match the sheet's 18, 14 and 11 px.
DPI = 100
TITLE_PT = 13
LABEL_PT = 10
TICK_PT = 8
LINE_WIDTH = 1.5  # pt, about 2 px
DOT_SIZE = 3  # pt, the marker of a point with no neighbour to draw a line to
# (width, height) in px below which a title, axis labels and ticks leave no room for the plot.
MIN_SIZE = (160, 120)


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


# ------------------------------------------------------------------------- loss curves


def _matplotlib():
    """matplotlib's ``Figure`` and Agg canvas classes, imported only when a plot is drawn.

    Raises:
      NSTError: matplotlib is not installed (it is the optional extra ``plots``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise NSTError("the loss-curve plots need matplotlib: pip install 'nst_jax[plots]'") from None
    return Figure, FigureCanvasAgg


def have_matplotlib() -> bool:
    """Whether :func:`loss_curves` can draw: lets a sweep check before a long run, not after."""
    try:
        _matplotlib()
    except NSTError:
        return False
    return True


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


def _isolated(keep: np.ndarray) -> np.ndarray:
    """The kept points with no kept neighbour: a line through one has no length, so it gets a dot."""
    before = np.concatenate([[False], keep[:-1]])
    after = np.concatenate([keep[1:], [False]])
    return keep & ~before & ~after


def _mpl(colour: Colour) -> tuple[float, float, float]:
    """A Pillow-style 0..255 colour as matplotlib's 0..1 RGB."""
    return colour[0] / 255, colour[1] / 255, colour[2] / 255


def _literal(text: str) -> str:
    """``text`` with its dollar signs escaped, so matplotlib never reads "$...$" as maths."""
    return text.replace("$", r"\$")


def loss_curves(
    curves: Mapping[str, object] | np.ndarray,
    *,
    title: str | None = None,
    xlabel: str = "iteration",
    ylabel: str = "total loss",
    log_y: bool = True,
    size: tuple[int, int] = (480, 320),
) -> np.ndarray:
    """A line plot of one or more loss curves, drawn by matplotlib (the optional extra ``plots``).

    Args:
      curves: ``{label: y}`` or ``{label: (x, y)}`` with 1-D arrays, or a single
        1-D y array. Without x, x is the 1-based iteration. NaN points are not
        drawn (a trace is NaN past its last iteration) and break the line; on a
        log axis neither are y <= 0. A curve with nothing to draw is allowed.
      title: drawn above the plot.
      xlabel, ylabel: axis titles ('' for none).
      log_y: log-scaled y axis.
      size: (width, height) of the picture in px, at least ``MIN_SIZE``.

    Returns:
      uint8 array (height, width, 3); the same input gives the same bytes.
      Curves are drawn in ``CURVE_COLOURS`` order, with a legend when there are
      two or more (a curve with nothing to draw is listed as "(no data)"); with
      nothing to draw at all the frame is empty and says "no data".

    Raises:
      ValueError: ``size`` is below ``MIN_SIZE``, or a curve is not 1-D / its x
        and y differ in length.
      NSTError: matplotlib is not installed.
    """
    width, height = (int(s) for s in size)
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise ValueError(
            f"size {width}x{height} px is too small for a loss-curve plot; make it larger, "
            f"at least {MIN_SIZE[0]}x{MIN_SIZE[1]}"
        )
    parsed = _as_curves(curves)
    Figure, FigureCanvasAgg = _matplotlib()

    # A Figure of its own with an Agg canvas, and colours and sizes passed explicitly:
    # no pyplot and no rcParams, so that plots drawn in threads or next to a user's
    # own matplotlib session neither leak global state nor depend on it.
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    drawn_x = []
    lines, labels = [], []
    for k, (label, x, y) in enumerate(parsed):
        keep = _plotted(x, y, log_y)
        drawn_x.append(x[keep])
        colour = _mpl(CURVE_COLOURS[k % len(CURVE_COLOURS)])
        shown = np.where(keep, y, np.nan)  # NaN breaks the line, so a skipped point is a gap
        lines += ax.plot(x, shown, color=colour, linewidth=LINE_WIDTH)
        labels.append(_literal(label if keep.any() else f"{label} (no data)"))
        lone = _isolated(keep)
        if lone.any():
            ax.plot(x[lone], y[lone], linestyle="none", marker="o", markersize=DOT_SIZE, color=colour)

    drawn_x = np.concatenate(drawn_x + [np.zeros(0)])
    if drawn_x.size:
        if log_y:
            ax.set_yscale("log")
        if np.all(drawn_x == np.round(drawn_x)):  # iterations: no tick at 2.5
            ax.xaxis.get_major_locator().set_params(integer=True)
            if drawn_x.min() == drawn_x.max():  # one iteration: show its neighbours, not +-5%
                ax.set_xlim(drawn_x[0] - 1, drawn_x[0] + 1)
        ax.grid(True, color=_mpl(GRID_GREY), linewidth=0.8)
        ax.set_axisbelow(True)
    else:  # an empty frame rather than made-up axis ranges
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color=_mpl(NOTE_GREY), fontsize=LABEL_PT)
    ax.tick_params(labelsize=TICK_PT)
    if len(parsed) > 1:
        # Handles and labels given explicitly: matplotlib would drop a label like "_run1".
        # "best" is the place the curves cross least (lower left for falling losses);
        # it is deterministic, and costs ~0.2 s only at 10^5 points.
        ax.legend(lines, labels, loc="best", fontsize=TICK_PT, framealpha=1.0,
                  edgecolor=_mpl(NOTE_GREY))
    if title:  # a sweep point's title lists its labels: wrap it rather than crop it
        ax.set_title(_literal(title), fontsize=TITLE_PT, wrap=True)
    ax.set_xlabel(_literal(xlabel or ""), fontsize=LABEL_PT)
    ax.set_ylabel(_literal(ylabel or ""), fontsize=LABEL_PT)

    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    if rgba.shape[:2] != (height, width):  # figsize * dpi rounding: never seen, but the size is the contract
        drawn = f"{rgba.shape[1]}x{rgba.shape[0]}"
        raise RuntimeError(f"matplotlib drew {drawn} px, asked for {width}x{height}")
    return np.ascontiguousarray(rgba[:, :, :3])
