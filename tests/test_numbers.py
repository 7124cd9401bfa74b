"""Numbers at the edges: weights beyond float32, blend weights near float64's largest, and
messages that name the other fields they mention by the flag or the page's label."""
import pathlib
import warnings

import numpy as np
import pytest

from nst_jax import config as config_module
from nst_jax import stylize
from nst_jax.apps.common import runner
from nst_jax.apps.web import jobs
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import Config, ConfigError
from nst_jax.errors import NSTError

# (getattr: so that on a version without the bound each test fails on its own defect)
MAX_WEIGHT = getattr(config_module, "MAX_WEIGHT", 1e8)

TWO_STYLES = dict(style=("a.jpg", "b.jpg"))
REGIONS = dict(style=("a.jpg", "b.jpg"), content_masks=("m1.png", "m2.png"))


def launch(module, argv, capsys):
    code = runner.launch(module, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Warning" not in err, err
    return lines[0]


@pytest.mark.parametrize("changes, field", [
    (dict(alpha=1e39), "alpha"),
    (dict(beta=1e300), "beta"),
    (dict(alpha=MAX_WEIGHT * 10), "alpha"),
    (dict(tv_weight=1e39), "tv_weight"),
    (dict(ratio=1e300), "ratio"),
    (dict(content_layer_weights=(1e39,)), "content_layer_weights"),
    (dict(style_layer_weights=(1, 1, 1e39, 1, 1)), "style_layer_weights"),
    (dict(REGIONS, region_weights=(1.0, 1e39)), "region_weights"),
    (dict(learning_rate=1e39), "learning_rate"),
    # Each weight within the bound, their product (a term's weight, float32 too) not.
    (dict(alpha=MAX_WEIGHT, content_layer_weights=(2.0,)), "alpha"),
    (dict(REGIONS, beta=MAX_WEIGHT, style_layer_weights=(1, 1, 1, 1, 1), region_weights=(1, 2)),
     "beta"),
])
def test_numbers_beyond_float32_or_the_weight_bound_are_refused(changes, field):
    """Defect: --alpha 1e39 and --ratio 1e300 were taken; their float32 cast overflowed to
    inf (two RuntimeWarnings) and the run ended non-finite with a noise image."""
    with pytest.raises(ConfigError) as e:
        Config().replace(**changes)
    assert e.value.field == field
    assert "at most" in e.value.problem


def test_weights_at_the_bound_are_taken():
    config = Config(alpha=MAX_WEIGHT, beta=MAX_WEIGHT, tv_weight=MAX_WEIGHT)
    weights = stylize.loss_weights(config)
    assert np.isfinite([weights.alpha, weights.beta, weights.tv_weight]).all()
    assert Config().replace(ratio=MAX_WEIGHT).alpha == MAX_WEIGHT


def test_blend_weights_near_float64_max_blend_as_equal_weights(tiny_vgg, tiny_params):
    """Defect: 1e308,1e308 summed to inf when normalised, every blend weight became 0 and
    the style term vanished (style loss 4.0e5 against 2.83e8 for 1,1)."""
    huge = Config(**TWO_STYLES, style_blend_weights=(1e308, 1e308))
    equal = Config(**TWO_STYLES, style_blend_weights=(1.0, 1.0))
    assert huge.style_mix() == equal.style_mix() == [[0.5, 0.5]]
    np.testing.assert_allclose(Config(**TWO_STYLES, style_blend_weights=(1e308, 5e307)).style_mix(),
                               [[2 / 3, 1 / 3]])
    # The same style targets, so the same loss.
    rng = np.random.default_rng(0)
    content = rng.random((24, 32, 3)).astype(np.float32)
    styles = [rng.random((28, 28, 3)).astype(np.float32) for _ in range(2)]
    loss = stylize.build_loss_fn(tiny_params, content, styles, huge.content_layers,
                                 huge.style_layers, tiny_vgg)
    x = stylize.white_noise(0, content.shape, 0.1)
    (total_huge, terms_huge), (total_equal, terms_equal) = (
        loss.fn(x, stylize.loss_weights(c), loss.data) for c in (huge, equal))
    assert float(terms_huge.style) > 0
    np.testing.assert_array_equal(float(total_huge), float(total_equal))
    np.testing.assert_array_equal(float(terms_huge.style), float(terms_equal.style))


def test_cli_alpha_beyond_float32_is_one_error_line(tmp_path, capsys, monkeypatch):
    """Defect: printed two 'RuntimeWarning: overflow encountered in cast' lines and
    exited 3 with a noise image."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        code, _, err = launch("nst_jax.apps.cli.stylize", ["--alpha", "1e39", "--size", "32",
                                                       "--iterations", "2", "--output", out], capsys)
    assert code == ExitCode.ERROR
    line = one_error_line(err)
    assert line.startswith("error: --alpha must be at most 1e+08, got 1e+39"), line
    assert not out.exists()


@pytest.mark.parametrize("log_ratio", [400, 300, 5.5])
def test_page_log_ratio_beyond_the_bound_is_the_pages_message(log_ratio):
    """Defect: log10 α/β = 400 raised OverflowError (a traceback in the server log); 300
    gave a 'successful' PNG whose metadata said the loss was inf."""
    with pytest.raises(NSTError, match=r"^α/β must be at most 1e5 .* got log10 α/β = "):
        jobs.alpha_beta(log_ratio)
    upload = jobs.Upload(pathlib.Path("c.png"), "c.png")
    with pytest.raises(NSTError, match="^α/β must be at most"):
        jobs.make_config(content=upload, styles=[upload], log_ratio=log_ratio)
    assert jobs.alpha_beta(5) == (MAX_WEIGHT, 1e3)


@pytest.mark.parametrize("argv, needle", [
    (["--size", "32", "--start-size", "64"], "--start-size must not exceed --size (32), got 64"),
    (["--style-scale", "0.5", "--style-size", "32"],
     "--style-scale and --style-size both set the style's size"),
    (["--region-weights", "1"], "--region-weights needs --content-masks (the regions)"),
    (["--style", "a.jpg,b.jpg", "--content-masks", "m1.png,m2.png", "--style-blend-weights", "1,1"],
     "with --content-masks each region has its own style"),
    (["--ratio", "1e-3", "--alpha", "2"], "--ratio sets --alpha and --beta"),
    (["--size", "256", "--start-size", "32", "--style-size", "100"],
     "--start-size 32 gives the style images a long side of 12 px at the first scale "
     "(--style-size 100 x 32/256); it must be at least 16 px: raise --start-size or --style-size"),
    (["--size", "64", "--style-scale", "0.05"],
     "--style-scale 0.05 gives style image 1 a long side of 3 px; it must be 16-4096 px"),
])
def test_cli_messages_name_the_other_fields_by_their_flags(argv, needle, tmp_path, capsys,
                                                           monkeypatch):
    """Defect: "--style-scale and style_size both set", "must not exceed size (32)" (field
    names where the flag is meant), "makes style image 1 3 px long"."""
    monkeypatch.chdir(tmp_path)
    code, _, err = launch("nst_jax.apps.cli.stylize", [*argv, "--iterations", "1"], capsys)
    assert code == ExitCode.ERROR
    assert needle in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_page_messages_name_the_other_fields_by_their_labels():
    upload = jobs.Upload(pathlib.Path("c.png"), "c.png")
    with pytest.raises(NSTError, match=r"^Start size must not exceed Size \(256\), got 300"):
        jobs.make_config(content=upload, styles=[upload], size=256, start_size=300)


def test_library_messages_name_fields_by_their_names():
    """Outside the tools (str() of the error) the mentioned fields keep their names."""
    with pytest.raises(ConfigError, match=r"^start_size must not exceed size \(32\)") as e:
        Config(size=32, start_size=64)
    assert e.value.problem_naming(str.upper) == "must not exceed SIZE (32), got 64; it is the " \
                                                "first scale's long side"


def test_weights_at_the_bound_run_as_scaled_down_ones(real_weights):
    """Why MAX_WEIGHT (see nst_jax.config): α and β scaled up to the bound take the same
    iterates as at 1, the loss scaled (L-BFGS is scale-invariant until its float32 squares
    overflow: measured at 64 px, scaled by 1e8 the run went as at 1, by 1e9 it stalled)."""
    params, preprocessing = real_weights
    base = Config(size=32, iterations=4)
    inputs = stylize.load_inputs(base)
    values = []
    for scale in (1.0, MAX_WEIGHT / base.beta):
        config = base.replace(alpha=base.alpha * scale, beta=base.beta * scale)
        job = stylize.prepare(inputs.content, inputs.styles, params, config,
                              preprocessing=preprocessing)
        job.step(config.iterations)
        assert not bool(job.state.nonfinite)
        values.append(np.asarray(job.state.trace.value, np.float64) / scale)
    assert values[0][-1] < 0.8 * values[0][0]  # it made progress
    np.testing.assert_allclose(values[1], values[0], rtol=1e-4)

