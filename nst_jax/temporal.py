"""Temporal consistency for video: Ruder, Dosovitskiy & Brox, *Artistic style transfer for
videos* (GCPR 2016), as pure JAX functions (jit- and vmap-able).

Conventions. Images are ``(H, W, C)``; a flow is ``(H, W, 2)`` in pixels, ``(dx, dy)``
per pixel. The *backward* flow of frame ``i``, ``w``, says where each pixel of frame
``i`` was in frame ``i - 1``: ``frame_i(p) ≈ frame_{i-1}(p + w(p))``; the *forward*
flow ``ŵ`` says where each pixel of frame ``i - 1`` goes in frame ``i``. (OpenCV's
``calcOpticalFlow*(a, b)`` returns the flow ``f`` with ``a(p) ≈ b(p + f(p))``: the
backward flow of frame ``i`` is ``calc(frame_i, frame_{i-1})``; :mod:`nst_jax.flow`.)

- :func:`warp` — ``ω(p) = x(p + w(p))``: the previous stylised frame ``x`` carried into
  the current one, bilinear, edges clamped.
- :func:`consistency` — Ruder §3.2's weights ``c``: 0 where the forward–backward check
  fails (disocclusions: ``|w + ŵ(p + w)|² > 0.01 (|w|² + |ŵ(p + w)|²) + 0.5``) or on
  motion boundaries (``|∇u|² + |∇v|² > 0.01 |w|² + 0.002``), 1 elsewhere.
- :func:`temporal_loss` — Ruder eq. 4: ``L = 1/D Σ_k c_k (x_k − ω_k)²`` with ``D = H W C``,
  the mask-weighted squared difference to the warped previous result.
- :func:`temporal_error` — the flicker measure: the mean squared difference between an
  output frame and the previous output warped to it, over the consistent pixels only.
- :func:`with_temporal` — Ruder eq. 7, ``L = α L_content + β L_style + γ D L_temporal``: a
  loss function of :mod:`nst_jax.stylize` (``fn(pixels, weights, data)``) with the
  temporal term added, its :class:`Target` (``ω``, ``c``) a data argument and ``γ`` a
  weight (:class:`TemporalWeights`), so every frame of a video runs the same compiled
  program, and a batch of frames is one ``vmap``.
"""
from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

# Ruder et al.'s thresholds (after Sundaram, Brox & Keutzer 2010).
OCCLUSION_RELATIVE, OCCLUSION_ABSOLUTE = 0.01, 0.5
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
    """``out(p) = image(p + flow(p))``: ``image`` ``(H, W, C)`` sampled bilinearly at the
    positions the flow ``(H, W, 2)`` (``dx, dy`` in px) points to; positions outside the
    image take the nearest edge pixel (OpenCV's ``remap`` with ``BORDER_REPLICATE``)."""
    image = jnp.asarray(image)
    flow = jnp.asarray(flow, image.dtype if jnp.issubdtype(image.dtype, jnp.floating)
                       else jnp.float32)
    h, w = image.shape[:2]
    ys, xs = jnp.meshgrid(jnp.arange(h, dtype=flow.dtype), jnp.arange(w, dtype=flow.dtype),
                          indexing="ij")
    coordinates = [ys + flow[..., 1], xs + flow[..., 0]]
    sample = lambda channel: map_coordinates(channel, coordinates, order=1, mode="nearest")  # noqa: E731
    return jnp.moveaxis(jax.vmap(sample, in_axes=-1)(image), 0, -1)


def _squared_norm(flow: jax.Array) -> jax.Array:
    return jnp.sum(flow * flow, axis=-1)


def consistency(backward: jax.Array, forward: jax.Array) -> jax.Array:
    """Ruder's per-pixel weights ``c`` ``(H, W)`` for the current frame: 1 where the
    backward flow ``(H, W, 2)`` (current -> previous) and the forward flow (previous ->
    current) agree and the motion is smooth, 0 at disocclusions and motion boundaries."""
    backward, forward = jnp.asarray(backward), jnp.asarray(forward)
    forward_there = warp(forward, backward)  # ŵ(p + w(p))
    round_trip = _squared_norm(backward + forward_there)
    occluded = round_trip > OCCLUSION_RELATIVE * (
        _squared_norm(backward) + _squared_norm(forward_there)) + OCCLUSION_ABSOLUTE
    du_dy, du_dx = jnp.gradient(backward[..., 0])
    dv_dy, dv_dx = jnp.gradient(backward[..., 1])
    variation = du_dx**2 + du_dy**2 + dv_dx**2 + dv_dy**2
    boundary = variation > BOUNDARY_RELATIVE * _squared_norm(backward) + BOUNDARY_ABSOLUTE
    return jnp.where(occluded | boundary, 0.0, 1.0).astype(backward.dtype)


def temporal_loss(pixels: jax.Array, warped: jax.Array, weights: jax.Array) -> jax.Array:
    """Ruder eq. 4: ``1/D Σ_k c_k (x_k − ω_k)²`` over the ``D = H W C`` values of
    ``pixels`` ``(H, W, C)``, with ``warped`` = ω (:func:`warp` of the previous result) and
    ``weights`` = c ``(H, W)`` (:func:`consistency`), the same for every channel."""
    pixels = jnp.asarray(pixels)
    difference = pixels - jnp.asarray(warped, pixels.dtype)
    return jnp.sum(jnp.asarray(weights, pixels.dtype)[..., None] * difference**2) / pixels.size


def temporal_error(frame: jax.Array, previous: jax.Array, backward: jax.Array,
                   weights: jax.Array) -> jax.Array:
    """The flicker of ``frame`` after ``previous`` (two outputs, ``(H, W, C)``): the mean
    over the consistent pixels (``weights`` = 1) and channels of the squared difference
    between ``frame`` and ``previous`` warped by the input's backward flow (Ruder §5's
    temporal error). NaN where no pixel is consistent."""
    frame = jnp.asarray(frame, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    squared = jnp.sum((frame - warp(jnp.asarray(previous, jnp.float32), backward)) ** 2, axis=-1)
    return jnp.sum(weights * squared) / (jnp.sum(weights) * frame.shape[-1])


class Target(NamedTuple):
    """What a frame's temporal term pulls towards: ``warped`` ``(H, W, 3)``, the previous
    result carried into this frame (ω), and ``weights`` ``(H, W)``, where that carrying
    can be trusted (c)."""

    warped: jax.Array
    weights: jax.Array


class TemporalWeights(NamedTuple):
    """The weights of Ruder eq. 7: ``eq7``, those of the loss it extends (a
    :class:`nst_jax.losses.LossWeights`), and ``temporal``, γ (a scalar)."""

    eq7: object
    temporal: jax.Array

    def at_round(self, round) -> "TemporalWeights":
        """These weights in round ``round`` of the optimisation (the eq. 7 weights' own)."""
        return self._replace(eq7=self.eq7.at_round(round))


@jax.jit
def target_of(previous: jax.Array, backward: jax.Array, forward: jax.Array) -> Target:
    """The :class:`Target` of a frame: ``previous`` (the neighbour's result) warped by the
    ``backward`` flow (this frame -> the neighbour), weighted by :func:`consistency` of
    the two flows."""
    return Target(warp(previous, backward), consistency(backward, forward))


def no_target(shape: tuple[int, ...]) -> Target:
    """A frame without a neighbour (the first one): weights 0, so no temporal term."""
    return Target(jnp.zeros(shape, jnp.float32), jnp.zeros(shape[:2], jnp.float32))


@functools.lru_cache(maxsize=32)
def with_temporal(fn: Callable) -> Callable:
    """Ruder eq. 7 on top of the loss ``fn(pixels, weights, data) -> (total, terms)``:
    ``fn'(pixels, TemporalWeights(weights, γ), (data, Target)) -> (total + γ D L_temporal,
    terms)`` (:func:`temporal_loss`; the terms are ``fn``'s). γ weights ``D L_temporal``,
    the *sum* over the ``D`` values rather than Ruder's mean, because the paper's content
    term (eq. 1) is a sum over positions too: both grow with the image, so one γ keeps
    the same balance at every size. Cached per ``fn``, so that the compiled programs
    keyed by it are shared by every frame."""

    def loss(pixels, weights, data):
        inner, target = data
        total, terms = fn(pixels, weights.eq7, inner)
        # D L_temporal: the sum over the values, as eq. 1 sums over positions (see above).
        term = temporal_loss(pixels, target.warped, target.weights) * pixels.size
        return total + jnp.asarray(weights.temporal, total.dtype) * term, terms

    return loss
