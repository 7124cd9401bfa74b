"""Shared fixtures. JAX configuration is set here once, before any test imports JAX."""
from __future__ import annotations

import os
import pathlib
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The command-line tools' compilation cache (nst_jax.apps.common.compile_cache): the tests' own,
# shared by their subprocesses, never the user's ~/.cache.
os.environ.setdefault("NST_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="nst_jax-tests-xla-"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nst_jax.vgg import VGG, layer_names  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
# A VGG with VGG19's layout and a few channels: the logic of the real one at a fraction of the cost.
TINY_BLOCKS = ((4, 4), (8, 8), (8, 8, 8, 8), (8, 8, 8, 8), (8, 8, 8, 8))


@pytest.fixture(scope="session")
def tiny_vgg() -> VGG:
    return VGG(blocks=TINY_BLOCKS, pooling="avg")


def make_tiny_params(seed: int = 0) -> dict:
    """Random tiny-VGG weights, scaled (He) so activations stay O(1) through 16 layers."""
    params = VGG(blocks=TINY_BLOCKS).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)),
                                          layer_names(TINY_BLOCKS))
    rng = np.random.default_rng(seed)
    out = {}
    for name, layer in params["params"].items():
        fan_in = np.prod(layer["kernel"].shape[:3])
        out[name] = {
            "kernel": jnp.asarray(rng.normal(0, np.sqrt(2.0 / fan_in), layer["kernel"].shape), jnp.float32),
            "bias": jnp.asarray(rng.uniform(0.0, 0.1, layer["bias"].shape), jnp.float32),
        }
    return {"params": out}


@pytest.fixture(scope="session")
def tiny_params():
    return make_tiny_params()


@pytest.fixture
def image_files(tmp_path):
    """(content.png 48x40, style.jpg 36x36) of random pixels, for the command-line tests."""
    from PIL import Image

    rng = np.random.default_rng(0)
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(content)
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(style)
    return content, style


def _real_weights_path() -> pathlib.Path | None:
    from nst_jax.weights import default_weights_path

    path = default_weights_path()
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def real_weights():
    """(params, preprocessing) of the real VGG19, converted by scripts/fetch_weights.py.

    Skipped with a reason when absent; CI sets NST_JAX_REQUIRE_WEIGHTS=1 so that a
    missing file fails there instead of silently skipping the tests that need it.
    """
    path = _real_weights_path()
    if path is None:
        message = "real VGG19 weights not converted: run `python scripts/fetch_weights.py`"
        if os.environ.get("NST_JAX_REQUIRE_WEIGHTS") == "1":
            pytest.fail(message + " (NST_JAX_REQUIRE_WEIGHTS=1)")
        pytest.skip(message)
    from nst_jax.weights import load_params

    return load_params(path)
