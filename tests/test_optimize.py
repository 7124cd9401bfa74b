"""The optimisers on small problems with known minima: convergence, stopping, chunks, vmap."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import optimize
from nst_jax.errors import NSTError

TARGET = jnp.linspace(-1.0, 2.0, 12).reshape(2, 2, 3)
SCALES = jnp.linspace(1.0, 20.0, 12).reshape(2, 2, 3)  # ill-conditioned on purpose


def quadratic(x, shift=0.0):
    """A quadratic with its minimum 0 at TARGET + shift; aux = the two halves."""
    d = SCALES * jnp.square(x - TARGET - shift)
    a, b = jnp.sum(d[0]), jnp.sum(d[1])
    return a + b, {"first": a, "second": b}


@pytest.mark.parametrize("method,iterations,tol", [
    ("lbfgs", 30, 1e-6), ("lbfgs-stepwise", 30, 1e-6), ("lbfgs-jaxopt", 30, 1e-6),
    ("adam", 600, 1e-2)])
def test_backends_find_the_minimum(method, iterations, tol):
    settings = optimize.Settings(method=method, learning_rate=0.05)
    state = jax.jit(optimize.minimize, static_argnums=(0, 2, 3))(
        quadratic, jnp.zeros((2, 2, 3)), iterations, settings)
    assert float(state.best_value) < tol
    np.testing.assert_allclose(state.best_pixels, TARGET, atol=3e-2 if method == "adam" else 1e-3)
    assert int(state.iteration) == iterations
    assert int(state.evaluations) >= iterations
    values = np.asarray(state.trace.value)
    assert np.all(np.isfinite(values))
    # evaluations counted per iteration, non-decreasing
    assert np.all(np.diff(np.asarray(state.trace.evaluations)) >= 1)


@pytest.mark.parametrize("method", ["lbfgs-jaxopt", "lbfgs-stepwise", "adam"])
def test_trace_aux_recorded_where_backend_has_it(method):
    state = optimize.minimize(quadratic, jnp.zeros((2, 2, 3)), 5, optimize.Settings(method=method))
    total = np.asarray(state.trace.value)
    parts = np.asarray(state.trace.aux["first"]) + np.asarray(state.trace.aux["second"])
    np.testing.assert_allclose(parts, total, rtol=1e-5)


def test_trace_aux_not_available_from_optax():
    optax_state = optimize.minimize(quadratic, jnp.zeros((2, 2, 3)), 5, optimize.Settings(method="lbfgs"))
    assert np.all(np.isnan(optax_state.trace.aux["first"]))  # documented: not available from optax


@pytest.mark.parametrize("method", ["lbfgs", "lbfgs-stepwise"])
def test_lbfgs_decreases_monotonically(method):
    state = optimize.minimize(quadratic, jnp.zeros((2, 2, 3)), 15, optimize.Settings(method=method))
    values = np.asarray(state.trace.value)
    assert np.all(np.diff(values) <= 1e-6 * values[:-1])


@pytest.mark.parametrize("method", ["lbfgs", "lbfgs-stepwise"])
def test_chunks_equal_one_run(method):
    settings = optimize.Settings(method=method)
    whole = optimize.minimize(quadratic, jnp.zeros((2, 2, 3)), 12, settings)
    solver = optimize.make_solver(quadratic, settings)
    state = optimize.init(solver, quadratic, jnp.zeros((2, 2, 3)), 12)
    run = jax.jit(functools.partial(optimize.run, solver))
    for n in (5, 5, 5):  # the last chunk is cut at the trace's capacity
        state = run(state, n)
    assert int(state.iteration) == 12
    np.testing.assert_allclose(state.pixels, whole.pixels, rtol=1e-6)
    np.testing.assert_allclose(state.trace.value, whole.trace.value, rtol=1e-6)


def test_nonfinite_loss_stops_and_keeps_best():
    def blows_up(x):
        value, aux = quadratic(x)
        # finite until x gets close to the target, then NaN
        return jnp.where(value < 1.0, jnp.nan, value), aux

    state = optimize.minimize(blows_up, jnp.zeros((2, 2, 3)), 50, optimize.Settings(method="adam", learning_rate=0.1))
    assert bool(state.nonfinite)
    assert int(state.iteration) < 50
    assert np.isfinite(float(state.best_value)) and float(state.best_value) >= 1.0
    assert np.all(np.isfinite(state.best_pixels)) and np.all(np.isfinite(state.pixels))
    # the pixels kept are the best ones seen
    assert float(quadratic(state.best_pixels)[0]) == pytest.approx(float(state.best_value), rel=1e-5)


@pytest.mark.parametrize("method", optimize.OPTIMIZERS)
def test_vmapped_grid_equals_runs_one_by_one_and_compiles_once(method):
    settings = optimize.Settings(method=method)
    traces = []

    def solve(shift, x0):
        traces.append(1)  # runs once per trace (compilation), not per call
        return optimize.minimize(lambda x: quadratic(x, shift), x0, 8, settings)

    shifts = jnp.array([0.0, 0.5, -1.0, 3.0])
    x0s = jnp.stack([jnp.full((2, 2, 3), v) for v in (0.0, 1.0, 2.0, -1.0)])
    grid = jax.jit(jax.vmap(solve))
    batched = grid(shifts, x0s)
    grid(shifts + 1.0, x0s)  # new values, same shapes: no new trace
    assert len(traces) == 1
    single = jax.jit(solve)
    for i in range(len(shifts)):
        one = single(shifts[i], x0s[i])
        np.testing.assert_allclose(batched.best_pixels[i], one.best_pixels, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.trace.value[i], one.trace.value, rtol=1e-5, atol=1e-6)


def test_unknown_method():
    with pytest.raises(NSTError, match="unknown optimizer"):
        optimize.make_solver(quadratic, optimize.Settings(method="sgd"))


@pytest.mark.parametrize("method", optimize.OPTIMIZERS)
def test_state_types_are_stable_so_chunks_compile_once(method):
    # A leaf whose dtype or weak type changes after the first step makes every jitted
    # `run` compile twice (optax's line search starts with weakly typed scalars).
    solver = optimize.make_solver(quadratic, optimize.Settings(method=method))
    state = optimize.init(solver, quadratic, jnp.zeros((2, 2, 3)), 6)
    traces = []

    def chunk(s):
        traces.append(1)
        return optimize.run(solver, s, 2)

    run = jax.jit(chunk)
    after = run(state)
    run(after)
    assert len(traces) == 1
    types = lambda s: [(a.dtype, a.shape, jax.typeof(a).weak_type) for a in jax.tree_util.tree_leaves(s)]
    assert types(after) == types(state)


def test_stepwise_lbfgs_never_accepts_a_nonfinite_trial():
    def cliff(x):
        value, aux = quadratic(x)
        return jnp.where(value < 1.0, jnp.nan, value), aux

    state = optimize.minimize(cliff, jnp.zeros((2, 2, 3)), 30, optimize.Settings(method="lbfgs-stepwise"))
    # Trials past the cliff fail the decrease test and shrink the step: the run goes on.
    assert not bool(state.nonfinite) and int(state.iteration) == 30
    values = np.asarray(state.trace.value)
    assert np.all(np.isfinite(values)) and values[-1] < 1.5


def test_stepwise_lbfgs_on_a_rosenbrock_valley():
    def rosenbrock(x):
        x = x.reshape(-1)
        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2), {}

    state = optimize.minimize(rosenbrock, jnp.zeros((2, 2, 1)) - 1.0, 200,
                              optimize.Settings(method="lbfgs-stepwise"))
    assert float(state.best_value) < 1e-8
    np.testing.assert_allclose(state.best_pixels, 1.0, atol=1e-4)


# --- box constraints --------------------------------------------------------------------

BOX = (0.0, 1.0)  # TARGET runs from -1 to 2: a third of it lies outside


def coupled(x):
    """A non-separable quadratic: x^T Q x / 2 - b^T x with Q = D + u u^T, its unconstrained
    minimum outside [0, 1] in most coordinates; aux = nothing (a scalar)."""
    flat = x.reshape(-1)
    u = jnp.linspace(0.5, 1.5, flat.size)
    d = jnp.linspace(1.0, 8.0, flat.size)
    b = jnp.linspace(-6.0, 12.0, flat.size)
    value = 0.5 * (jnp.sum(d * flat**2) + jnp.dot(u, flat) ** 2) - jnp.dot(b, flat)
    return value, {"value": value}


def projected_gradient_reference(x0: np.ndarray, steps: int = 20000) -> np.ndarray:
    """The box-constrained minimum of ``coupled`` by plain projected gradient in float64."""
    u = np.linspace(0.5, 1.5, x0.size)
    d = np.linspace(1.0, 8.0, x0.size)
    b = np.linspace(-6.0, 12.0, x0.size)
    q = np.diag(d) + np.outer(u, u)
    step = 1.0 / np.linalg.eigvalsh(q).max()
    x = x0.reshape(-1).astype(np.float64)
    for _ in range(steps):
        x = np.clip(x - step * (q @ x - b), *BOX)
    return x.reshape(x0.shape)


@pytest.mark.parametrize("method,iterations,atol", [
    ("lbfgs-stepwise", 40, 1e-3), ("lbfgs", 60, 1e-3), ("lbfgs-jaxopt", 60, 1e-3),
    ("adam", 2000, 2e-2)])
def test_every_backend_stays_in_the_box_and_finds_the_constrained_minimum(method, iterations, atol):
    settings = optimize.Settings(method=method, learning_rate=0.02, bounds=BOX)
    x0 = jnp.full((2, 2, 3), 0.5)
    minimize = jax.jit(optimize.minimize, static_argnums=(0, 2, 3))
    # separable: the constrained minimum is the unconstrained one clipped to the box
    state = minimize(quadratic, x0, iterations, settings)
    np.testing.assert_allclose(state.best_pixels, np.clip(TARGET, *BOX), atol=atol)
    for s in (state.pixels, state.best_pixels):
        assert float(jnp.min(s)) >= 0.0 and float(jnp.max(s)) <= 1.0
    # non-separable: against projected gradient descent run to convergence (float64); near
    # the minimum float32 cannot tell points 1e-4 apart, so x is compared to 1e-3
    state = minimize(coupled, x0, iterations, settings)
    want = projected_gradient_reference(np.asarray(x0))
    assert 0 < np.mean((want == 0) | (want == 1)) < 1  # some bounds active, some not
    np.testing.assert_allclose(state.best_pixels, want, atol=atol)
    assert float(state.best_value) == pytest.approx(float(coupled(jnp.asarray(want, jnp.float32))[0]),
                                                    rel=1e-6 if method != "adam" else 1e-3)
    assert float(jnp.min(state.pixels)) >= 0.0 and float(jnp.max(state.pixels)) <= 1.0


def test_the_box_beats_clipping_afterwards():
    """Clipping the unconstrained minimum is not the constrained minimum of a coupled problem."""
    x0 = jnp.full((2, 2, 3), 0.5)
    boxed = optimize.minimize(coupled, x0, 40, optimize.Settings(bounds=BOX))
    free = optimize.minimize(coupled, x0, 40, optimize.Settings())
    clipped = jnp.clip(free.best_pixels, *BOX)
    assert float(boxed.best_value) < float(coupled(clipped)[0]) - 1e-3


def test_without_bounds_the_stepwise_search_is_unchanged():
    """bounds=None is plain L-BFGS: iterates may leave [0, 1] (TARGET does)."""
    state = optimize.minimize(quadratic, jnp.zeros((2, 2, 3)), 30,
                              optimize.Settings(method="lbfgs-stepwise"))
    np.testing.assert_allclose(state.best_pixels, TARGET, atol=1e-3)


def test_the_first_step_starts_at_half_the_linear_models_zero():
    """Without curvature pairs, ``lbfgs-stepwise`` tries first t = |f| / (2 |f'|) along the
    unit-length direction: on a loss whose line has its minimum at the linear model's
    zero, that first trial meets the strong Wolfe conditions (the slope there is half the
    first one), so the first iteration costs one evaluation beyond the start, not two.

    f(x) = |x|^2 + 16 from x0 = (4, 0, ...): along the unit direction -x0 the line is
    (4 - t)^2 + 16, whose linear zero |f| / |f'| = 32 / 8 = 4 is its minimiser; the first
    trial, t = 2, halves the slope and is taken."""
    x0 = jnp.zeros((12,)).at[0].set(4.0)
    fun = lambda x: (jnp.sum(jnp.square(x)) + 16.0, {})  # noqa: E731
    state = optimize.minimize(fun, x0, 1, optimize.Settings(method="lbfgs-stepwise"))
    assert int(state.trace.evaluations[0]) == 2
    np.testing.assert_allclose(np.asarray(state.pixels)[0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(state.trace.value[0]), 20.0, rtol=1e-6)


# --- rounds: a loss that changes every R iterations (sliced's directions drawn anew) --------

def round_loss(r, shift=0.0):
    """Round ``r``'s loss: the quadratic with its minimum moved by ``r``."""
    return lambda x: quadratic(x, shift + jnp.asarray(r, jnp.float32))


def run_rounds(settings, iterations, chunks=None, loss_of=round_loss):
    solver_for = lambda r: optimize.make_solver(loss_of(r), settings)  # noqa: E731
    state = optimize.init(solver_for(0), loss_of(0), jnp.zeros((2, 2, 3)), iterations)
    run = jax.jit(lambda s, n: optimize.run(solver_for, s, n, 0.0, settings.round_length))
    for n in chunks or (iterations,):
        state = run(state, n)
    return state


@pytest.mark.parametrize("method,iterations,atol", [
    ("lbfgs-stepwise", 25, 1e-3), ("lbfgs", 25, 1e-3), ("lbfgs-jaxopt", 25, 1e-3),
    ("adam", 200, 0.1)])
def test_each_round_minimises_its_own_loss(method, iterations, atol):
    """Three rounds, the minimum moving by 1 each: each round ends at its own minimum, the
    trace records each round's loss, and the iterations are the ones asked for."""
    settings = optimize.Settings(method=method, round_length=iterations, learning_rate=0.05)
    state = run_rounds(settings, 3 * iterations)
    assert int(state.iteration) == 3 * iterations
    np.testing.assert_allclose(state.pixels, TARGET + 2.0, atol=atol)
    values = np.asarray(state.trace.value)
    if method != "adam":
        # At each round's end the loss is about 0; after it, the next round's loss, large.
        for r in range(3):
            assert values[(r + 1) * iterations - 1] < 1e-4, r
        assert values[iterations] > 1.0 and values[2 * iterations] > 1.0
    assert np.all(np.diff(np.asarray(state.trace.evaluations)) >= 1)


def test_stepwise_renewal_is_one_evaluation_and_restarts_the_memory():
    """The first iteration of a round is that of a fresh run from the round's start: the
    same evaluations and the same step as a new run of the round's loss from there."""
    settings = optimize.Settings(method="lbfgs-stepwise", round_length=6)
    state = run_rounds(settings, 7)
    fresh = optimize.minimize(round_loss(1), jax.device_get(run_rounds(settings, 6).pixels), 1,
                              settings._replace(round_length=0))
    np.testing.assert_allclose(state.pixels, fresh.pixels, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.trace.value[6], fresh.trace.value[0], rtol=1e-5)
    evaluations = np.asarray(state.trace.evaluations)
    # fresh counts its init's evaluation; the round's start is the renewal's.
    assert evaluations[6] - evaluations[5] == int(fresh.evaluations)


@pytest.mark.parametrize("method", ["lbfgs-stepwise", "lbfgs"])
def test_rounds_in_chunks_equal_one_run(method):
    settings = optimize.Settings(method=method, round_length=4)
    whole = run_rounds(settings, 11)
    chunked = run_rounds(settings, 11, chunks=(3, 2, 4, 5))  # boundaries inside and at rounds
    assert int(chunked.iteration) == 11
    np.testing.assert_allclose(chunked.pixels, whole.pixels, rtol=1e-6)
    np.testing.assert_allclose(chunked.trace.value, whole.trace.value, rtol=1e-6)
    np.testing.assert_array_equal(chunked.trace.evaluations, whole.trace.evaluations)


def test_rounds_under_vmap_are_the_runs_one_by_one():
    """A grid whose points reach their rounds at different loop steps (stepwise L-BFGS)."""
    settings = optimize.Settings(method="lbfgs-stepwise", round_length=3)

    def solve(shift):
        return run_rounds(settings, 8, loss_of=lambda r: round_loss(r, shift))

    shifts = jnp.array([0.0, 0.7, -2.0])
    batched = jax.jit(jax.vmap(solve))(shifts)
    for i, shift in enumerate(shifts):
        one = jax.jit(solve)(shift)
        np.testing.assert_allclose(batched.pixels[i], one.pixels, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batched.trace.value[i], one.trace.value, rtol=1e-5, atol=1e-6)
