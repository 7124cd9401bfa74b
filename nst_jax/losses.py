"""The losses of Gatys, Ecker & Bethge (CVPR 2016), as pure functions of arrays.

Notation follows the paper (§2): a layer ``l`` with ``N_l`` filters has feature
maps of size ``M_l = H * W``; ``F^l`` (``N_l x M_l``) are the generated image's
activations, ``P^l`` the content image's, ``G^l`` / ``A^l`` the Gram matrices of
the generated and the style image.

Several styles and a style per region (Gatys, Ecker, Bethge, Hertzmann &
Shechtman, CVPR 2017, §4) are here too: :func:`guided_gram_matrix`,
:func:`guided_style_layer_loss` and :func:`guided_style_loss`, which is eq. 5
for one style without regions.

Feature maps here are channels-last ``(H, W, N_l)`` arrays, one image each; use
``jax.vmap`` for batches. Every hyper-parameter (``alpha``, ``beta``, layer
weights, ``tv_weight``, blend and region weights) is an array argument, so a grid of them is one ``vmap``
and compiles once.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from nst_jax import distances


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
    return gram_loss(features, style_gram, _positions(features))


def _positions(features: jax.Array) -> jax.Array:
    """``M = H W`` as a float (float32, or float64 for float64 features)."""
    height, width, _ = features.shape
    return jnp.asarray(height * width, jnp.promote_types(features.dtype, jnp.float32))


@jax.custom_vjp
def gram_loss(features: jax.Array, target_gram: jax.Array, area: jax.Array) -> jax.Array:
    """``1 / (4 N^2 area^2) sum_ij (G_ij - T_ij)^2`` with ``G = F^T F``: eq. 4 with the
    number of positions ``M_l`` given as ``area`` (a region's area for a guided Gram
    matrix, :func:`guided_style_layer_loss`), and its eq. 6 gradient.

    Args:
      features: ``(H, W, N)``; target_gram: ``(N, N)``, symmetric; area: scalar > 0.
    """
    return _gram_loss_fwd(features, target_gram, area)[0]


def _gram_loss_fwd(features, target_gram, area):
    channels = features.shape[-1]
    scale = 1.0 / (channels**2 * jnp.square(area))
    diff = gram_matrix(features) - target_gram
    return 0.25 * scale * jnp.sum(jnp.square(diff)), (features, diff, scale)


def _gram_loss_bwd(residuals, cotangent):
    features, diff, scale = residuals
    channels = features.shape[-1]
    flat = features.reshape(-1, channels)
    # G - T is symmetric when T is a Gram matrix; symmetrising keeps the gradient exact for any T.
    symmetric = 0.5 * (diff + diff.T) * (cotangent * scale).astype(diff.dtype)
    d_features = (flat @ symmetric).reshape(features.shape)
    # eq. 6 has no term for the target, a constant; its cotangent (for completeness) is -dE/dG.
    # The area is a count, not a parameter: no gradient.
    return d_features, -0.5 * scale * cotangent * diff, jnp.zeros_like(jnp.asarray(scale))


gram_loss.defvjp(_gram_loss_fwd, _gram_loss_bwd)


def gram_error(gram: jax.Array, target_gram: jax.Array, area: jax.Array) -> jax.Array:
    """Eq. 4 from a Gram matrix already summed: ``1 / (4 N^2 area^2) sum_ij (G - area T)_ij^2``.

    The same value as :func:`guided_style_layer_loss` when ``gram`` is ``F^T diag(m) F``
    (``F^T F`` without a region) and ``T`` a Gram matrix per position; for a ``G``
    accumulated over tiles (:mod:`nst_jax.tiling`), whose gradient with respect to
    ``G`` (eq. 6 before the chain rule through ``F``) is then held fixed.
    """
    channels = gram.shape[-1]
    return 0.25 * jnp.sum(jnp.square(gram - area * target_gram)) / (channels**2 * jnp.square(area))


def guided_gram_matrix(features: jax.Array, mask: jax.Array) -> jax.Array:
    """Guided Gram matrix of one region (Gatys et al. 2017, §4), per position:
    ``sum_k m_k F_k F_k^T / sum_k m_k``.

    Args:
      features: ``(H, W, N)`` activations; mask: ``(H, W)`` in [0, 1], the region at
        this layer's resolution (:func:`nst_jax.stylize.propagate_masks`), not all zero.
    Returns:
      ``(N, N)``; normalised by the region's area, so it does not shrink with the
      region (with a mask of ones it is ``gram_matrix(features) / (H W)``).
    """
    return gram_matrix(features * jnp.sqrt(mask)[..., None]) / jnp.sum(mask)


def guided_style_layer_loss(features: jax.Array, mask: jax.Array | None,
                            target: jax.Array) -> jax.Array:
    """Eq. 4 over one region: ``1 / (4 N^2 M_r^2) sum_ij (G_r - M_r T)_ij^2``.

    ``G_r = F^T diag(m) F`` and ``M_r = sum m`` is the region's area, so with ``T`` a
    guided Gram matrix per position (:func:`guided_gram_matrix` of the style) the
    term is ``1 / (4 N^2) sum (G_r / M_r - T)^2`` and does not depend on the region's
    size. ``mask=None`` is the whole image: then, with ``T = A / M``, this is eq. 4.

    Args:
      features: ``(H, W, N)``; mask: ``(H, W)`` in [0, 1] or None; target: ``(N, N)``.
    """
    if mask is None:
        area = _positions(features)
    else:
        features = features * jnp.sqrt(mask)[..., None].astype(features.dtype)
        area = jnp.sum(mask)
    return gram_loss(features, area * target, area)


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


def guided_style_loss(features: Mapping[str, jax.Array], style_grams: Mapping[str, jax.Array],
                      masks: Mapping[str, jax.Array] | None, layer_weights: Mapping[str, jax.Array],
                      style_mix: jax.Array | None = None,
                      region_weights: jax.Array | None = None) -> jax.Array:
    """Eq. 5 with several styles and regions (Gatys et al. 2017, §4):
    ``L_style = sum_l w_l sum_r λ_r E_{l,r}``.

    Region ``r``'s target at layer ``l`` is a blend of the ``K`` styles' Gram matrices,
    ``T_r = sum_k mix_rk Â_k`` (per position, :func:`guided_gram_matrix`), and
    ``E_{l,r}`` is :func:`guided_style_layer_loss` over the region's mask. One region
    without a mask and one style is eq. 5 (with ``Â = A / M``).

    Args:
      features: ``{layer: (H, W, N_l)}`` activations of the generated image.
      style_grams: ``{layer: (K, N_l, N_l)}`` the styles' Gram matrices per position.
      masks: ``{layer: (R, H, W)}`` the regions at each layer's resolution, or None
        (one region: the whole image).
      layer_weights: ``{layer: w_l}`` (by name, as in :func:`style_loss`).
      style_mix: ``(R, K)``, row ``r`` the blend weights of region ``r``'s styles
        (default ``[[1]]``: one style, one region).
      region_weights: ``(R,)``, ``λ_r`` (default 1 each).
    Returns:
      a scalar.
    """
    missing = sorted(set(layer_weights) - set(style_grams))
    if missing:
        raise KeyError(f"no target for the weighted layer(s) {', '.join(missing)}")
    mix = jnp.ones((1, 1), jnp.float32) if style_mix is None else jnp.asarray(style_mix, jnp.float32)
    num_regions = mix.shape[0]
    lam = (jnp.ones((num_regions,), jnp.float32) if region_weights is None
           else jnp.asarray(region_weights, jnp.float32))
    if masks is None and num_regions != 1:
        raise ValueError(f"{num_regions} regions need masks")
    total = jnp.float32(0.0)
    for layer, weight in layer_weights.items():
        targets = jnp.einsum("rk,kij->rij", mix, style_grams[layer])  # (R, N, N)
        per_region = [guided_style_layer_loss(features[layer],
                                              None if masks is None else masks[layer][r],
                                              targets[r]) for r in range(num_regions)]
        total = total + jnp.asarray(weight, jnp.float32) * jnp.dot(lam, jnp.stack(per_region))
    return total


class LossWeights(NamedTuple):
    """The hyper-parameters of eq. 7 (plus TV), as arrays so a grid is one ``vmap``.

    Attributes:
      alpha: scalar, content weight ``α``.
      beta: scalar, style weight ``β``.
      content_layer_weights: ``{layer: scalar}``, one weight per content layer.
      style_layer_weights: ``{layer: scalar}``, the paper's ``w_l``.
      tv_weight: scalar weight of :func:`total_variation` (0 in the paper).
      style_mix: ``(R, K)`` blend weights of the ``K`` styles in each of ``R`` regions
        (:func:`guided_style_loss`); None: one style, one region.
      region_weights: ``(R,)`` weight of each region's style term; None: 1.
      distance_weights: ``{distance: scalar}``, the weight ``u_d`` of each style distance
        of :data:`nst_jax.distances.STYLE_DISTANCES` in the style term (by name, as the
        layer weights; a weight of 0 keeps a distance of a sweep's union computed but
        off); None: ``{'gram': 1}``, the paper's.
      round: the optimiser's round (:mod:`nst_jax.optimize`, rounds), which the
        ``sliced`` distance draws its directions for; None: round 0. Set by the
        optimiser (:meth:`at_round`), not a hyper-parameter.
    """

    alpha: jax.Array
    beta: jax.Array
    content_layer_weights: dict[str, jax.Array]
    style_layer_weights: dict[str, jax.Array]
    tv_weight: jax.Array
    style_mix: jax.Array | None = None
    region_weights: jax.Array | None = None
    distance_weights: dict[str, jax.Array] | None = None
    round: jax.Array | None = None

    def at_round(self, round: jax.Array | int) -> "LossWeights":
        """These weights in round ``round`` of the optimisation."""
        return self._replace(round=jnp.asarray(round, jnp.int32))


class Targets(NamedTuple):
    """What the generated image is matched against; computed once, before optimising.

    Attributes:
      content: ``{layer: (H, W, N_l)}`` content activations ``P^l``.
      style: ``{layer: (K, N_l, N_l)}`` the ``K`` style images' Gram matrices per
        position, ``Â^l = A^l / M^l`` (over a style mask's region when there is one,
        :func:`guided_gram_matrix`): independent of the style image's size, so a
        style resized by ``--style-scale`` changes the texture's scale, not its weight.
      masks: ``{layer: (R, H_l, W_l)}`` the generated image's regions at each layer's
        resolution, or None (one region, the whole image).
      distances: ``{distance: target}`` for the style distances other than Gram's
        (:func:`nst_jax.distances.distance_style_loss` says what each holds), or None.
    """

    content: dict[str, jax.Array]
    style: dict[str, jax.Array]
    masks: dict[str, jax.Array] | None = None
    distances: dict[str, dict] | None = None


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
      targets: content activations, style Gram matrices and regions (:class:`Targets`).
      weights: :class:`LossWeights`.
    Returns:
      ``(total, LossTerms(content, style, tv))``; the style term is
      :func:`guided_style_loss` (eq. 5 for one style and no regions).
    """
    content = weighted_content_loss(features, targets.content, weights.content_layer_weights)
    style = mixed_style_loss(features, targets, weights)
    tv = total_variation(image)
    total = weights.alpha * content + weights.beta * style + weights.tv_weight * tv
    return total, LossTerms(content, style, tv)


def mixed_style_loss(features: Mapping[str, jax.Array], targets: Targets, weights: LossWeights,
                     sqrtm: str = distances.DEFAULT_SQRTM) -> jax.Array:
    """The style term: ``sum_d u_d s_d L_d`` over the style distances of
    ``weights.distance_weights`` (:mod:`nst_jax.distances`; ``s_d`` its
    :data:`~nst_jax.distances.SCALES`), each summed over the style layers as eq. 5; with
    the default weights, eq. 5 itself (:func:`guided_style_loss`)."""
    mix = weights.distance_weights or {"gram": 1.0}
    total = jnp.float32(0.0)
    for name, u in mix.items():
        if name == "gram":
            value = guided_style_loss(features, targets.style, targets.masks,
                                      weights.style_layer_weights, weights.style_mix,
                                      weights.region_weights)
        else:
            if not targets.distances or name not in targets.distances:
                raise KeyError(f"no target for the style distance {name!r}")
            value = distances.SCALES[name] * distances.distance_style_loss(
                name, features, targets.distances[name], targets.masks,
                weights.style_layer_weights, weights.region_weights, sqrtm,
                0 if weights.round is None else weights.round)
        total = total + jnp.asarray(u, jnp.float32) * value
    return total


class Loss:
    """Eq. 7 of the pixels with its data apart: ``loss(pixels, weights, data=None)``.

    ``fn(pixels, weights, data)`` is the loss. ``data`` holds the network's variables
    (params and :func:`nst_jax.vgg.ready_kernels`) and the :class:`Targets`, as host
    arrays (a :class:`nst_jax.tiling.TiledLoss`: the kernels and its tiles' targets).

    Called without ``data`` the loss uses its own, which a jitted caller then embeds
    as compile-time constants. :func:`nst_jax.stylize.prepare` and
    :class:`nst_jax.sweep.Sweeper` pass :attr:`data` as an *argument* of their compiled
    functions instead: they then do not depend on the images, so a second image pair
    of the same size reuses them, JAX's persistent compilation cache serves them to a
    new process, and they compile faster (docs/performance.md).

    ``fn`` is shared by every untiled loss of the same network and layers
    (:func:`nst_jax.stylize.untiled_loss`), and so are the compiled functions keyed by
    it. ``plan`` is the tiling (:class:`nst_jax.tiling.Plan`; None: untiled).
    """

    def __init__(self, fn: Callable, data, plan=None):
        self.fn, self.data, self.plan = fn, data, plan

    def __call__(self, pixels, weights, data=None):
        return self.fn(pixels, weights, self.data if data is None else data)
