"""What the sweep tools share: the files a sweep writes (one PNG and loss curve per point,
``results.json``/``results.csv``, the contact sheet), the folder they go in, the
multi-process flags, and running a grid into a folder with a progress line.

``scripts/sweep.py``, the figure tools and the web page's Sweep tab all write a sweep's
outputs through :class:`Writer`, so the same grid gives the same files whichever ran it.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import pathlib
import re
from typing import Sequence

import numpy as np

from nst_jax import images, stylize
from nst_jax.apps.common import plots, runner
from nst_jax.apps.common.flags import ArgumentParser, UsageError
from nst_jax.apps.common.progress import LoopProgress
from nst_jax.errors import NSTError
from nst_jax.files import atomic_write

# Where the sweep's defaults differ from a single run's: smaller images, fewer iterations.
DEFAULTS = {"size": 128, "iterations": 100}


RESULTS_JSON = "results.json"


RESULTS_CSV = "results.csv"


CONTACT_SHEET = "contact_sheet.png"


def add_run_flags(parser: ArgumentParser) -> None:
    """``--quiet`` and the multi-process flags (also used by paper_figures.py)."""
    parser.add_argument("--quiet", action="store_true", help="print only the output folder and errors")
    dist = parser.add_argument_group("several processes (multi-host); see docs/sweeps.md")
    dist.add_argument("--distributed", action="store_true",
                      help="join a multi-process run (jax.distributed.initialize; arguments "
                           "detected on TPU pods, SLURM and Open MPI)")
    dist.add_argument("--coordinator", default=None, help="host:port of process 0")
    dist.add_argument("--num-processes", type=int, default=None)
    dist.add_argument("--process-id", type=int, default=None)


def check_batch_size(batch_size: int) -> None:
    if batch_size < 0:
        raise UsageError(f"--batch-size must be >= 0, got {batch_size}")


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


# The longest stem of a point's files (ASCII, so bytes): with "_loss.png" well within the
# 255 bytes a name may have (long weight vectors make long labels).
MAX_STEM = 200


def point_name(index: int, labels: dict) -> str:
    """File stem of a point: ``003_ratio-1e-3_seed-1`` (safe characters only); one longer
    than :data:`MAX_STEM` is cut, and ends in a hash of the whole, so stems stay distinct."""
    parts = [f"{index:03d}"] + [f"{name}-{format_value(v)}" for name, v in labels.items()]
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", "_".join(parts))
    if len(stem) > MAX_STEM:
        stem = f"{stem[:MAX_STEM - 13]}-{hashlib.sha256(stem.encode()).hexdigest()[:12]}"
    return stem


def output_files(folder: str | pathlib.Path, grid) -> list[pathlib.Path]:
    """Every file :class:`Writer` may write in ``folder`` for ``grid``."""
    folder = pathlib.Path(folder)
    stems = [point_name(i, grid.labels(i)) for i in range(len(grid))]
    return [folder / name for name in (CONTACT_SHEET, RESULTS_JSON, RESULTS_CSV)] + [
        folder / f"{stem}{end}" for stem in stems for end in (".png", "_loss.png")]


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
        self.curves = plots.have_matplotlib()

    def chunk(self, results) -> None:
        for r in results:
            self.results[r.index] = r
            name = point_name(r.index, r.labels)
            meta = {"Software": "nst_jax sweep", "nst_jax:point": json.dumps(r.summary()),
                    "nst_jax:config": json.dumps(r.config.to_dict(), default=str)}
            images.save_png(self.folder / f"{name}.png", r.image, meta)
            if not self.curves:
                continue
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
            "shared": {k: v for k, v in self.grid.configs[0].to_dict().items()
                       if k in STATIC_FIELDS},
            "points_done": len(rows), "points": len(self.grid),
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


def missing_folders(path: str | pathlib.Path) -> list[pathlib.Path]:
    """The folders :func:`prepare_folder` would create for ``path``, deepest first."""
    out, folder = [], pathlib.Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def remove_empty(folders: Sequence[pathlib.Path]) -> None:
    """Remove ``folders`` (deepest first), stopping at the first one that is not empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def prepare_folder(path: str | pathlib.Path) -> pathlib.Path:
    folder = pathlib.Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NSTError(f"cannot create the output folder {folder}: {e.strerror or e}") from None
    images.check_output_path(folder / CONTACT_SHEET)  # writable, or a one-line error
    return folder


def sweep_to_folder(grid, folder: pathlib.Path | None, sweeper, *, batch_size: int = 0,
                    fixed_batch: bool = False, title: str = "nst_jax sweep", quiet: bool = False):
    """Run ``grid`` on ``sweeper`` (:class:`nst_jax.sweep.Sweeper`) and write its
    outputs into ``folder`` as each chunk finishes (process 0; others pass None).
    Returns the :class:`nst_jax.sweep.PointResult` list. Ctrl-C ends the sweep after
    the current call (the runner's stop token, or Python's, :func:`nst_jax.stop.ctrl_c_sets`);
    the finished chunks and the current one are written, then ``KeyboardInterrupt`` is
    raised."""
    import jax

    writer = Writer(folder, grid, title) if folder is not None else None
    devices = jax.devices()
    log = runner.logger(quiet)
    log(f"{title}: {len(grid)} points {'x'.join(map(str, grid.shape))} "
        f"({', '.join(name for name, _ in grid.axes) or 'one point'}), {grid.iterations} "
        f"iterations of {grid.settings.method} at {sweeper.width}x{sweeper.height} px, on "
        f"{len(devices)} {devices[0].platform} device(s) in {jax.process_count()} process(es)")
    if writer is not None and not writer.curves:
        log("note: no loss-curve plots, because matplotlib is not installed "
            "(pip install 'nst_jax[plots]')")
    from nst_jax.sweep import chunks

    why = "--batch-size" if batch_size else "as many as fit in memory"
    batch_size = batch_size or sweeper.fitting_batch_size(grid)
    plan = chunks(len(grid), batch_size, sweeper.num_devices, fixed=fixed_batch)
    if len(plan) > 1:
        log(f"in {len(plan)} compiled calls of {len(plan[0])} points ({why})")
    plan = len(plan)
    with LoopProgress(title, plan * grid.iterations, "chunk {chunk}, points done {points}",
                      quiet=quiet) as bar:

        def on_progress(p) -> None:
            bar.update(p.chunk * p.iterations + p.iteration, chunk=f"{p.chunk + 1}/{p.num_chunks}",
                       points=f"{p.points_done}/{p.num_points}")

        def on_chunk(results) -> None:
            if writer is not None:
                runner.phase("writing a chunk's results",
                             f"the points finished before it are in {folder}", check=False)
                writer.chunk(results)
                runner.phase("sweeping", f"the finished points are in {folder}", check=False)

        token = runner.stop_token()
        results = sweeper.run(grid, batch_size=batch_size, fixed_batch=fixed_batch,
                              on_chunk=on_chunk, on_progress=on_progress, stop=token)
    runner.check_interrupt()  # a Ctrl-C ended the sweep: raised here, its chunk written
    if token.is_set():  # Ctrl-C outside the runner (a tool's main called directly)
        raise KeyboardInterrupt
    return results


def start(args):
    """Join the processes if asked (before other JAX work); True on process 0."""
    from nst_jax import sweep

    if args.distributed or args.coordinator:
        sweep.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    import jax

    return jax.process_index() == 0


def load(config, quiet: bool):
    """``(inputs, network)`` of a sweep's shared settings (:func:`nst_jax.stylize.load_inputs`,
    :func:`nst_jax.stylize.load_network`)."""
    runner.phase("reading the images")
    inputs = stylize.load_inputs(config)
    runner.phase("loading the weights")
    log = runner.logger(quiet)
    return inputs, stylize.load_network(config, inputs.content, inputs.styles, log=log)


def make_sweeper(inputs, network, grids):
    """The :class:`nst_jax.sweep.Sweeper` of ``grids`` on these images, masks and network."""
    from nst_jax.sweep import Sweeper

    runner.phase("compiling", "nothing was written")
    return Sweeper.for_grids(inputs.content, inputs.styles, network.params, grids,
                             module=network.module, preprocessing=network.preprocessing,
                             content_masks=inputs.content_masks, style_masks=inputs.style_masks)
