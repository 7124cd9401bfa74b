"""``nst-sweep`` / ``python scripts/sweep.py``: a grid of style transfers in one compiled call.

Thin: parses the axes, builds a :class:`nst_jax.sweep.Grid`, runs it with
:func:`nst_jax.sweep.run_grid` and writes, as each chunk finishes, one PNG and
one loss-curve plot per point, a labelled contact sheet, and ``results.json`` /
``results.csv`` with the final losses. Every file is written atomically, so an
interrupted sweep keeps what it has finished.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import pathlib
import re
import sys
import time
from typing import Sequence

import numpy as np

from nst_jax import images, optimize, plots
from nst_jax.cli import (EXIT_INTERRUPTED, EXIT_NONFINITE, _floats, _load, add_compute_flags,
                         check_sizes_and_iterations,
                         check_tolerance, config_dict, example_path, guarded)
from nst_jax.errors import NSTError
from nst_jax.files import atomic_write

GRID_OPTIMIZER = "lbfgs-stepwise"
DEFAULT_SIZE = 128
DEFAULT_ITERATIONS = 100
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
CONTACT_SHEET = "contact_sheet.png"


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _layer_sets(text: str) -> tuple[tuple[str, ...], ...]:
    """``conv2_2,conv4_2`` -> two points; ``conv1_1+conv2_1,conv1_1`` -> layer sets."""
    return tuple(tuple(l.strip() for l in item.split("+") if l.strip())
                 for item in text.split(",") if item.strip())


def _weight_lists(text: str) -> tuple[tuple[float, ...], ...]:
    """``1,0,0,0,0;0.2,0.2,0.2,0.2,0.2`` -> one weight vector per point."""
    return tuple(_floats(item) for item in text.split(";") if item.strip())


def _words(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


# (flag, Grid axis, parser, help)
AXES = (
    ("--ratios", "ratio", _floats, "alpha/beta ratios (alpha = ratio, beta = 1), e.g. 1e-4,1e-3"),
    ("--alphas", "alpha", _floats, "content weights alpha"),
    ("--betas", "beta", _floats, "style weights beta"),
    ("--content-layers", "content_layers", _layer_sets,
     "content layers, one point each; '+' joins layers of one point (conv2_2,conv4_2)"),
    ("--style-layers", "style_layers", _layer_sets,
     "style layer sets, one point each, weights 1/L (conv1_1,conv1_1+conv2_1)"),
    ("--style-layer-weights", "style_layer_weights", _weight_lists,
     "';'-separated weight vectors over the base style layers (conv1_1..conv5_1)"),
    ("--tv-weights", "tv_weight", _floats, "total-variation weights"),
    ("--inits", "init", _words, "initialisations: noise, content, style"),
    ("--seeds", "seed", _ints, "white-noise seeds"),
    ("--noise-amplitudes", "noise_amplitude", _floats, "white-noise amplitudes"),
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep",
        description="Run a product grid of Gatys et al. style transfers as one compiled, "
                    "vmapped computation (sharded over all devices). Every axis flag takes a "
                    "comma-separated list; the grid is their product. Example: --ratios "
                    "1e-4,1e-3,1e-2 --content-layers conv2_2,conv4_2 --seeds 0,1",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = p.add_argument_group("images")
    io.add_argument("--content", default=str(example_path("chelsea.jpg")), help="content image")
    io.add_argument("--style", default=str(example_path("starry_night.jpg")), help="style image")
    io.add_argument("--size", type=int, default=DEFAULT_SIZE,
                    help="long side of the content image (and output) in px")
    io.add_argument("--style-size", type=int, default=None,
                    help="long side of the style image in px (default: --size)")
    io.add_argument("--output-dir", default="sweep", help="folder for every output")
    axes = p.add_argument_group("grid axes (comma-separated values; the grid is their product)")
    for flag, _, parse, text in AXES:
        axes.add_argument(flag, type=parse, default=None, help=text)
    base = p.add_argument_group("settings shared by every point")
    base.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="iterations per point")
    base.add_argument("--optimizer", choices=optimize.OPTIMIZERS, default=GRID_OPTIMIZER,
                      help="all run under vmap; lbfgs-stepwise makes one evaluation per loop "
                           "step, so grid points never wait for each other's line searches "
                           "(optax's lbfgs is ~4x slower per point in a grid; see README)")
    base.add_argument("--tolerance", type=float, default=0.0,
                      help="each point stops once an iteration changes its loss by at most this "
                           "fraction (0 = run every iteration)")
    base.add_argument("--pooling", choices=("avg", "max"), default="avg")
    add_compute_flags(base)
    base.add_argument("--batch-size", type=int, default=0,
                      help="points per compiled call (0 = the whole grid); lower it when the "
                           "grid does not fit in memory")
    add_shared_flags(p)
    return p


def add_shared_flags(p: argparse.ArgumentParser) -> None:
    """``--weights``, ``--quiet`` and the multi-process flags (also used by paper_figures.py)."""
    p.add_argument("--weights", default=None, help="converted weights file (default: weights/vgg19.h5)")
    p.add_argument("--quiet", action="store_true", help="print only the output folder and errors")
    dist = p.add_argument_group("several processes (multi-host); see README")
    dist.add_argument("--distributed", action="store_true",
                      help="join a multi-process run (jax.distributed.initialize; arguments "
                           "detected on TPU pods, SLURM and Open MPI)")
    dist.add_argument("--coordinator", default=None, help="host:port of process 0")
    dist.add_argument("--num-processes", type=int, default=None)
    dist.add_argument("--process-id", type=int, default=None)


def check_common(args) -> None:
    """The checks of the flags sweep.py and paper_figures.py share."""
    check_sizes_and_iterations(args)
    if args.batch_size < 0:
        raise NSTError(f"--batch-size must be >= 0, got {args.batch_size}")


def _check_args(args) -> None:
    check_common(args)
    check_tolerance(args.tolerance)
    for flag, _, _, _ in AXES:
        values = getattr(args, flag[2:].replace("-", "_"))
        if values is not None and len(values) == 0:
            raise NSTError(f"{flag} got no values")
    if args.ratios is not None and (args.alphas is not None or args.betas is not None):
        raise NSTError("--ratios sets alpha and beta; do not combine it with --alphas/--betas")


def make_grid(args):
    """The :class:`nst_jax.sweep.Grid` the flags describe."""
    from nst_jax.stylize import Config
    from nst_jax.sweep import Grid

    base = Config(iterations=args.iterations, pooling=args.pooling, remat=args.remat,
                  precision=args.precision,
                  optimizer=optimize.Settings(method=args.optimizer, tolerance=args.tolerance))
    axes = {axis: getattr(args, flag[2:].replace("-", "_")) for flag, axis, _, _ in AXES}
    return Grid.product(base, **{k: v for k, v in axes.items() if v is not None})


def format_value(value) -> str:
    """An axis value as a label: ``0.001`` -> ``1e-3``, ``0.5`` -> ``0.5``, layer sets joined by ``+``."""
    if isinstance(value, (tuple, list)):
        return "+".join(format_value(v) for v in value)
    if isinstance(value, float):
        if value != 0 and not 0.1 <= abs(value) < 1e4:
            mantissa, exponent = f"{value:e}".split("e")
            return f"{float(mantissa):g}e{int(exponent)}"
        return f"{value:g}"
    return str(value)


def point_name(index: int, labels: dict) -> str:
    """File stem of a point: ``003_ratio-1e-3_seed-1`` (safe characters only)."""
    parts = [f"{index:03d}"] + [f"{name}-{format_value(v)}" for name, v in labels.items()]
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "_".join(parts))


@dataclasses.dataclass(frozen=True)
class SheetLayout:
    """Where each point goes on the contact sheet: the last axis with more than
    one value makes the columns, the others (in order) the rows."""

    rows: int
    cols: int
    row_labels: list[str]
    col_labels: list[str]
    col_title: str | None
    row_title: str | None


def sheet_layout(grid) -> SheetLayout:
    varying = [(name, values) for name, values in grid.axes if len(values) > 1]
    if not varying:
        return SheetLayout(1, len(grid), [""], [str(i) for i in range(len(grid))], None, None)
    col_name, col_values = varying[-1]
    # Row-major order with the column axis last: the grid's own order, when only the
    # column axis follows the others. Other axes with one value do not change it.
    rows = len(grid) // len(col_values)
    row_labels = []
    for r in range(rows):
        labels = grid.labels(r * len(col_values))
        row_labels.append("\n".join(f"{name}={format_value(labels[name])}"
                                    for name, _ in varying[:-1]))
    return SheetLayout(rows, len(col_values), row_labels,
                       [format_value(v) for v in col_values], col_name,
                       " x ".join(name for name, _ in varying[:-1]) or None)


class Writer:
    """Writes a sweep's outputs into ``folder`` as the chunks arrive (each file atomically):
    ``NNN_<labels>.png`` and ``NNN_<labels>_loss.png`` per point, ``results.json``,
    ``results.csv`` and ``contact_sheet.png`` (missing points drawn grey)."""

    def __init__(self, folder: pathlib.Path, grid, title: str = "nst_jax sweep"):
        self.folder, self.grid, self.title = folder, grid, title
        self.results: dict[int, object] = {}
        self.started = time.monotonic()

    def chunk(self, results) -> None:
        for r in results:
            self.results[r.index] = r
            name = point_name(r.index, r.labels)
            meta = {"Software": "nst_jax sweep", "nst_jax:point": json.dumps(r.summary()),
                    "nst_jax:config": json.dumps(config_dict(r.config), default=str)}
            images.save_png(self.folder / f"{name}.png", r.image, meta)
            title = ", ".join(f"{k}={format_value(v)}" for k, v in r.labels.items()) or name
            curve = plots.loss_curves({"total loss": r.trace}, title=title)
            images.save_png(self.folder / f"{name}_loss.png", curve.astype(np.float32) / 255.0)
        self.tables()
        self.sheet()

    def tables(self) -> None:
        from nst_jax.sweep import STATIC_FIELDS

        rows = [self.results[i].summary() for i in sorted(self.results)]
        document = {
            "axes": {name: [format_value(v) for v in values] for name, values in self.grid.axes},
            "shared": {k: v for k, v in config_dict(self.grid.configs[0]).items()
                       if k in STATIC_FIELDS},
            "points_done": len(rows), "points": len(self.grid),
            "seconds": round(time.monotonic() - self.started, 1),
            "results": [{**row, "file": point_name(row["index"], self.results[row["index"]].labels)
                         + ".png"} for row in rows],
        }
        with atomic_write(self.folder / RESULTS_JSON) as tmp:
            tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
        with atomic_write(self.folder / RESULTS_CSV) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def sheet(self) -> None:
        layout = sheet_layout(self.grid)
        cells, captions = [], []
        for i in range(len(self.grid)):
            r = self.results.get(i)
            cells.append(None if r is None else r.image)
            captions.append(None if r is None else
                            f"content {r.content:.3g}\nstyle {r.style:.3g}"
                            + ("" if r.status in ("completed", "converged") else f"\n{r.status}"))
        settings = self.grid.settings
        shared = (f"{self.grid.iterations} it. {settings.method}, "
                  f"{len(self.results)}/{len(self.grid)} points")
        sheet = plots.contact_sheet(cells, layout.rows, layout.cols, row_labels=layout.row_labels,
                                    col_labels=layout.col_labels, captions=captions,
                                    title=f"{self.title} ({shared})", row_title=layout.row_title,
                                    col_title=layout.col_title)
        images.save_png(self.folder / CONTACT_SHEET, sheet.astype(np.float32) / 255.0)


def prepare_folder(path: str) -> pathlib.Path:
    folder = pathlib.Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NSTError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    images.check_output_path(folder / CONTACT_SHEET)  # writable, or a one-line error
    return folder


def load_inputs(args, log):
    """``(content, style, params, preprocessing)`` from the image and weights flags."""
    from nst_jax import weights

    content = _load(args.content, args.size, "content")
    style = _load(args.style, args.style_size or args.size, "style")
    weights_path = pathlib.Path(args.weights) if args.weights else weights.ensure_weights(log=log)
    params, preprocessing = weights.load_params(weights_path)
    return content, style, params, preprocessing


def sweep_to_folder(grid, folder: pathlib.Path, sweeper, *, batch_size: int = 0,
                    fixed_batch: bool = False, title: str = "nst_jax sweep", log=print):
    """Run ``grid`` on ``sweeper`` (:class:`nst_jax.sweep.Sweeper`) and write its
    outputs into ``folder`` as each chunk finishes (process 0 only). Returns the
    :class:`nst_jax.sweep.PointResult` list; an interrupt propagates after the
    finished chunks (and the current one) are written."""
    import jax

    writer = Writer(folder, grid, title) if jax.process_index() == 0 else None
    devices = jax.devices()
    log(f"{title}: {len(grid)} points {'x'.join(map(str, grid.shape))} "
        f"({', '.join(name for name, _ in grid.axes) or 'one point'}), {grid.iterations} "
        f"iterations of {grid.settings.method} at {sweeper.width}x{sweeper.height} px, on "
        f"{len(devices)} {devices[0].platform} device(s) in {jax.process_count()} process(es)")

    def on_progress(p) -> None:
        log(f"chunk {p.chunk + 1}/{p.num_chunks}: iteration {p.iteration}/{p.iterations}, "
            f"{p.points_done}/{p.num_points} points done, {p.seconds:.0f}s")

    def on_chunk(results) -> None:
        if writer:
            writer.chunk(results)
            log(f"wrote {len(writer.results)}/{len(grid)} points to {folder}")

    return sweeper.run(grid, batch_size=batch_size or None, fixed_batch=fixed_batch,
                       on_chunk=on_chunk, on_progress=on_progress)


def start(args):
    """Join the processes if asked; ``(log, is process 0)``. Call before other JAX work."""
    from nst_jax import sweep

    if args.distributed or args.coordinator:
        sweep.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    main_process = jax.process_index() == 0
    quiet = args.quiet or not main_process
    log = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    return log, main_process


def run(args) -> int:
    _check_args(args)
    grid = make_grid(args)  # cheap checks first: layer names, axis values
    log, main_process = start(args)
    content, style, params, preprocessing = load_inputs(args, log)
    folder = prepare_folder(args.output_dir) if main_process else pathlib.Path(args.output_dir)
    from nst_jax.sweep import Sweeper

    sweeper = Sweeper.for_grids(content, style, params, [grid], preprocessing=preprocessing)
    try:
        results = sweep_to_folder(grid, folder, sweeper, batch_size=args.batch_size, log=log)
    except KeyboardInterrupt:
        print(f"interrupted; the finished points (and the interrupted chunk's best images so "
              f"far) are in {folder}", file=sys.stderr)
        return EXIT_INTERRUPTED
    nonfinite = [r.index for r in results if r.status == "nonfinite"]
    if nonfinite:
        print(f"error: the loss became non-finite for point(s) {nonfinite}; their best images so "
              f"far are in {folder}", file=sys.stderr)
        return EXIT_NONFINITE
    if main_process:
        print(f"wrote {folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(run, build_parser().parse_args(argv), "the sweep started")
