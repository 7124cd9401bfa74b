"""``python scripts/sweep.py`` / ``nst-sweep``: a grid of style transfers in one compiled call.

Its flags are :class:`nst_jax.config.Config`'s fields (:mod:`nst_jax.apps.common.flags`):
the sweepable ones as axes (lists of values; the grid is their product), the
others shared by every point. It builds a :class:`nst_jax.sweep.Grid`, runs it
on a :class:`nst_jax.sweep.Sweeper` and writes, as each chunk finishes, one PNG
and one loss-curve plot per point, a labelled contact sheet, and
``results.json`` / ``results.csv`` with the final losses. Every file is written
atomically, so an interrupted sweep keeps what it has finished. Nothing written
depends on the clock: the same flags give the same files.
"""
from __future__ import annotations

import sys
from typing import Sequence

from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import (ArgumentParser, ConfigFlags, file_path, parse_and_run,
                                       refuse_replacing_inputs)
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.common.sweeps import (DEFAULTS, add_run_flags, check_batch_size, load,
                                        make_sweeper, missing_folders, output_files,
                                        prepare_folder, remove_empty, start, sweep_to_folder)
from nst_jax.config import ConfigError, style_loss as style_loss_text
from nst_jax.errors import one_line


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(
        prog="sweep",
        description="Run a product grid of Gatys et al. style transfers as one compiled, vmapped "
                    "computation (sharded over all devices). Every axis flag takes a list of "
                    "values; the grid is their product. Example: --ratios 1e-4,1e-3,1e-2 "
                    "--content-layers conv2_2,conv4_2 --seeds 0,1")
    flags = ConfigFlags(parser, axes=True, defaults=DEFAULTS)
    out = parser.add_argument_group("output and batching")
    out.add_argument("--output-dir", default="sweep", type=file_path,
                     help="folder for every output (default: sweep)")
    out.add_argument("--batch-size", type=int, default=0,
                     help="points per compiled call (default: 0 = as many as fit in memory, "
                          "the whole grid if it fits); lower it when the grid runs out of memory")
    add_run_flags(parser)
    return parser, flags


# Config fields of a single run that a sweep does not do (one compiled program per grid).
SINGLE_RUN_FIELDS = {"start_size": "coarse to fine", "coarse_iterations": "coarse to fine",
                     "tile_size": "tiles"}


def refuse_single_run_fields(args, flags: ConfigFlags) -> None:
    """A :class:`UsageError` for a flag of :data:`SINGLE_RUN_FIELDS` the user gave."""
    for name, what in SINGLE_RUN_FIELDS.items():
        if getattr(args, name, None) is not None:
            raise flags.usage_error(ConfigError(
                name, f"is for scripts/stylize.py: a sweep runs every point at one size, without "
                      f"{what}"))


def make_grid(args, flags: ConfigFlags):
    """The :class:`nst_jax.sweep.Grid` the flags describe (every point checked)."""
    from nst_jax.sweep import Grid

    refuse_single_run_fields(args, flags)
    base = flags.config(args)
    axes = flags.axis_values(args)
    try:
        # Style distances as each point's config writes them (gram:1,histogram:1 ->
        # gram,histogram): the labels, file names and results.csv say what the PNGs' metadata says.
        if "style_loss" in axes:
            axes["style_loss"] = tuple(style_loss_text("style_loss", v)
                                       for v in axes["style_loss"])
        return Grid.product(base, **axes)
    except ConfigError as e:
        raise flags.usage_error(e) from None


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


def run(args, flags: ConfigFlags) -> int:
    check_batch_size(args.batch_size)
    grid = make_grid(args, flags)  # every point checked before any work
    refuse_replacing_inputs(output_files(args.output_dir, grid),
                            flags.input_files(grid.configs[0]), "--output-dir", "the sweep's files")
    main_process = start(args)
    quiet = args.quiet or not main_process
    inputs, network = load(grid.configs[0], quiet)
    # Points per compiled call: chosen (or refused, with the numbers) before any work.
    from nst_jax.sweep import fitting_batch_size

    batch = args.batch_size or fitting_batch_size(grid, inputs.content.shape[:2], network.module)
    created = missing_folders(args.output_dir) if main_process else []
    folder = prepare_folder(args.output_dir) if main_process else None
    try:
        sweeper = make_sweeper(inputs, network, [grid])
        runner.phase("sweeping", f"the finished points are in {args.output_dir}")
        try:
            results = sweep_to_folder(grid, folder, sweeper, batch_size=batch, quiet=quiet)
        except KeyboardInterrupt:
            runner.interrupt_handled()
            print(f"interrupted; the finished points (and the interrupted chunk's best images "
                  f"so far) are in {args.output_dir}", file=sys.stderr)
            return ExitCode.INTERRUPTED
    except BaseException as e:
        remove_empty(created)  # a sweep that failed before its first chunk leaves no folder
        if isinstance(e, Exception) and runner.out_of_memory(e):
            print(f"error: out of memory with {min(batch, len(grid))} points per compiled call "
                  f"at {inputs.content.shape[1]}x{inputs.content.shape[0]} px; try a smaller "
                  f"--batch-size (e.g. {max(1, min(batch, len(grid)) // 2)}) or --size "
                  f"({one_line(e)[:200]})", file=sys.stderr)
            return ExitCode.FAILED
        raise
    nonfinite = [r.index for r in results if r.status == "nonfinite"]
    if nonfinite:
        print(f"error: the loss became non-finite for point(s) {nonfinite}; their best images so "
              f"far are in {args.output_dir}", file=sys.stderr)
        return ExitCode.NONFINITE
    if main_process:
        print(f"wrote {folder}")
    return ExitCode.OK
