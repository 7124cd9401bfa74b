"""``python scripts/video.py`` / ``nst-video``: a clip stylised with temporal consistency.

``--content`` names the clip: a video file (decoded by PyAV) or a folder of frames;
``--fps``, ``--start``, ``--duration`` and ``--every`` take part of it. Every
:class:`~nst_jax.config.Config` flag applies to each frame, except those of one image
(content masks) and coarse to fine. The frames run in a schedule of
:mod:`nst_jax.video` (sequential, multi-pass or independent), with Ruder et al.'s temporal
term weighted by ``--temporal-weight``. The result is an H.264 mp4 (audio copied from the
input) and, with ``--frames DIR``, one PNG per frame with the settings in its metadata.

The work folder (``--work``, default OUTPUT with ``.work`` for its suffix) is the
checkpoint: each finished frame (sequential, independent) or pass (multi-pass) is written
there atomically, with the settings in ``run.json``. Ctrl-C keeps it and ``--resume``
continues; a finished run removes it. No output file is written until every frame is done.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import sys
import time
from typing import Sequence

import numpy as np

from nst_jax import colors, files, frames as clips, images, stylize, video
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import (ArgumentParser, ConfigFlags, UsageError, file_path,
                                       parse_and_run, refuse_replacing_inputs)
from nst_jax.apps.common.outputs import png_metadata
from nst_jax.apps.common.progress import LoopProgress
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import FIELDS as CONFIG_FIELDS

DEFAULT_OUTPUT = "stylized.mp4"
# A frame's Config fields: all but those of one image and coarse to fine.
NOT_FOR_VIDEO = ("content_masks", "start_size", "coarse_iterations")
CHUNK = 10
MAX_FRAMES = 2000
WORK_VERSION = 1


def build_parser() -> tuple[ArgumentParser, ConfigFlags]:
    parser = ArgumentParser(
        prog="video",
        description="Stylise a video clip with Gatys et al.'s style transfer per frame and Ruder, "
                    "Dosovitskiy & Brox's temporal consistency (optical flow, occlusion masks, a "
                    "temporal loss, each frame started from the warped previous result). "
                    "--content names the clip (a video file or a folder of frames). "
                    "See docs/video.md.")
    flags = ConfigFlags(parser, fields=[f for f in CONFIG_FIELDS if f not in NOT_FOR_VIDEO]
                        + ["ratio"])
    clip = parser.add_argument_group("the clip")
    clip.add_argument("--fps", type=float, default=None,
                      help="frames per second to take (default: the clip's own rate)")
    clip.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                      help="where to begin in the clip (default: 0)")
    clip.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="how much of the clip to take (default: to its end)")
    clip.add_argument("--every", type=int, default=1, metavar="N",
                      help="keep every N-th frame of those taken (default: 1)")
    clip.add_argument("--max-frames", type=int, default=MAX_FRAMES, metavar="N",
                      help=f"refuse a selection of more frames than this (default: {MAX_FRAMES})")
    clip.add_argument("--folder-fps", type=float, default=24.0,
                      help="the frame rate of a folder of frames (default: 24)")
    temporal = parser.add_argument_group("temporal consistency")
    temporal.add_argument("--schedule", choices=video.SCHEDULES, default="sequential",
                          help="sequential: frame after frame, as Ruder et al.; multipass: every "
                               "frame in one vmapped batch, passes in alternating directions; "
                               "independent: frames as separate photos, no temporal term (the "
                               "flickering baseline) (default: sequential)")
    temporal.add_argument("--temporal-weight", type=float, default=video.DEFAULT_TEMPORAL_WEIGHT,
                          metavar="GAMMA",
                          help="weight of the temporal term; 0 makes the frames independent (the "
                               "independent schedule) "
                               f"(default: {video.DEFAULT_TEMPORAL_WEIGHT:g})")
    temporal.add_argument("--passes", type=int, default=video.DEFAULT_PASSES,
                          help="passes of the multipass schedule: the first runs --iterations, "
                               f"each later one --pass-iterations (default: {video.DEFAULT_PASSES})")
    temporal.add_argument("--pass-iterations", type=int, default=0, metavar="N",
                          help="iterations of each multipass pass after the first (default: 0 = "
                               "a quarter of --iterations)")
    temporal.add_argument("--flow-preset", choices=("ultrafast", "fast", "medium"),
                          default="medium", help="OpenCV DIS optical flow preset (default: medium)")
    temporal.add_argument("--batch-size", type=int, default=0,
                          help="frames per compiled call of the batched schedules (default: 0 = "
                               "as many as fit in memory)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", default=DEFAULT_OUTPUT, type=file_path,
                     help=f"the stylised clip: .mp4, .mov or .mkv (H.264) (default: "
                          f"{DEFAULT_OUTPUT})")
    out.add_argument("--frames", default=None, type=file_path, metavar="DIR",
                     help="also write each stylised frame as DIR/frame_NNNNN.png")
    out.add_argument("--work", default=None, type=file_path, metavar="DIR",
                     help="the work folder, where finished frames wait (default: OUTPUT with "
                          ".work for its suffix)")
    out.add_argument("--resume", action="store_true",
                     help="continue the run saved in the work folder (same settings)")
    out.add_argument("--quiet", action="store_true", help="print only the output path and errors")
    return parser, flags


def main(argv: Sequence[str] | None = None) -> int:
    return parse_and_run(build_parser, run, argv)


def _settings(args) -> video.VideoSettings:
    try:
        return video.VideoSettings(schedule=args.schedule, temporal_weight=args.temporal_weight,
                                   passes=args.passes, later_iterations=args.pass_iterations,
                                   flow_preset=args.flow_preset).resolved()
    except Exception as e:  # NSTError: reworded with the flag
        text = str(e)
        for flag, words in (("--temporal-weight", "temporal weight"), ("--passes", "passes"),
                            ("--pass-iterations", "later pass"), ("--flow-preset", "flow preset")):
            if words in text:
                raise UsageError(f"{flag}: {text}") from None
        raise


def run(args, flags: ConfigFlags) -> int:
    if args.content is None:
        raise UsageError("--content: name the clip to stylise (a video file or a folder of frames)")
    if not np.isfinite(args.start) or args.start < 0:
        raise UsageError(f"--start must be a number of seconds >= 0, got {args.start:g}")
    if args.batch_size < 0:
        raise UsageError(f"--batch-size must be >= 0, got {args.batch_size}")
    config = flags.config(args)
    settings = _settings(args)
    video.check(config)
    output = pathlib.Path(args.output)
    if output.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise UsageError(f"--output must end in .mp4, .mov or .mkv, got {output.name!r}")
    files.check_writable_folder(output.parent if str(output.parent) else ".", output)
    work = pathlib.Path(args.work) if args.work else output.with_suffix(".work")
    frames_dir = pathlib.Path(args.frames) if args.frames else None
    refuse_replacing_inputs([output] + ([frames_dir] if frames_dir else []),
                            flags.input_files(config), "--output", "the clip")
    if args.resume and not (work / "run.json").exists():
        raise UsageError(f"--resume: there is no saved run in {work}")
    if not args.resume and work.exists():
        raise UsageError(f"{work} holds an earlier run: continue it with --resume, or remove it")
    log = runner.logger(args.quiet)
    unchanged = (f"the existing {output} is unchanged" if output.exists()
                 else f"{output} was not written")

    runner.phase("reading the clip", unchanged)
    clip = clips.read(config.content, long_side=config.size, fps=args.fps, start=args.start,
                      duration=args.duration, every=args.every, max_frames=args.max_frames,
                      folder_fps=args.folder_fps)
    runner.phase("reading the style images")
    loaded = stylize.load_inputs(config, content=clip.frames[0])
    runner.phase("loading the weights")
    network = stylize.load_network(config, clip.frames[0], loaded.styles, log=log)
    fingerprint = _fingerprint(config, settings, clip, args)
    state = Work(work, fingerprint, settings.schedule, len(clip.frames))
    resume = state.open(args.resume)
    height, width = clip.frames[0].shape[:2]
    log(f"clip {config.content}: {len(clip.frames)} frames of {width}x{height} at "
        f"{clip.fps:.3g} fps; {settings.schedule} schedule, temporal weight "
        f"{settings.temporal_weight:g}, {config.iterations} iterations a frame")
    if resume is not None:
        log(f"resuming from {work}: {state.describe(resume)}")

    runner.phase("compiling")
    per_pass = settings.iterations_per_pass(config)
    total = len(clip.frames) * sum(per_pass)
    began = time.monotonic()
    vrun = video.VideoRun(config, network, clip.frames, loaded.styles, settings,
                          style_masks=loaded.style_masks, chunk=CHUNK, stop=runner.stop_token(),
                          resume=resume, batch_size=args.batch_size or None,
                          init_image=loaded.init, on_frame=state.save_frame,
                          on_pass=state.save_pass)
    with LoopProgress("stylizing", total, "frame {frame} pass {pass_} iteration {it} "
                      "{fph} frames/h", quiet=args.quiet) as bar:
        first = None
        for at in vrun:
            first = at.step if first is None else first
            hours = (time.monotonic() - began) / 3600.0
            frames_done = (at.step - first) / (total / len(clip.frames))
            fph = f"{frames_done / hours:.0f}" if at.step > first and hours > 0 else "?"
            shown = (f"{at.frame + 1}" if at.at_once == 1
                     else f"{at.frame + 1}-{at.frame + at.at_once}")
            bar.update(at.step, frame=f"{shown}/{at.frames}", pass_=f"{at.pass_}/{at.passes}",
                       it=f"{at.iteration}/{at.iterations}", fph=fph)
    status = vrun.status
    log(f"optical flow: {vrun.flows.seconds:.2f} s")
    if status == "nonfinite":
        print(f"error: the loss became non-finite; {state.kept()} {unchanged}", file=sys.stderr)
        return ExitCode.NONFINITE
    if status != "completed":
        runner.interrupt_handled()
        print(f"interrupted; {state.kept()}; --resume continues. {unchanged[0].upper()}"
              f"{unchanged[1:]}", file=sys.stderr)
        return ExitCode.INTERRUPTED

    runner.phase("writing the clip", unchanged)
    finished = state.finished_images(clip.frames, config.preserve_colors)
    clips.write_video(output, finished, clip.fps,
                      audio_from=config.content if clip.has_audio else None,
                      start=args.start, duration=args.duration)  # the whole track: copied
    if frames_dir is not None:
        runner.phase("writing the frames")
        arguments = {**flags.given(args), "schedule": settings.schedule,
                     "temporal_weight": settings.temporal_weight, "passes": settings.passes}
        frames_dir.mkdir(parents=True, exist_ok=True)
        for t, image in enumerate(finished):
            images.save_png(frames_dir / clips.frame_name(t + 1), image, png_metadata(
                config, arguments, network.info,
                {"clip": config.content, "frame": t + 1, "frames": len(finished),
                 "time": f"{clip.times[t]:.6g}", "fps": f"{clip.fps:.6g}"}))
    runner.phase("finishing", f"{output} was written")
    state.remove()
    log(f"{len(finished)} frames in {time.monotonic() - began:.0f} s")
    print(f"wrote {output}")
    return ExitCode.OK


def _fingerprint(config, settings: video.VideoSettings, clip, args) -> dict:
    """What a resumed run must share with the saved one."""
    first = np.asarray(clip.frames[0])
    return {"config": {k: v for k, v in config.to_dict().items()},
            "video": {"schedule": settings.schedule, "temporal_weight": settings.temporal_weight,
                      "passes": settings.passes, "later_iterations": settings.later_iterations,
                      "flow_preset": settings.flow_preset},
            "clip": {"frames": len(clip.frames), "shape": list(first.shape), "fps": clip.fps,
                     "first_frame_sha1": hashlib.sha1(first.tobytes()).hexdigest()}}


class Work:
    """The work folder: finished frames (sequential, independent) or the last finished
    pass (multi-pass) as 8-bit PNGs of the optimised pixels, and ``run.json``."""

    def __init__(self, path: pathlib.Path, fingerprint: dict, schedule: str, count: int):
        self.path, self.fingerprint, self.schedule, self.count = path, fingerprint, schedule, count
        self.meta_path = path / "run.json"

    def open(self, resume: bool) -> video.Resume | None:
        exists = self.meta_path.exists()
        if resume and not exists:
            raise UsageError(f"--resume: there is no saved run in {self.path}")
        if not resume and self.path.exists():
            raise UsageError(f"{self.path} holds an earlier run: continue it with --resume, or "
                             "remove it")
        if not resume:
            try:
                self.path.mkdir(parents=True)
            except OSError as e:
                raise UsageError(f"cannot make the work folder {self.path}: "
                                 f"{e.strerror or type(e).__name__}") from None
            self._write_meta(0)
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            raise UsageError(f"--resume: {self.meta_path} is damaged; remove {self.path}") from None
        if meta.get("version") != WORK_VERSION or meta.get("fingerprint") != self.fingerprint:
            raise UsageError(f"--resume: {self.path} holds a run with other settings or another "
                             "clip; use the same flags, or remove it")
        done = int(meta.get("done", 0))
        if done == 0:
            return None
        if self.schedule == "multipass":
            return video.Resume(done, [self._read(self.path / f"pass_{done - 1}", t)
                                       for t in range(self.count)])
        previous = [self._read(self.path, done - 1)] if self.schedule == "sequential" else []
        return video.Resume(done, previous)

    def describe(self, resume: video.Resume) -> str:
        if self.schedule == "multipass":
            return f"{resume.next_index} pass(es) done"
        return f"{resume.next_index} of {self.count} frames done"

    def kept(self) -> str:
        try:
            done = int(json.loads(self.meta_path.read_text()).get("done", 0))
        except (OSError, ValueError):
            done = 0
        unit = "pass(es)" if self.schedule == "multipass" else f"of {self.count} frames"
        return f"{done} {unit} done, kept in {self.path}"

    def _write_meta(self, done: int) -> None:
        with files.atomic_write(self.meta_path) as tmp:
            tmp.write_text(json.dumps({"version": WORK_VERSION, "fingerprint": self.fingerprint,
                                       "done": done}, indent=1))

    def _read(self, folder: pathlib.Path, t: int) -> np.ndarray:
        return images.load_image(folder / clips.frame_name(t + 1))

    def _write(self, folder: pathlib.Path, t: int, pixels: np.ndarray) -> None:
        images.save_png(folder / clips.frame_name(t + 1), pixels)

    def save_frame(self, frame: video.Frame) -> None:
        if self.schedule == "multipass":
            return  # its passes are saved whole
        self._write(self.path, frame.index, frame.result.pixels)
        self._write_meta(frame.index + 1)

    def save_pass(self, index: int, results: list) -> None:
        folder = self.path / f"pass_{index}"
        folder.mkdir(exist_ok=True)
        for t, result in enumerate(results):
            self._write(folder, t, result.pixels)
        self._write_meta(index + 1)
        old = self.path / f"pass_{index - 1}"
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)

    def finished_images(self, frames: Sequence[np.ndarray], mode: str) -> list[np.ndarray]:
        folder = self.path
        if self.schedule == "multipass":
            done = int(json.loads(self.meta_path.read_text())["done"])
            folder = self.path / f"pass_{done - 1}"
        return [images.quantize(np.asarray(colors.finish(mode, self._read(folder, t), frames[t])), 8)
                for t in range(self.count)]

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
