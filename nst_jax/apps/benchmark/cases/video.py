"""The video case: temporal consistency measured (``--video-size``). The same synthetic clip
(:func:`nst_jax.video.pan_clip` of the bundled photo: a pan and a moving square, made here,
nothing downloaded) stylised by each schedule of :mod:`nst_jax.video`, each in a process of
its own: independent frames (γ = 0, the flickering baseline), sequential and multi-pass.
Reported side by side: Ruder's temporal error (the flicker), the style and content loss per
frame, frames per hour and the optical flow's share of the time, with ratios to the
independent frames (see docs/video.md)."""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.errors import NSTError

STANDALONE = True
SCHEDULES = ("independent", "sequential", "multipass")


def video_case(schedule: str, size: int, frames: int, iterations: int, temporal_weight: float,
               passes: int, seed: int = 0, images: str | None = None) -> dict:
    """One schedule on the pan clip at ``size`` px (long side), in the worker process:
    wall time (compilation included) and frames per hour, the optical flow's seconds, the
    flicker (:func:`nst_jax.video.flicker`) and the mean eq. 7 terms per frame.
    ``images``: also write frames 1, 2, ... as ``video_<schedule>_<t>.png`` there."""
    from nst_jax import images as image_io, stylize, video
    from nst_jax.config import Config, example_path

    config = Config(size=size, iterations=iterations, seed=seed)
    photo = image_io.load_image(example_path("chelsea.jpg"))
    height = size * 3 // 4
    clip = video.pan_clip(photo, frames, (height, size), step=size / 64)
    style = stylize.load_inputs(config, content=clip[0]).styles
    network = stylize.load_network(config, clip[0], style)
    weight = 0.0 if schedule == "independent" else temporal_weight
    settings = video.VideoSettings(schedule=schedule, temporal_weight=weight, passes=passes)
    done = {}
    load = os.getloadavg()[0]
    start = time.perf_counter()
    run = video.VideoRun(config, network, clip, style, settings,
                         on_frame=lambda f: done.__setitem__(f.index, f.result))
    status = run()
    seconds = time.perf_counter() - start
    if status == "interrupted":
        raise KeyboardInterrupt
    results = [done[t] for t in range(frames)]
    if images:
        for t, r in enumerate(results):
            image_io.save_png(os.path.join(images, f"video_{schedule}_{t + 1:02d}.png"), r.image)
        if schedule == "independent":
            for t, frame in enumerate(clip):
                image_io.save_png(os.path.join(images, f"video_input_{t + 1:02d}.png"), frame)
    return {"schedule": schedule, "size": size, "shape": [height, size], "frames": frames,
            "iterations": iterations, "temporal_weight": weight, "passes": passes,
            "batch_size": run.batch_size, "status": status, "seconds": seconds,
            "frames_per_hour": frames / seconds * 3600.0, "flow_seconds": run.flows.seconds,
            "flicker": video.flicker([r.image for r in results], clip),
            "style": float(np.mean([r.terms.style for r in results])),
            "content": float(np.mean([r.terms.content for r in results])),
            "load_average": [load, os.getloadavg()[0]]}


CASE = video_case


def add_flags(p) -> None:
    p.add_argument("--video-size", type=int, default=0,
                   help="measure temporal consistency on a synthetic clip at this long side, "
                        "px: flicker, style loss and frames per hour of independent frames, the "
                        "sequential and the multi-pass schedule (docs/video.md) (default: 0 = no)")
    p.add_argument("--video-frames", type=int, default=24, help="frames of that clip (default: 24)")
    p.add_argument("--video-iterations", type=int, default=100,
                   help="iterations per frame (multi-pass: over all passes) (default: 100)")
    p.add_argument("--video-weight", type=float, default=None,
                   help="the temporal weight γ (default: nst_jax.video's)")
    p.add_argument("--video-passes", type=int, default=None,
                   help="passes of the multi-pass schedule (default: nst_jax.video's)")
    p.add_argument("--video-images", default=None, metavar="DIR",
                   help="also write each schedule's frames into this folder")


def plan(args) -> dict | None:
    if not args.video_size:
        return None
    from nst_jax import video

    if args.video_size < 32 or args.video_frames < 2 or args.video_iterations < 1:
        raise NSTError("--video-size must be >= 32 px, --video-frames >= 2 and "
                       "--video-iterations >= 1")
    weight = video.DEFAULT_TEMPORAL_WEIGHT if args.video_weight is None else args.video_weight
    passes = video.DEFAULT_PASSES if args.video_passes is None else args.video_passes
    video.VideoSettings(temporal_weight=weight, passes=passes)  # checked before any work
    images = args.video_images
    if images:
        from nst_jax.files import check_writable_folder

        check_writable_folder(images)
        images = os.path.abspath(images)
    return {"size": args.video_size, "frames": args.video_frames,
            "iterations": args.video_iterations, "temporal_weight": weight, "passes": passes,
            "images": images}


def run(results: dict, size: int, frames: int, iterations: int, temporal_weight: float,
        passes: int, images: str | None = None, timeout: float | None = None,
        log: Callable[[str], None] = print, save: Callable[[dict], None] = lambda r: None) -> None:
    """Each schedule of :data:`SCHEDULES` in a process of its own, into ``results["video"]``."""
    results.setdefault("video", [])
    for schedule in SCHEDULES:
        log(f"video at {size} px, {frames} frames, {schedule} ...")
        case = worker.run_in_subprocess("video", timeout=timeout, schedule=schedule, size=size,
                                        frames=frames, iterations=iterations,
                                        temporal_weight=temporal_weight, passes=passes,
                                        images=images)
        results["video"].append(case)
        log(f"  failed: {case['error']}" if "error" in case else
            f"  {case['seconds']:.0f} s, flicker {case['flicker']:.4g}, style {case['style']:.4g}")
        save(results)
    if images and all("error" not in c for c in results["video"][-len(SCHEDULES):]):
        for name in write_strips(images, frames):
            log(f"  wrote {name}")


def write_strips(folder: str, frames: int, shown: int = 6) -> list[str]:
    """Two figures from the frames the cases wrote into ``folder``: ``video_strip.png``,
    the first ``shown`` frames of the input and of each schedule, and
    ``video_flicker.png``, where each output frame differs from the previous output
    carried along the input's flow (``|x_t - ω_t|``, brightened 4x; black where the
    consistency check masks a pixel out): what the flicker measure averages."""
    from nst_jax import flow, images as image_io, temporal
    from nst_jax.apps.common.plots import contact_sheet

    shown = min(shown, frames)
    read = lambda name, t: image_io.load_image(  # noqa: E731
        os.path.join(folder, f"video_{name}_{t + 1:02d}.png"))
    rows = ("input",) + SCHEDULES
    cells = [read(name, t) for name in rows for t in range(shown)]
    labels = [f"frame {t + 1}" for t in range(shown)]
    strip = contact_sheet(cells, len(rows), shown, row_labels=list(rows), col_labels=labels)
    inputs = [read("input", t) for t in range(shown)]
    differences = []
    for name in SCHEDULES:
        outputs = [read(name, t) for t in range(shown)]
        for t in range(1, shown):
            pair = flow.between(inputs[t - 1], inputs[t])
            weights = np.asarray(temporal.consistency(pair.backward, pair.forward))[..., None]
            carried = np.asarray(temporal.warp(outputs[t - 1], pair.backward))
            differences.append(np.clip(4.0 * np.abs(outputs[t] - carried) * weights, 0, 1))
    sheet = contact_sheet(differences, len(SCHEDULES), shown - 1, row_labels=list(SCHEDULES),
                          col_labels=[f"{t} -> {t + 1}" for t in range(1, shown)])
    written = []
    for name, image in (("video_strip.png", strip), ("video_flicker.png", sheet)):
        image_io.save_png(os.path.join(folder, name), image)
        written.append(name)
    return written


def video_markdown(cases: Sequence[dict]) -> list[str]:
    good = [c for c in cases if "error" not in c]
    if not cases:
        return []
    base = next((c for c in good if c["schedule"] == "independent"), None)
    first = good[0] if good else cases[0]
    lines = ["", f"*Temporal consistency on a {first.get('frames', '?')}-frame synthetic pan of "
                 f"the bundled photo at {first.get('size', '?')} px, "
                 f"{first.get('iterations', '?')} iterations per frame (multi-pass: a first "
                 f"pass of those, then {_later(first)}); flicker: Ruder's temporal error of the "
                 "output (mean over frame pairs); ratios to the independent frames.*", "",
             "| schedule | γ | flicker | × independent | style loss / frame | × independent "
             "| content loss / frame | frames/hour | × independent | wall s | flow s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(c, key):
        return f"{c[key] / base[key]:.2f}" if base and base[key] else "-"

    for c in good:
        lines.append(f"| {c['schedule']} | {c['temporal_weight']:g} | {c['flicker']:.4g} | "
                     f"{ratio(c, 'flicker')} | {c['style']:.4g} | {ratio(c, 'style')} | "
                     f"{c['content']:.4g} | {c['frames_per_hour']:.0f} | "
                     f"{ratio(c, 'frames_per_hour')} | {c['seconds']:.0f} | "
                     f"{c['flow_seconds']:.2f} |")
    lines += [f"| {c.get('schedule', '?')} | failed: {c['error']} |" for c in cases
              if "error" in c]
    return lines


def _later(case: dict) -> str:
    passes, iterations = case.get("passes"), case.get("iterations")
    if passes is None or iterations is None:
        return "more passes"
    return f"{passes - 1} passes of {max(1, iterations // 4)}"


def markdown(results: dict) -> list[str]:
    return video_markdown(results.get("video", []))
