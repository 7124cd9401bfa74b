"""The web page's jobs, without the page: what ``nst-serve`` runs for each request.

:mod:`nst_jax.apps.web.page` turns the page's controls into calls of this module and its
results into the page; everything here works without gradio (and is tested so):

- :func:`upload` checks a file a request names: only a file the server received as an
  upload, or a bundled example, is read (:class:`Trust`); then its size against the
  server's limit; it keeps the name the user gave it for messages;
- :func:`make_config` turns the controls into a :class:`nst_jax.config.Config`, within
  the server's :class:`Limits`, with messages that name the controls;
- :func:`stylize_job` runs one style transfer (coarse to fine where asked) and yields an
  :class:`Update` every few iterations, until it ends or ``stop`` is set; it ends with
  the PNG the command line writes (:func:`nst_jax.apps.common.outputs.png_metadata`);
- :func:`sweep_grid` and :func:`sweep` run α/β values x seeds as one compiled grid
  (:class:`nst_jax.sweep.Sweeper`) and write what ``scripts/sweep.py`` writes (the
  points' PNGs and the contact sheet).

Every bad input is an :class:`~nst_jax.errors.NSTError` whose message is one line meant
for the person at the page; the file paths in it are the names they uploaded.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import queue
import threading
import time
from typing import Any, Callable, Collection, Iterator, NamedTuple, Sequence

import numpy as np

from nst_jax import coarse_to_fine, driver, images
from nst_jax.inputs import Inputs, Network, load_inputs
from nst_jax.apps.common.outputs import save_result, scale_metadata
from nst_jax.config import INITS, MAX_ITERATIONS, MAX_SEED, Config, ConfigError, example_path
from nst_jax.errors import NSTError, one_line
from nst_jax.stop import Stop

# The page's names of the Config fields it sets (for messages).
LABELS = {"size": "Size", "iterations": "Iterations", "alpha": "α/β", "beta": "α/β",
          "style_scale": "Style scale", "preserve_colors": "Colours", "start_size": "Start size",
          "init": "Start from", "seed": "Seed", "optimizer": "Optimiser",
          "style_blend_weights": "Style weights", "region_weights": "Style weights",
          "content_masks": "Region masks", "tv_weight": "TV weight"}
# How the page combines several styles.
BLEND, REGIONS = "blend", "regions"
# The command line's defaults, which the page's are.
CLI = Config()
# The page's α/β control is log10 α/β.
DEFAULT_LOG_RATIO = round(math.log10(CLI.alpha / CLI.beta), 6)
# The bundled example images a request may name (nst_jax/examples).
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the server accepts (its flags): the largest output side in px, the most
    iterations (of each scale), the largest upload in MB, the most points of a sweep."""

    max_size: int = 512
    max_iterations: int = 1000
    max_upload_mb: float = 20.0
    max_points: int = 16

    def __post_init__(self):
        for name, low, high in (("max_size", images.MIN_SIDE, images.MAX_SIDE),
                                ("max_iterations", 1, MAX_ITERATIONS), ("max_points", 1, 1024)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise NSTError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise NSTError(f"max_upload_mb must be a number > 0, got {self.max_upload_mb!r}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


class Upload(NamedTuple):
    """An uploaded file: where the server keeps it and the name it was uploaded as."""

    path: pathlib.Path
    name: str

    def named(self, message: str) -> str:
        """``message`` with the server's path of the file replaced by its uploaded name."""
        return message.replace(str(self.path), self.name)


class Images(NamedTuple):
    """The page's image controls, read (:func:`upload`): the content, the styles given (in
    order), their weights, how they combine (:data:`BLEND` or :data:`REGIONS`) and a mask
    (or None) per style; the keywords of :func:`make_config` of the same names."""

    content: Upload | None
    styles: list
    weights: list
    mode: str
    masks: list

    @property
    def uploads(self) -> list[Upload]:
        """Every file given (whose names :func:`read_inputs`' messages use)."""
        return [u for u in [self.content, *self.styles, *self.masks] if u is not None]


def bundled_examples() -> frozenset[pathlib.Path]:
    """The bundled example images (:func:`nst_jax.config.example_path`), resolved."""
    folder = example_path("chelsea.jpg").parent
    return frozenset(p.resolve() for p in folder.iterdir()
                     if p.suffix.lower() in EXAMPLE_SUFFIXES and p.is_file())


@dataclasses.dataclass(frozen=True)
class Trust:
    """The files a request may name. A file path in a request is the client's word, so
    the server reads only:

    - a file it received as an upload: a path gradio handed out for an upload
      (``uploaded``: gradio's record, ``Blocks.upload_file_set``, as the exact text it
      gave), whose file, with every symbolic link followed, lies in ``folder`` (gradio's
      upload folder: ``GRADIO_TEMP_DIR``);
    - a bundled example (``bundled``: the files of :func:`bundled_examples` and the
      server's copies of them in ``folder``, resolved).

    gradio 6 records uploads per server, not per session; an upload's path is
    ``folder/<sha256 of a secret seed and the bytes>/<name>``, so naming another
    person's upload takes its bytes, with which one could upload it oneself.
    """

    folder: pathlib.Path
    uploaded: Collection[str] = ()
    bundled: frozenset = frozenset()

    def file(self, path: Any) -> pathlib.Path | None:
        """The file ``path`` names (links followed) if a request may read it, else None."""
        if not isinstance(path, str) or not path or "\0" in path:
            return None
        given = pathlib.Path(path)
        if not given.is_absolute() or ".." in given.parts:
            return None
        try:
            real = given.resolve(strict=True)
            if not real.is_file():
                return None
        except (OSError, RuntimeError):  # missing, unreadable folder, a loop of links
            return None
        if real in self.bundled:
            return real
        if path in self.uploaded and real.is_relative_to(self.folder.resolve()):
            return real
        return None


def refused(what: str) -> str:
    """The one answer to a file a request may not name: the same for every such path
    (missing, unreadable, a system file, an image outside the uploads), naming none."""
    return f"the {what} is not a file this server received; upload it again (or pick an example)"


def upload(value: Any, what: str, limits: Limits, trust: Trust) -> Upload | None:
    """The file of a page input (gradio's file data ``{"path", "orig_name"}``, a path, or
    None for none), checked: a file the request may name (``trust``, :meth:`Trust.file`;
    :func:`refused` otherwise) no larger than ``limits.max_upload_mb``."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        path, name = value.get("path"), value.get("orig_name")
    else:
        path, name = value, None
    if path is None or path == "":
        return None
    real = trust.file(path)
    if real is None:
        raise NSTError(refused(what))
    name = " ".join(name.split()) if isinstance(name, str) and name.strip() else real.name
    path = real
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise NSTError(f"the {what} {name} is {size / 1e6:.1f} MB; this server takes files up to "
                       f"{limits.max_upload_mb:g} MB")
    return Upload(path, name)


def labelled(field: str) -> str:
    """How a message names the Config field ``field``: its control's label (:data:`LABELS`)."""
    return LABELS.get(field, field)


def alpha_beta(log_ratio: Any) -> tuple[float, float]:
    """``(α, β)`` of the page's logarithmic control (``log10 α/β``): β is the CLI's
    default, so the default ratio gives the CLI's α and β (and the same loss values); α
    at most the configuration's largest weight (10.0 ** a large control overflows)."""
    from nst_jax.config import MAX_WEIGHT

    exponent, largest = number(log_ratio, "α/β"), math.log10(MAX_WEIGHT / CLI.beta)
    if exponent > largest:
        raise NSTError(f"α/β must be at most 1e{largest:g} (log10 α/β at most {largest:g}; "
                       f"larger weights overflow float32 in the optimiser), got log10 α/β = "
                       f"{exponent:g}")
    return float(10.0 ** exponent) * CLI.beta, CLI.beta


def number(value: Any, label: str) -> float:
    """A control's value as a finite float (a message naming ``label`` otherwise)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise NSTError(f"{label} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise NSTError(f"{label} must be a finite number, got {value!r}")
    return out


def whole_number(value: Any, label: str, low: int, high: int, why: str = "") -> int:
    """A control's value as a whole number in ``[low, high]``; ``why`` explains the range."""
    out = number(value, label)
    if out != int(out) or not low <= out <= high:
        raise NSTError(f"{label} must be a whole number from {low} to {high}{why}, got {out:g}")
    return int(out)


def make_config(*, content: Upload, styles: Sequence[Upload], weights: Sequence[Any] = (),
                mode: str = BLEND, masks: Sequence[Upload | None] = (), size: Any = CLI.size,
                iterations: Any = CLI.iterations, log_ratio: Any = DEFAULT_LOG_RATIO,
                style_scale: Any = 1.0, preserve_colors: str = CLI.preserve_colors,
                start_size: Any = 0, init: str = CLI.init, seed: Any = CLI.seed,
                optimizer: str = CLI.optimizer, tv_weight: Any = CLI.tv_weight,
                weights_path: str | None = None, limits: Limits = Limits()) -> Config:
    """The :class:`Config` of the page's controls, within ``limits``.

    ``styles`` with their ``weights`` (one each; normalised) are blended over the whole
    image (``mode='blend'``) or each painted in its region (``mode='regions'``: ``masks``,
    one per style). ``log_ratio`` is ``log10 α/β`` (:func:`alpha_beta`); ``start_size`` 0
    is one scale; ``style_scale`` 1 is the style at the output's size. Defaults are the
    CLI's.

    Raises:
      NSTError: a control is out of its range or the server's limits, or the styles,
        weights and masks do not go together; the message names the control.
    """
    if content is None:
        raise NSTError("upload a content image (or pick an example)")
    styles = [s for s in styles if s is not None]
    if not styles:
        raise NSTError("upload a style image (or pick an example)")
    size = whole_number(size, "Size", images.MIN_SIDE, limits.max_size, " (this server's limit)")
    iterations = whole_number(iterations, "Iterations", 1, limits.max_iterations,
                              " (this server's limit)")
    start = whole_number(start_size, "Start size", 0, limits.max_size)
    seed = whole_number(seed, "Seed", 0, MAX_SEED)
    scale = number(style_scale, "Style scale")
    alpha, beta = alpha_beta(log_ratio)
    weights = list(weights)[: len(styles)] + [1.0] * (len(styles) - len(weights))
    weights = [number(w, "Style weights") for w in weights]
    fields: dict[str, Any] = {}
    if mode == REGIONS:
        given = list(masks)[: len(styles)]
        given += [None] * (len(styles) - len(given))
        missing = [str(k + 1) for k, m in enumerate(given) if m is None]
        if missing:
            raise NSTError(f"painting styles by region needs a region mask for every style: "
                           f"style {', '.join(missing)} has none")
        fields.update(content_masks=tuple(str(m.path) for m in given),
                      region_weights=tuple(weights) if len(styles) > 1 else None)
    elif mode == BLEND:
        if len(styles) > 1:
            fields["style_blend_weights"] = tuple(weights)
    else:
        raise NSTError(f"styles combine by {BLEND} or {REGIONS}, got {mode!r}")
    if init not in INITS:  # the library reads any other value as a file: not the page's
        raise NSTError(f"Start from must be one of {', '.join(INITS)}")  # echoes no path
    try:
        return Config(content=str(content.path), style=tuple(str(s.path) for s in styles),
                      size=size, iterations=iterations, alpha=alpha, beta=beta,
                      style_scale=None if scale == 1.0 else (scale,),
                      preserve_colors=preserve_colors, start_size=start or None, init=init,
                      seed=seed, optimizer=optimizer, tv_weight=number(tv_weight, "TV weight"),
                      weights=weights_path, **fields)
    except ConfigError as e:
        raise NSTError(f"{LABELS.get(e.field, e.field)} {e.problem_naming(labelled)}") from None


def named_config(config: Config, uploads: Sequence[Upload]) -> Config:
    """``config`` with the uploaded files' names instead of the server's paths (what the
    PNG's metadata records)."""
    names = {str(u.path): u.name for u in uploads}
    rename = lambda paths: None if paths is None else tuple(names.get(p, p) for p in paths)  # noqa: E731
    return config.replace(content=names.get(config.content, config.content),
                          style=rename(config.style), content_masks=rename(config.content_masks))


def read_inputs(config: Config, uploads: Sequence[Upload]) -> Inputs:
    """:func:`nst_jax.stylize.load_inputs`, with the uploaded names in its messages."""
    try:
        return load_inputs(config)
    except ConfigError as e:
        message = f"{LABELS.get(e.field, e.field)} {e.problem_naming(labelled)}"
    except NSTError as e:
        message = one_line(e)
    for item in uploads:
        message = item.named(message)
    raise NSTError(message)


@dataclasses.dataclass
class Update:
    """Where a job stands, after a chunk of iterations (or at its end).

    ``image``: the result so far (uint8, ``(H, W, 3)``); ``done`` / ``total``: iterations
    done and to do over every scale; ``scale``: which scale (``""`` for one);
    ``loss``, ``content``, ``style``: eq. 7 and its terms (unweighted); ``rate``:
    iterations per second since the first chunk (which includes compiling); ``eta``:
    seconds left; ``startup``: seconds from the request to the first chunk's end;
    ``status``: ``running``, then ``completed``, ``converged``, ``stopped`` or
    ``nonfinite``; ``output``: the PNG, once written.
    """

    image: np.ndarray
    done: int
    total: int
    scale: str
    loss: float
    content: float
    style: float
    rate: float | None
    eta: float | None
    startup: float | None
    status: str = "running"
    output: pathlib.Path | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"


class _Clock:
    """Rate and ETA of a job: counted from the end of the first chunk (which compiles)."""

    def __init__(self, total: int, clock: Callable[[], float], began: float | None = None):
        self.clock, self.total = clock, total
        self.began = clock() if began is None else began
        self.first: tuple[float, int] | None = None

    def tick(self, done: int) -> tuple[float | None, float | None, float]:
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        start, done0 = self.first
        rate = (done - done0) / (now - start) if now > start and done > done0 else None
        eta = (self.total - done) / rate if rate else None
        return rate, eta, self.first[0] - self.began


def stylize_job(config: Config, network: Network, folder: pathlib.Path, *,
                arguments: dict, stop: Stop | None = None, every: int = 10,
                inputs: Inputs | None = None, shown: Config | None = None,
                clock: Callable[[], float] = time.monotonic) -> Iterator[Update]:
    """Run ``config`` on ``network`` (:class:`nst_jax.driver.Run`), yielding an
    :class:`Update` every ``every`` iterations and a last one with the PNG written to
    ``folder/stylized.png``: 8-bit, with the metadata of ``scripts/stylize.py``'s output
    (``arguments`` are the controls as given; ``shown`` is the config recorded, default
    ``config``). Setting ``stop`` ends the run after the current chunk; the best image so
    far is kept and written (status ``stopped``)."""
    stop = stop if stop is not None else Stop()
    inputs = inputs if inputs is not None else load_inputs(config)
    run = driver.Run(config, network, inputs=inputs, chunk=max(1, int(every)), stop=stop)
    timer = _Clock(run.total, clock)
    for at in run:
        total, terms = at.job.latest()
        rate, eta, startup = timer.tick(at.step)
        yield Update(images.quantize(at.job.result(), 8), at.step, run.total, _label(at.scale),
                     total, terms.content, terms.style, rate, eta, startup)
    scale, job, status = run.outcome.scale, run.outcome.job, run.outcome.status
    output = folder / "stylized.png"
    image, total, terms = save_result(output, job, shown or config, arguments, network.info, {
        "status": status, "iterations_done": job.iteration,
        "evaluations": int(job.state.evaluations), **scale_metadata(scale)}, bits=8)
    rate, eta, startup = timer.tick(run.outcome.step)
    yield Update(image, run.outcome.step, run.total, _label(scale), total, terms.content,
                 terms.style, rate, 0.0, startup, status, output)


def _label(scale: coarse_to_fine.Scale) -> str:
    return scale.label() if scale.count > 1 else ""


# --- sweeps ---------------------------------------------------------------------------------


def parse_values(text: Any, label: str, parse: Callable[[str], Any]) -> list:
    """``"1e-4, 1e-3"`` -> the values (commas or spaces between them)."""
    items = [t for t in str(text or "").replace(",", " ").split() if t]
    if not items:
        raise NSTError(f"{label}: give at least one value")
    out = []
    for item in items:
        try:
            out.append(parse(item))
        except ValueError:
            raise NSTError(f"{label}: {item!r} is not a number") from None
    if len(set(out)) != len(out):
        raise NSTError(f"{label}: a value is given twice")
    return out


def sweep_grid(base: Config, ratios: Any, seeds: Any, limits: Limits):
    """The :class:`nst_jax.sweep.Grid` of α/β values (text, e.g. ``"1e-4, 1e-3"``) x seeds
    (``"0, 1"``) around ``base``, at most ``limits.max_points`` points."""
    from nst_jax.sweep import Grid

    ratio_values = parse_values(ratios, "α/β values", float)
    seed_values = parse_values(seeds, "Seeds", int)
    points = len(ratio_values) * len(seed_values)
    if points > limits.max_points:
        raise NSTError(f"{points} points ({len(ratio_values)} α/β values x {len(seed_values)} "
                       f"seeds); this server runs at most {limits.max_points} at once")
    if base.start_size is not None:
        base = base.replace(start_size=None)  # a sweep runs every point at one size
    try:
        return Grid.product(base, ratio=ratio_values, seed=seed_values)
    except ConfigError as e:
        name = {"alpha": "α/β values", "beta": "α/β values", "ratio": "α/β values",
                "seed": "Seeds"}.get(e.field, LABELS.get(e.field, e.field))
        raise NSTError(f"{name} {e.problem_naming(labelled)}") from None


@dataclasses.dataclass
class SweepUpdate:
    """Where a sweep stands: ``iteration`` of ``iterations`` of chunk ``chunk`` of
    ``chunks``; ``results``: the finished points (:class:`nst_jax.sweep.PointResult`,
    with ``files[index]`` its PNG); ``sheet``: the contact sheet once a chunk is written;
    ``status``: ``running``, ``completed`` or ``stopped``; ``startup``: seconds to the
    first progress report."""

    iteration: int
    iterations: int
    chunk: int
    chunks: int
    results: list
    files: dict
    sheet: pathlib.Path | None
    startup: float | None
    status: str = "running"
    eta: float | None = None


def sweep(grid, inputs: Inputs, network: Network, folder: pathlib.Path, *,
          stop: Stop | None = None,
          clock: Callable[[], float] = time.monotonic) -> Iterator[SweepUpdate]:
    """Run ``grid`` as one compiled call per chunk (:class:`nst_jax.sweep.Sweeper`),
    writing what ``scripts/sweep.py`` writes into ``folder``; yield a :class:`SweepUpdate`
    after each call and a last one. ``stop`` ends it after the current call (the points
    so far are kept, with status ``interrupted``)."""
    from nst_jax.apps.common.sweeps import CONTACT_SHEET, Writer, point_name
    from nst_jax.sweep import Sweeper

    stop = stop if stop is not None else Stop()
    began = clock()
    writer = Writer(folder, grid, title="nst_jax sweep")
    events: queue.Queue = queue.Queue()
    timer, last, startup = None, None, None  # the clock, the last progress report

    def on_progress(p) -> None:
        events.put(("progress", p))

    def on_chunk(results) -> None:
        writer.chunk(results)
        events.put(("chunk", results))

    def work() -> None:
        try:
            sweeper = Sweeper.for_grids(inputs.content, inputs.styles, network.params, [grid],
                                        module=network.module,
                                        preprocessing=network.preprocessing,
                                        content_masks=inputs.content_masks,
                                        style_masks=inputs.style_masks)
            done = sweeper.run(grid, on_chunk=on_chunk, on_progress=on_progress, stop=stop)
            stopped = len(done) < len(grid) or any(r.status == "interrupted" for r in done)
            events.put(("end", "stopped" if stopped else "completed"))
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            events.put(("error", e))

    thread = threading.Thread(target=work, name="nst_jax-sweep", daemon=True)
    thread.start()
    results: list = []
    files: dict = {}
    try:
        while True:
            kind, value = events.get()
            if kind == "error":
                thread.join()
                raise value
            if kind == "progress":
                last = value
                if timer is None:
                    timer = _Clock(value.num_chunks * value.iterations, clock, began)
                _, eta, startup = timer.tick(value.chunk * value.iterations + value.iteration)
                yield SweepUpdate(value.iteration, value.iterations, value.chunk,
                                  value.num_chunks, list(results), dict(files), None, startup,
                                  eta=eta)
            elif kind == "chunk":
                for r in value:
                    results.append(r)
                    files[r.index] = folder / f"{point_name(r.index, r.labels)}.png"
            else:
                thread.join()
                results.sort(key=lambda r: r.index)
                yield SweepUpdate(last.iteration if last else 0, grid.iterations,
                                  last.chunk if last else 0, last.num_chunks if last else 1,
                                  results, files, folder / CONTACT_SHEET if results else None,
                                  startup, value, 0.0)
                return
    finally:
        stop.set()  # a caller that leaves early (a closed page) ends the sweep's thread too
