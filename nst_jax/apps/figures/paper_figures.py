"""``python scripts/paper_figures.py``: the paper's Figs. 2, 4, 5 and 6 on the bundled examples.

Writes ``paper_figures/<figure>/`` (contact sheet, one PNG and loss curve per
point, results.json/csv) and prints, per figure, the quantitative trend the
paper describes and whether it holds here; ``trends.json`` collects them. Each
figure is one sweep, and all of them share one compiled program. The shared
settings are :class:`nst_jax.config.Config`'s fields that fix the program.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from typing import Sequence

from nst_jax.apps.figures import paper
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser, ConfigFlags, figure_list, parse_and_run
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.common.sweeps import (add_run_flags, check_batch_size, load, make_sweeper, prepare_folder,
                                start, sweep_to_folder)
from nst_jax.config import STATIC_FIELDS
from nst_jax.files import atomic_write

DEFAULTS = {"size": 96, "iterations": 100}
TITLES = {"fig2_content": "Fig. 2: content reconstructions", "fig2_style": "Fig. 2: style reconstructions",
          "fig4": "Fig. 4: alpha/beta", "fig5": "Fig. 5: content layer", "fig6": "Fig. 6: initialisation"}


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(prog="paper_figures", description=__doc__.splitlines()[0])
    flags = ConfigFlags(parser, fields=STATIC_FIELDS, defaults=DEFAULTS)
    figures = parser.add_argument_group("figures")
    figures.add_argument("--figures", default=",".join(paper.FIGURES),
                         help=f"comma-separated subset of {', '.join(paper.FIGURES)} (default: all)")
    figures.add_argument("--batch-size", type=int, default=0,
                         help="points per compiled call (default: 0 = the largest figure's)")
    figures.add_argument("--output-dir", default="paper_figures",
                         help="folder for every output (default: paper_figures)")
    add_run_flags(parser)
    return parser, flags


def trend(name, results, content):
    if name in ("fig2_content", "fig5"):
        return getattr(paper, f"{name}_trend")(results, content)
    return getattr(paper, f"{name}_trend")(results)


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


def run(args, flags: ConfigFlags) -> int:
    figures = figure_list(args.figures, paper.FIGURES)
    check_batch_size(args.batch_size)
    base = flags.config(args)
    grids = paper.grids(base)
    main_process = start(args)
    quiet = args.quiet or not main_process
    inputs, network = load(base, quiet)
    content = inputs.content
    root = prepare_folder(args.output_dir) if main_process else None
    # One program for every figure: the union of their layers, chunks of one size.
    sweeper = make_sweeper(inputs, network, [grids[name] for name in figures])
    batch_size = args.batch_size or max(len(grids[name]) for name in figures)
    trends = {}
    for name in figures:
        folder = prepare_folder(root / name) if main_process else None
        runner.phase(f"running {name}", f"the finished figures are in {args.output_dir}")
        try:
            results = sweep_to_folder(grids[name], folder, sweeper, batch_size=batch_size,
                                      fixed_batch=True, title=TITLES[name], quiet=quiet)
        except KeyboardInterrupt:
            runner.interrupt_handled()
            print(f"interrupted during {name}; finished figures are in {args.output_dir}",
                  file=sys.stderr)
            return ExitCode.INTERRUPTED
        found = trend(name, results, content)
        trends[name] = dataclasses.asdict(found)
        if main_process:
            print(f"{TITLES[name]}: {found.report()}")
            with atomic_write(root / "trends.json") as tmp:
                tmp.write_text(json.dumps(trends, indent=2, default=float) + "\n")
    if main_process:
        print(f"wrote {root}")
    return ExitCode.OK
