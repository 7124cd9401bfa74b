"""Minimising a loss of the pixels: L-BFGS (optax, stepwise or jaxopt) and Adam, one interface.

Nothing here knows about VGG or images: a loss is any ``fun(x) -> (value, aux)``
with ``x`` a float array, ``value`` a scalar and ``aux`` a pytree of scalars (the
loss terms, kept in the trace). Every loop is a ``lax.while_loop``, so
:func:`minimize` runs under ``jit`` and ``vmap`` (a grid of runs, each with its
own stopping); :func:`run` advances an existing state by a number of iterations
so a caller can show progress and save snapshots between calls of one compiled
function.

Each iteration makes one update of the pixels (``lbfgs-stepwise`` makes one
loss evaluation per loop step, and an iteration ends when its line search
accepts a step); the trace records, per iteration, the loss at the pixels the
iteration ended on (L-BFGS) or started from (Adam, which evaluates before it
steps), its ``aux`` and the running count of loss+gradient evaluations. A
non-finite loss stops the run; the best pixels seen so far (lowest finite
loss) are always kept in the state.

Rounds (``Settings.round_length = R > 0``): the loss may change every ``R`` iterations,
as sliced Wasserstein's random directions are drawn anew (Heitz et al. 2021 run
scipy's L-BFGS afresh on each new draw). :func:`run` then takes the solver of a round,
``solver_for(r)`` (``r = iteration // R``, an array), and at each round's start the
solver forgets what it knew of the old loss: ``lbfgs-stepwise`` evaluates the new loss
at the current pixels as its next loop step (one evaluation, not an iteration, so the
grid points of a ``vmap`` stay in lockstep) and starts its L-BFGS memory anew; optax's
and jaxopt's L-BFGS start again from the pixels (their ``init``, under a ``cond``: under
``vmap`` it becomes a ``select`` and is computed each iteration); Adam carries on.

Box constraints (``Settings.bounds = (lower, upper)``): every backend then
keeps every point it evaluates, and every point it returns, inside the box, so
the best point found is a point of the box, not one clipped afterwards.
``lbfgs-stepwise`` is projected L-BFGS (the search direction is zero for
variables held at a bound by their gradient, and the line search follows the
projected path ``clip(x + t d)``); ``adam`` projects after each step; ``lbfgs``
(optax) and ``lbfgs-jaxopt`` minimise ``fun(clip(z))`` over an unbounded ``z``
and report ``clip(z)``, since their line searches cannot project.
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

OPTIMIZERS = ("lbfgs", "lbfgs-stepwise", "lbfgs-jaxopt", "adam")
# The lowest loss of the saved image for a given number of evaluations, alone and in a
# sweep (docs/optimizers.md).
DEFAULT_OPTIMIZER = "lbfgs-stepwise"


class Settings(NamedTuple):
    """Optimiser settings (static: changing them recompiles).

    Attributes:
      method: ``'lbfgs'`` (optax L-BFGS, zoom line search), ``'lbfgs-stepwise'``
        (L-BFGS whose loop step is one evaluation: the one for grids under
        ``vmap``), ``'lbfgs-jaxopt'`` (jaxopt L-BFGS, zoom line search) or
        ``'adam'`` (optax).
      memory_size: L-BFGS history length.
      max_linesearch_steps: cap on line-search evaluations per L-BFGS iteration.
      learning_rate: Adam's step size, in pixel units ([0, 1] images).
      tolerance: stop a run once an iteration changes the loss by at most
        ``tolerance * |loss|`` (relative); 0 never stops early. Under ``vmap``
        each run of a grid stops on its own.
      bounds: ``(lower, upper)``: keep every variable in this box (see the
        module docstring); ``None``: unconstrained.
      round_length: the loss changes every ``round_length`` iterations (see the module
        docstring: rounds); 0: one loss for the whole run.
    """

    method: str = DEFAULT_OPTIMIZER
    memory_size: int = 10
    max_linesearch_steps: int = 20
    learning_rate: float = 0.02
    tolerance: float = 0.0
    bounds: tuple[float, float] | None = None
    round_length: int = 0


def _box(settings: Settings) -> tuple[float, float]:
    return settings.bounds if settings.bounds is not None else (-jnp.inf, jnp.inf)


def _reparametrised(fun: LossFn, settings: Settings, backend: Callable[[LossFn], "Solver"]
                    ) -> "Solver":
    """``backend`` minimising ``fun(clip(z))`` over an unbounded ``z`` (kept in the
    solver's state); the points it reports are ``clip(z)``, inside the box."""
    if settings.bounds is None:
        return backend(fun)
    lower, upper = settings.bounds
    clip = lambda z: jnp.clip(z, lower, upper)  # noqa: E731
    inner = backend(lambda z: fun(clip(z)))

    def init(x):
        return (inner.init(x), x)

    def update(x, state):
        inner_state, z = state
        z, inner_state, evaluation, evaluations, accepted = inner.update(z, inner_state)
        evaluation = evaluation._replace(pixels=clip(evaluation.pixels))
        return clip(z), (inner_state, z), evaluation, evaluations, accepted

    return Solver(init, update, inner.init_evaluations)


class Evaluation(NamedTuple):
    """One point where the loss is known: ``fun(pixels) == (value, aux)``."""

    pixels: jax.Array
    value: jax.Array
    aux: Aux


class Solver(NamedTuple):
    """A backend: ``init(x0) -> state``;
    ``update(x, state) -> (x', state', Evaluation, n_evals, accepted)``.

    ``accepted`` (bool) says the update finished an iteration: every backend
    but ``lbfgs-stepwise`` finishes one per update; that one makes one
    evaluation per update and finishes an iteration when its line search
    accepts a step. ``init_evaluations`` counts the evaluations ``init`` makes.

    ``renew(state, x, when) -> state``: where ``when`` (a bool array) holds, the state
    made ready for a new loss at ``x`` (a new round) without evaluating it; None: the
    solver's ``init(x)`` is taken instead (under a ``cond``; it evaluates the loss).
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[jax.Array, Any], tuple[jax.Array, Any, Evaluation, jax.Array]]
    init_evaluations: int
    renew: Callable[[Any, jax.Array, jax.Array], Any] | None = None


def _nan_aux(fun: LossFn, x: jax.Array) -> Aux:
    shapes = jax.eval_shape(fun, x)[1]
    return jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)


def optax_lbfgs(fun: LossFn, settings: Settings) -> Solver:
    """optax L-BFGS with its zoom line search (the maintained successor of jaxopt);
    with ``settings.bounds``, of ``fun(clip(z))`` (see the module docstring).

    optax's line search takes a plain scalar function, so ``aux`` at the new
    point is not available without another evaluation: the trace holds NaN for
    it, and callers that want the terms compute them where they need them.
    The first value and gradient are computed in ``init`` and stored in the
    optimiser state, so no iteration branches on "first call" (a ``cond`` would
    evaluate both sides under ``vmap``).
    """
    return _reparametrised(fun, settings, functools.partial(_optax_lbfgs, settings=settings))


def _optax_lbfgs(fun: LossFn, settings: Settings) -> Solver:
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
        return x, state, new, jnp.asarray(evaluations, jnp.int32), jnp.bool_(True)

    return Solver(init, update, 1)


class StepwiseState(NamedTuple):
    """:func:`stepwise_lbfgs`'s state: the accepted point, the search direction, the
    line search's bracket ``[lo, hi]`` along it, and optax's L-BFGS memory."""

    value: jax.Array  # f at the accepted point x
    grad: jax.Array
    aux: Aux
    direction: jax.Array
    slope: jax.Array  # grad . direction (< 0)
    step: jax.Array  # the next trial step along direction
    lo: jax.Array  # (step, value, slope) of the best trial meeting the decrease condition
    lo_value: jax.Array
    lo_slope: jax.Array
    lo_grad: jax.Array
    lo_aux: Aux
    hi: jax.Array  # inf until a trial brackets the minimum
    hi_value: jax.Array
    trials: jax.Array  # evaluations in this line search
    memory: Any  # optax.ScaleByLBFGSState


def stepwise_lbfgs(fun: LossFn, settings: Settings, c1: float = 1e-4, c2: float = 0.9,
                   max_step: float = 1e10) -> Solver:
    """L-BFGS with a strong-Wolfe line search, one loss+gradient evaluation per ``update``.

    optax's zoom line search branches (``lax.cond``) between two code paths
    that each evaluate the loss; under ``vmap`` a ``cond`` runs both, and every
    point of a grid waits for the slowest line search of each iteration. Here
    each ``update`` evaluates one trial point and then decides, with
    arithmetic only, whether to accept it (ending the iteration), expand the
    step, or narrow the bracket (Nocedal & Wright, Alg. 3.5/3.6, with a
    safeguarded quadratic interpolation). Grid points therefore advance in
    lockstep per *evaluation*, each through its own iterations, and a run
    alone makes the same evaluations as under ``vmap``. The direction comes
    from optax's L-BFGS memory (:func:`optax.scale_by_lbfgs`). After
    ``max_linesearch_steps`` trials the best trial with a decrease is taken
    (or, without one, the memory is cleared and the search restarts along the
    scaled gradient).

    With ``settings.bounds`` it is projected L-BFGS (Bertsekas 1982; Kim, Sra &
    Dhillon 2010): variables at a bound whose gradient pushes them out are held
    (their component of the direction is 0), the line search walks the
    projected path ``phi(t) = fun(clip(x + t d))``, whose slope counts only the
    variables still inside the box, and the sufficient decrease is measured
    along the step actually taken, ``grad . (clip(x + t d) - x)``. Should the
    L-BFGS direction not descend on the free variables, the projected gradient
    (scaled as optax scales the first step) is used instead.
    """
    memory_fn = optax.scale_by_lbfgs(memory_size=settings.memory_size)
    value_and_grad = jax.value_and_grad(fun, has_aux=True)
    tree_where = lambda c, a, b: jax.tree_util.tree_map(  # noqa: E731
        lambda u, v: jnp.where(c, u, v), a, b)
    lower, upper = _box(settings)
    project = lambda x: jnp.clip(x, lower, upper)  # noqa: E731

    def direction_from(grad, memory, x):
        precond, memory = memory_fn.update(grad, memory, x)
        held = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
        direction = jnp.where(held, 0.0, -precond)
        steepest = jnp.where(held, 0.0, -grad)
        steepest = steepest * jnp.minimum(1.0, 1.0 / jnp.linalg.norm(steepest))
        direction = jnp.where(jnp.vdot(grad, direction) < 0, direction, steepest)
        return direction, jnp.vdot(grad, direction), memory

    def line_search_start(x, value, grad, aux, memory):
        fresh = memory.count == 0  # no curvature pairs yet: the first iteration, or a restart
        direction, slope, memory = direction_from(grad, memory, x)
        zero = jnp.zeros((), value.dtype)
        # Without curvature pairs the direction is about one unit long, which on a loss of
        # 1e10 is a tiny step: the search would double it, one evaluation each, six to eight
        # times. It starts instead at half of where the line's linear model reaches zero,
        # |f| / (2 |f'|) (at least 1). Half, because the loss does not fall to zero along
        # the line: on the bundled pair from white noise the line's minimum lay at 0.5-0.7
        # of the linear zero (128, 256 and 512 px), and the zero itself raised the loss
        # (1.3x at 128 px), which cost an interpolation; half is accepted at once there.
        # Should it be too long or too short, the search goes on as for any step.
        guess = 0.5 * jnp.abs(value) / jnp.maximum(-slope, jnp.finfo(value.dtype).tiny)
        guess = jnp.where(jnp.isfinite(guess), jnp.clip(guess, 1.0, max_step), 1.0)
        step = jnp.where(fresh, guess, jnp.ones((), value.dtype)).astype(value.dtype)
        return dict(value=value, grad=grad, aux=aux, direction=direction, slope=slope,
                    step=step, lo=zero, lo_value=value, lo_slope=slope,
                    lo_grad=grad, lo_aux=aux, hi=jnp.asarray(jnp.inf, value.dtype),
                    hi_value=jnp.asarray(jnp.inf, value.dtype), trials=jnp.int32(0),
                    memory=memory)

    def init(x):
        x = project(x)
        (value, aux), grad = value_and_grad(x)
        return StepwiseState(**line_search_start(x, value, grad, aux, memory_fn.init(x)))

    def update(x, state):
        x = project(x)
        # A step of 0 marks a renewal (see renew): the trial is x itself, under the new loss.
        renewing = state.step == 0
        unprojected = x + state.step * state.direction
        trial = project(unprojected)
        (value, aux), grad = value_and_grad(trial)
        # phi'(t): only the variables the projection does not hold move with t.
        moving = (unprojected > lower) & (unprojected < upper)
        slope = jnp.vdot(grad, jnp.where(moving, state.direction, 0.0))
        trials = state.trials + 1
        decrease = jnp.isfinite(value) & (
            value <= state.value + c1 * jnp.vdot(state.grad, trial - x))
        decrease &= value < state.lo_value  # better than the bracket's low end
        curvature = jnp.abs(slope) <= c2 * jnp.abs(state.slope)
        accept = (decrease & curvature) | ~jnp.isfinite(state.value) | renewing
        out_of_trials = ~accept & (trials >= settings.max_linesearch_steps)

        # The bracket [lo, hi] (N&W Alg. 3.6), as arithmetic on scalars.
        new_hi = jnp.where(~decrease, state.step,
                           jnp.where(slope * (state.hi - state.lo) >= 0, state.lo, state.hi))
        new_hi_value = jnp.where(~decrease, value,
                                 jnp.where(slope * (state.hi - state.lo) >= 0, state.lo_value,
                                           state.hi_value))
        lo = jnp.where(decrease, state.step, state.lo)
        lo_value = jnp.where(decrease, value, state.lo_value)
        lo_slope = jnp.where(decrease, slope, state.lo_slope)
        lo_grad = jnp.where(decrease, grad, state.lo_grad)
        lo_aux = tree_where(decrease, aux, state.lo_aux)
        # Next trial: double until bracketed, then the minimiser of the quadratic through
        # (lo, f(lo), f'(lo)) and (hi, f(hi)), kept inside the middle 80% of the bracket.
        width = new_hi - lo
        curve = new_hi_value - lo_value - lo_slope * width
        quadratic = lo - lo_slope * width ** 2 / (2.0 * curve)
        inner_lo = jnp.minimum(lo + 0.1 * width, new_hi - 0.1 * width)
        inner_hi = jnp.maximum(lo + 0.1 * width, new_hi - 0.1 * width)
        interpolated = jnp.where(jnp.isfinite(quadratic) & (curve > 0),
                                 jnp.clip(quadratic, inner_lo, inner_hi), lo + 0.5 * width)
        next_step = jnp.where(jnp.isinf(new_hi), jnp.minimum(2.0 * state.step, max_step),
                              interpolated)

        # Ending the iteration: at the trial, or (out of trials) at the bracket's low end.
        take_lo = out_of_trials & (lo > 0)
        done = accept | out_of_trials
        step_taken = jnp.where(accept, state.step, lo)
        new_x = jnp.where(done, project(x + step_taken * state.direction), x)
        new_value = jnp.where(accept, value, jnp.where(take_lo, lo_value, state.value))
        new_grad = jnp.where(accept, grad, jnp.where(take_lo, lo_grad, state.grad))
        new_aux = tree_where(accept, aux, tree_where(take_lo, lo_aux, state.aux))
        searching = state._replace(
            step=next_step, lo=lo, lo_value=lo_value, lo_slope=lo_slope, lo_grad=lo_grad,
            lo_aux=lo_aux, hi=new_hi, hi_value=new_hi_value, trials=trials)

        def restart():
            # No decrease in max_linesearch_steps trials: forget the curvature pairs.
            memory = jax.lax.cond(out_of_trials & ~take_lo, lambda: memory_fn.init(x),
                                  lambda: state.memory)
            return StepwiseState(**line_search_start(new_x, new_value, new_grad, new_aux, memory))

        # A cond, not a select: alone, only the branch taken runs, and the L-BFGS memory
        # (2 image-sized vectors per step) is not copied for the other (under vmap, a
        # batched predicate makes it a select again, with the same values).
        new_state = jax.lax.cond(done, restart, lambda: searching)
        # A renewal evaluates the loss at the pixels and moves nothing: not an iteration.
        return (new_x, new_state, Evaluation(new_x, new_value, new_aux), jnp.int32(1),
                done & ~renewing)

    def renew(state, x, when):
        # The next update evaluates the new loss at x (a step of 0, accepted whatever its
        # value) and starts a line search from there with an empty memory: the curvature
        # pairs and the stored value and gradient belong to the old loss.
        fresh = state._replace(step=jnp.zeros_like(state.step), trials=jnp.int32(0),
                               memory=memory_fn.init(x))
        return tree_where(when, fresh, state)

    return Solver(init, update, 1, renew)


def jaxopt_lbfgs(fun: LossFn, settings: Settings) -> Solver:
    """jaxopt L-BFGS with zoom line search (the package is archived; imported only here);
    with ``settings.bounds``, of ``fun(clip(z))`` (see the module docstring)."""
    return _reparametrised(fun, settings, functools.partial(_jaxopt_lbfgs, settings=settings))


def _jaxopt_lbfgs(fun: LossFn, settings: Settings) -> Solver:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "JAXopt is no longer maintained"
        import jaxopt

    # jaxopt's own line-search defaults (zoom, initial step "increase", max step 1)
    # are kept: a larger max step made its zoom search fail on this problem. Its first
    # step is the raw gradient times a step of at most 1, which on a style-transfer loss
    # (gradients of norm 1e8) throws the pixels far away: losses of 1e25, and with a box
    # every pixel clipped to 0 or 1, where clip's gradient is 0. So the loss it sees is
    # divided by the first gradient's norm, which makes that step at most 1 long (optax's
    # L-BFGS caps its first step the same way); the trace records the loss unscaled.
    def scaled(x, scale):
        value, aux = fun(x)
        return scale * value, aux

    solver = jaxopt.LBFGS(fun=scaled, has_aux=True, history_size=settings.memory_size,
                          maxls=settings.max_linesearch_steps, linesearch="zoom",
                          implicit_diff=False)

    def init(x):
        grad = jax.grad(lambda x: fun(x)[0])(x)
        scale = 1.0 / jnp.maximum(jnp.linalg.norm(grad), jnp.finfo(grad.dtype).tiny)
        return solver.init_state(x, scale), scale

    def update(x, state):
        inner, scale = state
        before = inner.num_fun_eval
        x, inner = solver.update(x, inner, scale)
        return x, (inner, scale), Evaluation(x, inner.value / scale, inner.aux), jnp.asarray(
            inner.num_fun_eval - before, jnp.int32), jnp.bool_(True)

    return Solver(init, update, 2)  # the scale's gradient, and jaxopt's first evaluation


def adam(fun: LossFn, settings: Settings) -> Solver:
    """optax Adam; one loss+gradient evaluation per iteration; with ``settings.bounds``,
    projected onto the box after each step (:func:`optax.projections.projection_box`)."""
    opt = optax.adam(settings.learning_rate)
    lower, upper = _box(settings)

    def update(x, state):
        (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x)
        updates, state = opt.update(grad, state, x)
        new = optax.projections.projection_box(optax.apply_updates(x, updates), lower, upper)
        return new, state, Evaluation(x, value, aux), jnp.int32(1), jnp.bool_(True)

    # A new round changes the loss, not the meaning of Adam's moment estimates: it carries on.
    return Solver(opt.init, update, 0, lambda state, x, when: state)


def make_solver(fun: LossFn, settings: Settings) -> Solver:
    """The backend named by ``settings.method``; :class:`NSTError` for an unknown name."""
    backends = {"lbfgs": optax_lbfgs, "lbfgs-stepwise": stepwise_lbfgs,
                "lbfgs-jaxopt": jaxopt_lbfgs, "adam": adam}
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
    ``nonfinite`` is set when the loss stopped being finite, ``converged`` when
    an iteration changed it by less than ``Settings.tolerance`` (either stops the run).
    """

    pixels: jax.Array
    solver_state: Any
    iteration: jax.Array
    evaluations: jax.Array
    best_pixels: jax.Array
    best_value: jax.Array
    nonfinite: jax.Array
    converged: jax.Array
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
    state = OptimizeState(
        pixels=x0, solver_state=solver.init(x0), iteration=jnp.int32(0),
        evaluations=jnp.int32(solver.init_evaluations),
        best_pixels=x0, best_value=jnp.asarray(jnp.inf, x0.dtype), nonfinite=jnp.bool_(False),
        converged=jnp.bool_(False), trace=trace)
    # optax's line-search state starts with weakly typed scalars that its first update
    # makes strong: a jitted `run` would then compile twice (first call, second call).
    return jax.tree_util.tree_map(lambda a: jax.lax.convert_element_type(a, a.dtype), state)


Solvers = Callable[[jax.Array], Solver]


def _solver_for(solver: Solver | Solvers) -> Solvers:
    return (lambda r: solver) if isinstance(solver, Solver) else solver


def _renewed(solver: Solver, solver_state, pixels: jax.Array, when: jax.Array):
    """``(solver_state, evaluations)``: the state ready for the loss of a new round where
    ``when``, and the evaluations that took."""
    if solver.renew is not None:
        return solver.renew(solver_state, pixels, when), jnp.int32(0)
    return jax.lax.cond(when, lambda: (solver.init(pixels), jnp.int32(solver.init_evaluations)),
                        lambda: (solver_state, jnp.int32(0)))


def step(solver: Solver | Solvers, state: OptimizeState, tolerance: float = 0.0,
         round_length: int = 0) -> OptimizeState:
    """One update: move the pixels, and when it ends an iteration, record the
    trace and keep the best point.

    ``tolerance`` and ``round_length`` (static) are :attr:`Settings.tolerance` and
    :attr:`Settings.round_length`; with rounds, ``solver`` is ``solver_for(round)``.
    """
    solver_for = _solver_for(solver)
    i = state.iteration
    solver = solver_for(i // round_length if round_length else jnp.int32(0))
    pixels, solver_state, evaluation, evaluations, accepted = solver.update(
        state.pixels, state.solver_state)
    finite = jnp.isfinite(evaluation.value) & jnp.all(jnp.isfinite(pixels))
    better = accepted & finite & (evaluation.value < state.best_value)
    converged = jnp.bool_(False)
    if tolerance > 0:
        # NaN before the first iteration: no comparison, so no early stop there.
        previous = jnp.where(i > 0, state.trace.value[jnp.maximum(i - 1, 0)], jnp.nan)
        converged = accepted & finite & (
            jnp.abs(evaluation.value - previous) <= tolerance * jnp.abs(previous))
    if round_length:
        # This iteration ended a round: the next update works on the next round's loss.
        ends_round = accepted & ((i + 1) % round_length == 0)
        solver_state, renewals = _renewed(solver_for((i + 1) // round_length), solver_state,
                                          jnp.where(finite, pixels, state.pixels), ends_round)
        evaluations = evaluations + renewals
    count = state.evaluations + evaluations
    record = lambda t, a: t.at[i].set(jnp.where(accepted, a, t[i]))  # noqa: E731
    trace = Trace(
        value=record(state.trace.value, evaluation.value),
        aux=jax.tree_util.tree_map(record, state.trace.aux, evaluation.aux),
        evaluations=record(state.trace.evaluations, count),
    )
    return OptimizeState(
        # On a non-finite loss keep the last good pixels: the run stops here.
        pixels=jnp.where(finite, pixels, state.pixels),
        solver_state=solver_state,
        iteration=i + accepted.astype(i.dtype),
        evaluations=count,
        best_pixels=jnp.where(better, evaluation.pixels, state.best_pixels),
        best_value=jnp.where(better, evaluation.value, state.best_value),
        nonfinite=accepted & ~finite,
        converged=converged,
        trace=trace,
    )


def run(solver: Solver | Solvers, state: OptimizeState, num_steps: jax.Array | int,
        tolerance: float = 0.0, round_length: int = 0) -> OptimizeState:
    """Advance ``state`` by up to ``num_steps`` iterations (a ``lax.while_loop``).

    Stops early at the trace's capacity, on a non-finite loss, or once converged
    (``tolerance``, static: :attr:`Settings.tolerance`). ``num_steps`` may be a
    traced integer, so one compiled ``run`` serves every chunk size. With
    ``round_length`` (static, :attr:`Settings.round_length`), ``solver`` is
    ``solver_for(round)`` (see the module docstring: rounds).
    """
    capacity = state.trace.value.shape[0]
    stop = jnp.minimum(state.iteration + num_steps, capacity)

    def cond(s):
        return (s.iteration < stop) & ~s.nonfinite & ~s.converged

    return jax.lax.while_loop(cond, functools.partial(step, solver, tolerance=tolerance,
                                                      round_length=round_length), state)


def minimize(fun: LossFn, x0: jax.Array, num_iterations: int,
             settings: Settings = Settings()) -> OptimizeState:
    """Run ``num_iterations`` iterations of ``settings.method`` from ``x0``.

    Pure: wrap in ``jax.jit`` (``num_iterations`` and ``settings`` static) and
    ``jax.vmap`` over anything ``fun`` closes over, ``x0`` included.
    Returns the final :class:`OptimizeState`; use ``best_pixels`` for the result.
    """
    solver = make_solver(fun, settings)
    return run(solver, init(solver, fun, x0, num_iterations), num_iterations, settings.tolerance,
               settings.round_length)
