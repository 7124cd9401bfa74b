"""The quality case: coarse to fine against a single scale (``--quality-sizes``), the eq. 7
loss at the last scale against the wall time, every variant from the same seed (see
docs/high-resolution.md, Coarse to fine)."""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.options import ints
from nst_jax.errors import NSTError

STANDALONE = True


def quality_case(size: int, iterations: int, start_size: int | None = None,
                 coarse_iterations: int = 100, seed: int = 0, chunk: int = 10,
                 image: str | None = None) -> dict:
    """One run of the bundled example at ``size`` (long side), single-scale or coarse to
    fine from ``start_size`` (runs in the worker process): the eq. 7 loss at the last
    scale against the wall time since the first scale began, compilation included.

    ``curve`` has one point per chunk of the last scale (``s``, ``iteration``, ``loss``:
    the lowest loss so far), and first the loss of the pixels the last scale starts
    from (the coarse scales' result, upsampled; noise for a single scale), computed
    with the clock stopped. ``cost`` counts every scale's loss+gradient evaluations in
    evaluations at the last scale's size (an evaluation costs about its pixel count):
    unlike the wall time, it does not depend on the load of a shared machine.
    ``texture_period`` and ``high_frequency_share`` (:mod:`nst_jax.measures`) say how
    large the output's structures are and how much fine grain it has. ``image``: also
    write the output there (PNG).
    """
    import jax

    from nst_jax import driver, images, measures, stylize

    config = stylize.Config(size=size, iterations=iterations, seed=seed, start_size=start_size,
                            coarse_iterations=coarse_iterations)
    inputs = stylize.load_inputs(config)
    network = stylize.load_network(config, inputs.content, inputs.styles)
    pixels = inputs.content.shape[0] * inputs.content.shape[1]
    scales, curve = [], []
    clock = {"paused": 0.0, "began": 0.0, "first_chunk": None, "open": False}
    load = os.getloadavg()[0]
    start = time.perf_counter()

    def scale_start(at) -> None:
        clock.update(began=time.perf_counter(), first_chunk=None, open=True)
        jax.block_until_ready(at.job.state)
        if at.scale.last:  # the loss the last scale starts from, off the clock
            stop = time.perf_counter()
            curve.append({"s": stop - start - clock["paused"], "iteration": 0,
                          "evaluations": 0, "loss": at.job.terms()[0]})
            clock["paused"] += time.perf_counter() - stop

    def after_chunk(at) -> None:
        job = at.job
        jax.block_until_ready(job.state)
        clock["first_chunk"] = clock["first_chunk"] or time.perf_counter() - clock["began"]
        if at.scale.last:
            values = np.asarray(job.state.trace.value)[: int(job.state.iteration)]
            curve.append({"s": time.perf_counter() - start - clock["paused"],
                          "iteration": int(job.state.iteration),
                          "evaluations": int(job.state.evaluations),
                          "loss": float(np.nanmin(values))})

    def scale_end(at) -> None:  # at the scale's end, or where the run ended
        if not clock["open"]:
            return
        clock["open"] = False
        job = at.job
        height, width = job.content.shape[:2]
        scales.append({"size": at.scale.size, "shape": [height, width],
                       "iterations": int(job.state.iteration),
                       "evaluations": int(job.state.evaluations),
                       "seconds": time.perf_counter() - clock["began"],
                       "first_chunk_s": clock["first_chunk"],
                       "cost": int(job.state.evaluations) * height * width / pixels})

    outcome = driver.run(config, network, inputs=inputs, chunk=chunk, hooks=[
        driver.Hook(driver.SCALE_START, scale_start), driver.Hook(driver.EVERY_CHUNK, after_chunk),
        driver.Hook(driver.SCALE_END, scale_end), driver.Hook(driver.RUN_END, scale_end)])
    if outcome.status == "interrupted":  # Ctrl-C reached the worker: no result, as before
        raise KeyboardInterrupt
    job, paused = outcome.job, clock["paused"]
    seconds = time.perf_counter() - start - paused
    saved, total, terms = job.saved()
    output = np.asarray(saved, np.float32) / 255.0
    if image:
        images.save_png(image, output)
    return {"size": size, "start_size": start_size, "coarse_iterations": coarse_iterations,
            "iterations": iterations, "seed": seed, "seconds": seconds,
            "cost": sum(s["cost"] for s in scales), "scales": scales, "curve": curve,
            "final_loss": total, "final_content": terms.content, "final_style": terms.style,
            "texture_period": measures.texture_period(output),
            "high_frequency_share": measures.high_frequency_share(output),
            "load_average": [load, os.getloadavg()[0]]}


CASE = quality_case


def quality_variants(starts: Sequence[int], coarse: Sequence[int], size: int
                     ) -> list[dict]:
    """Single scale, then coarse to fine from each start below ``size`` with each number of
    coarse iterations."""
    out = [{"start_size": None}]
    out += [{"start_size": s, "coarse_iterations": c} for s in starts if s < size for c in coarse]
    return out


def quality_label(case: dict) -> str:
    if case.get("start_size") is None:
        return "single scale"
    return f"from {case['start_size']} px, {case['coarse_iterations']} it./coarse scale"


def lowest_within(curve: Sequence[dict], seconds: float) -> float:
    """The lowest loss a curve had reached ``seconds`` into the run (NaN if none yet)."""
    seen = [p["loss"] for p in curve if p["s"] <= seconds and p["iteration"] > 0]
    return min(seen) if seen else float("nan")


def time_to(curve: Sequence[dict], loss: float) -> float | None:
    """Seconds until a curve first reached ``loss`` (None if it never did)."""
    return next((p["s"] for p in curve if p["iteration"] > 0 and p["loss"] <= loss), None)


def add_flags(p) -> None:
    p.add_argument("--quality-sizes", type=ints, default=[],
                   help="coarse to fine against a single scale at these long sides, px: the eq. 7 "
                        "loss at that size against the wall time, every variant from the same "
                        "seed (see docs/high-resolution.md, Coarse to fine)")
    p.add_argument("--quality-iterations", type=int, default=300,
                   help="iterations at the full size, every variant (default: 300)")
    p.add_argument("--quality-single-iterations", type=int, default=None,
                   help="iterations of the single-scale run, so that its curve can cover the "
                        "coarse-to-fine runs' whole time (default: --quality-iterations)")
    p.add_argument("--quality-starts", type=ints, default=[256, 362],
                   help="--start-size of the coarse-to-fine variants, px (default: 256,362)")
    p.add_argument("--quality-coarse-iterations", type=ints, default=[50, 100],
                   help="--coarse-iterations of the coarse-to-fine variants (default: 50,100)")
    p.add_argument("--quality-images", default=None, metavar="DIR",
                   help="also write each variant's output into this folder")


def plan(args) -> dict | None:
    if not args.quality_sizes:
        return None
    if min(args.quality_sizes + args.quality_starts) < 32 or min(
            args.quality_iterations, args.quality_single_iterations or 1) < 1 or (
            not args.quality_coarse_iterations or min(args.quality_coarse_iterations) < 1):
        raise NSTError("--quality-sizes and --quality-starts must be >= 32 px, and "
                       "--quality-iterations and --quality-coarse-iterations >= 1")
    images = args.quality_images
    if images:
        from nst_jax.files import check_writable_folder

        check_writable_folder(images)
        images = os.path.abspath(images)
    return {"sizes": args.quality_sizes, "iterations": args.quality_iterations,
            "single_iterations": args.quality_single_iterations,
            "starts": args.quality_starts, "coarse": args.quality_coarse_iterations,
            "images": images}


def run(results: dict, sizes: Sequence[int], iterations: int, starts: Sequence[int],
        coarse: Sequence[int], single_iterations: int | None = None, seed: int = 0,
        images: str | None = None,
        timeout: float | None = None, log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """Coarse to fine against a single scale at each of ``sizes`` (:func:`quality_case`, one
    process per variant, all from ``seed``), into ``results["quality"]``; each variant's
    output goes to ``images/quality_<size>_<variant>.png`` when ``images`` is a folder."""
    results.setdefault("quality", [])
    for size in sizes:
        for variant in quality_variants(starts, coarse, size):
            label = quality_label(variant)
            log(f"quality at {size} px, {label} ...")
            name = "single" if variant["start_size"] is None else (
                f"from{variant['start_size']}_coarse{variant['coarse_iterations']}")
            image = os.path.join(images, f"quality_{size}_{name}.png") if images else None
            its = iterations if variant["start_size"] is not None else (
                single_iterations or iterations)
            case = worker.run_in_subprocess("quality", timeout=timeout, size=size, iterations=its,
                                            seed=seed, image=image, **variant)
            results["quality"].append(case)
            log(f"  failed: {case['error']}" if "error" in case else
                f"  {case['seconds']:.0f} s, cost {case['cost']:.0f} evaluations, final loss "
                f"{case['final_loss']:.4g}")
            save(results)


def quality_markdown(cases: Sequence[dict]) -> list[str]:
    """One table per size: each variant's final loss, its loss within fractions of the
    single-scale run's time, and the time it took to reach the single-scale final loss."""
    lines = []
    for size in sorted({c["size"] for c in cases}):
        group = [c for c in cases if c["size"] == size and "error" not in c]
        failed = [c for c in cases if c["size"] == size and "error" in c]
        single = next((c for c in group if c.get("start_size") is None), None)
        budgets = [single["seconds"] * f for f in (0.25, 0.5, 1.0)] if single else []
        title = (f"*Coarse to fine at {size} px (the bundled example, seed "
                 f"{group[0]['seed'] if group else '-'}): eq. 7 loss at the last scale against "
                 "the wall time from the first scale's start, compilation included.*")
        header = (f"| variant | scales px | iterations | wall s | cost (evaluations at {size} px) "
                  "| final loss (8-bit) | "
                  + "".join(f"lowest loss by {b:.0f} s | " for b in budgets)
                  + "s to the single scale's final loss | texture period px | high-frequency "
                    "share |")
        lines += ["", title, "", header,
                  "|---|---|---|---|---|---|" + "---|" * len(budgets) + "---|---|---|"]
        target = min(p["loss"] for p in single["curve"]) if single else None
        for c in group:
            reach = time_to(c["curve"], target) if target is not None else None
            its = "+".join(str(s["iterations"]) for s in c["scales"])
            lines.append(
                f"| {quality_label(c)} | {','.join(str(s['size']) for s in c['scales'])} | {its} | "
                f"{c['seconds']:.0f} | {c['cost']:.0f} | {c['final_loss']:.4g} | "
                + "".join(f"{lowest_within(c['curve'], b):.4g} | " for b in budgets)
                + (f"{reach:.0f} | " if reach is not None else "not reached | ")
                + f"{c.get('texture_period', float('nan')):.1f} | "
                  f"{c.get('high_frequency_share', float('nan')):.3f} |")
        lines += [f"| {quality_label(c)} | failed: {c['error']} |" for c in failed]
    return lines


def markdown(results: dict) -> list[str]:
    return quality_markdown(results.get("quality", []))
