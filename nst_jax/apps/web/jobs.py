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
  points' PNGs and the contact sheet);
- :func:`video_config`, :func:`video_settings` and :func:`video_job` stylise a short
  uploaded clip (:class:`nst_jax.video.VideoRun`) within the server's video limits, yield
  the frames as they finish and end with the H.264 mp4 (:func:`nst_jax.frames.write_video`).

Every bad input is an :class:`~nst_jax.errors.NSTError` whose message is one line meant
for the person at the page; the file paths in it are the names they uploaded.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import queue
import re
import shutil
import threading
import time
from typing import Any, Callable, Collection, Iterator, NamedTuple, Sequence

import numpy as np

from nst_jax import coarse_to_fine, driver, frames as clips, images, video
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
          "content_masks": "Region masks", "tv_weight": "TV weight",
          "style_loss": "Style distance", "style": "Style images"}
# The Style distance control's choices, (label, Config.style_loss): the paper's Gram matrices,
# nst_jax.distances' others, and Risser et al.'s Gram + histogram. A request may name no other
# (the library takes any weighted mix; the page offers these).
STYLE_DISTANCES = (("gram (paper, default)", "gram"), ("mean-cov", "mean-cov"),
                   ("sliced", "sliced"), ("histogram", "histogram"),
                   ("gram + histogram (Risser)", "gram,histogram"))
# How the page combines several styles.
BLEND, REGIONS = "blend", "regions"
# The command line's defaults, which the page's are.
CLI = Config()
# The page's α/β control is log10 α/β.
DEFAULT_LOG_RATIO = round(math.log10(CLI.alpha / CLI.beta), 6)
# The bundled example images a request may name (nst_jax/examples).
EXAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The largest video limits a server may set (--max-video-frames, --max-video-seconds).
MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS = 10_000, 3600.0


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the server accepts (its flags): the largest output side in px, the most
    iterations (of each scale, and of each video frame), the largest upload in MB (a clip
    too), the most points of a sweep; for a video, the most frames, the largest frame
    side in px and the most seconds taken from the clip."""

    max_size: int = 512
    max_iterations: int = 1000
    max_upload_mb: float = 20.0
    max_points: int = 16
    # A CPU server: 48 frames of 256 px at 50 iterations each take minutes, not hours.
    max_video_frames: int = 48
    max_video_size: int = 256
    max_video_seconds: float = 10.0

    def __post_init__(self):
        for name, low, high in (("max_size", images.MIN_SIDE, images.MAX_SIDE),
                                ("max_iterations", 1, MAX_ITERATIONS), ("max_points", 1, 1024),
                                ("max_video_frames", 1, MAX_VIDEO_FRAMES),
                                ("max_video_size", images.MIN_SIDE, images.MAX_SIDE)):
            value = getattr(self, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise NSTError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        if not (math.isfinite(self.max_upload_mb) and self.max_upload_mb > 0):
            raise NSTError(f"max_upload_mb must be a number > 0, got {self.max_upload_mb!r}")
        if not (math.isfinite(self.max_video_seconds)
                and 0 < self.max_video_seconds <= MAX_VIDEO_SECONDS):
            raise NSTError(f"max_video_seconds must be a number > 0 and at most "
                           f"{MAX_VIDEO_SECONDS:g}, got {self.max_video_seconds!r}")

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


def refused(what: str, examples: bool = True) -> str:
    """The one answer to a file a request may not name: the same for every such path
    (missing, unreadable, a system file, an image outside the uploads), naming none.
    ``examples``: whether the input offers bundled examples (a clip does not)."""
    return (f"the {what} is not a file this server received; upload it again"
            + (" (or pick an example)" if examples else ""))


def upload(value: Any, what: str, limits: Limits, trust: Trust, *,
           examples: bool = True) -> Upload | None:
    """The file of a page input (gradio's file data ``{"path", "orig_name"}``, a path, or
    None for none), checked: a file the request may name (``trust``, :meth:`Trust.file`;
    :func:`refused` otherwise) no larger than ``limits.max_upload_mb``. ``examples=False``:
    an upload only, never a bundled example (the clip of a video)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        path, name = value.get("path"), value.get("orig_name")
    else:
        path, name = value, None
    if path is None or path == "":
        return None
    if not examples:
        trust = dataclasses.replace(trust, bundled=frozenset())
    real = trust.file(path)
    if real is None:
        raise NSTError(refused(what, examples))
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


def style_distance(value: Any, label: str = "Style distance") -> str:
    """The ``Config.style_loss`` of the Style distance control: one of the values of
    :data:`STYLE_DISTANCES`, else a message that echoes nothing of the request."""
    values = [v for _, v in STYLE_DISTANCES]
    if not isinstance(value, str) or value not in values:
        names = [v.replace(",", " + ") for v in values]
        raise NSTError(f"{label} must be one of {', '.join(names[:-1])} or {names[-1]}")
    return value


def make_config(*, content: Upload, styles: Sequence[Upload], weights: Sequence[Any] = (),
                mode: str = BLEND, masks: Sequence[Upload | None] = (), size: Any = CLI.size,
                iterations: Any = CLI.iterations, log_ratio: Any = DEFAULT_LOG_RATIO,
                style_scale: Any = 1.0, preserve_colors: str = CLI.preserve_colors,
                start_size: Any = 0, init: str = CLI.init, seed: Any = CLI.seed,
                optimizer: str = CLI.optimizer, tv_weight: Any = CLI.tv_weight,
                style_loss: Any = CLI.style_loss, weights_path: str | None = None,
                limits: Limits = Limits()) -> Config:
    """The :class:`Config` of the page's controls, within ``limits``.

    ``styles`` with their ``weights`` (one each; normalised) are blended over the whole
    image (``mode='blend'``) or each painted in its region (``mode='regions'``: ``masks``,
    one per style). ``log_ratio`` is ``log10 α/β`` (:func:`alpha_beta`); ``start_size`` 0
    is one scale; ``style_scale`` 1 is the style at the output's size; ``style_loss`` is one
    of :data:`STYLE_DISTANCES`' values (:func:`style_distance`). Defaults are the CLI's.

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
    style_loss = style_distance(style_loss)
    try:
        return Config(content=str(content.path), style=tuple(str(s.path) for s in styles),
                      size=size, iterations=iterations, alpha=alpha, beta=beta,
                      style_scale=None if scale == 1.0 else (scale,),
                      preserve_colors=preserve_colors, start_size=start or None, init=init,
                      seed=seed, optimizer=optimizer, tv_weight=number(tv_weight, "TV weight"),
                      style_loss=style_loss, weights=weights_path, **fields)
    except ConfigError as e:
        raise NSTError(f"{LABELS.get(e.field, e.field)} {e.problem_naming(labelled)}") from None


def named_config(config: Config, uploads: Sequence[Upload]) -> Config:
    """``config`` with the uploaded files' names instead of the server's paths (what the
    PNG's metadata records)."""
    names = {str(u.path): u.name for u in uploads}
    rename = lambda paths: None if paths is None else tuple(names.get(p, p) for p in paths)  # noqa: E731
    return config.replace(content=names.get(config.content, config.content),
                          style=rename(config.style), content_masks=rename(config.content_masks))


def read_inputs(config: Config, uploads: Sequence[Upload], *,
                content: np.ndarray | None = None) -> Inputs:
    """:func:`nst_jax.stylize.load_inputs`, with the uploaded names in its messages
    (``content``: the content already read, a video's first frame)."""
    try:
        return load_inputs(config, content=content)
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


def style_distances(values: Any, label: str = "Style distances") -> list[str]:
    """The Sweep tab's style distances (a list of :data:`STYLE_DISTANCES`' values, each
    checked by :func:`style_distance`; one value alone is one), at least one, none twice."""
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if not values:
        raise NSTError(f"{label}: choose at least one")
    out = [style_distance(v, label) for v in values]
    if len(set(out)) != len(out):
        raise NSTError(f"{label}: a value is given twice")
    return out


def sweep_grid(base: Config, ratios: Any, seeds: Any, limits: Limits, distances: Any = None):
    """The :class:`nst_jax.sweep.Grid` of style distances (:func:`style_distances`; None:
    ``base``'s) x α/β values (text, e.g. ``"1e-4, 1e-3"``) x seeds (``"0, 1"``) around
    ``base``, at most ``limits.max_points`` points. One distance is no axis (the points and
    their names are those of a sweep of α/β and seeds)."""
    from nst_jax.sweep import Grid

    ratio_values = parse_values(ratios, "α/β values", float)
    seed_values = parse_values(seeds, "Seeds", int)
    distance_values = None if distances is None else style_distances(distances)
    count = 1 if distance_values is None else len(distance_values)
    points = count * len(ratio_values) * len(seed_values)
    if points > limits.max_points:
        several = f" x {count} style distances" if count > 1 else ""
        raise NSTError(f"{points} points ({len(ratio_values)} α/β values x {len(seed_values)} "
                       f"seeds{several}); this server runs at most {limits.max_points} at once")
    axes: dict[str, list] = {}
    try:
        if base.start_size is not None:
            base = base.replace(start_size=None)  # a sweep runs every point at one size
        if distance_values is not None and count == 1:
            base = base.replace(style_loss=distance_values[0])
        elif distance_values is not None:
            axes["style_loss"] = distance_values  # first: the rows of the contact sheet
        return Grid.product(base, **axes, ratio=ratio_values, seed=seed_values)
    except ConfigError as e:
        name = {"alpha": "α/β values", "beta": "α/β values", "ratio": "α/β values",
                "seed": "Seeds", "style_loss": "Style distances"}.get(e.field, labelled(e.field))
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


# --- video ----------------------------------------------------------------------------------

SCHEDULE_LABELS = {"sequential": "Sequential", "multipass": "Multi-pass",
                   "independent": "Independent"}
# What the clip input reads, by the file's first bytes: ISO media (MP4, MOV, M4V), EBML
# (Matroska, WebM), GIF, AVI. FFmpeg picks a demuxer by content and by name; a text
# playlist (HLS, ffconcat) would make it open other files of the server, so only these
# containers reach it, under a name of the server's choosing (read_clip).
CLIP_KINDS = "MP4, MOV, WebM, MKV, AVI or GIF"
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# A clip's frames per second, at most (the page's control).
MAX_CLIP_FPS = 60


def clip_suffix(path: pathlib.Path) -> str | None:
    """The suffix of the container ``path`` holds, read from its first bytes
    (``.mp4``, ``.mkv``, ``.gif``, ``.avi``), or None for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head[4:8] in _ISO_BOXES:
        return ".mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return ".mkv"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return ".avi"
    return None


def video_limits(limits: Limits) -> Limits:
    """``limits`` with the video's largest side for :func:`make_config`'s Size."""
    return dataclasses.replace(limits, max_size=limits.max_video_size)


def video_config(*, clip: Upload | None, styles: Sequence[Upload | None],
                 weights: Sequence[Any] = (), mode: str = BLEND, limits: Limits = Limits(),
                 **controls) -> Config:
    """The :class:`Config` of each frame of ``clip`` (:func:`make_config`'s controls but
    regions and coarse to fine, which belong to one image), its Size within
    ``limits.max_video_size``."""
    if clip is None:
        raise NSTError("upload a clip to stylise")
    if mode == REGIONS:
        raise NSTError("a video blends its styles over every frame: regions belong to one "
                       "image (choose blend under Several styles)")
    config = make_config(content=clip, styles=styles, weights=weights, mode=BLEND,
                         start_size=0, limits=video_limits(limits), **controls)
    video.check(config)
    return config


def video_settings(schedule: Any = "sequential",
                   temporal_weight: Any = video.DEFAULT_TEMPORAL_WEIGHT,
                   passes: Any = video.DEFAULT_PASSES) -> video.VideoSettings:
    """The :class:`nst_jax.video.VideoSettings` of the page's controls."""
    if schedule not in video.SCHEDULES:
        raise NSTError(f"Schedule must be one of {', '.join(video.SCHEDULES)}")
    weight = number(temporal_weight, "Temporal weight")
    if weight < 0:
        raise NSTError(f"Temporal weight must be a number >= 0, got {weight:g}")
    count = whole_number(passes, "Passes", 2, 16)
    return video.VideoSettings(schedule=schedule, temporal_weight=weight, passes=count).resolved()


def read_clip(clip: Upload, folder: pathlib.Path, limits: Limits, *, size: int, fps: Any,
              start: Any = 0.0, seconds: Any = None) -> tuple[clips.Clip, pathlib.Path]:
    """The frames of ``clip`` from ``start`` for ``seconds`` (at most
    ``limits.max_video_seconds``) at ``fps`` frames a second, ``size`` px on the long
    side; at most ``limits.max_video_frames``. The file is copied into ``folder`` under a
    name of the server's (``clip.mp4``, ...) after its first bytes show a container of
    :data:`CLIP_KINDS`, and read from there; returns the clip and that copy (the audio's
    source; the caller removes it). Messages name the clip by its uploaded name."""
    fps = whole_number(fps, "Frames per second", 1, MAX_CLIP_FPS)
    start = number(start, "Start")
    if start < 0:
        raise NSTError(f"Start must be a number of seconds >= 0, got {start:g}")
    seconds = limits.max_video_seconds if seconds is None else number(seconds, "Seconds")
    if not 0 < seconds <= limits.max_video_seconds:
        raise NSTError(f"Seconds must be above 0 and at most {limits.max_video_seconds:g} "
                       f"(this server's limit), got {seconds:g}")
    suffix = clip_suffix(clip.path)
    if suffix is None:
        raise NSTError(f"the clip {clip.name} is not a video this server reads ({CLIP_KINDS})")
    local = folder / f"clip{suffix}"
    shutil.copyfile(clip.path, local)
    try:
        return clips.read(local, long_side=size, fps=fps, start=start, duration=seconds,
                          max_frames=limits.max_video_frames), local
    except BaseException as e:
        local.unlink(missing_ok=True)
        if not isinstance(e, NSTError):
            raise
        message = one_line(e)
        too_many = re.search(r"has (about )?(\d+) frames, more than the limit", message)
        if too_many:  # frames.read's words are the command line's (--duration, --every)
            raise NSTError(
                f"the clip {clip.name} gives {too_many.group(1) or ''}{too_many.group(2)} "
                f"frames at {fps} frames a second over {seconds:g} s; this server takes at "
                f"most {limits.max_video_frames}: take fewer seconds or fewer frames a "
                f"second") from None
        raise NSTError(_private(message, {local: clip.name}, folder)) from None


def _private(message: str, names: dict, folder: pathlib.Path) -> str:
    """``message`` with each path of ``names`` replaced by its name, and anything else in
    the job's ``folder`` by ``…`` (a message never names the server's files)."""
    for path, name in names.items():
        message = message.replace(str(path), name)
    return message.replace(str(folder), "…")


@dataclasses.dataclass
class VideoUpdate:
    """Where a video job stands, after a chunk of iterations (or at its end).

    ``frames``: the finished frames so far, in order, as ``(PNG, caption)`` (a multi-pass
    run shows each pass's frames as it ends; the last pass's are the result);
    ``changed``: whether they differ from the previous update's; ``count``: frames of the
    clip, ``shape`` ``(H, W)`` and ``fps``; ``frame``: the frame under way (1-based; the
    first of those run at once, ``batch``); ``pass_`` of ``passes``; ``iteration`` of
    ``iterations`` (of this frame or pass); ``done`` / ``total``: frame-iterations done
    and to do; ``per_hour``: frames an hour (every pass counted) since the first chunk;
    ``eta``: seconds left; ``startup``: seconds from the request to the first chunk's end;
    ``status``: ``running``, then ``completed``, ``stopped`` or ``nonfinite``; ``output``:
    the mp4, once written (only a completed run writes one).
    """

    frames: list
    changed: bool
    count: int
    shape: tuple[int, int]
    fps: float
    frame: int
    batch: int
    pass_: int
    passes: int
    iteration: int
    iterations: int
    done: int
    total: int
    per_hour: float | None
    eta: float | None
    startup: float | None
    status: str = "running"
    output: pathlib.Path | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"


def video_job(config: Config, network: Network, folder: pathlib.Path, *, clip: Upload,
              settings: video.VideoSettings = video.VideoSettings(), limits: Limits = Limits(),
              fps: Any = 8, start: Any = 0.0, seconds: Any = None,
              uploads: Sequence[Upload] = (), stop: Stop | None = None, every: int = 10,
              clock: Callable[[], float] = time.monotonic) -> Iterator[VideoUpdate]:
    """Stylise the frames of ``clip`` (:func:`read_clip`: ``fps``, ``start``, ``seconds``
    within ``limits``) with ``config`` on ``network`` in ``settings``' schedule
    (:class:`nst_jax.video.VideoRun`), yielding a :class:`VideoUpdate` every ``every``
    iterations; each finished frame is written to ``folder/frames/frame_NNNNN.png`` (a
    multi-pass run's earlier passes to ``folder/pass_N/``). A completed run ends with
    ``folder/stylized.mp4`` (H.264 at the frames' rate, with the clip's audio of their
    span). ``stop``
    ends the run after the current chunk: the frame (or pass) under way is dropped, the
    frames done are kept, and no mp4 is written (status ``stopped``). ``uploads``: the
    style images, whose names the messages use."""
    stop = stop if stop is not None else Stop()
    began = clock()
    source, local = read_clip(clip, folder, limits, size=config.size, fps=fps, start=start,
                              seconds=seconds)
    try:
        yield from _video_run(config, network, folder, source, local, clip=clip,
                              settings=settings, uploads=uploads, stop=stop, every=every,
                              clock=clock, began=began)
    finally:
        local.unlink(missing_ok=True)  # the copy FFmpeg read (as large as the upload)


def _video_run(config: Config, network: Network, folder: pathlib.Path, source: clips.Clip,
               local: pathlib.Path, *, clip: Upload, settings: video.VideoSettings,
               uploads: Sequence[Upload], stop: Stop, every: int, clock: Callable[[], float],
               began: float) -> Iterator[VideoUpdate]:
    """:func:`video_job` once its clip is read (``source``, from its copy ``local``)."""
    inputs = read_inputs(config, [clip, *uploads], content=source.frames[0])
    count = len(source.frames)
    per_pass = settings.iterations_per_pass(config)
    passes = len(per_pass)
    shown: dict[int, tuple[str, str]] = {}
    finished: dict[int, np.ndarray] = {}
    changed = True  # the first update clears the page's gallery

    def write(name: str, t: int, image: np.ndarray) -> str:
        path = folder / name / clips.frame_name(t + 1)
        path.parent.mkdir(exist_ok=True)
        return str(images.save_png(path, image))

    def on_frame(frame: video.Frame) -> None:
        nonlocal changed
        finished[frame.index] = frame.result.image
        shown[frame.index] = (write("frames", frame.index, frame.result.image),
                              f"frame {frame.index + 1}")
        changed = True

    def on_pass(index: int, results: list) -> None:
        nonlocal changed
        if index + 1 < passes:  # the last pass's frames come to on_frame
            for t, result in enumerate(results):
                shown[t] = (write(f"pass_{index + 1}", t, result.image),
                            f"frame {t + 1} (pass {index + 1}/{passes})")
            changed = True

    run = video.VideoRun(config, network, source.frames, inputs.styles, settings,
                         style_masks=inputs.style_masks, chunk=max(1, int(every)),
                         on_frame=on_frame, on_pass=on_pass, stop=stop, init_image=inputs.init)
    total = count * sum(per_pass)
    timer = _Clock(total, clock, began)
    shape = tuple(np.shape(source.frames[0])[:2])

    def update(frame: int, at_once: int, pass_: int, iteration: int, iterations: int, done: int,
               status: str = "running", output: pathlib.Path | None = None) -> VideoUpdate:
        nonlocal changed
        rate, eta, startup = timer.tick(done)
        per_hour = rate * 3600.0 / (total / count) if rate else None
        out = VideoUpdate([shown[t] for t in sorted(shown)], changed, count, shape, source.fps,
                          frame, at_once, pass_, passes, iteration, iterations, done, total,
                          per_hour, eta if status == "running" else 0.0, startup, status, output)
        changed = False
        return out

    last = None
    for at in run:
        last = at
        yield update(at.frame + 1, at.at_once, at.pass_, at.iteration, at.iterations, at.step)
    status = run.status if run.status in ("completed", "nonfinite") else "stopped"
    output = None
    if status == "completed":
        output = folder / "stylized.mp4"
        try:  # the audio of the frames' span: from the first one's time, as long as they last
            clips.write_video(output, [finished[t] for t in range(count)], source.fps,
                              audio_from=local if source.has_audio else None,
                              start=max(0.0, source.times[0]), duration=count / source.fps)
        except NSTError as e:
            raise NSTError(_private(one_line(e), {local: clip.name, output: output.name},
                                    folder)) from None
        yield update(count, 1, passes, per_pass[-1], per_pass[-1], total, status, output)
    else:  # where it ended: the frames (or passes) done, the one under way dropped
        done = (last.step - last.at_once * last.iteration) if last else 0
        yield update(last.frame + 1 if last else 1, last.at_once if last else 1,
                     last.pass_ if last else 1, 0, last.iterations if last else per_pass[0],
                     done, status)
