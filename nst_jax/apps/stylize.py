"""``python scripts/stylize.py`` / ``nst-stylize``: one style transfer from the command line.

Its flags are :class:`nst_jax.config.Config`'s fields (:mod:`nst_jax.apps.flags`)
plus ``--output``, ``--save-every`` and ``--quiet``. It reads the images and
the weights, runs the optimisation with a progress line, and writes the best
image as an 8-bit PNG (atomically) with the settings and the eq. 7 loss of
exactly those pixels in its text chunks. Errors and Ctrl-C are handled by
:mod:`nst_jax.apps.runner`.
"""
from __future__ import annotations

import json
import pathlib
import sys
from typing import Sequence

from nst_jax import __version__, images, stylize
from nst_jax.apps import runner
from nst_jax.apps.flags import ArgumentParser, ConfigFlags, UsageError, parse_and_run
from nst_jax.apps.progress import LoopProgress
from nst_jax.apps.runner import ExitCode

DEFAULT_OUTPUT = "stylized.png"
# Iterations per compiled call between progress updates.
CHUNK = 10


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(
        prog="stylize",
        description="Gatys, Ecker & Bethge (CVPR 2016) style transfer: optimise an image so that "
                    "its VGG19 conv4_2 features match the content image and its Gram matrices "
                    "match the style image's. With no arguments, stylizes the bundled photo of "
                    "Chelsea the cat in the style of The Starry Night.")
    flags = ConfigFlags(parser)
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=DEFAULT_OUTPUT,
                     help=f"output PNG, written atomically (default: {DEFAULT_OUTPUT})")
    out.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also save OUTPUT_iterNNNNN.png every N iterations (default: 0 = never)")
    out.add_argument("--quiet", action="store_true", help="print only the output path and errors")
    return parser, flags


def snapshot_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_iter{iteration:05d}.png")


def png_metadata(config, arguments: dict, weights_info: dict, extra: dict) -> dict[str, str]:
    """The PNG text chunks: the settings, the arguments as given, the weights' provenance
    and ``extra`` (status, losses). Nothing that varies between identical runs."""
    meta = {
        "Software": f"nst_jax {__version__}",
        "nst_jax:arguments": json.dumps(arguments, default=str),
        "nst_jax:config": json.dumps(config.to_dict(), default=str),
        "nst_jax:weights": json.dumps(weights_info, default=str),
    }
    meta.update({f"nst_jax:{k}": str(v) for k, v in extra.items()})
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


def run(args, flags: ConfigFlags) -> int:
    config = flags.config(args)
    if args.save_every < 0:
        raise UsageError(f"--save-every must be >= 0, got {args.save_every}")
    output = images.check_output_path(args.output)
    unchanged = (f"the existing {output} is unchanged" if output.exists()
                 else f"{output} was not written")
    log = runner.logger(args.quiet)
    arguments = {**flags.given(args), "output": args.output, "save_every": args.save_every}

    runner.phase("reading the images", unchanged)
    inputs = stylize.load_inputs(config)
    runner.phase("loading the weights")
    network = stylize.load_network(config, inputs.content, inputs.styles, log=log)
    content = inputs.content
    styles = ", ".join(f"{path} ({s.shape[1]}x{s.shape[0]})" for path, s in zip(config.style,
                                                                              inputs.styles))
    log(f"content {config.content} ({content.shape[1]}x{content.shape[0]}), style {styles}, "
        f"{config.iterations} iterations of {config.optimizer}, alpha/beta = "
        f"{config.alpha / config.beta:.3g}")
    runner.phase("compiling")
    job = stylize.prepare(content, inputs.styles, network.params, config, module=network.module,
                          preprocessing=network.preprocessing, init_image=inputs.init,
                          content_masks=inputs.content_masks, style_masks=inputs.style_masks)

    def save(path: pathlib.Path, extra: dict):
        """Write the best image so far; return the loss of its 8-bit pixels and the terms."""
        image, total, terms = job.saved()
        losses = {"loss_total": total, "loss_content": terms.content, "loss_style": terms.style,
                  "loss_tv": terms.tv}
        images.save_png(path, image, png_metadata(config, arguments, network.info,
                                                  {**extra, **losses}))
        return total, terms

    status = "completed"
    runner.phase("optimising")
    with LoopProgress("stylizing", config.iterations,
                      "loss {loss} (content {content}, style {style})", quiet=args.quiet) as bar:
        try:
            while not job.done:
                iteration = int(job.state.iteration)
                target = iteration + CHUNK
                if args.save_every:  # end chunks on multiples of --save-every
                    target = min(target, (iteration // args.save_every + 1) * args.save_every)
                state = job.step(target - iteration)
                iteration = int(state.iteration)
                total, terms = job.latest()
                bar.update(iteration, loss=f"{total:.4g}", content=f"{terms.content:.4g}",
                           style=f"{terms.style:.4g}")
                if args.save_every and iteration % args.save_every == 0 and not job.done:
                    save(snapshot_path(output, iteration), {"status": "running",
                                                            "iterations_done": iteration})
                runner.check_interrupt()
        except KeyboardInterrupt:
            runner.interrupt_handled()
            status = "interrupted"
    if bool(job.state.nonfinite):
        status = "nonfinite"
    elif bool(job.state.converged) and status == "completed":
        status = "converged"

    iteration, evaluations = int(job.state.iteration), int(job.state.evaluations)
    if status == "interrupted" and iteration == 0:
        print(f"error: interrupted before the first iteration ended; {unchanged}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    runner.phase("saving the image" + (" of the interrupted run" if status == "interrupted" else ""))
    total, terms = save(output, {"status": status, "iterations_done": iteration,
                                 "evaluations": evaluations})
    runner.phase("finishing", f"{output} was written")
    if status == "nonfinite":
        print(f"error: the loss became non-finite at iteration {iteration}; stopped and saved the "
              f"best image so far to {output}", file=sys.stderr)
        return ExitCode.NONFINITE
    if status == "interrupted":
        print(f"interrupted at iteration {iteration}/{config.iterations}; saved the best image so "
              f"far to {output}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    log(f"saved image (8-bit): loss {total:.4g} (content {terms.content:.4g}, style "
        f"{terms.style:.4g}) after {iteration} iterations"
        f"{' (converged)' if status == 'converged' else ''}, {evaluations} evaluations")
    print(f"wrote {output}")
    return ExitCode.OK
