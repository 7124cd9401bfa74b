"""Stylising a clip with temporal consistency (Ruder, Dosovitskiy & Brox, *Artistic style
transfer for videos*, GCPR 2016), on the run driver.

Each frame is a style transfer of that frame (its own eq. 1 targets; the style's Gram
matrices are the same for every frame) plus Ruder's temporal term (:mod:`nst_jax.temporal`):
the squared difference to the neighbouring frame's result carried into this frame by the
optical flow (:mod:`nst_jax.flow`), weighted by γ (``temporal_weight``) and masked where
the forward-backward check finds occlusions or motion boundaries. Three schedules:

- ``sequential`` (Ruder §3.1, as the paper): frame ``t`` after frame ``t - 1``, started
  from the previous result warped into it (disoccluded parts from that warp too, as
  Ruder's ``prevWarped``); each frame a :class:`~nst_jax.stylize.Stylization` advanced by
  :func:`nst_jax.driver.advance`, every frame the same compiled programs (the temporal
  target is a data argument).
- ``multipass`` (Ruder §3.3, batched): every frame optimised together as one vmapped
  :class:`~nst_jax.batch.Batch` (chunks of it where memory asks), in ``passes`` passes.
  The first pass stylises the frames on their own (``iterations``, no temporal term);
  each later pass (``later_iterations``) alternates direction (backward, forward, ...)
  and pulls frame ``t`` towards its neighbour's result *of the previous pass* (``t + 1``
  going backward, ``t - 1`` going forward), starting from ``δ`` of its own previous
  result and ``1 - δ`` of the warped neighbour where consistent (Ruder's blend, δ =
  :data:`BLEND`). Ruder's passes are sequential inside a pass; taking the neighbours
  from the previous pass instead is what makes a pass one batch, where JAX's ``vmap``
  and a device mesh pay. (Sharing ``iterations`` among the passes instead leaves the
  frames under-stylised: each pass restarts L-BFGS, whose first iterations are
  short steps; docs/video.md.)
- ``independent``: γ = 0 and no warping, the frames a batch of photos: the flickering
  baseline ("script it frame by frame") that the measures compare against.

Long-term consistency (Ruder §3.2's flows to frames ``t - k``) is not implemented: the
short-term term with the warped initialisation is what removes most flicker in their
tables, and it keeps one flow pair per frame.

:class:`VideoRun` yields a :class:`Progress` after every chunk of iterations and hands
each finished frame (sequential) or pass (multi-pass) to a callback, so a caller keeps
what is done when the stop token ends a run, and resumes from it (``resume``).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np

from nst_jax import batch as batching, driver, flow as optical_flow, stylize, temporal
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.inputs import Network
from nst_jax.stop import Stop

SCHEDULES = ("sequential", "multipass", "independent")
# γ: the temporal term's weight, against the paper's α = 1, β = 1e3 (Config's defaults).
# It weights the sum over the H W C values (nst_jax.temporal.with_temporal), which grows
# with the image as the content term does: one γ serves every size.
# Chosen on the synthetic pan of docs/video.md (real VGG19, 128 px, sequential): 1e6 gave
# 0.15x the independent frames' flicker at 0.76x their style loss, 5e6 0.07x at 0.89x,
# 3e7 0.02x at 1.29x (over the 1.2x the style may cost).
DEFAULT_TEMPORAL_WEIGHT = 2e6
DEFAULT_PASSES = 6
# Ruder's δ: a multi-pass frame starts from this share of its own previous result.
BLEND = 0.5



@dataclasses.dataclass(frozen=True)
class VideoSettings:
    """What a video run adds to :class:`~nst_jax.config.Config`: the ``schedule``
    (:data:`SCHEDULES`), γ (``temporal_weight``; 0 makes the frames independent even in
    the sequential schedule), the multi-pass ``passes`` and the iterations of each pass
    after the first (``later_iterations``; 0: a quarter of the first's), and the optical
    flow's ``flow_preset`` (:data:`nst_jax.flow.PRESETS`)."""

    schedule: str = "sequential"
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    passes: int = DEFAULT_PASSES
    later_iterations: int = 0
    flow_preset: str = optical_flow.DEFAULT_PRESET

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise NSTError(f"the schedule must be one of {', '.join(SCHEDULES)}, got "
                           f"{self.schedule!r}")
        if not (np.isfinite(self.temporal_weight) and self.temporal_weight >= 0):
            raise NSTError(f"the temporal weight must be a finite number >= 0, got "
                           f"{self.temporal_weight!r}")
        if self.passes < 2:
            raise NSTError(f"the multi-pass schedule needs at least 2 passes, got {self.passes}")
        if self.later_iterations < 0:
            raise NSTError(f"the iterations of a later pass must be >= 0 (0: a quarter of the "
                           f"first's), got {self.later_iterations}")
        if self.flow_preset not in optical_flow.PRESETS:
            raise NSTError(f"the flow preset must be one of {', '.join(optical_flow.PRESETS)}, "
                           f"got {self.flow_preset!r}")

    def resolved(self) -> "VideoSettings":
        """These settings as they run: γ = 0 is the ``independent`` schedule (no flow, no
        warped start), whatever the schedule named."""
        if self.temporal_weight == 0 and self.schedule != "independent":
            return dataclasses.replace(self, schedule="independent")
        return self

    def iterations_per_pass(self, config: Config) -> tuple[int, ...]:
        """Iterations of each pass (one pass unless multi-pass): the first pass runs
        ``config.iterations`` (the frames stylised on their own), each later one
        ``later_iterations`` (0: a quarter of ``config.iterations``)."""
        if self.schedule != "multipass":
            return (config.iterations,)
        later = self.later_iterations or max(1, config.iterations // 4)
        return (config.iterations,) + (later,) * (self.passes - 1)


def check(config: Config) -> None:
    """:class:`NSTError` for what a video cannot use: content masks (one image's regions)
    and coarse to fine (a frame runs at one scale)."""
    if config.content_masks is not None:
        raise NSTError("--content-masks belong to one image; a video cannot use them")
    if config.start_size is not None:
        raise NSTError("a video runs at one scale: drop --start-size")


class Progress(NamedTuple):
    """Where a video run stands: ``frame`` (0-based; the first of the chunk being run in
    a batch, of ``at_once`` frames) of ``frames``, ``pass_`` of ``passes`` (1 and 1 for a
    single pass), ``iteration`` of ``iterations`` (of this frame or pass), ``step``:
    frame-iterations done over the whole run (a batch of ``n`` frames at iteration ``i``
    counts ``n i``) of ``total``, and ``seconds`` since the start."""

    frame: int
    at_once: int
    frames: int
    pass_: int
    passes: int
    iteration: int
    iterations: int
    step: int
    total: int
    seconds: float


class Frame(NamedTuple):
    """A finished frame: its index and :class:`nst_jax.batch.ItemResult`."""

    index: int
    result: batching.ItemResult


@dataclasses.dataclass(frozen=True)
class Resume:
    """Continue a run: ``sequential``: from frame ``next_index`` with the previous frame's
    optimised pixels ``pixels[0]``; ``multipass``: at pass ``next_index`` with every frame's
    result of the pass before in ``pixels``."""

    next_index: int
    pixels: Sequence[np.ndarray]


class FlowTimer:
    """The optical flows of a clip, computed on demand and timed (``seconds``)."""

    def __init__(self, frames: Sequence[np.ndarray], preset: str):
        self.frames, self.preset, self.seconds = frames, preset, 0.0
        self._pairs: dict[int, optical_flow.Flows] = {}

    def pair(self, t: int) -> optical_flow.Flows:
        """Flows between frames ``t - 1`` and ``t`` (``backward``: t -> t - 1)."""
        if t not in self._pairs:
            began = time.perf_counter()
            self._pairs[t] = optical_flow.between(self.frames[t - 1], self.frames[t], self.preset)
            self.seconds += time.perf_counter() - began
        return self._pairs[t]

    def target(self, t: int, neighbour: int, result: np.ndarray) -> temporal.Target:
        """Frame ``t``'s :class:`~nst_jax.temporal.Target`: ``result`` (of frame
        ``neighbour``, ``t ± 1``) warped into frame ``t``, with its consistency weights."""
        if neighbour == t - 1:
            flows = self.pair(t)
            return temporal.target_of(result, flows.backward, flows.forward)
        if neighbour == t + 1:
            flows = self.pair(t + 1)
            return temporal.target_of(result, flows.forward, flows.backward)
        raise ValueError(f"frame {neighbour} is not a neighbour of frame {t}")

    def drop_before(self, t: int) -> None:
        """Forget the flows of frames before ``t`` (a sequential run needs no more)."""
        for key in [k for k in self._pairs if k < t]:
            del self._pairs[key]


class VideoRun(driver.Jobs):
    """A clip's stylisation (a :class:`nst_jax.driver.Jobs`): iterate for :class:`Progress`,
    or call it for the status (``completed``, ``nonfinite``, or the stop's reason);
    ``on_frame(Frame)`` gets each frame as it is finished (sequential, independent),
    ``on_pass(pass_index, [ItemResult])`` each multi-pass pass as it ends (the last
    pass's frames also go to ``on_frame``).

    Args:
      config: the frames' settings (``iterations``: per frame; multi-pass: of its first
        pass, :meth:`VideoSettings.iterations_per_pass`).
      network: :func:`nst_jax.inputs.load_network`.
      frames: the clip, ``(H, W, 3)`` RGB float32 in [0, 1], one size.
      styles: the style image(s); style_masks: one per style, or None.
      settings: :class:`VideoSettings`.
      chunk: iterations per compiled call.
      stop: ends the run after the current chunk (the frame or pass under way is dropped).
      resume: :class:`Resume`.
      batch_size: frames per compiled call of a batch (default: what memory allows).
      memory: bytes per device for that choice.
    """

    def __init__(self, config: Config, network: Network, frames: Sequence[np.ndarray],
                 styles: Sequence[np.ndarray], settings: VideoSettings = VideoSettings(), *,
                 style_masks=None, chunk: int = driver.CHUNK,
                 on_frame: Callable[[Frame], object] | None = None,
                 on_pass: Callable[[int, list], object] | None = None,
                 stop: Stop | None = None, resume: Resume | None = None,
                 batch_size: int | None = None, memory: float | None = None,
                 init_image: np.ndarray | None = None):
        check(config)
        if not len(frames):
            raise NSTError("the clip has no frames")
        self.config, self.network, self.frames = config, network, list(frames)
        settings = settings.resolved()
        self.styles, self.settings, self.style_masks = list(styles), settings, style_masks
        self.chunk, self.on_frame, self.on_pass = int(chunk), on_frame, on_pass
        self.stop = stop if stop is not None else Stop()
        self.resume, self.init_image = resume, init_image
        self.flows = FlowTimer(self.frames, settings.flow_preset)
        self.status: str | None = None
        self.batch_size = batch_size
        if settings.schedule != "sequential":
            shape = np.shape(self.frames[0])[:2]
            batching.check(config)
            self.batch_size = batch_size or batching.fitting_batch_size(
                len(self.frames), shape, config, network, memory=memory,
                temporal_term=settings.schedule == "multipass", what="frame of this clip")
        self._began = 0.0

    @property
    def passes(self) -> int:
        return self.settings.passes if self.settings.schedule == "multipass" else 1

    def _jobs(self) -> Iterator[Progress]:
        self._began = time.monotonic()
        if self.settings.schedule == "sequential":
            yield from self._sequential()
        else:
            yield from self._batched()

    def _progress(self, frame: int, at_once: int, pass_: int, iteration: int) -> Progress:
        """Progress at ``iteration`` of frames ``frame`` .. ``frame + at_once - 1`` in pass
        ``pass_`` (0-based), the frames before them in the pass, and the passes before, done."""
        per_pass = self.settings.iterations_per_pass(self.config)
        count = len(self.frames)
        step = count * sum(per_pass[:pass_]) + frame * per_pass[pass_] + at_once * iteration
        return Progress(frame, at_once, count, pass_ + 1, len(per_pass), iteration,
                        per_pass[pass_], step, count * sum(per_pass),
                        time.monotonic() - self._began)

    # --- sequential ----------------------------------------------------------------------

    def _sequential(self) -> Iterator[Progress]:
        config, network, weight = self.config, self.network, self.settings.temporal_weight
        first, previous = 0, None
        if self.resume is not None:
            first = self.resume.next_index
            previous = self.resume.pixels[0] if first > 0 else None
        shape = np.shape(self.frames[0])
        for t in range(first, len(self.frames)):
            if self.stop.is_set():
                return
            if previous is None:  # the first frame: no neighbour, the same program
                target, start = temporal.no_target(shape), None
            else:
                target = self.flows.target(t, t - 1, previous)
                start = np.asarray(target.warped)
                self.flows.drop_before(t)
            job = stylize.prepare(self.frames[t], self.styles, network.params, config,
                                  module=network.module, preprocessing=network.preprocessing,
                                  style_masks=self.style_masks, start=start,
                                  init_image=self.init_image, temporal_target=target,
                                  temporal_weight=weight)
            for iteration in driver.advance(job, chunk=self.chunk, stop=self.stop):
                yield self._progress(t, 1, 0, iteration)
            if not job.done:  # stopped: this frame is dropped
                return
            result = _result(job)
            if result.status == "nonfinite":
                self.status = "nonfinite"
                return
            if self.on_frame:
                self.on_frame(Frame(t, result))
            previous = result.pixels
            job = None

    # --- batched: independent frames, multi-pass ------------------------------------------

    def _batched(self) -> Iterator[Progress]:
        multipass = self.settings.schedule == "multipass"
        pass_iterations = self.settings.iterations_per_pass(self.config)
        count, size = len(self.frames), self.batch_size
        first_pass, results = 0, [None] * count
        first_frame = 0
        if self.resume is not None:
            if multipass:
                first_pass, results = self.resume.next_index, list(self.resume.pixels)
            else:
                first_frame = self.resume.next_index
        shape = np.shape(self.frames[0])
        for pass_ in range(first_pass, self.passes):
            backward = pass_ % 2 == 1  # pass 0 plain, then backward, forward, ...
            config = self.config.replace(iterations=pass_iterations[pass_])
            finished: list = [None] * count
            for begin in range(first_frame, count, size):
                if self.stop.is_set():
                    return
                indices = list(range(begin, min(begin + size, count)))
                targets = starts = None
                if multipass:
                    targets, starts = [], []
                    for t in indices:
                        neighbour = t + 1 if backward else t - 1
                        if pass_ == 0 or not 0 <= neighbour < count:
                            targets.append(temporal.no_target(shape))
                            starts.append(results[t])
                            continue
                        target = self.flows.target(t, neighbour, results[neighbour])
                        targets.append(target)
                        starts.append(blend(results[t], target))
                    if pass_ == 0:
                        starts = None
                job = batching.Batch(config, self.network, [self.frames[t] for t in indices],
                                     self.styles, starts=starts, targets=targets,
                                     temporal_weight=self.settings.temporal_weight if pass_ else 0.0,
                                     style_masks=self.style_masks, size=size,
                                     init_image=self.init_image)
                for iteration in driver.advance(job, chunk=self.chunk, stop=self.stop):
                    yield self._progress(begin, len(indices), pass_, iteration)
                if not job.done:
                    return
                for t, result in zip(indices, job.results()):
                    if result.status == "nonfinite":
                        self.status = "nonfinite"
                        return
                    finished[t] = result
                    if not multipass and self.on_frame:
                        self.on_frame(Frame(t, result))
                job = None
            if not multipass:
                return
            results = [r.pixels for r in finished]
            if self.on_pass:
                self.on_pass(pass_, finished)
            if pass_ == self.passes - 1 and self.on_frame:
                for t, result in enumerate(finished):
                    self.on_frame(Frame(t, result))


def blend(own: np.ndarray, target: temporal.Target) -> np.ndarray:
    """A multi-pass frame's start: ``δ own + (1 - δ) (c ω + (1 - c) own)`` (Ruder §3.3)."""
    own = np.asarray(own, np.float32)
    c = np.asarray(target.weights, np.float32)[..., None]
    carried = c * np.asarray(target.warped, np.float32) + (1.0 - c) * own
    return BLEND * own + (1.0 - BLEND) * carried


def _result(job: stylize.Stylization) -> batching.ItemResult:
    image, total, terms = job.saved()
    pixels = np.asarray(stylize.saved_pixels(job.state))
    status = driver.status_of(job)
    return batching.ItemResult(image, pixels, total, terms, job.iteration,
                               int(job.state.evaluations), status)


def flicker(outputs: Sequence[np.ndarray], frames: Sequence[np.ndarray],
            preset: str = optical_flow.DEFAULT_PRESET) -> float:
    """Ruder's temporal error of a stylised clip: the mean over consecutive pairs of
    :func:`nst_jax.temporal.temporal_error` (each output frame against the previous one
    warped by the *input's* flow, over the consistent pixels). ``outputs`` are float in
    [0, 1] or uint8."""
    errors = []
    for t in range(1, len(frames)):
        flows = optical_flow.between(frames[t - 1], frames[t], preset)
        weights = temporal.consistency(flows.backward, flows.forward)
        errors.append(float(temporal.temporal_error(_unit(outputs[t]), _unit(outputs[t - 1]),
                                                    flows.backward, weights)))
    return float(np.nanmean(errors)) if errors else float("nan")


def _unit(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    return image.astype(np.float32)


def pan_clip(image: np.ndarray, count: int, shape: tuple[int, int], *, step: float = 2.0,
             square: float = 0.2) -> list[np.ndarray]:
    """A synthetic clip for tests and measurements (nothing downloaded): a ``shape``
    ``(H, W)`` window panning right across ``image`` by ``step`` px per frame, with a
    square (``square`` of the height, a flat colour with a border) moving down and to the
    left through it: global motion, an object, occlusions and disocclusions."""
    from nst_jax.images import resize_to

    height, width = shape
    image = np.asarray(image, np.float32)
    need_w = width + int(np.ceil(step * (count - 1))) + 2
    scale = max(height / image.shape[0], need_w / image.shape[1])
    canvas = resize_to(image, (int(np.ceil(image.shape[0] * scale)),
                               int(np.ceil(image.shape[1] * scale))))
    side = max(4, int(square * height))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    out = []
    for t in range(count):
        shift = step * t
        left = int(np.floor(shift))
        frac = shift - left
        window = ((1 - frac) * canvas[:height, left:left + width]
                  + frac * canvas[:height, left + 1:left + 1 + width])
        cy = height * 0.2 + 1.5 * step * t
        cx = width * 0.7 - 2.0 * step * t
        inside = (np.abs(ys - cy) <= side / 2) & (np.abs(xs - cx) <= side / 2)
        border = inside & ~((np.abs(ys - cy) <= side / 2 - 2) & (np.abs(xs - cx) <= side / 2 - 2))
        frame = window.copy()
        frame[inside] = (0.9, 0.3, 0.2)
        frame[border] = (0.1, 0.1, 0.4)
        out.append(np.clip(frame, 0.0, 1.0).astype(np.float32))
    return out
