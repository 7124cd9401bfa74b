"""The many-photos case (``--photos N``): photos per hour of one ``stylize.py --content DIR``
(a batch of N photos: :mod:`nst_jax.photos`) against N separate ``stylize.py`` runs and, with
a neural-style-pt checkout (``--photos-peer DIR``, default ``--neural-style-pt``'s), N runs
of it: whole processes, timed from start to exit, side by side in one run, at
``--photos-size`` px.

The N photos are crops of the bundled photos at different places, saved at the size so
that every tool reads the very same pixels and resizes nothing; they share one shape (one
group, one batch where memory allows). nst_jax's compilation cache is a fresh folder of
this case's, as :func:`nst_jax.apps.benchmark.peer.tools` makes it: the batch's first run
compiles (what a user's first folder costs) and its repeated run loads its programs (every
folder after); of the separate runs the first compiles and the others load. The batch's
files are compared with the separate runs' (``pixel_difference``, in 8-bit levels).
"""
from __future__ import annotations

import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark.options import check_sizes
from nst_jax.errors import NSTError

STANDALONE = True
CASE = None  # each run is a process of its own: scripts/stylize.py or neural_style.py
DEFAULT_SIZE = 256
DEFAULT_ITERATIONS = 200  # stylize.py's default
# The bundled photos the crops are taken from, in turn.
SOURCES = ("chelsea.jpg", "fruits.jpg")


def add_flags(p) -> None:
    p.add_argument("--photos", type=int, default=0, metavar="N",
                   help="photos per hour of stylize.py on a folder of N photos (one batch) "
                        "against N separate stylize.py runs, and N runs of neural-style-pt "
                        "with --photos-peer (default: 0 = not run; the issue's measure is 8)")
    p.add_argument("--photos-size", type=int, default=DEFAULT_SIZE, metavar="PX",
                   help=f"long side of the photos for --photos (default: {DEFAULT_SIZE})")
    p.add_argument("--photos-iterations", type=int, default=DEFAULT_ITERATIONS, metavar="N",
                   help=f"iterations of every run of --photos (default: {DEFAULT_ITERATIONS})")
    p.add_argument("--photos-peer", default=None, metavar="DIR",
                   help="a neural-style-pt checkout for --photos (default: --neural-style-pt's; "
                        "without one, nst_jax alone)")


def plan(args) -> dict | None:
    if not args.photos:
        return None
    if args.photos < 0 or args.photos_iterations < 1:
        raise NSTError("--photos must be >= 0 and --photos-iterations >= 1")
    check_sizes([args.photos_size])
    checkout = args.photos_peer or args.neural_style_pt
    if checkout:
        from nst_jax.apps.benchmark import peer
        from nst_jax.apps.benchmark.torch_baseline import require_torch

        peer.check_checkout(checkout)
        require_torch()
    return {"photos": args.photos, "size": args.photos_size,
            "iterations": args.photos_iterations, "checkout": checkout}


def make_photos(folder: str | os.PathLike, count: int, size: int) -> list[pathlib.Path]:
    """``count`` different photos of one shape (``size`` px wide, 3:4), crops of the bundled
    photos (:data:`SOURCES`) at different places, saved as PNG in ``folder``."""
    from nst_jax import images
    from nst_jax.config import example_path

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (max(images.MIN_SIDE, size * 3 // 4), size)
    out = []
    for k in range(count):
        source = images.load_image(example_path(SOURCES[k % len(SOURCES)]))
        height, width = source.shape[:2]
        side = min(height, width * 3 // 4)  # a 3:4 window of 70-100% of the short side
        crop_h = int(side * (1.0 - 0.3 * ((k // len(SOURCES)) % 4) / 3))
        crop_w = crop_h * 4 // 3
        rng = np.random.default_rng(k)
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        crop = images.resize_to(source[top:top + crop_h, left:left + crop_w], shape)
        out.append(images.save_png(folder / f"photo_{k + 1:03d}.png", crop))
    return out


def nst_jax_only(folder: str | os.PathLike):
    """:class:`~nst_jax.apps.benchmark.peer.Tools` of ``stylize.py`` alone, with a
    compilation cache of its own in ``folder`` (as :func:`~nst_jax.apps.benchmark.peer.tools`)."""
    from nst_jax.apps.benchmark import peer

    env = {**os.environ, "NST_JAX_CACHE_DIR": str(pathlib.Path(folder) / "xla-cache")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    return peer.Tools(lambda tool, content, style, size, iterations, output, extra=():
                      peer.nst_jax_command(content, style, size, iterations, output, extra),
                      {"nst_jax": env}, {"nst_jax": None})


def _per_hour(count: int, seconds: float) -> float:
    return count * 3600.0 / seconds if seconds > 0 else float("nan")


def measure(tools, folder: str | os.PathLike, photos: Sequence[pathlib.Path], style: str,
            size: int, iterations: int, peer: bool, timeout: float | None = None,
            log: Callable[[str], None] = print) -> dict:
    """The runs of the case with ``tools`` (:class:`~nst_jax.apps.benchmark.peer.Tools`):
    the batch (``stylize.py --content DIR``) cold, then repeated; each photo by a
    ``stylize.py`` of its own; with ``peer``, each photo by neural-style-pt. Seconds are
    whole processes, start to exit; ``photos_per_hour`` = photos x 3600 / seconds of all."""
    folder = pathlib.Path(folder)
    count, source = len(photos), str(pathlib.Path(photos[0]).parent)
    case = {"size": size, "photos": count, "iterations": iterations}
    batch = {}
    for run in ("first", "repeated"):
        out = folder / f"batch_{run}"
        batch[f"{run}_s"] = tools.run("nst_jax", source, style, size, iterations, str(out),
                                      timeout=timeout)[0]
        log(f"photos: one stylize.py on {count} photos ({run} run): {batch[f'{run}_s']:.1f} s")
    batch["photos_per_hour"] = _per_hour(count, batch["repeated_s"])
    batch["first_photos_per_hour"] = _per_hour(count, batch["first_s"])
    case["batch"] = batch
    sides = [("separate", "nst_jax")] + ([("peer", "peer")] if peer else [])
    for key, tool in sides:
        seconds = []
        for k, photo in enumerate(photos):
            output = str(folder / f"{key}_{pathlib.Path(photo).stem}.png")
            seconds.append(tools.run(tool, str(photo), style, size, iterations, output,
                                     timeout=timeout)[0])
            log(f"photos: {tool} on photo {k + 1}/{count}: {seconds[-1]:.1f} s")
        case[key] = {"seconds": seconds, "total_s": sum(seconds),
                     "photos_per_hour": _per_hour(count, sum(seconds))}
    case["speedup"] = batch["photos_per_hour"] / case["separate"]["photos_per_hour"]
    if peer:
        case["speedup_peer"] = batch["photos_per_hour"] / case["peer"]["photos_per_hour"]
    case["pixel_difference"] = _pixel_difference(folder / "batch_repeated", folder, photos)
    log(f"photos at {size} px: a batch of {count}: {batch['photos_per_hour']:.0f} photos/h, "
        f"{count} separate stylize.py: {case['separate']['photos_per_hour']:.0f} photos/h "
        f"({case['speedup']:.2f}x)")
    return case


def _pixel_difference(batch_folder: pathlib.Path, folder: pathlib.Path, photos) -> float | None:
    """The mean absolute difference, in 8-bit levels, between the pixels the batch wrote
    and those of the separate runs (None: a file is missing). 0 at small sizes and few
    iterations; beyond, XLA's other summation order in a batch and L-BFGS's amplification
    of last-bit differences make the two runs part (both are minima of the same loss)."""
    from PIL import Image

    differences = []
    try:
        for photo in photos:
            stem = pathlib.Path(photo).stem
            with Image.open(batch_folder / f"{stem}.png") as a, \
                    Image.open(folder / f"separate_{stem}.png") as b:
                differences.append(np.mean(np.abs(np.asarray(a, np.float64)
                                                  - np.asarray(b, np.float64))))
    except OSError:
        return None
    return float(np.mean(differences))


def run(results: dict, photos: int, size: int, iterations: int, checkout: str | None = None,
        timeout: float | None = None, log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """:func:`measure` on :func:`make_photos` and the bundled style, into ``results["photos"]``."""
    import tempfile

    from nst_jax import images
    from nst_jax.config import example_path

    results.setdefault("photos", [])
    with tempfile.TemporaryDirectory(prefix="nst_jax-photos-") as folder:
        try:
            if checkout:
                from nst_jax import weights
                from nst_jax.apps.benchmark import peer
                from nst_jax.weight_sources.download import ensure_weights

                params, _ = weights.load_params(ensure_weights(log=lambda m: None))
                tools = peer.tools(checkout, params, folder)
            else:
                tools = nst_jax_only(folder)
            made = make_photos(pathlib.Path(folder) / "photos", photos, size)
            style = str(images.save_png(pathlib.Path(folder) / f"style_{size}.png",
                                        images.load_image(example_path("starry_night.jpg"),
                                                          max_side=size)))
            case = measure(tools, folder, made, style, size, iterations, bool(checkout),
                           timeout=timeout, log=log)
        except NSTError as e:
            case = {"size": size, "photos": photos, "iterations": iterations, "error": str(e)}
            log(f"  failed: {e}")
        results["photos"].append(case)
        save(results)


def photos_markdown(cases: Sequence[dict]) -> list[str]:
    """The table of :func:`run`."""
    if not cases:
        return []
    lines = ["", "Many photos: one `stylize.py --content DIR` (a batch) against a `stylize.py` per "
             "photo and a neural-style-pt per photo, whole processes from start to exit, side by "
             "side; the batch's first run compiles, its repeated run loads the compiled programs; "
             "of the separate runs, the first compiles:", "",
             "| size | photos | iterations | runs | seconds | photos / hour | the repeated batch "
             "is faster by |", "|---|---|---|---|---|---|---|"]
    for c in cases:
        head = f"| {c['size']} | {c['photos']} | {c['iterations']} |"
        if "error" in c:
            lines.append(f"{head} failed: {c['error']} | | | |")
            continue
        b, n = c["batch"], c["photos"]
        difference = c.get("pixel_difference")
        same = ("" if difference is None else
                f" (mean |difference| to the separate runs' pixels: {difference:.2f} levels)")
        lines.append(f"{head} one batch, repeated{same} | {b['repeated_s']:.1f} | "
                     f"{b['photos_per_hour']:.0f} | |")
        lines.append(f"{head} one batch, first run | {b['first_s']:.1f} | "
                     f"{b['first_photos_per_hour']:.0f} | |")
        lines.append(f"{head} {n} x stylize.py | {c['separate']['total_s']:.1f} | "
                     f"{c['separate']['photos_per_hour']:.0f} | {c['speedup']:.2f}x |")
        if "peer" in c:
            lines.append(f"{head} {n} x neural-style-pt | {c['peer']['total_s']:.1f} | "
                         f"{c['peer']['photos_per_hour']:.0f} | {c['speedup_peer']:.2f}x |")
    return lines


def markdown(results: dict) -> list[str]:
    return photos_markdown(results.get("photos", []))
