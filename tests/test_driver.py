"""The run driver (nst_jax.driver): scales x chunks, the global step, hooks at fixed points,
the stop token, resuming; and that it is the only loop that advances an optimisation."""
import ast
import signal
import types

import numpy as np
import pytest

from nst_jax import coarse_to_fine as c2f, driver, stylize
from nst_jax.config import Config
from nst_jax.stop import INTERRUPTED, Stop, ctrl_c_sets
from nst_jax.vgg import CAFFE
from tests.conftest import REPO


class FakeJob:
    """What the driver needs of a Stylization: step, done, iteration, state flags."""

    def __init__(self, iterations, nonfinite_at=None):
        self.iterations, self.nonfinite_at, self.steps = iterations, nonfinite_at, []
        self.state = types.SimpleNamespace(iteration=0, nonfinite=False, converged=False)

    @property
    def iteration(self):
        return self.state.iteration

    @property
    def done(self):
        return self.state.nonfinite or self.state.iteration >= self.iterations

    def step(self, n):
        self.steps.append(n)
        self.state.iteration = min(self.state.iteration + n, self.iterations)
        if self.nonfinite_at is not None and self.state.iteration >= self.nonfinite_at:
            self.state.nonfinite = True


@pytest.fixture
def ladder(monkeypatch):
    """Three scales of fake jobs (8, 8 and 5 iterations); ``prepared`` lists the scales
    prepared, ``jobs`` the jobs."""
    config = Config(size=64, start_size=32, iterations=5, coarse_iterations=8)
    scales = c2f.plan(config)
    prepared, jobs = [], {}

    def stylizations(config, network, first=0, inputs=None):
        for scale in scales[first:]:
            prepared.append(scale.index)
            jobs[scale.index] = FakeJob(scale.config.iterations)
            yield scale, jobs[scale.index]

    monkeypatch.setattr(c2f, "stylizations", stylizations)
    return types.SimpleNamespace(config=config, scales=scales, prepared=prepared, jobs=jobs)


def test_every_scale_runs_in_chunks_with_the_global_step(ladder):
    events = []
    hooks = [driver.Hook(when, lambda at, name=name: events.append(
        (name, at.scale.index, at.iteration, at.step, at.total)))
        for name, when in (("start", driver.SCALE_START), ("chunk", driver.EVERY_CHUNK),
                           ("end", driver.SCALE_END), ("run", driver.RUN_END))]
    outcome = driver.run(ladder.config, None, chunk=4, hooks=hooks)
    chunks = [(s, i, step) for name, s, i, step, total in events if name == "chunk"]
    assert chunks == [(0, 4, 4), (0, 8, 8), (1, 4, 12), (1, 8, 16), (2, 4, 20), (2, 5, 21)]
    assert [e[:2] for e in events if e[0] != "chunk"] == [
        ("start", 0), ("end", 0), ("start", 1), ("end", 1), ("start", 2), ("end", 2), ("run", 2)]
    assert {e[4] for e in events} == {21}
    assert outcome.status == "completed" and outcome.step == 21 and outcome.scale.last


def test_every_n_cuts_chunks_and_fires_on_its_multiples_but_not_at_a_scales_end(ladder):
    seen = []
    hooks = [driver.Hook(driver.EveryN(3), lambda at: seen.append((at.scale.index, at.iteration)))]
    driver.run(ladder.config, None, chunk=10, hooks=hooks)
    # chunks end on multiples of 3; the job itself stops at its last iteration
    assert ladder.jobs[0].steps == [3, 3, 3] and ladder.jobs[2].steps == [3, 3]
    assert seen == [(0, 3), (0, 6), (1, 3), (1, 6), (2, 3)]
    assert not driver.EveryN(0).fires(driver.At("chunk", ladder.scales[0], FakeJob(1), 0, 1))
    assert driver.EveryN(0).boundary(5) is None and driver.EveryN(4).boundary(8) == 12


def test_iterating_yields_every_chunk_and_leaves_the_outcome(ladder):
    run = driver.Run(ladder.config, None, chunk=8)
    steps = [at.step for at in run]
    assert steps == [8, 16, 21] and run.outcome.step == 21 and run.total == 21


def test_the_stop_token_ends_the_run_after_the_chunk_and_compiles_nothing_more(ladder):
    token = Stop()
    hooks = [driver.Hook(driver.EVERY_CHUNK, lambda at: at.step >= 12 and token.set("stopped"))]
    outcome = driver.run(ladder.config, None, chunk=4, hooks=hooks, stop=token)
    assert (outcome.scale.index, outcome.job.iteration, outcome.step) == (1, 4, 12)
    assert outcome.status == "stopped" and ladder.prepared == [0, 1]


def test_a_stop_at_a_scales_end_does_not_prepare_the_next(ladder):
    token = Stop()
    hooks = [driver.Hook(driver.SCALE_END, lambda at: token.set(INTERRUPTED))]
    outcome = driver.run(ladder.config, None, chunk=8, hooks=hooks, stop=token)
    assert ladder.prepared == [0] and outcome.status == "interrupted" and outcome.step == 8


def test_a_nonfinite_loss_ends_the_run_at_its_scale(ladder, monkeypatch):
    def stylizations(config, network, first=0, inputs=None):
        for scale in ladder.scales:
            ladder.prepared.append(scale.index)
            yield scale, FakeJob(scale.config.iterations, nonfinite_at=3 if scale.index else None)

    monkeypatch.setattr(c2f, "stylizations", stylizations)
    ended = []
    outcome = driver.run(ladder.config, None, chunk=2, hooks=[
        driver.Hook(driver.SCALE_END, lambda at: ended.append(at.scale.index))])
    assert outcome.status == "nonfinite" and outcome.scale.index == 1 and ended == [0]
    assert ladder.prepared == [0, 1]


def test_resuming_starts_at_the_saved_scale_with_the_restored_state(ladder):
    restored = []

    def restore(state):
        restored.append(state.iteration)
        return types.SimpleNamespace(iteration=6, nonfinite=False, converged=False)

    chunks = []
    outcome = driver.run(ladder.config, None, chunk=4, resume=driver.Resume(1, restore), hooks=[
        driver.Hook(driver.EVERY_CHUNK, lambda at: chunks.append((at.scale.index, at.step)))])
    assert ladder.prepared == [1, 2] and restored == [0]
    assert chunks == [(1, 16), (2, 20), (2, 21)] and outcome.step == 21


def test_status_of_prefers_nonfinite_then_the_stop_then_convergence():
    job = FakeJob(1)
    assert driver.status_of(job) == "completed"
    job.state.converged = True
    assert driver.status_of(job) == "converged"
    token = Stop()
    token.set(INTERRUPTED)
    token.set("stopped")  # the first reason wins
    assert driver.status_of(job, token) == "interrupted"
    job.state.nonfinite = True
    assert driver.status_of(job, token) == "nonfinite"


@pytest.fixture
def python_ctrl_c(monkeypatch):
    """SIGINT left to Python (its default handler), as in a script or a notebook."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_sets_the_token_then_raises_as_usual(python_ctrl_c):
    token = Stop()
    with ctrl_c_sets(token):
        signal.raise_signal(signal.SIGINT)
        assert token.is_set() and token.reason == "interrupted"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_sets_every_token_of_nested_runs_and_the_handler_comes_back(python_ctrl_c):
    outer, inner = Stop(), Stop()
    with ctrl_c_sets(outer):
        with ctrl_c_sets(inner):
            signal.raise_signal(signal.SIGINT)
        assert inner.reason == outer.reason == "interrupted"
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # outer's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with ctrl_c_sets(Stop()):  # a later run starts counting again
        signal.raise_signal(signal.SIGINT)


def test_a_program_that_handles_ctrl_c_itself_is_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        token = Stop()
        with ctrl_c_sets(token):
            signal.raise_signal(signal.SIGINT)
        assert seen == [signal.SIGINT] and not token.is_set()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_real_run_stopped_by_ctrl_c_keeps_its_last_chunk(tiny_vgg, tiny_params, python_ctrl_c):
    """On the tiny VGG: Ctrl-C during the run (Python's own SIGINT handling) ends it after
    the chunk, with the state of that chunk (not lost in the compiled call)."""
    rng = np.random.default_rng(0)
    content, style = rng.random((24, 32, 3), np.float32), rng.random((24, 24, 3), np.float32)
    config = Config(size=32, iterations=9, beta=1e2)
    network = stylize.Network(tiny_vgg, tiny_params, CAFFE, {})
    inputs = stylize.Inputs(content, (style,), None)
    hooks = [driver.Hook(driver.EveryN(3), lambda at: signal.raise_signal(signal.SIGINT))]
    outcome = driver.run(config, network, inputs=inputs, chunk=3, hooks=hooks)
    assert outcome.status == "interrupted" and outcome.job.iteration == 3
    image, total, _ = outcome.job.saved()
    assert image.shape == (24, 32, 3) and np.isfinite(total)


# --- the only loop ---------------------------------------------------------------------


# What advances an optimisation: a Stylization's or a batch's step, the Sweeper's advance,
# and the compiled programs under them.
STEPPING = ("step", "advance", "_run", "_advance", "advance_state")
LOOPS = (ast.For, ast.While, ast.AsyncFor, ast.ListComp, ast.SetComp, ast.DictComp,
         ast.GeneratorExp)


def _driver_names(tree) -> set[str]:
    """The names ``tree`` binds to nst_jax.driver or its functions (allowed in loops)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "nst_jax":
            names |= {a.asname or a.name for a in node.names if a.name == "driver"}
        elif isinstance(node, ast.ImportFrom) and node.module == "nst_jax.driver":
            names |= {a.asname or a.name for a in node.names}
    return names


def _loops_that_step(path):
    """``(line, call)`` of each call that advances an optimisation inside a loop (or a
    comprehension), unless it goes through the driver, and of each call of
    ``stylizations``, in ``path``."""
    found = []
    tree = ast.parse(path.read_text())
    allowed = _driver_names(tree)
    for loop in ast.walk(tree):
        if isinstance(loop, LOOPS):
            for node in ast.walk(loop):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                name = getattr(func, "attr", getattr(func, "id", None))
                through_driver = (getattr(getattr(func, "value", None), "id", None) in allowed
                                  or (isinstance(func, ast.Name) and func.id in allowed))
                if name in STEPPING and not through_driver:
                    found.append((node.lineno, name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            if name == "stylizations":
                found.append((node.lineno, name))
            if name == "map" and any(getattr(a, "attr", None) in STEPPING for a in node.args):
                found.append((node.lineno, "map"))
    return found


def test_the_loop_check_sees_the_ways_to_step(tmp_path):
    source = tmp_path / "m.py"
    for code in ("while not job.done:\n    job.step(10)\n",
                 "[job.step(1) for _ in range(3)]\n",
                 "list(map(job.step, [1, 2]))\n",
                 "for _ in range(3):\n    state = sweeper.advance(state, 1, points)\n",
                 "for scale, job in coarse_to_fine.stylizations(c, n):\n    pass\n"):
        source.write_text(code)
        assert _loops_that_step(source), code
    source.write_text("from nst_jax import driver\nfor _ in driver.advance(job):\n    pass\n"
                      "job.step(1)\n")
    assert not _loops_that_step(source)


# PyTorch's optimiser, in the baseline the benchmark compares against: not ours to drive.
NOT_OURS = {"nst_jax/apps/benchmark/torch_baseline.py"}


def test_no_module_but_the_driver_advances_an_optimisation_in_a_loop():
    checked = 0
    for path in sorted((REPO / "nst_jax").rglob("*.py")):
        if path.name == "driver.py" and path.parent.name == "nst_jax":
            assert _loops_that_step(path)  # the one loop is here
            continue
        if path.relative_to(REPO).as_posix() in NOT_OURS:
            assert "torch.optim" in path.read_text()
            continue
        assert not _loops_that_step(path), f"{path.relative_to(REPO)} steps a run itself"
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("module", ["nst_jax/apps/cli/stylize.py", "nst_jax/apps/web/jobs.py",
                                    "nst_jax/apps/benchmark/cases/quality.py",
                                    "nst_jax/apps/benchmark/cases/speed.py",
                                    "nst_jax/apps/benchmark/compare_optimizers.py",
                                    "nst_jax/apps/benchmark/bench_sweep.py", "nst_jax/sweep.py"])
def test_every_tool_runs_on_the_driver(module):
    """Each module that runs an optimisation imports the driver and calls it."""
    tree = ast.parse((REPO / module).read_text())
    names = _driver_names(tree)
    calls = {(getattr(n.func.value, "id", None), n.func.attr) if isinstance(n.func, ast.Attribute)
             else (None, getattr(n.func, "id", None))
             for n in ast.walk(tree) if isinstance(n, ast.Call)}
    used = {f"{owner}.{name}" if owner else name for owner, name in calls
            if owner in names or name in names}
    assert used & {"driver.run", "driver.Run", "driver.advance", "advance"}, (module, used)
