"""Many images of one size as one compiled, vmapped batch: a folder of photos, the frames
of a video (issue: "frames of one video share a size: they are exactly what ``vmap`` and a
device mesh are for").

A sweep (:mod:`nst_jax.sweep`) varies the *weights* over one content image; a batch
varies the *images* under one set of weights. Each item has its own content, hence its
own targets (the content activations ``P^l``, and the style's Gram matrices too, which
depend on the content where a colour mode matches the style to it), its own start, and,
for video, its own temporal :class:`~nst_jax.temporal.Target` (Ruder et al.'s eq. 7 via
:func:`nst_jax.temporal.with_temporal`). The network's variables and the weights are
shared. The programs are ``jit(vmap(...))`` of the same start and L-BFGS loop as a single
run (:func:`nst_jax.stylize.start_state`, :func:`~nst_jax.stylize.advance_state`), with the
targets a batched *argument*: cached per shape, so every batch of the same shape (the next
chunk of photos, the next pass over a clip) compiles nothing. The batch axis is laid out
over the devices' mesh as a sweep's grid axis is (:func:`nst_jax.sweep.default_mesh`), so
one code path serves one CPU, a GPU host or a pod slice.

:class:`Batch` is what :func:`nst_jax.driver.advance` steps. :func:`fitting_batch_size`
sizes chunks with the memory model of ``--tile-size auto`` (:mod:`nst_jax.memory`). A batch
is never tiled: an item too large for memory is refused (run it on its own, tiled).
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nst_jax import colors, images, memory as memory_model, optimize, temporal
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.inputs import Network
from nst_jax.losses import LossTerms
from nst_jax.stylize import (advance_state, compute_targets, device_features, distance_arguments,
                             init_of,
                             initial_pixels, loss_weights, optimizer_settings, saved_pixels,
                             start_state, untiled_loss)
from nst_jax.sweep import GRID_AXIS, default_mesh, place, to_host
from nst_jax.vgg import layer_names

# How each part of the loss's data is batched: the variables shared, the targets per item;
# with a temporal term, its Target per item too.
PLAIN_AXES = (None, 0)
TEMPORAL_AXES = ((None, 0), 0)


@functools.lru_cache(maxsize=16)
def batch_programs(fn, settings: optimize.Settings, iterations: int, mesh: Mesh, data_axes):
    """``start(x0, weights, data)``, ``advance(state, num_steps, weights, data)`` and
    ``terms(pixels, weights, data)`` of the loss ``fn`` vmapped over a batch (``x0``,
    the state and the pixels batched; ``data`` batched as ``data_axes`` says), the batch
    sharded along ``mesh``'s grid axis. Cached: a batch of the same shape reuses them."""
    on_batch = NamedSharding(mesh, PartitionSpec(GRID_AXIS))

    def start(x0, weights, data):
        return start_state(fn, settings, iterations, x0, weights, data)

    def advance(state, num_steps, weights, data):
        return advance_state(fn, settings, state, num_steps, weights, data)

    # The state is not donated: an interrupt between calls leaves the last one readable.
    return (jax.jit(jax.vmap(start, in_axes=(0, None, data_axes)), out_shardings=on_batch),
            jax.jit(jax.vmap(advance, in_axes=(0, None, None, data_axes)),
                    out_shardings=on_batch),
            jax.jit(jax.vmap(fn, in_axes=(0, None, data_axes)), out_shardings=on_batch))


class ItemResult(NamedTuple):
    """One item's outcome: ``image`` (uint8 or uint16, the content's colours put back
    where ``preserve_colors`` asks), ``pixels`` (float32 in [0, 1], as optimised and
    rounded to the bit depth: what a next frame's temporal term warps), the loss
    ``total`` of those pixels (eq. 7, plus γ L_temporal with a temporal term) and its eq. 7
    ``terms``, ``iterations``,
    ``evaluations`` and ``status`` (``completed``, ``converged``, ``nonfinite``)."""

    image: np.ndarray
    pixels: np.ndarray
    total: float
    terms: LossTerms
    iterations: int
    evaluations: int
    status: str


def padded(items: Sequence, size: int) -> list:
    """``items`` padded to ``size`` by repeating the last (as :func:`nst_jax.sweep.chunks`
    pads a grid's last chunk: every call has the same shape)."""
    items = list(items)
    if not items or len(items) > size:
        raise ValueError(f"{len(items)} items do not fit a batch of {size}")
    return items + [items[-1]] * (size - len(items))


class Batch:
    """``len(contents)`` style transfers of ``config`` advanced together, one compiled call
    per :meth:`step`; a :class:`~nst_jax.driver.Steppable` for :func:`nst_jax.driver.advance`.

    Args:
      config: the settings every item shares (``config.content`` is not read; no regions
        or tiles: a batch refuses them).
      network: :func:`nst_jax.inputs.load_network`.
      contents: ``(H, W, 3)`` RGB float32 in [0, 1], all one shape.
      styles: the style image(s), as :func:`nst_jax.stylize.prepare` takes them.
      starts: each item's starting pixels (as optimised), or None: ``config.init``.
      targets: each item's :class:`~nst_jax.temporal.Target`, or None (no temporal term).
      temporal_weight: γ of the temporal term.
      style_masks: one mask per style image, or None.
      size: pad the batch to this many items (default: ``len(contents)`` rounded up to a
        multiple of the mesh's devices), so that a short last chunk reuses the program.
      mesh: default :func:`nst_jax.sweep.default_mesh`.
      init_image: ``config.init``'s image when it names a file.
    """

    def __init__(self, config: Config, network: Network, contents: Sequence[np.ndarray],
                 styles: Sequence[np.ndarray], *, starts: Sequence[np.ndarray] | None = None,
                 targets: Sequence[temporal.Target] | None = None, temporal_weight: float = 0.0,
                 style_masks: Sequence[np.ndarray | None] | None = None, size: int | None = None,
                 mesh: Mesh | None = None, init_image: np.ndarray | None = None):
        check(config)
        self.config, self.count = config, len(contents)
        if not contents:
            raise ValueError("a batch needs at least one image")
        shapes = {np.shape(c) for c in contents}
        if len(shapes) != 1:
            raise NSTError(f"a batch's images must share one size, got {sorted(shapes)}")
        self.mesh = mesh = mesh or default_mesh()
        size = size or -(-self.count // mesh.size) * mesh.size
        if size % mesh.size:
            raise NSTError(f"a batch of {size} does not split over {mesh.size} devices")
        params, module, preprocessing = network.params, network.module, network.preprocessing
        content_layers, style_layers = tuple(config.content_layers), tuple(config.style_layers)
        variables, features_fn = device_features(params, module, preprocessing,
                                                 content_layers + style_layers)
        self.contents = [np.asarray(c, np.float32) for c in contents]
        seen, item_targets, x0 = [], [], []
        for k, content in enumerate(self.contents):
            content_seen, styles_seen = colors.prepare(config.preserve_colors, content, list(styles))
            content_seen = np.asarray(content_seen, np.float32)
            styles_seen = [np.asarray(s, np.float32) for s in styles_seen]
            seen.append(content_seen)
            item_targets.append(compute_targets(features_fn, content_seen, styles_seen,
                                                content_layers, style_layers,
                                                style_masks=style_masks,
                                                **distance_arguments(config)))
            if starts is not None:
                x0.append(np.asarray(starts[k], np.float32))
            else:
                x0.append(np.asarray(initial_pixels(init_of(config, init_image), content_seen,
                                                    styles_seen[0], config.seed,
                                                    config.noise_amplitude)))
        stack = lambda rows: jax.tree_util.tree_map(  # noqa: E731
            lambda *leaves: np.stack(leaves), *padded(rows, size))
        on_batch = functools.partial(place, mesh, spec=PartitionSpec(GRID_AXIS))
        replicated = functools.partial(place, mesh, spec=PartitionSpec())
        fn = untiled_loss(module, preprocessing, content_layers, style_layers)
        data = (replicated(variables), on_batch(stack(item_targets)))
        weights = loss_weights(config)
        axes = PLAIN_AXES
        if targets is not None:
            if len(targets) != self.count:
                raise ValueError(f"{len(targets)} temporal targets for {self.count} images")
            fn = temporal.with_temporal(fn)
            data = (data, on_batch(stack([temporal.Target(*map(np.asarray, t)) for t in targets])))
            weights = temporal.TemporalWeights(weights, np.float32(temporal_weight))
            axes = TEMPORAL_AXES
        settings = optimizer_settings(config)
        self._start, self._advance, self._terms = batch_programs(fn, settings, config.iterations,
                                                                 mesh, axes)
        self.weights, self.data, self.size = weights, data, size
        self.state = self._start(on_batch(stack(x0)), weights, data)
        self._read()

    def _read(self) -> None:
        iteration, stopped = to_host((self.state.iteration,
                                      self.state.nonfinite | self.state.converged))
        self.finished = stopped | (iteration >= self.config.iterations)
        self.iteration = int(iteration.max())

    @property
    def done(self) -> bool:
        return bool(np.all(self.finished))

    def step(self, num_iterations: int) -> None:
        """Up to ``num_iterations`` more iterations of every item (items that stopped stay)."""
        self.state = self._advance(self.state, jnp.int32(num_iterations), self.weights, self.data)
        self._read()

    def results(self, bits: int = 8) -> list[ItemResult]:
        """Each real item's :class:`ItemResult` (the padding left out)."""
        pixels = saved_pixels(self.state, bits)
        total, terms = self._terms(pixels, self.weights, self.data)
        host = to_host({"pixels": pixels, "total": total, "terms": terms,
                        "iteration": self.state.iteration, "evaluations": self.state.evaluations,
                        "nonfinite": self.state.nonfinite, "converged": self.state.converged})
        out = []
        for k in range(self.count):
            finished = colors.finish(self.config.preserve_colors, host["pixels"][k],
                                     self.contents[k])
            status = ("nonfinite" if host["nonfinite"][k] else
                      "converged" if host["converged"][k] else "completed")
            out.append(ItemResult(images.quantize(np.asarray(finished), bits), host["pixels"][k],
                                  float(host["total"][k]),
                                  LossTerms(*(float(t[k]) for t in host["terms"])),
                                  int(host["iteration"][k]), int(host["evaluations"][k]), status))
        return out


def check(config: Config) -> None:
    """:class:`NSTError` for what a batch cannot do: regions (a mask belongs to one
    content image), tiles, coarse to fine."""
    if config.content_masks is not None:
        raise NSTError("--content-masks belong to one content image; a batch of images cannot "
                       "use them")
    if config.tile_size not in (None, "auto"):
        raise NSTError("a batch is not tiled: drop --tile-size (or run the image on its own)")
    if config.start_size is not None:
        raise NSTError("a batch runs at one scale: drop --start-size")


def fitting_batch_size(count: int, shape: tuple[int, int], config: Config, network: Network, *,
                       mesh: Mesh | None = None, memory: float | None = None,
                       temporal_term: bool = False, what: str = "image of this batch") -> int:
    """Images of ``shape`` px per compiled call for a batch of ``count``: all of them if
    they fit, else chunks as even as the fit allows (:func:`nst_jax.memory.batch_size`,
    the model of ``--tile-size auto``; a temporal term adds its target, 4 floats a pixel)."""
    mesh = mesh or default_mesh()
    memory = memory_model.machine_memory() if memory is None else float(memory)
    sharing = jax.local_device_count() if mesh.devices.flat[0].platform == "cpu" else 1
    module = network.module
    channels = dict(zip(layer_names(module.blocks), (c for b in module.blocks for c in b)))
    settings = optimizer_settings(config)
    each = memory_model.point_bytes(shape, settings.memory_size,
                                    [channels[l] for l in config.style_layers])
    if temporal_term:
        each += 4 * 4 * float(shape[0] * shape[1])
    return memory_model.batch_size(count, each, mesh.size, sharing, memory, shape, what)
