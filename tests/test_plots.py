"""Tests for nst_jax.plots: the pictures are checked by their pixels, not by eye."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import ImageFont

from nst_jax import plots
from nst_jax.errors import NSTError

# Saturated colours that no text, frame, grid or placeholder pixel can have.
COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255), (255, 160, 0)]


def _solid(colour, shape=(20, 20)) -> np.ndarray:
    """A uint8 (h, w, 3) image of one colour."""
    return np.broadcast_to(np.array(colour, np.uint8), (*shape, 3)).copy()


def _mask(picture: np.ndarray, colour) -> np.ndarray:
    """(H, W) bool: where ``picture`` has exactly ``colour``."""
    return np.all(picture == np.array(colour, np.uint8), axis=2)


def _centroid(picture: np.ndarray, colour) -> tuple[float, float]:
    """Mean (row, col) of the pixels of ``colour``; fails if there are none."""
    rows, cols = np.nonzero(_mask(picture, colour))
    assert rows.size, f"no pixel of colour {colour}"
    return float(rows.mean()), float(cols.mean())


# ------------------------------------------------------------------------ contact sheet


def test_contact_sheet_returns_rgb_uint8():
    sheet = plots.contact_sheet([_solid(COLOURS[0])], 1, 1)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3


def test_contact_sheet_puts_cells_in_row_major_order():
    rows, cols = 2, 3
    sheet = plots.contact_sheet([_solid(c) for c in COLOURS], rows, cols)
    centres = [_centroid(sheet, c) for c in COLOURS]
    for i, (y, x) in enumerate(centres):
        r, c = divmod(i, cols)
        # Each solid cell is a whole 20x20 block of its colour, centred in its slot.
        assert _mask(sheet, COLOURS[i]).sum() == 20 * 20
        assert sheet[round(y), round(x)].tolist() == list(COLOURS[i])
        if c:
            left_y, left_x = centres[i - 1]
            assert x > left_x + 19 and abs(y - left_y) < 0.5
        if r:
            above_y, above_x = centres[i - cols]
            assert y > above_y + 19 and abs(x - above_x) < 0.5


def test_contact_sheet_accepts_float_images():
    sheet = plots.contact_sheet([np.full((8, 8, 3), 0.5, np.float32), np.zeros((8, 8, 3))], 1, 2)
    assert _mask(sheet, (128, 128, 128)).sum() == 64
    assert _mask(sheet, (0, 0, 0)).sum() >= 64


def test_contact_sheet_fits_different_sizes_into_one_box_keeping_aspect():
    # A 10x20 (h x w) image in the 20x20 box stays 10x20, centred with white above and below.
    sheet = plots.contact_sheet([_solid(COLOURS[0], (20, 20)), _solid(COLOURS[1], (10, 20))], 1, 2)
    rows, cols = np.nonzero(_mask(sheet, COLOURS[1]))
    assert rows.max() - rows.min() + 1 == 10 and cols.max() - cols.min() + 1 == 20
    red_rows, _ = np.nonzero(_mask(sheet, COLOURS[0]))
    assert rows.mean() == pytest.approx(red_rows.mean(), abs=0.5)
    assert sheet[rows.min() - 3, cols.min() + 5].tolist() == [255, 255, 255]
    # A small image is scaled up to fill the box the other way: 5x5 -> 20x20.
    sheet = plots.contact_sheet([_solid(COLOURS[0], (20, 40)), _solid(COLOURS[2], (5, 5))], 1, 2)
    assert _mask(sheet, COLOURS[2]).sum() == 20 * 20


def test_labels_make_the_sheet_larger_and_keep_cells_intact():
    cells = [_solid(c) for c in COLOURS[:4]]
    bare = plots.contact_sheet(cells, 2, 2)
    labelled = plots.contact_sheet(
        cells, 2, 2,
        row_labels=["ratio=1e-3\nseed=1", "ratio=1e-4\nseed=2"],
        col_labels=["conv1_1", "conv5_1"],
        captions=["L=1e9", "L=2e9", None, "L=4e9\nS=1e8"],
        title="sweep", row_title="alpha/beta", col_title="layer",
    )
    assert labelled.shape[0] > bare.shape[0] and labelled.shape[1] > bare.shape[1]
    for colour in COLOURS[:4]:
        assert _mask(labelled, colour).sum() == 20 * 20  # no text drawn over a cell
    # The text is there: dark pixels left of and above the first cell.
    y, x = _centroid(labelled, COLOURS[0])
    assert (labelled[:, : int(x) - 10].max(axis=2) < 100).any()
    assert (labelled[: int(y) - 10].max(axis=2) < 100).any()


def test_multi_line_labels_get_taller_margins():
    cells = [_solid(COLOURS[0])]
    one = plots.contact_sheet(cells, 1, 1, col_labels=["seed=1"])
    three = plots.contact_sheet(cells, 1, 1, col_labels=["seed=1\nratio=1e-3\ntv=0"])
    assert three.shape[0] > one.shape[0]
    wide = plots.contact_sheet(cells, 1, 1, row_labels=["a much longer row label"])
    narrow = plots.contact_sheet(cells, 1, 1, row_labels=["a"])
    assert wide.shape[1] > narrow.shape[1]


def test_missing_cells_render_as_grey_placeholders():
    sheet = plots.contact_sheet([_solid(COLOURS[0]), None, None, _solid(COLOURS[1])], 2, 2)
    grey = _mask(sheet, plots.PLACEHOLDER_GREY)
    # Two 20x20 boxes, less the "missing" text drawn on them.
    assert 2 * 20 * 20 * 0.5 < grey.sum() <= 2 * 20 * 20
    (red_y, red_x), (green_y, green_x) = _centroid(sheet, COLOURS[0]), _centroid(sheet, COLOURS[1])
    for y, x in ((red_y, green_x), (green_y, red_x)):  # cells (0, 1) and (1, 0)
        box = grey[round(y) - 9 : round(y) + 9, round(x) - 9 : round(x) + 9]
        assert box[[0, 0, -1, -1], [0, -1, 0, -1]].all()  # its corners; "missing" is in the middle


def test_all_missing_cells_still_make_a_sheet():
    sheet = plots.contact_sheet([None, None], 1, 2, col_labels=["a", "b"])
    assert _mask(sheet, plots.PLACEHOLDER_GREY).sum() > 2 * 0.5 * plots.EMPTY_CELL**2


def test_non_finite_pixels_are_drawn_black_not_refused():
    diverged = np.full((8, 8, 3), np.nan, np.float32)
    sheet = plots.contact_sheet([diverged], 1, 1)
    assert _mask(sheet, (0, 0, 0)).sum() == 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=[None] * 5, rows=2, cols=3), "needs 6 images, got 5"),
        (dict(images=[None] * 6, rows=2, cols=3, row_labels=["a"]), "2 rows but 1 row labels"),
        (dict(images=[None] * 6, rows=2, cols=3, col_labels=["a", "b"]), "3 columns but 2 column labels"),
        (dict(images=[None] * 6, rows=2, cols=3, captions=["a"] * 7), "6 cells but 7 captions"),
        (dict(images=[], rows=0, cols=3), "at least one row"),
    ],
)
def test_mismatched_counts_raise_nst_error(kwargs, match):
    with pytest.raises(NSTError, match=match) as info:
        plots.contact_sheet(**kwargs)
    assert "\n" not in str(info.value)


def test_a_wrongly_shaped_image_is_a_value_error():
    with pytest.raises(ValueError, match=r"images\[1\]"):
        plots.contact_sheet([_solid(COLOURS[0]), np.zeros((4, 4))], 1, 2)


# -------------------------------------------------------------------------- loss curves


BLUE = plots.CURVE_COLOURS[0]


def test_loss_curves_shape_and_dtype():
    picture = plots.loss_curves(np.geomspace(1e10, 1e6, 50), size=(300, 200))
    assert picture.shape == (200, 300, 3) and picture.dtype == np.uint8


def test_decreasing_curve_goes_from_upper_left_to_lower_right():
    for log_y in (True, False):
        picture = plots.loss_curves(np.geomspace(1e10, 1e6, 200), log_y=log_y)
        curve = _mask(picture, BLUE)
        assert curve.sum() > 200, "the curve's colour should be drawn"
        rows, cols = np.nonzero(curve)
        width = picture.shape[1]
        left, right = rows[cols < width / 3], rows[cols > 2 * width / 3]
        assert left.size and right.size
        assert left.mean() < right.mean()  # image rows grow downwards


def test_increasing_curve_goes_up():
    picture = plots.loss_curves(np.linspace(1.0, 5.0, 30), log_y=False)
    rows, cols = np.nonzero(_mask(picture, BLUE))
    assert rows[cols < cols.mean()].mean() > rows[cols > cols.mean()].mean()


def _longest_row_run(mask: np.ndarray) -> int:
    """The longest horizontal run of True in any row of ``mask``."""
    best = 0
    for row in mask:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        best = max(best, int((edges[1::2] - edges[::2]).max(initial=0)))
    return best


def _curve_mask(picture: np.ndarray, colour) -> np.ndarray:
    """Where ``picture`` has ``colour``, outside the legend box (found by its grey frame)."""
    mask = _mask(picture, colour)
    rows, cols = np.nonzero(_mask(picture, plots.NOTE_GREY))
    if rows.size:
        mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = False
    return mask


def test_several_curves_get_distinct_colours_and_a_legend():
    curves = {"lbfgs": np.geomspace(1e9, 1e7, 40), "adam": np.geomspace(2e9, 5e7, 40)}
    picture = plots.loss_curves(curves)
    first, second = plots.CURVE_COLOURS[:2]
    assert first != second
    assert _mask(picture, first).sum() > 40 and _mask(picture, second).sum() > 40
    # The legend's swatches are horizontal strokes in the upper right; a lone curve has none.
    upper_right = picture[: picture.shape[0] // 3, picture.shape[1] // 2 :]
    assert _longest_row_run(_mask(upper_right, first)) >= 15
    assert _longest_row_run(_mask(upper_right, second)) >= 15
    single = plots.loss_curves({"lbfgs": curves["lbfgs"]})
    assert _longest_row_run(_mask(single, first)) < 15


def test_trailing_nans_are_skipped():
    trace = np.full(100, np.nan)
    trace[:40] = np.geomspace(1e9, 1e7, 40)
    # x keeps its 1-based meaning: the 40 points take about the left 40% of the x range.
    picture = plots.loss_curves({"run": trace, "full": np.geomspace(1e9, 1e7, 100)})
    _, cols_short = np.nonzero(_curve_mask(picture, BLUE))
    _, cols_full = np.nonzero(_curve_mask(picture, plots.CURVE_COLOURS[1]))
    span = cols_full.max() - cols_full.min()
    assert (cols_short.max() - cols_full.min()) == pytest.approx(0.4 * span, abs=0.03 * span)


@pytest.mark.parametrize(
    "curves, log_y",
    [
        (np.full(10, np.nan), True),
        (np.full(10, np.nan), False),
        ({"a": np.full(5, np.nan), "b": np.full(3, np.nan)}, True),
        ({}, True),
        (np.array([-3.0, -1.0, 0.0]), True),
        (np.array([-3.0, -1.0, 0.0]), False),
        (np.array([5.0]), True),
        (np.array([5.0]), False),
        (np.array([0.0]), False),
        (np.zeros(0), True),
        (np.full(20, 7.0), True),
        (np.array([np.inf, 1.0, 2.0]), True),
    ],
)
def test_degenerate_curves_do_not_crash(curves, log_y):
    picture = plots.loss_curves(curves, log_y=log_y, size=(240, 160))
    assert picture.shape == (160, 240, 3) and picture.dtype == np.uint8
    assert (picture.max(axis=2) < 100).any()  # at least the axes are drawn


def test_no_data_plots_show_no_curve_but_a_frame():
    picture = plots.loss_curves(np.full(10, np.nan), size=(240, 160))
    assert not _mask(picture, BLUE).any()
    assert _mask(picture, plots.NOTE_GREY).any()  # the "no data" note


def test_single_point_is_drawn():
    assert _mask(plots.loss_curves(np.array([3e8])), BLUE).any()


def test_negative_values_on_a_log_axis_are_skipped_not_plotted():
    with_negative = plots.loss_curves(np.array([1e9, -5.0, 1e8, 1e7]))
    assert _mask(with_negative, BLUE).any()


def test_xy_tuples_set_the_x_values():
    y = np.geomspace(1e9, 1e7, 100)
    # "a" at x = 51..100 covers the right half of "b" at x = 1..100 (its default x).
    picture = plots.loss_curves({"a": (np.arange(51, 101), np.full(50, 5e8)), "b": y})
    _, cols_a = np.nonzero(_curve_mask(picture, BLUE))
    _, cols_b = np.nonzero(_curve_mask(picture, plots.CURVE_COLOURS[1]))
    middle = cols_b.min() + 50 / 99 * (cols_b.max() - cols_b.min())
    assert cols_a.min() == pytest.approx(middle, abs=3)
    with pytest.raises(ValueError, match="equal length"):
        plots.loss_curves({"a": (np.arange(3), y)})


def test_a_too_small_size_is_refused():
    with pytest.raises(ValueError, match="larger"):
        plots.loss_curves(np.ones(3), size=(40, 30))


# --------------------------------------------------------------------------- ticks, font


@pytest.mark.parametrize(
    "value, step, label",
    [(1e9, 1e9, "1e9"), (2e-5, 1e-5, "2e-5"), (0.02, 0.01, "0.02"), (300.0, 100.0, "300"),
     (1.5e9, 5e8, "1.5e9"), (0.6000000001, 0.2, "0.6"), (0.0, 1.0, "0"), (1e-17, 0.1, "0")],
)
def test_tick_labels_are_short(value, step, label):
    assert plots._format_tick(value, step) == label


def test_log_ticks_are_decades_when_the_range_spans_several():
    ticks = plots._log_ticks(6.7, 10.2)
    assert [label for _, label in ticks] == ["1e7", "1e8", "1e9", "1e10"]
    many = plots._log_ticks(-20.0, 20.0)
    assert 2 <= len(many) <= 7


def test_linear_ticks_are_round_and_inside_the_range():
    ticks = plots._linear_ticks(1.0, 500.0, integer=True)
    values = [v for v, _ in ticks]
    assert values == [100.0, 200.0, 300.0, 400.0, 500.0]
    assert all(1.0 <= v <= 500.0 for v in values)
    assert [v for v, _ in plots._linear_ticks(1.0, 3.0, integer=True)] == [1.0, 2.0, 3.0]


def test_font_falls_back_to_the_bitmap_font(monkeypatch):
    original = ImageFont.load_default

    def old_pillow(size=None):
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return original()

    plots.font.cache_clear()
    monkeypatch.setattr(ImageFont, "load_default", old_pillow)
    try:
        assert plots.font(14) is not None
        sheet = plots.contact_sheet(
            [_solid(COLOURS[0]), None], 1, 2, row_labels=["r\ns"], col_labels=["a", "b"]
        )
        assert _mask(sheet, COLOURS[0]).sum() == 400
        assert plots.loss_curves({"a": np.ones(3), "b": np.ones(3) * 2}).dtype == np.uint8
    finally:
        plots.font.cache_clear()
