"""The memory case: compile and run one evaluation at a size (tiled or not), its peak
memory and, if asked, the median time of more evaluations; with and without remat at
``--memory-sizes``, and the largest square size within ``--memory-limit-gb``.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.evaluation import evaluation
from nst_jax.apps.benchmark.machine import median_seconds, peak_memory_bytes
from nst_jax.apps.benchmark.options import check_sizes, ints
from nst_jax.apps.benchmark.report import gb
from nst_jax.errors import NSTError

STANDALONE = False


def memory_case(size: int, remat: bool, precision: str = "float32", tile: int | None = None,
                repeats: int = 0) -> dict:
    """Compile and run one evaluation at ``size`` (tiled with ``tile`` px tiles, or not);
    peak memory, and the median time of ``repeats`` more evaluations (runs in the worker
    process)."""
    import jax

    from nst_jax import stylize

    config = stylize.Config(remat=remat, precision=precision)
    _, _, content, _, jitted, data = evaluation(size, config, tile)
    value_and_grad = functools.partial(jitted, data=data)
    x0 = np.asarray(stylize.white_noise(0, content.shape))
    start = time.perf_counter()
    value, _ = jax.block_until_ready(value_and_grad(x0))
    seconds = time.perf_counter() - start
    result = {"size": size, "remat": remat, "precision": precision, "tile": tile,
              "first_evaluation_s": seconds, "finite": bool(np.isfinite(value)),
              "value": float(value), "memory": peak_memory_bytes()}
    if repeats:
        result["s_per_evaluation"], result["evaluation_times"] = median_seconds(
            lambda: value_and_grad(x0), repeats, warmup=0)
    return result


CASE = memory_case


def largest_size(points: Sequence[dict], limit_bytes: float, remat: bool, timeout: float | None,
                 log: Callable[[str], None], step: int = 64) -> dict:
    """The largest square size whose evaluation stays within ``limit_bytes`` of peak RSS.

    Peak RSS is close to affine in the pixel count, so a line through the
    measured ``points`` predicts the size; that size (a multiple of ``step``)
    is then run, and lowered by 10 % until a run fits.
    """
    ok = [p for p in points if "error" not in p]
    if len(ok) < 2:
        return {"remat": remat, "error": "needs two memory measurements"}
    pixels = np.array([p["size"] ** 2 for p in ok], np.float64)
    rss = np.array([p["memory"]["rss"] for p in ok], np.float64)
    slope, intercept = np.polyfit(pixels, rss, 1)
    size = int(np.sqrt(max(limit_bytes - intercept, 0) / slope)) // step * step
    tries = []
    for _ in range(4):
        log(f"largest size within {limit_bytes / 2**30:.0f} GiB (remat={remat}): trying {size}")
        run = worker.run_in_subprocess("memory", timeout=timeout, size=size, remat=remat)
        tries.append(run)
        if "error" not in run and run["memory"]["rss"] <= limit_bytes:
            return {"remat": remat, "size": size, "rss": run["memory"]["rss"],
                    "predicted_bytes_per_pixel": slope, "tries": tries}
        size = int(size * 0.9) // step * step
    return {"remat": remat, "error": "no size fitted", "tries": tries}


def add_flags(p) -> None:
    p.add_argument("--memory-sizes", type=ints, default=[],
                   help="peak memory of one evaluation at these sizes, with and without remat")
    p.add_argument("--memory-limit-gb", type=float, default=None,
                   help="find the largest square size whose peak RSS stays within this (needs "
                        "two --memory-sizes)")


def plan(args) -> dict | None:
    check_sizes(args.memory_sizes)
    if args.memory_limit_gb and len(args.memory_sizes) < 2:
        raise NSTError("--memory-limit-gb needs at least two --memory-sizes")
    if not args.memory_sizes:
        return None
    return {"sizes": args.memory_sizes, "limit_gb": args.memory_limit_gb}


def run(results: dict, sizes: Sequence[int], limit_gb: float | None, timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """Without remat, then with: one evaluation at each of ``sizes`` into ``results["memory"]``,
    and the largest size within ``limit_gb`` into ``results["largest"]``."""
    for remat in (False, True):
        points = []
        for size in sizes:
            log(f"memory at {size} px (remat={remat}) ...")
            points.append(worker.run_in_subprocess("memory", timeout=timeout, size=size, remat=remat))
            results["memory"].append(points[-1])
            save(results)
        if limit_gb:
            results.setdefault("largest", []).append(
                largest_size(points, limit_gb * 2**30, remat, timeout, log))
            save(results)


def markdown(results: dict) -> list[str]:
    """Peak RSS and the first evaluation's time with and without remat; the largest sizes."""
    lines = []
    memory = results.get("memory", [])
    if memory:
        sizes = sorted({p["size"] for p in memory})
        lines += ["", "| size | peak RSS GiB | with --remat | first evaluation s | with --remat |",
                  "|---|---|---|---|---|"]
        for size in sizes:
            cells = []
            for remat in (False, True):
                p = next((p for p in memory if p["size"] == size and p["remat"] == remat), None)
                cells.append((p or {}).get("error") or gb(p["memory"]["rss"]) if p else "-")
            times = []
            for remat in (False, True):
                p = next((p for p in memory if p["size"] == size and p["remat"] == remat), None)
                times.append(f"{p['first_evaluation_s']:.1f}" if p and "error" not in p else "-")
            lines.append(f"| {size} | {cells[0]} | {cells[1]} | {times[0]} | {times[1]} |")
    for largest in results.get("largest", []):
        label = "with --remat" if largest["remat"] else "without remat"
        if "error" in largest:
            lines.append(f"\nLargest square size {label}: {largest['error']}.")
        else:
            above = ""
            if len(largest["tries"]) > 1:
                over = largest["tries"][-2]
                above = (f"; {over['size']} px " + (f"peaked at {gb(over['memory']['rss'])} GiB"
                                                    if "error" not in over else f"failed: {over['error']}"))
            lines.append(f"\nLargest square size within the limit {label}: **{largest['size']} px** "
                         f"(peak RSS {gb(largest['rss'])} GiB{above}).")
    return lines
