"""The artistic controls as figures, and the numbers that show each does what it promises.

Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
Neural Style Transfer" (CVPR 2017), on the bundled examples (Chelsea; Starry
Night and the fruits photo):

``colors``
    §5: the five ``preserve_colors`` modes. Luminance-only transfer keeps the
    content's chroma and changes its luminance; histogram matching brings the
    output's colour statistics closer to the content's than plain transfer does.
``blend``
    §3 (combining styles): one sweep over ``style_blend_weights``. Weights (1, 0)
    are Starry Night alone, and the output's style loss against each style alone
    moves monotonically along the blend.
``regions``
    §4 (spatial control): Starry Night in the left half, fruits in the right,
    swept over ``region_weights``; each region takes its own style's colours.
``scale``
    §6 (scale): ``style_scale`` 0.5, 1, 2; a larger style image gives larger
    structures (swirls), so a longer typical period in the output's luminance.

The grid and config builders say what each figure runs; ``*_trend`` turn the
outputs (float ``(H, W, 3)`` images in [0, 1]) into a :class:`paper.Trend` (the
claim, whether it holds, the numbers), as pure NumPy so that tests can feed them
arrays whose answer is known.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from nst_jax import colors
from nst_jax.measures import (HIGH_FREQUENCY, chroma_difference, color_distance, color_stats,  # noqa: F401
                              high_frequency_share, luminance_difference, texture_period, yiq)
from nst_jax.apps.figures.paper import Trend
from nst_jax.config import COLOR_MODES, Config, example_path
from nst_jax.sweep import Grid, PointResult, to_host

FIGURES = ("colors", "blend", "regions", "scale")
CONTENT = "chelsea.jpg"
STYLES = ("starry_night.jpg", "fruits.jpg")
STYLE_NAMES = ("Starry Night", "fruits")
STYLE_KEYS = ("starry_night", "fruits")  # in the checks' value names
# Weight of Starry Night falling from 1 to 0 (fruits the rest).
BLEND_WEIGHTS = ((1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0))
# The first point weighs both regions equally: the one the regions check reads.
REGION_WEIGHTS = ((1.0, 1.0), (1.0, 0.25), (0.25, 1.0))
STYLE_SCALES = (0.5, 1.0, 2.0)

# Mean |ΔI|, |ΔQ| (YIQ of [0, 1] RGB) allowed between the output's chroma and the content's:
# 8-bit rounding and the clip to [0, 1] of the recombined pixels move it a little.
CHROMA_TOLERANCE = 0.01
# Mean |ΔY| the luminance-only output must differ from the content by: stylised, not copied.
MIN_LUMINANCE_CHANGE = 0.02
# "The same image": at most one 8-bit level apart in any pixel.
SAME_IMAGE_LEVELS = 1


def style_paths() -> tuple[str, str]:
    """(Starry Night, fruits): the bundled styles of every figure."""
    return tuple(str(example_path(name)) for name in STYLES)


def example_base(base: Config = Config()) -> Config:
    """``base`` on the bundled content with Starry Night alone, no controls set."""
    return base.replace(content=str(example_path(CONTENT)), style=style_paths()[:1],
                        style_blend_weights=None, style_scale=None, style_size=None,
                        preserve_colors="none", content_masks=None, style_masks=None,
                        region_weights=None)


# --------------------------------------------------------------------------- runs


def colors_configs(base: Config = Config()) -> dict[str, Config]:
    """One Starry Night run per colour mode (each mode fixes the program: separate runs)."""
    base = example_base(base)
    return {mode: base.replace(preserve_colors=mode) for mode in COLOR_MODES}


def blend_grid(base: Config = Config(), weights: Sequence[tuple[float, float]] = BLEND_WEIGHTS
               ) -> Grid:
    """Both styles, blended by each of ``weights`` (one compiled sweep)."""
    return Grid.product(example_base(base).replace(style=style_paths()),
                        style_blend_weights=tuple(weights))


def region_masks(height: int, width: int) -> np.ndarray:
    """``(2, H, W)`` float32 in {0, 1}: the left and the right half, a partition of the image."""
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1.0
    return np.stack([left, 1.0 - left])


def regions_grid(base: Config, mask_paths: Sequence[str],
                 weights: Sequence[tuple[float, float]] = REGION_WEIGHTS) -> Grid:
    """Style ``k`` in the region of ``mask_paths[k]``, swept over ``region_weights``."""
    return Grid.product(example_base(base).replace(style=style_paths(),
                                                   content_masks=tuple(map(str, mask_paths))),
                        region_weights=tuple(weights))


def scale_configs(base: Config = Config(), scales: Sequence[float] = STYLE_SCALES
                  ) -> dict[float, Config]:
    """One Starry Night run per ``style_scale`` (the style's size fixes the program)."""
    base = example_base(base)
    return {float(s): base.replace(style_scale=(float(s),)) for s in scales}


def run_key(config: Config) -> Config:
    """``config`` as far as its run goes: ``style_scale`` 1 sizes every style as the
    default does, so that run is the plain one (the figures share it, not rerun it)."""
    if config.style_scale is not None and set(config.style_scale) == {1.0}:
        return config.replace(style_scale=None)
    return config


def as_original_colors(none: PointResult, content: np.ndarray) -> PointResult:
    """The ``original`` colour mode's result from the ``none`` run of the same settings.

    ``original`` optimises exactly what ``none`` does (same loss, same start) and only
    then joins the output's luminance with the content's chroma
    (:func:`nst_jax.colors.finish`); applied to the ``none`` run's 8-bit pixels, as the
    sweep applies it, this gives the separate run's 8-bit image (checked at 32 and 64 px)
    without a second optimisation. Losses are the optimised pixels', as for every mode.
    """
    image = colors.finish("original", np.asarray(none.image, np.float32), content)
    image = np.asarray(np.round(np.asarray(image) * 255.0) / 255.0, np.float32)
    return dataclasses.replace(none, image=image,
                               config=none.config.replace(preserve_colors="original"))


def style_losses(sweeper, base: Config, images: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, K)``: eq. 5's style loss of each image against each of the ``K`` styles alone.

    Evaluated by ``sweeper`` (a blend sweep of ``K`` styles) with the blend weight of
    style ``k`` set to 1 and the others to 0, which makes the target exactly style ``k``'s
    Gram matrices (``1 A + 0 B = A``): the single-style loss, from the targets the sweep
    already holds.
    """
    pixels = np.stack([np.asarray(image, np.float32) for image in images])
    out = []
    for k in range(len(base.style)):
        one_hot = tuple(float(j == k) for j in range(len(base.style)))
        grid = Grid((base.replace(style_blend_weights=one_hot),) * len(images))
        points = sweeper.place(grid.points(None, sweeper.content_layers, sweeper.style_layers,
                                        sweeper.distances))
        _, terms = sweeper.terms(pixels, points)
        out.append(np.asarray(to_host(terms.style), np.float64))
    return np.stack(out, axis=1)


# -------------------------------------------------------------------- measurements


def _monotone(values: Sequence[float], rising: bool) -> bool:
    pairs = list(zip(values, values[1:]))
    return all(b > a for a, b in pairs) if rising else all(b < a for a, b in pairs)


# -------------------------------------------------------------------------- trends


def colors_trend(outputs: Mapping[str, np.ndarray], content: np.ndarray,
                 chroma_tolerance: float = CHROMA_TOLERANCE,
                 min_luminance_change: float = MIN_LUMINANCE_CHANGE) -> Trend:
    """§5: what each colour mode keeps of the content's colours.

    ``outputs`` maps every mode of :data:`nst_jax.config.COLOR_MODES` to its output
    image. ``luminance`` and ``original`` keep the content's chroma (mean ``|ΔI|, |ΔQ|``
    at most ``chroma_tolerance``); ``luminance`` still changes the luminance (mean
    ``|ΔY|`` above ``min_luminance_change``); each histogram mode's colour mean and
    covariance lie closer to the content's (:func:`color_distance`) than ``none``'s do.
    """
    target = color_stats(content)
    chroma = {mode: chroma_difference(outputs[mode], content) for mode in ("luminance", "original")}
    distance = {mode: color_distance(color_stats(outputs[mode]), target)
                for mode in ("none", "histogram", "histogram-cholesky")}
    y_change = luminance_difference(outputs["luminance"], content)
    holds = (all(v <= chroma_tolerance for v in chroma.values()) and y_change > min_luminance_change
             and distance["histogram"] < distance["none"]
             and distance["histogram-cholesky"] < distance["none"])
    return Trend(f"luminance and original keep the content's chroma (mean |dI|,|dQ| <= "
                 f"{chroma_tolerance:g}) while luminance restyles Y (mean |dY| > "
                 f"{min_luminance_change:g}); both histogram modes end nearer the content's "
                 "colour mean and covariance than none (|dmu| + |dSigma|_F)", holds,
                 {"chroma_luminance": chroma["luminance"], "chroma_original": chroma["original"],
                  "dY_luminance": y_change,
                  **{f"colour_distance_{mode}": d for mode, d in distance.items()}})


def blend_trend(weights: Sequence[Sequence[float]], images: Sequence[np.ndarray],
                alone: np.ndarray, losses: np.ndarray,
                levels: int = SAME_IMAGE_LEVELS) -> Trend:
    """§3: blending two styles.

    Args:
      weights: each point's blend weights (style 1, style 2); one point must be (w, 0).
      images: each point's output; alone: a run of style 1 alone with the same settings.
      losses: ``(N, 2)`` style loss of each output against style 1 and style 2 alone
        (:func:`style_losses`).
    Holds when the (1, 0) point is ``alone`` within ``levels`` 8-bit levels and, as the
    weight of style 1 falls, the loss against style 1 rises and against style 2 falls.
    """
    share = [w[0] / (w[0] + w[1]) for w in weights]
    first = share.index(1.0)
    diff = float(np.max(np.abs(np.asarray(images[first], np.float64)
                               - np.asarray(alone, np.float64)))) * 255.0
    order = np.argsort(share)[::-1]
    losses = np.asarray(losses, np.float64)[order]
    against_1, against_2 = losses[:, 0].tolist(), losses[:, 1].tolist()
    # 1e-3 of a level: float32 values k/255 are not exact, so neither is their difference.
    holds = (diff <= levels + 1e-3 and _monotone(against_1, True)
             and _monotone(against_2, False))
    return Trend(f"weights (1, 0) give {STYLE_NAMES[0]} alone (max |dpixel| <= {levels} level); "
                 f"as its weight falls, the style loss against {STYLE_NAMES[0]} rises and "
                 f"against {STYLE_NAMES[1]} falls", holds,
                 {"alone_max_diff_levels": diff,
                  f"weight_{STYLE_KEYS[0]}": [share[i] for i in order],
                  f"E_{STYLE_KEYS[0]}": against_1, f"E_{STYLE_KEYS[1]}": against_2})


def regions_trend(image: np.ndarray, masks: np.ndarray, styles: Sequence[np.ndarray]) -> Trend:
    """§4: region ``r`` (``masks[r]``, ``(H, W)`` in [0, 1]) of ``image`` takes style ``r``'s
    colours: its mask-weighted colour statistics lie closer (:func:`color_distance`) to
    style ``r``'s than to any other style's."""
    targets = [color_stats(s) for s in styles]
    own, other = [], []
    for r, mask in enumerate(masks):
        stats = color_stats(image, mask)
        own.append(color_distance(stats, targets[r]))
        other.append(min(color_distance(stats, t) for k, t in enumerate(targets) if k != r))
    return Trend("each region's colour mean and covariance are nearer its own style's than the "
                 f"other's ({' | '.join(STYLE_NAMES[:len(own)])} regions)",
                 all(a < b for a, b in zip(own, other)),
                 {"to_own_style": own, "to_other_style": other})


def scale_trend(scales: Sequence[float], images: Sequence[np.ndarray]) -> Trend:
    """§6: as ``style_scale`` grows, the output's structures grow: its
    :func:`texture_period` rises at every step. The :func:`high_frequency_share` is
    reported beside it; it need not fall, since a larger style image also resolves
    finer strokes."""
    order = np.argsort(scales)
    periods = [texture_period(images[i]) for i in order]
    return Trend("a larger style scale gives larger structures: the median period of the "
                 f"luminance spectrum (below {HIGH_FREQUENCY:g} cycles/px) rises with the scale",
                 _monotone(periods, True),
                 {"style_scale": [float(scales[i]) for i in order], "texture_period_px": periods,
                  "high_frequency_share": [high_frequency_share(images[i]) for i in order]})
