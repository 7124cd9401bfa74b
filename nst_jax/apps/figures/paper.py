"""The paper's figures as sweeps, and the quantitative trends each one shows.

Gatys, Ecker & Bethge (CVPR 2016): Fig. 2 (reconstructions of the content from
one layer, of the style from growing layer sets), Fig. 4 (the α/β trade-off),
Fig. 5 (content matched at ``conv2_2`` vs ``conv4_2``), Fig. 6 (initialisation
from the content, the style, or white noise). Each figure is one
:class:`nst_jax.sweep.Grid` (Fig. 2 is two), run as one compiled call; each
``*_trend`` function turns its results into numbers and the paper's claim as a
boolean, so a script can print them and a test can check them.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from nst_jax.config import STYLE_LAYERS, Config
from nst_jax.sweep import Grid, PointResult

FIG2_CONTENT_LAYERS = ("conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
# conv1_1; conv1_1 + conv2_1; ... ; conv1_1 ... conv5_1.
FIG2_STYLE_SETS = tuple(STYLE_LAYERS[:k] for k in range(1, len(STYLE_LAYERS) + 1))
# The paper's 1e-5 ... 1e-1, and 1: on these weights the useful range lies higher (docs/paper.md).
FIG4_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
FIG5_CONTENT_LAYERS = ("conv2_2", "conv4_2")
# The paper shows Fig. 5 at α/β = 1e-3 on its normalised network. On these (unnormalised)
# weights 1e-3 is nearly pure texture at small sizes, so neither layer keeps much of the
# photo; 1e-2 is where the content term is as large as the style term (see Fig. 4).
FIG5_RATIO = 1e-2
FIG6_SEEDS = (0, 1, 2)
FIGURES = ("fig2_content", "fig2_style", "fig4", "fig5", "fig6")


def fig2_content_grid(base: Config = Config()) -> Grid:
    """Fig. 2, bottom: the content image reconstructed from one layer each (β = 0)."""
    return Grid.product(dataclasses.replace(base, alpha=1.0, beta=0.0),
                        content_layers=FIG2_CONTENT_LAYERS)


def fig2_style_grid(base: Config = Config()) -> Grid:
    """Fig. 2, top: the style reconstructed from ``conv1_1``, ``conv1_1 + conv2_1``, ... (α = 0)."""
    return Grid.product(dataclasses.replace(base, alpha=0.0, beta=1.0), style_layers=FIG2_STYLE_SETS)


def fig4_grid(base: Config = Config(), ratios: Sequence[float] = FIG4_RATIOS) -> Grid:
    """Fig. 4: the same transfer at α/β from 1e-5 (style) to 1e-1 (content)."""
    return Grid.product(base, ratio=tuple(ratios))


def fig5_grid(base: Config = Config(), ratio: float = FIG5_RATIO) -> Grid:
    """Fig. 5: the content matched at ``conv2_2`` or ``conv4_2`` (at α/β = ``ratio``)."""
    return Grid.product(dataclasses.replace(base, alpha=ratio, beta=1.0),
                        content_layers=FIG5_CONTENT_LAYERS)


def fig6_grid(base: Config = Config(), seeds: Sequence[int] = FIG6_SEEDS) -> Grid:
    """Fig. 6: start from the content image, the style image, and white noise of several seeds."""
    configs = ([dataclasses.replace(base, init="content"), dataclasses.replace(base, init="style")]
               + [dataclasses.replace(base, init="noise", seed=int(s)) for s in seeds])
    names = ("content", "style") + tuple(f"noise {s}" for s in seeds)
    return Grid(tuple(configs), (("init", names),))


def grids(base: Config = Config()) -> dict[str, Grid]:
    """Every figure's grid, by name (:data:`FIGURES`)."""
    return {"fig2_content": fig2_content_grid(base), "fig2_style": fig2_style_grid(base),
            "fig4": fig4_grid(base), "fig5": fig5_grid(base), "fig6": fig6_grid(base)}


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


@dataclasses.dataclass(frozen=True)
class Trend:
    """What a figure shows: ``holds`` is the paper's claim, ``values`` the numbers behind it."""

    claim: str
    holds: bool
    values: dict

    def report(self) -> str:
        numbers = "; ".join(f"{k}: {_fmt(v)}" for k, v in self.values.items())
        return f"[{'holds' if self.holds else 'DOES NOT HOLD'}] {self.claim} ({numbers})"


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _increasing(values: Sequence[float], slack: float = 0.0) -> bool:
    """Each value above the previous one, or below it by at most ``slack`` (relative)."""
    return all(b > a * (1.0 - slack) for a, b in zip(values, values[1:]))


def fig2_content_trend(results: Sequence[PointResult], content: np.ndarray) -> Trend:
    """Reconstructions from deeper layers keep less of the content image's pixels."""
    distances = [_rms(r.image, content) for r in results]
    return Trend("reconstructions from deeper layers drift further from the content pixels "
                 f"(RMS distance, {' < '.join(FIG2_CONTENT_LAYERS)})",
                 distances[-1] > distances[0] and _increasing(distances[:3]),
                 {"rms_to_content": distances})


def fig2_style_trend(results: Sequence[PointResult]) -> Trend:
    """Every style reconstruction lowers its style loss well below the start's."""
    ratios = [r.style / r.trace[0] if np.isfinite(r.trace[0]) and r.trace[0] > 0 else np.nan
              for r in results]
    return Trend("each style reconstruction matches its Gram matrices (final / first style "
                 "loss, conv1_1 ... conv1_1-conv5_1)",
                 bool(np.all(np.asarray(ratios) < 0.5)), {"final_over_first": ratios})


def fig4_trend(results: Sequence[PointResult], slack: float = 0.1) -> Trend:
    """As α/β falls, the style loss falls and the content loss rises.

    Where the style term already dominates, further ratios change little and the
    losses wander by optimisation noise: a step the wrong way of at most
    ``slack`` (relative) is allowed, and the whole range must move each loss by
    more than 2x. ``style_saturated_at`` is the largest ratio whose style loss is
    within 10% of the smallest: below it the ratio no longer matters.
    """
    ordered = sorted(results, key=lambda r: r.config.alpha / r.config.beta, reverse=True)
    ratios = [r.config.alpha / r.config.beta for r in ordered]
    style = [r.style for r in ordered]
    content = [r.content for r in ordered]
    holds = (_increasing(content, slack) and _increasing(style[::-1], slack)
             and content[-1] > 2 * content[0] and style[0] > 2 * style[-1])
    saturated = max(r for r, v in zip(ratios, style) if v <= 1.1 * min(style))
    return Trend("as alpha/beta falls, the final style loss falls and the content loss rises",
                 holds, {"alpha/beta": ratios, "style": style, "content": content,
                         "style_saturated_at": saturated})


def fig5_trend(results: Sequence[PointResult], content: np.ndarray) -> Trend:
    """Content matched at ``conv2_2`` keeps the content image's pixels closer than ``conv4_2``."""
    by_layer = {r.config.content_layers: _rms(r.image, content) for r in results}
    shallow, deep = by_layer[("conv2_2",)], by_layer[("conv4_2",)]
    return Trend("content at conv2_2 keeps the photo's pixels closer than at conv4_2 "
                 "(RMS distance to the content image)", shallow < deep,
                 {"conv2_2": shallow, "conv4_2": deep})


def fig6_trend(results: Sequence[PointResult], factor: float = 3.0,
               min_pixel_rms: float = 0.01) -> Trend:
    """Content- and style-initialised runs end at similar losses; noise seeds give different pixels.

    "Similar": within ``factor`` of each other, from starts that are orders of
    magnitude apart (``start_ratio``, their losses after the first iteration).
    "Different": every pair of noise-seeded results differs by at least
    ``min_pixel_rms`` (pixel RMS, images in [0, 1]).
    """
    by_init = {r.config.init: r for r in results if r.config.init != "noise"}
    noise = [r for r in results if r.config.init == "noise"]
    a, b = by_init["content"], by_init["style"]
    end_ratio = max(a.total, b.total) / min(a.total, b.total)
    start_ratio = max(a.trace[0], b.trace[0]) / min(a.trace[0], b.trace[0])
    pairs = [_rms(x.image, y.image) for i, x in enumerate(noise) for y in noise[i + 1:]]
    holds = end_ratio <= factor and bool(pairs) and min(pairs) >= min_pixel_rms
    return Trend(f"content- and style-initialised runs end within {factor:g}x of each other's "
                 f"loss; noise seeds end at different images (pixel RMS >= {min_pixel_rms})",
                 holds, {"loss_content_init": a.total, "loss_style_init": b.total,
                         "end_ratio": end_ratio, "start_ratio": float(start_ratio),
                         "noise_pair_rms": pairs})
