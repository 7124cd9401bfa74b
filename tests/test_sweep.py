"""Sweeps: a grid of style transfers is one compiled vmap, equal to the runs done alone."""
import json

import numpy as np
import pytest

from nst_jax import stylize, sweep
from nst_jax.errors import NSTError
from nst_jax.stop import Stop
from nst_jax.stylize import Config
from tests import workers
from tests.sweep_worker import grid as worker_grid
from tests.sweep_worker import pictures as worker_pictures

# A grid point vs. the same configuration alone: float32 sums in another order (batched
# convolutions), carried through the L-BFGS iterations (up to 8e-5 seen after 8 projected
# iterations). Same-batch comparisons use 1e-5.
RTOL_ALONE = 2e-4
# The losses of the saved 8-bit images: where the float pixels differ by 1e-5, a few
# roundings flip by 1/255, which moves the loss by up to a few 1e-4.
RTOL_SAVED = 1e-3


@pytest.fixture(scope="module")
def pictures():
    return worker_pictures()


def count_traces(monkeypatch) -> dict:
    """Count the traces of the optimiser's start and loop (Python runs once per trace)."""
    from nst_jax import optimize

    counts = {"init": 0, "run": 0}
    for name in counts:
        real = getattr(optimize, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(optimize, name, counted)
    return counts


def run_alone(config, content, style, params, module):
    """The run alone, and what it would save: the 8-bit image (as floats) and its loss."""
    job = stylize.prepare(content, style, params, config, module=module)
    job.step(config.iterations)
    image, total, _ = job.saved()
    return job, image.astype(np.float32) / 255.0, total


def test_product_grid_points_and_labels():
    grid = sweep.Grid.product(Config(iterations=5), ratio=[1e-4, 1e-2],
                              content_layers=["conv2_2", ("conv4_2",)], seed=[0, 1, 2])
    assert grid.shape == (2, 2, 3) and len(grid) == 12
    assert grid.labels(7) == {"ratio": 1e-2, "content_layers": "conv2_2", "seed": 1}
    seventh = grid.configs[7]
    assert (seventh.alpha, seventh.beta, seventh.content_layers, seventh.seed) == (1e-2, 1.0, ("conv2_2",), 1)
    assert grid.content_layers == ("conv2_2", "conv4_2")
    points = grid.points()
    content_w = points.weights.content_layer_weights
    assert sorted(content_w) == ["conv2_2", "conv4_2"] and content_w["conv2_2"].shape == (12,)
    # Which content layer is an array: the unused one has weight 0.
    assert (content_w["conv2_2"][7], content_w["conv4_2"][7]) == (1.0, 0.0)
    assert (content_w["conv2_2"][10], content_w["conv4_2"][10]) == (0.0, 1.0)
    np.testing.assert_allclose([w[0] for w in points.weights.style_layer_weights.values()], [0.2] * 5)
    np.testing.assert_array_equal(points.seed, [0, 1, 2] * 4)
    assert points.seed.dtype == np.uint32
    np.testing.assert_array_equal(points.init, [sweep.INIT_CODES["noise"]] * 12)


def test_style_layer_sets_spread_over_the_union():
    grid = sweep.Grid.product(Config(alpha=0.0), style_layers=[("conv1_1",), ("conv1_1", "conv2_1")])
    assert grid.style_layers == ("conv1_1", "conv2_1")
    weights = grid.points().weights.style_layer_weights
    np.testing.assert_allclose(weights["conv1_1"], [1, 0.5])
    np.testing.assert_allclose(weights["conv2_1"], [0, 0.5])


def test_seeds_of_the_whole_documented_range_are_swept():
    """Defect: --seeds 3000000000 crashed (int32). Seeds are 0 ... 2**32 - 1 everywhere."""
    grid = sweep.Grid.product(Config(), seed=[0, 3_000_000_000, 2**32 - 1])
    np.testing.assert_array_equal(grid.points().seed, [0, 3_000_000_000, 2**32 - 1])
    for bad in (-1, 2**32, 99999999999999999999):
        with pytest.raises(NSTError, match="seed must be a whole number from 0 to 4294967295"):
            sweep.Grid.product(Config(), seed=[0, bad])


@pytest.mark.parametrize("axes, match", [
    ({"pooling": ["avg", "max"]}, "cannot sweep 'pooling' .it fixes the compiled program"),
    ({"gamma": [1]}, "cannot sweep 'gamma'"),
    ({"seed": []}, "has no values"),
    ({"init": ["image.png"]}, "init of a sweep must be one of noise, content, style"),
    ({"content_layers": ["conv9_9"]}, "conv9_9"),
])
def test_grid_errors(axes, match):
    with pytest.raises(NSTError, match=match):
        sweep.Grid.product(Config(), **axes)


def test_points_must_share_the_program():
    with pytest.raises(NSTError, match="must share iterations"):
        sweep.Grid((Config(iterations=3), Config(iterations=4)))


def test_chunks_pad_to_one_shape():
    assert sweep.chunks(5, 2, 1) == [[0, 1], [2, 3], [4, 4]]
    assert sweep.chunks(5, 3, 2) == [[0, 1, 2, 3], [4, 4, 4, 4]]  # rounded up to the devices
    assert sweep.chunks(3, 100, 1) == [[0, 1, 2]]


def test_grid_equals_each_configuration_run_alone_and_compiles_once(
        tiny_vgg, tiny_params, pictures, monkeypatch):
    content, style = pictures
    base = Config(iterations=8, tv_weight=0.0)
    grid = sweep.Grid.product(base, ratio=[1e-3, 1e-1], content_layers=["conv2_2", "conv4_2"],
                              init=["noise", "style"], tv_weight=[0.0, 1.0])
    traces = count_traces(monkeypatch)
    chunked = []
    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, batch_size=5,
                             on_chunk=chunked.append)
    # One trace of the start and one of the loop for all 4 chunks (16 points).
    assert traces == {"init": 1, "run": 1}
    assert [len(c) for c in chunked] == [5, 5, 5, 1]
    assert [r.index for r in results] == list(range(16))
    for r in results[::5]:  # every axis value among them
        job, image, total = run_alone(r.config, content, style, tiny_params, tiny_vgg)
        # 8-bit images: a rounding may flip where the float pixels differ by 1e-5
        assert np.mean(np.abs(r.image - image) > 1e-6) < 0.01, r.labels
        np.testing.assert_allclose(r.image, image, atol=1.01 / 255, err_msg=str(r.labels))
        np.testing.assert_allclose(r.total, total, rtol=RTOL_SAVED, err_msg=str(r.labels))
        np.testing.assert_allclose(r.trace, job.state.trace.value, rtol=RTOL_ALONE,
                                   err_msg=str(r.labels))
        assert r.status == "completed" and r.iterations == 8
    # The swept values matter: different ratios give different images.
    assert np.abs(results[0].image - results[8].image).max() > 1e-3


def test_sweeper_reuses_its_compilation_for_new_values(tiny_vgg, tiny_params, pictures, monkeypatch):
    content, style = pictures
    grid = sweep.Grid.product(Config(iterations=3), ratio=[1e-3, 1e-2], seed=[0, 1])
    other = sweep.Grid.product(Config(iterations=3), ratio=[5.0, 7.0], seed=[4, 5])
    sweeper = sweep.Sweeper(content, style, tiny_params, content_layers=grid.content_layers,
                            style_layers=grid.style_layers, iterations=3, module=tiny_vgg)
    traces = count_traces(monkeypatch)
    finals = []
    for g in (grid, other):
        points = sweeper.place(g.points())
        finals.append(sweeper.advance(sweeper.start(points), 3, points).best_value)
    assert traces == {"init": 1, "run": 1}  # traced once for both grids
    assert not np.allclose(finals[0], finals[1])


def test_each_point_stops_on_its_own(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    # A tolerance that the points meet at different iterations (or never), with a margin:
    # the relative changes stay >= 0.043 before, and <= 0.030 at, the stop, and the first
    # point's stay >= 0.053 up to its last iteration (a float32 reordering cannot flip them).
    base = Config(iterations=27, tolerance=0.035)
    grid = sweep.Grid.product(base, ratio=[1e-3, 1.0, 100.0])
    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg)
    assert [(r.status, r.iterations) for r in results] == [
        ("completed", 27), ("converged", 17), ("converged", 25)]
    for r in results:
        job, image, total = run_alone(r.config, content, style, tiny_params, tiny_vgg)
        assert int(job.state.iteration) == r.iterations and job.done
        # Over 20+ projected iterations the two paths drift apart by up to 0.3%: compare
        # where they are still the same run.
        np.testing.assert_allclose(r.trace[:8], job.state.trace.value[:8], rtol=RTOL_ALONE)


def test_a_nonfinite_point_stops_alone(tiny_vgg, tiny_params, pictures, monkeypatch):
    from nst_jax import config

    content, style = pictures
    # beta near float32's max (beyond the weights Config takes, so the bound is lifted):
    # the style term overflows to inf for that point only.
    monkeypatch.setattr(config, "MAX_WEIGHT", float("inf"))
    grid = sweep.Grid.product(Config(iterations=4, alpha=1.0), beta=[1.0, 3e38])
    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg)
    assert [r.status for r in results] == ["completed", "nonfinite"]
    assert results[1].iterations <= 1 and np.all(np.isfinite(results[1].image))


def test_interrupt_hands_over_finished_and_current_chunks(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    grid = sweep.Grid.product(Config(iterations=6), seed=[0, 1, 2, 3])
    chunked = []
    token = Stop()

    def stop_in_second_chunk(progress):
        if progress.chunk == 1:
            token.set()

    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, batch_size=2,
                             steps_per_call=3, on_chunk=chunked.append,
                             on_progress=stop_in_second_chunk, stop=token)
    assert [[r.status for r in c] for c in chunked] == [["completed"] * 2, ["interrupted"] * 2]
    assert results == chunked[0] + chunked[1]  # the run ends there
    assert [r.iterations for r in chunked[1]] == [3, 3]


def test_a_stop_between_chunks_starts_no_other(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    grid = sweep.Grid.product(Config(iterations=3), seed=[0, 1, 2, 3])
    token, chunked = Stop(), []

    def first_chunk_then_stop(results):
        chunked.append(results)
        token.set()

    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, batch_size=2,
                             on_chunk=first_chunk_then_stop, stop=token)
    assert len(chunked) == 1 and results == chunked[0]
    assert [r.status for r in results] == ["completed"] * 2


def test_all_backends_run_under_the_sweep(tiny_vgg, tiny_params, pictures):
    content, style = pictures
    for method in ("lbfgs-jaxopt", "adam"):
        grid = sweep.Grid.product(Config(iterations=4, optimizer=method),
                                  ratio=[1e-3, 1e-1])
        r = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg)[1]
        job, image, total = run_alone(r.config, content, style, tiny_params, tiny_vgg)
        np.testing.assert_allclose(r.total, total, rtol=RTOL_SAVED, err_msg=method)
        np.testing.assert_allclose(r.trace, job.state.trace.value, rtol=RTOL_ALONE, err_msg=method)


def _worker(*args, env_extra=None):
    return workers.spawn("tests.sweep_worker", *args, env_extra=env_extra)


def test_sharded_over_four_devices_equals_one_device(tmp_path):
    out = tmp_path / "w.npz"
    workers.finish(_worker(out, "--devices", 1, "--devices", 4,
                    env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    data = np.load(out)
    np.testing.assert_allclose(data["images_4"], data["images_1"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["total_4"], data["total_1"], rtol=1e-5)
    shards = json.loads(str(data["shards_4"]))
    # Each of the 4 devices holds its own quarter of the 8-point grid, and nothing else.
    assert sorted(s["device"] for s in shards) == [0, 1, 2, 3]
    assert sorted(tuple(s["rows"]) for s in shards) == [(0, 2), (2, 4), (4, 6), (6, 8)]
    assert all(s["equal"] for s in shards)


def test_two_processes_run_one_sharded_sweep(tmp_path, tiny_vgg, tiny_params):
    out = tmp_path / "w.npz"
    address = workers.local_address()
    processes = [_worker(out, "--devices", 4, "--coordinator", address, "--num-processes", 2,
                       "--process-id", i,
                       env_extra={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
               for i in (0, 1)]
    for process in processes:
        workers.finish(process)
    data, other = np.load(out), np.load(f"{out}.1.npz")
    assert int(data["process_count"]) == 2
    # Each process holds the two quarters on its own two devices.
    for d, process in ((data, 0), (other, 1)):
        shards = json.loads(str(d["shards_4"]))
        assert len(shards) == 2 and all(s["process"] == process and s["equal"] for s in shards)
    rows = sorted(tuple(s["rows"]) for d in (data, other) for s in json.loads(str(d["shards_4"])))
    assert rows == [(0, 2), (2, 4), (4, 6), (6, 8)]
    # And the gathered result is the single-process one.
    content, style = worker_pictures()
    results = sweep.run_grid(content, style, tiny_params, worker_grid(), module=tiny_vgg)
    np.testing.assert_allclose(data["images_4"], np.stack([r.image for r in results]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data["total_4"], [r.total for r in results], rtol=1e-5)


def test_progress_counts_the_points_that_have_finished(tiny_vgg, tiny_params, pictures):
    """Defect: the last progress line of a chunk read "iteration 3/3, 0/2 points done"."""
    content, style = pictures
    grid = sweep.Grid.product(Config(iterations=3), seed=[0, 1, 2])
    seen = []
    sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, batch_size=2,
                   steps_per_call=3, on_progress=seen.append)
    assert [(p.chunk, p.iteration, p.points_done) for p in seen] == [(0, 3, 2), (1, 3, 3)]
    assert seen[-1].points_done == seen[-1].num_points == 3


def _memory_for(points_per_call: float, grid, shape, module) -> float:
    """Bytes of memory in which the sweep's memory model fits ``points_per_call`` points."""
    from nst_jax import memory
    from nst_jax.vgg import layer_names

    channels = dict(zip(layer_names(module.blocks), (c for b in module.blocks for c in b)))
    each = memory.point_bytes(shape, grid.settings.memory_size,
                              [channels[l] for l in grid.style_layers])
    return (memory.BASE_BYTES + points_per_call * each) / memory.AUTO_SHARE


def test_the_batch_is_what_fits_in_memory():
    """Defect: 10,000 points at 32 px ran as one call by default, asked for 36 GB and died.
    The batch (points per compiled call) comes from --tile-size auto's memory model."""
    from nst_jax.vgg import VGG19

    grid = sweep.Grid.product(Config(size=32), ratio=[1e-3] * 100, seed=list(range(100)))
    shape, module = (21, 32), VGG19()
    fits = lambda points: sweep.fitting_batch_size(  # noqa: E731
        grid, shape, module, memory=_memory_for(points, grid, shape, module))
    assert fits(20_000) == 10_000  # the whole grid fits: one call
    assert fits(1000.5) == 1000  # 10 calls of 1000
    assert fits(3000) == 2500  # 4 calls, as even as they go (not 3000, 3000, 3000, 1000)
    assert fits(0.5) == 1  # one point fits the machine, if not the planned share: as a run
    with pytest.raises(NSTError, match=r"one point of this sweep at 32x21 px needs about "
                                       r"[0-9.]+ GB .* more than the 0.1 GB of memory here"):
        sweep.fitting_batch_size(grid, shape, module, memory=1e8)


def test_a_grid_larger_than_memory_runs_in_chunks_equal_to_one_call(tiny_vgg, tiny_params,
                                                                    pictures):
    content, style = pictures
    grid = worker_grid()  # 8 points
    memory = _memory_for(2.5, grid, content.shape[:2], tiny_vgg)
    chunked = []
    results = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, memory=memory,
                             on_chunk=chunked.append)
    assert [len(c) for c in chunked] == [2, 2, 2, 2]
    whole = sweep.run_grid(content, style, tiny_params, grid, module=tiny_vgg, batch_size=8)
    assert [r.index for r in results] == [r.index for r in whole] == list(range(8))
    for r, w in zip(results, whole):
        # Another batch size rounds the batched convolutions differently (see RTOL_ALONE).
        np.testing.assert_allclose(r.image, w.image, atol=1.01 / 255, err_msg=str(r.labels))
        np.testing.assert_allclose(r.total, w.total, rtol=RTOL_SAVED, err_msg=str(r.labels))
        np.testing.assert_allclose(r.trace, w.trace, rtol=RTOL_ALONE, err_msg=str(r.labels))


def test_blend_weights_near_float64_max_sweep_as_equal_weights():
    """Defect: --style-blend-weights "1e308,1e308" overflowed when normalised: no style."""
    base = Config(style=("a.jpg", "b.jpg"))
    grid = sweep.Grid.product(base, style_blend_weights=[(1e308, 1e308), (1.0, 1.0)])
    mix = grid.points().weights.style_mix
    np.testing.assert_array_equal(mix[0], mix[1])
    np.testing.assert_array_equal(mix[0], [[0.5, 0.5]])
