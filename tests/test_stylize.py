"""The wiring of one style transfer, on the tiny VGG (logic, not looks)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from nst_jax import stylize
from nst_jax.config import ConfigError
from nst_jax.errors import NSTError
from tests import numpy_reference as ref
from tests.conftest import TINY_BLOCKS


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:32, 0:40] / 40.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1).astype(np.float32)
    style = rng.random((36, 36, 3)).astype(np.float32)
    return np.clip(content, 0, 1), style


def test_targets_are_content_features_and_style_grams(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    features = stylize.make_features_fn(tiny_params, ("conv4_2", "conv1_1"), tiny_vgg)
    targets = stylize.compute_targets(features, content, style, ("conv4_2",), ("conv1_1",))
    layers = {k: (np.asarray(v["kernel"]), np.asarray(v["bias"])) for k, v in tiny_params["params"].items()}
    want_c = ref.vgg_features(ref.caffe_preprocess(content.astype(np.float64)), layers, TINY_BLOCKS)["conv4_2"]
    want_s = ref.vgg_features(ref.caffe_preprocess(style.astype(np.float64)), layers, TINY_BLOCKS)["conv1_1"]
    np.testing.assert_allclose(targets.content["conv4_2"], want_c, rtol=1e-4, atol=1e-4 * np.abs(want_c).max())
    # style targets: (number of styles, N, N), each Gram matrix per position (A / M)
    positions = want_s.shape[0] * want_s.shape[1]
    np.testing.assert_allclose(targets.style["conv1_1"], ref.gram(want_s)[None] / positions, rtol=1e-4)


def test_stylization_lowers_the_loss_and_matches_the_terms(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    config = stylize.Config(iterations=30, beta=1e2)
    job = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    first_total, _ = job.terms()
    state = job.step(30)
    assert job.done and int(state.iteration) == 30
    total, terms = job.terms(state.best_pixels)
    assert total < 0.2 * first_total
    assert total == pytest.approx(float(state.best_value), rel=1e-4)
    assert total == pytest.approx(terms.content + 1e2 * terms.style, rel=1e-4)
    out = job.result()
    assert out.shape == content.shape and out.min() >= 0 and out.max() <= 1


def test_steps_in_chunks_equal_one_run(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    config = stylize.Config(iterations=9, beta=1e2)
    a = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    a.step(9)
    b = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    for n in (4, 4, 4):
        b.step(n)
    assert int(b.state.iteration) == 9
    np.testing.assert_allclose(a.state.pixels, b.state.pixels, rtol=1e-5, atol=1e-6)


def test_same_seed_same_image(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    runs = []
    for seed in (3, 3, 4):
        job = stylize.prepare(content, style, tiny_params, stylize.Config(iterations=3, seed=seed), module=tiny_vgg)
        job.step(3)
        runs.append(job.result())
    np.testing.assert_array_equal(runs[0], runs[1])
    assert np.abs(runs[0] - runs[2]).max() > 1e-3


def test_initial_pixels(pictures):
    content, style = pictures
    np.testing.assert_array_equal(stylize.initial_pixels("content", content, style, 0), content)
    s = np.asarray(stylize.initial_pixels("style", content, style, 0))
    assert s.shape == content.shape
    noise = np.asarray(stylize.initial_pixels("noise", content, style, 0, noise_amplitude=0.2))
    assert noise.shape == content.shape and 0.4 <= noise.min() and noise.max() <= 0.6
    assert noise.std() > 0.04  # white noise, not a constant
    other = np.asarray(stylize.initial_pixels("noise", content, style, 1, noise_amplitude=0.2))
    assert not np.array_equal(noise, other)
    given = np.zeros((10, 10, 3), np.float32)
    assert stylize.initial_pixels(given, content, style, 0).shape == content.shape
    with pytest.raises(NSTError, match="unknown init"):
        stylize.initial_pixels("zeros", content, style, 0)


def test_an_init_that_is_no_file_is_refused_when_the_inputs_are_read(tmp_path):
    config = stylize.Config(init="nosie", size=32)  # a file name, checked when read
    with pytest.raises(ConfigError, match="must be noise, content, style or an existing image file"):
        stylize.load_inputs(config)


def test_default_config_is_the_papers():
    config = stylize.Config()
    assert config.content_layers == ("conv4_2",)
    assert config.style_layers == ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    weights = stylize.loss_weights(config)
    assert weights.style_layer_weights == {l: pytest.approx(0.2) for l in config.style_layers}
    assert weights.content_layer_weights == {"conv4_2": 1.0}
    assert config.pooling == "avg" and config.init == "noise" and config.bounds == "box"


def test_layer_weights_follow_their_layers_in_a_run(tiny_vgg, tiny_params, pictures):
    """Defect: the weights were applied in the layers' sorted order, not the order given.
    Layers out of depth order with unequal weights must give the same loss as the same
    pairs in depth order, for style and content layers alike."""
    content, style = pictures
    runs = []
    for style_layers, style_w, content_layers, content_w in (
            (("conv5_1", "conv1_1"), (0.9, 0.1), ("conv4_2", "conv2_2"), (0.3, 2.0)),
            (("conv1_1", "conv5_1"), (0.1, 0.9), ("conv2_2", "conv4_2"), (2.0, 0.3))):
        config = stylize.Config(style_layers=style_layers, style_layer_weights=style_w,
                                content_layers=content_layers, content_layer_weights=content_w,
                                iterations=2)
        job = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
        runs.append(job.terms())
    (total_a, terms_a), (total_b, terms_b) = runs
    assert terms_a.style == pytest.approx(terms_b.style, rel=1e-6)
    assert terms_a.content == pytest.approx(terms_b.content, rel=1e-6)
    # and a different pairing gives a different loss, so the test can fail
    swapped = stylize.Config(style_layers=("conv5_1", "conv1_1"), style_layer_weights=(0.1, 0.9),
                             content_layers=("conv4_2", "conv2_2"), content_layer_weights=(2.0, 0.3))
    job = stylize.prepare(content, style, tiny_params, swapped, module=tiny_vgg)
    assert job.terms()[1].style != pytest.approx(terms_a.style, rel=1e-3)


def test_the_box_keeps_every_pixel_in_range_and_the_saved_loss_is_of_the_png(
        tiny_vgg, tiny_params, pictures):
    content, style = pictures
    for optimizer in ("lbfgs", "lbfgs-stepwise", "adam"):
        config = stylize.Config(iterations=15, beta=1e4, optimizer=optimizer, learning_rate=0.2)
        job = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
        job.step(15)
        pixels = np.asarray(job.state.pixels)
        assert pixels.min() >= 0 and pixels.max() <= 1, optimizer
        image, total, terms = job.saved()
        assert image.dtype == np.uint8
        assert total == pytest.approx(job.terms(image / np.float32(255))[0], rel=1e-6)
        # the best loss the optimiser saw is the loss of an image in the box
        assert float(job.state.best_value) == pytest.approx(job.terms(job.result())[0], rel=1e-4)


def test_gradient_of_the_whole_pipeline(tiny_vgg, tiny_params, pictures):
    # Through preprocessing, the custom conv gradient, pooling, Gram matrices and eq. 7.
    content, style = pictures
    with jax.enable_x64(True):
        params64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), tiny_params)
        features = stylize.make_features_fn(params64, stylize.CONTENT_LAYERS + stylize.STYLE_LAYERS, tiny_vgg)
        targets = stylize.compute_targets(features, jnp.asarray(content, jnp.float64),
                                          jnp.asarray(style, jnp.float64), stylize.CONTENT_LAYERS,
                                          stylize.STYLE_LAYERS)
        loss = stylize.make_loss_fn(features, targets)
        weights = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                         stylize.loss_weights(stylize.Config(beta=10.0, tv_weight=0.5)))
        x = jnp.asarray(np.random.default_rng(0).random(content.shape))
        check_grads(lambda x: loss(x, weights)[0], (x,), order=1, modes=("rev",), eps=1e-7)
