"""Grids of style transfers as one compiled computation, sharded over devices.

The paper's experiments are grids: α/β ratios (Fig. 4), content layers
(Fig. 5), initialisations (Fig. 6), reconstructions from growing layer sets
(Fig. 2). A :class:`Grid` is a list of complete :class:`~nst_jax.stylize.Config`
points that share what fixes the compiled program (pooling, iteration budget,
optimiser, the style images, masks and colour mode); what differs between
points — α, β, per-layer weights, TV weight, the styles' blend and region
weights, the initialisation and its seed — becomes arrays with a leading *grid* axis.
The grid's content and style layers are the union of its points' layers; a
point gives the layers it does not use weight 0, so even "which content layer"
is an array.

:class:`Sweeper` runs the points as ``jit(vmap(...))``: each point is a full
optimisation with its own stopping (a ``while_loop`` under ``vmap`` masks the
points that have stopped). The grid axis is laid out over a
:class:`jax.sharding.Mesh` of all devices — of every process after
:func:`jax.distributed.initialize` — so XLA splits the grid across devices; the
code path is the same for one CPU, a multi-GPU host or a TPU pod slice.
:func:`run_grid` cuts grids larger than memory into chunks (as many points per
compiled call as :func:`fitting_batch_size` finds room for, unless a batch size is
given) and hands each chunk's results to a callback as soon as it finishes.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nst_jax import colors, optimize
from nst_jax import memory as memory_model  # 'memory' here is bytes per device
from nst_jax.config import INITS, STATIC_FIELDS, STYLE_DISTANCES, SWEEPABLE, Config, ConfigError
from nst_jax.driver import advance
from nst_jax.errors import NSTError
from nst_jax.losses import LossTerms, LossWeights
from nst_jax.stop import Stop, ctrl_c_sets
from nst_jax.stylize import (advance_state, as_style_list, build_loss_fn, distance_arguments,
                             loss_weights, network,
                             optimizer_settings, saved_pixels, start_state, white_noise)
from nst_jax.vgg import CAFFE, LAYER_NAMES, VGG, VGG19, Preprocessing, layer_names

GRID_AXIS = "grid"
INIT_CODES = {name: code for code, name in enumerate(INITS)}  # noise 0, content 1, style 2
# SWEEPABLE (the Config fields, and the 'ratio' shorthand, a sweep may vary) and
# STATIC_FIELDS (those that fix the compiled program) come from nst_jax.config.
__all__ = ["GRID_AXIS", "INIT_CODES", "SWEEPABLE", "STATIC_FIELDS", "Grid", "Point", "Sweeper",
           "PointResult", "SweepProgress", "run_grid", "chunks", "fitting_batch_size",
           "initialize_distributed", "to_host"]


def _changes(combination: dict[str, Any]) -> dict[str, Any]:
    """The :meth:`Config.replace` changes of one point of a product grid. A point that
    sets its layers without setting their weights gets the default weights (1, or 1/L)
    for its own layers."""
    changes = dict(combination)
    for kind in ("content", "style"):
        if f"{kind}_layers" in changes and f"{kind}_layer_weights" not in changes:
            changes[f"{kind}_layer_weights"] = None
    return changes


def _by_depth(layers) -> tuple[str, ...]:
    return tuple(sorted(dict.fromkeys(layers), key=LAYER_NAMES.index))


class Point(NamedTuple):
    """What varies over a grid; every leaf has a leading grid axis ``(N, ...)``.

    Attributes:
      weights: :class:`~nst_jax.losses.LossWeights` over the grid's layers.
      init: ``(N,)`` int32 initialisation code (:data:`INIT_CODES`).
      seed: ``(N,)`` uint32 white-noise seed (0 to 2**32 - 1, as ``Config.seed``).
      noise_amplitude: ``(N,)`` float32.
    """

    weights: LossWeights
    init: Any
    seed: Any
    noise_amplitude: Any


@dataclasses.dataclass(frozen=True)
class Grid:
    """Points of a sweep, optionally the product of named axes.

    Build with :meth:`product` (``Grid.product(base, ratio=[...], seed=[0, 1])``)
    or directly from any list of configs. With ``axes``, the points are the
    product in row-major order (the last axis varies fastest).
    """

    configs: tuple[Config, ...]
    axes: tuple[tuple[str, tuple], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "configs", tuple(self.configs))
        if not self.configs:
            raise NSTError("a sweep needs at least one point")
        first = self.configs[0]
        for config in self.configs:
            for name in STATIC_FIELDS:
                if getattr(config, name) != getattr(first, name):
                    raise NSTError(f"every point of a sweep must share {name} (it fixes the compiled "
                                   f"program): got {getattr(first, name)} and "
                                   f"{getattr(config, name)}; run separate sweeps")
            if config.init not in INIT_CODES:
                raise ConfigError("init", f"of a sweep must be one of {', '.join(INITS)} (not an "
                                          f"image file), got {config.init!r}")
        if self.axes and int(np.prod(self.shape)) != len(self.configs):
            raise NSTError(f"axes of shape {self.shape} do not match {len(self.configs)} points")

    @classmethod
    def product(cls, base: Config = Config(), **axes: Sequence) -> "Grid":
        """The product grid of ``axes`` (names from :data:`SWEEPABLE`) around ``base``."""
        for name, values in axes.items():
            if name not in SWEEPABLE:
                static = " (it fixes the compiled program)" if name in STATIC_FIELDS else ""
                raise NSTError(f"cannot sweep {name!r}{static}; sweepable: {', '.join(SWEEPABLE)}")
            if len(values) == 0:
                raise ConfigError(name, "has no values to sweep")
        axes = {name: tuple(values) for name, values in axes.items()}
        configs = []
        for combination in itertools.product(*axes.values()):
            configs.append(base.replace(**_changes(dict(zip(axes, combination)))))
        return cls(tuple(configs), tuple(axes.items()))

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.axes) or (len(self.configs),)

    def labels(self, index: int) -> dict[str, Any]:
        """``{axis name: value}`` of point ``index`` (empty without axes)."""
        if not self.axes:
            return {}
        position = np.unravel_index(index, self.shape)
        return {name: values[k] for (name, values), k in zip(self.axes, position)}

    @property
    def content_layers(self) -> tuple[str, ...]:
        return _by_depth(l for c in self.configs for l in c.content_layers)

    @property
    def style_layers(self) -> tuple[str, ...]:
        return _by_depth(l for c in self.configs for l in c.style_layers)

    @property
    def distances(self) -> tuple[str, ...]:
        """The style distances of any point (:data:`nst_jax.distances.STYLE_DISTANCES`' order):
        every point computes each, a point's own weights switch the others off."""
        used = {d for c in self.configs for d in c.distance_weights()}
        return tuple(d for d in STYLE_DISTANCES if d in used)

    @property
    def distance_arguments(self) -> dict:
        """:func:`nst_jax.stylize.distance_arguments` of the whole grid: one set of targets, so
        with mean-cov (Gaussians fitted to a blend of the styles) every point must share the
        blend, with sliced (directions drawn from the seed) the seed."""
        first = self.configs[0]
        if "mean-cov" in self.distances and any(c.style_mix() != first.style_mix()
                                                for c in self.configs):
            raise NSTError("the style distance mean-cov fits its target to one blend of the "
                           "styles: sweep the blend weights with gram only")
        if "sliced" in self.distances and any(c.seed != first.seed for c in self.configs):
            raise NSTError("the style distance sliced draws its directions from the seed, one "
                           "set for the whole sweep: sweep seeds with the other distances")
        return dict(distance_arguments(first), distances=self.distances)

    @property
    def iterations(self) -> int:
        return self.configs[0].iterations

    @property
    def settings(self) -> optimize.Settings:
        return optimizer_settings(self.configs[0], self.distances)

    @property
    def pooling(self) -> str:
        return self.configs[0].pooling

    def points(self, indices: Sequence[int] | None = None, content_layers: Sequence[str] | None = None,
               style_layers: Sequence[str] | None = None,
               distances: Sequence[str] | None = None) -> Point:
        """The arrays of the points ``indices`` (default all), stacked on a leading axis,
        with layer weights over ``content_layers`` / ``style_layers`` and distance weights
        over ``distances`` (default the grid's)."""
        indices = range(len(self)) if indices is None else indices
        content_layers = self.content_layers if content_layers is None else tuple(content_layers)
        style_layers = self.style_layers if style_layers is None else tuple(style_layers)
        distances = self.distances if distances is None else tuple(distances)
        rows = [_point(self.configs[i], content_layers, style_layers, distances) for i in indices]
        return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *rows)


def _point(config: Config, content_layers, style_layers, distances) -> Point:
    return Point(loss_weights(config, content_layers, style_layers, distances),
                 np.int32(INIT_CODES[config.init]), np.uint32(config.seed),
                 np.float32(config.noise_amplitude))


def start_pixels(point: Point, content: jax.Array, style: jax.Array) -> jax.Array:
    """One point's starting image ``(H, W, 3)``: white noise, the content, or the
    style image (already at the content's size); as :func:`nst_jax.stylize.initial_pixels`."""
    noise = white_noise(point.seed, content.shape, point.noise_amplitude)
    return jnp.select([point.init == INIT_CODES["noise"], point.init == INIT_CODES["content"]],
                      [noise, content], style)


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None) -> None:
    """Join a multi-process sweep: :func:`jax.distributed.initialize`, before any other JAX call.

    On a TPU pod slice, SLURM or Open MPI the arguments are detected; elsewhere
    start one process per host with the same ``coordinator_address``
    (``host:port`` of process 0), ``num_processes`` and its own ``process_id``.
    CPU processes exchange data through gloo (JAX's CPU collectives).
    """
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # an older JAX without the option: CPU stays single-process
        pass
    try:
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NSTError(f"could not join the multi-process run: {first}") from None


def default_mesh() -> Mesh:
    """A 1-D mesh over every device of every process, its axis named :data:`GRID_AXIS`."""
    return Mesh(np.asarray(jax.devices()), (GRID_AXIS,))


def place(mesh: Mesh, tree, spec: PartitionSpec):
    """Host arrays -> global arrays on ``mesh`` (works across processes: each fills its shards)."""
    sharding = NamedSharding(mesh, spec)

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree_util.tree_map(put, tree)


def to_host(tree):
    """Global arrays -> NumPy on every process (an all-gather when there are several)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, tree)


@functools.lru_cache(maxsize=16)
def grid_programs(fn: Callable, settings: optimize.Settings, iterations: int, mesh: Mesh):
    """The compiled functions of a grid of the loss ``fn`` (:attr:`Loss.fn`), vmapped over
    the points and sharded along ``mesh``'s grid axis, the loss's data an argument:
    ``start(content, style_start, points, data)``, ``advance(state, num_steps, weights,
    data)`` and ``terms(pixels, weights, data)``. Cached like
    :func:`nst_jax.stylize.compiled_programs`: a second grid of the same shape (other
    images, other values) traces and compiles nothing."""
    on_grid = NamedSharding(mesh, PartitionSpec(GRID_AXIS))

    def start(content, style_start, point, data):
        return start_state(fn, settings, iterations, start_pixels(point, content, style_start),
                           point.weights, data)

    def advance(state, num_steps, weights, data):
        return advance_state(fn, settings, state, num_steps, weights, data)

    # Not donating the state: an interrupt between calls must leave the last one readable.
    return (jax.jit(jax.vmap(start, in_axes=(None, None, 0, None)), out_shardings=on_grid),
            jax.jit(jax.vmap(advance, in_axes=(0, None, 0, None)), out_shardings=on_grid),
            jax.jit(jax.vmap(fn, in_axes=(0, 0, None)), out_shardings=on_grid))


class Sweeper:
    """The compiled functions of one grid shape: start, advance and score a batch of points.

    The network's variables and the style/content targets are an argument of the
    compiled functions (:func:`grid_programs`, shared by every Sweeper of the same
    shape), replicated like the images over the mesh, and the points are sharded
    along the grid axis; a batch's size must be a multiple of the mesh size.

    Args:
      content / style: RGB float32 in [0, 1]; the output has the content's size. ``style``
        may be a list of images (blended, or one per region).
      params: the VGG params tree.
      content_layers / style_layers: the grid's layers (:attr:`Grid.content_layers`).
      iterations: the trace capacity (:attr:`Grid.iterations`).
      settings: :class:`nst_jax.optimize.Settings` (default: those of ``Config()``).
      module / preprocessing: the VGG module and the weights' preprocessing.
      mesh: default :func:`default_mesh`.
      content_masks / style_masks: the regions, as :func:`nst_jax.stylize.prepare`.
      preserve_colors: :data:`nst_jax.colors.MODES`; the points' images are finished
        with it (:func:`nst_jax.colors.finish`).
      distances / style_mix / seed: the style distances any point uses and what their
        targets need (:attr:`Grid.distance_arguments`; default the paper's Gram matrices).
    """

    def __init__(self, content: np.ndarray, style: np.ndarray | Sequence[np.ndarray], params, *,
                 content_layers: Sequence[str], style_layers: Sequence[str], iterations: int,
                 settings: optimize.Settings | None = None, module: VGG | None = None,
                 preprocessing: Preprocessing = CAFFE, mesh: Mesh | None = None,
                 content_masks: np.ndarray | None = None,
                 style_masks: Sequence[np.ndarray | None] | None = None,
                 preserve_colors: str = "none", distances: Sequence[str] = ("gram",),
                 style_mix: np.ndarray | None = None, seed: int = 0):
        from nst_jax.images import resize_to

        self.preserve_colors = preserve_colors
        self.original_content = np.asarray(content, np.float32)
        content, styles = colors.prepare(preserve_colors, content, as_style_list(style))
        content = np.asarray(content, np.float32)
        styles = [np.asarray(s, np.float32) for s in styles]
        self.num_styles = len(styles)
        self.num_regions = 1 if content_masks is None else len(content_masks)
        self.mesh = mesh or default_mesh()
        self.iterations = iterations
        self.settings = settings = settings or optimizer_settings(Config())
        self.content_layers, self.style_layers = tuple(content_layers), tuple(style_layers)
        self.distances = tuple(distances)
        module = self.module = module or VGG19()
        replicated = functools.partial(place, self.mesh, spec=PartitionSpec())
        self.content = replicated(np.asarray(content, np.float32))
        # Initialisation from the style image starts from (the first) one at the content's size.
        self.style_start = replicated(resize_to(styles[0], content.shape[:2]))
        loss_fn = build_loss_fn(params, content, styles, content_layers, style_layers, module,
                                preprocessing, style_masks=style_masks, content_masks=content_masks,
                                distances=self.distances, style_mix=style_mix, seed=seed)
        # The kernels and targets are an argument, replicated (see Loss): the programs are
        # those of every grid of this shape, whatever its images and weights.
        self._data = replicated(loss_fn.data)
        self._start, self._advance, self._terms = grid_programs(loss_fn.fn, settings, iterations,
                                                                self.mesh)

    @classmethod
    def for_grids(cls, content: np.ndarray, style: np.ndarray | Sequence[np.ndarray], params,
                  grids: Sequence[Grid], *, module: VGG | None = None,
                  preprocessing: Preprocessing = CAFFE, mesh: Mesh | None = None,
                  content_masks: np.ndarray | None = None,
                  style_masks: Sequence[np.ndarray | None] | None = None) -> "Sweeper":
        """One Sweeper able to run each of ``grids`` (over the union of their layers), so
        grids that share the program (:data:`STATIC_FIELDS`) share one compilation."""
        merged = Grid(tuple(c for g in grids for c in g.configs))  # checks the shared fields
        first = merged.configs[0]
        return cls(content, style, params, content_layers=merged.content_layers,
                   style_layers=merged.style_layers, iterations=merged.iterations,
                   settings=merged.settings, module=module or network(first),
                   preprocessing=preprocessing, mesh=mesh, content_masks=content_masks,
                   style_masks=style_masks, preserve_colors=first.preserve_colors,
                   **merged.distance_arguments)

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def height(self) -> int:
        return self.content.shape[0]

    @property
    def width(self) -> int:
        return self.content.shape[1]

    def check(self, grid: Grid) -> None:
        """:class:`NSTError` unless this Sweeper's program can run ``grid``."""
        first = grid.configs[0]
        mine = {"iterations": (self.iterations, first.iterations),
                "optimizer settings": (self.settings, grid.settings),
                "pooling": (getattr(self.module, "pooling", first.pooling), first.pooling),
                "remat": (getattr(self.module, "remat", first.remat), first.remat),
                "precision": (getattr(self.module, "dtype", None) or "float32", first.precision),
                "preserve_colors": (self.preserve_colors, first.preserve_colors),
                "number of style images": (self.num_styles, len(first.style)),
                "number of regions": (self.num_regions, len(first.content_masks or [None]))}
        for name, (value, wanted) in mine.items():
            if value != wanted:
                raise NSTError(f"this sweep was compiled for {name} {value}, the grid has {wanted}")
        missing = (set(grid.content_layers) - set(self.content_layers)) | (
            set(grid.style_layers) - set(self.style_layers))
        if missing:
            raise NSTError(f"this sweep was compiled without the layers {', '.join(sorted(missing))}")
        missing = set(grid.distances) - set(self.distances)
        if missing:
            raise NSTError(f"this sweep was compiled without the style distance(s) "
                           f"{', '.join(sorted(missing))}")

    def run(self, grid: Grid, *, batch_size: int | None = None, fixed_batch: bool = False,
            steps_per_call: int = 10,
            on_chunk: Callable[[list[PointResult]], None] | None = None,
            on_progress: Callable[[SweepProgress], None] | None = None,
            memory: float | None = None, stop: Stop | None = None) -> list[PointResult]:
        """Run every point of ``grid``, ``batch_size`` points per compiled call (default:
        :meth:`fitting_batch_size`, of ``memory`` bytes per device).

        Each chunk of points is advanced ``steps_per_call`` iterations per call
        (:func:`nst_jax.driver.advance`) so ``on_progress`` can report; ``on_chunk`` gets
        each chunk's results as soon as it finishes. When ``stop`` is set (a
        :class:`nst_jax.stop.Stop`, default a fresh one; Ctrl-C sets it where Python
        handles SIGINT: :func:`nst_jax.stop.ctrl_c_sets`), the current chunk's unfinished
        points are handed to ``on_chunk`` with status ``'interrupted'`` (their best pixels
        so far) and the run ends there, returning the results so far. ``fixed_batch``: pad every chunk to ``batch_size`` points even when
        the grid is smaller, so grids of any size reuse one compiled program. Returns the
        results in grid order.
        """
        self.check(grid)
        started = time.monotonic()
        batch_size = batch_size or self.fitting_batch_size(grid, memory)
        plan = chunks(len(grid), batch_size, self.num_devices, fixed=fixed_batch)
        results: list[PointResult] = []
        stop = stop if stop is not None else Stop()
        with ctrl_c_sets(stop):
            for number, indices in enumerate(plan):
                if number and stop.is_set():  # stopped at the end of the last chunk
                    break
                points = self.place(grid.points(indices, self.content_layers, self.style_layers,
                                                 self.distances))
                batch = _Batch(self, points, grid.iterations)
                for _ in advance(batch, chunk=steps_per_call, stop=stop):
                    if on_progress:
                        done_here = len({i for i, f in zip(indices, batch.finished) if f})
                        on_progress(SweepProgress(number, len(plan), batch.iteration,
                                                  grid.iterations, len(results) + done_here,
                                                  len(grid), time.monotonic() - started))
                status = None if batch.done else "interrupted"
                chunk = _results(self, grid, indices, points, batch.state, status)
                results.extend(chunk)
                if on_chunk:
                    on_chunk(chunk)
                if status == "interrupted":
                    break
        return results

    def fitting_batch_size(self, grid: Grid, memory: float | None = None) -> int:
        """:func:`fitting_batch_size` of ``grid`` on this Sweeper's images, network and mesh."""
        return fitting_batch_size(grid, (self.height, self.width), self.module, mesh=self.mesh,
                                  memory=memory)

    def place(self, points: Point) -> Point:
        """Host point arrays -> arrays sharded along the grid axis."""
        size = len(points.init)
        if size % self.num_devices:
            raise NSTError(f"a batch of {size} points does not split over {self.num_devices} devices")
        return place(self.mesh, points, PartitionSpec(GRID_AXIS))

    def start(self, points: Point) -> optimize.OptimizeState:
        """The batch's initial states (one initial loss+gradient evaluation each)."""
        return self._start(self.content, self.style_start, points, self._data)

    def advance(self, state: optimize.OptimizeState, num_steps: int,
                points: Point) -> optimize.OptimizeState:
        """Up to ``num_steps`` more iterations of every point (points that stopped stay put)."""
        return self._advance(state, jnp.int32(num_steps), points.weights, self._data)

    def terms(self, pixels: jax.Array, points: Point) -> tuple[jax.Array, LossTerms]:
        """``(total (B,), LossTerms of (B,))`` at ``pixels (B, H, W, 3)``."""
        return self._terms(pixels, points.weights, self._data)


@dataclasses.dataclass
class PointResult:
    """One grid point's outcome.

    Attributes:
      index: position in the grid (row-major over its axes).
      config: the point's :class:`Config`; labels: ``{axis: value}``.
      image: the best pixels rounded to 8 bits (what a PNG of them holds), RGB float32
        in [0, 1], ``(H, W, 3)``, with the content's colours put back where
        ``preserve_colors`` asks.
      total / content / style / tv: the loss and its (unweighted) terms at the best
        pixels rounded to 8 bits (before any colours are put back).
      trace: ``(iterations,)`` total loss per iteration (NaN after the last one).
      iterations / evaluations: iterations run and loss+gradient evaluations made.
      status: ``'completed'``, ``'converged'``, ``'nonfinite'`` or ``'interrupted'``.
    """

    index: int
    config: Config
    labels: dict
    image: np.ndarray
    total: float
    content: float
    style: float
    tv: float
    trace: np.ndarray
    iterations: int
    evaluations: int
    status: str

    def summary(self) -> dict:
        """The JSON-able fields (no image, no trace)."""
        return {"index": self.index, **{k: _jsonable(v) for k, v in self.labels.items()},
                "total": self.total, "content": self.content, "style": self.style, "tv": self.tv,
                "iterations": self.iterations, "evaluations": self.evaluations,
                "status": self.status}


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return "+".join(str(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


@dataclasses.dataclass(frozen=True)
class SweepProgress:
    """Passed to ``on_progress`` after every compiled call."""

    chunk: int
    num_chunks: int
    iteration: int  # the chunk's furthest point
    iterations: int
    points_done: int  # points that have stopped (finished chunks, and this chunk's)
    num_points: int
    seconds: float  # since run_grid started


def chunks(num_points: int, batch_size: int, num_devices: int, fixed: bool = False
           ) -> list[list[int]]:
    """Point indices per chunk. Chunk sizes are ``batch_size`` (at most the grid's
    size unless ``fixed``) rounded up to a multiple of ``num_devices``; the last
    chunk is padded by repeating its last point, so every chunk has the same
    shape and the program compiles once."""
    size = max(1, batch_size if fixed else min(batch_size, num_points))
    size = -(-size // num_devices) * num_devices
    out = []
    for begin in range(0, num_points, size):
        indices = list(range(begin, min(begin + size, num_points)))
        out.append(indices + [indices[-1]] * (size - len(indices)))
    return out


def fitting_batch_size(grid: Grid, shape: tuple[int, int], module: VGG | None = None, *,
                       mesh: Mesh | None = None, memory: float | None = None) -> int:
    """Points of ``grid`` per compiled call, on images of ``shape`` ``(H, W)`` px: the whole
    grid if it fits in memory, else chunks as even as the fit allows (a multiple of the
    mesh's devices).

    The memory model is ``--tile-size auto``'s (:mod:`nst_jax.memory`): the process's
    :data:`~nst_jax.memory.BASE_BYTES` once per device and :func:`~nst_jax.memory.point_bytes`
    per point (its image-sized arrays, L-BFGS history and Gram matrices), planned within
    :data:`~nst_jax.memory.AUTO_SHARE` of ``memory``: bytes per device, default
    :func:`~nst_jax.memory.machine_memory` (CPU devices share the machine's).

    Raises:
      NSTError: one point per device needs more than the whole ``memory``.
    """
    module = module or network(grid.configs[0])
    mesh = mesh or default_mesh()
    devices = mesh.size
    memory = memory_model.machine_memory() if memory is None else float(memory)
    # On a CPU all local devices share the machine's memory.
    sharing = jax.local_device_count() if mesh.devices.flat[0].platform == "cpu" else 1
    channels = dict(zip(layer_names(module.blocks), (c for b in module.blocks for c in b)))
    regions = len(grid.configs[0].content_masks or [None])
    each = memory_model.point_bytes(shape, grid.settings.memory_size,
                                    [channels[l] for l in grid.style_layers] * regions)
    return memory_model.batch_size(len(grid), each, devices, sharing, memory, shape)


def run_grid(content: np.ndarray, style: np.ndarray | Sequence[np.ndarray], params, grid: Grid, *,
             module: VGG | None = None, preprocessing: Preprocessing = CAFFE,
             batch_size: int | None = None, mesh: Mesh | None = None, steps_per_call: int = 10,
             on_chunk: Callable[[list[PointResult]], None] | None = None,
             on_progress: Callable[[SweepProgress], None] | None = None,
             content_masks: np.ndarray | None = None,
             style_masks: Sequence[np.ndarray | None] | None = None,
             memory: float | None = None, stop: Stop | None = None) -> list[PointResult]:
    """Compile ``grid``'s program and run it (:meth:`Sweeper.run`); see :class:`Sweeper`.
    Without ``batch_size``, as many points per call as fit in ``memory`` (bytes per device;
    :func:`fitting_batch_size`)."""
    sweeper = Sweeper.for_grids(content, style, params, [grid], module=module,
                                preprocessing=preprocessing, mesh=mesh,
                                content_masks=content_masks, style_masks=style_masks)
    return sweeper.run(grid, batch_size=batch_size, steps_per_call=steps_per_call,
                       on_chunk=on_chunk, on_progress=on_progress, memory=memory, stop=stop)


class _Batch:
    """A chunk of points as :func:`nst_jax.driver.advance` steps it: ``state`` (batched),
    ``finished`` per point, ``iteration`` of the furthest point."""

    def __init__(self, sweeper: Sweeper, points: Point, iterations: int):
        self.sweeper, self.points, self.iterations = sweeper, points, iterations
        self.state = sweeper.start(points)
        self._read()

    def _read(self) -> None:
        iteration, stopped = to_host((self.state.iteration,
                                      self.state.nonfinite | self.state.converged))
        self.finished = stopped | (iteration >= self.iterations)
        self.iteration = int(iteration.max())

    @property
    def done(self) -> bool:
        return bool(np.all(self.finished))

    def step(self, num_iterations: int) -> None:
        self.state = self.sweeper.advance(self.state, num_iterations, self.points)
        self._read()


def _results(sweeper: Sweeper, grid: Grid, indices: list[int], points: Point,
             state: optimize.OptimizeState, status: str | None) -> list[PointResult]:
    best = saved_pixels(state)
    total, terms = sweeper.terms(best, points)
    finish = jax.vmap(functools.partial(colors.finish, sweeper.preserve_colors,
                                        content=sweeper.original_content))
    image = jnp.round(finish(best) * 255.0) / 255.0
    host = to_host({"image": image, "total": total, "terms": terms, "trace": state.trace.value,
                    "iteration": state.iteration, "evaluations": state.evaluations,
                    "nonfinite": state.nonfinite, "converged": state.converged})
    out, seen = [], set()
    for row, index in enumerate(indices):
        if index in seen:  # padding
            continue
        seen.add(index)
        point_status = status or ("nonfinite" if host["nonfinite"][row] else
                                  "converged" if host["converged"][row] else "completed")
        out.append(PointResult(
            index=index, config=grid.configs[index], labels=grid.labels(index),
            image=host["image"][row], total=float(host["total"][row]),
            content=float(host["terms"].content[row]), style=float(host["terms"].style[row]),
            tv=float(host["terms"].tv[row]), trace=host["trace"][row],
            iterations=int(host["iteration"][row]), evaluations=int(host["evaluations"][row]),
            status=point_status))
    return out
