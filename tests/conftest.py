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


# --- the process's memory mappings ----------------------------------------------------------
# Every program XLA:CPU compiles is loaded as machine code in a few memory mappings of its
# own (about 6 for a small program, hundreds for a VGG), held while JAX's caches hold the
# program. The suite compiles thousands of programs in one process, and Linux allows a
# process vm.max_map_count mappings (65530 by default): past it, the next compilation's mmap
# fails and XLA crashes the process (a segfault, or an abort with no message). Measured on
# the whole suite: 64,250 mappings at tests/test_video.py, where it crashed. So once the
# mappings pass half the limit, JAX's caches are cleared between tests (the programs of the
# tests still to come compile again; measured: clearing 300 programs freed their mappings).
def mappings() -> int | None:
    """How many memory mappings this process has (None where /proc/self/maps is not)."""
    try:
        with open("/proc/self/maps", "rb") as maps:
            return sum(1 for _ in maps)
    except OSError:  # not Linux
        return None


def _mapping_limit() -> int:
    try:
        return int(pathlib.Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return 65530


MAPPINGS_CLEARED_AT = _mapping_limit() // 2


@pytest.fixture(autouse=True, scope="module")
def _bounded_mappings():
    yield
    count = mappings()
    if count is not None and count > MAPPINGS_CLEARED_AT:
        jax.clear_caches()
