"""How much memory a run needs, how much this machine has, and which tile fits.

A model of the peak memory of one run (:func:`estimate_bytes`), and of one more point of a
sweep (:func:`point_bytes`), with constants fitted to peak RSS measured on a CPU; the
memory a run may use here (:func:`machine_memory`: the accelerator's ``bytes_limit``, or
the machine's memory capped by its cgroup's limit); and the policy built on both:
``--tile-size auto`` (:func:`choose`) and the sweep's points per compiled call
(:func:`nst_jax.sweep.fitting_batch_size`). The tiled evaluation itself, exact whatever
the tile, is :mod:`nst_jax.tiling`; nothing here imports it.
"""
from __future__ import annotations

import os
import pathlib
from typing import NamedTuple, Sequence

import jax
import numpy as np

from nst_jax.config import DEFAULT_LBFGS_MEMORY, MIN_TILE
from nst_jax.errors import NSTError

# What one run holds at its peak, float32 on a CPU, fitted to peak RSS measured here
# (docs/high-resolution.md): the process itself (XLA, the weights, compiled code); per
# image pixel, an untiled evaluation, or a tiled run's image-sized arrays (pixels, their
# gradient, the optimiser's vectors, pool3 and its gradient, the content target); per pixel
# of a first-stage tile with its halo; and 2 image-sized vectors per L-BFGS step.
BASE_BYTES = 1.3e9
UNTILED_BYTES_PER_PX = 2.2e3
TILED_BYTES_PER_PX = 180.0
TILE_BYTES_PER_PX = 2.0e3
HISTORY_BYTES_PER_PX = 2 * 3 * 4
# --tile-size auto plans for this share of the machine's memory (the rest is the system's,
# and the margin of the model).
AUTO_SHARE = 0.25
# auto cuts the L-BFGS history (when --lbfgs-memory is not given) to keep tiles at least
# this wide (smaller tiles spend more of their time on halos), down to MIN_AUTO_LBFGS_MEMORY.
PREFERRED_TILE = 512
MIN_AUTO_LBFGS_MEMORY = 3


def machine_memory() -> float:
    """Bytes of memory a run may use: on an accelerator, its first device's (``bytes_limit``
    of ``memory_stats``; the model above was fitted on a CPU, so there it is a rough guide);
    on the CPU, the machine's, or its cgroup's limit if lower."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        limit = (device.memory_stats() or {}).get("bytes_limit")
        if limit:
            return float(limit)
    total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = pathlib.Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, float(text))
    return total


def estimate_bytes(shape: tuple[int, int], tile_px: int | None, lbfgs_memory: int) -> float:
    """Peak bytes of a run on an image of ``shape`` px: tiled with ``tile_px``, or untiled."""
    pixels = float(shape[0] * shape[1])
    history = HISTORY_BYTES_PER_PX * lbfgs_memory * pixels
    if tile_px is None:
        return BASE_BYTES + UNTILED_BYTES_PER_PX * pixels + history
    # A first-stage tile with its halo, 24 px each side (nst_jax.tiling), within the image.
    canvas = float(np.prod([min(side, tile_px + 48) for side in shape]))
    return BASE_BYTES + TILED_BYTES_PER_PX * pixels + TILE_BYTES_PER_PX * canvas + history


# A sweep (nst_jax.sweep) holds per point what a run holds per pixel and its L-BFGS history,
# and its Gram matrices too (C x C float32 per style layer and region, the value and its
# gradient), which a single run holds once, within BASE_BYTES. Against XLA's memory analysis
# of the sweep's compiled L-BFGS step (real VGG19, conv1_1 ... conv5_1, batches of 16-64
# points): 6.1 MB per point measured at 32x21 px and 10.9 MB at 64x43, 6.5 and 11.6 modelled.
GRAM_BYTES_PER_ENTRY = 2 * 4


def point_bytes(shape: tuple[int, int], lbfgs_memory: int, gram_channels: Sequence[int] = ()
                ) -> float:
    """Bytes one more untiled run on an image of ``shape`` px adds to a process that holds
    others (a point of a sweep): :func:`estimate_bytes` less the process's
    :data:`BASE_BYTES`, and its Gram matrices of ``gram_channels`` channels each."""
    return (estimate_bytes(shape, None, lbfgs_memory) - BASE_BYTES
            + GRAM_BYTES_PER_ENTRY * float(sum(c * c for c in gram_channels)))


def batch_size(count: int, each: float, devices: int, sharing: int, memory: float,
               shape: tuple[int, int], what: str = "point of this sweep") -> int:
    """Items per compiled call of a batch of ``count`` (sweep points, photos, frames), each
    adding ``each`` bytes (:func:`point_bytes`), over ``devices`` devices of ``memory``
    bytes each (``sharing`` of them share one memory, as a CPU's devices do): the whole
    batch if it fits within :data:`AUTO_SHARE` of the memory, else calls as even as the
    fit allows; a multiple of ``devices``. At least one per device while that fits in the
    whole memory; every process of a multi-process run takes the tightest one's.

    Raises:
      NSTError: one item per device needs more than the whole ``memory``.
    """
    need = BASE_BYTES + each * sharing  # one item per device
    # Items per device within the planned share; else 0 (one fits the memory) or -1.
    per_device = max(int((AUTO_SHARE * memory - BASE_BYTES) // (each * sharing)),
                     0 if need <= memory else -1)
    if jax.process_count() > 1:  # every process runs the same chunks: the tightest one's
        from jax.experimental import multihost_utils

        per_device = int(np.min(multihost_utils.process_allgather(np.int64(per_device))))
    if per_device < 0:
        raise NSTError(f"one {what} at {shape[1]}x{shape[0]} px needs about "
                       f"{need / 1e9:.1f} GB (with the process's {BASE_BYTES / 1e9:.1f} "
                       f"GB), more than the {memory / 1e9:.1f} GB of memory here: use a "
                       "smaller --size")
    per_device = max(per_device, 1)  # beyond the planned share, within the memory: as a run
    most = per_device * devices
    calls = -(-count // most)
    even = -(-count // calls)  # items per call, as even as the calls allow
    return -(-even // devices) * devices  # a multiple of the devices, at most `most`


class Choice(NamedTuple):
    """What :func:`choose` settled on: the tile side (None: untiled), the L-BFGS history,
    the bytes it expects, and a sentence saying why."""

    tile_size: int | None
    lbfgs_memory: int
    bytes: float
    why: str


def choose(tile_size: int | str | None, shape: tuple[int, int], lbfgs_memory: int | None,
           budget: float | None = None) -> Choice:
    """Resolve ``--tile-size`` (``auto``: no tiles, or else the largest tile that splits the
    long side evenly (in 64 px steps; at least :data:`PREFERRED_TILE` if cutting the history
    allows it) and whose run fits in
    ``budget``, default :data:`AUTO_SHARE` of :func:`machine_memory`) and ``--lbfgs-memory``
    (None: the default history, cut down to :data:`MIN_AUTO_LBFGS_MEMORY` at least where
    ``auto`` needs the room).

    Raises:
      NSTError: ``auto`` finds nothing that fits.
    """
    memory = DEFAULT_LBFGS_MEMORY if lbfgs_memory is None else lbfgs_memory
    if tile_size != "auto":
        return Choice(tile_size, memory, estimate_bytes(shape, tile_size, memory), "as asked")
    budget = AUTO_SHARE * machine_memory() if budget is None else budget
    gb = f"{budget / 1e9:.1f} GB"
    histories = ([memory] if lbfgs_memory is not None
                 else list(range(memory, MIN_AUTO_LBFGS_MEMORY - 1, -1)))
    for m in histories:
        if estimate_bytes(shape, None, m) <= budget:
            return Choice(None, m, estimate_bytes(shape, None, m),
                          f"the untiled run fits in {gb}")
    # n tiles along the long side, as even as the 64 px steps allow: no sliver tiles.
    tiles = sorted({t for n in range(2, max(shape) // 32 + 1)
                    if (t := -(-max(shape) // n // 64) * 64) >= MIN_TILE}, reverse=True)
    # The history is cut only as far as tiles of PREFERRED_TILE px need; then smaller tiles.
    for wide in (True, False):
        for m in histories:
            for tile in tiles:
                if (tile >= PREFERRED_TILE) == wide and estimate_bytes(shape, tile, m) <= budget:
                    cut = f", the L-BFGS history cut from {memory}" if m < memory else ""
                    return Choice(tile, m, estimate_bytes(shape, tile, m),
                                  f"the largest tile that fits in {gb}{cut}")
    need = estimate_bytes(shape, MIN_TILE, histories[-1])
    raise NSTError(f"a {shape[1]}x{shape[0]} px run needs about {need / 1e9:.1f} GB even with "
                   f"{MIN_TILE} px tiles and an L-BFGS history of {histories[-1]}; --tile-size auto "
                   f"plans for {gb} ({AUTO_SHARE:.0%} of this machine's memory): use a smaller "
                   "--size, or give --tile-size and --lbfgs-memory yourself")
