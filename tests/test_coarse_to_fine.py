"""Coarse to fine (``nst_jax.coarse_to_fine``): the ladder, each scale's config, the hand-over
between scales, and the refusals; on the tiny VGG (logic, not looks)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from PIL import Image

from nst_jax import coarse_to_fine as c2f
from nst_jax import colors, stylize
from nst_jax.config import Config, ConfigError
from nst_jax.vgg import CAFFE


def compilations(step) -> int:
    """How many programs a jitted function (or a partial of one) has compiled."""
    return getattr(step, "func", step)._cache_size()


@pytest.mark.parametrize("start, size, want", [
    (256, 1024, (256, 362, 512, 724, 1024)),
    (256, 512, (256, 362, 512)),
    (128, 512, (128, 181, 256, 362, 512)),
    (362, 512, (362, 512)),
    (300, 1024, (300, 408, 554, 753, 1024)),
    (1023, 1024, (1023, 1024)),
    (512, 512, (512,)),
    (600, 512, (512,)),
])
def test_ladder_values(start, size, want):
    assert c2f.ladder(start, size) == want


def test_ladder_grows_by_about_sqrt2_from_start_to_size():
    for start in range(16, 300, 7):
        for size in (start + 1, 2 * start + 3, 333, 1000, 4096):
            if size <= start:
                continue
            sides = c2f.ladder(start, size)
            assert sides[0] == start and sides[-1] == size
            assert all(b > a for a, b in itertools.pairwise(sides))
            n = len(sides) - 1
            factor = (size / start) ** (1 / n)
            if n > 1 or size / start > 2 ** 0.25:  # not the one-small-step case
                assert abs(math.log2(factor) - 0.5) <= 1 / (4 * n) + 1e-9, (start, size, sides)


def test_plan_makes_a_single_scale_config_per_scale():
    config = Config(size=64, start_size=32, iterations=5, coarse_iterations=3, style_size=48,
                    seed=4)
    scales = c2f.plan(config)
    assert [s.size for s in scales] == [32, 45, 64]
    assert [s.config.size for s in scales] == [32, 45, 64]
    assert [s.config.iterations for s in scales] == [3, 3, 5]
    # a style side in px keeps its ratio to the output at every scale
    assert [s.config.style_size for s in scales] == [24, 34, 48]
    assert all(s.config.start_size is None and s.config.seed == 4 for s in scales)
    assert [s.label() for s in scales] == ["scale 1/3, 32 px", "scale 2/3, 45 px",
                                           "scale 3/3, 64 px"]
    assert [s.last for s in scales] == [False, False, True]
    # style_scale is relative to the size: it follows each scale by itself
    scaled = c2f.plan(Config(size=64, start_size=32, style_scale=0.5))
    assert [stylize.style_sides(s.config)[0][0] for s in scaled] == [16, 22, 32]
    # off, or a start at the size: one scale, the config itself (the same run as without)
    plain = Config(size=64)
    assert c2f.plan(plain) == (c2f.Scale(0, 1, 64, plain),)
    assert c2f.plan(plain.replace(start_size=64))[0].config == plain


def test_refusals_name_start_size(tmp_path):
    with pytest.raises(ConfigError, match="start_size must not exceed size"):
        Config(size=64, start_size=65)
    with pytest.raises(ConfigError) as e:
        c2f.plan(Config(size=256, start_size=32, style_size=100))
    assert e.value.field == "start_size" and "style images a long side of 12 px" in str(e.value)
    with pytest.raises(ConfigError) as e:
        c2f.plan(Config(size=256, start_size=32, style_scale=0.25))
    assert e.value.field == "style_scale" and "raise start_size" in str(e.value)
    # a content image that is too thin at the first scale only
    wide = tmp_path / "wide.png"
    Image.new("RGB", (200, 30), (90, 120, 200)).save(wide)
    config = Config(content=str(wide), size=200, start_size=64)
    with pytest.raises(ConfigError) as e:
        c2f.inputs_at(c2f.plan(config)[0], config)
    assert e.value.field == "start_size" and "64x10" in str(e.value)


@pytest.fixture
def files(tmp_path):
    """A 40x32 content (smooth), a 36x36 style (noise) and two half masks, as files."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:40] / 40.0
    content = np.clip(np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1), 0, 1)
    paths = {name: tmp_path / f"{name}.png" for name in ("content", "style", "left", "right")}
    Image.fromarray((content * 255).astype(np.uint8)).save(paths["content"])
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(paths["style"])
    left = np.zeros((32, 40), np.uint8)
    left[:, :20] = 255
    Image.fromarray(left).save(paths["left"])
    Image.fromarray(255 - left).save(paths["right"])
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def network(tiny_vgg, tiny_params):
    return stylize.Network(tiny_vgg, tiny_params, CAFFE, {})


def test_each_scale_starts_from_the_previous_result_upsampled(files, network):
    # The compiled programs are shared by every run of the same network, settings and
    # iterations: another test's run at another size would count here as a compilation.
    for cache in (stylize.compiled_programs, stylize.untiled_loss, stylize._features_program):
        cache.cache_clear()
    config = Config(content=files["content"], style=files["style"], size=40, start_size=24,
                    iterations=4, coarse_iterations=3, beta=1e2)
    seen, previous = [], None
    for scale, job in c2f.stylizations(config, network):
        assert job.content.shape == (round(32 * scale.size / 40), scale.size, 3)
        assert job.config == scale.config
        noise = stylize.white_noise(config.seed, job.content.shape, 0.1)
        if previous is None:  # the first scale starts as config.init says: noise of config.seed
            np.testing.assert_array_equal(job.state.pixels, noise)
        else:
            want = c2f.upsample(previous, job.content.shape[:2])
            np.testing.assert_array_equal(job.state.pixels, want)
            # ... and far below where noise would start it
            assert job.terms()[0] < 0.5 * job.terms(noise)[0]
        for n in (2, 2, 2):  # several chunks of one compiled function
            job.step(n)
        assert job.done and compilations(job._run) == 1  # one compilation per scale
        previous = np.asarray(stylize.best_image(job.state))
        seen.append((scale.size, int(job.state.iteration)))
    assert seen == [(24, 3), (40, 4)]
    image, total, _ = job.saved()  # the output and its loss are the last scale's
    assert image.shape == (32, 40, 3) and np.isfinite(total)


def test_upsample_is_bicubic_on_floats_and_stays_in_the_box():
    rng = np.random.default_rng(0)
    small = rng.random((10, 12, 3)).astype(np.float32)
    big = c2f.upsample(small, (20, 24))
    assert big.shape == (20, 24, 3) and big.dtype == np.float32
    assert big.min() >= 0 and big.max() <= 1
    want = np.asarray(Image.fromarray(small[:, :, 1]).resize((24, 20), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(big[:, :, 1], np.clip(want, 0, 1))


def test_luminance_and_regions_at_every_scale(files, network):
    """Colour preservation hands over the pixels as they were optimised (not with the
    content's colours put back: that happens once, at the end); the masks are read at each
    scale's size."""
    config = Config(content=files["content"], style=(files["style"], files["content"]),
                    content_masks=(files["left"], files["right"]), size=40, start_size=28,
                    iterations=2, coarse_iterations=2, beta=1e2, preserve_colors="luminance")
    shapes, previous = [], None
    for scale, job in c2f.stylizations(config, network):
        shapes.append(c2f.inputs_at(scale, config).content_masks.shape)
        if previous is not None:
            best, result = previous
            shape = job.content.shape[:2]
            np.testing.assert_array_equal(job.state.pixels, c2f.upsample(best, shape))
            assert np.abs(job.state.pixels - c2f.upsample(result, shape)).max() > 0.05
        job.step(2)
        previous = np.asarray(stylize.best_image(job.state)), job.result()
    assert shapes == [(2, 22, 28), (2, 32, 40)]
    out = job.result()
    # the content's chroma is put back on the last scale's output (as docs/controls.md's figure checks)
    chroma = np.abs(np.asarray(colors.rgb_to_yiq(out))[..., 1:]
                    - np.asarray(colors.rgb_to_yiq(job.content))[..., 1:])
    assert chroma.mean() < 0.01 and np.asarray(colors.rgb_to_yiq(out))[..., 1:].std() > 0.05


@pytest.mark.parametrize("flag", [["--start-size", "32"], ["--coarse-iterations", "5"],
                                  ["--tile-size", "64"]])
def test_a_sweep_refuses_coarse_to_fine_in_one_line(flag, tmp_path, capsys):
    from nst_jax.apps.common import runner
    from tests.test_cli import assert_one_line_error

    code = runner.launch("nst_jax.apps.cli.sweep", ["--output-dir", str(tmp_path / "s"), *flag])
    assert_one_line_error(code, capsys.readouterr().err, flag[0], "a sweep runs every point at one")
    assert not (tmp_path / "s").exists()


def test_the_bench_table_compares_variants_at_equal_wall_time():
    from nst_jax.apps.benchmark.cases import quality

    assert quality.quality_variants([256, 362, 600], [50, 100], 512) == [
        {"start_size": None}, {"start_size": 256, "coarse_iterations": 50},
        {"start_size": 256, "coarse_iterations": 100}, {"start_size": 362, "coarse_iterations": 50},
        {"start_size": 362, "coarse_iterations": 100}]

    def case(start, points, seconds):
        return {"size": 512, "seed": 0, "start_size": start, "coarse_iterations": 50,
                "seconds": seconds, "cost": 10.0, "final_loss": points[-1][1],
                "scales": [{"size": 512, "iterations": len(points) - 1}],
                "texture_period": 20.0, "high_frequency_share": 0.1,
                "curve": [{"s": s, "iteration": i, "loss": loss}
                          for i, (s, loss) in enumerate(points)]}

    single = case(None, [(0, 9.0), (20, 5.0), (40, 4.0), (80, 3.0)], 80)
    c2f_case = case(256, [(30, 6.0), (40, 3.5), (60, 2.5)], 60)
    assert quality.lowest_within(c2f_case["curve"], 20) != quality.lowest_within(c2f_case["curve"], 20)
    assert quality.lowest_within(c2f_case["curve"], 45) == 3.5  # the starting point does not count
    assert quality.time_to(c2f_case["curve"], 3.0) == 60 and quality.time_to(single["curve"], 2) is None
    table = "\n".join(quality.quality_markdown([single, c2f_case]))
    assert "lowest loss by 20 s | lowest loss by 40 s | lowest loss by 80 s" in table
    assert "| from 256 px, 50 it./coarse scale | 512 | 2 | 60 | 10 | 2.5 | nan | 3.5 | 2.5 | 60 |" \
        in table


@pytest.mark.parametrize("flags", [["--quality-sizes", "16"], ["--quality-sizes", "64",
                                                                "--quality-coarse-iterations", "0"]])
def test_bad_quality_flags_are_one_line_errors(flags, capsys):
    from nst_jax.apps.common import runner
    from tests.test_cli import assert_one_line_error

    code = runner.launch("nst_jax.apps.benchmark.bench", ["--sizes", "", *flags])
    assert_one_line_error(code, capsys.readouterr().err, "--quality-")
