"""Tiled evaluations (:mod:`nst_jax.tiling`): peak memory at ``--tiled-memory-sizes`` with
``--tile-size`` tiles, and at ``--tile-overhead-size`` the time of an evaluation untiled
against the tile ``--tile-size auto`` picks (:func:`nst_jax.memory.choose`). They run in
the memory kind's worker (:mod:`.memory`).
"""
from __future__ import annotations

from typing import Callable, Sequence

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.options import ints
from nst_jax.apps.benchmark.report import gb
from nst_jax.errors import NSTError

STANDALONE = True
CASE = None  # memory.memory_case, with a tile


def add_flags(p) -> None:
    p.add_argument("--tiled-memory-sizes", type=ints, default=[],
                   help="peak memory of one tiled evaluation (--tile-size) at these sizes")
    p.add_argument("--tile-size", type=int, default=512, help="tile side for --tiled-memory-sizes")
    p.add_argument("--tile-overhead-size", type=int, default=None,
                   help="time evaluations at this size untiled and with --tile-size auto's tile "
                        "(for an 8 GB budget)")


def plan(args) -> dict | None:
    if not args.tiled_memory_sizes and not args.tile_overhead_size:
        return None
    if min(args.tiled_memory_sizes + [args.tile_overhead_size or 64]) < 32 or args.tile_size < 64:
        raise NSTError("--tiled-memory-sizes must be >= 32 px and --tile-size >= 64")
    return {"sizes": args.tiled_memory_sizes, "tile": args.tile_size,
            "overhead_size": args.tile_overhead_size, "repeats": args.repeats}


def run(results: dict, sizes: Sequence[int], tile: int, overhead_size: int | None,
        repeats: int, timeout: float | None = None, log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """Tiled evaluations into ``results["tiled"]``: peak memory at ``sizes`` with ``tile`` px
    tiles; at ``overhead_size``, seconds per evaluation untiled and with the tile
    ``--tile-size auto`` picks for an 8 GB budget, one after the other."""
    from nst_jax import memory as memory_model

    results.setdefault("tiled", [])
    cases = [dict(size=size, tile=tile, repeats=0) for size in sizes]
    if overhead_size:
        auto = memory_model.choose("auto", (overhead_size, overhead_size), None, budget=8e9).tile_size
        cases += [dict(size=overhead_size, tile=t, repeats=repeats) for t in (None, auto)]
    for case in cases:
        log(f"tiled memory at {case['size']} px, tile {case['tile'] or 'none'} ...")
        results["tiled"].append(worker.run_in_subprocess("memory", timeout=timeout, remat=False, **case))
        save(results)


def tiled_markdown(cases: Sequence[dict]) -> list[str]:
    lines = ["", "| size | tile px | peak RSS GiB | first evaluation s | s / evaluation |",
             "|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['size']} | {c.get('tile') or 'none'} | failed: {c['error']} | | |")
            continue
        timed = f"{c['s_per_evaluation']:.1f}" if "s_per_evaluation" in c else "-"
        lines.append(f"| {c['size']} | {c['tile'] or 'none'} | {gb(c['memory']['rss'])} | "
                     f"{c['first_evaluation_s']:.1f} | {timed} |")
    return lines


def markdown(results: dict) -> list[str]:
    return tiled_markdown(results["tiled"]) if results.get("tiled") else []
