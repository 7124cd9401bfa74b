"""Wall time of an alpha/beta grid run as one compiled sweep vs. the same runs one by one.

    python scripts/bench_sweep.py --size 128 --iterations 100

Three ways to run the same 8 configurations on the bundled examples:
  grid        one ``jit(vmap)`` over all points (``nst_jax.sweep``), one compile;
  one-by-one  the same compiled program with a batch of 1, the points in turn, one compile;
  separate    ``nst_jax.stylize.prepare`` per point, as 8 invocations of the CLI would
              (a compile each).
Prints a markdown table (wall time, compile time, evaluations, final losses agree) and
writes it with the raw numbers to ``--output`` (JSON).
"""
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from nst_jax import driver, stylize, sweep
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser
from nst_jax.config import OPTIMIZERS, Config
from nst_jax.files import atomic_write

RATIOS = "1e-5,3e-5,1e-4,3e-4,1e-3,3e-3,1e-2,1e-1"


def timed_sweep(content, style, params, preprocessing, grid, batch_size):
    """(compile seconds, run seconds, results) of ``grid`` in chunks of ``batch_size``."""
    started = time.perf_counter()
    sweeper = sweep.Sweeper.for_grids(content, style, params, [grid], preprocessing=preprocessing)
    # Compile each program once with (almost) no work: start (one evaluation per point),
    # advance by 0 iterations, and the final terms.
    points = sweeper.place(grid.points(range(batch_size)))
    state = sweeper.start(points)
    jax.block_until_ready(sweeper.advance(state, 0, points))
    jax.block_until_ready(sweeper.terms(state.pixels, points))
    compiled = time.perf_counter()
    results = sweeper.run(grid, batch_size=batch_size, stop=runner.stop_token())
    runner.check_interrupt()
    return compiled - started, time.perf_counter() - compiled, results


def timed_separate(content, style, params, preprocessing, grid):
    started = time.perf_counter()
    results = []
    for config in grid.configs:
        job = stylize.prepare(content, style, params, config, preprocessing=preprocessing)
        for _ in driver.advance(job, chunk=config.iterations, stop=runner.stop_token()):
            pass
        runner.check_interrupt()
        total, _ = job.terms(np.asarray(job.result()))
        results.append((total, int(job.state.evaluations)))
    return time.perf_counter() - started, results


def main(argv=None) -> int:
    p = ArgumentParser(prog="bench_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--ratios", default=RATIOS)
    p.add_argument("--optimizer", default="lbfgs-stepwise", choices=OPTIMIZERS)
    p.add_argument("--output", default=None, help="JSON file for the numbers")
    args = p.parse_args(argv)

    base = Config(size=args.size, iterations=args.iterations, optimizer=args.optimizer)
    inputs = stylize.load_inputs(base)
    content, style = inputs.content, inputs.styles[0]
    network = stylize.load_network(base, content, style)
    params, preprocessing = network.params, network.preprocessing
    grid = sweep.Grid.product(base, ratio=[float(r) for r in args.ratios.split(",")])
    n = len(grid)

    rows = {}
    compile_s, run_s, results = timed_sweep(content, style, params, preprocessing, grid, n)
    rows["grid"] = dict(compile_s=compile_s, run_s=run_s, wall_s=compile_s + run_s, compiles=1,
                        evaluations=sum(r.evaluations for r in results),
                        totals=[r.total for r in results])
    print(f"grid: {rows['grid']['wall_s']:.1f}s", file=sys.stderr)
    compile_s, run_s, results = timed_sweep(content, style, params, preprocessing, grid, 1)
    rows["one-by-one"] = dict(compile_s=compile_s, run_s=run_s, wall_s=compile_s + run_s,
                              compiles=1, evaluations=sum(r.evaluations for r in results),
                              totals=[r.total for r in results])
    print(f"one-by-one: {rows['one-by-one']['wall_s']:.1f}s", file=sys.stderr)
    wall_s, separate = timed_separate(content, style, params, preprocessing, grid)
    rows["separate"] = dict(compile_s=None, run_s=None, wall_s=wall_s, compiles=n,
                            evaluations=sum(e for _, e in separate),
                            totals=[t for t, _ in separate])

    reference = np.asarray(rows["separate"]["totals"])
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"jax {jax.__version__} on {jax.devices()[0].platform}")
    lines = [f"# {n}-point alpha/beta grid, {content.shape[1]}x{content.shape[0]} px, "
             f"{args.iterations} iterations of {args.optimizer}; {machine}",
             "| how | wall time | compile | compiles | evaluations | final losses vs separate |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        gap = np.max(np.abs(np.asarray(row["totals"]) / reference - 1))
        compile_text = f"{row['compile_s']:.1f} s" if row["compile_s"] is not None else "in wall time"
        lines.append(f"| {name} | {row['wall_s']:.1f} s | {compile_text} | {row['compiles']} | "
                     f"{row['evaluations']} | max rel. diff {gap:.1e} |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        with atomic_write(args.output) as tmp:
            tmp.write_text(json.dumps({"command": " ".join(sys.argv), "machine": machine,
                                       "rows": rows, "table": table}, indent=2) + "\n")
    return 0
