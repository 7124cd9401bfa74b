"""Benchmarks of one style transfer: speed, FLOPs, memory, convergence, and a PyTorch baseline.

``scripts/bench.py`` is the command line: this module parses the flags, asks each case
kind (:mod:`nst_jax.apps.benchmark.cases`) for its plan, runs them in turn and writes the
report (:mod:`nst_jax.apps.benchmark.report`). Every case runs in a fresh subprocess
(:mod:`nst_jax.apps.benchmark.worker`), so compile times are cold and peak memory belongs
to that case alone; what is measured with is in :mod:`nst_jax.apps.benchmark.machine`.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable

from nst_jax.apps.benchmark import machine, report
from nst_jax.apps.benchmark.cases import KINDS, RUN_ORDER
from nst_jax.apps.benchmark.options import SIZES_RULE
from nst_jax.errors import NSTError


def main(argv=None) -> int:
    return run(parser().parse_args(argv))


def parser():
    """Every case kind's flags, in the registry's order, then the benchmark's own."""
    from nst_jax.apps.common.flags import ArgumentParser

    p = ArgumentParser(prog="bench", description="Benchmark nst_jax (and a PyTorch baseline) on this machine.")
    for kind in KINDS.values():
        kind.add_flags(p)
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per case")
    p.add_argument("--output", default="bench.json", help="JSON results")
    p.add_argument("--markdown", default=None, help="also write the tables here")
    return p


def run(args) -> int:
    from nst_jax.apps.common import runner

    plans = {name: kind.plan(args) for name, kind in KINDS.items()}
    # Something with a table of its own: speed cases (--sizes) or a standalone kind.
    if not args.sizes and not any(plans[name] is not None for name, kind in KINDS.items()
                                  if kind.STANDALONE):
        raise NSTError(SIZES_RULE)
    for path in (args.output, args.markdown):
        if path:
            report.check_writable(path)
    runner.phase("benchmarking", f"the cases finished so far are in {args.output}")

    def save(results):
        report.write_text(args.output, json.dumps(results, indent=1))
        if args.markdown:
            report.write_text(args.markdown, report.markdown(results, KINDS.values()))
        runner.check_interrupt()  # a safe point between cases

    results = run_benchmark(plans, args.timeout, log=lambda m: print(m, file=sys.stderr, flush=True),
                            save=save)
    sys.stdout.write(report.markdown(results, KINDS.values()))
    return runner.ExitCode.OK


def run_benchmark(plans: dict[str, dict | None], timeout: float | None,
                  log: Callable[[str], None] = print,
                  save: Callable[[dict], None] = lambda results: None) -> dict:
    """The machine and its matmul peak, then every kind with a plan, in :data:`RUN_ORDER`, each
    case in its own process; the JSON-able results. ``save(results)`` is called after every
    case, so an interrupted or partly failed benchmark keeps what it measured."""
    started = time.time()
    # The speed and memory lists are there from the start: the report's tables read them.
    results = {"machine": machine.machine(), "command": sys.argv, "started": time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(started)), "speed": [], "memory": []}
    log("matmul peak ...")
    results["matmul"] = machine.matmul_peak()
    log(f"matmul peak {results['matmul']['peak_gflops']:.0f} GFLOP/s")
    for name in RUN_ORDER:
        if plans.get(name) is not None:
            KINDS[name].run(results, timeout=timeout, log=log, save=save, **plans[name])
    results["seconds"] = time.time() - started
    save(results)
    return results
