"""The Flax VGG against an independent NumPy forward pass; preprocessing; normalisation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.errors import NSTError
from nst_jax.vgg import (CAFFE, LAYER_NAMES, TORCHVISION, VGG, VGG19, deprocess, layer_names,
                         normalize_params, preprocess)
from tests import numpy_reference as ref
from tests.conftest import TINY_BLOCKS


def _np_layers(params):
    return {k: (np.asarray(v["kernel"]), np.asarray(v["bias"])) for k, v in params["params"].items()}


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_tiny_vgg_matches_numpy_forward(tiny_params, pooling):
    module = VGG(blocks=TINY_BLOCKS, pooling=pooling)
    x = np.random.default_rng(0).normal(size=(32, 48, 3)).astype(np.float32)
    names = layer_names(TINY_BLOCKS)
    got = jax.jit(module.apply, static_argnums=2)(tiny_params, x, names)
    want = ref.vgg_features(x, _np_layers(tiny_params), TINY_BLOCKS, pooling)
    assert set(got) == set(names)
    for name in names:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5 * np.abs(want[name]).max())
    assert np.all(np.asarray(got["conv3_1"]) >= 0)  # post-ReLU


def test_returns_only_requested_layers_and_stops_at_deepest(tiny_vgg, tiny_params):
    x = jnp.ones((32, 32, 3))
    out = tiny_vgg.apply(tiny_params, x, ("conv2_1", "conv1_1"))
    assert set(out) == {"conv1_1", "conv2_1"}
    # Params past the deepest layer are never touched: the call works without them.
    shallow = {"params": {k: v for k, v in tiny_params["params"].items() if k in ("conv1_1", "conv1_2", "conv2_1")}}
    out2 = tiny_vgg.apply(shallow, x, ("conv2_1",))
    np.testing.assert_array_equal(out2["conv2_1"], out["conv2_1"])


def test_batched_equals_single(tiny_vgg, tiny_params):
    x = np.random.default_rng(1).random((2, 16, 24, 3)).astype(np.float32)
    batched = tiny_vgg.apply(tiny_params, x, ("conv4_2", "conv5_1"))
    for i in range(2):
        single = tiny_vgg.apply(tiny_params, x[i], ("conv4_2", "conv5_1"))
        for name in single:
            np.testing.assert_allclose(batched[name][i], single[name], rtol=1e-5, atol=1e-6)
    assert batched["conv5_1"].shape == (2, 1, 1, 8)


def test_unknown_layer_is_a_clear_error(tiny_vgg, tiny_params):
    with pytest.raises(NSTError, match="conv6_1"):
        tiny_vgg.apply(tiny_params, jnp.ones((16, 16, 3)), ("conv6_1",))


def test_unknown_pooling_is_a_clear_error(tiny_params):
    with pytest.raises(NSTError, match="pooling"):
        VGG(blocks=TINY_BLOCKS, pooling="median").apply(tiny_params, jnp.ones((16, 16, 3)), ("conv1_1",))


def test_vgg19_layout():
    assert LAYER_NAMES[0] == "conv1_1" and LAYER_NAMES[-1] == "conv5_4" and len(LAYER_NAMES) == 16
    shapes = jax.eval_shape(lambda: VGG19().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), LAYER_NAMES))
    assert shapes["params"]["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert shapes["params"]["conv5_4"]["kernel"].shape == (3, 3, 512, 512)


def test_caffe_preprocessing():
    rgb = np.array([[[1.0, 0.5, 0.0]]], np.float32)
    x = np.asarray(preprocess(rgb, CAFFE))
    np.testing.assert_allclose(x[0, 0], [0 - 103.939, 127.5 - 116.779, 255 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(x, ref.caffe_preprocess(rgb.astype(np.float64)), rtol=1e-6)


@pytest.mark.parametrize("p", [CAFFE, TORCHVISION])
def test_deprocess_inverts_preprocess(p):
    rgb = np.random.default_rng(2).random((4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(deprocess(preprocess(rgb, p), p), rgb, atol=1e-5)


def test_normalized_network(tiny_vgg, tiny_params):
    rng = np.random.default_rng(3)
    images = jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32)
    normed = normalize_params(tiny_vgg, tiny_params, images)
    names = layer_names(TINY_BLOCKS)
    before = tiny_vgg.apply(tiny_params, images, names)
    after = tiny_vgg.apply(normed, images, names)
    for name in names:
        mean = np.asarray(after[name]).mean(axis=(0, 1, 2))
        live = np.asarray(before[name]).mean(axis=(0, 1, 2)) > 0
        # every live filter has mean activation 1 over images and positions (paper §2)
        np.testing.assert_allclose(mean[live], 1.0, rtol=1e-4)
        # same features up to a per-channel scale: ReLU and average pooling are homogeneous
        scale = np.where(live, np.asarray(before[name]).mean(axis=(0, 1, 2)), 1.0)
        np.testing.assert_allclose(np.asarray(after[name]) * scale, before[name], rtol=1e-3, atol=1e-5)


def test_conv3x3_gradients_are_the_standard_ones():
    from jax.test_util import check_grads

    from nst_jax.vgg import conv3x3

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 6, 3))
    k = rng.normal(size=(3, 3, 3, 4))
    with jax.enable_x64(True):
        check_grads(conv3x3, (jnp.asarray(x), jnp.asarray(k)), order=2, modes=("rev",))
        standard = lambda x, k: jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        cot = jnp.asarray(rng.normal(size=(2, 5, 6, 4)))
        ours = jax.vjp(conv3x3, jnp.asarray(x), jnp.asarray(k))[1](cot)
        theirs = jax.vjp(standard, jnp.asarray(x), jnp.asarray(k))[1](cot)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def _features_and_gradient(module, params, x):
    names = layer_names(TINY_BLOCKS)[:9]  # up to conv5_1

    def loss(x):
        features = module.apply(params, x, names)
        return sum(jnp.sum(jnp.square(v)) for v in features.values()), features

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(x)


def test_remat_changes_nothing_but_memory(tiny_params):
    x = np.random.default_rng(5).normal(size=(2, 20, 28, 3)).astype(np.float32)
    (v0, f0), g0 = _features_and_gradient(VGG(blocks=TINY_BLOCKS), tiny_params, x)
    (v1, f1), g1 = _features_and_gradient(VGG(blocks=TINY_BLOCKS, remat=True), tiny_params, x)
    assert float(v0) > 0 and float(jnp.abs(g0).max()) > 0
    np.testing.assert_allclose(v1, v0, rtol=1e-6)
    np.testing.assert_allclose(g1, g0, rtol=1e-5, atol=1e-6 * float(jnp.abs(g0).max()))
    for name in f0:
        np.testing.assert_array_equal(f1[name], f0[name])


def test_bfloat16_computes_in_bfloat16_and_returns_float32(tiny_params):
    x = np.random.default_rng(6).normal(size=(20, 28, 3)).astype(np.float32)
    module = VGG(blocks=TINY_BLOCKS, dtype="bfloat16")
    jaxpr = str(jax.make_jaxpr(lambda x: module.apply(tiny_params, x, ("conv3_1",)))(x))
    assert "conv_general_dilated" in jaxpr and "bf16[" in jaxpr
    (v0, f0), g0 = _features_and_gradient(VGG(blocks=TINY_BLOCKS), tiny_params, x)
    (v1, f1), g1 = _features_and_gradient(module, tiny_params, x)
    assert all(v.dtype == jnp.float32 for v in f1.values()) and g1.dtype == jnp.float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal.
    assert 0 < abs(float(v1) - float(v0)) < 0.05 * float(v0)
    assert float(jnp.linalg.norm(g1 - g0) / jnp.linalg.norm(g0)) < 0.1


def test_unknown_dtype_is_a_clear_error(tiny_params):
    with pytest.raises(NSTError, match="dtype"):
        VGG(blocks=TINY_BLOCKS, dtype="float16").apply(tiny_params, jnp.ones((16, 16, 3)), ("conv1_1",))
