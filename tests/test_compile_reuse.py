"""Start-up: the compiled programs do not depend on the images or the weights.

A long-running process that stylizes a second pair of the same size traces and
compiles nothing (counted traces); the kernels' ready-made backward form
(:func:`nst_jax.vgg.ready_kernels`) changes no value; and the command-line tools'
persistent compilation cache (:mod:`nst_jax.apps.common.compile_cache`) serves a repeated
run from disk.
"""
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import stylize, sweep, vgg
from nst_jax.apps.common import compile_cache
from nst_jax.config import Config
from tests.conftest import REPO, make_tiny_params, mappings

LAYERS = dict(content_layers=("conv4_2",), style_layers=("conv1_1", "conv2_1", "conv3_1"))


def _pair(seed, shape=(24, 32, 3)):
    rng = np.random.default_rng(seed)
    return rng.random(shape, dtype=np.float32), rng.random((28, 28, 3), dtype=np.float32)


def _counted(monkeypatch, name: str) -> list:
    """Calls of ``stylize.<name>`` from now on (one each time JAX traces a caller)."""
    calls = []
    real = getattr(stylize, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stylize, name, counted)
    return calls


@pytest.fixture
def count_traces(monkeypatch):
    """The number of times eq. 7 has been traced (each trace precedes a compilation)."""
    calls = _counted(monkeypatch, "total_loss")
    # Programs compiled by earlier tests would hide the first run's traces.
    caches = (stylize.untiled_loss, stylize.compiled_programs, sweep.grid_programs,
              stylize._features_program)
    for cache in caches:
        cache.cache_clear()
    yield calls
    for cache in caches:
        cache.cache_clear()


def _run(tiny_vgg, params, content, style, config):
    job = stylize.prepare(content, style, params, config, module=tiny_vgg)
    job.step(config.iterations)
    return np.asarray(job.result()), job.terms()[0]


def test_a_second_pair_of_the_same_size_compiles_nothing(tiny_vgg, tiny_params, count_traces):
    config = Config(iterations=3, **LAYERS)
    first, first_loss = _run(tiny_vgg, tiny_params, *_pair(0), config)
    traced = len(count_traces)
    assert traced > 0
    # Other images, other weights, other α: the same programs.
    second, second_loss = _run(tiny_vgg, make_tiny_params(seed=1), *_pair(1),
                               config.replace(alpha=3.0, seed=7))
    assert len(count_traces) == traced
    assert not np.array_equal(first, second) and first_loss != second_loss
    # A new size is a new program (the count is live).
    _run(tiny_vgg, tiny_params, *_pair(2, shape=(32, 32, 3)), config)
    assert len(count_traces) > traced


def test_a_run_traces_eq7_once_and_the_network_once_per_image_shape(tiny_vgg, tiny_params,
                                                                    count_traces, monkeypatch):
    """Tracing is most of a repeated run's start-up (its programs come from the compilation
    cache, but JAX traces them to find them): the optimiser's start and loop and the saved
    image's loss share one trace of eq. 7, and the loss shares the targets' trace of the
    network at the content's shape."""
    networks = _counted(monkeypatch, "make_features_fn")
    content, style = _pair(3)  # two shapes: (24, 32) and (28, 28)
    job = stylize.prepare(content, style, tiny_params, Config(iterations=3, **LAYERS),
                          module=tiny_vgg)
    job.step(3)
    job.saved(8)
    job.terms()
    assert len(count_traces) == 1
    assert len(networks) == 2


def test_a_second_grid_of_the_same_shape_compiles_nothing(tiny_vgg, tiny_params, count_traces):
    grid = sweep.Grid.product(Config(iterations=3, **LAYERS), ratio=[1e-3, 1e-1])

    def run(params, content, style):
        sweeper = sweep.Sweeper.for_grids(content, style, params, [grid], module=tiny_vgg)
        return [r.total for r in sweeper.run(grid)]

    first = run(tiny_params, *_pair(0))
    traced = len(count_traces)
    assert traced > 0
    second = run(make_tiny_params(seed=1), *_pair(1))  # other images and weights
    assert len(count_traces) == traced and first != second
    run(tiny_params, *_pair(2, shape=(32, 32, 3)))
    assert len(count_traces) > traced


def test_reused_programs_give_the_results_of_fresh_ones(tiny_vgg, tiny_params, count_traces):
    config = Config(iterations=4, **LAYERS)
    content, style = _pair(3)
    _run(tiny_vgg, tiny_params, *_pair(4), config)  # compiles, with other images
    reused, reused_loss = _run(tiny_vgg, tiny_params, content, style, config)
    stylize.untiled_loss.cache_clear()
    stylize.compiled_programs.cache_clear()
    fresh, fresh_loss = _run(tiny_vgg, tiny_params, content, style, config)
    np.testing.assert_array_equal(reused, fresh)
    assert reused_loss == fresh_loss


def test_the_loss_data_is_an_argument_and_its_default_the_same(tiny_vgg, tiny_params):
    content, style = _pair(5)
    loss = stylize.build_loss_fn(tiny_params, content, style, LAYERS["content_layers"],
                                 LAYERS["style_layers"], tiny_vgg)
    weights = stylize.loss_weights(Config(**LAYERS))
    x = jnp.asarray(stylize.white_noise(0, content.shape))
    as_constants = jax.jit(lambda x: loss(x, weights)[0])(x)
    as_argument = jax.jit(lambda x, data: loss.fn(x, weights, data)[0])(x, loss.data)
    np.testing.assert_allclose(as_argument, as_constants, rtol=1e-5)
    variables, _ = loss.data
    assert set(variables) == {"params", vgg.READY}


def test_ready_kernels_change_no_value_or_gradient(tiny_vgg, tiny_params):
    params = jax.tree_util.tree_map(np.asarray, tiny_params)
    ready = vgg.ready_kernels(params)
    layer = next(iter(params["params"]))
    kernel = params["params"][layer]["kernel"]
    np.testing.assert_array_equal(ready[vgg.READY][layer]["backward"],
                                  np.swapaxes(kernel[::-1, ::-1], 2, 3))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(20, 24, 3)), jnp.float32)
    layers = ("conv1_2", "conv3_1", "conv5_1")

    def scalar(variables, x):
        features = tiny_vgg.apply(variables, x, layers)
        return sum(jnp.sum(jnp.sin(f)) for f in features.values())

    plain = jax.value_and_grad(scalar, argnums=1)(params, x)
    with_ready = jax.value_and_grad(scalar, argnums=1)({**params, **ready}, x)
    np.testing.assert_allclose(with_ready[0], plain[0], rtol=1e-6)
    np.testing.assert_allclose(with_ready[1], plain[1], rtol=1e-5, atol=1e-6)


# --- the persistent compilation cache of the command-line tools -----------------------------

def test_cache_dir_follows_the_environment(tmp_path):
    assert compile_cache.cache_dir({compile_cache.ENV: str(tmp_path)}) == tmp_path
    for off in ("off", "", "0", "NONE"):
        assert compile_cache.cache_dir({compile_cache.ENV: off}) is None
    assert compile_cache.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "nst_jax" / "xla"
    assert compile_cache.cache_dir({}).parts[-3:] == (".cache", "nst_jax", "xla")


def test_enable_sets_jax_variables_and_respects_the_users(tmp_path):
    env = {compile_cache.ENV: str(tmp_path / "c")}
    assert compile_cache.enable(env) == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "c")
    assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == compile_cache.MIN_COMPILE_SECONDS
    assert int(env["JAX_COMPILATION_CACHE_MAX_SIZE"]) == compile_cache.MAX_BYTES
    users = {"JAX_COMPILATION_CACHE_DIR": "/elsewhere", compile_cache.ENV: str(tmp_path)}
    assert compile_cache.enable(users) == pathlib.Path("/elsewhere")
    assert users["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"
    off = {compile_cache.ENV: "off"}
    assert compile_cache.enable(off) is None and "JAX_COMPILATION_CACHE_DIR" not in off


def test_the_plain_install_has_what_the_cache_needs():
    """JAX keeps the cache's size cap only with ``filelock``, which JAX does not depend on:
    without it every entry failed with a warning and every run compiled anew. So the plain
    install (no extras) must bring it (the CI's plain-install run checks the effect)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower()
             for d in project["dependencies"]}
    assert "filelock" in names


def test_without_filelock_the_cache_runs_uncapped(tmp_path, monkeypatch):
    real = compile_cache.importlib.util.find_spec
    monkeypatch.setattr(compile_cache.importlib.util, "find_spec",
                        lambda name, *a: None if name == "filelock" else real(name, *a))
    env = {compile_cache.ENV: str(tmp_path / "c")}
    assert compile_cache.enable(env) == tmp_path / "c"
    assert "JAX_COMPILATION_CACHE_MAX_SIZE" not in env


def test_an_unusable_cache_folder_leaves_the_cache_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = {compile_cache.ENV: str(blocker / "cache")}
    assert compile_cache.enable(env) is None and "JAX_COMPILATION_CACHE_DIR" not in env


def _entries(folder: pathlib.Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith("-cache")}


def test_a_repeated_run_loads_every_program_from_the_cache(real_weights, image_files, tmp_path):
    content, style = image_files
    cache = tmp_path / "xla"
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", **{compile_cache.ENV: str(cache)})
    # Every program is cached: with the tools' 0.1 s threshold, a small one that compiled in
    # 0.09 s the first time and 0.11 s the second would be written only by the second run.
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    command = [sys.executable, str(REPO / "scripts" / "stylize.py"), "--content", str(content),
               "--style", str(style), "--size", "48", "--iterations", "2", "--quiet"]
    first = subprocess.run(command + ["--output", str(tmp_path / "a.png")], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "warn" not in first.stderr.lower(), first.stderr
    programs = _entries(cache)
    # The optimiser's start and loop, the loss's terms and the targets' forward pass.
    assert {name.split("-")[0] for name in programs} >= {"jit_start", "jit_run", "jit_fn"}
    # Other images of the same size: nothing new is compiled (an entry would be added).
    rng = np.random.default_rng(1)
    from PIL import Image

    other = tmp_path / "other.png"
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(other)
    second = subprocess.run(command[:3] + [str(other)] + command[4:]
                            + ["--output", str(tmp_path / "b.png")], env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "warn" not in second.stderr.lower(), second.stderr
    assert _entries(cache) == programs


def test_the_bench_compares_constants_and_arguments(real_weights):
    from nst_jax.apps.benchmark.cases import binding

    cases = [binding.binding_case(32, constants, iterations=2) for constants in (True, False)]
    for case, constants in zip(cases, (True, False)):
        assert case["constants"] is constants and case["evaluations"] >= 2
        assert case["compile_start_s"] > 0 and case["compile_run_s"] > 0
        assert case["s_per_evaluation_in_loop"] > 0
    table = "\n".join(binding.binding_markdown(cases))
    assert "| 32 | constants |" in table and "| 32 | arguments |" in table


def test_the_bench_times_a_first_and_a_repeated_start_up(real_weights, tmp_path):
    from nst_jax.apps.benchmark import worker
    from nst_jax.apps.benchmark.cases import startup

    cache = str(tmp_path / "xla")
    first = worker.run_in_subprocess("startup", timeout=600, size=32, cache=cache)
    repeated = worker.run_in_subprocess("startup", timeout=600, size=32, cache=cache)
    assert "error" not in first and "error" not in repeated, (first, repeated)
    assert not first["cached"] and repeated["cached"]
    assert list(first["stages"]) == ["imports", "images", "weights", "targets", "start",
                                     "first iteration"]
    assert first["total_s"] == pytest.approx(sum(first["stages"].values()))
    table = "\n".join(startup.startup_markdown([first, repeated]))
    assert "| 32 | first |" in table and "| 32 | repeated |" in table


# --- the suite's bound on memory mappings (tests/conftest.py) ---------------------------------

@pytest.mark.skipif(mappings() is None, reason="no /proc/self/maps: not Linux")
def test_clearing_jax_caches_frees_the_mappings_of_compiled_programs():
    # conftest clears JAX's caches between modules once the process nears vm.max_map_count:
    # that only helps if the compiled programs' machine code is unmapped with them.
    before = mappings()
    programs = [jax.jit(lambda x, k=k: jnp.sin(x) * k + jnp.cos(x @ x.T).sum()) for k in range(100)]
    for program in programs:
        program(jnp.ones((8, 8))).block_until_ready()
    compiled = mappings()
    assert compiled - before >= 200  # a few mappings per program
    jax.clear_caches()
    assert mappings() - before < (compiled - before) / 4
