"""Compare the optimisers, with and without the [0, 1] box, on one style transfer.

Runs each optimiser from the same white noise on the bundled example and
prints, per optimiser and bounds setting, the eq. 7 loss of the image a PNG
would hold (the best image so far, rounded to 8 bits) after fixed numbers of
loss+gradient evaluations, and the time per iteration (compilation excluded).
The choice of defaults (docs/optimizers.md) comes from this table:

    python scripts/compare_optimizers.py --size 128 --evaluations 50,100,200,400
"""
from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np

from nst_jax import driver, images, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser, UsageError
from nst_jax.config import BOUNDS, OPTIMIZERS, Config


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def saved_loss(job: stylize.Stylization, state) -> float:
    """The eq. 7 loss of ``state``'s best image rounded to 8 bits."""
    image = images.to_uint8(np.asarray(stylize.best_image(state)))
    return job.terms(image.astype(np.float32) / 255.0)[0]


def measure(job: stylize.Stylization, checkpoints: Sequence[int]) -> dict:
    """Step ``job`` one iteration at a time until it has made ``max(checkpoints)``
    evaluations; the saved image's loss within each budget, and s/iteration."""
    job.step(1)  # compiles
    jax.block_until_ready(job.state)
    losses: dict[int, float] = {}
    seconds, timed_iterations = 0.0, 0
    pending = sorted(checkpoints)
    enough = runner.stop_token()  # set by Ctrl-C, or below once every budget is measured
    before, started = job.state, time.perf_counter()
    for _ in driver.advance(job, chunk=1, stop=enough):
        after = jax.block_until_ready(job.state)
        seconds += time.perf_counter() - started
        timed_iterations += 1
        stuck = bool(after.nonfinite) or int(after.iteration) == int(before.iteration) or job.done
        while pending and (int(after.evaluations) > pending[0] or stuck):
            losses[pending.pop(0)] = saved_loss(job, before)
        if not pending:
            enough.set()
        before, started = job.state, time.perf_counter()
    runner.check_interrupt()
    for budget in pending:  # the run was done before these budgets
        losses[budget] = saved_loss(job, before)
    return {"losses": losses, "s_per_iteration": seconds / max(timed_iterations, 1),
            "evaluations": int(job.state.evaluations)}


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="compare_optimizers", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=128, help="long side in px (default: 128)")
    p.add_argument("--evaluations", default="50,100,200",
                   help="report the loss within these numbers of evaluations (default: 50,100,200)")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help=f"comma-separated (default: {','.join(OPTIMIZERS)})")
    p.add_argument("--bounds", default=",".join(BOUNDS),
                   help=f"comma-separated bounds settings (default: {','.join(BOUNDS)})")
    args = p.parse_args(argv)
    try:
        checkpoints = sorted(int(c) for c in _list(args.evaluations))
    except ValueError:
        raise UsageError(f"--evaluations takes whole numbers, got {args.evaluations!r}") from None
    if not checkpoints or checkpoints[0] < 1:
        raise UsageError(f"--evaluations must be whole numbers >= 1, got {args.evaluations!r}")
    configs = []
    for optimizer in _list(args.optimizers):
        for bounds in _list(args.bounds):
            configs.append(Config(size=args.size, optimizer=optimizer, bounds=bounds,
                                  iterations=10 * checkpoints[-1] + 10))
    runner.phase("loading the images and weights")
    inputs = stylize.load_inputs(configs[0])
    network = stylize.load_network(configs[0], inputs.content, inputs.styles)
    height, width = inputs.content.shape[:2]
    print(f"# {width}x{height} px, loss of the saved 8-bit image within N loss+gradient "
          f"evaluations; jax {jax.__version__} on {jax.devices()[0].device_kind}")
    header = ("| optimizer | bounds | " + " | ".join(f"loss @ {c} evals" for c in checkpoints)
              + " | s/iteration |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1), flush=True)
    runner.phase("comparing the optimisers", "the rows printed so far are all there is")
    for config in configs:
        job = stylize.prepare(inputs.content, inputs.styles, network.params, config,
                              module=network.module, preprocessing=network.preprocessing)
        found = measure(job, checkpoints)
        cells = " | ".join(f"{found['losses'][c]:.4g}" for c in checkpoints)
        print(f"| {config.optimizer} | {config.bounds} | {cells} | {found['s_per_iteration']:.3f} |",
              flush=True)
    return runner.ExitCode.OK
