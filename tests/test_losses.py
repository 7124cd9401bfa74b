"""Each loss under jit against the NumPy version of the paper's equation, and its gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nst_jax import losses
from tests import numpy_reference as ref

RTOL = 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def feats(rng, shape):
    # Post-ReLU-like: non-negative with exact zeros, as the paper's F^l are.
    return np.maximum(rng.normal(size=shape), 0).astype(np.float32)


def test_gram_matrix_is_eq3(rng):
    f = feats(rng, (5, 7, 6))
    got = jax.jit(losses.gram_matrix)(f)
    assert got.shape == (6, 6)
    np.testing.assert_allclose(got, ref.gram(f.astype(np.float64)), rtol=RTOL, atol=1e-5)
    # symmetric positive semi-definite
    np.testing.assert_allclose(got, got.T, rtol=1e-6)
    assert np.linalg.eigvalsh(np.asarray(got, np.float64)).min() > -1e-3


def test_gram_matrix_entry_by_definition(rng):
    f = feats(rng, (3, 4, 5))
    flat = f.reshape(-1, 5)
    g = np.asarray(losses.gram_matrix(f))
    assert g[1, 3] == pytest.approx(float(np.sum(flat[:, 1] * flat[:, 3])), rel=1e-6)


def test_content_loss_is_eq1(rng):
    f, p = feats(rng, (6, 5, 8)), feats(rng, (6, 5, 8))
    got = jax.jit(losses.content_loss)(f, p)
    assert got == pytest.approx(ref.content_loss(f.astype(np.float64), p), rel=RTOL)
    assert float(losses.content_loss(f, f)) == 0.0


def test_style_layer_loss_is_eq4(rng):
    f, a = feats(rng, (6, 5, 8)), feats(rng, (9, 4, 8))
    a_gram = ref.gram(a.astype(np.float64))
    got = jax.jit(losses.style_layer_loss)(f, a_gram.astype(np.float32))
    assert got == pytest.approx(ref.style_layer_loss(f.astype(np.float64), a_gram), rel=RTOL)


def test_style_layer_loss_normalisation_uses_generated_sizes(rng):
    # 1/(4 N^2 M^2) with N filters and M = H*W positions of the generated image:
    # doubling every activation multiplies G by 4 and (G - 0)^2 by 16.
    f = feats(rng, (4, 4, 3))
    zero = np.zeros((3, 3), np.float32)
    e1 = float(losses.style_layer_loss(f, zero))
    e2 = float(losses.style_layer_loss(2 * f, zero))
    assert e2 == pytest.approx(16 * e1, rel=1e-5)
    g = ref.gram(f.astype(np.float64))
    assert e1 == pytest.approx(np.sum(g**2) / (4 * 3**2 * 16**2), rel=1e-5)


def test_style_loss_is_eq5(rng):
    shapes = {"a": (8, 8, 4), "b": (4, 4, 6), "c": (2, 2, 8)}
    f = {l: feats(rng, s) for l, s in shapes.items()}
    a = {l: ref.gram(feats(rng, s).astype(np.float64)) for l, s in shapes.items()}
    w = {"a": 0.2, "b": 0.5, "c": 0.3}
    got = jax.jit(losses.style_loss)(f, {l: v.astype(np.float32) for l, v in a.items()},
                                     {l: np.float32(v) for l, v in w.items()})
    want = ref.style_loss({l: v.astype(np.float64) for l, v in f.items()}, a, w)
    assert got == pytest.approx(want, rel=RTOL)


def test_layer_weights_stay_with_their_layers_whatever_the_order(rng):
    """Each weight is tied to its layer by name: giving the layers in another order (a
    dict that went through jit comes back sorted) must not move the weights."""
    shapes = {"conv5_1": (2, 2, 8), "conv1_1": (8, 8, 4)}
    f = {l: feats(rng, s) for l, s in shapes.items()}
    a = {l: np.asarray(ref.gram(feats(rng, s).astype(np.float64)), np.float32)
         for l, s in shapes.items()}
    deep_first = {"conv5_1": np.float32(0.9), "conv1_1": np.float32(0.1)}
    shallow_first = {"conv1_1": np.float32(0.1), "conv5_1": np.float32(0.9)}
    got = [float(jax.jit(losses.style_loss)(f, a, w)) for w in (deep_first, shallow_first)]
    want = ref.style_loss({l: v.astype(np.float64) for l, v in f.items()}, a,
                          {"conv1_1": 0.1, "conv5_1": 0.9})
    assert got[0] == pytest.approx(want, rel=RTOL) and got[1] == pytest.approx(want, rel=RTOL)
    with pytest.raises(KeyError, match="conv3_1"):
        losses.style_loss(f, a, {"conv3_1": 1.0})


def test_total_variation(rng):
    x = rng.random((7, 9, 3)).astype(np.float32)
    assert jax.jit(losses.total_variation)(x) == pytest.approx(ref.total_variation(x.astype(np.float64)), rel=RTOL)
    assert float(losses.total_variation(np.ones((4, 4, 3), np.float32))) == 0.0


def _problem(rng):
    content_layers, style_layers = ("c1",), ("s1", "s2")
    shapes = {"c1": (4, 4, 5), "s1": (8, 8, 3), "s2": (4, 4, 5)}
    features = {l: feats(rng, s) for l, s in shapes.items()}
    # Targets hold each style Gram matrix per position (A / M), stacked over styles (here one).
    targets = losses.Targets(
        content={"c1": feats(rng, shapes["c1"])},
        style={l: np.asarray(ref.gram(feats(rng, shapes[l]).astype(np.float64))
                             / (shapes[l][0] * shapes[l][1]), np.float32)[None]
               for l in style_layers})
    weights = losses.LossWeights(
        alpha=jnp.float32(1e-3), beta=jnp.float32(2.0), content_layer_weights={"c1": jnp.float32(1)},
        style_layer_weights={"s1": jnp.float32(0.5), "s2": jnp.float32(0.5)},
        tv_weight=jnp.float32(0.1))
    return features, targets, weights, content_layers, style_layers


def test_total_loss_is_eq7(rng):
    features, targets, weights, _, _ = _problem(rng)
    image = rng.random((8, 8, 3)).astype(np.float32)
    total, terms = jax.jit(losses.total_loss)(features, image, targets, weights)
    f64 = {l: v.astype(np.float64) for l, v in features.items()}
    content = ref.content_loss(f64["c1"], targets.content["c1"])
    style = ref.style_loss(f64, {l: v[0].astype(np.float64) * f64[l].shape[0] * f64[l].shape[1]
                                 for l, v in targets.style.items()}, {"s1": 0.5, "s2": 0.5})
    tv = ref.total_variation(image.astype(np.float64))
    assert terms.content == pytest.approx(content, rel=RTOL)
    assert terms.style == pytest.approx(style, rel=RTOL)
    assert terms.tv == pytest.approx(tv, rel=RTOL)
    assert total == pytest.approx(1e-3 * content + 2.0 * style + 0.1 * tv, rel=RTOL)


def test_weighted_content_loss_selects_layers(rng):
    f = {"a": feats(rng, (4, 4, 3)), "b": feats(rng, (2, 2, 3))}
    p = {"a": feats(rng, (4, 4, 3)), "b": feats(rng, (2, 2, 3))}
    only_b = losses.weighted_content_loss(f, p, {"a": 0.0, "b": 1.0})
    assert only_b == pytest.approx(ref.content_loss(f["b"].astype(np.float64), p["b"]), rel=RTOL)


def test_total_loss_vmaps_over_hyperparameters(rng):
    features, targets, weights, _, _ = _problem(rng)
    image = rng.random((8, 8, 3)).astype(np.float32)
    alphas = jnp.array([1e-4, 1e-3, 1e-2])
    grid = weights._replace(alpha=alphas)
    axes = losses.LossWeights(0, None, None, None, None)
    batched, _ = jax.jit(jax.vmap(losses.total_loss, in_axes=(None, None, None, axes)))(
        features, image, targets, grid)
    for i, a in enumerate(alphas):
        one, _ = losses.total_loss(features, image, targets, weights._replace(alpha=a))
        assert batched[i] == pytest.approx(float(one), rel=1e-6)


@pytest.mark.parametrize("fn,args", [
    (losses.gram_matrix, ((3, 4, 2),)),
    (losses.content_loss, ((3, 4, 2), (3, 4, 2))),
    (losses.total_variation, ((5, 4, 3),)),
])
def test_gradients(rng, fn, args):
    arrays = [rng.normal(size=s) for s in args]
    with jax.enable_x64(True):
        check_grads(fn, [jnp.asarray(a, jnp.float64) for a in arrays], order=2, modes=("fwd", "rev"))


def test_style_layer_loss_gradient_is_eq6(rng):
    # Eq. 6 (for positive F): dE/dF = 1/(N^2 M^2) F (G - A), channels-last.
    f = np.abs(rng.normal(size=(3, 4, 5))) + 0.1
    a_gram = ref.gram(np.abs(rng.normal(size=(3, 4, 5))))
    with jax.enable_x64(True):
        fj, aj = jnp.asarray(f), jnp.asarray(a_gram)
        # A custom VJP (one matrix product, eq. 6): reverse mode only.
        check_grads(losses.style_layer_loss, (fj, aj), order=2, modes=("rev",))
        grad = jax.grad(losses.style_layer_loss)(fj, aj)
    flat = f.reshape(-1, 5)
    want = flat @ (ref.gram(f) - a_gram) / (5**2 * 12**2)
    np.testing.assert_allclose(np.asarray(grad).reshape(-1, 5), want, rtol=1e-10)


def test_total_loss_gradient(rng):
    features, targets, weights, _, _ = _problem(rng)
    image = rng.random((8, 8, 3))
    with jax.enable_x64(True):
        f64 = {l: jnp.asarray(v, jnp.float64) for l, v in features.items()}
        t64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), targets)
        w64 = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), weights)
        check_grads(lambda f, x: losses.total_loss(f, x, t64, w64)[0], (f64, jnp.asarray(image)),
                    order=1, modes=("rev",))


def test_style_layer_loss_custom_gradient_equals_autodiff_of_eq4(rng):
    """The hand-written eq. 6 backward against automatic differentiation of eq. 4 as
    written, for a non-symmetric A as well, and under vmap."""
    def eq4(f, a):
        m, n = f.shape[0] * f.shape[1], f.shape[2]
        g = f.reshape(-1, n).T @ f.reshape(-1, n)
        return jnp.sum(jnp.square(g - a)) / (4.0 * n**2 * m**2)

    f = rng.random((2, 6, 7, 5))
    a = rng.normal(size=(2, 5, 5))  # not a Gram matrix: not symmetric
    with jax.enable_x64(True):
        f, a = jnp.asarray(f), jnp.asarray(a)
        ours = jax.vmap(jax.grad(losses.style_layer_loss, argnums=(0, 1)))(f, a)
        theirs = jax.vmap(jax.grad(eq4, argnums=(0, 1)))(f, a)
        np.testing.assert_allclose(jax.vmap(losses.style_layer_loss)(f, a), jax.vmap(eq4)(f, a),
                                   rtol=1e-12)
    for got, want in zip(ours, theirs):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
