"""Regenerate the paper's Figs. 2, 4, 5 and 6 on the bundled examples, one sweep each.

``python scripts/paper_figures.py`` writes ``paper_figures/<figure>/`` (contact sheet,
one PNG and loss curve per point, results.json/csv) and prints, per figure, the
quantitative trend the paper describes and whether it holds here; ``trends.json``
collects them. See ``--help``.
"""
import argparse
import dataclasses
import json
import sys

from nst_jax import optimize, paper
from nst_jax.cli import EXIT_INTERRUPTED, example_path, guarded
from nst_jax.errors import NSTError
from nst_jax.files import atomic_write
from nst_jax.stylize import Config
from nst_jax.sweep import Sweeper
from nst_jax.sweep_cli import (GRID_OPTIMIZER, add_shared_flags, check_common, load_inputs,
                               prepare_folder, start, sweep_to_folder)

TITLES = {"fig2_content": "Fig. 2: content reconstructions", "fig2_style": "Fig. 2: style reconstructions",
          "fig4": "Fig. 4: alpha/beta", "fig5": "Fig. 5: content layer", "fig6": "Fig. 6: initialisation"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--content", default=str(example_path("chelsea.jpg")))
    p.add_argument("--style", default=str(example_path("starry_night.jpg")))
    p.add_argument("--size", type=int, default=96, help="long side of the images in px")
    p.add_argument("--style-size", type=int, default=None)
    p.add_argument("--iterations", type=int, default=100, help="L-BFGS iterations per point")
    p.add_argument("--figures", default=",".join(paper.FIGURES),
                   help=f"comma-separated subset of {', '.join(paper.FIGURES)}")
    p.add_argument("--batch-size", type=int, default=0,
                   help="points per compiled call (0 = the largest figure's)")
    p.add_argument("--output-dir", default="paper_figures")
    add_shared_flags(p)
    return p


def trend(name, results, content):
    if name in ("fig2_content", "fig5"):
        return getattr(paper, f"{name}_trend")(results, content)
    return getattr(paper, f"{name}_trend")(results)


def run(args) -> int:
    figures = [f.strip() for f in args.figures.split(",") if f.strip()]
    unknown = sorted(set(figures) - set(paper.FIGURES))
    if unknown or not figures:
        raise NSTError(f"unknown figure(s) {', '.join(unknown) or '(none given)'}; "
                       f"choose from {', '.join(paper.FIGURES)}")
    check_common(args)
    base = Config(iterations=args.iterations, optimizer=optimize.Settings(method=GRID_OPTIMIZER))
    grids = paper.grids(base)
    log, main_process = start(args)
    content, style, params, preprocessing = load_inputs(args, log)
    root = prepare_folder(args.output_dir) if main_process else None
    # One program for every figure: the union of their layers, chunks of one size.
    sweeper = Sweeper.for_grids(content, style, params, [grids[name] for name in figures],
                                preprocessing=preprocessing)
    batch_size = args.batch_size or max(len(grids[name]) for name in figures)
    trends = {}
    for name in figures:
        folder = prepare_folder(root / name) if main_process else None
        try:
            results = sweep_to_folder(grids[name], folder, sweeper, batch_size=batch_size,
                                      fixed_batch=True, title=TITLES[name], log=log)
        except KeyboardInterrupt:
            print(f"interrupted during {name}; finished figures are in {args.output_dir}",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        found = trend(name, results, content)
        trends[name] = dataclasses.asdict(found)
        if main_process:
            print(f"{TITLES[name]}: {found.report()}")
            with atomic_write(root / "trends.json") as tmp:
                tmp.write_text(json.dumps(trends, indent=2, default=float) + "\n")
    if main_process:
        print(f"wrote {root}")
    return 0


def main(argv=None) -> int:
    return guarded(run, build_parser().parse_args(argv), "the first figure was written")


if __name__ == "__main__":
    sys.exit(main())
