"""The PyTorch baseline (nst_jax.apps.benchmark.torch_baseline) against nst_jax: the same activations,
losses and gradients (tiny VGG and real VGG19, both poolings), a working L-BFGS
run, and torch staying an optional extra.

Tests that need torch take the ``torch`` fixture (skipped without it); the
import-isolation tests run without torch.
"""
import math
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from nst_jax import images, optimize, stylize
from nst_jax.config import example_path
from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE, VGG, VGG19_BLOCKS, layer_names
from tests.conftest import TINY_BLOCKS

REPO = pathlib.Path(__file__).resolve().parent.parent
# float32 on both sides, same algorithm: measured differences are at most ~1e-6 relative
# (activations, losses, gradient); the tolerances leave two orders of magnitude.
FEATURES_RTOL = 1e-4  # of the layer's largest activation
LOSS_RTOL = 1e-4
GRAD_RTOL = 1e-3  # ||g_torch - g_jax|| / ||g_jax||


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tb(torch):
    from nst_jax.apps.benchmark import torch_baseline

    return torch_baseline


def check_parity(tb, torch, params, blocks, content, style, pixels, config, preprocessing):
    """Every layer's activations of ``pixels``, each loss term and the gradient of the
    total loss w.r.t. the pixels agree between nst_jax and the torch baseline."""
    found = tb.parity(params, content, style, config, preprocessing, blocks, pixels)
    assert set(found["features"]) == set(layer_names(blocks))
    for name, err in found["features"].items():
        assert err < FEATURES_RTOL, f"{name}: max error {err:.2e} of the largest activation"
    for what, err in found["losses"].items():
        assert err < LOSS_RTOL, f"{what} loss: relative error {err:.2e}"
    # A zero term would make its comparison vacuous (and its error NaN, failing above).
    assert all(v > 0 for v in found["jax_losses"])
    assert found["gradient"] < GRAD_RTOL, f"gradient: relative error {found['gradient']:.2e}"


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_tiny_vgg_parity(tb, torch, tiny_params, pooling):
    rng = np.random.default_rng(0)
    # Odd sizes: each pooling drops a row or column ('VALID'), down to 1x1 in block 5.
    content = rng.random((30, 26, 3)).astype(np.float32)
    style = rng.random((24, 28, 3)).astype(np.float32)
    pixels = np.clip(content + 0.2 * rng.normal(size=content.shape), 0, 1).astype(np.float32)
    # Two content layers, unequal layer weights, TV on: every weight of eq. 7 is used.
    config = stylize.Config(content_layers=("conv2_2", "conv4_2"), content_layer_weights=(0.5, 1.0),
                            style_layer_weights=(0.1, 0.3, 0.2, 0.25, 0.15), alpha=2.0, beta=1e3,
                            tv_weight=0.5, pooling=pooling)
    check_parity(tb, torch, tiny_params, TINY_BLOCKS, content, style, pixels, config, CAFFE)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_real_vgg19_parity(tb, torch, real_weights, pooling):
    params, preprocessing = real_weights
    content = images.load_image(example_path("chelsea.jpg"), max_side=48)
    style = images.load_image(example_path("starry_night.jpg"), max_side=48)
    rng = np.random.default_rng(1)
    pixels = np.clip(content + 0.1 * rng.normal(size=content.shape), 0, 1).astype(np.float32)
    check_parity(tb, torch, params, VGG19_BLOCKS, content, style, pixels,
                 stylize.Config(pooling=pooling), preprocessing)


def test_lbfgs_spends_its_budget_and_converges_like_nst_jax(tb, torch, tiny_params):
    rng = np.random.default_rng(2)
    content = rng.random((32, 32, 3)).astype(np.float32)
    style = rng.random((32, 32, 3)).astype(np.float32)
    # The paper's layers and weights, faint white noise start; unconstrained pixels, as
    # torch.optim.LBFGS's, so both minimise the same problem.
    config = stylize.Config(bounds="none")
    settings = stylize.optimizer_settings(config)
    x0 = np.asarray(stylize.white_noise(config.seed, content.shape, config.noise_amplitude))
    budget = 30

    loss = tb.make_loss(tiny_params, content, style, config, CAFFE, TINY_BLOCKS)
    result = tb.run_lbfgs(loss, x0, budget, memory_size=settings.memory_size)
    assert result.evaluations == len(result.values) == budget
    assert 1 <= result.iterations < budget and not result.nonfinite
    assert np.all(np.isfinite(result.values))
    assert result.best_value == result.values.min() == result.best_within(budget)
    assert result.best_within(1) == result.values[0]
    # The kept pixels are the ones that scored best_value.
    again = float(loss(torch.tensor(result.best_pixels))[0])
    assert again == pytest.approx(result.best_value, rel=1e-5)
    first = result.values[0]
    assert result.values[-1] < 0.5 * first
    torch_best = result.best_within(budget) / first

    # nst_jax's L-BFGS (optax, zoom line search) on the same problem and budget.
    loss_fn = stylize.build_loss_fn(tiny_params, content, style, config.content_layers,
                                    config.style_layers, VGG(blocks=TINY_BLOCKS), CAFFE)
    weights = stylize.loss_weights(config)
    state = jax.jit(lambda x: optimize.minimize(lambda p: loss_fn(p, weights), x, budget,
                                                settings))(x0)
    # Both start from the same loss value.
    assert float(loss_fn(x0, weights)[0]) == pytest.approx(first, rel=LOSS_RTOL)
    within = np.asarray(state.trace.evaluations) <= budget
    assert within.any()
    jax_best = float(np.asarray(state.trace.value)[within].min()) / first
    # Measured: torch 1.1e-4, jax 7.5e-5 of the first loss. Both must cut the loss
    # by more than 100x, and neither may be more than 20x behind the other.
    assert torch_best < 1e-2 and jax_best < 1e-2, (torch_best, jax_best)
    assert abs(math.log(torch_best / jax_best)) < math.log(20), (torch_best, jax_best)


def rosenbrock(x):
    """A valley that L-BFGS does not solve exactly in a few steps (so it never stops early)."""
    u, v = x[..., 0], x[..., 1]
    return ((1 - u) ** 2 + 100 * (v - u**2) ** 2).sum()


@pytest.mark.parametrize("budget", [1, 2, 7, 25])
def test_lbfgs_makes_exactly_the_evaluations_asked(tb, torch, budget):
    result = tb.run_lbfgs(rosenbrock, -np.ones((2, 3, 2), np.float32), budget, threads=1)
    assert result.evaluations == len(result.values) == budget
    assert result.best_value == result.values.min() < (result.values[0] if budget > 1 else math.inf)
    assert result.iterations <= budget - 1
    assert result.seconds > 0


def test_lbfgs_stops_cleanly_on_a_nonfinite_loss(tb, torch):
    def cliff(x):  # a quadratic towards 3 that becomes infinite past 2
        value = ((x - 3) ** 2).sum()
        return value if bool((x < 2).all()) else value * math.inf

    result = tb.run_lbfgs(cliff, np.zeros((2, 2, 3), np.float32), 50)
    assert result.nonfinite
    assert result.evaluations == len(result.values) < 50
    assert not np.isfinite(result.values[-1]) and np.all(np.isfinite(result.values[:-1]))
    assert math.isfinite(result.best_value) and result.best_value == result.values[:-1].min()
    assert np.all(result.best_pixels < 2)
    assert result.best_value < result.values[0]


def test_lbfgs_refuses_an_empty_budget(tb):
    with pytest.raises(NSTError, match="max_evaluations"):
        tb.run_lbfgs(rosenbrock, np.zeros((1, 1, 2), np.float32), 0)


def test_missing_torch_is_a_one_line_nst_error(monkeypatch):
    from nst_jax.apps.benchmark import torch_baseline

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(NSTError, match=r"pip install -e '\.\[bench\]'"):
        torch_baseline.require_torch()


def test_torch_stays_optional():
    """Importing every nst_jax module (the applications' too) imports no torch; only the
    baseline and the benchmark's modules (which import the baseline inside their
    functions) name it."""
    code = ("import importlib, pkgutil, sys, nst_jax\n"
            "for m in pkgutil.walk_packages(nst_jax.__path__, 'nst_jax.'):\n"
            "    importlib.import_module(m.name)\n"
            "assert 'nst_jax.apps.benchmark.torch_baseline' in sys.modules\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    benchmark = REPO / "nst_jax" / "apps" / "benchmark"
    for path in (REPO / "nst_jax").rglob("*.py"):
        if not path.is_relative_to(benchmark):
            name = path.relative_to(REPO)
            text = path.read_text()
            assert "torch_baseline" not in text, f"{name} uses the torch baseline"
            assert "import torch" not in text and "from torch" not in text, name
