"""Artistic controls (Gatys et al. 2017): several styles blended, a style per region
(guided Gram matrices), style scale and colour preservation, in the library.

The guided losses are compared with the NumPy versions in ``numpy_reference``;
the pipeline runs on the tiny VGG. The command line is in ``test_controls_cli``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from PIL import Image

from nst_jax import colors, losses, stylize, sweep
from nst_jax.config import COLOR_MODES, Config, ConfigError
from nst_jax.errors import NSTError
from tests import numpy_reference as ref
from tests.test_sweep import count_traces, run_alone

RTOL = 1e-5
LAYERS = ("conv1_1", "conv2_1", "conv3_1")


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def feats(rng, shape):
    return np.maximum(rng.normal(size=shape), 0).astype(np.float32)


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(3)
    content = rng.random((40, 48, 3)).astype(np.float32)
    warm = np.clip(rng.random((36, 36, 3)) * [1.0, 0.5, 0.2], 0, 1).astype(np.float32)
    cool = np.clip(rng.random((32, 40, 3)) * [0.2, 0.6, 1.0], 0, 1).astype(np.float32)
    return content, warm, cool


def halves(height: int, width: int) -> np.ndarray:
    """Two masks (2, H, W): the left and the right half (a partition of the image)."""
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1.0
    return np.stack([left, 1.0 - left])


# --- the guided losses against NumPy ------------------------------------------------------


def test_guided_gram_matrix_against_numpy(rng):
    f = feats(rng, (6, 7, 5))
    mask = rng.random((6, 7)).astype(np.float32)
    got = jax.jit(losses.guided_gram_matrix)(f, mask)
    np.testing.assert_allclose(got, ref.guided_gram(f.astype(np.float64), mask.astype(np.float64)),
                               rtol=RTOL, atol=1e-6)
    # a mask of ones: the Gram matrix per position, eq. 3 / M
    ones = losses.guided_gram_matrix(f, np.ones((6, 7), np.float32))
    np.testing.assert_allclose(ones, ref.gram(f.astype(np.float64)) / 42, rtol=RTOL)


def test_guided_gram_does_not_shrink_with_the_region(rng):
    # The same texture over a quarter or over the whole image: the same per-position Gram.
    tile = feats(rng, (4, 4, 3))
    f = np.tile(tile, (2, 2, 1))
    quarter = np.zeros((8, 8), np.float32)
    quarter[:4, :4] = 1
    np.testing.assert_allclose(losses.guided_gram_matrix(f, quarter),
                               losses.guided_gram_matrix(f, np.ones((8, 8), np.float32)), rtol=1e-5)


def test_guided_style_layer_loss_against_numpy_and_eq4(rng):
    f = feats(rng, (6, 5, 4))
    mask = rng.random((6, 5)).astype(np.float32)
    target = ref.guided_gram(feats(rng, (7, 7, 4)).astype(np.float64), np.ones((7, 7)))
    got = jax.jit(losses.guided_style_layer_loss)(f, mask, target.astype(np.float32))
    want = ref.guided_style_layer_loss(f.astype(np.float64), mask.astype(np.float64), target)
    assert float(got) == pytest.approx(want, rel=RTOL)
    # No mask, and the target the style's A / M with the style as large as the image: eq. 4.
    a = feats(rng, (6, 5, 4)).astype(np.float64)
    plain = losses.guided_style_layer_loss(f, None, (ref.gram(a) / 30).astype(np.float32))
    assert float(plain) == pytest.approx(ref.style_layer_loss(f.astype(np.float64), ref.gram(a)),
                                         rel=RTOL)


def test_guided_style_layer_loss_gradient():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        f = jnp.asarray(np.maximum(rng.normal(size=(5, 4, 3)), 0.1))
        mask = jnp.asarray(rng.random((5, 4)))
        target = jnp.asarray(ref.guided_gram(np.asarray(rng.random((6, 6, 3))), np.ones((6, 6))))
        check_grads(lambda f: losses.guided_style_layer_loss(f, mask, target), (f,), order=1,
                    modes=("rev",), eps=1e-6)


def test_guided_style_loss_sums_regions_and_blends_styles(rng):
    layers = {"a": (8, 6, 3), "b": (4, 3, 5)}
    f = {l: feats(rng, s) for l, s in layers.items()}
    masks = {l: rng.random((2, *s[:2])).astype(np.float32) for l, s in layers.items()}
    grams = {l: np.stack([ref.guided_gram(feats(rng, (5, 5, s[2])).astype(np.float64),
                                          np.ones((5, 5))) for _ in range(3)]).astype(np.float32)
             for l, s in layers.items()}
    mix = np.array([[0.2, 0.8, 0.0], [0.0, 0.0, 1.0]], np.float32)
    lam = np.array([0.3, 1.5], np.float32)
    w = {"a": 0.4, "b": 0.6}
    got = jax.jit(losses.guided_style_loss)(f, grams, masks, {l: np.float32(v) for l, v in w.items()},
                                            mix, lam)
    want = sum(w[l] * lam[r] * ref.guided_style_layer_loss(
        f[l].astype(np.float64), masks[l][r].astype(np.float64),
        np.tensordot(mix[r].astype(np.float64), grams[l].astype(np.float64), axes=1))
        for l in layers for r in range(2))
    assert float(got) == pytest.approx(want, rel=RTOL)


# --- masks through the network --------------------------------------------------------------


def test_masks_propagate_by_the_networks_pooling():
    rng = np.random.default_rng(1)
    masks = rng.random((2, 37, 29)).astype(np.float32)  # odd sides: VGG drops the last row/column
    got = stylize.propagate_masks(masks, ("conv5_1", "conv1_1", "conv3_2"))
    for layer, poolings in (("conv1_1", 0), ("conv3_2", 2), ("conv5_1", 4)):
        for r in range(2):
            np.testing.assert_allclose(got[layer][r], ref.pool_mask(masks[r].astype(np.float64),
                                                                    poolings), rtol=1e-6)
    assert got["conv5_1"].shape == (2, 2, 1)
    # a partition stays a partition, and ones stay exactly ones
    parts = stylize.propagate_masks(halves(37, 29), ("conv4_1",))["conv4_1"]
    np.testing.assert_allclose(parts.sum(axis=0), 1.0, rtol=1e-6)
    ones = stylize.propagate_masks(np.ones((1, 37, 29), np.float32), ("conv5_1",))["conv5_1"]
    assert np.all(ones == 1.0)


def test_masks_propagate_with_the_pixels_at_each_layers_resolution(tiny_vgg, tiny_params):
    # The propagated mask has exactly the shape of the activations it guides.
    features = stylize.make_features_fn(tiny_params, stylize.STYLE_LAYERS, tiny_vgg)(
        np.zeros((37, 29, 3), np.float32))
    masks = stylize.propagate_masks(np.ones((1, 37, 29), np.float32), stylize.STYLE_LAYERS)
    for layer in stylize.STYLE_LAYERS:
        assert masks[layer].shape[1:] == features[layer].shape[:2], layer


def test_a_region_that_vanishes_in_the_network_is_an_error(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    masks = np.zeros((2, 40, 48), np.float32)
    masks[0] = 1
    masks[1, 39, 47] = 1  # one pixel: small (1/4 of a conv2_1 position) but present to conv3_1
    features = stylize.make_features_fn(tiny_params, ("conv4_2",) + LAYERS, tiny_vgg)
    stylize.compute_targets(features, content, [warm, cool], ("conv4_2",), LAYERS,
                            content_masks=masks)  # small but present: fine
    odd = np.zeros((2, 41, 48), np.float32)
    odd[0, :40] = 1
    odd[1, 40] = 1  # only the 41st row, which VGG's first pooling drops
    with pytest.raises(NSTError, match="content mask 2 vanishes at conv2_1"):
        stylize.compute_targets(features, np.zeros((41, 48, 3), np.float32), [warm, cool],
                                ("conv4_2",), LAYERS, content_masks=odd)


# --- the pipeline -------------------------------------------------------------------------------


def loss_and_grad(loss_fn, weights, x):
    return jax.jit(jax.value_and_grad(lambda x: loss_fn(x, weights)[0]))(x)


def test_one_full_image_mask_is_exactly_the_unguided_loss(tiny_vgg, tiny_params, pictures):
    content, warm, _ = pictures
    x = np.random.default_rng(0).random(content.shape).astype(np.float32)
    plain = stylize.build_loss_fn(tiny_params, content, warm, ("conv4_2",), stylize.STYLE_LAYERS,
                                  tiny_vgg)
    guided = stylize.build_loss_fn(tiny_params, content, [warm], ("conv4_2",), stylize.STYLE_LAYERS,
                                   tiny_vgg, content_masks=np.ones((1, 40, 48), np.float32),
                                   style_masks=[np.ones(warm.shape[:2], np.float32)])
    config = Config(content_masks=("whole.png",))
    plain_w, guided_w = stylize.loss_weights(Config()), stylize.loss_weights(config)
    v1, g1 = loss_and_grad(plain, plain_w, x)
    v2, g2 = loss_and_grad(guided, guided_w, x)
    assert float(v1) == float(v2)
    np.testing.assert_array_equal(np.asarray(g1), np.asarray(g2))


def test_the_unguided_style_term_is_the_papers_eq5(tiny_vgg, tiny_params, pictures):
    # Style image as large as the content: per-position targets give eq. 5 with A^l.
    content, warm, _ = pictures
    style = np.asarray(warm[:, :, :])
    style = np.concatenate([style, style[:4]], axis=0)[:40]
    style = np.concatenate([style, style[:, :12]], axis=1)  # (40, 48, 3)
    loss_fn = stylize.build_loss_fn(tiny_params, content, style, ("conv4_2",), LAYERS, tiny_vgg)
    features = stylize.make_features_fn(tiny_params, LAYERS, tiny_vgg)
    x = np.random.default_rng(1).random(content.shape).astype(np.float32)
    fx = {l: np.asarray(v, np.float64) for l, v in features(x).items()}
    fs = {l: np.asarray(v, np.float64) for l, v in features(style).items()}
    want = ref.style_loss(fx, {l: ref.gram(fs[l]) for l in LAYERS}, {l: 1 / 3 for l in LAYERS})
    config = Config(style_layers=LAYERS)
    _, terms = loss_fn(x, stylize.loss_weights(config))
    assert float(terms.style) == pytest.approx(want, rel=1e-4)


def test_blend_targets_and_weights(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    x = np.random.default_rng(2).random(content.shape).astype(np.float32)
    two = stylize.build_loss_fn(tiny_params, content, [warm, cool], ("conv4_2",), LAYERS, tiny_vgg)
    alone = {name: stylize.build_loss_fn(tiny_params, content, image, ("conv4_2",), LAYERS, tiny_vgg)
             for name, image in (("warm", warm), ("cool", cool))}
    base = Config(style=("w.png", "c.png"), style_layers=LAYERS)
    single = stylize.loss_weights(Config(style_layers=LAYERS))
    # (1, 0) is that style alone, exactly
    for weights, name in (((1.0, 0.0), "warm"), ((0.0, 3.0), "cool")):
        got = two(x, stylize.loss_weights(base.replace(style_blend_weights=weights)))[1].style
        assert float(got) == float(alone[name](x, single)[1].style)
    # equal by default, normalised to sum to 1
    assert base.style_mix() == [[0.5, 0.5]]
    assert base.replace(style_blend_weights=(3, 1)).style_mix() == [[0.75, 0.25]]
    # the blend's target is the average of the per-position Gram matrices
    features = stylize.make_features_fn(tiny_params, LAYERS, tiny_vgg)
    targets = stylize.compute_targets(features, content, [warm, cool], (), LAYERS)
    for layer in LAYERS:
        fw, fc = (np.asarray(features(s)[layer], np.float64) for s in (warm, cool))
        want = [ref.gram(f) / (f.shape[0] * f.shape[1]) for f in (fw, fc)]
        np.testing.assert_allclose(targets.style[layer], np.stack(want), rtol=1e-4)


def test_style_masks_take_the_style_from_a_region(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    # A style image whose left half is warm and right half cool; its left-half mask gives
    # the Gram matrices of the left half only (away from the border's receptive fields: conv1_1).
    both = np.concatenate([warm[:32, :20], cool[:32, :20]], axis=1)
    left = np.zeros(both.shape[:2], np.float32)
    left[:, :20] = 1
    features = stylize.make_features_fn(tiny_params, ("conv1_1",), tiny_vgg)
    targets = stylize.compute_targets(features, content, [both], (), ("conv1_1",), style_masks=[left])
    f = np.asarray(features(both)["conv1_1"], np.float64)
    np.testing.assert_allclose(targets.style["conv1_1"][0], ref.guided_gram(f, left), rtol=1e-4)
    whole = ref.guided_gram(f, np.ones_like(left))
    assert not np.allclose(targets.style["conv1_1"][0], whole, rtol=1e-2)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("changes, field, match", [
    (dict(style=("a", "b"), style_blend_weights=(1.0,)), "style_blend_weights", "1 weight"),
    (dict(style=("a", "b"), style_blend_weights=(0.0, 0.0)), "style_blend_weights", "not all be 0"),
    (dict(style=("a", "b"), style_blend_weights=(1.0, -1.0)), "style_blend_weights", ">= 0"),
    (dict(style=("a", "b"), content_masks=("m",)), "content_masks", "1 mask"),
    (dict(style=("a", "b"), style_masks=("m", "n", "o")), "style_masks", "3 mask"),
    (dict(style=("a", "b"), content_masks=("m", "n"), style_blend_weights=(1.0, 1.0)),
     "style_blend_weights", "own style"),
    (dict(region_weights=(1.0,)), "region_weights", "needs content_masks"),
    (dict(style=("a", "b"), content_masks=("m", "n"), region_weights=(1.0,)), "region_weights",
     "1 weight"),
    (dict(style=("a", "b"), content_masks=("m", "n"), region_weights=(1.0, -2.0)),
     "region_weights", ">= 0"),
    (dict(style_scale=(0.0,)), "style_scale", r"\(0, 8\]"),
    (dict(style=("a", "b"), style_scale=(1.0, 0.5, 2.0)), "style_scale", "one, or one per"),
    (dict(style_scale=(0.5,), style_size=64), "style_scale", "give one"),
    (dict(preserve_colors="chroma"), "preserve_colors", "luminance"),
    (dict(style=()), "style", "at least one"),
])
def test_config_rejects_inconsistent_controls(changes, field, match):
    with pytest.raises(ConfigError, match=match) as info:
        Config(**changes)
    assert info.value.field == field


def test_config_modes_match_the_colour_module():
    assert COLOR_MODES == colors.MODES


def test_config_region_weights_default_equal():
    config = Config(style=("a", "b", "c"), content_masks=("x", "y", "z"))
    assert config.region_weight_values() == pytest.approx([1 / 3] * 3)
    assert config.style_mix() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert Config().region_weight_values() == [1.0] and Config().style_mix() == [[1.0]]
    assert Config(style="one.png").style == ("one.png",)


def test_style_sides_follow_size_style_size_and_scale():
    config = Config(size=64, style=("a", "b"))
    def sides(config):
        return tuple(side[:2] for side in stylize.style_sides(config))

    assert sides(config) == ((64, "size"), (64, "size"))
    assert sides(config.replace(style_size=48)) == ((48, "style_size"),) * 2
    assert sides(config.replace(style_scale=(0.5,))) == ((32, "style_scale"),) * 2
    assert sides(config.replace(style_scale=(0.5, 2.0))) == ((32, "style_scale"), (128, "style_scale"))
    with pytest.raises(ConfigError, match="gives style image 1 a long side of 13 px"):
        stylize.style_sides(config.replace(style_scale=(0.2,)))


def write(path, array):
    Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)
    return str(path)


def test_load_inputs_reads_styles_masks_and_scales(tmp_path, pictures):
    content, warm, cool = pictures
    files = dict(content=write(tmp_path / "c.png", content), warm=write(tmp_path / "w.png", warm),
                 cool=write(tmp_path / "k.png", cool))
    left, right = halves(20, 24)
    masks = [write(tmp_path / "l.png", np.repeat(left[..., None], 3, 2)),
             write(tmp_path / "r.png", right)]  # one RGB, one greyscale, both half-size
    config = Config(content=files["content"], style=(files["warm"], files["cool"]), size=48,
                    style_scale=(1.0, 0.5), content_masks=tuple(masks))
    inputs = stylize.load_inputs(config)
    assert inputs.content.shape == (40, 48, 3)
    assert [s.shape for s in inputs.styles] == [(48, 48, 3), (19, 24, 3)]
    assert inputs.content_masks.shape == (2, 40, 48)
    np.testing.assert_allclose(inputs.content_masks.sum(axis=0), 1.0, atol=2 / 255)
    assert inputs.style_masks is None
    black = write(tmp_path / "black.png", np.zeros((8, 8)))
    with pytest.raises(NSTError, match="black everywhere"):
        stylize.load_inputs(config.replace(content_masks=(masks[0], black)))


# --- runs ----------------------------------------------------------------------------------------


def test_blend_one_zero_runs_as_that_style_alone(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    base = Config(size=48, iterations=4, style_layers=LAYERS)
    alone = stylize.prepare(content, warm, tiny_params, base, module=tiny_vgg)
    blend = stylize.prepare(content, [warm, cool], tiny_params,
                            base.replace(style=("w", "c"), style_blend_weights=(1.0, 0.0)),
                            module=tiny_vgg)
    alone.step(4)
    blend.step(4)
    np.testing.assert_array_equal(alone.saved()[0], blend.saved()[0])


def test_regions_follow_their_own_styles(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    masks = halves(40, 48)
    config = Config(style=("w", "c"), content_masks=("l", "r"), iterations=30, style_layers=LAYERS,
                    content_layer_weights=(0.0,), init="content")
    job = stylize.prepare(content, [warm, cool], tiny_params, config, module=tiny_vgg,
                          content_masks=masks)
    start = job.terms()[1].style
    job.step(30)
    assert job.latest()[1].style < 0.5 * start
    with pytest.raises(NSTError, match="content_masks must be given"):
        stylize.prepare(content, [warm, cool], tiny_params, config, module=tiny_vgg)
    with pytest.raises(NSTError, match="masks of the content's size"):
        stylize.prepare(content, [warm, cool], tiny_params, config, module=tiny_vgg,
                        content_masks=masks[:, :20])


@pytest.mark.parametrize("mode", ["luminance", "original"])
def test_luminance_modes_keep_the_contents_chroma(tiny_vgg, tiny_params, pictures, mode):
    content, warm, _ = pictures
    content = 0.25 + 0.5 * content  # away from the clip, so the chroma is kept exactly
    job = stylize.prepare(content, warm, tiny_params,
                          Config(iterations=5, preserve_colors=mode, style_layers=LAYERS),
                          module=tiny_vgg)
    job.step(5)
    image, total, _ = job.saved()
    out = image.astype(np.float32) / 255
    yiq_out, yiq_content = (np.asarray(colors.rgb_to_yiq(x)) for x in (out, content))
    assert np.abs(yiq_out[..., 1:] - yiq_content[..., 1:]).mean() < 0.01
    assert np.abs(yiq_out[..., 0] - yiq_content[..., 0]).mean() > 0.02  # the luminance changed
    assert np.isfinite(total)


def test_luminance_mode_optimises_grey_images(tiny_vgg, tiny_params, pictures):
    content, warm, _ = pictures
    job = stylize.prepare(content, warm, tiny_params,
                          Config(iterations=3, preserve_colors="luminance", init="content",
                                 style_layers=LAYERS), module=tiny_vgg)
    x0 = np.asarray(job.state.pixels)
    np.testing.assert_allclose(x0[..., 0], x0[..., 1], atol=1e-6)  # starts from the content's Y
    np.testing.assert_allclose(x0[..., 0], np.asarray(colors.luminance(content)), atol=1e-5)


def test_histogram_mode_recolours_the_style_before_the_targets(tiny_vgg, tiny_params, pictures):
    content, warm, _ = pictures
    plain = stylize.prepare(content, warm, tiny_params, Config(iterations=1, style_layers=LAYERS),
                            module=tiny_vgg)
    matched = stylize.prepare(content, warm, tiny_params,
                              Config(iterations=1, preserve_colors="histogram", style_layers=LAYERS),
                              module=tiny_vgg)
    recoloured = stylize.prepare(content, np.asarray(colors.match_histogram(warm, content)),
                                 tiny_params, Config(iterations=1, style_layers=LAYERS),
                                 module=tiny_vgg)
    x = np.asarray(plain.state.pixels)
    assert matched.terms(x)[0] == pytest.approx(recoloured.terms(x)[0], rel=1e-6)
    assert matched.terms(x)[0] != pytest.approx(plain.terms(x)[0], rel=1e-3)


def test_sweep_over_blend_and_region_weights_compiles_once(tiny_vgg, tiny_params, pictures,
                                                           monkeypatch):
    content, warm, cool = pictures
    base = Config(style=("w", "c"), iterations=4, style_layers=LAYERS, preserve_colors="original")
    grid = sweep.Grid.product(base, style_blend_weights=[(1.0, 0.0), (0.5, 0.5), (0.0, 1.0)])
    traces = count_traces(monkeypatch)
    results = sweep.run_grid(content, [warm, cool], tiny_params, grid, module=tiny_vgg)
    assert traces == {"init": 1, "run": 1}
    for r in results:
        job, image, total = run_alone(r.config, content, [warm, cool], tiny_params, tiny_vgg)
        assert r.total == pytest.approx(total, rel=1e-3)
        np.testing.assert_allclose(r.image, image, atol=2 / 255)
    masks = halves(40, 48)
    regions = sweep.Grid.product(base.replace(content_masks=("l", "r"), preserve_colors="none"),
                                 region_weights=[(1.0, 0.1), (0.1, 1.0)])
    traces = count_traces(monkeypatch)
    out = sweep.run_grid(content, [warm, cool], tiny_params, regions, module=tiny_vgg,
                         content_masks=masks)
    assert traces == {"init": 1, "run": 1}
    assert out[0].total != pytest.approx(out[1].total, rel=1e-3)


def test_a_sweeper_refuses_a_grid_of_another_shape(tiny_vgg, tiny_params, pictures):
    content, warm, cool = pictures
    sweeper = sweep.Sweeper.for_grids(content, [warm, cool], tiny_params,
                                      [sweep.Grid.product(Config(style=("w", "c"), iterations=2))],
                                      module=tiny_vgg)
    with pytest.raises(NSTError, match="number of style images"):
        sweeper.run(sweep.Grid.product(Config(iterations=2), seed=[0]))
