"""Colour preservation for style transfer, as pure ``jax.numpy`` functions.

Gatys, Ecker, Bethge, Hertzmann & Shechtman, "Controlling Perceptual Factors in
Neural Style Transfer" (CVPR 2017), §5, give two ways to keep the content
image's colours while taking the style's texture. The modes (``MODES``):

``none``
    Plain style transfer: the output takes the style's colours too.
``luminance``
    §5.1, luminance-only transfer. The optimisation sees only luminance: the
    content's Y, and the style's Y shifted and scaled to the content's Y mean
    and standard deviation, each repeated in three channels. The output is the
    optimised Y joined with the content's chroma (I, Q of YIQ).
``histogram``
    §5.2, colour histogram matching: before the optimisation the style's pixels
    are mapped by ``x' = A (x - mu_s) + mu_c`` so that their mean and 3x3
    covariance are the content's, with ``A = Sigma_c^{1/2} Sigma_s^{-1/2}``
    (symmetric matrix square roots, the paper's "image analogies" variant).
``histogram-cholesky``
    The same with ``A = L_c L_s^{-1}`` from Cholesky factors ``Sigma = L L^T``.
``original``
    jcjohnson/neural-style's ``-original_colors 1``: plain style transfer, then
    the output's Y joined with the content's I and Q, after the fact.

``prepare`` gives what the optimiser sees for a mode and ``finish`` turns the
optimised pixels into the output. Images are RGB in ``[0, 1]``, shape
``(H, W, 3)`` (or ``(..., 3)`` where a function says so), NumPy or JAX arrays;
results are JAX arrays. Nothing here is jitted: put ``jax.jit`` around the caller.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

MODES = ("none", "luminance", "histogram", "histogram-cholesky", "original")

# NTSC RGB -> YIQ. The inverse is computed in float64 once, so that a round trip
# is exact up to float32 rounding (published inverse matrices have 3 digits).
_RGB_TO_YIQ_64 = np.array([[0.299, 0.587, 0.114],
                           [0.595716, -0.274453, -0.321263],
                           [0.211456, -0.522591, 0.311135]])
_RGB_TO_YIQ = _RGB_TO_YIQ_64.astype(np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ_64).astype(np.float32)
# Variances (of [0, 1] pixels) below this count as zero: a flat image.
_EPS = 1e-8
# Cholesky jitter relative to the trace: float32 Cholesky of a rank-deficient
# covariance (a greyscale picture: R = G = B) fails with NaN for a jitter of 1e-8
# alone; 1e-6 * trace never did in our trials, 1e-5 keeps a margin.
_CHOLESKY_JITTER = 1e-5
# Colour maths is 3x3 and cheap: never let a GPU/TPU drop it to TF32/bf16.
_HIGHEST = jax.lax.Precision.HIGHEST


def _apply(matrix: np.ndarray | jax.Array, pixels: jax.Array) -> jax.Array:
    """``matrix @ x`` for every pixel ``x`` of ``(..., 3)`` ``pixels``."""
    return jnp.matmul(jnp.asarray(pixels), jnp.asarray(matrix).T, precision=_HIGHEST)


def rgb_to_yiq(rgb: jax.Array) -> jax.Array:
    """NTSC YIQ of ``(..., 3)`` RGB; Y in ``[0, 1]``, I in ``[-0.60, 0.60]``, Q in ``[-0.52, 0.52]``."""
    return _apply(_RGB_TO_YIQ, rgb)


def yiq_to_rgb(yiq: jax.Array) -> jax.Array:
    """RGB of ``(..., 3)`` YIQ, the exact inverse of :func:`rgb_to_yiq` (not clipped)."""
    return _apply(_YIQ_TO_RGB, yiq)


def luminance(rgb: jax.Array) -> jax.Array:
    """The Y channel ``(...,)`` of ``(..., 3)`` RGB: ``0.299 R + 0.587 G + 0.114 B``."""
    return rgb_to_yiq(rgb)[..., 0]


def gray3(y: jax.Array) -> jax.Array:
    """``(..., 3)``: luminance ``(...,)`` repeated in three channels, what the optimiser sees in §5.1."""
    y = jnp.asarray(y)
    return jnp.broadcast_to(y[..., None], (*y.shape, 3))


def match_luminance(style_y: jax.Array, content_y: jax.Array) -> jax.Array:
    """§5.1: ``(y_s - mu_s) * sigma_c / sigma_s + mu_c``, the style's Y with the content's mean and std.

    Args:
      style_y: luminance of the style, any shape; statistics over all its elements.
      content_y: luminance of the content, any shape.
    Returns:
      an array shaped like ``style_y``, not clipped. A flat style (variance
      below 1e-8; float32 rounding of its mean makes an exact zero test useless)
      gives ``mu_c`` everywhere.
    """
    style_y, content_y = jnp.asarray(style_y), jnp.asarray(content_y)
    mu_s, var_s = jnp.mean(style_y), jnp.var(style_y)
    mu_c, sigma_c = jnp.mean(content_y), jnp.std(content_y)
    flat = var_s < _EPS
    # The safe denominator keeps the untaken branch (and so gradients) free of NaN.
    scale = sigma_c / jnp.sqrt(jnp.where(flat, 1.0, var_s))
    return jnp.where(flat, mu_c, (style_y - mu_s) * scale + mu_c)


def luminance_inputs(content: jax.Array, style: jax.Array) -> tuple[jax.Array, jax.Array]:
    """§5.1 inputs: ``(content_y3, style_y3)``, both ``(..., 3)`` with three equal channels in ``[0, 1]``.

    ``content_y3`` is the content's luminance; ``style_y3`` the style's luminance
    matched to the content's mean and std (:func:`match_luminance`); both clipped.
    ``content`` ``(H, W, 3)`` and ``style`` ``(H', W', 3)`` may differ in size.
    """
    content_y = luminance(content)
    style_y = match_luminance(luminance(style), content_y)
    return jnp.clip(gray3(content_y), 0.0, 1.0), jnp.clip(gray3(style_y), 0.0, 1.0)


def combine_luminance_chroma(luma_rgb: jax.Array, chroma_rgb: jax.Array) -> jax.Array:
    """The Y of ``luma_rgb`` with the I, Q of ``chroma_rgb``, as RGB clipped to ``[0, 1]``.

    The output step of §5.1 (optimised Y + content chroma) and of ``original``
    colours. Both inputs ``(..., 3)`` of the same shape (``luma_rgb`` may also be
    a gray3 image); returns the same shape.
    """
    yiq = jnp.concatenate([rgb_to_yiq(luma_rgb)[..., :1], rgb_to_yiq(chroma_rgb)[..., 1:]], axis=-1)
    return jnp.clip(yiq_to_rgb(yiq), 0.0, 1.0)


def _mean_cov(pixels: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(centred (N, 3), mean (3,), population covariance (3, 3))`` of ``(..., 3)`` pixels."""
    flat = jnp.asarray(pixels, jnp.float32).reshape(-1, 3)
    mean = jnp.mean(flat, axis=0)
    centred = flat - mean  # centre before the product: E[xx^T] - mu mu^T cancels badly in float32
    return centred, mean, jnp.matmul(centred.T, centred, precision=_HIGHEST) / flat.shape[0]


def _sym_power(cov: jax.Array, power: float, floor: float) -> jax.Array:
    """``cov ** power`` for a symmetric PSD 3x3, eigenvalues first raised to at least ``floor``."""
    values, vectors = jnp.linalg.eigh(cov)
    return jnp.matmul(vectors * jnp.maximum(values, floor) ** power, vectors.T, precision=_HIGHEST)


def _cholesky(cov: jax.Array) -> jax.Array:
    jitter = _EPS + _CHOLESKY_JITTER * jnp.trace(cov)
    return jnp.linalg.cholesky(cov + jitter * jnp.eye(3, dtype=cov.dtype))


def match_histogram(style: jax.Array, content: jax.Array, method: str = "symmetric") -> jax.Array:
    """§5.2: recolour ``style`` so that its pixels' mean and covariance are the content's.

    ``x' = A (x - mu_s) + mu_c`` with ``A = Sigma_c^{1/2} Sigma_s^{-1/2}`` (``method="symmetric"``,
    eigenvalues of ``Sigma_s`` floored at 1e-8 so a flat or greyscale style stays finite) or
    ``A = L_c L_s^{-1}`` (``method="cholesky"``, ``Sigma + eps I = L L^T`` with ``eps`` 1e-8 plus
    1e-5 of the trace). Means and population covariances are over all pixels, in float32.

    Args:
      style: ``(..., 3)`` RGB in ``[0, 1]``; every leading axis counts as pixels (``vmap`` for batches).
      content: ``(..., 3)`` RGB in ``[0, 1]``, any number of pixels.
    Returns:
      ``style``'s shape, float32, clipped to ``[0, 1]``: where clipping bites, the
      statistics move slightly off the content's.
    """
    style = jnp.asarray(style, jnp.float32)
    centred, _, cov_s = _mean_cov(style)
    _, mu_c, cov_c = _mean_cov(content)
    if method == "symmetric":
        matrix = jnp.matmul(_sym_power(cov_c, 0.5, 0.0), _sym_power(cov_s, -0.5, _EPS), precision=_HIGHEST)
        moved = _apply(matrix, centred)
    elif method == "cholesky":
        # L_c (L_s^{-1} x) by a triangular solve rather than an explicit inverse.
        whitened = solve_triangular(_cholesky(cov_s), centred.T, lower=True)
        moved = jnp.matmul(_cholesky(cov_c), whitened, precision=_HIGHEST).T
    else:
        raise ValueError(f"unknown histogram method {method!r}; choose 'symmetric' or 'cholesky'")
    return jnp.clip(moved + mu_c, 0.0, 1.0).reshape(style.shape)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(MODES)}")


def prepare(mode: str, content: jax.Array, styles: Sequence[jax.Array]) -> tuple[jax.Array, list[jax.Array]]:
    """What the optimiser sees for ``mode``: ``(content, [style, ...])``.

    Args:
      mode: one of ``MODES``.
      content: ``(H, W, 3)`` RGB in ``[0, 1]``.
      styles: ``(H_k, W_k, 3)`` RGB images in ``[0, 1]``, sizes may differ.
    Returns:
      ``none``/``original``: the inputs themselves (not copied to the device); ``luminance``: the content's Y
      and each style's matched Y, in three channels (§5.1); ``histogram`` /
      ``histogram-cholesky``: the content and each style colour-matched to it
      (§5.2). Shapes are the inputs'.
    Raises:
      ValueError: for a mode not in ``MODES``.
    """
    _check_mode(mode)
    if mode in ("none", "original"):
        # As given (host arrays stay on the host: an eager copy compiles a program each).
        return content, list(styles)
    content_j = jnp.asarray(content)
    if mode == "luminance":
        content_y3 = jnp.clip(gray3(luminance(content_j)), 0.0, 1.0)
        return content_y3, [luminance_inputs(content_j, style)[1] for style in styles]
    method = "cholesky" if mode == "histogram-cholesky" else "symmetric"
    return content_j, [match_histogram(style, content_j, method) for style in styles]


def finish(mode: str, pixels: jax.Array, content: jax.Array) -> jax.Array:
    """The output image from the optimised ``pixels`` ``(H, W, 3)``.

    ``luminance`` (§5.1) and ``original``: the Y of ``pixels`` with the chroma of
    ``content``, the original colour content image of the same ``(H, W)``
    (:func:`combine_luminance_chroma`). Other modes: ``pixels`` unchanged.

    Raises:
      ValueError: for a mode not in ``MODES``.
    """
    _check_mode(mode)
    if mode in ("luminance", "original"):
        return combine_luminance_chroma(pixels, content)
    return jnp.asarray(pixels)
