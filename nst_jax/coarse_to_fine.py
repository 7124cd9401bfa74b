"""Coarse to fine: stylize a small image first, then larger ones, each starting from the last.

Gatys et al. 2017 (§6) make high-resolution images this way, and crowsonkb's
``style_transfer`` does it by default: at a small size the receptive fields of
VGG's deep layers cover much of the image, so the optimisation arranges large,
coherent structures cheaply; each larger scale then starts from that
arrangement, upsampled, and only adds the detail the new pixels can hold.

A run is a *ladder* of long sides (:func:`ladder`) from ``config.start_size`` up
to ``config.size``, growing by about √2 per scale. Each scale is an ordinary
single-scale run (:func:`nst_jax.stylize.prepare`, one compilation per scale)
of a :class:`~nst_jax.config.Config` made for it by :func:`plan`: its ``size``,
``config.coarse_iterations`` iterations (``config.iterations`` at the last
scale), and the style images resized by the same rules as at the last scale
(``style_scale`` is relative to the size already; a ``style_size`` in px is
scaled with the scale). The content, the styles and the masks are read again
from their files at each scale's size (:func:`nst_jax.stylize.load_inputs`), so
the content and style targets are recomputed there, and whatever the config
asks of the loss (tiles, for one) applies per scale. The first scale starts as
``config.init`` says; every later one from the previous scale's best image,
upsampled bicubically (Pillow's ``BICUBIC``, then clipped to [0, 1]). That
image is the optimised pixels, before any colour preservation: with
``preserve_colors='luminance'`` or ``'original'`` the content's colours are put
back once, on the last scale's output. The output and its loss are the last
scale's.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image

from nst_jax import images, stylize
from nst_jax.config import MIN_SIDE, Config, ConfigError, mention
from nst_jax.errors import NSTError


def ladder(start: int, size: int) -> tuple[int, ...]:
    """The long sides of the scales, from ``start`` up to ``size``, by about √2 each.

    With ``L = log2(size / start)`` there are ``n = max(1, round(2 L))`` steps (``round``
    halves up), each by the same factor ``(size / start) ** (1 / n)``, which is within a
    factor ``2 ** (1 / (4 n))`` of √2 (1.19-1.68 for one step, 1.30-1.54 for two), or
    below that when ``start`` is within ``2 ** (1 / 4)`` of ``size`` (one step). The sides
    are rounded to the nearest px; the first is ``start`` and the last is ``size`` exactly.
    ``start >= size`` gives one scale, ``(size,)``.

    >>> ladder(256, 1024)
    (256, 362, 512, 724, 1024)
    >>> ladder(300, 1024)
    (300, 408, 554, 753, 1024)
    """
    if start >= size:
        return (size,)
    steps = max(1, math.floor(2 * math.log2(size / start) + 0.5))
    factor = (size / start) ** (1.0 / steps)
    return tuple(round(start * factor**k) for k in range(steps)) + (size,)


@dataclasses.dataclass(frozen=True)
class Scale:
    """One rung of the ladder: ``index`` (from 0) of ``count``, its long side ``size``
    and the single-scale ``config`` that runs it."""

    index: int
    count: int
    size: int
    config: Config

    @property
    def last(self) -> bool:
        return self.index == self.count - 1

    def label(self) -> str:
        """``'scale 2/4, 362 px'``."""
        return f"scale {self.index + 1}/{self.count}, {self.size} px"


def _at_coarse_scale(error: ConfigError, config: Config, scale: Scale) -> ConfigError:
    """``error``, met at a scale below the last, reworded to point at ``start_size``."""
    if error.field == "size":  # e.g. "64 makes the content image ... 64x12 px ...: raise it"
        return ConfigError("start_size", error.template)
    return ConfigError(error.field, f"{error.template} (at the scale of {scale.size} px that "
                                    f"{mention('start_size')} {config.start_size} begins the "
                                    f"ladder with: raise {mention('start_size')})")


def plan(config: Config) -> tuple[Scale, ...]:
    """The scales of ``config``: one (``config`` itself) without ``start_size``; otherwise
    one per side of :func:`ladder`, each with a single-scale config (``start_size``
    None, ``iterations`` = ``coarse_iterations`` but at the last scale, ``style_size``
    scaled by ``size / config.size``).

    Raises:
      ConfigError: a style image would be smaller than 16 px (or larger than 4096) at
        some scale (checked here, before any work, rather than when that scale starts).
    """
    if config.start_size is None:
        return (Scale(0, 1, config.size, config),)
    sides = ladder(config.start_size, config.size)
    scales = []
    for index, side in enumerate(sides):
        last = index == len(sides) - 1
        changes = {"size": side, "start_size": None,
                   "iterations": config.iterations if last else config.coarse_iterations}
        if config.style_size is not None and not last:
            style_side = round(config.style_size * side / config.size)
            if style_side < MIN_SIDE:
                raise ConfigError("start_size", f"{config.start_size} gives the style images a "
                                                f"long side of {style_side} px at the first scale "
                                                f"({mention('style_size')} {config.style_size} x "
                                                f"{side}/{config.size}); it must be at least "
                                                f"{MIN_SIDE} px: raise {mention('start_size')} or "
                                                f"{mention('style_size')}")
            changes["style_size"] = style_side
        scale = Scale(index, len(sides), side, config.replace(**changes))
        try:
            stylize.style_sides(scale.config)
        except ConfigError as e:
            raise (e if last else _at_coarse_scale(e, config, scale)) from None
        scales.append(scale)
    return tuple(scales)


def inputs_at(scale: Scale, config: Config) -> stylize.Inputs:
    """:func:`nst_jax.stylize.load_inputs` at ``scale`` of ``config``, with errors met at a
    scale below the last (an image too thin) pointing at ``start_size``."""
    try:
        return stylize.load_inputs(scale.config)
    except ConfigError as e:
        raise (e if scale.last else _at_coarse_scale(e, config, scale)) from None


def upsample(pixels: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """``(h, w, 3)`` in [0, 1] -> ``(H, W, 3)`` in [0, 1]: Pillow's bicubic filter per channel
    on float32 (nothing quantised), clipped to [0, 1] (bicubic overshoots at edges)."""
    return images.resize_to(np.asarray(pixels, np.float32), shape_hw,
                            resample=Image.Resampling.BICUBIC)


def stylizations(config: Config, network: stylize.Network, *, first: int = 0,
                 inputs: stylize.Inputs | None = None
                 ) -> Iterator[tuple[Scale, stylize.Stylization]]:
    """Prepare the scales of ``config`` one after another, from scale ``first``.

    Yields ``(scale, job)``: a prepared :class:`~nst_jax.stylize.Stylization` of that
    scale, for the run driver (:class:`nst_jax.driver.Run`, which steps it, calls the
    hooks and restores a resumed state) before it asks for the next one. The next scale
    starts from ``job``'s best image as the driver left it, upsampled. It stops after the
    last scale, or after a scale whose loss became non-finite.

    Args:
      config: the whole run's settings (``start_size`` and ``coarse_iterations``: see
        :func:`plan`).
      network: :func:`nst_jax.stylize.load_network` of ``config``, shared by every scale
        (so ``normalize_network`` normalises once, on the last scale's images).
      first: the scale to begin with (when resuming); it starts as ``config.init`` says.
      inputs: :func:`nst_jax.stylize.load_inputs` of ``config`` if already read (used for
        the last scale instead of reading the files again).
    Raises:
      ConfigError, NSTError: as :func:`plan`, :func:`nst_jax.stylize.load_inputs` and
        :func:`nst_jax.stylize.prepare`, when the scale they concern is prepared.
    """
    scales = plan(config)
    if not 0 <= first < len(scales):
        raise NSTError(f"there is no scale {first + 1} of {len(scales)}")
    start = None
    for scale in scales[first:]:
        scale_inputs = inputs if (scale.last and inputs is not None) else inputs_at(scale, config)
        if start is not None:
            start = upsample(start, scale_inputs.content.shape[:2])
        try:
            job = stylize.prepare(scale_inputs.content, scale_inputs.styles, network.params,
                                  scale.config, module=network.module,
                                  preprocessing=network.preprocessing, init_image=scale_inputs.init,
                                  content_masks=scale_inputs.content_masks,
                                  style_masks=scale_inputs.style_masks, start=start)
        except NSTError as e:
            if scale.last or isinstance(e, ConfigError):
                raise
            raise NSTError(f"{e} (at the scale of {scale.size} px that start_size "
                           f"{config.start_size} begins the ladder with: raise start_size)"
                           ) from None
        yield scale, job
        if bool(job.state.nonfinite):
            return
        start = np.asarray(stylize.best_image(job.state))
        del job  # the caller may drop its reference: the next scale needs the memory
