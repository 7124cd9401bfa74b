"""The style distances' comparison (scripts/style_distances.py): its colour measure against a
NumPy reference, the cross and Pareto arithmetic on numbers whose answer is known, the
flags, and the tool once end to end on the tiny VGG (its logic, not its looks)."""
import json
import math

import numpy as np
import pytest

from nst_jax import measures, stylize
from nst_jax.apps.common import plots, runner
from nst_jax.apps.common.flags import UsageError
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.figures import style_distances as app
from nst_jax.vgg import CAFFE


@pytest.fixture
def rng():
    return np.random.default_rng(5)


# --- the colour measure -----------------------------------------------------------------------


def reference_sw(x, y, space, projections, seed):
    """Sliced W2 by brute force: both pixel sets repeated to a common size (the least common
    multiple: each sample ``L / n`` times, the same empirical distribution), then sorted and
    matched rank by rank."""
    convert = measures.srgb_to_lab if space == "lab" else (lambda v: np.asarray(v, np.float64))
    a, b = (convert(v).reshape(-1, 3) for v in (x, y))
    common = math.lcm(len(a), len(b))
    a, b = np.repeat(a, common // len(a), axis=0), np.repeat(b, common // len(b), axis=0)
    total = 0.0
    for d in measures.sphere_directions(projections, seed).T:
        total += np.mean(np.square(np.sort(a @ d) - np.sort(b @ d)))
    return math.sqrt(total / projections)


@pytest.mark.parametrize("space", ["rgb", "lab"])
@pytest.mark.parametrize("shapes", [((6, 5, 3), (6, 5, 3)), ((6, 5, 3), (4, 7, 3))])
def test_colour_sliced_wasserstein_is_the_numpy_reference(rng, space, shapes):
    x, y = rng.random(shapes[0]), rng.random(shapes[1])
    got = measures.colour_sliced_wasserstein(x, y, space, projections=20, seed=3)
    assert got == pytest.approx(reference_sw(x, y, space, 20, 3), rel=1e-9)
    # Symmetric, and 0 for the same colours in any arrangement or number of copies.
    assert measures.colour_sliced_wasserstein(y, x, space, 20, 3) == pytest.approx(got, rel=1e-12)
    assert measures.colour_sliced_wasserstein(x, x, space) == 0.0
    shuffled = rng.permutation(x.reshape(-1, 3)).reshape(x.shape)
    assert measures.colour_sliced_wasserstein(x, shuffled, space) == pytest.approx(0, abs=1e-12)
    assert measures.colour_sliced_wasserstein(x, np.tile(x, (2, 3, 1)), space) == pytest.approx(
        0, abs=1e-12)


def test_colour_distance_grows_with_a_recolouring(rng):
    image = rng.random((16, 12, 3)) * 0.6
    tinted = [np.clip(image + np.asarray([t, 0.0, -t / 2]), 0, 1) for t in (0.05, 0.15, 0.3)]
    for space in ("rgb", "lab"):
        values = [measures.colour_sliced_wasserstein(image, t, space) for t in tinted]
        assert 0 < values[0] < values[1] < values[2], (space, values)
    # A uniform shift by s along one axis of RGB moves each projection by s * d: SW = s / sqrt(3).
    shifted = image + np.asarray([0.1, 0.0, 0.0])
    assert measures.colour_sliced_wasserstein(image, shifted, projections=4000) == pytest.approx(
        0.1 / math.sqrt(3), rel=0.03)
    with pytest.raises(ValueError, match="hsv"):
        measures.colour_sliced_wasserstein(image, image, "hsv")


def test_srgb_to_lab_known_colours():
    lab = measures.srgb_to_lab(np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                                         [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(lab[0], (100, 0, 0), atol=1e-3)
    np.testing.assert_allclose(lab[1], (0, 0, 0), atol=1e-9)
    np.testing.assert_allclose(lab[2], (53.24, 80.09, 67.20), atol=0.01)  # sRGB red, D65
    np.testing.assert_allclose(lab[3], (32.30, 79.19, -107.86), atol=0.01)  # sRGB blue


def test_wasserstein_1d_of_a_shift():
    a = np.arange(5.0)[:, None]
    assert measures.wasserstein_1d_squared(a, a + 2.0) == pytest.approx([4.0])
    # 1 sample against 2: Q_a = 0 everywhere, Q_b = 0 then 2 -> half the interval at 2^2.
    assert measures.wasserstein_1d_squared([[0.0]], [[0.0], [2.0]]) == pytest.approx([2.0])


# --- the cross table and the fronts -----------------------------------------------------------


def test_held_out_evaluators_are_those_neither_run_optimises():
    assert app.held_out("sliced") == ("mean-cov", "histogram")
    assert app.held_out("gram,histogram") == ("mean-cov", "sliced")
    assert app.held_out("gram") == ("mean-cov", "sliced", "histogram")
    values = {"gram": {"gram": 2.0, "mean-cov": 4.0, "sliced": 8.0, "histogram": 1.0},
              "sliced": {"gram": 4.0, "mean-cov": 1.0, "sliced": 2.0, "histogram": 4.0}}
    ratios = app.cross_ratios(values)
    assert ratios["gram"] == {"gram": 1, "mean-cov": 1, "sliced": 1, "histogram": 1, "held_out": 1}
    assert ratios["sliced"]["gram"] == 2.0 and ratios["sliced"]["sliced"] == 0.25
    assert ratios["sliced"]["held_out"] == pytest.approx(math.sqrt(0.25 * 4.0))


def test_fronts_are_compared_at_equal_content_loss():
    reference = [(1.0, 10.0), (10.0, 5.0), (100.0, 2.0)]
    half = [(c, v / 2) for c, v in reference]
    found = app.at_equal_content(half, reference)
    assert found["ratio"] == pytest.approx(0.5) and found["lower_everywhere"]
    assert not found["higher_everywhere"]
    # The same front shifted to larger content losses: worse at equal content loss, and
    # only the common range [10, 100] counts.
    shifted = [(c * 10, v) for c, v in reference]
    found = app.at_equal_content(shifted, reference)
    assert found["overlap"] == pytest.approx([10.0, 100.0]) and found["higher_everywhere"]
    assert app.at_equal_content([(1000.0, 1.0), (2000.0, 1.0)], reference) is None
    # Unsorted points are sorted by content loss first.
    assert app.at_equal_content(half[::-1], reference)["ratio"] == pytest.approx(0.5)


def test_pareto_summary_names_the_distance_that_beats_gram():
    def point(distance, content, lab, cross):
        return {"distance": distance, "content_loss": content,
                "colour_sw": {"rgb": lab / 100, "lab": lab}, "cross": cross}

    points = []
    for c in (1.0, 10.0, 100.0):
        base = {"gram": 1 / c, "mean-cov": 2 / c, "sliced": 3 / c, "histogram": 4 / c}
        points.append(point("gram", c, 20 / c, base))
        # histogram: better colours and better on the held-out mean-cov and sliced.
        points.append(point("histogram", c, 10 / c, {**base, "mean-cov": 1 / c, "sliced": 1 / c}))
        # mean-cov: better colours, worse on the held-out sliced and histogram.
        points.append(point("mean-cov", c, 10 / c, {**base, "sliced": 9 / c, "histogram": 9 / c}))
    summary = app.pareto_summary(points, ["gram", "mean-cov", "histogram"])
    assert set(summary) == {"mean-cov", "histogram"}
    assert summary["histogram"]["beats_gram"] and summary["histogram"]["dominates"]
    assert summary["histogram"]["held_out"]["evaluators"] == ["mean-cov", "sliced"]
    assert summary["histogram"]["lab"]["ratio"] == pytest.approx(0.5)
    assert not summary["mean-cov"]["beats_gram"]
    # Held out for mean-cov: sliced (9 / 3) and histogram (9 / 4).
    assert summary["mean-cov"]["held_out"]["ratio"] == pytest.approx(math.sqrt(3 * 2.25))


# --- the flags --------------------------------------------------------------------------------


def plan_of(*argv):
    parser, flags = app.build_parser()
    return app.make_plan(parser.parse_args(list(argv)), flags)


def test_the_default_plan_runs_on_the_bundled_images(tmp_path):
    plan = plan_of("--out-dir", str(tmp_path))
    assert plan.distances == ("gram", "mean-cov", "sliced", "histogram", "gram,histogram")
    assert plan.ratios == (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    assert len(plan.pairs) == 3 and all(map(lambda p: (p[0] != p[1]), plan.pairs))
    for content, style in plan.pairs:  # bundled: present wherever the package is
        assert stylize.load_inputs(plan.base.replace(content=content, style=(style,), size=32))
    assert [(size, it) for size, _, it in plan.runs] == [(256, 100)] * 3
    assert plan.pareto.size == 128 and plan.pareto.content == plan.pairs[0][0]
    assert plan.path("md") == tmp_path / "results" / "style_distances.md"
    assert plan.path("256") == tmp_path / "images" / "style_distances_256.png"


def test_sizes_pairs_and_iterations_per_size(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plan = plan_of("--size", "256,512", "--pairs-at", "512=1", "--iterations-at", "512=30",
                   "--iterations", "80", "--pair", str(a), str(b), "--pair", str(b), str(a),
                   "--distances", "gram; sliced ;gram:1,histogram:0.5", "--no-pareto",
                   "--name", "sd512")
    assert plan.pairs == ((str(a), str(b)), (str(b), str(a)))
    assert [(size, pair[0], it) for size, pair, it in plan.runs] == [
        (256, str(a), 80), (256, str(b), 80), (512, str(a), 30)]
    assert plan.distances == ("gram", "sliced", "gram,histogram:0.5")
    assert plan.pareto is None and plan.path("json").name == "sd512.json"


@pytest.mark.parametrize("flags, needle", [
    (["--distances", "sliced;histogram"], "must include gram"),
    (["--distances", "gram;wasserstein"], "unknown style distance"),
    (["--distances", "gram;sliced;sliced:1"], "named twice"),
    (["--ratios", "1e-3"], "at least two"), (["--ratios", "1e-3,-1"], "each > 0"),
    (["--size", "8"], "--size"), (["--pairs-at", "512"], "SIZE=N"),
    (["--pareto-size", "9"], "--pareto-size"), (["--iterations", "0"], "--iterations")])
def test_bad_flags_are_one_line_before_any_work(flags, needle, tmp_path, capsys):
    code = runner.launch("nst_jax.apps.figures.style_distances",
                         [*flags, "--out-dir", str(tmp_path / "never")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ExitCode.ERROR and len(err) == 1 and err[0].startswith("error: "), err
    assert needle in err[0]
    assert not (tmp_path / "never").exists()


def test_make_plan_raises_usage_errors():
    with pytest.raises(UsageError, match="--name"):
        plan_of("--name", "a/b")


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_network(monkeypatch, tiny_vgg, tiny_params):
    """The tool runs on the tiny VGG: no weights file is read."""
    monkeypatch.setattr(stylize, "load_network", lambda config, content, styles, **kwargs:
                        stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"}))


def test_the_tool_end_to_end_on_the_tiny_vgg(tiny_network, tmp_path, capsys):
    # Adam: its loop compiles in about half L-BFGS's time; the tool's code is the same.
    argv = ["--size", "32", "--iterations", "2", "--optimizer", "adam", "--pairs-at", "32=1",
            "--distances", "gram;histogram", "--ratios", "1e-3,1e-1", "--pareto-size", "32",
            "--out-dir", str(tmp_path), "--quiet"]
    code = runner.launch("nst_jax.apps.figures.style_distances", argv)
    out = capsys.readouterr().out
    assert code == ExitCode.OK, out
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'results' / 'style_distances.md'}"
    assert out.splitlines()[0].startswith("histogram against Gram at equal content loss")

    report = json.loads((tmp_path / "results" / "style_distances.json").read_text())
    runs = report["runs"]
    assert [(r["size"], r["pair"], r["distance"]) for r in runs] == [
        (32, "chelsea + starry_night", "gram"), (32, "chelsea + starry_night", "histogram")]
    for r in runs:
        assert set(r["cross"]) == {"gram", "mean-cov", "sliced", "histogram"}
        assert r["evaluations"] >= 2 and r["wall_s"] > 0 and r["colour_sw"]["lab"] > 0
    # The evaluation measures what the run optimised: the same term on the same pixels.
    gram, histogram = runs
    assert gram["cross"]["gram"] == pytest.approx(gram["style_term"], rel=1e-4)
    assert 1e4 * histogram["cross"]["histogram"] == pytest.approx(histogram["style_term"],
                                                                  rel=1e-4)
    # The side-by-side run is the Pareto sweep's point at the same ratio: one program.
    pareto = report["pareto"]
    assert [(p["distance"], p["ratio"]) for p in pareto["points"]] == [
        ("gram", 1e-3), ("gram", 1e-1), ("histogram", 1e-3), ("histogram", 1e-1)]
    assert pareto["points"][0]["colour_sw"] == gram["colour_sw"]
    assert pareto["points"][2]["content_loss"] == pytest.approx(histogram["content_loss"])
    assert set(pareto["summary"]) == {"histogram"}
    assert set(pareto["summary"]["histogram"]) >= {"lab", "rgb", "held_out", "beats_gram"}

    md = (tmp_path / "results" / "style_distances.md").read_text()
    assert "Command: `python scripts/style_distances.py --size 32 --iterations 2" in md
    assert "| 32 | chelsea + starry_night | gram | " in md
    assert "| 32 | chelsea + starry_night | *the content image* | 0 |" in md
    assert "| 32 | chelsea + starry_night | histogram | " in md.split("## Cross table")[1]
    assert "**Verdict:**" in md and "(../images/style_distances_32.png)" in md
    assert (tmp_path / "images" / "style_distances_32.png").is_file()
    assert (tmp_path / "images" / "style_distances_pareto.png").is_file() == \
        plots.have_matplotlib()
