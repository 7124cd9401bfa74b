"""Style distances beyond the paper's Gram matrices, as pure functions of arrays.

The paper's style term (eq. 4-5) compares Gram matrices: second moments of a layer's
features, blind to their means and to anything beyond second order. Its successors
compare the features' *distributions* instead; each distance here is a function of one
layer's features ``F`` (``(H, W, N)``, channels last, as in :mod:`nst_jax.losses`) and a
target made once from the style image:

- ``mean-cov`` (:func:`mean_cov_distance`): the 2-Wasserstein distance between the
  Gaussians fitted to the features (mean and covariance), per channel
  (``W2^2 / N``), as crowsonkb/style-transfer-pytorch's ``StyleLossW2``;
- ``sliced`` (:func:`sliced_distance`): sliced Wasserstein (Heitz, Vacher, Digne &
  Kervrann, CVPR 2021): the features projected on random directions, sorted, and compared
  with the style's sorted projections;
- ``histogram`` (:func:`histogram_distance`): Risser, Wilmot & Barnes (2017)'s histogram
  loss, ``|F - R(F)|^2`` with ``R`` the per-channel histogram matching of ``F`` to the
  style, ``R`` held fixed. Computed exactly (by sorting, no bins): it is the sliced
  distance along the channel axes, with the same value and gradient ``2 (F - R(F))``.

``gram`` (eq. 4) stays in :mod:`nst_jax.losses`; :data:`STYLE_DISTANCES` names all four.
A run's style term is a weighted mix ``sum_d u_d L_d`` (:func:`nst_jax.losses.total_loss`);
the weights ``u_d`` are arrays (:class:`nst_jax.losses.LossWeights`), so one ``vmap``
sweeps from Gram to sliced. Each distance is scaled by :data:`SCALES` so that the paper's
default ``beta`` gives a comparable style strength (the constants are measured, see there).
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

STYLE_DISTANCES = ("gram", "mean-cov", "sliced", "histogram")
# Which distances allow what (nst_jax.config checks a run against it; docs/style-distances.md).
# mean-cov's statistics are sums over positions, like a Gram matrix: they add up over tiles and
# over a region's positions. sliced and histogram sort all of the generated features of a
# layer at once: no tiles, no regions, one style image.
ADDITIVE = ("gram", "mean-cov")
SQRTM_METHODS = ("eigh", "newton-schulz")
# mean-cov's square root. Newton-Schulz is matrix products only: at 512 channels in float32 it
# took 0.1-0.2 s a call, steadily, and its gradient was 1-4% from the same function in
# float64; LAPACK's eigh (through OpenBLAS) took 0.02 s alone but 1-3.4 s when other work
# shared the 2 cores (its threads stall), which made mean-cov 3-6x Gram in the loss where
# Newton-Schulz was 1.16x at 512 px, and its gradient was 12-17% off (float32 resolves the
# eigenvalues near eps no better than that). docs/results/bench_distances.md.
DEFAULT_SQRTM = "newton-schulz"
# Each distance times its scale is comparable to the Gram term at the paper's beta: the ratio
# of the Gram term to the distance's value on the bundled pair (chelsea and starry_night,
# 256 px, VGG19 as fetched, default layers) was 8.0e3 (mean-cov), 8.4e3 (sliced) and 8.2e3
# (histogram) at white noise, 1.0e4, 1.8e4 and 1.4e4 at the content image; rounded to 1e4.
SCALES = {"gram": 1.0, "mean-cov": 1e4, "sliced": 1e4, "histogram": 1e4}
# tr(X^(1/2)) is taken as sum_i lambda_i / sqrt(lambda_i + eps): a zero eigenvalue adds exactly
# 0 and a large one sqrt(lambda) - eps / (2 sqrt(lambda)), so a Gaussian is at distance ~0 from
# itself, and the gradient (1/2) (Z + eps Z^3), Z = (X + eps I)^(-1/2), stays bounded (by
# 1 / sqrt(eps)) where the features are rank-deficient (a layer with fewer positions than
# channels always is), which L-BFGS needs: the exact gradient grows without bound there.
# eps is relative to the scale of mean-cov's X = C_s^(1/2) C C_s^(1/2), (tr C_s / N)^2.
# On the bundled pair at 128 px, 100 iterations took 101 evaluations with 1e-2 and with 1e-6,
# 355 with an absolute eps of 1e-2 (about 1e-8 relative there); 1e-4 keeps a margin from
# where the line searches start to fail, and keeps the value near the true distance.
EPS_RELATIVE = 1e-4
NEWTON_SCHULZ_STEPS = 20


# --- square roots --------------------------------------------------------------------------


def _trace_sqrt_eigh_fwd(x, eps):
    values, vectors = jnp.linalg.eigh(0.5 * (x + x.T))
    values = jnp.maximum(values, 0.0)
    roots = jnp.sqrt(values + eps)
    slopes = (values + 2.0 * eps) / (2.0 * roots**3)  # d/dlambda of lambda / sqrt(lambda + eps)
    return jnp.sum(values / roots), (vectors, slopes, eps)


def _trace_sqrt_eigh_bwd(residuals, cotangent):
    vectors, slopes, eps = residuals
    return (vectors * (cotangent * slopes)) @ vectors.T, jnp.zeros_like(eps)


@jax.custom_vjp
def trace_sqrt_eigh(x: jax.Array, eps: jax.Array) -> jax.Array:
    """``tr(X^(1/2))`` of a symmetric positive semi-definite ``(N, N)`` matrix, regularised:
    ``sum_i lambda_i / sqrt(lambda_i + eps)`` by the eigendecomposition, with the
    closed-form gradient ``(1/2) (Z + eps Z^3)``, ``Z = (X + eps I)^(-1/2)``: no
    differentiation through ``eigh``, whose derivative divides by the gaps between
    eigenvalues and is unstable when they repeat. ``eps`` (scalar > 0) is held fixed."""
    return _trace_sqrt_eigh_fwd(x, eps)[0]


trace_sqrt_eigh.defvjp(_trace_sqrt_eigh_fwd, _trace_sqrt_eigh_bwd)


def _newton_schulz(x, steps):
    """``(X^(1/2), X^(-1/2))`` by the coupled Newton-Schulz iteration (Higham 2008, eq. 6.35)
    on ``X / |X|_F``: matrix products only."""
    n = x.shape[-1]
    norm = jnp.sqrt(jnp.sum(jnp.square(x)))
    eye = jnp.eye(n, dtype=x.dtype)
    y, z = x / norm, eye

    def body(_, yz):
        y, z = yz
        t = 0.5 * (3.0 * eye - z @ y)
        return y @ t, t @ z

    y, z = jax.lax.fori_loop(0, steps, body, (y, z))
    return y * jnp.sqrt(norm), z / jnp.sqrt(norm)


def _trace_sqrt_ns_fwd(x, eps):
    n = x.shape[-1]
    x = 0.5 * (x + x.T)
    _, z = _newton_schulz(x + eps * jnp.eye(n, dtype=x.dtype), NEWTON_SCHULZ_STEPS)
    z = 0.5 * (z + z.T)
    # tr(X Z) = sum lambda / sqrt(lambda + eps), right where the iteration has not converged
    # on the near-null eigenvalues (X is small there).
    return jnp.sum(x * z), (z, eps)


def _trace_sqrt_ns_bwd(residuals, cotangent):
    z, eps = residuals
    return 0.5 * cotangent * (z + eps * z @ z @ z), jnp.zeros_like(eps)


@jax.custom_vjp
def trace_sqrt_newton_schulz(x: jax.Array, eps: jax.Array) -> jax.Array:
    """:func:`trace_sqrt_eigh`'s value by :data:`NEWTON_SCHULZ_STEPS` coupled Newton-Schulz
    steps on ``X + eps I``, whose second matrix is ``Z = (X + eps I)^(-1/2)``: matrix
    products only."""
    return _trace_sqrt_ns_fwd(x, eps)[0]


trace_sqrt_newton_schulz.defvjp(_trace_sqrt_ns_fwd, _trace_sqrt_ns_bwd)

TRACE_SQRT = {"eigh": trace_sqrt_eigh, "newton-schulz": trace_sqrt_newton_schulz}


def sqrtm_psd(x: np.ndarray) -> np.ndarray:
    """``X^(1/2)`` of a symmetric positive semi-definite matrix, on the host (float64): a
    target's, computed once."""
    values, vectors = np.linalg.eigh(0.5 * (np.asarray(x, np.float64) + np.asarray(x, np.float64).T))
    return (vectors * np.sqrt(np.maximum(values, 0.0))) @ vectors.T


# --- mean and covariance (2-Wasserstein between Gaussians) ----------------------------------


def moments(features: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(mean (N,), second moment (N, N))`` of the feature vectors, per position, over a
    region's soft mask ``(H, W)`` (None: every position): ``sum m F / sum m`` and
    ``F^T diag(m) F / sum m``. Both are sums over positions (they add up over tiles)."""
    flat = features.reshape(-1, features.shape[-1])
    if mask is None:
        area = jnp.asarray(flat.shape[0], flat.dtype)
        return jnp.sum(flat, axis=0) / area, flat.T @ flat / area
    m = mask.reshape(-1).astype(flat.dtype)
    area = jnp.sum(m)
    return m @ flat / area, (flat * m[:, None]).T @ flat / area


def mean_cov_error(mean: jax.Array, second: jax.Array, target_mean: jax.Array,
                   target_cov_sqrt: jax.Array, target_cov_trace: jax.Array,
                   sqrtm: str = DEFAULT_SQRTM) -> jax.Array:
    """``W2^2 / N`` between ``N(mean, C)`` and the target Gaussian, ``C = second - mean mean^T``:

    ``(|mu - mu_s|^2 + tr C + tr C_s - 2 tr (C_s^(1/2) C C_s^(1/2))^(1/2)) / N``.

    Args:
      mean, second: :func:`moments` of the generated features.
      target_mean: ``(N,)``; target_cov_sqrt: ``C_s^(1/2)``, ``(N, N)``;
      target_cov_trace: ``tr C_s`` (scalar).
      sqrtm: :data:`SQRTM_METHODS`, how ``tr(X^(1/2))`` is computed.
    """
    channels = mean.shape[-1]
    cov = second - jnp.outer(mean, mean)
    cross = target_cov_sqrt @ cov @ target_cov_sqrt
    w2 = (jnp.sum(jnp.square(mean - target_mean)) + jnp.trace(cov) + target_cov_trace
          - 2.0 * TRACE_SQRT[sqrtm](cross, _eps(target_cov_trace, channels)))
    return w2 / channels


def _eps(target_cov_trace, channels):
    """The regularisation of ``tr(X^(1/2))`` (:data:`EPS_RELATIVE`), fixed by the target."""
    return jax.lax.stop_gradient(EPS_RELATIVE * jnp.square(target_cov_trace / channels))


def mean_cov_distance(features: jax.Array, target_mean: jax.Array, target_cov_sqrt: jax.Array,
                      target_cov_trace: jax.Array, mask: jax.Array | None = None,
                      sqrtm: str = DEFAULT_SQRTM) -> jax.Array:
    """The ``mean-cov`` distance of one layer (over a region's ``mask`` when given):
    :func:`mean_cov_error` of :func:`moments`.

    With fewer positions ``M`` than channels ``N`` (``conv5_1`` of a 256 px image: 256
    positions, 512 channels) the square root is taken of an ``(M, M)`` matrix instead:
    ``C_s^(1/2) C C_s^(1/2) = A^T A`` with ``A = D^(1/2) (F - mu) C_s^(1/2)`` (``D`` the
    mask's weights over its area), and ``A A^T`` has the same non-zero eigenvalues, so the
    same value (zero eigenvalues add 0, :data:`EPS_RELATIVE`) for a smaller eigendecomposition.
    """
    positions, channels = features.shape[0] * features.shape[1], features.shape[-1]
    mean, second = moments(features, mask)
    if positions >= channels:
        return mean_cov_error(mean, second, target_mean, target_cov_sqrt, target_cov_trace, sqrtm)
    flat = features.reshape(-1, channels)
    m = (jnp.ones((positions,), flat.dtype) if mask is None
         else mask.reshape(-1).astype(flat.dtype))
    a = (jnp.sqrt(m / jnp.sum(m))[:, None] * (flat - mean)) @ target_cov_sqrt  # (M, N)
    cov_trace = jnp.trace(second) - jnp.sum(jnp.square(mean))
    w2 = (jnp.sum(jnp.square(mean - target_mean)) + cov_trace + target_cov_trace
          - 2.0 * TRACE_SQRT[sqrtm](a @ a.T, _eps(target_cov_trace, channels)))
    return w2 / channels


def mean_cov_target(mean: np.ndarray, second: np.ndarray) -> dict[str, np.ndarray]:
    """The target of :func:`mean_cov_error` from a style's moments (host arrays):
    ``{'mean', 'cov_sqrt', 'cov_trace'}``."""
    mean = np.asarray(mean, np.float64)
    cov = np.asarray(second, np.float64) - np.outer(mean, mean)
    return {"mean": mean.astype(np.float32), "cov_sqrt": sqrtm_psd(cov).astype(np.float32),
            "cov_trace": np.float32(np.trace(cov))}


# --- sorted projections (sliced Wasserstein, histograms) -------------------------------------


def quantiles(samples, count: int, xp=np):
    """The ``count`` quantiles ``Q((j + 1/2) / count)`` of each column of ``samples``
    ``(S, P)`` (linear interpolation between order statistics): the sorted values a set
    of ``count`` samples from the same distribution would have; ``(count, P)``. ``xp``:
    ``numpy`` (on the host, in float64) or ``jax.numpy`` (traced, in the samples' dtype)."""
    size = np.shape(samples)[0]
    if xp is np:
        ordered = np.sort(np.asarray(samples, np.float64), axis=0)
    else:  # sorted along the transpose's last axis: see sorted_distance
        ordered = jnp.sort(samples.T, axis=-1).T
    positions = (np.arange(count) + 0.5) / count * size - 0.5
    below = np.clip(np.floor(positions).astype(np.int64), 0, size - 1)
    above = np.clip(below + 1, 0, size - 1)
    t = np.clip(positions - below, 0.0, 1.0)[:, None]
    out = (1 - t) * ordered[below] + t * ordered[above]
    return out.astype(np.float32) if xp is np else out.astype(samples.dtype)


def sorted_distance(values: jax.Array, target_quantiles: jax.Array) -> jax.Array:
    """``mean_{j,p} (sort(v)_{j,p} - q_{j,p})^2``: the squared 1-D Wasserstein-2 distance of
    each column of ``values`` ``(M, P)`` to the distribution whose ``M`` quantiles are
    ``target_quantiles`` ``(M, P)``, averaged over the columns. Its gradient is
    ``2 (v - R(v)) / (M P)``, ``R`` the rank-wise matching of ``v`` to the quantiles."""
    # Sorted along the last axis of the transpose: XLA:CPU sorted a (65536, 64) array's
    # columns in 2.7 s (value and gradient) this way, 6.4 s along axis 0.
    return jnp.mean(jnp.square(jnp.sort(values.T, axis=-1) - target_quantiles.T))


def sliced_key(seed: int, layer: int) -> np.ndarray:
    """The key data (``uint32``) a layer's directions are drawn from: the run's ``seed``
    folded with the layer's index, so each layer draws its own."""
    return np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(seed), layer)))


def random_directions(key: jax.Array, round: jax.Array | int, channels: int, count: int
                      ) -> jax.Array:
    """``(channels, count)`` unit vectors, uniform on the sphere: the projections of
    :func:`sliced_distance` in ``round`` (the optimiser's rounds, :mod:`nst_jax.optimize`),
    drawn from ``key`` (:func:`sliced_key`) folded with the round; pure and traceable."""
    key = jax.random.fold_in(jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32)), round)
    directions = jax.random.normal(key, (channels, count), jnp.float32)
    return directions / jnp.linalg.norm(directions, axis=0, keepdims=True)


def sliced_distance(features: jax.Array, style: jax.Array, key: jax.Array,
                    round: jax.Array | int = 0) -> jax.Array:
    """Sliced Wasserstein (Heitz et al. 2021, eq. 6), squared, of one layer: the features
    projected on ``N`` directions drawn for ``round`` (:func:`random_directions`),
    :func:`sorted_distance` to the quantiles of the ``style``'s features ``(S, N)``
    (:func:`sliced_target`) projected on the same directions. The style's projections are
    sorted in the same evaluation, since the directions change with the round."""
    flat = features.reshape(-1, features.shape[-1])
    directions = random_directions(key, round, flat.shape[-1], flat.shape[-1])
    target = jax.lax.stop_gradient(quantiles(style @ directions, flat.shape[0], jnp))
    return sorted_distance(flat @ directions, target)


def histogram_distance(features: jax.Array, target_quantiles: jax.Array) -> jax.Array:
    """Risser et al. (2017)'s histogram loss of one layer, per value:
    ``mean (F - R(F))^2`` with ``R(F)`` the per-channel histogram matching of ``F`` to the
    style (exact: by ranks), held fixed; ``target_quantiles`` ``(H W, N)``
    (:func:`histogram_target`)."""
    return sorted_distance(features.reshape(-1, features.shape[-1]), target_quantiles)


def sliced_target(style_features: np.ndarray, seed: int, layer: int) -> dict[str, np.ndarray]:
    """What :func:`sliced_distance` compares with: the style's features ``(H', W', N)`` as
    ``(H' W', N)`` and the layer's key (:func:`sliced_key`)."""
    return {"style": np.asarray(style_features, np.float32).reshape(-1, np.shape(style_features)[-1]),
            "key": sliced_key(seed, layer)}


def histogram_target(style_features: np.ndarray, positions: int) -> np.ndarray:
    """The per-channel quantiles :func:`histogram_distance` compares with; ``(positions, N)``."""
    return quantiles(np.asarray(style_features).reshape(-1, np.shape(style_features)[-1]),
                     positions)


# --- a layer sum (eq. 5's shape) ------------------------------------------------------------


def distance_style_loss(name: str, features: Mapping[str, jax.Array], target: Mapping,
                        masks: Mapping[str, jax.Array] | None,
                        layer_weights: Mapping[str, jax.Array],
                        region_weights: jax.Array | None = None, sqrtm: str = DEFAULT_SQRTM,
                        round: jax.Array | int = 0) -> jax.Array:
    """``sum_l w_l sum_r lambda_r D_{l,r}``: eq. 5 with distance ``name`` in place of eq. 4.

    Args:
      name: ``'mean-cov'``, ``'sliced'`` or ``'histogram'``.
      features: ``{layer: (H, W, N)}``.
      target: what :func:`nst_jax.stylize.compute_targets` made for ``name``: for
        ``mean-cov`` ``{'mean': {l: (R, N)}, 'cov_sqrt': {l: (R, N, N)}, 'cov_trace':
        {l: (R,)}}`` (a region's blend of the styles), for ``sliced`` ``{'style':
        {l: (S, N)}, 'key': {l: uint32 key data}}`` (:func:`sliced_target`), for
        ``histogram`` ``{'quantiles': {l: (H W, N)}}``.
      masks: ``{layer: (R, H, W)}`` or None (``mean-cov`` only: the others have one region).
      layer_weights: ``{layer: w_l}``; region_weights: ``(R,)`` or None (1 each).
      round: the optimiser's round, which ``sliced`` draws its directions for.
    """
    total = jnp.float32(0.0)
    for layer, weight in layer_weights.items():
        f = features[layer]
        if name == "mean-cov":
            t = {k: v[layer] for k, v in target.items()}
            regions = t["mean"].shape[0]
            per_region = jnp.stack([
                mean_cov_distance(f, t["mean"][r], t["cov_sqrt"][r], t["cov_trace"][r],
                                  None if masks is None else masks[layer][r], sqrtm)
                for r in range(regions)])
            lam = (jnp.ones((regions,), jnp.float32) if region_weights is None
                   else jnp.asarray(region_weights, jnp.float32))
            value = jnp.dot(lam, per_region)
        elif name == "sliced":
            value = sliced_distance(f, target["style"][layer], target["key"][layer], round)
        elif name == "histogram":
            value = histogram_distance(f, target["quantiles"][layer])
        else:
            raise ValueError(f"unknown style distance {name!r}; choose one of "
                             f"{', '.join(STYLE_DISTANCES[1:])}")
        total = total + jnp.asarray(weight, jnp.float32) * value
    return total
