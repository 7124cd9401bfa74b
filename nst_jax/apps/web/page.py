"""The web page of ``nst-serve``: gradio components around :mod:`nst_jax.apps.web.jobs`.

:class:`App` builds the page (:meth:`App.blocks`):

- the images, shared by the tabs: a content image and up to three styles (uploaded, or
  the bundled examples), their weights, and how they combine: blended, or each in its
  region of the output (a mask per style; not for a video);
- the settings the tabs share: style scale, colour preservation, start image,
  optimiser;
- **Stylize**: size, iterations, α/β (a logarithmic control), seed, coarse-to-fine start
  size, the live refresh, the style distance (the paper's Gram matrices or one of
  :data:`~nst_jax.apps.web.jobs.STYLE_DISTANCES`); Run shows the image as it forms with a
  progress bar, the losses and an ETA; Stop keeps the image so far; the PNG downloads with
  the command line's metadata;
- **Sweep**: style distances x α/β values x seeds as one compiled grid, shown as a
  labelled gallery with each point's losses, and the contact sheet to download;
- **Video**: an uploaded clip (within the server's video limits) in the styles, frame by
  frame with temporal consistency (:mod:`nst_jax.video`'s schedules); the frames appear
  in a gallery as they finish, and the result plays and downloads as an mp4.

The jobs go through gradio's queue, ``concurrency`` at a time (one by default: a CPU is
busy with one). Errors in a job are a message in the page (and, for API clients, the
``AppError`` they get), HTML-escaped since gradio shows it as HTML; the server goes on.
A job reads only files the server received as uploads and the bundled examples
(:class:`nst_jax.apps.web.jobs.Trust`); gradio's own errors, which may name server
paths, reach no client (``show_error=False``). The API endpoints are ``/stylize``
(``content``, ``style``, ``size``, ``iterations``, ``log_ratio``, ``seed`` -> the PNG) and
``/sweep`` (``content``, ``style``, ``ratios``, ``seeds``, ``size``, ``iterations`` ->
the gallery and the contact sheet); docs/web.md shows them with ``gradio_client``.
"""
from __future__ import annotations

import html
import math
import os
import pathlib
import sys
import threading
import traceback
import uuid
from typing import Any, Callable, Iterator

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry: nothing leaves the host

import gradio as gr  # noqa: E402
from gradio import processing_utils, utils as gradio_utils  # noqa: E402

from nst_jax import video  # noqa: E402
from nst_jax.apps.common import runner  # noqa: E402
from nst_jax.apps.web import jobs  # noqa: E402
from nst_jax.apps.common.sweeps import DEFAULTS as SWEEP_DEFAULTS, format_value  # noqa: E402
from nst_jax.config import COLOR_MODES, INITS, OPTIMIZERS, Config, example_path  # noqa: E402
from nst_jax.errors import NSTError, one_line  # noqa: E402
from nst_jax.inputs import Network  # noqa: E402
from nst_jax.stop import Stop  # noqa: E402

DEFAULTS = jobs.CLI
STYLE_SLOTS = 3
# Every job shares one concurrency group: the server's --concurrency jobs at a time.
JOBS = "nst_jax-jobs"
EXAMPLES = [["chelsea.jpg", "starry_night.jpg"], ["fruits.jpg", "starry_night.jpg"]]
# The Video tab's starting values: a few seconds at a low rate and size, a CPU's minutes.
VIDEO_START = dict(size=128, iterations=50, fps=8, seconds=3.0)
# What the clip input offers to upload (jobs.read_clip reads a file by its first bytes).
CLIP_TYPES = [".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".gif"]
# Sans-serif and monospace of the browser's own: a page that loads no web fonts works offline.
THEME = gr.themes.Default(font=("ui-sans-serif", "system-ui", "sans-serif"),
                          font_mono=("ui-monospace", "monospace"))
CSS = """
.nst-status progress { width: 100%; height: 0.9em; }
.nst-status .nst-line { margin: 0.2em 0; font-variant-numeric: tabular-nums; }
.nst-status .nst-error { color: #b00020; font-weight: 600; }
"""


def duration(seconds: float | None) -> str:
    """``75.3`` -> ``1 min 15 s``, ``12.4`` -> ``12 s``, ``2.04`` -> ``2.0 s``; None -> ``?``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f} s"
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


STATUS_WORDS = {"running": "running", "completed": "done", "converged": "done (converged)",
                "stopped": "stopped: the image so far is kept",
                "nonfinite": "the loss became non-finite: the best image so far is kept",
                "interrupted": "stopped"}


def status_html(update: jobs.Update) -> str:
    """The Stylize tab's status: a progress bar, iterations, losses, speed, ETA."""
    scale = f" · {update.scale}" if update.scale else ""
    rate = f"{update.rate:.2f} it/s" if update.rate else "? it/s"
    eta = "" if update.finished else f" · ETA {duration(update.eta)}"
    return (f'<div class="nst-status" data-state="{update.status}">'
            f'<progress value="{update.done}" max="{update.total}"></progress>'
            f'<p class="nst-line"><b>{html.escape(STATUS_WORDS[update.status])}</b> · iteration '
            f'{update.done}/{update.total}{html.escape(scale)} · {rate}{eta} · start-up '
            f'{duration(update.startup)}</p>'
            f'<p class="nst-line">loss {update.loss:.4g} (content {update.content:.4g}, style '
            f'{update.style:.4g})</p></div>')


def sweep_status_html(update: jobs.SweepUpdate, points: int) -> str:
    done = len(update.results)
    eta = "" if update.status != "running" else f" · ETA {duration(update.eta)}"
    return (f'<div class="nst-status" data-state="{update.status}">'
            f'<progress value="{update.chunk * update.iterations + update.iteration}" '
            f'max="{update.chunks * update.iterations}"></progress>'
            f'<p class="nst-line"><b>{html.escape(STATUS_WORDS[update.status])}</b> · '
            f'iteration {update.iteration}/{update.iterations} of {points} points at once · '
            f'{done}/{points} points done{eta} · start-up {duration(update.startup)}</p></div>')


VIDEO_WORDS = {"running": "running", "completed": "done",
               "stopped": "stopped: the frames done are kept; no video is written",
               "nonfinite": "the loss became non-finite: the frames done are kept; no video "
                            "is written"}


def video_status_html(update: jobs.VideoUpdate) -> str:
    """The Video tab's status: a progress bar, the frame, pass and iteration, frames an
    hour, ETA; at the end, the frames done and the clip's size and rate."""
    rate = f"{update.per_hour:.0f} frames/h" if update.per_hour else "? frames/h"
    if update.finished:
        height, width = update.shape
        frames = (f"{update.count}/{update.count} frames · {width}x{height} px at "
                  f"{update.fps:.3g} fps" if update.status == "completed"
                  else f"{len(update.frames)}/{update.count} frames kept")
        where = f"{frames} · {rate}"
    else:
        last = update.frame + update.batch - 1
        frames = f"frames {update.frame}-{last}" if last > update.frame else f"frame {update.frame}"
        passes = f" · pass {update.pass_}/{update.passes}" if update.passes > 1 else ""
        where = (f"{frames}/{update.count}{passes} · iteration {update.iteration}/"
                 f"{update.iterations} · {rate} · ETA {duration(update.eta)}")
    return (f'<div class="nst-status" data-state="{update.status}">'
            f'<progress value="{update.done}" max="{update.total}"></progress>'
            f'<p class="nst-line"><b>{html.escape(VIDEO_WORDS[update.status])}</b> · '
            f'{where} · start-up {duration(update.startup)}</p></div>')


def message_html(text: str, state: str = "error") -> str:
    return (f'<div class="nst-status" data-state="{state}"><p class="nst-line nst-error">'
            f'{html.escape(text)}</p></div>')


# How a sweep point's caption names its axes.
AXIS_NAMES = {"ratio": "α/β", "style_loss": "distance"}


def caption(result) -> str:
    """A sweep point's label in the gallery: its axis values and losses."""
    labels = " · ".join(f"{AXIS_NAMES.get(k, k)} {format_value(v)}"
                        for k, v in result.labels.items())
    state = "" if result.status in ("completed", "converged") else f" ({result.status})"
    return (f"{labels}: loss {result.total:.3g} (content {result.content:.3g}, "
            f"style {result.style:.3g}){state}")


def page_error(text: str) -> gr.Error:
    """The ``gr.Error`` of a message: gradio shows its text as HTML (in the page's toast),
    so ``&``, ``<`` and ``>`` are escaped (the names of uploads and the values of controls
    in it are the user's own text)."""
    return gr.Error(html.escape(text, quote=False), print_exception=False)


def _message(error: BaseException) -> str:
    """The one line the page shows for ``error``; a bug's traceback goes to the server's log."""
    if isinstance(error, NSTError):
        return one_line(error)
    if runner.out_of_memory(error):
        return "the server ran out of memory: try a smaller size"
    traceback.print_exception(error, file=sys.stderr)
    return f"the job failed ({type(error).__name__}: {one_line(error)[:300]}); the server goes on"


class App:
    """The page and its jobs, on one loaded network (:func:`nst_jax.stylize.load_network`).

    Args:
      network: the VGG and weights every job uses.
      limits: the server's :class:`~nst_jax.apps.web.jobs.Limits`.
      folder: where the jobs write their PNGs (a folder of their own each).
      concurrency: jobs at a time.
    """

    def __init__(self, network: Network, limits: jobs.Limits, folder: pathlib.Path, *,
                 concurrency: int = 1):
        self.network, self.limits, self.folder = network, limits, pathlib.Path(folder)
        self.concurrency = concurrency
        # What a request may read: nothing uploaded until the page is served (launch).
        self.trust = jobs.Trust(pathlib.Path(gradio_utils.get_upload_folder()), (),
                                jobs.bundled_examples())
        self._stops: dict[str, Stop] = {}
        self._lock = threading.Lock()

    # --- jobs ---------------------------------------------------------------------------

    def _job_folder(self) -> pathlib.Path:
        folder = self.folder / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def _stop_event(self, request: gr.Request | None) -> Stop:
        event = Stop()
        key = getattr(request, "session_hash", None)
        if key is not None:
            with self._lock:
                self._stops[key] = event
        return event

    def _release(self, request: gr.Request | None, event: Stop) -> None:
        """Forget a finished job's stop event (unless a newer job of the page replaced it)."""
        key = getattr(request, "session_hash", None)
        with self._lock:
            if self._stops.get(key) is event:
                del self._stops[key]

    def stop(self, request: gr.Request) -> None:
        """Stop this page's running job after its current chunk (it keeps its image)."""
        with self._lock:
            event = self._stops.get(getattr(request, "session_hash", None))
        if event is not None:
            event.set()

    def _images(self, content, styles, weights, mode, masks):
        """The uploads of the image controls, checked (:meth:`jobs.Trust.file`)."""
        def upload(value, what):
            return jobs.upload(value, what, self.limits, self.trust)

        content = upload(content, "content image")
        styles = [upload(s, f"style image {k + 1}") for k, s in enumerate(styles)]
        masks = [upload(m, f"region mask {k + 1}") for k, m in enumerate(masks)]
        slots = [k for k, s in enumerate(styles) if s is not None]
        return jobs.Images(content, [styles[k] for k in slots],
                           [weights[k] for k in slots if k < len(weights)], mode,
                           [masks[k] for k in slots if k < len(masks)])

    def _config(self, images: jobs.Images, **controls) -> Config:
        return jobs.make_config(**images._asdict(), weights_path=self.network.info.get("path"),
                                limits=self.limits, **controls)

    def stylize_updates(self, images: jobs.Images, controls: dict, *, every: int,
                        stop: Stop) -> Iterator[jobs.Update]:
        """The :func:`nst_jax.apps.web.jobs.stylize_job` updates of a request."""
        config = self._config(images, **controls)
        inputs = jobs.read_inputs(config, images.uploads)
        arguments = {"content": images.content.name, "style": [s.name for s in images.styles],
                     **({"content_masks": [m.name for m in images.masks if m is not None]}
                        if images.mode == jobs.REGIONS else {}), **controls}
        yield from jobs.stylize_job(config, self.network, self._job_folder(), arguments=arguments,
                                stop=stop, every=every, inputs=inputs,
                                shown=jobs.named_config(config, images.uploads))

    def _streamed(self, request: gr.Request | None,
                  outputs: Callable[[Stop], Iterator[tuple]]) -> Iterator[tuple]:
        """A page job: ``outputs(stop)``'s values for (image or gallery, status, file); a
        failure puts its message in the status and raises it as ``gr.Error``."""
        stop = self._stop_event(request)
        try:
            yield from outputs(stop)
        except Exception as e:  # noqa: BLE001 - every failure is a message; the server goes on
            text = _message(e)
            yield gr.skip(), message_html(text), gr.skip()
            raise page_error(text) from None
        finally:
            self._release(request, stop)

    def _called(self, request: gr.Request | None, result: Callable[[Stop], Any]):
        """An API job: ``result(stop)``, a failure raised as ``gr.Error``."""
        stop = self._stop_event(request)
        try:
            return result(stop)
        except Exception as e:  # noqa: BLE001
            raise page_error(_message(e)) from None
        finally:
            self._release(request, stop)

    def run_page(self, content, style_1, style_2, style_3, weight_1, weight_2, weight_3, mode,
                 mask_1, mask_2, mask_3, style_scale, colours, init, optimizer, size, iterations,
                 log_ratio, seed, start_size, every, style_loss, request: gr.Request):
        """Run: the image, the status and the download, every few iterations."""
        controls = dict(size=size, iterations=iterations, log_ratio=log_ratio,
                        style_scale=style_scale, preserve_colors=colours, start_size=start_size,
                        init=init, seed=seed, optimizer=optimizer, style_loss=style_loss)

        def outputs(stop):
            images = self._images(content, [style_1, style_2, style_3],
                                  [weight_1, weight_2, weight_3], mode, [mask_1, mask_2, mask_3])
            chunk = jobs.whole_number(every, "Refresh every", 1, 1000)
            for update in self.stylize_updates(images, controls, every=chunk, stop=stop):
                output = str(update.output) if update.output else None
                yield output or update.image, status_html(update), output

        yield from self._streamed(request, outputs)

    def api_stylize(self, content, style, size, iterations, log_ratio, seed, request: gr.Request):
        """``/stylize``: the PNG of ``content`` in the style of ``style`` (``/stop`` from the
        same client session ends it early, keeping the image so far)."""

        def result(stop):
            images = self._images(content, [style], [1.0], jobs.BLEND, [])
            controls = dict(size=size, iterations=iterations, log_ratio=log_ratio, seed=seed)
            *_, last = self.stylize_updates(images, controls, every=10, stop=stop)
            return str(last.output)

        return self._called(request, result)

    def sweep_updates(self, images, shared: dict, size, iterations, ratios, seeds,
                      stop: Stop, distances=None) -> Iterator[tuple[jobs.SweepUpdate, int]]:
        config = self._config(images, size=size, iterations=iterations, **shared)
        grid = jobs.sweep_grid(config, ratios, seeds, self.limits, distances)
        inputs = jobs.read_inputs(config, images.uploads)
        for update in jobs.sweep(grid, inputs, self.network, self._job_folder(), stop=stop):
            yield update, len(grid)

    def run_sweep(self, content, style_1, style_2, style_3, weight_1, weight_2, weight_3, mode,
                  mask_1, mask_2, mask_3, style_scale, colours, init, optimizer, size, iterations,
                  ratios, seeds, distances, request: gr.Request):
        """Run sweep: the gallery, the status and the contact sheet."""
        shared = dict(style_scale=style_scale, preserve_colors=colours, init=init,
                      optimizer=optimizer)

        def outputs(stop):
            images = self._images(content, [style_1, style_2, style_3],
                                  [weight_1, weight_2, weight_3], mode, [mask_1, mask_2, mask_3])
            for update, points in self.sweep_updates(images, shared, size, iterations, ratios,
                                                     seeds, stop, distances):
                gallery = [(str(update.files[r.index]), caption(r)) for r in update.results]
                yield (gallery or gr.skip(), sweep_status_html(update, points),
                       str(update.sheet) if update.sheet else gr.skip())

        yield from self._streamed(request, outputs)

    def api_sweep(self, content, style, ratios, seeds, size, iterations, request: gr.Request):
        """``/sweep``: the points' PNGs with their captions, and the contact sheet."""

        def result(stop):
            images = self._images(content, [style], [1.0], jobs.BLEND, [])
            *_, (last, _) = self.sweep_updates(images, {}, size, iterations, ratios, seeds, stop)
            return ([(str(last.files[r.index]), caption(r)) for r in last.results],
                    str(last.sheet))

        return self._called(request, result)

    def run_video(self, clip, style_1, style_2, style_3, weight_1, weight_2, weight_3, mode,
                  style_scale, colours, init, optimizer, size, iterations, log_ratio, fps,
                  start, seconds, schedule, temporal_weight, passes, request: gr.Request):
        """Run video: the gallery of frames done, the status and the mp4."""
        controls = dict(size=size, iterations=iterations, log_ratio=log_ratio,
                        style_scale=style_scale, preserve_colors=colours, init=init,
                        optimizer=optimizer)

        def outputs(stop):
            upload = jobs.upload(clip, "clip", self.limits, self.trust, examples=False)
            images = self._images(None, [style_1, style_2, style_3],
                                  [weight_1, weight_2, weight_3], mode, [])
            config = jobs.video_config(clip=upload, styles=images.styles, weights=images.weights,
                                       mode=images.mode, limits=self.limits,
                                       weights_path=self.network.info.get("path"), **controls)
            settings = jobs.video_settings(schedule, temporal_weight, passes)
            for update in jobs.video_job(config, self.network, self._job_folder(), clip=upload,
                                         settings=settings, limits=self.limits, fps=fps,
                                         start=start, seconds=seconds, uploads=images.styles,
                                         stop=stop):
                yield (update.frames if update.changed else gr.skip(), video_status_html(update),
                       str(update.output) if update.output else None)

        yield from self._streamed(request, outputs)

    def launch(self, host: str, port: int, *, queue_size: int = 20) -> gr.Blocks:
        """Build the page and serve it on ``host:port`` from a thread of its own; returns
        the page (``close()`` stops it)."""
        page = self.blocks()
        self.trust = self._trust(page)
        page.queue(max_size=queue_size, default_concurrency_limit=self.concurrency)
        # show_error=False: only the jobs' own messages (gr.Error) reach a client; gradio's
        # (a file refused before the job sees it, "Cannot move /path ...") name server paths.
        page.launch(server_name=host, server_port=port, prevent_thread_lock=True,
                    show_error=False, quiet=True, inbrowser=False, theme=THEME, css=CSS,
                    max_file_size=self.limits.max_upload_bytes, footer_links=["api"])
        return page

    @staticmethod
    def _trust(page: gr.Blocks) -> jobs.Trust:
        """What requests to ``page`` may read: what it received through gradio's ``/upload``
        (gradio's record of it, in its upload folder), the bundled examples and gradio's
        copies of them (the page's defaults and examples, which the browser sends back)."""
        folder = pathlib.Path(gradio_utils.get_upload_folder())  # where /upload writes
        examples = jobs.bundled_examples()
        copies = {pathlib.Path(processing_utils.save_file_to_cache(path, cache_dir=str(folder)))
                  .resolve() for path in examples}
        return jobs.Trust(folder, page.upload_file_set, examples | copies)

    # --- the page -----------------------------------------------------------------------

    def _start(self) -> dict:
        """The controls' starting values: the command line's (a sweep's for the sweeps),
        within the server's limits."""
        limits = self.limits
        return dict(size=min(DEFAULTS.size, limits.max_size),
                    iterations=min(DEFAULTS.iterations, limits.max_iterations),
                    sweep_size=min(SWEEP_DEFAULTS["size"], limits.max_size),
                    sweep_iterations=min(SWEEP_DEFAULTS["iterations"], limits.max_iterations),
                    video_size=min(VIDEO_START["size"], limits.max_video_size),
                    video_iterations=min(VIDEO_START["iterations"], limits.max_iterations),
                    video_seconds=min(VIDEO_START["seconds"], limits.max_video_seconds))

    def _job(self) -> dict:
        """The event options of every job: one concurrency group, raw inputs (jobs
        checks and reads the files itself, :class:`~nst_jax.apps.web.jobs.Trust`, with its
        own messages)."""
        return dict(concurrency_id=JOBS, concurrency_limit=self.concurrency, preprocess=False)

    def blocks(self) -> gr.Blocks:
        limits = self.limits
        start, job = self._start(), self._job()
        with gr.Blocks(title="nst_jax: neural style transfer", analytics_enabled=False,
                       delete_cache=(3600, 86400)) as page:
            gr.Markdown("## nst_jax: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016)\n"
                        "Upload a photo and a painting, or pick an example; **Run** paints the "
                        "photo in the painting's style, showing the image as it forms.")
            with gr.Row():
                with gr.Column(scale=2):
                    with gr.Row():
                        content = gr.Image(str(example_path("chelsea.jpg")), type="filepath",
                                           label="Content image", sources=["upload", "clipboard"],
                                           elem_id="content-image", height=240)
                        style_1 = gr.Image(str(example_path("starry_night.jpg")), type="filepath",
                                           label="Style image", sources=["upload", "clipboard"],
                                           elem_id="style-image-1", height=240)
                    gr.Examples([[str(example_path(c)), str(example_path(s))] for c, s in EXAMPLES],
                                [content, style_1], label="Examples")
                    with gr.Accordion("More styles, blend weights and regions", open=False):
                        with gr.Row():
                            style_2 = gr.Image(None, type="filepath", label="Style image 2",
                                               elem_id="style-image-2", height=160)
                            style_3 = gr.Image(None, type="filepath", label="Style image 3",
                                               elem_id="style-image-3", height=160)
                        with gr.Row():
                            weights = [gr.Number(1.0, label=f"Weight of style {k + 1}", minimum=0,
                                                 elem_id=f"style-weight-{k + 1}")
                                       for k in range(STYLE_SLOTS)]
                        mode = gr.Radio([("Blend the styles over the whole image", jobs.BLEND),
                                         ("Paint each style in its region (masks)", jobs.REGIONS)],
                                        value=jobs.BLEND, label="Several styles",
                                        elem_id="style-mode")
                        with gr.Row():
                            masks = [gr.Image(None, type="filepath", height=120,
                                              label=f"Region of style {k + 1} (white)",
                                              elem_id=f"region-mask-{k + 1}")
                                     for k in range(STYLE_SLOTS)]
                    with gr.Accordion("Settings of every tab", open=False):
                        style_scale = gr.Slider(0.25, 2.0, 1.0, step=0.05, label="Style scale",
                                                info="the style image's size as a multiple of "
                                                     "the output's: smaller makes finer strokes",
                                                elem_id="style-scale")
                        colours = gr.Dropdown(list(COLOR_MODES), value=DEFAULTS.preserve_colors,
                                              label="Colours",
                                              info="keep the content's colours (none: the "
                                                   "style's)", elem_id="colours")
                        init = gr.Dropdown(list(INITS), value=DEFAULTS.init, label="Start from",
                                           info="white noise (the paper's), the content or the "
                                                "style", elem_id="init")
                        optimizer = gr.Dropdown(list(OPTIMIZERS), value=DEFAULTS.optimizer,
                                                label="Optimiser", elem_id="optimizer")
                with gr.Column(scale=3):
                    with gr.Tabs():
                        with gr.Tab("Stylize", id="stylize"):
                            with gr.Row():
                                size = gr.Slider(16, limits.max_size, start["size"], step=1,
                                                 label="Size (long side, px)", elem_id="size")
                                iterations = gr.Slider(1, limits.max_iterations,
                                                       start["iterations"], step=1,
                                                       label="Iterations", elem_id="iterations")
                            with gr.Row():
                                log_ratio = gr.Slider(
                                    -6, 2, jobs.DEFAULT_LOG_RATIO,
                                    step=0.1, label="log₁₀ α/β: content against style",
                                    info="-3 is the paper's 1e-3; lower is more style",
                                    elem_id="log-ratio")
                                seed = gr.Number(DEFAULTS.seed, precision=0, minimum=0,
                                                 label="Seed (of the white noise)", elem_id="seed")
                            with gr.Row():
                                start_size = gr.Slider(0, limits.max_size, 0, step=1,
                                                       label="Start size (coarse to fine; 0: off)",
                                                       elem_id="start-size")
                                every = gr.Slider(1, 50, 10, step=1,
                                                  label="Refresh the image every N iterations",
                                                  elem_id="every")
                            style_loss = gr.Dropdown(
                                list(jobs.STYLE_DISTANCES), value=DEFAULTS.style_loss,
                                label="Style distance",
                                info="how the style's features are compared: Gram matrices (the "
                                     "paper's), or their distributions (sliced and histogram: "
                                     "one style, no regions)", elem_id="style-loss")
                            with gr.Row():
                                run = gr.Button("Run", variant="primary", elem_id="run")
                                stop = gr.Button("Stop", variant="stop", elem_id="stop")
                            result = gr.Image(None, label="Result", format="png",
                                              interactive=False, elem_id="result", height=420)
                            status = gr.HTML("", elem_id="status")
                            download = gr.File(None, label="Download (PNG with the settings and "
                                                           "the loss in its metadata)",
                                               interactive=False, elem_id="download")
                        with gr.Tab("Sweep", id="sweep"):
                            gr.Markdown("Every combination of style distance, α/β and seed, "
                                        "computed at once as one compiled grid.")
                            with gr.Row():
                                ratios = gr.Textbox("1e-4, 1e-3, 1e-2", label="α/β values",
                                                    elem_id="sweep-ratios")
                                seeds = gr.Textbox("0", label="Seeds", elem_id="sweep-seeds")
                            distances = gr.CheckboxGroup(
                                list(jobs.STYLE_DISTANCES), value=[DEFAULTS.style_loss],
                                label="Style distances", elem_id="sweep-distances")
                            with gr.Row():
                                sweep_size = gr.Slider(16, limits.max_size,
                                                       start["sweep_size"],
                                                       step=1, label="Size (long side, px)",
                                                       elem_id="sweep-size")
                                sweep_iterations = gr.Slider(
                                    1, limits.max_iterations,
                                    start["sweep_iterations"],
                                    step=1, label="Iterations", elem_id="sweep-iterations")
                            with gr.Row():
                                run_sweep = gr.Button("Run sweep", variant="primary",
                                                      elem_id="run-sweep")
                                stop_sweep = gr.Button("Stop", variant="stop", elem_id="stop-sweep")
                            sweep_status = gr.HTML("", elem_id="sweep-status")
                            gallery = gr.Gallery(label="Points", columns=3, height="auto",
                                                 format="png", elem_id="gallery")
                            sheet = gr.File(None, label="Contact sheet", interactive=False,
                                            elem_id="contact-sheet")
                        with gr.Tab("Video", id="video"):
                            video_inputs = self._video_tab(start)
                            with gr.Row():
                                run_video = gr.Button("Run video", variant="primary",
                                                      elem_id="run-video")
                                stop_video = gr.Button("Stop", variant="stop", elem_id="stop-video")
                            video_status = gr.HTML("", elem_id="video-status")
                            video_frames = gr.Gallery(label="Frames, as they finish", columns=6,
                                                      height="auto", format="png",
                                                      elem_id="video-frames")
                            video_result = gr.Video(None, label="Result (mp4)", interactive=False,
                                                    loop=True, elem_id="video-result")
            images = [content, style_1, style_2, style_3, *weights, mode, *masks]
            shared = [style_scale, colours, init, optimizer]
            run.click(self.run_page, images + shared + [size, iterations, log_ratio, seed,
                                                        start_size, every, style_loss],
                      [result, status, download], api_visibility="undocumented",
                      api_name="run_page", **job)
            run_sweep.click(self.run_sweep, images + shared + [sweep_size, sweep_iterations,
                                                               ratios, seeds, distances],
                            [gallery, sweep_status, sheet], api_visibility="undocumented",
                            api_name="run_sweep", **job)
            run_video.click(self.run_video, [video_inputs[0], style_1, style_2, style_3, *weights,
                                             mode, *shared, *video_inputs[1:]],
                            [video_frames, video_status, video_result],
                            api_visibility="undocumented", api_name="run_video", **job)
            for button in (stop, stop_sweep, stop_video):
                button.click(self.stop, None, None, queue=False, api_name="stop",
                             api_visibility="undocumented")
            self._api()
        return page

    def _video_tab(self, start: dict) -> list:
        """The Video tab's inputs: the clip, then the controls of :meth:`run_video` after
        the shared settings, in its order."""
        limits = self.limits
        gr.Markdown(f"A short clip painted frame by frame, each frame kept consistent with "
                    f"its neighbours (Ruder et al. 2016). This server takes up to "
                    f"{limits.max_video_frames} frames, {limits.max_video_seconds:g} s of the "
                    f"clip, {limits.max_video_size} px. The style images and the settings are "
                    f"the ones on the left.")
        clip = gr.File(None, label="Clip (MP4, MOV, WebM, MKV, AVI or GIF)",
                       file_types=CLIP_TYPES, elem_id="video-clip", height=120)
        with gr.Row():
            size = gr.Slider(16, limits.max_video_size, start["video_size"], step=1,
                             label="Size (long side, px)", elem_id="video-size")
            iterations = gr.Slider(1, limits.max_iterations, start["video_iterations"], step=1,
                                   label="Iterations (of each frame)",
                                   elem_id="video-iterations")
            log_ratio = gr.Slider(-6, 2, jobs.DEFAULT_LOG_RATIO, step=0.1,
                                  label="log₁₀ α/β: content against style",
                                  elem_id="video-log-ratio")
        with gr.Row():
            fps = gr.Slider(1, jobs.MAX_CLIP_FPS, VIDEO_START["fps"], step=1,
                            label="Frames per second (at most the clip's)", elem_id="video-fps")
            start_at = gr.Number(0.0, minimum=0, label="Start (s into the clip)",
                                 elem_id="video-start")
            seconds = gr.Number(start["video_seconds"], minimum=0,
                                maximum=limits.max_video_seconds, label="Seconds",
                                elem_id="video-seconds")
        with gr.Row():
            schedule = gr.Radio([(jobs.SCHEDULE_LABELS[s], s) for s in video.SCHEDULES],
                                value="sequential", label="Schedule",
                                info="sequential: each frame from the last (the paper's); "
                                     "multi-pass: all frames at once, in passes; "
                                     "independent: no temporal term (flickers)",
                                elem_id="video-schedule")
            temporal_weight = gr.Number(video.DEFAULT_TEMPORAL_WEIGHT, minimum=0,
                                        label="Temporal weight γ (0: none)",
                                        elem_id="video-temporal-weight")
            passes = gr.Slider(2, 16, video.DEFAULT_PASSES, step=1,
                               label="Passes (multi-pass; they share the iterations)",
                               elem_id="video-passes")
        return [clip, size, iterations, log_ratio, fps, start_at, seconds, schedule,
                temporal_weight, passes]

    def _api(self) -> None:
        """The hidden components of the ``/stylize`` and ``/sweep`` endpoints."""
        start, job = self._start(), self._job()
        with gr.Column(visible=False):
            content = gr.Image(type="filepath", label="content")
            style = gr.Image(type="filepath", label="style")
            size = gr.Number(start["size"], label="size", precision=0)
            iterations = gr.Number(start["iterations"], label="iterations", precision=0)
            log_ratio = gr.Number(jobs.DEFAULT_LOG_RATIO, label="log_ratio")
            seed = gr.Number(DEFAULTS.seed, label="seed", precision=0)
            image = gr.Image(type="filepath", format="png", label="image")
            ratios = gr.Textbox("1e-4, 1e-3, 1e-2", label="ratios")
            seeds = gr.Textbox("0", label="seeds")
            sweep_size = gr.Number(start["sweep_size"], label="size", precision=0)
            sweep_iterations = gr.Number(start["sweep_iterations"], label="iterations",
                                         precision=0)
            points = gr.Gallery(label="points", format="png")
            sheet = gr.Image(type="filepath", format="png", label="contact_sheet")
            go = gr.Button(visible=False)
            go.click(self.api_stylize, [content, style, size, iterations, log_ratio, seed], image,
                     api_name="stylize", **job)
            sweep = gr.Button(visible=False)
            sweep.click(self.api_sweep, [content, style, ratios, seeds, sweep_size,
                                         sweep_iterations], [points, sheet], api_name="sweep",
                        **job)
