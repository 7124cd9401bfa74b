"""Compare the L-BFGS backends (and Adam) on one style transfer problem.

Runs each optimiser from the same white noise on the bundled example and prints,
per optimiser, the total loss after fixed numbers of loss+gradient evaluations
and the wall time (compilation excluded). The README's choice of default comes
from this table. Usage:

    python scripts/compare_optimizers.py --size 128 --iterations 200
"""
from __future__ import annotations

import argparse
import sys
import time

import jax

from nst_jax import images, optimize, stylize, weights
from nst_jax.bench import lowest_loss_within
from nst_jax.cli import example_path
from nst_jax.errors import NSTError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--checkpoints", default="25,50,100,200", help="evaluation counts to report")
    p.add_argument("--optimizers", default=",".join(optimize.OPTIMIZERS))
    args = p.parse_args(argv)
    try:
        params, preprocessing = weights.load_params(weights.ensure_weights(log=lambda m: None))
        content = images.load_image(example_path("chelsea.jpg"), max_side=args.size)
        style = images.load_image(example_path("starry_night.jpg"), max_side=args.size)
    except NSTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    print(f"# {args.size}px content {content.shape[1]}x{content.shape[0]}, {args.iterations} iterations, "
          f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    header = "| optimizer | " + " | ".join(f"loss @ {c} evals" for c in checkpoints) + \
             " | evals | s/iteration | s/evaluation |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for method in args.optimizers.split(","):
        config = stylize.Config(iterations=args.iterations, optimizer=optimize.Settings(method=method))
        job = stylize.prepare(content, style, params, config, preprocessing=preprocessing)
        job.step(1)  # compiles
        jax.block_until_ready(job.state)
        first_evals = int(job.state.evaluations)
        start = time.perf_counter()
        job.step(args.iterations)
        jax.block_until_ready(job.state)
        seconds = time.perf_counter() - start
        state = job.state
        evals = int(state.evaluations)
        iterations = int(state.iteration) - 1
        cells = " | ".join(f"{lowest_loss_within(state, c):.4g}" for c in checkpoints)
        print(f"| {method} | {cells} | {evals} | {seconds / max(iterations, 1):.3f} | "
              f"{seconds / max(evals - first_evals, 1):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
