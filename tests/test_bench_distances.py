"""The benchmark's style distances case (nst_jax.apps.benchmark.cases.distances): its flags,
its timings with the tiny VGG at a tiny size (ratios to gram from the same rounds), the
square roots' accuracy against float64, its runs and its tables."""
from __future__ import annotations

import statistics

import numpy as np
import pytest

from nst_jax import distances, stylize
from nst_jax.apps.benchmark import bench, report, worker
from nst_jax.apps.benchmark.cases import CASES, KINDS, RUN_ORDER, distances as case
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.vgg import CAFFE
from tests.test_cli import assert_one_line_error

MACHINE = {"machine": {"cpu": "a CPU", "cores": 2, "platform": "cpu", "device": "cpu", "jax": "0"},
           "matmul": {"jax": {"1024": 1.0}, "peak_gflops": 1.0}, "speed": [], "memory": []}


def test_the_kind_is_registered_and_off_unless_asked():
    assert KINDS["distances"] is case and CASES["distances"] is case.distances_case
    assert "distances" in RUN_ORDER and case.STANDALONE
    assert case.plan(bench.parser().parse_args(["--sizes", ""])) is None
    args = bench.parser().parse_args(["--sizes", "", "--distance-sizes", "256,512"])
    assert case.plan(args) == {"sizes": [256, 512], "repeats": case.DEFAULT_REPEATS}
    args = bench.parser().parse_args(["--distance-sizes", "64", "--distance-repeats", "5"])
    assert case.plan(args) == {"sizes": [64], "repeats": 5}


@pytest.mark.parametrize("flags, needle", [
    (["--distance-sizes", "16"], "must be >= 32"),
    (["--distance-sizes", "64", "--distance-repeats", "0"], "--distance-repeats must be >= 1"),
])
def test_bad_flags_are_one_line_errors(capsys, flags, needle):
    code = runner.launch("nst_jax.apps.benchmark.bench", ["--sizes", "", *flags])
    assert code == ExitCode.ERROR
    assert_one_line_error(code, capsys.readouterr().err, needle)


@pytest.fixture(scope="module")
def tiny_timings(tiny_vgg, tiny_params):
    """:func:`case.time_losses` with the tiny VGG on random 32x40 / 36x32 px images: gram,
    mean-cov (with its two square roots) and a mix, two rounds."""
    rng = np.random.default_rng(0)
    network = stylize.Network(tiny_vgg, tiny_params, CAFFE, {})
    content = rng.random((32, 40, 3), np.float32)
    style = rng.random((36, 32, 3), np.float32)
    return case.time_losses(network, content, style, 2, stylize.Config(),
                            ("gram", "mean-cov", "gram,histogram")), network, content, style


def test_each_loss_is_timed_in_the_same_rounds_as_gram(tiny_timings):
    rows = tiny_timings[0]
    assert [(r["label"], r["style_loss"], r["sqrtm"]) for r in rows] == [
        ("gram", "gram", None), ("mean-cov", "mean-cov", None),
        ("mean-cov:eigh", "mean-cov", "eigh"),
        ("mean-cov:newton-schulz", "mean-cov", "newton-schulz"),
        ("gram,histogram", "gram,histogram", None)]
    gram = rows[0]
    for r in rows:
        assert len(r["seconds"]) == 2 and r["finite"] and r["compile_s"] > 0
        assert r["s_per_evaluation"] == statistics.median(r["seconds"])
        # round by round against gram's time in the same round
        assert r["ratio_to_gram"] == pytest.approx(statistics.median(
            [t / g for t, g in zip(r["seconds"], gram["seconds"])]))
    assert gram["ratio_to_gram"] == 1.0


def test_the_losses_are_the_libraries(tiny_timings):
    rows = {r["label"]: r for r in tiny_timings[0]}
    # mean-cov through stylize's loss, and through the stand-in with each square root
    assert rows["mean-cov:eigh"]["loss"] == pytest.approx(rows["mean-cov"]["loss"], rel=1e-6)
    assert rows["mean-cov:newton-schulz"]["loss"] == pytest.approx(rows["mean-cov"]["loss"],
                                                                   rel=1e-3)
    # gram + histogram: the two terms added (the content term counted once)
    _, network, content, style = tiny_timings
    config = stylize.Config(style_loss="histogram")
    loss = stylize.build_loss_fn(network.params, content, [style], config.content_layers,
                                 config.style_layers, network.module, network.preprocessing,
                                 **stylize.distance_arguments(config))
    weights = stylize.loss_weights(config)
    x0 = stylize.white_noise(config.seed, content.shape)
    terms = loss(x0, weights)[1]
    assert rows["gram,histogram"]["loss"] == pytest.approx(
        rows["gram"]["loss"] + float(config.beta * terms.style), rel=1e-4)


def test_the_square_roots_against_float64(tiny_timings):
    _, network, content, style = tiny_timings
    matrices, eps, about = case.covariances(network, content, style, stylize.Config())
    assert matrices.shape == (4, 8, 8) and matrices.dtype == np.float32
    assert eps.shape == (4,) and np.all(eps > 0)
    assert [(a["layer"], a["image"]) for a in about] == [
        (layer, image) for layer in case.SQRT_LAYERS for image in ("content", "white noise")]
    assert about[0]["positions"] == 4 * 5  # 32x40 px, three poolings
    assert all(0 < a["eps_over_largest"] < 1 for a in about)
    rows = case.time_trace_sqrt(matrices, eps, 2)
    assert [(r["method"], r["mode"], r["matrices"]) for r in rows] == [
        (m, mode, n) for m in distances.SQRTM_METHODS for mode, n in (("jit", 1), ("vmap", 4))]
    for r in rows:
        assert r["finite"] and len(r["seconds"]) == 2 * (4 if r["mode"] == "jit" else 1)
        # float32 against the same function in float64: rounding only (how large it is on
        # the real matrices is the benchmark's to say)
        assert r["float32_value_error"] < 1e-3 and r["float32_gradient_error"] < 1e-1, r
        assert 0 <= r["value_error"] < 1, r
    # vmap and jit agree
    assert rows[0]["value_error"] == pytest.approx(rows[1]["value_error"], rel=1e-3, abs=1e-7)


def test_the_exact_trace_of_the_square_root():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 4))
    x = a @ a.T  # rank 4: two zero eigenvalues, rounded to either side of 0
    values = np.linalg.eigvalsh(x)
    assert case.exact_trace_sqrt(x) == pytest.approx(np.sum(np.sqrt(values[2:])), rel=1e-7)
    assert case.exact_trace_sqrt(np.diag([4.0, 9.0, 0.0]).astype(np.float32)) == 5.0


def fake_case(size, repeats):
    """What :func:`case.distances_case` returns, with made-up numbers."""
    losses = [{"label": label, "style_loss": name, "sqrtm": sqrtm, "compile_s": 2.0,
               "seconds": [t] * repeats, "s_per_evaluation": t, "ratio_to_gram": t / 0.5,
               "loss": 1e9, "finite": True}
              for label, name, sqrtm, t in (("gram", "gram", None, 0.5),
                                            ("mean-cov", "mean-cov", None, 0.6),
                                            ("mean-cov:newton-schulz", "mean-cov",
                                             "newton-schulz", 0.7))]
    sqrtm = [{"method": m, "mode": mode, "matrices": n, "channels": 512, "compile_s": 1.0,
              "seconds": [0.1], "s_per_call": 0.1 * n, "value_error": 2e-3,
              "float32_value_error": 3e-6, "float32_gradient_error": 2e-5, "finite": True}
             for m in distances.SQRTM_METHODS for mode, n in (("jit", 1), ("vmap", 4))]
    matrices = [{"layer": layer, "image": image, "positions": 672 if layer == "conv4_1" else 160,
                 "eps": 1.0, "eps_over_largest": 1e-7 if image == "content" else 4e-6}
                for layer in case.SQRT_LAYERS for image in ("content", "white noise")]
    return {"size": size, "shape": [size * 2 // 3, size], "repeats": repeats, "losses": losses,
            "matrices": matrices, "sqrtm": sqrtm, "load_average": [0.5, 0.5]}


def test_a_process_per_size_and_the_tables(monkeypatch):
    calls = []

    def fake_run(kind, timeout=None, **kwargs):
        calls.append((kind, kwargs))
        if kwargs["size"] == 512:
            return {**kwargs, "error": "killed by signal 9 (out of memory?)"}
        return fake_case(**kwargs)

    monkeypatch.setattr(worker, "run_in_subprocess", fake_run)
    results, saved = dict(MACHINE), []
    case.run(results, sizes=[256, 512], repeats=3, log=lambda m: None,
             save=lambda r: saved.append(len(r["distances"])))
    assert calls == [("distances", {"size": 256, "repeats": 3}),
                     ("distances", {"size": 512, "repeats": 3})]
    assert saved == [1, 2]
    table = "\n".join(case.markdown(results))
    assert "median of 3 rounds" in table
    assert "| 256 | gram | default | 0.500 | 1.00x | 2.0 | 1e+09 | yes |" in table
    assert "| 256 | mean-cov | newton-schulz | 0.700 | 1.40x | 2.0 | 1e+09 | yes |" in table
    assert "| 512 | failed: killed by signal 9 (out of memory?) | | | | | | |" in table
    assert "| 256 | eigh | vmap | 4 × 512 | 0.4000 | 1.00 | 2.0e-03 | 3.0e-06 | 2.0e-05 | yes |" in table
    assert ("256 px: conv4_1 672 positions, eps 1.0e-07 and 4.0e-06, conv5_1 160 positions, "
            "eps 1.0e-07 and 4.0e-06 of the largest eigenvalue (channels: 512;") in table
    # alone in a report: its table first, no speed table
    text = report.markdown(results, KINDS.values())
    assert text.startswith("Machine: a CPU") and "\n*The style distances" in text
    assert case.markdown({}) == []
    failed_only = case.markdown({"distances": [{"size": 64, "repeats": 1, "error": "boom"}]})
    assert failed_only[-1] == "| 64 | failed: boom | | | | | | |"
