"""Minimising a loss of the pixels: L-BFGS (optax or jaxopt) and Adam, one interface.

Nothing here knows about VGG or images: a loss is any ``fun(x) -> (value, aux)``
with ``x`` a float array, ``value`` a scalar and ``aux`` a pytree of scalars (the
loss terms, kept in the trace). Every loop is a ``lax.while_loop``, so
:func:`minimize` runs under ``jit`` and ``vmap`` (a grid of runs, each with its
own stopping); :func:`run` advances an existing state by a number of iterations
so a caller can show progress and save snapshots between calls of one compiled
function.

Each iteration makes one update of the pixels; the trace records, per
iteration, the loss at the pixels the iteration ended on (L-BFGS) or started
from (Adam, which evaluates before it steps), its ``aux`` and the running count
of loss+gradient evaluations. A non-finite loss stops the run; the best pixels
seen so far (lowest finite loss) are always kept in the state.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nst_jax.errors import NSTError

Aux = Any
LossFn = Callable[[jax.Array], tuple[jax.Array, Aux]]

OPTIMIZERS = ("lbfgs", "lbfgs-jaxopt", "adam")
DEFAULT_OPTIMIZER = "lbfgs"


class Settings(NamedTuple):
    """Optimiser settings (static: changing them recompiles).

    Attributes:
      method: ``'lbfgs'`` (optax L-BFGS, zoom line search), ``'lbfgs-jaxopt'``
        (jaxopt L-BFGS, zoom line search) or ``'adam'`` (optax).
      memory_size: L-BFGS history length.
      max_linesearch_steps: cap on line-search evaluations per L-BFGS iteration.
      learning_rate: Adam's step size, in pixel units ([0, 1] images).
    """

    method: str = DEFAULT_OPTIMIZER
    memory_size: int = 10
    max_linesearch_steps: int = 20
    learning_rate: float = 0.02


class Evaluation(NamedTuple):
    """One point where the loss is known: ``fun(pixels) == (value, aux)``."""

    pixels: jax.Array
    value: jax.Array
    aux: Aux


class Solver(NamedTuple):
    """A backend: ``init(x0) -> state``; ``update(x, state) -> (x', state', Evaluation, n_evals)``.

    ``init_evaluations`` counts the loss+gradient evaluations ``init`` makes.
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[jax.Array, Any], tuple[jax.Array, Any, Evaluation, jax.Array]]
    init_evaluations: int


def _nan_aux(fun: LossFn, x: jax.Array) -> Aux:
    shapes = jax.eval_shape(fun, x)[1]
    return jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)


def optax_lbfgs(fun: LossFn, settings: Settings) -> Solver:
    """optax L-BFGS with its zoom line search (the maintained successor of jaxopt).

    optax's line search takes a plain scalar function, so ``aux`` at the new
    point is not available without another evaluation: the trace holds NaN for
    it, and callers that want the terms compute them where they need them.
    The first value and gradient are computed in ``init`` and stored in the
    optimiser state, so no iteration branches on "first call" (a ``cond`` would
    evaluate both sides under ``vmap``).
    """
    value_fn = lambda x: fun(x)[0]
    opt = optax.lbfgs(
        memory_size=settings.memory_size,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=settings.max_linesearch_steps, initial_guess_strategy="one"),
    )

    def init(x):
        value, grad = jax.value_and_grad(value_fn)(x)
        return optax.tree.set(opt.init(x), value=value, grad=grad)

    def update(x, state):
        value = optax.tree.get(state, "value")
        grad = optax.tree.get(state, "grad")
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=value_fn)
        x = optax.apply_updates(x, updates)
        evaluations = optax.tree.get(state, "num_linesearch_steps")
        new = Evaluation(x, optax.tree.get(state, "value"), _nan_aux(fun, x))
        return x, state, new, jnp.asarray(evaluations, jnp.int32)

    return Solver(init, update, 1)


def jaxopt_lbfgs(fun: LossFn, settings: Settings) -> Solver:
    """jaxopt L-BFGS with zoom line search (the package is archived; imported only here)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "JAXopt is no longer maintained"
        import jaxopt

    # jaxopt's own line-search defaults (zoom, initial step "increase", max step 1)
    # are kept: a larger max step made its zoom search fail on this problem.
    solver = jaxopt.LBFGS(fun=fun, has_aux=True, history_size=settings.memory_size,
                          maxls=settings.max_linesearch_steps, linesearch="zoom",
                          implicit_diff=False)

    def init(x):
        return solver.init_state(x)

    def update(x, state):
        before = state.num_fun_eval
        x, state = solver.update(x, state)
        return x, state, Evaluation(x, state.value, state.aux), jnp.asarray(
            state.num_fun_eval - before, jnp.int32)

    return Solver(init, update, 1)


def adam(fun: LossFn, settings: Settings) -> Solver:
    """optax Adam; one loss+gradient evaluation per iteration."""
    opt = optax.adam(settings.learning_rate)

    def update(x, state):
        (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x)
        updates, state = opt.update(grad, state, x)
        return optax.apply_updates(x, updates), state, Evaluation(x, value, aux), jnp.int32(1)

    return Solver(opt.init, update, 0)


def make_solver(fun: LossFn, settings: Settings) -> Solver:
    """The backend named by ``settings.method``; :class:`NSTError` for an unknown name."""
    backends = {"lbfgs": optax_lbfgs, "lbfgs-jaxopt": jaxopt_lbfgs, "adam": adam}
    if settings.method not in backends:
        raise NSTError(f"unknown optimizer {settings.method!r}; choose one of {', '.join(OPTIMIZERS)}")
    return backends[settings.method](fun, settings)


class Trace(NamedTuple):
    """Per-iteration record; entries past ``OptimizeState.iteration`` are NaN / -1.

    Attributes:
      value: ``(T,)`` the loss.
      aux: pytree of ``(T,)`` arrays, the loss's ``aux`` (NaN where unknown).
      evaluations: ``(T,)`` running count of loss+gradient evaluations.
    """

    value: jax.Array
    aux: Aux
    evaluations: jax.Array


class OptimizeState(NamedTuple):
    """Everything a run carries between iterations (a pytree; vmappable).

    ``best_pixels`` / ``best_value`` are the lowest finite loss seen;
    ``nonfinite`` is set when the loss stopped being finite (the run stops).
    """

    pixels: jax.Array
    solver_state: Any
    iteration: jax.Array
    evaluations: jax.Array
    best_pixels: jax.Array
    best_value: jax.Array
    nonfinite: jax.Array
    trace: Trace


def init(solver: Solver, fun: LossFn, x0: jax.Array, num_iterations: int) -> OptimizeState:
    """Start a run at ``x0`` with room for ``num_iterations`` in the trace."""
    aux_shapes = jax.eval_shape(fun, x0)[1]
    trace = Trace(
        value=jnp.full((num_iterations,), jnp.nan, x0.dtype),
        aux=jax.tree_util.tree_map(lambda s: jnp.full((num_iterations,) + s.shape, jnp.nan, s.dtype),
                                   aux_shapes),
        evaluations=jnp.full((num_iterations,), -1, jnp.int32),
    )
    return OptimizeState(
        pixels=x0, solver_state=solver.init(x0), iteration=jnp.int32(0),
        evaluations=jnp.int32(solver.init_evaluations),
        best_pixels=x0, best_value=jnp.asarray(jnp.inf, x0.dtype), nonfinite=jnp.bool_(False),
        trace=trace)


def step(solver: Solver, state: OptimizeState) -> OptimizeState:
    """One iteration: update the pixels, record the trace, keep the best point."""
    pixels, solver_state, evaluation, evaluations = solver.update(state.pixels, state.solver_state)
    finite = jnp.isfinite(evaluation.value) & jnp.all(jnp.isfinite(pixels))
    better = finite & (evaluation.value < state.best_value)
    i = state.iteration
    count = state.evaluations + evaluations
    trace = Trace(
        value=state.trace.value.at[i].set(evaluation.value),
        aux=jax.tree_util.tree_map(lambda t, a: t.at[i].set(a), state.trace.aux, evaluation.aux),
        evaluations=state.trace.evaluations.at[i].set(count),
    )
    return OptimizeState(
        # On a non-finite loss keep the last good pixels: the run stops here.
        pixels=jnp.where(finite, pixels, state.pixels),
        solver_state=solver_state,
        iteration=i + 1,
        evaluations=count,
        best_pixels=jnp.where(better, evaluation.pixels, state.best_pixels),
        best_value=jnp.where(better, evaluation.value, state.best_value),
        nonfinite=~finite,
        trace=trace,
    )


def run(solver: Solver, state: OptimizeState, num_steps: jax.Array | int) -> OptimizeState:
    """Advance ``state`` by up to ``num_steps`` iterations (a ``lax.while_loop``).

    Stops early at the trace's capacity or on a non-finite loss. ``num_steps``
    may be a traced integer, so one compiled ``run`` serves every chunk size.
    """
    capacity = state.trace.value.shape[0]
    stop = jnp.minimum(state.iteration + num_steps, capacity)

    def cond(s):
        return (s.iteration < stop) & ~s.nonfinite

    return jax.lax.while_loop(cond, functools.partial(step, solver), state)


def minimize(fun: LossFn, x0: jax.Array, num_iterations: int,
             settings: Settings = Settings()) -> OptimizeState:
    """Run ``num_iterations`` iterations of ``settings.method`` from ``x0``.

    Pure: wrap in ``jax.jit`` (``num_iterations`` and ``settings`` static) and
    ``jax.vmap`` over anything ``fun`` closes over, ``x0`` included.
    Returns the final :class:`OptimizeState`; use ``best_pixels`` for the result.
    """
    solver = make_solver(fun, settings)
    return run(solver, init(solver, fun, x0, num_iterations), num_iterations)
