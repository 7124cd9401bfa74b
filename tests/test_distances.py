"""Style distances beyond Gram's (:mod:`nst_jax.distances`): each under ``jit`` against a
NumPy (float64) version of its equation, their gradients, and their wiring through the
configuration, the loss, tiling and sweeps on the tiny VGG."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nst_jax import config as config_module
from nst_jax import distances, losses, stylize, sweep, tiling
from nst_jax.config import Config, ConfigError
from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE
from tests.sweep_worker import pictures as sweep_pictures
from tests.test_sweep import count_traces

RTOL = 1e-5
# float32 against float64 through an eigendecomposition or a square root of one.
RTOL_SQRTM = 1e-4
EPS_RELATIVE = distances.EPS_RELATIVE


# --- NumPy references (float64), written from the equations ---------------------------------


def np_sqrtm(x: np.ndarray) -> np.ndarray:
    """``X^(1/2)`` of a symmetric PSD matrix."""
    values, vectors = np.linalg.eigh(np.asarray(x, np.float64))
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def np_eigvalsh(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.clip(np.linalg.eigvalsh(0.5 * (x + x.T)), 0, None)


def np_trace_sqrt(x: np.ndarray) -> float:
    """``tr X^(1/2)``, exactly."""
    return float(np.sum(np.sqrt(np_eigvalsh(x))))


def np_trace_sqrt_regularised(x: np.ndarray, eps: float) -> float:
    """The library's regularised ``tr X^(1/2)``, ``sum_i l_i / sqrt(l_i + eps)``: 0 for a
    zero eigenvalue, ``sqrt(l) - eps / (2 sqrt(l))`` for a large one."""
    values = np_eigvalsh(x)
    return float(np.sum(values / np.sqrt(values + eps)))


def np_trace_sqrt_gradient(x: np.ndarray, eps: float) -> np.ndarray:
    """Its derivative, ``(1/2) (Z + eps Z^3)`` with ``Z = (X + eps I)^(-1/2)``."""
    values, vectors = np.linalg.eigh(np.asarray(x, np.float64))
    values = np.clip(values, 0, None)
    return (vectors * ((values + 2 * eps) / (2 * (values + eps) ** 1.5))) @ vectors.T


def eps_of(style_cov_trace: float, channels: int) -> float:
    """mean-cov's regularisation, relative to the target's scale: ``EPS_RELATIVE (tr C_s / N)^2``."""
    return EPS_RELATIVE * (float(style_cov_trace) / channels) ** 2


def w2_bias_bound(style_cov_trace: float, channels: int) -> float:
    """How far the regularised ``W2^2 / N`` may exceed the exact one: each of at most ``N``
    eigenvalues' roots falls short by less than ``sqrt(eps)`` (``sqrt(l) - l / sqrt(l + eps)``
    peaks at 0.3 sqrt(eps)), twice, over ``N``."""
    return 2 * np.sqrt(eps_of(style_cov_trace, channels))


def np_moments(features: np.ndarray, mask: np.ndarray | None = None):
    """Weighted mean ``(N,)`` and second moment ``(N, N)`` of the positions' feature vectors."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    m = np.ones(len(flat)) if mask is None else np.asarray(mask, np.float64).reshape(-1)
    mean = np.einsum("k,ki->i", m, flat) / m.sum()
    second = np.einsum("k,ki,kj->ij", m, flat, flat) / m.sum()
    return mean, second


def np_w2_per_channel(mean, cov, style_mean, style_cov, regularised: bool = True) -> float:
    """``W2^2 / N`` between ``N(mean, cov)`` and ``N(style_mean, style_cov)`` (Dowson & Landau
    1982): ``|mu - mu_s|^2 + tr C + tr C_s - 2 tr (C_s^1/2 C C_s^1/2)^1/2``, over ``N``; the
    last square root regularised as the library's (or exact)."""
    root = np_sqrtm(style_cov)
    cross = root @ cov @ root
    trace_sqrt = (np_trace_sqrt_regularised(cross, eps_of(np.trace(style_cov), len(mean)))
                  if regularised else np_trace_sqrt(cross))
    w2 = np.sum((mean - style_mean) ** 2) + np.trace(cov) + np.trace(style_cov) - 2 * trace_sqrt
    return w2 / len(mean)


def np_mean_cov(features, style_features, mask=None, regularised: bool = True) -> float:
    mean, second = np_moments(features, mask)
    style_mean, style_second = np_moments(style_features)
    return np_w2_per_channel(mean, second - np.outer(mean, mean), style_mean,
                             style_second - np.outer(style_mean, style_mean), regularised)


def np_quantiles(samples: np.ndarray, count: int) -> np.ndarray:
    """``Q((j + 1/2) / count)`` of each column: Hyndman & Fan's definition 5 ('hazen')."""
    return np.quantile(np.asarray(samples, np.float64), (np.arange(count) + 0.5) / count,
                       axis=0, method="hazen")


def np_sliced(features, style_features, directions) -> float:
    """Heitz et al. (2021), eq. 6 squared: the mean over directions and sorted positions of
    ``(sort(F d) - quantiles(S d))^2``."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    style = np.asarray(style_features, np.float64).reshape(-1, style_features.shape[-1])
    d = np.asarray(directions, np.float64)
    projected = np.sort(flat @ d, axis=0)
    return float(np.mean((projected - np_quantiles(style @ d, len(flat))) ** 2))


def np_histogram_matched(features, style_features) -> np.ndarray:
    """Risser et al. (2017)'s ``R(F)``: each channel of ``F`` given the style's values of
    the same ranks (the style having as many positions as ``F``); ``(M, N)``."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    style = np.sort(np.asarray(style_features, np.float64).reshape(flat.shape), axis=0)
    ranks = np.argsort(np.argsort(flat, axis=0), axis=0)
    return np.take_along_axis(style, ranks, axis=0)


def np_histogram(features, style_features) -> float:
    """``mean (F - R(F))^2``."""
    flat = np.asarray(features, np.float64).reshape(-1, features.shape[-1])
    return float(np.mean((flat - np_histogram_matched(features, style_features)) ** 2))


# --- test data --------------------------------------------------------------------------------


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def gaussian_features(rng, shape, scale=3.0, shift=1.0) -> np.ndarray:
    """Features ``(H, W, N)`` whose covariance (and its products with another's) has
    eigenvalues of one order (far from the regularisation's reach), and continuous values,
    so sorting has no ties."""
    n = shape[-1]
    rotation, _ = np.linalg.qr(rng.normal(size=(n, n)))
    mixing = rotation * np.linspace(0.8, 1.6, n)  # correlated channels, well conditioned
    flat = rng.normal(size=(int(np.prod(shape[:-1])), n)) @ mixing.T * scale + shift
    return flat.reshape(shape).astype(np.float32)


def mean_cov_target_of(style_features, dtype=np.float32) -> dict:
    """:func:`distances.mean_cov_target` of a style's moments (whole image)."""
    target = distances.mean_cov_target(*np_moments(style_features))
    return {k: np.asarray(v, dtype) for k, v in target.items()}


def well_conditioned_spd(rng, n, low=0.5, high=5.0) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.linspace(low, high, n)) @ q.T


def assert_cross_well_conditioned(features, style_features):
    """Far from the regularisation's reach (and from eigenvalue crossings)."""
    mean, second = np_moments(features)
    smean, ssecond = np_moments(style_features)
    root = np_sqrtm(ssecond - np.outer(smean, smean))
    cross = root @ (second - np.outer(mean, mean)) @ root
    values = np.linalg.eigvalsh(cross)
    assert values.min() > 1e-3 * values.max()


# --- mean and covariance: 2-Wasserstein between Gaussians -----------------------------------


@pytest.mark.parametrize("masked", [False, True], ids=["whole", "soft-mask"])
def test_moments_are_the_weighted_mean_and_second_moment(rng, masked):
    f = gaussian_features(rng, (5, 6, 4))
    mask = rng.uniform(0.0, 1.0, (5, 6)).astype(np.float32) if masked else None
    mean, second = jax.jit(distances.moments)(f, mask)
    want_mean, want_second = np_moments(f, mask)
    assert mean.shape == (4,) and second.shape == (4, 4)
    np.testing.assert_allclose(mean, want_mean, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(second, want_second, rtol=RTOL)


def test_a_mask_of_ones_is_the_whole_image_and_a_binary_mask_its_positions(rng):
    f = gaussian_features(rng, (4, 5, 3))
    whole = distances.moments(f)
    ones = distances.moments(f, np.ones((4, 5), np.float32))
    for a, b in zip(whole, ones):
        np.testing.assert_allclose(a, b, rtol=RTOL)
    mask = np.zeros((4, 5), np.float32)
    mask[1:3, 2:] = 1
    inside = distances.moments(f, mask)
    only = distances.moments(f[1:3, 2:])
    for a, b in zip(inside, only):
        np.testing.assert_allclose(a, b, rtol=RTOL)


def test_mean_cov_target_is_the_styles_gaussian(rng):
    s = gaussian_features(rng, (7, 6, 5))
    mean, second = np_moments(s)
    cov = second - np.outer(mean, mean)
    target = distances.mean_cov_target(mean, second)
    assert sorted(target) == ["cov_sqrt", "cov_trace", "mean"]
    assert all(np.asarray(v).dtype == np.float32 for v in target.values())
    np.testing.assert_allclose(target["mean"], mean, rtol=RTOL)
    root = target["cov_sqrt"].astype(np.float64)
    np.testing.assert_allclose(root, root.T, atol=1e-6)
    np.testing.assert_allclose(root @ root, cov, rtol=RTOL_SQRTM,
                               atol=RTOL_SQRTM * np.abs(cov).max())
    np.testing.assert_allclose(target["cov_trace"], np.trace(cov), rtol=RTOL)
    # The host square root keeps a PSD matrix's nullspace (no regularisation there).
    singular = np.diag([4.0, 1.0, 0.0])
    np.testing.assert_allclose(distances.sqrtm_psd(singular), np.diag([2.0, 1.0, 0.0]), atol=1e-12)


def test_mean_cov_error_is_the_closed_form_for_commuting_covariances():
    """For diagonal covariances ``W2^2 = |mu - mu_s|^2 + sum_i (sqrt a_i - sqrt b_i)^2``: a
    check of the formula that shares no algebra with it."""
    a, b = np.array([4.0, 9.0, 2.0, 1.0]), np.array([1.0, 16.0, 2.0, 0.25])
    mu, mu_s = np.array([1.0, -2.0, 0.5, 0.0]), np.array([0.0, 1.0, 0.5, 3.0])
    want = (np.sum((mu - mu_s) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)) / 4
    # The regularised root: sqrt(a b) becomes a b / sqrt(a b + eps).
    eps = eps_of(b.sum(), 4)
    regularised = want + 2 * np.sum(np.sqrt(a * b) - a * b / np.sqrt(a * b + eps)) / 4
    assert 0 < regularised - want <= w2_bias_bound(b.sum(), 4)  # a small correction
    target = distances.mean_cov_target(mu_s, np.diag(b) + np.outer(mu_s, mu_s))
    for sqrtm in distances.SQRTM_METHODS:
        error = jax.jit(functools.partial(distances.mean_cov_error, sqrtm=sqrtm))
        got = error(np.float32(mu), np.float32(np.diag(a) + np.outer(mu, mu)), target["mean"],
                    target["cov_sqrt"], target["cov_trace"])
        assert float(got) == pytest.approx(regularised, rel=RTOL_SQRTM), sqrtm


@pytest.mark.parametrize("sqrtm", distances.SQRTM_METHODS)
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "soft-mask"])
def test_mean_cov_distance_is_w2_between_the_fitted_gaussians(rng, sqrtm, masked):
    f, s = gaussian_features(rng, (6, 5, 6)), gaussian_features(rng, (8, 7, 6), shift=-0.5)
    assert_cross_well_conditioned(f, s)
    mask = rng.uniform(0.2, 1.0, (6, 5)).astype(np.float32) if masked else None
    target = mean_cov_target_of(s)
    fn = jax.jit(functools.partial(distances.mean_cov_distance, sqrtm=sqrtm))
    got = fn(f, target["mean"], target["cov_sqrt"], target["cov_trace"], mask)
    assert float(got) == pytest.approx(np_mean_cov(f, s, mask), rel=RTOL_SQRTM)
    # The exact W2, up to the regularisation's bias.
    exact = np_mean_cov(f, s, mask, regularised=False)
    assert 0 <= float(got) - exact <= 1.01 * w2_bias_bound(target["cov_trace"], 6)
    # mean_cov_error of the moments is the same number.
    error = distances.mean_cov_error(*distances.moments(f, mask), target["mean"],
                                     target["cov_sqrt"], target["cov_trace"], sqrtm)
    assert float(error) == pytest.approx(float(got), rel=RTOL)  # eager vs jit rounding


@pytest.mark.parametrize("dead", [0, 2], ids=["full-rank", "two-dead-channels"])
def test_w2_of_a_gaussian_with_itself_is_zero(rng, dead):
    """2 tr C - 2 tr (C^2)^(1/2) = 0, but for float32 cancellation (tr C ~ 1e3 here) and the
    regularisation: each non-zero eigenvalue's root falls short by at most sqrt(eps) =
    sqrt(EPS_RELATIVE) tr C / N (:func:`w2_bias_bound`), a zero one's by nothing (channels
    that are 0 everywhere, dead ReLUs, add nothing)."""
    f = gaussian_features(rng, (6, 6, 5), scale=10.0)
    f[..., :dead] = 0.0
    rank = 5 - dead
    for features in (f, f[:1, :2]):  # the second: fewer positions than channels, rank 1
        target = mean_cov_target_of(features)
        trace = float(target["cov_trace"])
        bound = w2_bias_bound(trace, 5) * min(rank, features[..., 0].size - 1) / 5
        want = np_mean_cov(features, features)
        assert 0 < want <= bound
        for sqrtm in distances.SQRTM_METHODS:
            value = float(distances.mean_cov_distance(features, target["mean"], target["cov_sqrt"],
                                                      target["cov_trace"], sqrtm=sqrtm))
            # Newton-Schulz converges slowest on the null eigenvalues (where eps is all there
            # is): 2e-5 of the trace off in the rank-1 case.
            tolerance = (1e-5 if sqrtm == "eigh" else 5e-5) * trace
            assert value == pytest.approx(want, rel=1e-2, abs=tolerance), (sqrtm, features.shape)


def test_mean_cov_is_zero_for_the_same_features_in_any_order(rng):
    f = gaussian_features(rng, (6, 5, 4))
    permuted = rng.permutation(f.reshape(-1, 4)).reshape(f.shape)
    target = mean_cov_target_of(f)
    bound = w2_bias_bound(target["cov_trace"], 4)
    values = [float(distances.mean_cov_distance(features, target["mean"], target["cov_sqrt"],
                                                target["cov_trace"])) for features in (f, permuted)]
    # Both near 0: equal up to float32 cancellation in tr C + tr C_s - 2 tr(...) (tr C ~ 4 here).
    assert values[0] == pytest.approx(values[1], abs=1e-5 * float(target["cov_trace"]))
    assert -1e-5 * float(target["cov_trace"]) <= values[0] <= bound
    # and not for others (the test can fail): a shifted mean, then a scaled covariance
    shifted = distances.mean_cov_distance(f + 1.0, target["mean"], target["cov_sqrt"],
                                          target["cov_trace"])
    assert float(shifted) == pytest.approx(np_mean_cov(f + 1.0, f), rel=RTOL_SQRTM)
    assert float(shifted) - values[0] == pytest.approx(1.0, rel=1e-3)  # |1|^2 N times, over N
    wider = 2.0 * (f - f.mean((0, 1))) + f.mean((0, 1))
    scaled = distances.mean_cov_distance(wider, target["mean"], target["cov_sqrt"],
                                         target["cov_trace"])
    assert float(scaled) == pytest.approx(np_mean_cov(wider, f), rel=RTOL_SQRTM)
    # W2^2 between N(mu, C) and N(mu, 4 C) is tr C (2 - 1)^2.
    assert 0 <= float(scaled) - float(target["cov_trace"]) / 4 <= bound


# --- the square roots' traces and their custom gradients ------------------------------------


@pytest.mark.parametrize("eps", [1e-6, 1e-2])
@pytest.mark.parametrize("name", distances.SQRTM_METHODS)
def test_trace_sqrt_and_its_gradient_half_the_inverse_root(rng, name, eps):
    fn = distances.TRACE_SQRT[name]
    x = well_conditioned_spd(rng, 6)
    value, grad = jax.jit(jax.value_and_grad(fn))(jnp.float32(x), jnp.float32(eps))
    assert float(value) == pytest.approx(np_trace_sqrt_regularised(x, eps), rel=RTOL_SQRTM)
    want = np_trace_sqrt_gradient(x, eps)
    np.testing.assert_allclose(grad, want, rtol=RTOL_SQRTM, atol=RTOL_SQRTM * np.abs(want).max())
    if eps < 1e-4:  # then tr X^(1/2) and (1/2) X^(-1/2) themselves
        assert float(value) == pytest.approx(np_trace_sqrt(x), rel=1e-3)
        half_inverse_root = 0.5 * np.linalg.inv(np_sqrtm(x))
        np.testing.assert_allclose(grad, half_inverse_root, atol=1e-4 * np.abs(want).max())
    # The custom VJPs against finite differences (float64); eps is held fixed.
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        check_grads(lambda m: fn(m, eps), (x64,), order=1, modes=("rev",))
        # A cotangent other than 1 is carried through; eps gets none.
        _, vjp = jax.vjp(fn, x64, jnp.float64(eps))
        d_x, d_eps = vjp(jnp.float64(3.0))
        np.testing.assert_allclose(d_x, 3.0 * want, rtol=1e-6)
        assert float(d_eps) == 0.0


@pytest.mark.parametrize("name", distances.SQRTM_METHODS)
def test_trace_sqrt_is_regularised_where_eigenvalues_reach_eps(rng, name):
    """Eigenvalues at and below eps (a nearly rank-deficient layer): the value is the
    regularised trace, its gradient that value's derivative (bounded), and a zero
    eigenvalue adds nothing."""
    fn = distances.TRACE_SQRT[name]
    eps = 1e-2
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    x = (q * np.array([2e-3, 8e-3, 3e-2, 1.0, 4.0])) @ q.T
    with jax.enable_x64(True):
        x64 = jnp.asarray(x, jnp.float64)
        assert float(fn(x64, eps)) == pytest.approx(np_trace_sqrt_regularised(x, eps), rel=1e-6)
        np.testing.assert_allclose(jax.grad(fn)(x64, eps), np_trace_sqrt_gradient(x, eps),
                                   rtol=1e-5, atol=1e-8)
        check_grads(lambda m: fn(m, eps), (x64,), order=1, modes=("rev",), eps=1e-5)
        positive = np.array([0.5, 1.0, 4.0])
        singular = jnp.asarray((q * np.concatenate([[0.0, 0.0], positive])) @ q.T)
        assert float(fn(singular, eps)) == pytest.approx(
            np.sum(positive / np.sqrt(positive + eps)), rel=1e-6)
        grad = jax.grad(fn)(singular, eps)
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() <= 1.0 / np.sqrt(eps) * 1.001


def test_eigh_and_newton_schulz_agree_on_a_well_conditioned_matrix(rng):
    x = jnp.float32(well_conditioned_spd(rng, 32))
    eigh = jax.jit(jax.value_and_grad(distances.trace_sqrt_eigh))
    ns = jax.jit(jax.value_and_grad(distances.trace_sqrt_newton_schulz))
    # At unit scale, then at the scale of VGG's features (1e2-1e3 squared), eps relative.
    for scale in (1.0, 1e4):
        m = scale * x
        eps = jnp.float32(EPS_RELATIVE * float(jnp.trace(m) / 32) ** 2)
        (v_ns, g_ns), (v_eigh, g_eigh) = ns(m, eps), eigh(m, eps)
        assert float(v_ns) == pytest.approx(float(v_eigh), rel=1e-5), scale
        np.testing.assert_allclose(g_ns, g_eigh, atol=1e-4 * float(jnp.abs(g_eigh).max()))
        assert float(v_eigh) == pytest.approx(
            np_trace_sqrt_regularised(np.asarray(m), float(eps)), rel=1e-5)


@pytest.mark.parametrize("sqrtm", distances.SQRTM_METHODS)
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "soft-mask"])
def test_mean_cov_distance_gradients(rng, sqrtm, masked):
    f, s = gaussian_features(rng, (4, 4, 3)), gaussian_features(rng, (5, 5, 3), shift=0.0)
    assert_cross_well_conditioned(f, s)
    mask = rng.uniform(0.2, 1.0, (4, 4)) if masked else None
    target = mean_cov_target_of(s, np.float64)
    with jax.enable_x64(True):
        def fn(features):
            return distances.mean_cov_distance(features, target["mean"], target["cov_sqrt"],
                                               target["cov_trace"], mask, sqrtm)

        check_grads(fn, (jnp.asarray(f, jnp.float64),), order=1, modes=("rev",))


@pytest.mark.parametrize("sqrtm", distances.SQRTM_METHODS)
@pytest.mark.parametrize("masked", [False, True], ids=["whole", "soft-mask"])
def test_fewer_positions_than_channels_is_the_same_distance(rng, sqrtm, masked):
    """``M < N`` (conv5_1 of a small image): the square root of the ``(M, M)`` matrix
    ``A A^T`` in place of ``C_s^1/2 C C_s^1/2 = A^T A``: the same value and gradient as the
    ``(N, N)`` form, and the reference's (whose C is singular: rank M - 1)."""
    f, s = gaussian_features(rng, (2, 3, 9)), gaussian_features(rng, (6, 6, 9), shift=-0.5)
    mask = rng.uniform(0.2, 1.0, (2, 3)).astype(np.float32) if masked else None
    target = mean_cov_target_of(s)
    args = (target["mean"], target["cov_sqrt"], target["cov_trace"])

    def few(features):  # the M < N branch
        return distances.mean_cov_distance(features, *args, mask, sqrtm)

    def square(features):  # the (N, N) form
        return distances.mean_cov_error(*distances.moments(features, mask), *args, sqrtm)

    (v_few, g_few), (v_square, g_square) = (jax.jit(jax.value_and_grad(fn))(f)
                                            for fn in (few, square))
    want = np_mean_cov(f, s, mask)
    assert float(v_few) == pytest.approx(want, rel=RTOL_SQRTM)
    assert float(v_square) == pytest.approx(want, rel=1e-3)  # float32 noise on the nullspace
    # (Newton-Schulz's 20 steps may not reach the (N, N) form's null eigenvalues, eps far
    # below |X|_F: its gradient there falls short, by 0.15% of the largest seen here.)
    np.testing.assert_allclose(g_few, g_square, atol=3e-3 * float(jnp.abs(g_few).max()))
    with jax.enable_x64(True):
        check_grads(few, (jnp.asarray(f, jnp.float64),), order=1, modes=("rev",))


# --- sorted projections: quantiles, sliced Wasserstein, histograms ---------------------------


@pytest.mark.parametrize("samples, count", [(20, 20), (37, 12), (9, 25), (1, 4)])
def test_quantiles_are_hazen_quantiles(rng, samples, count):
    x = rng.normal(size=(samples, 3))
    got = distances.quantiles(x, count)
    assert got.shape == (count, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, np_quantiles(x, count), rtol=1e-6, atol=1e-6)
    assert np.all(np.diff(got, axis=0) >= 0)  # sorted
    if samples == count:  # as many as there are: the sorted samples themselves
        np.testing.assert_array_equal(got, np.sort(x, axis=0).astype(np.float32))


def test_sorted_distance_compares_sorted_values_with_the_quantiles(rng):
    values, q = rng.normal(size=(15, 4)), np.sort(rng.normal(size=(15, 4)), axis=0)
    got = jax.jit(distances.sorted_distance)(np.float32(values), np.float32(q))
    assert float(got) == pytest.approx(np.mean((np.sort(values, axis=0) - q) ** 2), rel=RTOL)


def test_random_directions_are_unit_vectors_from_the_seed_layer_and_round():
    key = distances.sliced_key(3, 0)
    d = np.asarray(distances.random_directions(key, 0, 6, 10))
    assert d.shape == (6, 10) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(d, distances.random_directions(distances.sliced_key(3, 0), 0, 6, 10))
    for other in (distances.random_directions(distances.sliced_key(4, 0), 0, 6, 10),  # seed
                  distances.random_directions(distances.sliced_key(3, 1), 0, 6, 10),  # layer
                  distances.random_directions(key, 1, 6, 10)):  # round
        assert not np.allclose(d, other)
    # A round is data: one compiled function draws every round's, under vmap too.
    rounds = jax.jit(jax.vmap(lambda r: distances.random_directions(key, r, 6, 10)))(
        jnp.arange(3))
    np.testing.assert_allclose(rounds[0], d, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rounds[2], distances.random_directions(key, 2, 6, 10), rtol=1e-6)


def sliced_directions(target, round) -> np.ndarray:
    """The directions :func:`distances.sliced_distance` draws for ``target`` in ``round``."""
    channels = target["style"].shape[-1]
    return np.asarray(distances.random_directions(target["key"], round, channels, channels))


@pytest.mark.parametrize("style_shape", [(5, 6, 4), (9, 7, 4)], ids=["same-count", "more"])
def test_sliced_distance_projects_sorts_and_compares(rng, style_shape):
    f, s = gaussian_features(rng, (5, 6, 4)), gaussian_features(rng, style_shape, shift=-1.0)
    target = distances.sliced_target(s, 0, 2)
    assert target["style"].shape == (style_shape[0] * style_shape[1], 4)
    fn = jax.jit(distances.sliced_distance)
    values = []
    for round in (0, 1, 7):
        got = float(fn(f, target["style"], target["key"], round))
        assert got == pytest.approx(np_sliced(f, s, sliced_directions(target, round)), rel=RTOL)
        values.append(got)
    assert len(set(values)) == 3  # each round its own directions


def test_traced_quantiles_are_the_host_ones(rng):
    x = rng.normal(size=(23, 3))
    got = jax.jit(lambda v: distances.quantiles(v, 9, jnp))(np.float32(x))
    np.testing.assert_allclose(got, distances.quantiles(x, 9), rtol=1e-6, atol=1e-6)


def test_histogram_distance_is_risser_histogram_matching(rng):
    f, s = gaussian_features(rng, (4, 5, 3)), gaussian_features(rng, (5, 4, 3), scale=1.0)
    target = distances.histogram_target(s, 20)
    assert target.shape == (20, 3)
    value, grad = jax.jit(jax.value_and_grad(distances.histogram_distance))(f, target)
    assert float(value) == pytest.approx(np_histogram(f, s), rel=RTOL)
    # Its gradient is Risser's, 2 (F - R(F)) per value (R held fixed), over the count.
    flat = f.reshape(-1, 3).astype(np.float64)
    want = 2 * (flat - np_histogram_matched(f, s)) / flat.size
    np.testing.assert_allclose(np.asarray(grad).reshape(-1, 3), want, rtol=1e-4, atol=1e-7)
    # With a larger style, R(F) reads the style's quantiles at F's ranks.
    big = gaussian_features(rng, (9, 8, 3))
    got = distances.histogram_distance(f, distances.histogram_target(big, 20))
    want = np.mean((np.sort(flat, axis=0) - np_quantiles(big.reshape(-1, 3), 20)) ** 2)
    assert float(got) == pytest.approx(want, rel=RTOL)


def test_sliced_and_histogram_are_zero_for_the_styles_features_in_any_order(rng):
    s = gaussian_features(rng, (6, 5, 4))
    permuted = rng.permutation(s.reshape(-1, 4)).reshape(s.shape)
    target = distances.sliced_target(s, 1, 0)
    for round in (0, 5):
        sliced = distances.sliced_distance(permuted, target["style"], target["key"], round)
        assert abs(float(sliced)) < 1e-10
    histogram = distances.histogram_distance(permuted, distances.histogram_target(s, 30))
    assert abs(float(histogram)) < 1e-10
    # and not for others
    other = gaussian_features(rng, (6, 5, 4))
    assert float(distances.histogram_distance(other, distances.histogram_target(s, 30))) > 0.1


@pytest.mark.parametrize("name", ["sliced", "histogram"])
def test_sorting_distances_gradients(rng, name):
    f, s = gaussian_features(rng, (3, 4, 3)), gaussian_features(rng, (4, 4, 3), shift=0.0)
    if name == "sliced":
        target = distances.sliced_target(s, 2, 0)
        projected = f.reshape(-1, 3).astype(np.float64) @ sliced_directions(target, 3)
        fn = functools.partial(distances.sliced_distance, style=target["style"].astype(np.float64),
                               key=target["key"], round=3)
    else:
        q = distances.histogram_target(s, 12).astype(np.float64)
        projected = f.reshape(-1, 3).astype(np.float64)
        fn = functools.partial(distances.histogram_distance, target_quantiles=q)
    # No ties, with a margin over the finite differences' steps (eps 1e-5 per value).
    gaps = np.diff(np.sort(projected, axis=0), axis=0)
    assert gaps.min() > 1e-4
    with jax.enable_x64(True):
        check_grads(fn, (jnp.asarray(f, jnp.float64),), order=1, modes=("rev",), eps=1e-5)


# --- layer sums and the mix of distances (eq. 5's shape), under vmap -----------------------


LAYER_SHAPES = {"a": (6, 5, 4), "b": (4, 4, 6)}
STYLE_SHAPES = {"a": (7, 6, 4), "b": (5, 4, 6)}


@pytest.fixture
def layered(rng):
    """``(features, style features, Targets)`` of two layers, every distance's target."""
    features = {l: gaussian_features(rng, s) for l, s in LAYER_SHAPES.items()}
    style = {l: gaussian_features(rng, s, shift=-0.5) for l, s in STYLE_SHAPES.items()}
    sliced = {l: distances.sliced_target(style[l], 0, i) for i, l in enumerate(style)}
    positions = {l: s[0] * s[1] for l, s in LAYER_SHAPES.items()}
    mean_cov = {l: mean_cov_target_of(style[l]) for l in style}
    targets = losses.Targets(
        content={},
        style={l: np.asarray(np_moments(style[l])[1], np.float32)[None] for l in style},
        distances={
            "mean-cov": {k: {l: mean_cov[l][k][None] for l in style}
                         for k in ("mean", "cov_sqrt", "cov_trace")},
            "sliced": {k: {l: sliced[l][k] for l in style} for k in ("style", "key")},
            "histogram": {"quantiles": {l: distances.histogram_target(style[l], positions[l])
                                        for l in style}}})
    return features, style, targets


def np_layer_sum(name, features, style, targets, layer_weights) -> float:
    """``sum_l w_l D_l`` by the references."""
    def one(l):
        if name == "mean-cov":
            return np_mean_cov(features[l], style[l])
        if name == "sliced":
            target = {k: v[l] for k, v in targets.distances["sliced"].items()}
            return np_sliced(features[l], style[l], sliced_directions(target, 0))
        return np.mean((np.sort(features[l].reshape(-1, features[l].shape[-1]), axis=0)
                        - np_quantiles(style[l].reshape(-1, style[l].shape[-1]),
                                       features[l].shape[0] * features[l].shape[1])) ** 2)

    return sum(w * one(l) for l, w in layer_weights.items())


@pytest.mark.parametrize("name", ["mean-cov", "sliced", "histogram"])
def test_distance_style_loss_is_a_weighted_layer_sum_and_vmaps(layered, name):
    features, style, targets = layered
    rows = np.float32([[1.0, 0.0], [0.0, 1.0], [0.3, 2.0]])
    batched = {"a": rows[:, 0], "b": rows[:, 1]}

    def loss(layer_weights):
        return distances.distance_style_loss(name, features, targets.distances[name], None,
                                             layer_weights)

    got = jax.jit(jax.vmap(loss))(batched)
    for i, row in enumerate(rows):
        weights = {"a": row[0], "b": row[1]}
        assert float(got[i]) == pytest.approx(float(loss(weights)), rel=1e-6)
        want = np_layer_sum(name, features, style, targets, weights)
        assert float(got[i]) == pytest.approx(want, rel=RTOL_SQRTM), i


def test_an_unknown_distance_is_refused(layered):
    features, _, targets = layered
    with pytest.raises(ValueError, match="unknown style distance 'gramm'"):
        distances.distance_style_loss("gramm", features, {}, None, {"a": 1.0})


def test_mixed_style_loss_is_the_weighted_sum_of_the_scaled_distances(layered):
    """``sum_d u_d s_d L_d`` with the weights ``u_d`` arrays: one vmap goes from Gram to sliced."""
    features, style, targets = layered
    names = distances.STYLE_DISTANCES
    rows = np.float32([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                       [0.5, 0, 0.5, 0], [0.2, 1.5, 0.7, 3.0]])
    layer_weights = {"a": np.float32(0.4), "b": np.float32(0.6)}

    def weights_of(u):
        return losses.LossWeights(np.float32(1), np.float32(1), {}, layer_weights, np.float32(0),
                                  distance_weights=dict(zip(names, u)))

    def loss(u):
        return losses.mixed_style_loss(features, targets, weights_of(u))

    got = jax.jit(jax.vmap(loss))(tuple(rows.T))
    gram = float(losses.guided_style_loss(features, targets.style, None, layer_weights))
    each = {"gram": gram, **{n: distances.SCALES[n] * np_layer_sum(n, features, style, targets,
                                                                   layer_weights)
                             for n in names[1:]}}
    for i, u in enumerate(rows):
        assert float(got[i]) == pytest.approx(float(loss(tuple(u))), rel=1e-6)
        want = sum(w * each[n] for n, w in zip(names, u))
        assert float(got[i]) == pytest.approx(want, rel=RTOL_SQRTM), u
    # The brief's case: gram and sliced, weights as arrays.
    a, b = np.float32(0.3), np.float32(0.8)
    two = losses.mixed_style_loss(features, targets, weights_of(())._replace(
        distance_weights={"gram": a, "sliced": b}))
    assert float(two) == pytest.approx(a * gram + b * each["sliced"], rel=RTOL_SQRTM)


def test_the_default_mix_is_the_papers_style_term(layered):
    features, _, targets = layered
    layer_weights = {"a": np.float32(0.4), "b": np.float32(0.6)}
    weights = losses.LossWeights(np.float32(1), np.float32(1), {}, layer_weights, np.float32(0))
    paper = losses.guided_style_loss(features, targets.style, None, layer_weights)
    assert float(losses.mixed_style_loss(features, targets, weights)) == float(paper)
    gram_only = weights._replace(distance_weights={"gram": np.float32(1)})
    assert float(losses.mixed_style_loss(features, targets, gram_only)) == float(paper)
    # A distance without a target is an error that names it.
    no_targets = targets._replace(distances=None)
    with pytest.raises(KeyError, match="no target for the style distance 'sliced'"):
        losses.mixed_style_loss(features, no_targets, weights._replace(
            distance_weights={"gram": 1.0, "sliced": 0.0}))


# --- the configuration ------------------------------------------------------------------------


def test_the_configuration_names_the_libraries_distances():
    assert config_module.STYLE_DISTANCES == distances.STYLE_DISTANCES
    assert config_module.ADDITIVE_DISTANCES == distances.ADDITIVE
    assert set(distances.SCALES) == set(distances.STYLE_DISTANCES)


@pytest.mark.parametrize("text, canonical, mix", [
    ("gram", "gram", {"gram": 1.0}),
    ("gram:1", "gram", {"gram": 1.0}),
    ("histogram,gram", "gram,histogram", {"gram": 1.0, "histogram": 1.0}),
    (" sliced:0.5 , gram:2 ", "gram:2,sliced:0.5", {"gram": 2.0, "sliced": 0.5}),
    ("mean-cov:1e-3,gram:0", "gram:0,mean-cov:0.001", {"gram": 0.0, "mean-cov": 1e-3}),
    ("gram,", "gram", {"gram": 1.0}),
])
def test_style_loss_parses_to_one_canonical_form(text, canonical, mix):
    assert config_module.parse_style_loss(text) == mix
    config = Config(style_loss=text)
    assert config.style_loss == canonical
    assert config.distance_weights() == mix
    # The canonical form reads back as itself.
    assert Config(style_loss=canonical).style_loss == canonical
    assert Config(style_loss=mix).style_loss == canonical  # a mapping is taken too


def test_the_default_is_the_papers():
    assert Config().style_loss == "gram" and Config().distance_weights() == {"gram": 1.0}


@pytest.mark.parametrize("value, match", [
    ("gramm", "unknown style distance 'gramm'; choose from gram, mean-cov, sliced, histogram"),
    ("gram,gram:2", "names gram more than once"),
    ("gram:-1", "gives gram the weight -1; a weight is a number from 0 to"),
    ("gram:nan", "gives gram the weight nan"),
    ("sliced:inf", "gives sliced the weight inf"),
    ("gram:1e9", "gives gram the weight 1e9"),
    ("gram:lots", "has 'lots' as the weight of gram; expected a number"),
    ("gram:0,sliced:0", "gives every distance the weight 0: no style term"),
    ("", "names no style distance"),
    (" , ", "names no style distance"),
    (3, "must be a style distance or a mix like gram:1,histogram:0.5, got 3"),
])
def test_bad_style_losses_are_refused_with_a_reason(value, match):
    with pytest.raises(ConfigError, match=match) as info:
        Config(style_loss=value)
    assert info.value.field == "style_loss"
    assert str(info.value).startswith("style_loss ")


@pytest.mark.parametrize("style_loss", ["sliced", "histogram", "gram,sliced:0"])
@pytest.mark.parametrize("field, changes", [
    ("tile_size", dict(tile_size=128)),
    ("content_masks", dict(content_masks=("m.png",))),
    ("style_masks", dict(style_masks=("m.png",))),
    ("style", dict(style=("a.jpg", "b.jpg"))),
])
def test_sorting_distances_refuse_tiles_regions_and_several_styles(style_loss, field, changes):
    with pytest.raises(ConfigError, match="cannot be used with the style distance") as info:
        Config(style_loss=style_loss, **changes)
    assert info.value.field == field
    assert "style_loss" in str(info.value)
    # replace() checks as well
    with pytest.raises(ConfigError):
        Config(**changes).replace(style_loss=style_loss)


def test_sorting_distances_take_auto_tiles_and_say_when_an_image_would_need_them(
        tiny_params, tiny_vgg, monkeypatch):
    """``--tile-size auto`` leaves an image that fits untiled, so sliced takes it; where the
    memory model picks tiles, prepare refuses in one sentence, before any work."""
    from nst_jax import memory as memory_model

    config = Config(style_loss="sliced", tile_size="auto", iterations=1, **FEW_LAYERS)
    content, style = sweep_pictures()
    job = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    assert job.tiles is None
    real_choose = memory_model.choose
    monkeypatch.setattr(memory_model, "choose", lambda tile, shape, lbfgs: real_choose(
        64, shape, lbfgs))
    with pytest.raises(NSTError, match="needs tiles of 64 px to fit in memory, and the style "
                                       "distance sliced does not tile"):
        stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)


@pytest.mark.parametrize("changes", [
    dict(tile_size=128), dict(content_masks=("a.png", "b.png"), style=("a.jpg", "b.jpg")),
    dict(style_masks=("m.png",)), dict(style=("a.jpg", "b.jpg"), style_blend_weights=(1, 3)),
])
def test_additive_distances_take_tiles_regions_and_several_styles(changes):
    for style_loss in ("mean-cov", "gram:0.5,mean-cov:2"):
        assert Config(style_loss=style_loss, **changes).style_loss == style_loss


def test_loss_weights_spread_the_distances_over_a_union():
    config = Config(style_loss="gram:0.5,sliced:2")
    assert stylize.loss_weights(config).distance_weights == {"gram": 0.5, "sliced": 2.0}
    spread = stylize.loss_weights(config, distances=("gram", "mean-cov", "sliced"))
    assert spread.distance_weights == {"gram": 0.5, "mean-cov": 0.0, "sliced": 2.0}
    assert all(v.dtype == np.float32 for v in spread.distance_weights.values())
    with pytest.raises(NSTError, match="the style distance.s. sliced are not among gram"):
        stylize.loss_weights(config, distances=("gram",))


# --- on the tiny VGG: targets, loss and gradient, tiles -------------------------------------


@pytest.fixture(scope="module")
def images():
    """An odd-sized content (the poolings floor), a style of another size, a start."""
    rng = np.random.default_rng(11)
    yy, xx = np.mgrid[0:30, 0:42] / 42.0
    content = np.clip(np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1), 0, 1)
    return (content.astype(np.float32), rng.random((36, 28, 3)).astype(np.float32),
            rng.random((30, 42, 3)).astype(np.float32))


def build(config, params, module, content, style, **kwargs):
    """:func:`stylize.build_loss_fn` of ``config`` and its loss weights."""
    loss = stylize.build_loss_fn(params, content, style, config.content_layers,
                                 config.style_layers, module, CAFFE,
                                 **stylize.distance_arguments(config), **kwargs)
    return loss, stylize.loss_weights(config)


@pytest.mark.parametrize("style_loss", ["gram", "mean-cov", "sliced", "histogram",
                                        "gram,histogram"])
def test_each_style_loss_gives_a_finite_loss_and_gradient(tiny_vgg, tiny_params, images,
                                                          style_loss):
    content, style, x = images
    config = Config(style_loss=style_loss)
    loss, weights = build(config, tiny_params, tiny_vgg, content, style)
    (total, terms), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x, weights)
    assert np.isfinite(float(total)) and float(terms.style) > 0
    assert np.all(np.isfinite(grad)) and float(jnp.abs(grad).max()) > 0
    assert float(total) == pytest.approx(float(terms.content) + config.beta * float(terms.style),
                                         rel=1e-5)
    targets = loss.data[1]
    assert (targets.distances is None) == (style_loss == "gram")
    for name in config.distance_weights():
        if name != "gram":
            assert set(targets.distances) >= {name}


def _features(params, module, layers, image):
    f = stylize.make_features_fn(params, layers, module, CAFFE)(jnp.asarray(image))
    return {l: np.asarray(v, np.float64) for l, v in f.items()}


def test_the_style_terms_are_their_equations_on_the_networks_features(tiny_vgg, tiny_params):
    """compute_targets + mixed_style_loss against the references on the network's own
    features: mean-cov's target is the Gaussian of the blend of two styles' moments,
    sliced's quantiles the style's projections' and histogram's the style's values."""
    rng = np.random.default_rng(3)
    content = rng.random((64, 64, 3)).astype(np.float32)
    styles = [rng.random(shape).astype(np.float32) for shape in ((48, 56, 3), (64, 40, 3))]
    x = rng.random((64, 64, 3)).astype(np.float32)
    layers = ("conv1_1", "conv2_1", "conv3_1")
    base = dict(style_layers=layers, content_layers=("conv4_2",))
    blend = Config(style=("a.jpg", "b.jpg"), style_blend_weights=(1.0, 3.0),
                   style_loss="mean-cov", **base)
    f = _features(tiny_params, tiny_vgg, layers, x)
    fs = [_features(tiny_params, tiny_vgg, layers, s) for s in styles]
    layer_w = blend.layer_weights("style")

    loss, weights = build(blend, tiny_params, tiny_vgg, content, styles)
    got = float(jax.jit(loss)(x, weights)[1].style)
    want = 0.0
    for l in layers:
        mean, second = np_moments(f[l])
        moments = [np_moments(s[l]) for s in fs]
        style_mean = 0.25 * moments[0][0] + 0.75 * moments[1][0]
        style_second = 0.25 * moments[0][1] + 0.75 * moments[1][1]
        # The tiny VGG has dead channels (conv3_1 here): C and C_s are singular.
        want += layer_w[l] * np_w2_per_channel(
            mean, second - np.outer(mean, mean), style_mean,
            style_second - np.outer(style_mean, style_mean))
    assert got == pytest.approx(distances.SCALES["mean-cov"] * want, rel=1e-3)

    for name in ("sliced", "histogram"):
        config = Config(style_loss=name, seed=5, **base)
        loss, weights = build(config, tiny_params, tiny_vgg, content, styles[1])
        got = float(jax.jit(loss)(x, weights)[1].style)
        want = 0.0
        for l in layers:
            if name == "sliced":
                target = {k: v[l] for k, v in loss.data[1].distances["sliced"].items()}
                np.testing.assert_allclose(target["style"], fs[1][l].reshape(-1, f[l].shape[-1]),
                                           rtol=1e-4, atol=1e-3)
                want += layer_w[l] * np_sliced(f[l], fs[1][l], sliced_directions(target, 0))
            else:
                want += layer_w[l] * np.mean(
                    (np.sort(f[l].reshape(-1, f[l].shape[-1]), axis=0)
                     - np_quantiles(fs[1][l].reshape(-1, f[l].shape[-1]),
                                    f[l].shape[0] * f[l].shape[1])) ** 2)
        assert got == pytest.approx(distances.SCALES[name] * want, rel=1e-4), name


def test_sliced_draws_new_directions_every_redraw_every_iterations(tiny_vgg, tiny_params, images):
    """Config.redraw_every makes the optimiser's rounds where sliced is among the
    distances; the loss of round r is sliced's with round r's directions; a run of
    rounds is a run (and another than one draw for the whole run)."""
    content, style, x = images
    settings = stylize.optimizer_settings
    assert settings(Config(style_loss="sliced", redraw_every=3)).round_length == 3
    assert settings(Config(style_loss="gram,sliced", redraw_every=0)).round_length == 0
    assert settings(Config(style_loss="mean-cov", redraw_every=3)).round_length == 0  # one loss
    assert settings(Config(redraw_every=3), ("gram", "sliced")).round_length == 3  # a grid's
    assert Config().redraw_every == 50

    config = Config(style_loss="sliced", **FEW_LAYERS)
    loss, weights = build(config, tiny_params, tiny_vgg, content, style)
    style_term = jax.jit(lambda w: loss(x, w)[1].style)
    values = [float(style_term(weights.at_round(r))) for r in range(3)]
    assert len(set(values)) == 3
    assert float(style_term(weights)) == values[0]  # no round: round 0
    target = {k: v["conv1_1"] for k, v in loss.data[1].distances["sliced"].items()}
    f = _features(tiny_params, tiny_vgg, ("conv1_1",), x)["conv1_1"]
    style_f = _features(tiny_params, tiny_vgg, ("conv1_1",), style)["conv1_1"]
    direct = distances.sliced_distance(f.astype(np.float32), target["style"], target["key"], 2)
    assert float(direct) == pytest.approx(np_sliced(f, style_f, sliced_directions(target, 2)),
                                          rel=1e-4)

    def run(redraw_every):
        job = stylize.prepare(content, style, tiny_params,
                              config.replace(iterations=6, redraw_every=redraw_every),
                              module=tiny_vgg)
        job.step(6)
        return job.state

    rounds, once = run(2), run(0)
    assert int(rounds.iteration) == int(once.iteration) == 6
    assert np.all(np.isfinite(np.asarray(rounds.trace.value)))
    assert not np.allclose(np.asarray(rounds.pixels), np.asarray(once.pixels))


def test_the_gram_default_is_the_loss_of_before(tiny_vgg, tiny_params, images):
    """No style_loss set: no other targets, and the style term is eq. 5 as it was,
    losses.guided_style_loss of the same features, targets and weights, to the bit."""
    content, style, x = images
    config = Config()
    loss, weights = build(config, tiny_params, tiny_vgg, content, style)
    plain = stylize.build_loss_fn(tiny_params, content, style, config.content_layers,
                                  config.style_layers, tiny_vgg, CAFFE)
    _, targets = loss.data
    assert targets.distances is None and plain.data[1].distances is None
    assert weights.distance_weights == {"gram": 1.0}
    features = stylize.make_features_fn(tiny_params, config.content_layers + config.style_layers,
                                        tiny_vgg, CAFFE)

    @jax.jit
    def both(pixels):
        fs = features(pixels)
        old = losses.guided_style_loss(fs, targets.style, targets.masks,
                                       weights.style_layer_weights, weights.style_mix,
                                       weights.region_weights)
        return losses.total_loss(fs, pixels, targets, weights)[1].style, old

    new, old = both(jnp.asarray(x))
    assert float(new) == float(old)
    # A loss without distance weights (as before the change) gives the same number too.
    total, terms = jax.jit(plain)(x, weights._replace(distance_weights=None))
    assert float(terms.style) == pytest.approx(float(new), rel=1e-6)


def _relative(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("regions", [False, True], ids=["whole", "two-regions"])
def test_tiled_mean_cov_equals_untiled(tiny_vgg, tiny_params, regions):
    rng = np.random.default_rng(4)
    h, w = 64, 80
    content = rng.random((h, w, 3)).astype(np.float32)
    styles = [rng.random(shape).astype(np.float32) for shape in ((40, 44, 3), (50, 36, 3))]
    x = rng.random((h, w, 3)).astype(np.float32)
    extra, masks = dict(style=("a.jpg",)), None
    if regions:
        m = np.zeros((h, w), np.float32)
        m[:, : w // 3] = 1
        m[h // 2:] = 0.5
        masks = np.stack([m, 1 - m])
        extra = dict(style=("a.jpg", "b.jpg"), content_masks=("a.png", "b.png"),
                     region_weights=(0.7, 0.3))
    config = Config(style_loss="gram:0.5,mean-cov", content_layers=("conv3_2",),
                    style_layers=("conv1_1", "conv2_1", "conv3_1"), tv_weight=0.1, **extra)
    style = styles if regions else styles[0]
    untiled, weights = build(config, tiny_params, tiny_vgg, content, style, content_masks=masks)
    tiled, _ = build(config, tiny_params, tiny_vgg, content, style, content_masks=masks,
                     tile_size=64)
    assert untiled.plan is None and tiled.plan is not None
    assert tiled.plan.grids[0].tiles > 1
    untiled_vg = jax.jit(jax.value_and_grad(untiled, has_aux=True))
    tiled_vg = jax.jit(jax.value_and_grad(tiled, has_aux=True))
    # The mix, then the mean-cov part alone (not hidden behind the Gram term): new weights,
    # the same programs.
    only = weights._replace(distance_weights={"gram": np.float32(0), "mean-cov": np.float32(1)})
    for w in (weights, only):
        (v0, t0), g0 = untiled_vg(x, w)
        (v1, t1), g1 = tiled_vg(x, w)
        assert float(t0.style) > 0
        # cov = S - mu mu^T from sums over tiles: cancellation in float32.
        np.testing.assert_allclose(float(v1), float(v0), rtol=1e-3)
        np.testing.assert_allclose(np.array(t1), np.array(t0), rtol=1e-3)
        assert _relative(g1, g0) < 1e-2


def test_tiled_targets_of_mean_cov_equal_the_untiled_ones(tiny_vgg, tiny_params):
    rng = np.random.default_rng(6)
    content = rng.random((64, 80, 3)).astype(np.float32)
    style = rng.random((96, 72, 3)).astype(np.float32)
    layers = ("conv4_2",), ("conv1_1", "conv2_1", "conv3_1")
    features = stylize.make_features_fn(tiny_params, layers[0] + layers[1], tiny_vgg, CAFFE)
    want = stylize.compute_targets(jax.jit(features), content, style, *layers,
                                   distances=("mean-cov",))
    got = stylize.compute_targets(None, content, style, *layers, distances=("mean-cov",),
                                  tile_size=64, network=(tiny_params, tiny_vgg, CAFFE))
    for key in ("mean", "cov_sqrt", "cov_trace"):
        for l in layers[1]:
            assert _relative(got.distances["mean-cov"][key][l],
                             want.distances["mean-cov"][key][l]) < 1e-3, (key, l)


def test_sliced_and_histogram_do_not_tile(tiny_vgg, tiny_params, images):
    content, style, _ = images
    config = Config(style_loss="sliced")
    with pytest.raises(NSTError, match="takes one style image over the whole image, untiled"):
        build(config, tiny_params, tiny_vgg, content, style, tile_size=64)
    # A tiled loss handed sliced targets (made untiled) refuses them too.
    untiled, _ = build(config.replace(style_loss="gram,histogram"), tiny_params, tiny_vgg,
                       content, style)
    with pytest.raises(NSTError, match="the style distance histogram does not tile"):
        tiling.make_tiled_loss(tiny_params, tiny_vgg, CAFFE, untiled.data[1],
                               config.content_layers, config.style_layers, content.shape[:2], 64)


@pytest.mark.parametrize("kwargs", [dict(content_masks=np.ones((1, 30, 42), np.float32)),
                                    dict(style_masks=[np.ones((36, 28), np.float32)])])
def test_sorting_distances_refuse_regions_in_the_library_too(tiny_vgg, tiny_params, images, kwargs):
    content, style, _ = images
    with pytest.raises(NSTError, match="histogram takes one style image"):
        stylize.build_loss_fn(tiny_params, content, style, ("conv4_2",), ("conv1_1",), tiny_vgg,
                              CAFFE, distances=("gram", "histogram"), **kwargs)


def test_sliced_directions_come_from_the_seed(tiny_vgg, tiny_params, images):
    content, style, _ = images

    def sliced(seed):
        config = Config(style_loss="sliced", seed=seed)
        return build(config, tiny_params, tiny_vgg, content, style)[0].data[1].distances["sliced"]

    first, again, other = sliced(0), sliced(0), sliced(1)
    for key in ("style", "key"):
        for l in first[key]:
            np.testing.assert_array_equal(first[key][l], again[key][l])
    layer = lambda target, l: {k: v[l] for k, v in target.items()}  # noqa: E731
    for l in first["key"]:
        assert not np.allclose(sliced_directions(layer(first, l), 0),
                               sliced_directions(layer(other, l), 0)), l
    # Each layer draws its own (layers of the same width do not share directions).
    same_width = [l for l in first["style"] if first["style"][l].shape[-1] == 8]
    assert len(same_width) >= 2
    assert not np.allclose(sliced_directions(layer(first, same_width[0]), 0),
                           sliced_directions(layer(first, same_width[1]), 0))


# --- sweeps -----------------------------------------------------------------------------------


# Shallower layers than the paper's: a smaller program to compile, the same logic.
FEW_LAYERS = dict(content_layers=("conv2_2",), style_layers=("conv1_1", "conv2_1", "conv3_1"))


def test_grid_distances_are_the_union_in_a_fixed_order():
    grid = sweep.Grid.product(Config(), style_loss=["histogram", "gram:0.5,sliced:0.5", "gram"])
    assert grid.shape == (3,) and grid.distances == ("gram", "sliced", "histogram")
    assert grid.labels(1) == {"style_loss": "gram:0.5,sliced:0.5"}
    u = grid.points().weights.distance_weights
    np.testing.assert_array_equal(u["gram"], [0, 0.5, 1])
    np.testing.assert_array_equal(u["sliced"], [0, 0.5, 0])
    np.testing.assert_array_equal(u["histogram"], [1, 0, 0])
    assert sweep.Grid.product(Config(), seed=[0, 1]).distances == ("gram",)


def test_a_style_loss_axis_is_one_program_equal_to_the_runs_alone(tiny_vgg, tiny_params,
                                                                  monkeypatch):
    content, style = sweep_pictures()
    base = Config(iterations=3, **FEW_LAYERS)
    grid = sweep.Grid.product(base, style_loss=["gram", "mean-cov", "gram:0.5,sliced:0.5"])
    for cache in (sweep.grid_programs, stylize.untiled_loss):
        cache.cache_clear()  # a program compiled by another test would hide the traces
    traces = count_traces(monkeypatch)
    sweeper = sweep.Sweeper.for_grids(content, style, tiny_params, [grid], module=tiny_vgg)
    assert sweeper.distances == ("gram", "mean-cov", "sliced")
    chunked = []
    results = sweeper.run(grid, batch_size=2, on_chunk=chunked.append)
    assert [len(c) for c in chunked] == [2, 1]
    assert traces == {"init": 1, "run": 1}  # both chunks, every distance: one program
    for r in results:
        # Alone, the run computes only its own distances' targets; in the sweep the others
        # are there with weight 0. The same loss at the same start; then float32 sums in
        # another order (batched convolutions) drift through the L-BFGS iterations, faster
        # through mean-cov's eigendecompositions than test_sweep's Gram-only 2e-4 (2.0e-4
        # seen at the third iteration).
        job = stylize.prepare(content, style, tiny_params, r.config, module=tiny_vgg)
        job.step(r.config.iterations)
        assert r.status == "completed" and r.iterations == 3
        alone = np.asarray(job.state.trace.value)
        np.testing.assert_allclose(r.trace[0], alone[0], rtol=1e-5, err_msg=r.config.style_loss)
        np.testing.assert_allclose(r.trace, alone, rtol=1e-3, err_msg=r.config.style_loss)
        assert np.isfinite(r.total) and r.style > 0
    # The distances matter: the points' losses differ from the start.
    assert len({round(float(r.trace[0]), 3) for r in results}) == 3


def test_a_sweep_fits_mean_cov_to_one_blend_of_the_styles(tiny_params, tiny_vgg):
    content, style = sweep_pictures()
    base = Config(style=("a.jpg", "b.jpg"), iterations=2)
    blends = [(1.0, 1.0), (1.0, 3.0)]
    grid = sweep.Grid.product(base.replace(style_loss="gram:1,mean-cov:1"),
                              style_blend_weights=blends)
    with pytest.raises(NSTError, match="mean-cov fits its target to one blend"):
        grid.distance_arguments
    with pytest.raises(NSTError, match="mean-cov fits its target to one blend"):
        sweep.Sweeper.for_grids(content, [style, style], tiny_params, [grid], module=tiny_vgg)
    # Gram's targets are per style: its blends sweep; mean-cov with one blend too.
    assert sweep.Grid.product(base, style_blend_weights=blends).distance_arguments[
        "distances"] == ("gram",)
    one = sweep.Grid.product(base.replace(style_loss="mean-cov", style_blend_weights=(1, 3)),
                             seed=[0, 1])
    np.testing.assert_allclose(one.distance_arguments["style_mix"], [[0.25, 0.75]])


def test_a_sweeper_refuses_a_grid_with_a_distance_it_was_built_without(tiny_params, tiny_vgg):
    content, style = sweep_pictures()
    gram = sweep.Grid.product(Config(iterations=2), seed=[0, 1])
    sweeper = sweep.Sweeper.for_grids(content, style, tiny_params, [gram], module=tiny_vgg)
    other = sweep.Grid.product(Config(iterations=2, style_loss="histogram"), seed=[0, 1])
    with pytest.raises(NSTError, match=r"compiled without the style distance\(s\) histogram"):
        sweeper.run(other)


def test_a_seed_axis_with_sliced_is_refused_with_the_reason():
    """sliced's directions are drawn from the run's seed, and a sweep holds one set of
    targets: a seed axis would give each point the first point's directions, not its own."""
    grid = sweep.Grid.product(Config(style_loss="sliced", iterations=2, **FEW_LAYERS),
                              seed=[0, 1])
    with pytest.raises(NSTError, match="seed"):
        grid.distance_arguments
    # With the other distances a seed axis is what it was.
    sweep.Grid.product(Config(style_loss="gram,histogram", iterations=2), seed=[0, 1]
                       ).distance_arguments
