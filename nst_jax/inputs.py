"""What a run reads: the images and masks a :class:`~nst_jax.config.Config` names, at the
sizes it asks (:func:`load_inputs`), and the network it names with its weights
(:func:`load_network`).

The wiring (:mod:`nst_jax.stylize`) takes arrays and reads no file; this module reads them.
It imports no wiring: :mod:`nst_jax.stylize` imports it, takes :func:`network` and
:func:`as_style_list` from it, and re-exports :class:`Inputs`, :func:`load_inputs`,
:class:`Network`, :func:`load_network` and :func:`style_sides`, the names most callers use
(``stylize.load_inputs(config)``).
"""
from __future__ import annotations

import pathlib
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import images, weights
from nst_jax.config import INITS, Config, ConfigError
from nst_jax.vgg import VGG, VGG19, Preprocessing, normalize_params, preprocess


def as_style_list(style: np.ndarray | Sequence[np.ndarray]) -> list:
    """One ``(H, W, 3)`` style image, or a sequence of them, as a list of images."""
    return [style] if getattr(style, "ndim", None) == 3 else list(style)


class Inputs(NamedTuple):
    """The images of a run, float32 in [0, 1]: ``content (H, W, 3)`` (the output's
    size), ``styles`` (one ``(H_k, W_k, 3)`` per style image), ``init`` (an image
    file's pixels, or None), ``content_masks`` (``(R, H, W)``, or None) and
    ``style_masks`` (one ``(H_k, W_k)`` per style, or None)."""

    content: np.ndarray
    styles: tuple[np.ndarray, ...]
    init: np.ndarray | None
    content_masks: np.ndarray | None = None
    style_masks: tuple[np.ndarray, ...] | None = None


def load_sized(path: str, long_side: int, what: str, field: str, shown: str | None = None, *,
               advice: str = "raise it") -> np.ndarray:
    """The image at ``path`` with its long side ``long_side`` px; a :class:`ConfigError` of
    ``field`` (set to ``shown``) when a side comes out thinner than VGG19 takes, ending
    with ``advice``."""
    rgb = images.load_image(path, max_side=long_side)
    if min(rgb.shape[:2]) < images.MIN_SIDE:
        raise ConfigError(field, f"{shown or long_side} makes the {what} image {path} {rgb.shape[1]}x"
                                 f"{rgb.shape[0]} px; both sides must be at least "
                                 f"{images.MIN_SIDE} px (VGG19 pools 4 times before conv5_1): "
                                 f"{advice}")
    return rgb


def style_sides(config: Config) -> tuple[tuple[int, str, str], ...]:
    """``(long side in px, the field that set it, its value as text)`` of each style
    image: ``style_size``, or ``style_scale`` x the output's ``size`` (one scale for all
    or one per style), or ``size``. Raises :class:`ConfigError` for a side outside
    16-4096 px."""
    out = []
    for k in range(len(config.style)):
        if config.style_scale is not None:
            scale = config.style_scale[k if len(config.style_scale) > 1 else 0]
            side = max(1, round(scale * config.size))
            if not images.MIN_SIDE <= side <= images.MAX_SIDE:
                raise ConfigError("style_scale", f"{scale:g} gives style image {k + 1} a long "
                                                 f"side of {side} px; it must be "
                                                 f"{images.MIN_SIDE}-{images.MAX_SIDE} px")
            out.append((side, "style_scale", f"{scale:g} (a {side} px long side)"))
        elif config.style_size is not None:
            out.append((config.style_size, "style_size", str(config.style_size)))
        else:
            out.append((config.size, "size", str(config.size)))
    return tuple(out)


def load_inputs(config: Config, *, content: np.ndarray | None = None) -> Inputs:
    """Read the images and masks ``config`` names, resized by ``size``, ``style_size`` /
    ``style_scale`` (masks to their image's size). ``content``: the content image already
    read (a video's frame, a photo of a batch) instead of ``config.content``.

    Raises:
      NSTError: a file is missing or unreadable (see :func:`nst_jax.images.load_image`),
        or a mask is black everywhere; ConfigError: an image too thin at this size, a
        mask whose aspect ratio is not its image's (:func:`_load_mask`), or an ``init``
        that is neither ``noise``, ``content``, ``style`` nor an existing file.
    """
    if content is None:
        content = load_sized(config.content, config.size, "content", "size")
    styles = tuple(load_sized(path, side, "style", field, shown)
                   for path, (side, field, shown) in zip(config.style, style_sides(config)))
    init = None
    if config.init_is_file:
        if not pathlib.Path(config.init).exists():
            raise ConfigError("init", f"must be {', '.join(INITS)} or an existing image file, "
                                      f"got {config.init!r}")
        init = images.load_image(config.init)
    content_masks = style_masks = None
    if config.content_masks is not None:
        content_masks = np.stack([_load_mask(path, content, "content_masks",
                                             f"the content image {config.content}")
                                  for path in config.content_masks])
    if config.style_masks is not None:
        style_masks = tuple(_load_mask(path, style, "style_masks",
                                       f"style image {k + 1} ({config.style[k]})")
                            for k, (path, style) in enumerate(zip(config.style_masks, styles)))
    return Inputs(content, styles, init, content_masks, style_masks)


# A region mask's aspect ratio may differ from its image's by this fraction, plus a pixel of
# the image's short side (the rounding of the resized image's sides).
MASK_ASPECT_TOLERANCE = 0.02


def _load_mask(path: str, image: np.ndarray, field: str, shown: str) -> np.ndarray:
    """:func:`nst_jax.images.load_mask` at ``image``'s size ``(H, W, 3)``; a mask of
    another shape (aspect ratio) is a :class:`ConfigError` of ``field`` naming the mask,
    ``shown`` (its image) and both sizes: stretched to the image, it would put its region
    elsewhere than drawn. (The mask is read twice; masks are small.)"""
    height, width = image.shape[:2]
    mask = images.load_mask(path, (height, width))  # a bad or black mask says so first
    h, w = images.load_image(path).shape[:2]
    tolerance = MASK_ASPECT_TOLERANCE + 1.0 / min(height, width)
    if abs((w / h) / (width / height) - 1.0) > tolerance:
        raise ConfigError(field, f"{path} is {w}x{h} px but {shown} is resized to "
                                 f"{width}x{height} px: a mask of another shape would be "
                                 f"stretched, moving its region from where it was drawn; give "
                                 f"a mask of the image's shape (aspect ratio)")
    return mask


def network(config: Config) -> VGG:
    """The VGG19 module ``config`` asks for (pooling, remat, precision)."""
    dtype = None if config.precision == "float32" else config.precision
    return VGG19(pooling=config.pooling, remat=config.remat, dtype=dtype)


class Network(NamedTuple):
    """The VGG module, its params (normalised if asked), the weights' preprocessing,
    and ``info``: the weights file's provenance (for the output's metadata)."""

    module: VGG
    params: dict
    preprocessing: Preprocessing
    info: dict


def load_network(config: Config, content: np.ndarray, style: np.ndarray, *,
                 log: Callable[[str], object] = lambda message: None) -> Network:
    """The network of ``config``: its weights file (the default one is converted on
    first use, see :func:`nst_jax.weight_sources.download.ensure_weights`), normalised on
    ``content`` and ``style`` (the first style image, when there are several) when
    ``config.normalize_network`` (paper §2)."""
    if config.weights is None:
        from nst_jax.weight_sources.download import ensure_weights  # downloads only when absent

        path = ensure_weights(log=log)
    else:
        path = pathlib.Path(config.weights)
    params, preprocessing = weights.load_params(path)
    module = network(config)
    if config.normalize_network:
        style = as_style_list(style)[0]
        batch = jnp.stack([preprocess(jnp.asarray(content), preprocessing),
                           preprocess(jnp.asarray(images.resize_to(style, content.shape[:2])),
                                      preprocessing)])
        params = jax.tree_util.tree_map(np.asarray, normalize_params(module, params, batch))
    return Network(module, params, preprocessing, {"path": str(path), **weights.describe(path)})
