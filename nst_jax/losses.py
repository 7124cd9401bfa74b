"""The losses of Gatys, Ecker & Bethge (CVPR 2016), as pure functions of arrays.

Notation follows the paper (§2): a layer ``l`` with ``N_l`` filters has feature
maps of size ``M_l = H * W``; ``F^l`` (``N_l x M_l``) are the generated image's
activations, ``P^l`` the content image's, ``G^l`` / ``A^l`` the Gram matrices of
the generated and the style image.

Feature maps here are channels-last ``(H, W, N_l)`` arrays, one image each; use
``jax.vmap`` for batches. Every hyper-parameter (``alpha``, ``beta``, layer
weights, ``tv_weight``) is an array argument, so a grid of them is one ``vmap``
and compiles once.
"""
from __future__ import annotations

from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array) -> jax.Array:
    """Gram matrix ``G_ij = sum_k F_ik F_jk`` (paper, eq. 3).

    Args:
      features: ``(H, W, N)`` activations of one layer.
    Returns:
      ``(N, N)`` matrix of inner products between the vectorised feature maps.
    """
    flat = features.reshape(-1, features.shape[-1])  # (M, N)
    return flat.T @ flat


def content_loss(features: jax.Array, content_features: jax.Array) -> jax.Array:
    """Eq. 1: ``L_content = 1/2 sum_ij (F_ij - P_ij)^2`` for one layer.

    Args:
      features: ``(H, W, N)`` activations of the generated image, ``F^l``.
      content_features: the content image's activations ``P^l``, same shape.
    Returns:
      a scalar.
    """
    return 0.5 * jnp.sum(jnp.square(features - content_features))


@jax.custom_vjp
def style_layer_loss(features: jax.Array, style_gram: jax.Array) -> jax.Array:
    """Eq. 4: ``E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G_ij - A_ij)^2``.

    Its gradient is eq. 6, ``dE_l/dF^l = (F^l)^T (G^l - A^l) / (N_l^2 M_l^2)`` where
    ``F^l > 0`` (the ReLU's mask is applied by the network's own backward pass):
    one matrix product, where automatic differentiation of ``F^T F`` makes two.

    Args:
      features: ``(H, W, N_l)`` activations of the generated image.
      style_gram: ``(N_l, N_l)`` Gram matrix ``A^l`` of the style image.
    Returns:
      a scalar.
    """
    return _style_layer_loss_fwd(features, style_gram)[0]


def _style_layer_loss_fwd(features, style_gram):
    height, width, channels = features.shape
    scale = 1.0 / (channels**2 * (height * width) ** 2)
    diff = gram_matrix(features) - style_gram
    return 0.25 * scale * jnp.sum(jnp.square(diff)), (features, diff)


def _style_layer_loss_bwd(residuals, cotangent):
    features, diff = residuals
    height, width, channels = features.shape
    scale = 1.0 / (channels**2 * (height * width) ** 2)
    flat = features.reshape(-1, channels)
    # G - A is symmetric when A^l is a Gram matrix; symmetrising keeps the gradient exact for any A.
    symmetric = 0.5 * (diff + diff.T) * (cotangent * scale).astype(diff.dtype)
    d_features = (flat @ symmetric).reshape(features.shape)
    # eq. 6 has no term for A^l, a constant; its cotangent (for completeness) is -dE/dG.
    return d_features, -0.5 * scale * cotangent * diff


style_layer_loss.defvjp(_style_layer_loss_fwd, _style_layer_loss_bwd)


def style_loss(features: Mapping[str, jax.Array], style_grams: Mapping[str, jax.Array],
               layer_weights: Mapping[str, jax.Array]) -> jax.Array:
    """Eq. 5: ``L_style = sum_l w_l E_l``, over the layers of ``layer_weights``.

    Args:
      features: ``{layer: (H, W, N_l)}`` activations of the generated image.
      style_grams: ``{layer: (N_l, N_l)}`` Gram matrices of the style image.
      layer_weights: ``{layer: w_l}``, scalars. Each weight is tied to its layer
        by name, so the order of the layers never matters (a dict that went
        through ``jit`` comes back with sorted keys).
    Returns:
      a scalar.
    """
    return _weighted_sum(style_layer_loss, features, style_grams, layer_weights)


def weighted_content_loss(features: Mapping[str, jax.Array],
                          content_features: Mapping[str, jax.Array],
                          layer_weights: Mapping[str, jax.Array]) -> jax.Array:
    """``sum_l c_l L_content(l)``: eq. 1 summed over content layers with weights ``c_l``.

    The paper uses one content layer (``conv4_2``, weight 1). A weight per
    candidate layer makes the choice of layer an array, so a sweep over content
    layers is a ``vmap`` (a weight of 0 switches a layer off).

    Args:
      features / content_features: ``{layer: (H, W, N_l)}``, ``F^l`` and ``P^l``.
      layer_weights: ``{layer: c_l}``, scalars (by name, as in :func:`style_loss`).
    """
    return _weighted_sum(content_loss, features, content_features, layer_weights)


def _weighted_sum(loss, features, targets, layer_weights) -> jax.Array:
    missing = sorted(set(layer_weights) - set(targets))
    if missing:
        raise KeyError(f"no target for the weighted layer(s) {', '.join(missing)}")
    return sum(jnp.asarray(w, jnp.float32) * loss(features[l], targets[l])
               for l, w in layer_weights.items())


def total_variation(image: jax.Array) -> jax.Array:
    """Total-variation regulariser ``sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2``.

    Not in the paper; common in its successors to suppress high-frequency noise.

    Args:
      image: ``(H, W, C)`` pixels.
    Returns:
      a scalar.
    """
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    return jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))


class LossWeights(NamedTuple):
    """The hyper-parameters of eq. 7 (plus TV), as arrays so a grid is one ``vmap``.

    Attributes:
      alpha: scalar, content weight ``α``.
      beta: scalar, style weight ``β``.
      content_layer_weights: ``{layer: scalar}``, one weight per content layer.
      style_layer_weights: ``{layer: scalar}``, the paper's ``w_l``.
      tv_weight: scalar weight of :func:`total_variation` (0 in the paper).
    """

    alpha: jax.Array
    beta: jax.Array
    content_layer_weights: dict[str, jax.Array]
    style_layer_weights: dict[str, jax.Array]
    tv_weight: jax.Array


class Targets(NamedTuple):
    """What the generated image is matched against; computed once, before optimising.

    Attributes:
      content: ``{layer: (H, W, N_l)}`` content activations ``P^l``.
      style: ``{layer: (N_l, N_l)}`` style Gram matrices ``A^l``.
    """

    content: dict[str, jax.Array]
    style: dict[str, jax.Array]


class LossTerms(NamedTuple):
    """The parts of the total loss, each a scalar (unweighted by α, β, tv_weight)."""

    content: jax.Array
    style: jax.Array
    tv: jax.Array


def total_loss(features: Mapping[str, jax.Array], image: jax.Array, targets: Targets,
               weights: LossWeights) -> tuple[jax.Array, LossTerms]:
    """Eq. 7: ``L_total = α L_content + β L_style`` (+ ``tv_weight * TV(image)``).

    Args:
      features: the generated image's activations for every content and style layer.
      image: ``(H, W, 3)`` the generated image's pixels (for the TV term).
      targets: content activations and style Gram matrices (:class:`Targets`).
      weights: :class:`LossWeights`.
    Returns:
      ``(total, LossTerms(content, style, tv))``.
    """
    content = weighted_content_loss(features, targets.content, weights.content_layer_weights)
    style = style_loss(features, targets.style, weights.style_layer_weights)
    tv = total_variation(image)
    total = weights.alpha * content + weights.beta * style + weights.tv_weight * tv
    return total, LossTerms(content, style, tv)
