"""The paper's figures: each is one sweep, and each shows the trend the paper describes.

Real VGG19 weights, 64 px, 40 iterations: the trends are properties of the
network and the losses, and they already show at this size.
"""
import numpy as np
import pytest

from nst_jax import sweep
from nst_jax.apps.figures import paper
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.images import resize_to
from nst_jax.stylize import Config

SIZE = 64
ITERATIONS = 40
FIG6_ITERATIONS = 100


def run_figures(real_weights, names, iterations):
    """The figures' results, run by one Sweeper (one compilation) on the bundled examples."""
    from nst_jax.config import example_path
    from nst_jax.images import load_image

    params, preprocessing = real_weights
    content = load_image(example_path("chelsea.jpg"), max_side=SIZE)
    style = load_image(example_path("starry_night.jpg"), max_side=SIZE)
    # As scripts/paper_figures.py runs them: lbfgs-stepwise, pixels kept in [0, 1].
    base = Config(iterations=iterations, optimizer="lbfgs-stepwise", bounds="box")
    grids = {name: grid for name, grid in paper.grids(base).items() if name in names}
    sweeper = sweep.Sweeper.for_grids(content, style, params, list(grids.values()),
                                      preprocessing=preprocessing)
    size = max(len(g) for g in grids.values())
    results = {name: sweeper.run(grid, batch_size=size, fixed_batch=True)
               for name, grid in grids.items()}
    return content, results


@pytest.fixture(scope="module")
def figures(real_weights):
    return run_figures(real_weights, ("fig2_content", "fig2_style", "fig4", "fig5"), ITERATIONS)


def test_grids_are_the_papers():
    grids = paper.grids(Config())
    assert [c.content_layers for c in grids["fig2_content"].configs] == [
        ("conv1_2",), ("conv2_2",), ("conv3_2",), ("conv4_2",), ("conv5_2",)]
    assert all(c.beta == 0 for c in grids["fig2_content"].configs)
    assert grids["fig2_style"].configs[1].style_layers == ("conv1_1", "conv2_1")
    assert all(c.alpha == 0 for c in grids["fig2_style"].configs)
    assert [c.alpha / c.beta for c in grids["fig4"].configs] == [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert [c.init for c in grids["fig6"].configs] == ["content", "style", "noise", "noise", "noise"]
    assert [c.seed for c in grids["fig6"].configs][2:] == [0, 1, 2]


def test_fig2_deeper_content_layers_keep_fewer_pixels(figures):
    content, results = figures
    trend = paper.fig2_content_trend(results["fig2_content"], content)
    assert trend.holds, trend.report()


def test_fig2_style_reconstructions_match_their_grams(figures):
    trend = paper.fig2_style_trend(figures[1]["fig2_style"])
    assert trend.holds, trend.report()


def test_fig4_lower_ratio_less_style_loss_more_content_loss(figures):
    trend = paper.fig4_trend(figures[1]["fig4"])
    assert trend.holds, trend.report()


def test_fig5_conv2_2_keeps_the_photo_closer(figures):
    content, results = figures
    trend = paper.fig5_trend(results["fig5"], content)
    assert trend.holds, trend.report()


def test_fig6_inits_end_near_each_other_seeds_differ(real_weights):
    # Starting ~30x apart, the two runs need ~100 iterations to come within 3x.
    _, results = run_figures(real_weights, ("fig6",), FIG6_ITERATIONS)
    trend = paper.fig6_trend(results["fig6"])
    assert trend.holds, trend.report()


def test_trends_can_fail():
    # The checks are not vacuous: swapped results break them.
    class R:
        def __init__(self, ratio, style, content):
            self.config = Config(alpha=ratio, beta=1.0)
            self.style, self.content = style, content

    good = [R(1e-1, 10.0, 1.0), R(1e-2, 3.0, 4.0), R(1e-3, 1.0, 9.0)]
    assert paper.fig4_trend(good).holds
    assert not paper.fig4_trend([R(1e-1, 1.0, 9.0), R(1e-2, 3.0, 4.0), R(1e-3, 10.0, 1.0)]).holds
    image = np.zeros((4, 4, 3), np.float32)
    assert paper._rms(image, resize_to(image + 0.5, (4, 4))) == pytest.approx(0.5)


def _script(*args):
    import subprocess
    import sys

    from tests.conftest import REPO

    return subprocess.run([sys.executable, str(REPO / "scripts" / "paper_figures.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)


def test_script_writes_a_figure_and_its_trend(real_weights, tmp_path):
    import json

    out = tmp_path / "figs"
    result = _script("--figures", "fig5", "--size", 32, "--iterations", 3, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    assert "Fig. 5: content layer: [" in result.stdout and f"wrote {out}" in result.stdout
    trends = json.loads((out / "trends.json").read_text())
    assert set(trends) == {"fig5"} and set(trends["fig5"]["values"]) == {"conv2_2", "conv4_2"}
    assert (out / "fig5" / "contact_sheet.png").is_file()
    assert len(json.loads((out / "fig5" / "results.json").read_text())["results"]) == 2


@pytest.mark.parametrize("flags, needle", [
    (["--figures", "fig3"], "unknown figure(s) fig3"), (["--size", "5"], "size"),
    (["--iterations", "0"], "iterations"), (["--no-such-flag"], "--no-such-flag")])
def test_bad_flags_one_line(flags, needle, tmp_path, capsys):
    code = runner.launch("nst_jax.apps.figures.paper_figures", [*flags, "--output-dir", str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code == ExitCode.ERROR and err.startswith("error: ")
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "never").exists()
