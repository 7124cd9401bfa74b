"""The artistic controls' figures: each check on arrays whose answer is known (it can say
"holds" and "does not hold"), and the script once end to end at a tiny size."""
import json

import numpy as np
import pytest

from nst_jax import colors
from nst_jax.apps.figures import controls
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import COLOR_MODES, Config


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def tinted(rng, shape, tint):
    return np.clip(rng.random(shape) * np.asarray(tint), 0, 1).astype(np.float32)


# --- measurements -----------------------------------------------------------------------------


def test_color_stats_weigh_pixels_by_the_mask():
    image = np.zeros((4, 6, 3), np.float32)
    image[:, :3] = (1.0, 0.0, 0.0)
    image[:, 3:] = (0.0, 0.0, 1.0)
    left = controls.region_masks(4, 6)[0]
    mean, cov = controls.color_stats(image, left)
    np.testing.assert_allclose(mean, (1, 0, 0))
    np.testing.assert_allclose(cov, 0, atol=1e-12)
    mean, cov = controls.color_stats(image)
    np.testing.assert_allclose(mean, (0.5, 0, 0.5))
    assert cov[0, 0] == pytest.approx(0.25) and cov[0, 2] == pytest.approx(-0.25)
    a = controls.color_stats(image)
    assert controls.color_distance(a, a) == 0.0
    assert controls.color_distance(a, controls.color_stats(image, left)) == pytest.approx(
        np.sqrt(0.5) + np.linalg.norm(cov))


def test_high_frequency_share_orders_textures_by_scale(rng):
    checker = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.float32)
    assert controls.high_frequency_share(np.repeat(checker[..., None], 3, 2)) > 0.95
    ramp = np.repeat(np.linspace(0, 1, 32, dtype=np.float32)[None, :, None], 3, 2).repeat(32, 0)
    assert controls.high_frequency_share(ramp) < 0.01
    assert controls.high_frequency_share(np.zeros((8, 8, 3))) == 0.0
    assert 0.7 < controls.high_frequency_share(rng.random((64, 64, 3))) < 0.9


def test_texture_period_is_the_size_of_the_structures():
    # Stripes of period 8 and 16 px, and fine detail on top that does not change the answer.
    x = np.arange(64, dtype=np.float32)
    for period in (8, 16):
        stripes = 0.5 + 0.4 * np.sin(2 * np.pi * x / period)
        image = np.repeat(np.broadcast_to(stripes, (64, 64))[..., None], 3, 2)
        assert controls.texture_period(image) == pytest.approx(period, rel=0.05)
        checker = 0.05 * (np.indices((64, 64)).sum(axis=0) % 2)[..., None]
        assert controls.texture_period(image + checker) == pytest.approx(period, rel=0.05)
    assert np.isnan(controls.texture_period(np.full((16, 16, 3), 0.5)))


def test_region_masks_partition_the_image():
    masks = controls.region_masks(5, 7)
    assert masks.shape == (2, 5, 7)
    np.testing.assert_array_equal(masks.sum(axis=0), 1.0)
    assert masks[0, :, :3].all() and not masks[0, :, 3:].any()


# --- the checks: holds, and does not hold -----------------------------------------------------


def colour_outputs(rng, content):
    """Outputs of each colour mode that do what the modes promise."""
    none = tinted(rng, content.shape, (0.3, 0.5, 1.0))  # the style's blue, not the content's
    restyled = np.asarray(colors.combine_luminance_chroma(rng.random(content.shape), content))
    shuffled = rng.permutation(content.reshape(-1, 3)).reshape(content.shape)  # the same statistics
    return {"none": none, "luminance": restyled, "original": restyled, "histogram": shuffled,
            "histogram-cholesky": shuffled}


def test_colors_trend(rng):
    content = (0.25 + 0.5 * rng.random((24, 32, 3))).astype(np.float32)  # no chroma clipped
    good = colour_outputs(rng, content)
    assert set(good) == set(COLOR_MODES)
    trend = controls.colors_trend(good, content)
    assert trend.holds, trend.report()
    assert trend.values["chroma_luminance"] < 0.005 and trend.values["dY_luminance"] > 0.1
    assert trend.values["colour_distance_histogram"] < 1e-6 < trend.values["colour_distance_none"]
    # Each promise broken in turn: the style's colours kept, the photo copied, no recolouring.
    for mode, bad in [("luminance", good["none"]), ("original", good["none"]),
                      ("luminance", content), ("histogram", good["none"]),
                      ("histogram-cholesky", tinted(rng, content.shape, (0.1, 0.1, 1.0)))]:
        trend = controls.colors_trend({**good, mode: bad}, content)
        assert not trend.holds, (mode, trend.report())
        assert "DOES NOT HOLD" in trend.report()


def test_blend_trend(rng):
    alone = rng.random((8, 8, 3)).astype(np.float32)
    weights = [(1, 0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0, 1)]
    images = [np.clip(alone + 1 / 255, 0, 1)] + [rng.random((8, 8, 3)) for _ in range(4)]
    losses = np.array([[1.0, 9.0], [2.0, 7.0], [3.0, 5.0], [4.0, 3.0], [5.0, 1.0]])
    trend = controls.blend_trend(weights, images, alone, losses)
    assert trend.holds, trend.report()
    assert trend.values["alone_max_diff_levels"] == pytest.approx(1.0, abs=1e-4)
    assert trend.values["E_starry_night"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    # The order of the points does not matter, only the weights.
    order = [3, 0, 4, 2, 1]
    assert controls.blend_trend([weights[i] for i in order], [images[i] for i in order], alone,
                                losses[order]).holds
    assert controls.blend_trend([(2, 0), *weights[1:]], images, alone, losses).holds  # normalised
    far = [np.clip(alone + 3 / 255, 0, 1)] + images[1:]
    assert not controls.blend_trend(weights, far, alone, losses).holds
    bumpy = losses.copy()
    bumpy[3, 1] = 6.0  # the loss against fruits rises again before the end
    assert not controls.blend_trend(weights, images, alone, bumpy).holds
    assert not controls.blend_trend(weights, images, alone, losses[:, ::-1]).holds


def test_regions_trend(rng):
    warm = tinted(rng, (20, 20, 3), (1.0, 0.5, 0.1))
    cool = tinted(rng, (16, 24, 3), (0.1, 0.5, 1.0))
    masks = controls.region_masks(12, 16)
    image = np.where(masks[0][..., None] > 0.5, tinted(rng, (12, 16, 3), (1.0, 0.5, 0.1)),
                     tinted(rng, (12, 16, 3), (0.1, 0.5, 1.0)))
    trend = controls.regions_trend(image, masks, [warm, cool])
    assert trend.holds, trend.report()
    own, other = trend.values["to_own_style"], trend.values["to_other_style"]
    assert max(own) < 0.2 < min(other)
    assert not controls.regions_trend(image, masks[::-1], [warm, cool]).holds
    assert not controls.regions_trend(image[:, ::-1], masks, [warm, cool]).holds


def test_scale_trend(rng):
    def texture(cell):  # noise in cells of cell x cell px: larger structures for larger cells
        noise = rng.random((64 // cell, 64 // cell, 3)).astype(np.float32)
        return noise.repeat(cell, 0).repeat(cell, 1)

    scales = (0.5, 1.0, 2.0)
    images = [texture(1), texture(4), texture(16)]
    trend = controls.scale_trend(scales, images)
    assert trend.holds, trend.report()
    assert trend.values["style_scale"] == [0.5, 1.0, 2.0]
    assert controls.scale_trend(scales[::-1], images[::-1]).holds  # sorted by scale
    assert not controls.scale_trend(scales, images[::-1]).holds
    assert not controls.scale_trend(scales, [images[0], images[2], images[1]]).holds


# --- what the figures run ---------------------------------------------------------------------


def test_figures_run_the_controls_on_the_bundled_examples():
    base = Config(size=40, iterations=7, seed=3, preserve_colors="histogram")
    starry, fruits = controls.style_paths()
    modes = controls.colors_configs(base)
    assert list(modes) == list(COLOR_MODES)
    assert all(c.style == (starry,) and c.preserve_colors == m for m, c in modes.items())
    blend = controls.blend_grid(base)
    assert len(blend) == 5 and blend.axes[0][0] == "style_blend_weights"
    assert [c.style_mix() for c in blend.configs][2] == [[0.5, 0.5]]
    assert all(c.style == (starry, fruits) and c.seed == 3 and c.iterations == 7 and
               c.preserve_colors == "none" for c in blend.configs)
    regions = controls.regions_grid(base, ["l.png", "r.png"])
    assert [c.region_weights for c in regions.configs] == list(controls.REGION_WEIGHTS)
    assert regions.configs[0].content_masks == ("l.png", "r.png")
    assert regions.configs[0].style_mix() == [[1.0, 0.0], [0.0, 1.0]]
    scales = controls.scale_configs(base)
    assert [c.style_scale for c in scales.values()] == [(0.5,), (1.0,), (2.0,)]
    # Scale 1 is the plain Starry Night run: the figures share it.
    assert controls.run_key(scales[1.0]) == modes["none"] == controls.example_base(base)
    assert controls.run_key(scales[2.0]) != modes["none"]


def test_original_colours_from_the_none_run(tiny_vgg, tiny_params, rng):
    # The figure derives `original` from the `none` run: the image a separate run gives.
    from nst_jax import sweep

    content, style = rng.random((24, 32, 3)).astype(np.float32), rng.random((32, 32, 3))
    config = Config(iterations=2, style_layers=("conv1_1", "conv2_1"), optimizer="adam")
    runs = {}
    for mode in ("none", "original"):
        grid = sweep.Grid((config.replace(preserve_colors=mode),))
        runs[mode] = sweep.run_grid(content, style.astype(np.float32), tiny_params, grid,
                                    module=tiny_vgg)[0]
    derived = controls.as_original_colors(runs["none"], content)
    np.testing.assert_allclose(derived.image, runs["original"].image, atol=1e-4 / 255)
    assert derived.config.preserve_colors == "original" and derived.total == runs["original"].total
    assert controls.chroma_difference(derived.image, content) < 0.01


def test_style_losses_are_each_styles_own(tiny_vgg, tiny_params, rng):
    from nst_jax import stylize, sweep

    content, first, second = (rng.random(shape).astype(np.float32)
                              for shape in ((24, 32, 3), (32, 32, 3), (28, 36, 3)))
    base = Config(style=("a", "b"), style_layers=("conv1_1", "conv2_1", "conv3_1"), iterations=1)
    grid = sweep.Grid.product(base, style_blend_weights=[(1.0, 0.0), (0.5, 0.5)])
    sweeper = sweep.Sweeper.for_grids(content, [first, second], tiny_params, [grid],
                                      module=tiny_vgg)
    images = [rng.random(content.shape).astype(np.float32) for _ in range(2)]
    got = controls.style_losses(sweeper, grid.configs[0], images)
    for k, style in enumerate((first, second)):  # against a loss built for that style alone
        alone = base.replace(style=("a",))
        loss_fn = stylize.build_loss_fn(tiny_params, content, style, alone.content_layers,
                                        alone.style_layers, tiny_vgg)
        expected = [float(loss_fn(x, stylize.loss_weights(alone))[1].style) for x in images]
        np.testing.assert_allclose(got[:, k], expected, rtol=1e-5)


# --- the script -------------------------------------------------------------------------------


def _script(*args):
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run([sys.executable, str(REPO / "scripts" / "control_figures.py"),
                           *map(str, args)], capture_output=True, text=True, timeout=600, cwd=REPO)


def test_script_writes_the_figures_and_their_checks(real_weights, tmp_path):
    # Colours and blending: the checks that hold at any size, whatever the optimiser reached.
    # Adam, because each colour mode is a program of its own and Adam's compiles in about
    # half L-BFGS's time (the figures' code is the same for every optimiser).
    out = tmp_path / "figs"
    result = _script("--figures", "blend,colors", "--size", 32, "--iterations", 3,
                     "--optimizer", "adam", "--output-dir", out, "--quiet")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "Colour preservation (2017 sec. 5)", "Style blending (2017 sec. 3)", f"wrote {out}"]
    checks = json.loads((out / "checks.json").read_text())
    assert set(checks) == {"colors", "blend"}
    colours, blend = checks["colors"]["values"], checks["blend"]["values"]
    assert colours["chroma_luminance"] <= 0.01 and colours["chroma_original"] <= 0.01
    assert colours["dY_luminance"] > 0
    assert blend["alone_max_diff_levels"] <= 1
    assert len(blend["E_starry_night"]) == len(blend["E_fruits"]) == 5
    for mode in COLOR_MODES:
        assert (out / "colors" / f"{mode}.png").is_file()
    assert json.loads((out / "colors" / "results.json").read_text())["luminance"]["config"][
        "preserve_colors"] == "luminance"
    for name in ("colors/contact_sheet.png", "blend/contact_sheet.png",
                 "blend/starry_night_alone.png"):
        assert (out / name).is_file(), name
    assert len(json.loads((out / "blend" / "results.json").read_text())["results"]) == 5


@pytest.mark.parametrize("flags, needle", [
    (["--figures", "texture"], "unknown figure(s) texture"),
    (["--figures", "scale", "--size", "32"], "--size 32 is too small for the scale figure"),
    (["--iterations", "0"], "iterations"), (["--ratio", "1"], "--ratio")])
def test_bad_flags_one_line(flags, needle, tmp_path, capsys):
    code = runner.launch("nst_jax.apps.figures.control_figures",
                         [*flags, "--output-dir", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR and err.startswith("error: ")
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "never").exists()
