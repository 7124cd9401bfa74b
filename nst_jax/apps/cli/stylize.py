"""``python scripts/stylize.py`` / ``nst-stylize``: one style transfer from the command line.

Its flags are :class:`nst_jax.config.Config`'s fields (:mod:`nst_jax.apps.common.flags`)
plus ``--output``, ``--bit-depth``, ``--save-every`` and ``--quiet``. It reads the
images and the weights, runs the optimisation with a progress line, and writes the
best image as an 8- or 16-bit PNG or TIFF with an sRGB ICC profile (atomically), with
the settings and the eq. 7 loss of exactly those pixels in its metadata. Errors and
Ctrl-C are handled by :mod:`nst_jax.apps.common.runner`.

Many photos: ``--content`` given a folder or several files runs them in batches into an
``--output`` folder (:mod:`nst_jax.apps.cli.photos`).

Long runs: with ``--start-size`` it runs coarse to fine (:mod:`nst_jax.coarse_to_fine`),
one progress line per scale; ``--checkpoint-every``, ``--checkpoint`` and ``--resume``
save the optimiser's state and continue from it (:mod:`nst_jax.checkpoint`), and a
Ctrl-C then saves one too. Without those flags a run is what it was before them.
"""
from __future__ import annotations

import logging
import os
import pathlib
import re
import sys
from typing import Sequence

from nst_jax import checkpoint, coarse_to_fine, driver, files, images, stylize, tiling
from nst_jax.apps.cli import photos
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import (ArgumentParser, ConfigFlags, UsageError, file_path, parse_and_run,
                                refuse_replacing_inputs)
from nst_jax.apps.common.outputs import save_result, scale_metadata
from nst_jax.apps.common.progress import LoopProgress
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import ALIASES, FIELDS
from nst_jax.errors import one_line

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
    flags = ConfigFlags(parser, fields=[f for f in FIELDS if f != "content"] + list(ALIASES))
    photos.add_content_flag(parser, flags)  # one file, or many photos
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=None, type=file_path,
                     help=f"output image, written atomically with an sRGB ICC profile: .png, or "
                          f".tif/.tiff (needs the tifffile package) (default: {DEFAULT_OUTPUT}); "
                          f"with many photos, their folder (default: {photos.DEFAULT_FOLDER}/)")
    out.add_argument("--bit-depth", type=int, choices=images.BIT_DEPTHS, default=8,
                     help="bits per sample of the output: 16 keeps the optimiser's precision "
                          "(no 8-bit banding in prints); the loss reported is of the pixels "
                          "written at that depth (default: 8)")
    out.add_argument("--save-every", type=int, default=0, metavar="N",
                     help="also save OUTPUT_iterNNNNN.EXT (same format and depth) every N "
                          "iterations (default: 0 = never)")
    out.add_argument("--quiet", action="store_true", help="print only the output path and errors")
    add_long_run_flags(parser)
    photos.add_flags(parser)
    return parser, flags


def snapshot_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_iter{iteration:05d}{output.suffix}")


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


def run(args, flags: ConfigFlags) -> int:
    if photos.many(args):
        return photos.run(args, flags)
    photos.check_one(args)
    args.output = args.output or DEFAULT_OUTPUT
    config = flags.config(args)
    if args.save_every < 0:
        raise UsageError(f"--save-every must be >= 0, got {args.save_every}")
    output = images.check_output_path(args.output)
    check_output_names(args, config, flags, output)
    checkpoints = Checkpoints(args, output)
    if args.coarse_iterations is not None and config.start_size is None:
        raise UsageError("--coarse-iterations needs --start-size (it is the iterations of each "
                         "scale before the last)")
    scales = coarse_to_fine.plan(config)  # every scale's style size checked before any work
    unchanged = (f"the existing {output} is unchanged" if output.exists()
                 else f"{output} was not written")
    log = runner.logger(args.quiet)
    arguments = {**flags.given(args), "output": args.output, "save_every": args.save_every,
                 **checkpoints.arguments}

    runner.phase("reading the images", unchanged)
    inputs = stylize.load_inputs(config)
    runner.phase("loading the weights")
    network = stylize.load_network(config, inputs.content, inputs.styles, log=log)
    first = checkpoints.start(config, network.info, scales)  # a mismatch: refused before any work
    content = inputs.content
    styles = ", ".join(f"{path} ({s.shape[1]}x{s.shape[0]})" for path, s in zip(config.style,
                                                                              inputs.styles))
    log(f"content {config.content} ({content.shape[1]}x{content.shape[0]}), style {styles}, "
        f"{config.iterations} iterations of {config.optimizer}, alpha/beta = "
        f"{config.alpha / config.beta:.3g}")
    if len(scales) > 1:
        log(f"coarse to fine: {', '.join(str(s.size) for s in scales)} px, "
            f"{config.coarse_iterations} iterations at each scale before the last")
    if checkpoints.meta is not None:
        log(f"resuming from {checkpoints.path} at {checkpoint.describe(checkpoints.meta)}")
    runner.phase("compiling")
    hooks = RunHooks(args, output, config, arguments, network, checkpoints, log)
    try:
        outcome = driver.run(config, network, inputs=inputs, chunk=CHUNK, hooks=hooks.hooks(),
                             stop=runner.stop_token(), resume=checkpoints.resume_at(first))
    finally:
        hooks.close()
    scale, job, status = outcome.scale, outcome.job, outcome.status
    if status == "interrupted":
        runner.interrupt_handled()
    # Kept at the end too: Ctrl-C's, and a finished run's (--resume with more --iterations).
    checkpointed = checkpoints.save(scale, job)

    iteration, evaluations = int(job.state.iteration), int(job.state.evaluations)
    if status == "interrupted" and iteration == 0 and scale.index == 0:
        print(f"error: interrupted before the first iteration ended; {unchanged}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    runner.phase("saving the image" + (" of the interrupted run" if status == "interrupted" else ""))
    _, total, terms = save_result(output, job, config, arguments, network.info, {
        "status": status, "iterations_done": iteration, "evaluations": evaluations,
        **scale_metadata(scale)}, args.bit_depth)
    runner.phase("finishing", f"{output} was written")
    if status == "nonfinite":
        where = f" of {scale.label()}" if scale.count > 1 else ""
        print(f"error: the loss became non-finite at iteration {iteration}{where}; stopped and "
              f"saved the best image so far to {output}", file=sys.stderr)
        return ExitCode.NONFINITE
    if status == "interrupted":
        where = f"{scale.label()}, " if scale.count > 1 else ""
        height, width = job.content.shape[:2]
        size = f" ({width}x{height} px)" if not scale.last else ""
        resume = f"; --resume continues from {checkpoints.path}" if checkpointed else ""
        print(f"interrupted at {where}iteration {iteration}/{scale.config.iterations}; saved the "
              f"best image so far{size} to {output}{resume}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    log(f"saved image ({args.bit_depth}-bit): loss {total:.4g} (content {terms.content:.4g}, style "
        f"{terms.style:.4g}) after {iteration} iterations"
        f"{' (converged)' if status == 'converged' else ''}, {evaluations} evaluations")
    print(f"wrote {output}")
    return ExitCode.OK


# --- long runs: coarse to fine and checkpoints ----------------------------------------------


def add_long_run_flags(parser: ArgumentParser) -> None:
    """``--checkpoint-every``, ``--checkpoint`` and ``--resume`` (``--start-size`` and
    ``--coarse-iterations`` are Config fields, with the other flags)."""
    group = parser.add_argument_group("long runs")
    group.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="save the optimiser's state every N iterations of each scale, at the "
                            "end of each scale and on Ctrl-C, for --resume (default: 0 = never)")
    group.add_argument("--checkpoint", default=None, metavar="DIR", type=file_path,
                       help="the checkpoint folder (default: OUTPUT with .ckpt for its suffix, "
                            "e.g. stylized.ckpt)")
    group.add_argument("--resume", action="store_true",
                       help="continue the run saved in the checkpoint folder, with the same "
                            "settings (--iterations may grow); Ctrl-C then saves a checkpoint too")


def scale_snapshot_path(output: pathlib.Path, scale: coarse_to_fine.Scale,
                        iteration: int) -> pathlib.Path:
    """``--save-every``'s file: :func:`snapshot_path`, with the scale in the name when there
    are several (``out_scale2_iter00040.png``)."""
    path = snapshot_path(output, iteration)
    return path if scale.count == 1 else path.with_name(
        f"{output.stem}_scale{scale.index + 1}_{path.name[len(output.stem) + 1:]}")


def check_output_names(args, config, flags: ConfigFlags, output: pathlib.Path) -> None:
    """Before any work: the ``--save-every`` snapshots' names, which are longer than
    ``output``'s, fit the file system, and neither the result nor a snapshot would replace
    a file the run reads (the same path, or a hard or symbolic link to it)."""
    outputs = [output]
    if args.save_every > 0:
        count, most = 1, config.iterations
        if config.start_size is not None:
            count = len(coarse_to_fine.ladder(config.start_size, config.size))
            most = max(most, config.coarse_iterations or 0)
        longest = scale_snapshot_path(
            output, coarse_to_fine.Scale(count - 1, count, config.size, config), most)
        problem = files.name_too_long(longest)
        if problem is not None:
            raise UsageError(f"--output is too long for its --save-every snapshots: {problem}; "
                             "shorten --output")
        outputs += existing_snapshots(output, args.save_every, most)
    refuse_replacing_inputs(outputs, flags.input_files(config), "--output")


def existing_snapshots(output: pathlib.Path, every: int, most: int) -> list[pathlib.Path]:
    """The files already beside ``output`` that a ``--save-every every`` snapshot of a run
    of at most ``most`` iterations a scale would replace (none at a scale's last iteration:
    the result is saved then)."""
    pattern = re.compile(re.escape(output.stem) + r"(?:_scale\d+)?_iter(\d{5,})"
                         + re.escape(output.suffix))
    try:
        names = os.listdir(output.parent)
    except OSError:
        return []
    return [output.parent / name for name in names
            if (match := pattern.fullmatch(name)) and int(match.group(1)) % every == 0
            and int(match.group(1)) < most]


class Checkpoints:
    """``--checkpoint-every``, ``--checkpoint`` and ``--resume`` of one run (see
    :mod:`nst_jax.checkpoint`). Everything that can be refused is refused here or in
    :meth:`start`, before the optimisation."""

    def __init__(self, args, output: pathlib.Path):
        self.every = args.checkpoint_every
        if self.every < 0:
            raise UsageError(f"--checkpoint-every must be >= 0, got {self.every}")
        self.on = self.every > 0 or args.resume
        if args.checkpoint is not None and not self.on:
            raise UsageError("--checkpoint needs --checkpoint-every N or --resume")
        self.path = pathlib.Path(args.checkpoint or checkpoint.default_path(output)).expanduser()
        self.resume, self.meta, self.fingerprint, self.scales = args.resume, None, None, ()
        self.saved_step = None
        self.arguments = ({} if not self.on else
                          {"checkpoint_every": self.every, "resume": self.resume})
        if not self.on:
            return
        problem = files.name_too_long(self.path)  # OUTPUT.ckpt: 1 byte longer than OUTPUT.png
        if problem is not None and args.checkpoint is not None:
            raise UsageError(f"--checkpoint: {problem}; shorten it")
        if problem is not None:
            raise UsageError(f"--output is too long for its checkpoint folder: {problem}; "
                             "shorten --output or give --checkpoint DIR")
        # orbax logs its errors with tracebacks through absl; ours are one line (save()). A
        # damaged checkpoint also leaves asyncio tasks that log theirs when collected.
        for name in ("absl", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # a save cut short (kill -9, three Ctrl-Cs) left an unfinished step folder: not ours
        removed = checkpoint.remove_unfinished(self.path)
        cut = f"an unfinished save ({', '.join(removed)}) cut short by an earlier run"
        self.meta = checkpoint.read(self.path)
        if self.resume and self.meta is None:
            raise UsageError(f"--resume: there is no checkpoint in {self.path}"
                             f"{f' (only {cut}, now removed)' if removed else ''}; start without "
                             "--resume (with --checkpoint-every N to make one)")
        if not self.resume and self.meta is not None:
            raise UsageError(f"{self.path} already holds a checkpoint "
                             f"({checkpoint.describe(self.meta)}); continue it with --resume, or "
                             "remove it to start over")
        checkpoint.check_folder(self.path)  # created by the first save, not before
        runner.on_exit_now(checkpoint.remove_partial_saves)
        if removed:
            kept = (f"the complete checkpoint before it ({checkpoint.describe(self.meta)}) is kept"
                    if self.meta is not None else "there was no complete checkpoint")
            runner.logger(args.quiet)(f"removed {cut} from {self.path}; {kept}")

    def start(self, config, weights_info: dict, scales) -> int:
        """Check a checkpoint to resume against this run; the scale to begin with."""
        self.scales = scales
        if not self.on:
            return 0
        self.fingerprint = checkpoint.fingerprint(config, weights_info)
        if self.meta is None:
            return 0
        checkpoint.check_fingerprint(self.meta["fingerprint"], self.fingerprint, self.path)
        position = self.meta["position"]
        if position["scale"] == len(scales) - 1 and position["iteration"] > config.iterations:
            raise UsageError(f"--iterations {config.iterations} is fewer than the "
                             f"{position['iteration']} the checkpoint in {self.path} has done; "
                             f"give at least {position['iteration']}")
        self.saved_step = self.meta["step"]
        return position["scale"]

    def resume_at(self, first: int) -> driver.Resume | None:
        """The driver's :class:`~nst_jax.driver.Resume` of the checkpoint (None: a new run)."""
        if self.meta is None:
            return None
        return driver.Resume(first, lambda state: checkpoint.restore(self.path, state, self.meta))

    def save(self, scale: coarse_to_fine.Scale, job: stylize.Stylization) -> bool:
        """Save ``job``'s state (once per step); a failure is a warning, and the run goes on."""
        if not self.on or bool(job.state.nonfinite):
            return False
        iteration = int(job.state.iteration)
        step = sum(s.config.iterations for s in self.scales[:scale.index]) + iteration
        if step == self.saved_step:
            return True
        if step == 0:  # nothing done yet: nothing to keep
            return False
        position = {"scale": scale.index, "scales": scale.count, "size": scale.size,
                    "iteration": iteration, "shape": list(job.state.pixels.shape)}
        try:
            checkpoint.save(self.path, step, job.state, self.fingerprint, position)
        except Exception as e:  # noqa: BLE001 - orbax's errors vary; none should end the run
            print(f"warning: could not save a checkpoint in {self.path} ({one_line(e)[:200]}); "
                  "the run goes on", file=sys.stderr)
            return False
        self.saved_step = step
        return True


def log_memory(log, scale: coarse_to_fine.Scale, job: stylize.Stylization) -> None:
    """Say how a scale is tiled (``--tile-size``) and what ``auto`` chose, and why."""
    if job.memory is None or (job.tiles is None and job.config.tile_size is None):
        return
    where = "" if scale.count == 1 else f" at {scale.label()}"
    tiles = "untiled" if job.tiles is None else f"tiles: {tiling.describe(job.tiles)}"
    why = "" if job.memory.why == "as asked" else f" ({job.memory.why})"
    log(f"{tiles}{where}, L-BFGS history {job.memory.lbfgs_memory}; about "
        f"{job.memory.bytes / 1e9:.1f} GB{why}")


class RunHooks:
    """What the command line does as the run goes (:mod:`nst_jax.driver`): at each scale's
    start, say how it is tiled; after each chunk, update its progress line;
    every ``--save-every`` iterations a snapshot of the best image so far, every
    ``--checkpoint-every`` a checkpoint; at each scale's end, close its progress line and
    save a checkpoint (a resumed run need not do that scale again)."""

    def __init__(self, args, output: pathlib.Path, config, arguments: dict, network,
                 checkpoints: Checkpoints, log):
        self.args, self.output, self.config, self.arguments = args, output, config, arguments
        self.network, self.checkpoints, self.log = network, checkpoints, log
        self.bar: LoopProgress | None = None
        self.started = False

    def hooks(self) -> list[driver.Hook]:
        save = lambda at: self.checkpoints.save(at.scale, at.job)  # noqa: E731
        return [driver.Hook(driver.SCALE_START, self.start),
                driver.Hook(driver.EVERY_CHUNK, self.progress),
                driver.Hook(driver.EveryN(self.args.save_every), self.snapshot),
                driver.Hook(driver.EveryN(self.checkpoints.every), save),
                driver.Hook(driver.SCALE_END, self.close),
                driver.Hook(driver.SCALE_END, save),
                driver.Hook(driver.RUN_END, self.close)]

    def start(self, at: driver.At) -> None:
        if not self.started:  # the first scale is compiled: a Ctrl-C during that ends here
            runner.phase("optimising")
            self.started = True
        log_memory(self.log, at.scale, at.job)

    def progress(self, at: driver.At) -> None:
        if self.bar is None:  # opened at the scale's first chunk: none for a scale stopped before
            description = ("stylizing" if at.scale.count == 1
                           else f"stylizing ({at.scale.label()})")
            self.bar = LoopProgress(description, at.scale.config.iterations,
                                    "loss {loss} (content {content}, style {style})",
                                    quiet=self.args.quiet).__enter__()
        total, terms = at.job.latest()
        self.bar.update(at.iteration, loss=f"{total:.4g}", content=f"{terms.content:.4g}",
                        style=f"{terms.style:.4g}")

    def snapshot(self, at: driver.At) -> None:
        save_result(scale_snapshot_path(self.output, at.scale, at.iteration), at.job,
                    self.config, self.arguments, self.network.info,
                    {"status": "running", "iterations_done": at.iteration,
                     **scale_metadata(at.scale)}, self.args.bit_depth)

    def close(self, at: driver.At | None = None) -> None:
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.__exit__(None, None, None)
