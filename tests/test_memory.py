"""The memory model (:mod:`nst_jax.memory`): which tile ``--tile-size auto`` picks, and what
one more point of a sweep costs."""
from __future__ import annotations

import pytest

from nst_jax import memory
from nst_jax.errors import NSTError

GB = 1e9


def test_auto_tiles_only_what_does_not_fit_and_says_why():
    small = memory.choose("auto", (256, 256), None, budget=8 * GB)
    assert small.tile_size is None and small.lbfgs_memory == 10 and "untiled" in small.why
    big = memory.choose("auto", (2048, 2048), None, budget=8 * GB)
    assert big.tile_size is not None and big.tile_size % 64 == 0 and big.bytes <= 8 * GB
    assert memory.estimate_bytes((2048, 2048), None, big.lbfgs_memory) > 8 * GB
    # Tiles split the side evenly: 2048 px is never cut into 1472 + 576.
    assert 2048 % big.tile_size == 0
    # At 4096 px the L-BFGS history (2 image-sized vectors a step) is cut to make room...
    huge = memory.choose("auto", (4096, 4096), None, budget=8 * GB)
    assert huge.lbfgs_memory < 10 and huge.bytes <= 8 * GB and "history" in huge.why
    assert huge.tile_size >= memory.PREFERRED_TILE  # rather than tiles that are mostly halo
    # ...unless it was given, and then a run that cannot fit is refused with the numbers.
    with pytest.raises(NSTError, match=r"needs about .* GB .*--lbfgs-memory"):
        memory.choose("auto", (4096, 4096), 10, budget=6 * GB)
    asked = memory.choose(256, (4096, 4096), 7)
    assert (asked.tile_size, asked.lbfgs_memory) == (256, 7)
    assert memory.machine_memory() > GB


def test_a_sweep_point_is_a_run_without_the_process_and_with_its_gram_matrices():
    shape, history = (21, 32), 10
    alone = memory.estimate_bytes(shape, None, history) - memory.BASE_BYTES
    assert memory.point_bytes(shape, history) == alone
    grams = memory.GRAM_BYTES_PER_ENTRY * (64**2 + 128**2)
    assert memory.point_bytes(shape, history, [64, 128]) == pytest.approx(alone + grams)
