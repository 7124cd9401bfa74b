"""``python scripts/style_distances.py``: the style distances compared on measures none of them optimises.

A distance cannot be judged by its own loss: each run lowers the term it optimises. So
every output (one run per style distance, :mod:`nst_jax.distances`, on each content and
style pair) is measured by what no candidate optimises, or by every candidate alike:

colour
    the sliced Wasserstein distance between the output's pixel colours and the style
    image's, in sRGB and in CIE Lab (:func:`nst_jax.measures.colour_sliced_wasserstein`:
    64 fixed directions, exact for any two image sizes). The networks' losses see colours
    only through VGG's features; this is the pixels themselves.
cross table
    every distance's style term evaluated on every output (real VGG features, the
    distances' own functions, unscaled), each as a ratio to its value on the Gram run's
    output; ``held out`` is the geometric mean of the ratios of the distances that
    neither the run nor Gram's optimises (for ``sliced``: ``mean-cov`` and
    ``histogram``). The evaluation's sliced directions are drawn from another seed than
    the runs', so even the sliced run is measured on directions it never saw.
Pareto fronts
    a sweep of alpha/beta per distance (one compiled program each, on the first pair):
    content loss (eq. 1) against the colour and held-out measures. A distance's front is
    compared with Gram's at equal content loss (interpolated along both, in logs, over
    the content losses both reach): the table says which distance is lower there.

Writes ``<out-dir>/results/style_distances.md`` and ``.json`` (after each pair, so an
interrupted run keeps what it finished) and ``<out-dir>/images/style_distances_<size>.png``
(rows: the pairs; columns: content, style, each distance's output) and
``style_distances_pareto.png``. Per run: wall time (its compilation included) and
evaluations.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
from typing import Mapping, Sequence

import jax
import numpy as np

from nst_jax import images, losses, measures, stylize
from nst_jax import distances as distance_fns
from nst_jax.apps.common import plots, runner
from nst_jax.apps.common.flags import ArgumentParser, ConfigFlags, UsageError, parse_and_run
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.common.sweeps import prepare_folder, sweep_to_folder
from nst_jax.config import Config, ConfigError, example_path, parse_style_loss
from nst_jax.files import atomic_write
from nst_jax.sweep import Grid, PointResult, Sweeper

DEFAULTS = {"iterations": 100}
# The settings every run shares (the size, the distance and alpha/beta are the comparison's).
FIELDS = ("iterations", "ratio", "optimizer", "init", "pooling", "precision", "weights", "seed",
          "redraw_every")
# Bundled images only (nst_jax/examples), so the default runs anywhere the package does: the
# bundled pair, the same style on a still life, and a photo's colours as the style. More
# pairs: --pair CONTENT STYLE (e.g. /work/shared/examples/astronaut.png).
DEFAULT_PAIRS = (("chelsea.jpg", "starry_night.jpg"), ("fruits.jpg", "starry_night.jpg"),
                 ("chelsea.jpg", "fruits.jpg"))
# ';' separates the runs: a mix has commas of its own.
DEFAULT_DISTANCES = ("gram", "mean-cov", "sliced", "histogram", "gram,histogram")
DEFAULT_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
REFERENCE = "gram"  # the paper's: every ratio is to its run
EVALUATORS = distance_fns.STYLE_DISTANCES
PROJECTIONS = 64  # colour SW directions
COLOUR_SEED = 0
# The evaluation draws sliced's directions from the run's seed plus this.
EVALUATION_SEED_OFFSET = 1
# Points of the common content-loss range at which two fronts are compared.
FRONT_SAMPLES = 9
NAME = "style_distances"
# Under --out-dir: <RESULTS>/<name>.md and .json, <IMAGES>/<name>_<size>.png and _pareto.png.
RESULTS = pathlib.Path("results")
IMAGES = pathlib.Path("images")


# --------------------------------------------------------------------------- flags


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(prog="style_distances", description=__doc__.splitlines()[0])
    flags = ConfigFlags(parser, fields=FIELDS, defaults=DEFAULTS)
    group = parser.add_argument_group("comparison")
    group.add_argument("--size", default="256",
                       help="comma-separated output sizes (long side, px) of the side-by-side "
                            "runs (default: 256)")
    group.add_argument("--pairs-at", action="append", default=[], metavar="SIZE=N",
                       help="at SIZE px run only the first N pairs (repeatable; default: every "
                            "pair at every size), e.g. 512=1")
    group.add_argument("--iterations-at", action="append", default=[], metavar="SIZE=N",
                       help="iterations of the runs at SIZE px (repeatable; default: --iterations)")
    group.add_argument("--pair", action="append", nargs=2, metavar=("CONTENT", "STYLE"),
                       help="a content and a style image (repeatable; replaces the default "
                            "pairs: " + ", ".join(f"{c} + {s}" for c, s in DEFAULT_PAIRS)
                            + ", bundled in nst_jax/examples)")
    group.add_argument("--distances", default=";".join(DEFAULT_DISTANCES),
                       help="';'-separated style distances to compare, each a distance or a "
                            "mix (gram must be one: every ratio is to its run; default: "
                            f"{';'.join(DEFAULT_DISTANCES)})")
    group.add_argument("--ratios", default=",".join(f"{r:g}" for r in DEFAULT_RATIOS),
                       help="comma-separated alpha/beta of the Pareto sweeps (default: "
                            f"{','.join(f'{r:g}' for r in DEFAULT_RATIOS)})")
    group.add_argument("--pareto-size", type=int, default=128,
                       help="size of the Pareto sweeps, px (default: 128)")
    group.add_argument("--pareto-iterations", type=int, default=None,
                       help="iterations of the Pareto sweeps (default: --iterations)")
    group.add_argument("--no-pareto", action="store_true", help="skip the Pareto sweeps")
    group.add_argument("--out-dir", default="docs",
                       help=f"writes {RESULTS}/NAME.md and .json and {IMAGES}/NAME_*.png "
                            "under it (default: docs)")
    group.add_argument("--name", default=NAME,
                       help=f"the files' name (default: {NAME}); another name keeps a "
                            "separate run's results apart")
    group.add_argument("--quiet", action="store_true",
                       help="print only the verdict, the output folder and errors")
    return parser, flags


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return parse_and_run(build_parser, functools.partial(run, argv=argv), argv)


def _ints(flag: str, text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{flag}: expected comma-separated whole numbers, got {text!r}") from None
    if not values:
        raise UsageError(f"{flag}: names no size")
    return values


def _per_size(flag: str, given: Sequence[str]) -> dict[int, int]:
    out = {}
    for item in given:
        size, _, n = item.partition("=")
        try:
            out[int(size)] = int(n)
        except ValueError:
            raise UsageError(f"{flag}: expected SIZE=N, got {item!r}") from None
        if out[int(size)] < 1:
            raise UsageError(f"{flag}: N must be at least 1, got {item!r}")
    return out


def parse_distances(text: str) -> list[str]:
    """``--distances``: the canonical names (:func:`nst_jax.config.style_loss`), in order."""
    out = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        try:
            name = Config().replace(style_loss=part).style_loss
        except ConfigError as e:
            raise UsageError(f"--distances: {part!r} {e.problem}") from None
        if name in out:
            raise UsageError(f"--distances: {name} is named twice")
        out.append(name)
    if REFERENCE not in out:
        raise UsageError(f"--distances: must include {REFERENCE} (every ratio is to its run)")
    return out


def parse_ratios(text: str) -> list[float]:
    try:
        ratios = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--ratios: expected comma-separated numbers, got {text!r}") from None
    if len(ratios) < 2 or not all(math.isfinite(r) and r > 0 for r in ratios):
        raise UsageError("--ratios: give at least two alpha/beta values, each > 0")
    return sorted(set(ratios))


# ------------------------------------------------------------------ measures, pure


def components(distance: str) -> tuple[str, ...]:
    """The distances a run's style term is made of (``'gram,histogram'`` -> both)."""
    return tuple(parse_style_loss(distance))


def held_out(distance: str) -> tuple[str, ...]:
    """The evaluators neither ``distance``'s run nor the reference (Gram) run optimises."""
    used = set(components(distance)) | {REFERENCE}
    return tuple(e for e in EVALUATORS if e not in used)


def geometric_mean(values: Sequence[float]) -> float:
    values = [float(v) for v in values]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def cross_ratios(values: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{run: {evaluator: value}}`` (unscaled distances of each run's output) ->
    ``{run: {evaluator: value / the reference run's, ..., 'held_out': geometric mean over
    :func:`held_out`}}`` (the reference's own row is all 1; held out: NaN when every
    evaluator is used)."""
    reference = values[REFERENCE]
    out = {}
    for run, row in values.items():
        ratios = {e: row[e] / reference[e] if reference[e] > 0 else float("nan")
                  for e in EVALUATORS}
        ratios["held_out"] = (1.0 if run == REFERENCE
                              else geometric_mean([ratios[e] for e in held_out(run)]))
        out[run] = ratios
    return out


def at_equal_content(front: Sequence[tuple[float, float]],
                     reference: Sequence[tuple[float, float]],
                     samples: int = FRONT_SAMPLES) -> dict | None:
    """Compare two fronts of ``(content loss, measure)`` points (both > 0) at equal content
    loss: each interpolated linearly in ``(log content, log measure)`` (sorted by content)
    at ``samples`` content losses spread over the range both reach.

    Returns ``{'overlap': [lo, hi], 'ratio': geometric mean of front / reference there,
    'lower_everywhere', 'higher_everywhere'}``, or None when the ranges do not meet.
    """
    def logs(points):
        x, y = (np.log(np.maximum(np.asarray(v, np.float64), 1e-300)) for v in zip(*points))
        order = np.argsort(x, kind="stable")
        return x[order], y[order]

    xf, yf = logs(front)
    xr, yr = logs(reference)
    lo, hi = max(xf[0], xr[0]), min(xf[-1], xr[-1])
    if lo > hi:
        return None
    at = np.linspace(lo, hi, samples) if hi > lo else np.array([lo])
    diff = np.interp(at, xf, yf) - np.interp(at, xr, yr)
    return {"overlap": [float(np.exp(lo)), float(np.exp(hi))],
            "ratio": float(np.exp(np.mean(diff))),
            "lower_everywhere": bool(np.all(diff < 0)),
            "higher_everywhere": bool(np.all(diff > 0))}


def pareto_summary(points: Sequence[dict], distances: Sequence[str]) -> dict[str, dict]:
    """Each distance's front against Gram's at equal content loss: ``{distance: {'lab',
    'rgb', 'held_out': at_equal_content-like dicts (held_out: the geometric mean of the
    held-out evaluators' ratios, lower/higher everywhere if every one is), 'beats_gram':
    colour (Lab) and held-out both lower on average, 'dominates': both lower everywhere}}``.
    ``points``: the Pareto records (``distance``, ``content_loss``, ``colour_sw``, ``cross``)."""
    def front(distance, value):
        return [(p["content_loss"], value(p)) for p in points if p["distance"] == distance]

    out = {}
    for d in distances:
        if d == REFERENCE:
            continue
        row = {}
        for space in measures.COLOUR_SPACES:
            row[space] = at_equal_content(front(d, lambda p: p["colour_sw"][space]),
                                          front(REFERENCE, lambda p: p["colour_sw"][space]))
        each = [at_equal_content(front(d, lambda p: p["cross"][e]),
                                 front(REFERENCE, lambda p: p["cross"][e])) for e in held_out(d)]
        if each and all(c is not None for c in each):
            row["held_out"] = {"evaluators": list(held_out(d)),
                               "ratio": geometric_mean([c["ratio"] for c in each]),
                               "lower_everywhere": all(c["lower_everywhere"] for c in each),
                               "higher_everywhere": all(c["higher_everywhere"] for c in each)}
        else:
            row["held_out"] = None
        lab, cross = row["lab"], row["held_out"]
        row["beats_gram"] = bool(lab and cross and lab["ratio"] < 1 and cross["ratio"] < 1)
        row["dominates"] = bool(lab and cross and lab["lower_everywhere"]
                                and cross["lower_everywhere"])
        out[d] = row
    return out


def colour_measures(image: np.ndarray, style: np.ndarray) -> dict[str, float]:
    """``{'rgb', 'lab'}``: :func:`nst_jax.measures.colour_sliced_wasserstein` of ``image``
    to ``style`` in each space (:data:`PROJECTIONS` directions, seed :data:`COLOUR_SEED`)."""
    return {space: measures.colour_sliced_wasserstein(image, style, space, PROJECTIONS,
                                                      COLOUR_SEED)
            for space in measures.COLOUR_SPACES}


# ------------------------------------------------------------- the cross evaluation


@functools.lru_cache(maxsize=8)
def _measure_program(module, preprocessing, content_layers: tuple[str, ...],
                     style_layers: tuple[str, ...]):
    """Jitted ``(variables, targets, pixels, content weights, style weights) -> {'content':
    eq. 1, evaluator: its style term unscaled}`` (one compilation per image shape)."""
    layers = tuple(dict.fromkeys(content_layers + style_layers))

    def measure(variables, targets, pixels, content_weights, style_weights):
        features = stylize.make_features_fn(variables, layers, module, preprocessing)(pixels)
        out = {"content": losses.weighted_content_loss(features, targets.content,
                                                       content_weights),
               "gram": losses.guided_style_loss(features, targets.style, None, style_weights)}
        for name in EVALUATORS:
            if name != "gram":
                out[name] = distance_fns.distance_style_loss(
                    name, features, targets.distances[name], None, style_weights)
        return out

    return jax.jit(measure)


class Evaluator:
    """Every distance's style term (and eq. 1) of an output of one pair at one size, on
    the run's network: targets made once (sliced's directions from ``seed``)."""

    def __init__(self, network: stylize.Network, content: np.ndarray, style: np.ndarray,
                 config: Config, seed: int):
        layers = tuple(dict.fromkeys(config.content_layers + config.style_layers))
        variables, features_fn = stylize.device_features(network.params, network.module,
                                                         network.preprocessing, layers)
        targets = stylize.compute_targets(features_fn, content, style, config.content_layers,
                                          config.style_layers, distances=EVALUATORS, seed=seed)
        self.variables = jax.device_put(variables)
        self.targets = jax.device_put(jax.tree_util.tree_map(np.asarray, targets))
        f32 = np.float32
        self.weights = ({l: f32(w) for l, w in config.layer_weights("content").items()},
                        {l: f32(w) for l, w in config.layer_weights("style").items()})
        self.program = _measure_program(network.module, network.preprocessing,
                                        tuple(config.content_layers), tuple(config.style_layers))

    def __call__(self, image: np.ndarray) -> dict[str, float]:
        values = self.program(self.variables, self.targets, np.asarray(image, np.float32),
                              *self.weights)
        return {k: float(v) for k, v in jax.device_get(values).items()}


# ------------------------------------------------------------------------- runs


def pair_label(pair: tuple[str, str]) -> str:
    return " + ".join(pathlib.Path(p).stem for p in pair)


def pair_config(base: Config, pair: tuple[str, str], size: int, distance: str = REFERENCE,
                iterations: int | None = None) -> Config:
    return base.replace(content=pair[0], style=(pair[1],), size=size, style_loss=distance,
                        iterations=iterations or base.iterations)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a command line asks for: the base settings, the distances, the side-by-side
    runs ``(size, pair, iterations)`` and the Pareto sweeps (None: skipped)."""

    base: Config
    distances: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    runs: tuple[tuple[int, tuple[str, str], int], ...]
    ratios: tuple[float, ...]
    pareto: Config | None  # the first pair at the Pareto size and iterations
    root: pathlib.Path
    name: str

    def path(self, kind: str) -> pathlib.Path:
        """``'md'``, ``'json'``, or an image's tail (``'256'``, ``'pareto'``)."""
        if kind in ("md", "json"):
            return self.root / RESULTS / f"{self.name}.{kind}"
        return self.root / IMAGES / f"{self.name}_{kind}.png"


def make_plan(args, flags: ConfigFlags) -> Plan:
    """The :class:`Plan` of parsed flags; :class:`UsageError` for a bad one (before any work)."""
    base = flags.config(args)
    sizes = _ints("--size", args.size)
    for size in sizes:
        try:
            base.replace(size=size)
        except ConfigError as e:
            raise UsageError(f"--size {e.problem}") from None
    limits = _per_size("--pairs-at", args.pairs_at)
    iterations_at = _per_size("--iterations-at", args.iterations_at)
    pairs = tuple(tuple(p) for p in args.pair) if args.pair else tuple(
        (str(example_path(c)), str(example_path(s))) for c, s in DEFAULT_PAIRS)
    runs = tuple((size, pair, iterations_at.get(size, base.iterations)) for size in sizes
                 for pair in pairs[:limits.get(size, len(pairs))])
    pareto = None
    if not args.no_pareto:
        try:
            pareto = pair_config(base, pairs[0], args.pareto_size, REFERENCE,
                                 args.pareto_iterations)
        except ConfigError as e:
            flag = {"size": "--pareto-size", "iterations": "--pareto-iterations"}.get(e.field)
            raise UsageError(f"{flag or e.field} {e.problem}") from None
    if "/" in args.name or not args.name.strip():
        raise UsageError(f"--name: {args.name!r} is not a file name")
    return Plan(base, tuple(parse_distances(args.distances)), pairs, runs,
                tuple(parse_ratios(args.ratios)), pareto, pathlib.Path(args.out_dir), args.name)


def sweep_once(grid: Grid, inputs: stylize.Inputs, network: stylize.Network, title: str,
               quiet: bool) -> tuple[list[PointResult], float]:
    """``(results, seconds)`` of one sweep (its targets and compilation included), one
    point per compiled call: every sweep of a distance at a size then runs one program
    (the side-by-side run and the Pareto points alike), and a point's pixels do not depend
    on the batch it ran in (a batched convolution rounds differently)."""
    started = time.perf_counter()
    runner.phase("compiling", check=False)
    sweeper = Sweeper.for_grids(inputs.content, inputs.styles, network.params, [grid],
                                module=network.module, preprocessing=network.preprocessing)
    runner.phase(f"running {title}", check=False)
    results = sweep_to_folder(grid, None, sweeper, batch_size=1, title=title, quiet=quiet)
    return results, time.perf_counter() - started


def record(result: PointResult, style: np.ndarray, evaluate: Evaluator, **fields) -> dict:
    """One output's JSON record: the run, its colour and cross measures."""
    cross = evaluate(result.image)
    return {**fields, "distance": result.config.style_loss,
            "ratio": result.config.alpha / result.config.beta,
            "iterations": result.iterations, "evaluations": result.evaluations,
            "status": result.status, "content_loss": cross.pop("content"),
            "style_term": result.style, "colour_sw": colour_measures(result.image, style),
            "cross": cross}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": jax.devices()[0].platform,
            "jax": jax.__version__}


# ----------------------------------------------------------------------- report


def _g(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            + ["| " + " | ".join(row) + " |" for row in rows])


def _groups(runs: Sequence[dict]) -> list[tuple[tuple[int, str], list[dict]]]:
    keys = list(dict.fromkeys((r["size"], r["pair"]) for r in runs))
    return [(k, [r for r in runs if (r["size"], r["pair"]) == k]) for k in keys]


def _verdict(row: dict) -> str:
    if row["dominates"]:
        return "lower on both, everywhere"
    if row["beats_gram"]:
        return "lower on both, on average"
    lab, cross = row["lab"], row["held_out"]
    if lab is None or cross is None:
        return "the fronts do not overlap"
    return (f"colour {'lower' if lab['ratio'] < 1 else 'higher'}, held out "
            f"{'lower' if cross['ratio'] < 1 else 'higher'}")


def markdown(report: dict) -> str:
    """The results page: the command, the machine, then the colour, cross and Pareto
    tables and the verdict (as much as is finished)."""
    m, s = report["machine"], report["settings"]
    iterations = ", ".join(f"{it} at {size} px" for size, it in s["iterations"].items())
    lines = ["# Style distances on held-out measures", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, jax {m['jax']}; "
             f"weights {report['weights']}.", "",
             f"One run per style distance ({', '.join(s['distances'])}) and content/style pair: "
             f"alpha/beta {_g(s['ratio'])}, {s['optimizer']}, init {s['init']}, seed "
             f"{s['seed']}, sliced's directions drawn anew every {s.get('redraw_every', 0)} "
             f"iterations (0: once); iterations: {iterations}. Each output is measured by what no run "
             "optimises: its colours against the style's (the sliced Wasserstein distance of "
             f"the pixels over {s['projections']} directions, in sRGB [0, 1] and in CIE Lab "
             "units; lower is closer), and every distance's style term on its VGG features "
             "(the cross table). Wall time includes each run's compilation.", ""]
    runs, references = report["runs"], report["references"]
    lines += ["## Colour: the output's pixels against the style's", ""]
    rows = []
    for (size, pair), group in _groups(runs):
        ref = next((r for r in group if r["distance"] == REFERENCE), None)
        own = references.get(f"{size}/{pair}")
        if own:
            rows.append([str(size), pair, "*the content image*", "0", _g(own["rgb"]),
                         _g(own["lab"]), _g(own["lab"] / ref["colour_sw"]["lab"] if ref else None),
                         "", "", ""])
        for r in group:
            rel = r["colour_sw"]["lab"] / ref["colour_sw"]["lab"] if ref else None
            rows.append([str(size), pair, r["distance"], _g(r["content_loss"]),
                         _g(r["colour_sw"]["rgb"]), _g(r["colour_sw"]["lab"]), _g(rel),
                         f"{r['wall_s']:.0f}", str(r["evaluations"]), r["status"]])
    lines += _table(["size", "pair", "distance", "content loss (eq. 1)", "colour SW, RGB",
                     "colour SW, Lab", "Lab x Gram's", "wall s", "evaluations", "status"], rows)
    lines += ["", "## Cross table: every distance on every output", "",
              "Each distance's style term (unscaled) on each output, as a ratio to its value "
              "on the Gram run's output of the same pair and size (below 1: closer to the "
              "style than Gram's output by that distance). *held out*: the geometric mean "
              "over the distances that neither the row's run nor Gram's optimises. The "
              "evaluation's sliced directions are not the runs' (another seed).", ""]
    rows, pooled = [], {}
    for (size, pair), group in _groups(runs):
        values = {r["distance"]: r["cross"] for r in group}
        if REFERENCE not in values:
            continue
        for run, ratio in cross_ratios(values).items():
            rows.append([str(size), pair, run, *(_g(ratio[e]) for e in EVALUATORS),
                         _g(ratio["held_out"])])
            pooled.setdefault((size, run), []).append(ratio)
    lines += _table(["size", "pair", "output of", *EVALUATORS, "held out"], rows)
    if len(_groups(runs)) > len({size for (size, _), _ in _groups(runs)}):
        lines += ["", "Geometric mean over the pairs of each size:", ""]
        rows = [[str(size), run, str(len(ratios)),
                 *(_g(geometric_mean([r[e] for r in ratios])) for e in (*EVALUATORS, "held_out"))]
                for (size, run), ratios in pooled.items()]
        lines += _table(["size", "output of", "pairs", *EVALUATORS, "held out"], rows)
    for size, image in report["images"].items():
        lines += ["", f"![Outputs at {size} px](../{IMAGES.as_posix()}/{image})"]
    pareto = report.get("pareto")
    if pareto and pareto["points"]:
        lines += ["", "## Pareto fronts: content loss against the held-out measures", "",
                  f"{pareto['pair']}, {pareto['size']} px, {pareto['iterations']} iterations, "
                  f"alpha/beta {', '.join(_g(r) for r in pareto['ratios'])}: one sweep (one "
                  "compiled program) per distance.", ""]
        rows = [[p["distance"], _g(p["ratio"]), _g(p["content_loss"]), _g(p["colour_sw"]["rgb"]),
                 _g(p["colour_sw"]["lab"]), *(_g(p["cross"][e]) for e in EVALUATORS),
                 str(p["evaluations"])] for p in pareto["points"]]
        lines += _table(["distance", "alpha/beta", "content loss", "colour SW, RGB",
                         "colour SW, Lab", *(f"{e} (unscaled)" for e in EVALUATORS),
                         "evaluations"], rows)
        lines += ["", "Against Gram's front at equal content loss (both fronts interpolated in "
                  "logs over the content losses both reach; ratio: the geometric mean of this "
                  "front over Gram's there, below 1 is better):", ""]
        rows = []
        for d, row in pareto["summary"].items():
            lab, rgb, cross = row["lab"], row["rgb"], row["held_out"]
            rows.append([d, "-" if lab is None else
                         f"{_g(lab['overlap'][0])} to {_g(lab['overlap'][1])}",
                         _g(lab and lab["ratio"]), _g(rgb and rgb["ratio"]),
                         _g(cross and cross["ratio"]),
                         ", ".join(cross["evaluators"]) if cross else "-", _verdict(row),
                         f"{pareto['sweeps'][d]['wall_s']:.0f}"])
        lines += _table(["distance", "common content loss", "colour SW Lab x Gram",
                         "colour SW RGB x Gram", "held out x Gram", "held-out evaluators",
                         "against Gram", "sweep wall s"], rows)
        if pareto["plot"]:
            lines += ["", f"![Pareto fronts](../{IMAGES.as_posix()}/{pareto['plot']})"]
        if pareto["summary"]:
            winners = [d for d, row in pareto["summary"].items() if row["beats_gram"]]
            lines += ["", "**Verdict:** " + (
                f"{', '.join(winners)} beat{'s' if len(winners) == 1 else ''} Gram on both the "
                "colour (Lab) and the held-out cross measures at equal content loss."
                if winners else "no distance beats Gram on both the colour (Lab) and the "
                                "held-out cross measures at equal content loss.")]
    return "\n".join(lines) + "\n"


def write_report(plan: Plan, report: dict) -> None:
    for path, text in ((plan.path("json"), json.dumps(report, indent=2) + "\n"),
                       (plan.path("md"), markdown(report))):
        with atomic_write(path) as tmp:
            tmp.write_text(text)


def side_by_side(rows: Sequence[tuple[str, np.ndarray, np.ndarray, dict]],
                 distances: Sequence[str], title: str) -> np.ndarray:
    """The figure of one size: a row per pair ``(label, content, style, {distance: (image,
    record)})``; columns content, style, each distance's output (captioned with its colour
    SW in Lab and its content loss)."""
    cells, captions = [], []
    for _, content, style, outputs in rows:
        cells += [content, style]
        captions += [None, None]
        for d in distances:
            image, rec = outputs.get(d, (None, None))
            cells.append(image)
            captions.append(None if rec is None else f"Lab SW {rec['colour_sw']['lab']:.1f}\n"
                                                     f"content {rec['content_loss']:.3g}")
    return plots.contact_sheet(cells, len(rows), 2 + len(distances),
                               row_labels=[label.replace(" + ", "\n+ ") for label, *_ in rows],
                               col_labels=["content", "style", *distances], captions=captions,
                               title=title)


def pareto_plot(points: Sequence[dict], distances: Sequence[str], title: str) -> np.ndarray:
    """Each distance's front: colour SW (Lab) against log10 content loss; lower left is
    better (a line per distance through its alpha/beta points, by content loss)."""
    curves = {}
    for d in distances:
        front = sorted((p["content_loss"], p["colour_sw"]["lab"]) for p in points
                       if p["distance"] == d)
        if front:
            x, y = zip(*front)
            curves[d] = (np.log10(np.maximum(x, 1e-300)), np.asarray(y))
    return plots.loss_curves(curves, title=title, xlabel="log10 content loss (eq. 1)",
                             ylabel="colour SW to the style, Lab", log_y=False,
                             size=(720, 480))


def _save_figure(path: pathlib.Path, picture: np.ndarray) -> None:
    images.save_png(path, picture.astype(np.float32) / 255.0,
                    {"Software": "nst_jax style_distances"})


def run(args, flags: ConfigFlags, argv: Sequence[str] = ()) -> int:
    plan = make_plan(args, flags)
    base, distances = plan.base, plan.distances
    log = runner.logger(args.quiet)
    runner.phase("reading the images")
    inputs = {(size, pair): stylize.load_inputs(pair_config(base, pair, size))
              for size, pair, _ in plan.runs}
    if plan.pareto is not None:
        pareto_inputs = stylize.load_inputs(plan.pareto)
    for folder in (plan.root / RESULTS, plan.root / IMAGES):
        prepare_folder(folder)
    drawn = plan.pareto is not None and plots.have_matplotlib()
    if plan.pareto is not None and not drawn:
        log("note: no Pareto plot, because matplotlib is not installed (pip install "
            "'nst_jax[plots]'); its tables are written")
    runner.phase("loading the weights", f"the finished parts are in {plan.path('md')}")
    first = inputs[plan.runs[0][:2]] if plan.runs else pareto_inputs
    network = stylize.load_network(base, first.content, first.styles, log=log)
    report = {"command": shlex.join(["python", "scripts/style_distances.py", *argv]),
              "machine": machine(), "weights": network.info.get("path", "?"),
              "settings": {"distances": list(distances), "ratio": base.alpha / base.beta,
                           "optimizer": base.optimizer, "init": base.init, "seed": base.seed,
                           "redraw_every": base.redraw_every,
                           "iterations": {str(size): it for size, _, it in plan.runs},
                           "pairs": [list(p) for p in plan.pairs], "projections": PROJECTIONS,
                           "colour_seed": COLOUR_SEED,
                           "evaluation_seed": base.seed + EVALUATION_SEED_OFFSET},
              "runs": [], "references": {}, "images": {}, "pareto": None}
    figures: dict[int, list] = {}
    for size, pair, iterations in plan.runs:
        label, loaded = pair_label(pair), inputs[(size, pair)]
        style = loaded.styles[0]
        runner.phase(f"measuring {label} at {size} px")
        evaluate = Evaluator(network, loaded.content, style, pair_config(base, pair, size),
                             base.seed + EVALUATION_SEED_OFFSET)
        report["references"][f"{size}/{label}"] = colour_measures(loaded.content, style)
        outputs = {}
        for d in distances:
            config = pair_config(base, pair, size, d, iterations)
            title = f"{label}, {size} px, {d}"
            (result,), seconds = sweep_once(Grid((config,)), loaded, network, title, args.quiet)
            runner.phase(f"measuring {title}", check=False)
            rec = record(result, style, evaluate, size=size, pair=label, wall_s=seconds)
            report["runs"].append(rec)
            outputs[d] = (result.image, rec)
            log(f"{title}: content {rec['content_loss']:.4g}, colour SW Lab "
                f"{rec['colour_sw']['lab']:.3g} RGB {rec['colour_sw']['rgb']:.3g}, "
                f"{rec['evaluations']} evaluations, {seconds:.0f} s")
        figures.setdefault(size, []).append((label, loaded.content, style, outputs))
        _save_figure(plan.path(str(size)), side_by_side(
            figures[size], distances, f"Style distances, {size} px, {iterations} iterations, "
                                      f"alpha/beta {base.alpha / base.beta:g}"))
        report["images"][str(size)] = plan.path(str(size)).name
        write_report(plan, report)
    if plan.pareto is not None:
        label = pair_label(plan.pairs[0])
        evaluate = Evaluator(network, pareto_inputs.content, pareto_inputs.styles[0],
                             plan.pareto, base.seed + EVALUATION_SEED_OFFSET)
        points: list[dict] = []
        report["pareto"] = pareto = {
            "pair": label, "size": plan.pareto.size, "iterations": plan.pareto.iterations,
            "ratios": list(plan.ratios), "points": points, "summary": {}, "plot": None,
            "sweeps": {}}
        for d in distances:
            grid = Grid.product(plan.pareto.replace(style_loss=d), ratio=plan.ratios)
            title = f"Pareto {label}, {plan.pareto.size} px, {d}"
            results, seconds = sweep_once(grid, pareto_inputs, network, title, args.quiet)
            runner.phase(f"measuring {title}", check=False)
            pareto["sweeps"][d] = {"wall_s": seconds, "points": len(results)}
            points += [record(r, pareto_inputs.styles[0], evaluate) for r in results]
            log(f"{title}: {len(results)} points, {seconds:.0f} s")
        pareto["summary"] = pareto_summary(points, distances)
        if drawn:
            _save_figure(plan.path("pareto"), pareto_plot(
                points, distances, f"{label}, {plan.pareto.size} px: content against colour"))
            pareto["plot"] = plan.path("pareto").name
        for d, row in pareto["summary"].items():
            print(f"{d} against Gram at equal content loss: colour (Lab) x"
                  f"{_g(row['lab'] and row['lab']['ratio'])}, held out x"
                  f"{_g(row['held_out'] and row['held_out']['ratio'])}: {_verdict(row)}")
    write_report(plan, report)
    print(f"wrote {plan.path('md')}")
    return ExitCode.OK
