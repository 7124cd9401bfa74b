"""``python scripts/control_figures.py``: the artistic controls (Gatys et al. 2017), checked.

Writes ``control_figures/<figure>/`` (a labelled contact sheet, one PNG per run,
results.json) for colour preservation, style blending, a style per region and
style scale, and prints, per figure, the numbers that show the control does what
it promises and whether that holds here; ``checks.json`` collects them. Blending
and regions are one sweep each; the colour modes and the style scales fix the
program, so each is a run of its own (``original`` colours are the ``none`` run
finished in that mode, and a run the figures share is run once).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from typing import Sequence

import numpy as np

from nst_jax import images, stylize
from nst_jax.apps.figures import controls
from nst_jax.apps.common import plots
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser, ConfigFlags, UsageError, figure_list, parse_and_run
from nst_jax.apps.figures.paper import Trend
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.common.sweeps import CONTACT_SHEET, RESULTS_JSON, prepare_folder, sweep_to_folder
from nst_jax.config import Config, ConfigError
from nst_jax.files import atomic_write
from nst_jax.sweep import Grid, PointResult, Sweeper

DEFAULTS = {"size": 128, "iterations": 150}
# The settings every run shares; the controls themselves are the figures'.
FIELDS = ("size", "iterations", "optimizer", "pooling", "precision", "weights", "seed")
# Plain ASCII: the sheet's built-in font has no section sign.
TITLES = {"colors": "Colour preservation (2017 sec. 5)", "blend": "Style blending (2017 sec. 3)",
          "regions": "A style per region (2017 sec. 4)", "scale": "Style scale (2017 sec. 6)"}
CHECKS_JSON = "checks.json"


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(prog="control_figures", description=__doc__.splitlines()[0])
    flags = ConfigFlags(parser, fields=FIELDS, defaults=DEFAULTS)
    figures = parser.add_argument_group("figures")
    figures.add_argument("--figures", default=",".join(controls.FIGURES),
                         help=f"comma-separated subset of {', '.join(controls.FIGURES)} "
                              "(default: all)")
    figures.add_argument("--output-dir", default="control_figures",
                         help="folder for every output (default: control_figures)")
    figures.add_argument("--quiet", action="store_true",
                         help="print only the checks, the output folder and errors")
    return parser, flags


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


class Runs:
    """Each config's images (read once), the network, and each single run (made once)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.network = None
        self._inputs: dict = {}
        self._single: dict = {}

    def inputs(self, config: Config) -> stylize.Inputs:
        key = controls.run_key(config)
        if key not in self._inputs:
            self._inputs[key] = stylize.load_inputs(config)
        return self._inputs[key]

    def sweeper(self, grid: Grid) -> Sweeper:
        inputs = self.inputs(grid.configs[0])
        runner.phase("compiling")
        return Sweeper.for_grids(inputs.content, inputs.styles, self.network.params, [grid],
                                 module=self.network.module,
                                 preprocessing=self.network.preprocessing,
                                 content_masks=inputs.content_masks, style_masks=inputs.style_masks)

    def grid(self, grid: Grid, folder: pathlib.Path | None, title: str,
             batch_size: int = 0) -> tuple[list[PointResult], Sweeper]:
        """``(results, sweeper)`` of a sweep, written into ``folder`` (if given) as it runs."""
        sweeper = self.sweeper(grid)
        runner.phase("running")
        return sweep_to_folder(grid, folder, sweeper, batch_size=batch_size, title=title,
                               quiet=self.quiet), sweeper

    def single(self, config: Config, title: str) -> PointResult:
        """The result of one run (shared by the figures: see :func:`controls.run_key`)."""
        key = controls.run_key(config)
        if key not in self._single:
            self._single[key] = self.grid(Grid((config,)), None, title)[0][0]
        return dataclasses.replace(self._single[key], config=config)


def write_runs(folder: pathlib.Path, runs: dict, references: dict, title: str,
               captions: dict) -> None:
    """``<name>.png`` per run, ``results.json``, and a one-row contact sheet: the
    ``references`` (name -> image) first, then the runs (name -> PointResult)."""
    for name, r in runs.items():
        meta = {"Software": "nst_jax control_figures", "nst_jax:point": json.dumps(r.summary()),
                "nst_jax:config": json.dumps(r.config.to_dict(), default=str)}
        images.save_png(folder / f"{name}.png", r.image, meta)
    document = {name: {**r.summary(), "file": f"{name}.png", "config": r.config.to_dict()}
                for name, r in runs.items()}
    with atomic_write(folder / RESULTS_JSON) as tmp:
        tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    cells = list(references.values()) + [r.image for r in runs.values()]
    labels = list(references) + list(runs)
    sheet = plots.contact_sheet(cells, 1, len(cells), col_labels=labels,
                                captions=[captions.get(name) for name in labels], title=title)
    images.save_png(folder / CONTACT_SHEET, sheet.astype(np.float32) / 255.0)


def _settings(config: Config) -> str:
    return f"{config.size} px, {config.iterations} it. {config.optimizer}"


def colors_figure(runs: Runs, base: Config, folder: pathlib.Path) -> Trend:
    configs = controls.colors_configs(base)
    content = runs.inputs(configs["none"]).content
    results = {}
    for mode, config in configs.items():
        if mode == "original":  # the none run, finished in this mode (see as_original_colors)
            results[mode] = controls.as_original_colors(results["none"], content)
        else:
            results[mode] = runs.single(config, f"colors: {mode}")
    trend = controls.colors_trend({m: r.image for m, r in results.items()}, content)
    v = trend.values
    captions = {"luminance": f"chroma diff {v['chroma_luminance']:.4f}\ndY {v['dY_luminance']:.3f}",
                "original": f"chroma diff {v['chroma_original']:.4f}"}
    captions.update({m: f"colour dist {v[f'colour_distance_{m}']:.3f}"
                     for m in ("none", "histogram", "histogram-cholesky")})
    style = runs.inputs(configs["none"]).styles[0]
    write_runs(folder, results, {"content": content, "style": style},
               f"{TITLES['colors']}, {_settings(base)}", captions)
    return trend


def blend_figure(runs: Runs, base: Config, folder: pathlib.Path) -> Trend:
    grid = controls.blend_grid(base)
    # One point per call, as the single runs: the rounding of a batched convolution depends
    # on the batch's size, and L-BFGS amplifies it (64 px, 60 iterations: 20 levels apart
    # between a point run alone and in a batch of 5). One program still runs every point.
    results, sweeper = runs.grid(grid, folder, f"{TITLES['blend']}: Starry Night + fruits",
                                 batch_size=1)
    alone = runs.single(controls.example_base(base), "Starry Night alone")
    images.save_png(folder / "starry_night_alone.png", alone.image,
                    {"nst_jax:config": json.dumps(alone.config.to_dict(), default=str)})
    runner.phase("measuring the style losses")
    losses = controls.style_losses(sweeper, grid.configs[0], [r.image for r in results])
    return controls.blend_trend([r.config.style_blend_weights for r in results],
                                [r.image for r in results], alone.image, losses)


def regions_figure(runs: Runs, grid: Grid, folder: pathlib.Path) -> Trend:
    results, _ = runs.grid(grid, folder, f"{TITLES['regions']}: Starry Night left, fruits right")
    inputs = runs.inputs(grid.configs[0])
    equal = next(r for r in results if len(set(r.config.region_weights)) == 1)
    return controls.regions_trend(equal.image, inputs.content_masks, inputs.styles)


def scale_figure(runs: Runs, base: Config, folder: pathlib.Path) -> Trend:
    configs = controls.scale_configs(base)
    results = {f"scale-{s:g}": runs.single(c, f"scale: {s:g}") for s, c in configs.items()}
    trend = controls.scale_trend(list(configs), [r.image for r in results.values()])
    periods = trend.values["texture_period_px"]  # in the order of the scales
    captions = {name: f"period {v:.1f} px" for name, v in zip(results, periods)}
    inputs = runs.inputs(next(iter(configs.values())))
    write_runs(folder, results, {"content": inputs.content, "style": inputs.styles[0]},
               f"{TITLES['scale']}, {_settings(base)}", captions)
    return trend


def write_masks(folder: pathlib.Path, content_path: str) -> list[str]:
    """The regions' masks as PNGs at the content image's own size; their paths."""
    height, width = images.load_image(content_path).shape[:2]
    paths = []
    for k, mask in enumerate(controls.region_masks(height, width)):
        path = folder / f"mask_{k + 1}.png"
        images.save_png(path, np.repeat(mask[..., None], 3, axis=2))
        paths.append(str(path))
    return paths


def run(args, flags: ConfigFlags) -> int:
    figures = figure_list(args.figures, controls.FIGURES)
    base = controls.example_base(flags.config(args))
    needed = {"colors": controls.colors_configs(base).values(),
              "blend": controls.blend_grid(base).configs[:1],
              "scale": controls.scale_configs(base).values()}
    runner.phase("reading the images")
    runs = Runs(args.quiet)
    for name in figures:  # every image read, and every size checked, before any work
        try:
            for config in needed.get(name, ()):
                runs.inputs(config)
        except ConfigError as e:
            raise UsageError(f"--size {base.size} is too small for the {name} figure: "
                             f"{e}") from None
    root = prepare_folder(args.output_dir)
    folders = {name: prepare_folder(root / name) for name in figures}
    runner.phase("writing the masks", f"the finished figures are in {args.output_dir}")
    regions = None
    if "regions" in figures:
        # Mask files, as a user of --content-masks gives them; the configs record their paths.
        regions = controls.regions_grid(base, write_masks(folders["regions"], base.content))
        runs.inputs(regions.configs[0])
    jobs = {"colors": lambda: colors_figure(runs, base, folders["colors"]),
            "blend": lambda: blend_figure(runs, base, folders["blend"]),
            "regions": lambda: regions_figure(runs, regions, folders["regions"]),
            "scale": lambda: scale_figure(runs, base, folders["scale"])}
    runner.phase("loading the weights")
    inputs = runs.inputs(base)
    runs.network = stylize.load_network(base, inputs.content, inputs.styles,
                                        log=runner.logger(args.quiet))
    checks = {}
    for name in figures:
        runner.phase(f"running {name}")
        try:
            trend = jobs[name]()
        except KeyboardInterrupt:
            runner.interrupt_handled()
            print(f"interrupted during {name}; finished figures are in {args.output_dir}",
                  file=sys.stderr)
            return ExitCode.INTERRUPTED
        checks[name] = dataclasses.asdict(trend)
        print(f"{TITLES[name]}: {trend.report()}", flush=True)
        with atomic_write(root / CHECKS_JSON) as tmp:
            tmp.write_text(json.dumps(checks, indent=2, default=float) + "\n")
    print(f"wrote {root}")
    return ExitCode.OK
