"""Tiled evaluation (:mod:`nst_jax.tiling`): the same loss, gradient and targets as the
untiled network, in bounded memory, on one device or spread over several."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import stylize, tiling
from nst_jax.config import Config
from nst_jax.vgg import CAFFE, VGG, VGG19_BLOCKS
from tests import workers
from tests.conftest import TINY_BLOCKS
from tests.tiling_worker import evaluate as worker_evaluate

RTOL = 1e-4  # the bar; float32 sums in another order agree to about 1e-6
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def _relative(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))) / jnp.max(jnp.abs(jnp.asarray(b))))


def test_halos_reach_as_far_as_the_receptive_fields():
    first, deep = tiling.stages(VGG19_BLOCKS, ("conv4_2",) + STYLE_LAYERS)
    # blocks 1-3: 2 convs at 1 px, 2 at 2 px, 4 at 4 px; rounded up to the pool3 stride (8).
    assert (first.first, first.last, first.reach, first.align, first.halo) == (1, 3, 22, 8, 24)
    # blocks 4-5 (from pool3, 8 px per position): 4 convs at 1 position, conv5_1 at 2.
    assert (deep.first, deep.last, deep.scale, deep.reach, deep.align, deep.halo) == (
        4, 5, 8, 6, 2, 6)
    assert deep.convs == ("conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1")
    # Without a cut, conv5_1's receptive field: 2 + 4 + 16 + 32 + 16 = 70 px, to 80 (stride 16).
    (whole,) = tiling.stages(VGG19_BLOCKS, STYLE_LAYERS, cuts=())
    assert (whole.reach, whole.halo) == (70, 80)
    # Layers up to conv2_2 only: one stage, no pooling after it.
    (shallow,) = tiling.stages(VGG19_BLOCKS, ("conv1_1", "conv2_2"))
    assert (shallow.last, shallow.trailing_pool, shallow.align) == (2, False, 2)


def test_grids_cover_the_image_and_a_side_one_tile_covers_has_no_halo():
    first, deep = tiling.stages(VGG19_BLOCKS, ("conv4_2",) + STYLE_LAYERS)
    g = tiling.grid(first, (150, 60), 64)
    assert g.count == (3, 1) and g.tile == (64, 64) and g.halo == (24, 0)
    assert g.count[0] * g.tile[0] >= 150 and g.canvas == (112, 64)
    # A tile side is rounded up to the stage's stride.
    assert tiling.grid(deep, (40, 40), 13).tile == (14, 14)


@pytest.mark.parametrize("shape, pooling, masks, alpha", [
    ((72, 100), "avg", False, 0.0),  # style only: the Gram matrices' gradient alone
    ((150, 97), "max", True, 1.0),  # both stages tiled, partial tiles, regions, content
], ids=["avg-style", "max-regions-content"])
def test_tiled_loss_and_gradient_equal_the_untiled_ones(tiny_params, shape, pooling, masks, alpha):
    rng = np.random.default_rng(0)
    h, w = shape
    content = rng.random((h, w, 3)).astype(np.float32)
    styles = [rng.random((40, 44, 3)).astype(np.float32), rng.random((50, 30, 3)).astype(np.float32)]
    content_masks, extra = None, {}
    if masks:
        m = np.zeros((h, w), np.float32)
        m[:, : w // 3] = 1
        m[h // 2:] = 0.5
        content_masks = np.stack([m, 1 - m])
        extra = dict(content_masks=("a.png", "b.png"), region_weights=(0.7, 0.3))
    config = Config(content_layers=("conv4_2", "conv1_2"), alpha=alpha, tv_weight=0.5,
                    style=("a.jpg", "b.jpg"), **extra)
    module = VGG(blocks=TINY_BLOCKS, pooling=pooling)
    weights = stylize.loss_weights(config)
    args = (tiny_params, content, styles, config.content_layers, config.style_layers, module, CAFFE)
    untiled = stylize.build_loss_fn(*args, content_masks=content_masks)
    tiled = stylize.build_loss_fn(*args, content_masks=content_masks, tile_size=64)
    assert tiled.plan.grids[0].tiles > 1
    if masks:
        assert tiled.plan.grids[1].tiles > 1  # the deep stage is tiled too
    x = jnp.asarray(rng.random((h, w, 3)).astype(np.float32))
    (v0, t0), g0 = jax.value_and_grad(untiled, has_aux=True)(x, weights)
    (v1, t1), g1 = jax.jit(jax.value_and_grad(tiled, has_aux=True))(x, weights)
    np.testing.assert_allclose(float(v1), float(v0), rtol=RTOL)
    np.testing.assert_allclose(np.array(t1), np.array(t0), rtol=RTOL)
    assert _relative(g1, g0) < RTOL
    # Called without a gradient, only the forward pass: the same value.
    np.testing.assert_allclose(float(jax.jit(tiled)(x, weights)[0]), float(v0), rtol=RTOL)


def test_tiled_targets_equal_the_untiled_ones(tiny_vgg, tiny_params):
    rng = np.random.default_rng(1)
    content = rng.random((150, 97, 3)).astype(np.float32)
    styles = [rng.random((130, 90, 3)).astype(np.float32), rng.random((40, 50, 3)).astype(np.float32)]
    style_masks = [np.linspace(0, 1, 130 * 90, dtype=np.float32).reshape(130, 90), None]
    layers = ("conv4_2", "conv1_2"), STYLE_LAYERS
    features = stylize.make_features_fn(tiny_params, layers[0] + layers[1], tiny_vgg, CAFFE)
    expected = stylize.compute_targets(jax.jit(features), content, styles, *layers,
                                       style_masks=style_masks)
    got = stylize.compute_targets(None, content, styles, *layers, style_masks=style_masks,
                                  tile_size=64, network=(tiny_params, tiny_vgg, CAFFE))
    for layer in layers[0]:
        assert _relative(got.content[layer], expected.content[layer]) < RTOL, layer
    for layer in layers[1]:
        assert _relative(got.style[layer], expected.style[layer]) < RTOL, layer


def test_a_tiled_run_follows_the_untiled_one(tiny_vgg, tiny_params):
    rng = np.random.default_rng(2)
    content = rng.random((90, 70, 3)).astype(np.float32)
    style = rng.random((40, 44, 3)).astype(np.float32)
    traces = {}
    for tile in (None, 64):
        job = stylize.prepare(content, style, tiny_params, Config(iterations=10, tile_size=tile),
                              module=tiny_vgg)
        job.step(10)
        traces[tile] = np.asarray(job.state.trace.value)
        assert (job.tiles is None) == (tile is None)
    np.testing.assert_allclose(traces[64], traces[None], rtol=RTOL)


def _worker(*args, env_extra=None):
    return workers.spawn("tests.tiling_worker", *args, env_extra=env_extra)


@pytest.fixture(scope="module")
def one_device():
    """The worker's evaluation, untiled, in this process."""
    return worker_evaluate(None, None)


def _assert_same(data, expected):
    value, terms, grad = expected
    np.testing.assert_allclose(data["value"], value, rtol=RTOL)
    np.testing.assert_allclose(data["terms"], terms, rtol=RTOL)
    assert _relative(data["grad"], grad) < RTOL


def test_one_image_over_four_devices_equals_one_device(tmp_path, one_device):
    out = tmp_path / "w.npz"
    workers.finish(_worker(out, env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    data = np.load(out)
    assert int(data["devices"]) == 4
    _assert_same(data, one_device)


def test_one_image_over_two_processes_equals_one_device(tmp_path, one_device):
    out = tmp_path / "w.npz"
    address = workers.local_address()
    processes = [_worker(out, "--coordinator", address, "--num-processes", 2, "--process-id", i,
                       env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
               for i in (0, 1)]
    for process in processes:
        workers.finish(process)
    for path in (out, f"{out}.1.npz"):
        data = np.load(path)
        assert int(data["processes"]) == 2 and int(data["devices"]) == 4
        _assert_same(data, one_device)


def test_the_command_line_tiles_and_writes_the_untiled_image(real_weights, image_files, tmp_path,
                                                             capsys):
    from nst_jax import images
    from tests.test_cli import run_cli

    content, style = image_files
    losses = {}
    for name, extra in (("untiled", []), ("tiled", ["--tile-size", "64"])):
        out = tmp_path / f"{name}.png"
        code, _, err = run_cli(["--content", content, "--style", style, "--output", out,
                                "--size", "96", "--iterations", "2", *extra], capsys)
        assert code == 0, err
        assert ("tiles: blocks 1-3: 2x2 tiles of 64 px + 24 px halo" in err) == (name == "tiled"), err
        losses[name] = float(images.read_png_metadata(out)["nst_jax:loss_total"])
    np.testing.assert_allclose(losses["tiled"], losses["untiled"], rtol=1e-3)


@pytest.mark.parametrize("value, needle", [("32", "--tile-size must be a whole number from 64"),
                                           ("big", "--tile-size: expected a whole number of px or auto")])
def test_a_bad_tile_size_is_one_line(image_files, tmp_path, capsys, value, needle):
    from tests.test_cli import assert_one_line_error, run_cli

    content, style = image_files
    code, _, err = run_cli(["--content", content, "--style", style, "--output", tmp_path / "o.png",
                            "--tile-size", value], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o.png").exists()
