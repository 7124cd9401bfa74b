"""The run driver: the one loop that advances an optimisation, for every tool.

A run of :class:`~nst_jax.config.Config` is a ladder of scales
(:func:`nst_jax.coarse_to_fine.plan`; one scale without ``start_size``), each a
prepared :class:`~nst_jax.stylize.Stylization` advanced in *chunks* of iterations, each
chunk one compiled call. :class:`Run` owns that loop: it prepares each scale
(:func:`nst_jax.coarse_to_fine.stylizations`), counts the global step over the
scales, restores a checkpointed state when resuming (:class:`Resume`), stops when its
:class:`~nst_jax.stop.Stop` token is set, and calls *hooks* at fixed points:

======================  =========================================================
``EveryN(n)``           after a chunk that ends on a multiple of ``n`` iterations of
                        the scale, unless the scale is done (chunks are cut to end
                        there); for snapshots and checkpoints
``EVERY_CHUNK``         after every chunk; for progress lines and streaming
``SCALE_START``         once a scale is prepared (compiled), before its first chunk
``SCALE_END``           once a scale has run to its end (not when stopped)
``RUN_END``             once, when the run ends for any reason
======================  =========================================================

A hook is a :class:`Hook`: a rule (when) and a function of :class:`At` (where the run
stands). Rules are objects, as kauldron's ``EveryNSteps`` and Flax's periodic actions:
a new kind of "when" is a new class with :meth:`Rule.fires` (and, when chunks must end
on its steps, :meth:`Rule.boundary`), not arithmetic inside a loop.

:func:`advance` is the inner loop on its own, for anything with ``step(n)``, ``done``
and ``iteration`` — a :class:`~nst_jax.stylize.Stylization`, or a batch of sweep points
(:class:`nst_jax.sweep.Sweeper` drives its chunks of points with it). No other module
calls ``step`` in a loop (tests/test_driver.py checks).

Iterating over a :class:`Run` yields an :class:`At` after every chunk (the web page
streams them); calling it runs to the end. Either way :attr:`Run.outcome` is the
:class:`Outcome`: the last scale and its job, the global step, and the status
(``completed``, ``converged``, ``nonfinite``, or the stop token's reason).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from nst_jax import coarse_to_fine, stop as stopping
from nst_jax.config import Config
from nst_jax.coarse_to_fine import Scale
from nst_jax.stop import Stop
from nst_jax.stylize import Inputs, Network, Stylization

# Iterations per compiled call when the caller does not say.
CHUNK = 10


class Steppable(Protocol):
    """What :func:`advance` drives: ``step(n)`` runs up to ``n`` more iterations."""

    def step(self, num_iterations: int): ...

    @property
    def done(self) -> bool: ...

    @property
    def iteration(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class At:
    """Where a run stands, as a hook sees it: ``event`` (``"chunk"``, ``"scale_start"``,
    ``"scale_end"``, ``"run_end"``), the ``scale`` and its ``job``, ``step``: iterations
    done over every scale so far, ``total``: iterations of the whole run, ``status`` (at
    ``run_end``; else ``"running"``)."""

    event: str
    scale: Scale
    job: Stylization
    step: int
    total: int
    status: str = "running"

    @property
    def iteration(self) -> int:
        """Iterations done at this scale."""
        return self.job.iteration


class Rule(Protocol):
    """When a hook runs."""

    def fires(self, at: At) -> bool: ...

    def boundary(self, iteration: int) -> int | None:
        """The next iteration (of the scale) after ``iteration`` that a chunk must end on
        for this rule to see it, or None."""
        ...


@dataclasses.dataclass(frozen=True)
class EveryN:
    """After a chunk ending on a multiple of ``n`` iterations of its scale, unless the
    scale is done there (its end is ``SCALE_END``'s); ``n = 0``: never."""

    n: int

    def fires(self, at: At) -> bool:
        return (at.event == "chunk" and self.n > 0 and at.iteration % self.n == 0
                and not at.job.done)

    def boundary(self, iteration: int) -> int | None:
        return (iteration // self.n + 1) * self.n if self.n > 0 else None


@dataclasses.dataclass(frozen=True)
class On:
    """At every event named ``event``."""

    event: str

    def fires(self, at: At) -> bool:
        return at.event == self.event

    def boundary(self, iteration: int) -> int | None:
        return None


EVERY_CHUNK = On("chunk")
SCALE_START = On("scale_start")
SCALE_END = On("scale_end")
RUN_END = On("run_end")


@dataclasses.dataclass(frozen=True)
class Hook:
    """``call(at)`` whenever ``when.fires(at)``."""

    when: Rule
    call: Callable[[At], object]


@dataclasses.dataclass(frozen=True)
class Resume:
    """Continue a saved run: begin at scale ``scale`` (its index), whose job's state is
    replaced by ``restore(state)`` (``state``: the freshly prepared one, as a template)."""

    scale: int
    restore: Callable


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a run ended: its last ``scale`` and that scale's ``job`` (``job.saved()`` is the
    output), ``step`` (iterations over every scale) and ``status``."""

    scale: Scale
    job: Stylization
    step: int
    status: str


def status_of(job, stop: Stop | None = None) -> str:
    """``nonfinite`` or ``converged`` as ``job``'s state says, else the reason ``stop`` was
    set (``interrupted``, ``stopped``), else ``completed``."""
    if bool(job.state.nonfinite):
        return "nonfinite"
    if stop is not None and stop.is_set():
        return getattr(stop, "reason", None) or stopping.STOPPED
    if bool(job.state.converged):
        return "converged"
    return "completed"


def advance(job: Steppable, *, chunk: int = CHUNK, rules: Sequence[Rule] = (),
            stop: Stop | None = None) -> Iterator[int]:
    """The inner loop: step ``job`` by chunks of at most ``chunk`` iterations, each cut to
    end on the next :meth:`Rule.boundary` of ``rules``, until it is done or ``stop`` is
    set; yield the iteration after each chunk."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    while not job.done and not (stop is not None and stop.is_set()):
        iteration = job.iteration
        target = iteration + chunk
        for rule in rules:
            boundary = rule.boundary(iteration)
            if boundary is not None:
                target = min(target, boundary)
        job.step(target - iteration)
        yield job.iteration


class Run:
    """One run of ``config`` on ``network`` (see the module docstring).

    Args:
      config: the run's settings (every scale's, :func:`nst_jax.coarse_to_fine.plan`).
      network: :func:`nst_jax.stylize.load_network` of ``config``.
      inputs: :func:`nst_jax.stylize.load_inputs` of ``config`` if already read.
      chunk: iterations per compiled call.
      hooks: :class:`Hook` s, called in this order at each point.
      stop: the token that ends the run early (default: a fresh one). While the run is
        under way in the main thread of a program that leaves SIGINT to Python, Ctrl-C
        sets it (:func:`nst_jax.stop.ctrl_c_sets`); the command-line runner sets the
        token it hands out itself.
      resume: a :class:`Resume`, to continue a saved run.
    """

    def __init__(self, config: Config, network: Network, *, inputs: Inputs | None = None,
                 chunk: int = CHUNK, hooks: Sequence[Hook] = (), stop: Stop | None = None,
                 resume: Resume | None = None):
        if int(chunk) < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.config, self.network, self.inputs = config, network, inputs
        self.chunk, self.hooks, self.resume = int(chunk), tuple(hooks), resume
        self.stop = stop if stop is not None else Stop()
        self.scales = coarse_to_fine.plan(config)
        self.total = sum(s.config.iterations for s in self.scales)
        self.outcome: Outcome | None = None

    def before(self, scale: Scale) -> int:
        """Iterations of the scales before ``scale``."""
        return sum(s.config.iterations for s in self.scales[:scale.index])

    def _call(self, at: At) -> None:
        for hook in self.hooks:
            if hook.when.fires(at):
                hook.call(at)

    def __iter__(self) -> Iterator[At]:
        with stopping.ctrl_c_sets(self.stop):
            yield from self._scales()

    def _scales(self) -> Iterator[At]:
        first = self.resume.scale if self.resume is not None else 0
        rules = [hook.when for hook in self.hooks]
        ladder = coarse_to_fine.stylizations(self.config, self.network, first=first,
                                             inputs=self.inputs)
        while True:
            scale = job = at = None  # the next scale needs the memory the last one held
            scale, job = next(ladder)  # prepares (compiles) the scale
            if self.resume is not None and scale.index == first:
                job.state = self.resume.restore(job.state)
            before = self.before(scale)
            self._call(At("scale_start", scale, job, before + job.iteration, self.total))
            for iteration in advance(job, chunk=self.chunk, rules=rules, stop=self.stop):
                at = At("chunk", scale, job, before + iteration, self.total)
                self._call(at)
                yield at
            if not job.done or bool(job.state.nonfinite):
                break
            self._call(At("scale_end", scale, job, before + job.iteration, self.total))
            if scale.last or self.stop.is_set():  # a stop: not worth compiling the next scale
                break
        ladder.close()
        status = status_of(job, self.stop)
        self.outcome = Outcome(scale, job, self.before(scale) + job.iteration, status)
        self._call(At("run_end", scale, job, self.outcome.step, self.total, status))

    def __call__(self) -> Outcome:
        """Run to the end; the :class:`Outcome`."""
        for _ in self:
            pass
        return self.outcome


class Jobs:
    """The shape of a run of many jobs one after another (the batches of a folder of
    photos, the frames or passes of a clip): iterating it runs them and yields progress,
    with Ctrl-C setting :attr:`stop` meanwhile (:func:`nst_jax.stop.ctrl_c_sets`);
    calling it runs to the end. Either way :attr:`status` then says how it ended: what
    :meth:`_jobs` set (e.g. ``nonfinite``), else the stop's reason, else ``completed``.
    A subclass sets ``stop`` and ``status = None`` and writes :meth:`_jobs`, each job
    advanced by :func:`advance`."""

    stop: Stop
    status: str | None

    def _jobs(self) -> Iterator:
        raise NotImplementedError

    def __iter__(self) -> Iterator:
        with stopping.ctrl_c_sets(self.stop):
            yield from self._jobs()
        if self.status is None:
            self.status = ((self.stop.reason or stopping.STOPPED) if self.stop.is_set()
                           else "completed")

    def __call__(self) -> str:
        """Run to the end; the :attr:`status`."""
        for _ in self:
            pass
        return self.status


def run(config: Config, network: Network, **options) -> Outcome:
    """``Run(config, network, **options)()``: the whole run, its :class:`Outcome`."""
    return Run(config, network, **options)()
