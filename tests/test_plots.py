"""Tests for nst_jax.apps.common.plots: the pictures are checked by their pixels, not by eye."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import ImageFont

from nst_jax.apps.common import plots
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
#
# matplotlib antialiases, so a curve's pixels are those close to its colour (a
# pixel mostly covered by the ~2 px line), not exactly equal to it.

BLUE, ORANGE = plots.CURVE_COLOURS[:2]
# A legend swatch is a horizontal stroke this long or longer; a curve never is (they are steep here).
SWATCH_RUN = 15

needs_matplotlib = pytest.mark.skipif(not plots.have_matplotlib(), reason="matplotlib is not installed")


def _ink(picture: np.ndarray, colour, tolerance: int = 40) -> np.ndarray:
    """(H, W) bool: where ``picture`` is within ``tolerance`` of ``colour`` in every channel."""
    difference = np.abs(picture.astype(np.int16) - np.array(colour, np.int16))
    return difference.max(axis=2) <= tolerance


def _longest_row_run(mask: np.ndarray) -> int:
    """The longest horizontal run of True in any row of ``mask``."""
    best = 0
    for row in mask:
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        best = max(best, int((edges[1::2] - edges[::2]).max(initial=0)))
    return best


def _swatch_rows_cols(picture: np.ndarray, colour) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``colour``'s pixels in horizontal runs >= SWATCH_RUN: legend swatches."""
    mask = _ink(picture, colour)
    keep = np.zeros_like(mask)
    for r, row in enumerate(mask):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            if b - a >= SWATCH_RUN:
                keep[r, a:b] = True
    return np.nonzero(keep)


def _curve_cols(picture: np.ndarray, colours) -> list[np.ndarray]:
    """Per colour, the columns of its curve's pixels, with the legend (right of its swatches) blanked."""
    swatches = [_swatch_rows_cols(picture, c) for c in colours]
    rows = np.concatenate([r for r, _ in swatches])
    cols = np.concatenate([c for _, c in swatches])
    assert rows.size and cols.min() > picture.shape[1] / 2, "expected the legend in the right half"
    out = []
    for colour in colours:
        mask = _ink(picture, colour)
        mask[rows.min() - 12 : rows.max() + 13, cols.min() - 12 :] = False
        out.append(np.nonzero(mask)[1])
    return out


def test_importing_plots_does_not_import_matplotlib():
    code = "import sys, nst_jax.apps.common.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_matplotlib_loss_curves_is_a_one_line_nst_error(monkeypatch):
    # A None entry in sys.modules makes `import` fail as if the package were absent.
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] + [
        "matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg",
    ]:
        monkeypatch.setitem(sys.modules, name, None)
    assert plots.have_matplotlib() is False
    with pytest.raises(NSTError) as info:
        plots.loss_curves(np.ones(3))
    assert str(info.value) == "the loss-curve plots need matplotlib: pip install 'nst_jax[plots]'"
    # The contact sheet is Pillow only and still works.
    assert plots.contact_sheet([_solid(COLOURS[0])], 1, 1).dtype == np.uint8


@needs_matplotlib
def test_have_matplotlib_when_installed():
    assert plots.have_matplotlib() is True


@needs_matplotlib
@pytest.mark.parametrize("size", [(480, 320), (300, 200), (481, 233), plots.MIN_SIZE])
def test_loss_curves_shape_and_dtype(size):
    picture = plots.loss_curves(np.geomspace(1e10, 1e6, 50), size=size)
    assert picture.shape == (size[1], size[0], 3) and picture.dtype == np.uint8
    assert picture.flags.c_contiguous


@needs_matplotlib
@pytest.mark.parametrize("log_y", [True, False])
def test_decreasing_curve_goes_from_upper_left_to_lower_right(log_y):
    picture = plots.loss_curves(np.geomspace(1e10, 1e6, 200), log_y=log_y)
    rows, cols = np.nonzero(_ink(picture, BLUE))
    assert rows.size > 200, "the curve's colour should be drawn"
    width = picture.shape[1]
    left, right = rows[cols < width / 3], rows[cols > 2 * width / 3]
    assert left.size and right.size
    assert left.mean() < right.mean()  # image rows grow downwards


@needs_matplotlib
def test_increasing_curve_goes_up():
    picture = plots.loss_curves(np.linspace(1.0, 5.0, 30), log_y=False)
    rows, cols = np.nonzero(_ink(picture, BLUE))
    assert rows[cols < cols.mean()].mean() > rows[cols > cols.mean()].mean()


@needs_matplotlib
def test_several_curves_get_distinct_colours_and_a_legend():
    curves = {"lbfgs": np.geomspace(1e9, 1e7, 40), "adam": np.geomspace(2e9, 5e7, 40)}
    picture = plots.loss_curves(curves)
    assert BLUE != ORANGE
    assert _ink(picture, BLUE).sum() > 100 and _ink(picture, ORANGE).sum() > 100
    # Each curve has a swatch in the legend: a horizontal stroke of its colour.
    assert _longest_row_run(_ink(picture, BLUE)) >= SWATCH_RUN
    assert _longest_row_run(_ink(picture, ORANGE)) >= SWATCH_RUN
    # A lone curve gets no legend.
    single = plots.loss_curves({"lbfgs": curves["lbfgs"]})
    assert _ink(single, BLUE).sum() > 100
    assert _longest_row_run(_ink(single, BLUE)) < SWATCH_RUN


@needs_matplotlib
def test_legend_keeps_labels_matplotlib_would_hide():
    # matplotlib's legend drops labels starting with "_" unless given explicitly.
    picture = plots.loss_curves({"_a": np.geomspace(1e9, 1e7, 40), "_b": np.geomspace(2e9, 5e7, 40)})
    assert _longest_row_run(_ink(picture, BLUE)) >= SWATCH_RUN
    assert _longest_row_run(_ink(picture, ORANGE)) >= SWATCH_RUN


@needs_matplotlib
def test_a_curve_with_no_data_is_still_in_the_legend():
    picture = plots.loss_curves({"ok": np.geomspace(1e9, 1e7, 40), "diverged": np.full(40, np.nan)})
    assert _longest_row_run(_ink(picture, ORANGE)) >= SWATCH_RUN  # its swatch ...
    swatch_rows, _ = _swatch_rows_cols(picture, ORANGE)
    assert _ink(picture, ORANGE).sum() == swatch_rows.size  # ... and nothing else


@needs_matplotlib
def test_trailing_nans_are_skipped_and_x_keeps_its_meaning():
    short = np.full(100, np.nan)
    short[:40] = np.geomspace(1e8, 1e7, 40)
    picture = plots.loss_curves({"short": short, "full": np.geomspace(1e9, 1e7, 100)})
    cols_short, cols_full = _curve_cols(picture, (BLUE, ORANGE))
    # "short" spans x = 1..40 and "full" ends at x = 100, on one x axis.
    start, span = cols_short.min(), cols_full.max() - cols_short.min()
    assert cols_short.max() - start == pytest.approx(39 / 99 * span, abs=0.03 * span)
    # Trailing NaNs draw exactly what the same points without them draw.
    assert np.array_equal(picture, plots.loss_curves(
        {"short": (np.arange(1, 41), short[:40]), "full": np.geomspace(1e9, 1e7, 100)}))


@needs_matplotlib
def test_a_nan_breaks_the_line():
    y = np.array([1e9, 5e8, np.nan, 2e8, 1e8])  # x = 1..5, nothing between x = 2 and x = 4
    picture = plots.loss_curves(y)
    cols = np.nonzero(_ink(picture, BLUE))[1]
    x_of = lambda col: 1 + 4 * (col - cols.min()) / (cols.max() - cols.min())  # noqa: E731
    xs = x_of(cols)
    assert ((xs > 1.5) & (xs < 2)).any() and ((xs > 4) & (xs < 4.5)).any()
    assert not ((xs > 2.3) & (xs < 3.7)).any()


@needs_matplotlib
def test_xy_tuples_set_the_x_values():
    y = np.geomspace(1e9, 1e7, 100)
    # "a" at x = 51..100 starts half way along "b", which is at x = 1..100 (its default x).
    picture = plots.loss_curves({"a": (np.arange(51, 101), np.geomspace(3e8, 3e7, 50)), "b": y})
    cols_a, cols_b = _curve_cols(picture, (BLUE, ORANGE))
    middle = cols_b.min() + 50 / 99 * (cols_b.max() - cols_b.min())
    assert cols_a.min() == pytest.approx(middle, abs=3)
    assert cols_a.max() == pytest.approx(cols_b.max(), abs=2)
    # Without x, x is the 1-based iteration.
    assert np.array_equal(plots.loss_curves({"b": y}), plots.loss_curves({"b": (np.arange(1, 101), y)}))


def test_mismatched_x_and_y_are_refused():
    with pytest.raises(ValueError, match="equal length"):
        plots.loss_curves({"a": (np.arange(3), np.ones(4))})
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        plots.loss_curves({"a": (np.arange(3), np.ones(3), np.ones(3))})


@needs_matplotlib
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
        (np.full(20, 7.0), False),
        (np.array([np.inf, 1.0, 2.0]), True),
        ({"a": (np.array([3.0, 3.0]), np.array([1.0, 2.0]))}, True),
        ({"a": (np.array([0.5, 1.5]), np.array([1.0, 2.0])), "b": np.ones(3)}, False),
    ],
)
def test_degenerate_curves_do_not_crash_or_warn(curves, log_y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        picture = plots.loss_curves(curves, log_y=log_y, size=(240, 160))
    assert picture.shape == (160, 240, 3) and picture.dtype == np.uint8
    assert (picture.max(axis=2) < 100).any()  # at least the frame is drawn


@needs_matplotlib
@pytest.mark.parametrize("curves", [np.full(10, np.nan), {}, np.array([-1.0, 0.0])])
def test_no_data_gives_an_empty_frame_that_says_so(curves):
    picture = plots.loss_curves(curves, size=(240, 160))
    assert not _ink(picture, BLUE).any()  # no curve
    # The "no data" note: grey text in the middle of the picture, and nothing else grey-ish
    # there (no grid lines, since there are no ticks).
    middle = picture[60:100, 60:180].astype(np.int16)
    assert (np.abs(middle - np.array(plots.NOTE_GREY)).max(axis=2) <= 15).sum() > 10
    assert np.array_equal(picture, plots.loss_curves(np.full(3, np.nan), size=(240, 160)))


@needs_matplotlib
def test_single_point_is_drawn():
    assert _ink(plots.loss_curves(np.array([3e8])), BLUE).sum() > 4


@needs_matplotlib
def test_negative_values_on_a_log_axis_are_skipped_not_plotted():
    y = np.array([1e9, -5.0, 1e8, 1e7])
    assert _ink(plots.loss_curves(y), BLUE).any()
    # The axis is the one of the positive points alone (x = 1 is a lone dot, then a gap).
    positive = (np.array([1.0, 3.0, 4.0]), y[[0, 2, 3]])
    gap = (np.array([1.0, 2.0, 3.0, 4.0]), np.array([1e9, np.nan, 1e8, 1e7]))
    assert np.array_equal(plots.loss_curves({"": gap}), plots.loss_curves(y))
    assert not np.array_equal(plots.loss_curves({"": positive}), plots.loss_curves(y))


@needs_matplotlib
def test_dollar_signs_are_text_not_maths():
    # "$x_{1$" would be a mathtext syntax error if it were parsed as maths.
    curves = {"$x_{1$": np.ones(3), "b$": np.ones(3) * 2}
    picture = plots.loss_curves(curves, title="cost $x_{1$ here", ylabel="$")
    assert picture.dtype == np.uint8


def test_a_too_small_size_is_refused():
    with pytest.raises(ValueError, match="too small.*make it larger"):
        plots.loss_curves(np.ones(3), size=(40, 30))
    with pytest.raises(ValueError, match="too small"):
        plots.loss_curves(np.ones(3), size=(plots.MIN_SIZE[0], plots.MIN_SIZE[1] - 1))


@needs_matplotlib
def test_same_input_gives_identical_bytes_whatever_was_drawn_before():
    curves = {"lbfgs": np.geomspace(1e9, 1e7, 60), "adam": np.geomspace(2e9, 5e7, 60)}
    first = plots.loss_curves(curves, title="sweep")
    plots.loss_curves(np.linspace(5, 1, 10), title="something else", log_y=False, size=(300, 200))
    assert first.tobytes() == plots.loss_curves(curves, title="sweep").tobytes()


@needs_matplotlib
def test_global_matplotlib_settings_are_neither_used_nor_changed():
    import matplotlib

    curves = {"lbfgs": np.geomspace(1e9, 1e7, 60), "adam": np.geomspace(2e9, 5e7, 60)}
    before = dict(matplotlib.rcParams)
    plain = plots.loss_curves(curves)
    assert dict(matplotlib.rcParams) == before
    styled = {"axes.prop_cycle": matplotlib.cycler(color=["k", "r"]), "lines.linewidth": 8.0}
    with matplotlib.rc_context(styled):
        assert np.array_equal(plots.loss_curves(curves), plain)


# --------------------------------------------------------------------------------- font


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
    finally:
        plots.font.cache_clear()
