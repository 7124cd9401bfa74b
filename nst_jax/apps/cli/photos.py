"""Many photos with ``scripts/stylize.py``: ``--content`` given a folder or several files.

``stylize.py`` dispatches here (:func:`many`) when ``--content`` names a folder or more than
one file (``--content photos/``, ``--content a.jpg b.jpg``, ``--content photos/*.jpg``); one
file is the single-image mode, unchanged. The photos are stylised by
:class:`nst_jax.photos.PhotoRun`: grouped by shape at ``--size``, each group in compiled,
vmapped batches of ``--batch-size`` photos (0: as many as the memory model allows).

``--output`` then names a folder (default ``stylized/``, made when the first photo is
written; its parent must exist): one file per photo named after it, ``<stem>.png`` (or
``--output-format tif``), each written atomically as soon as its batch ends, with the
metadata of a single run (the settings with the photo as ``content``, the weights, the
status, the eq. 7 loss of the pixels written) and the photo's path (``nst_jax:source``).
Everything that can be refused is refused before any work: what a batch cannot do (content
masks, ``--start-size``, ``--tile-size N``, ``--normalize-network``), what keeps one run's
state (``--save-every``, ``--checkpoint*``, ``--resume``), an ``--output`` that is a file,
two photos of one name, an output that would replace an input. Ctrl-C keeps the photos
written, drops the batch under way and exits 130 with one line saying how many were written.

This module is a helper of :mod:`nst_jax.apps.cli.stylize` (no ``main``: not a tool).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from nst_jax import driver, files, images, photos as batches, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import (ArgumentParser, ConfigFlags, UsageError, file_path,
                                       refuse_replacing_inputs)
from nst_jax.apps.common.outputs import png_metadata
from nst_jax.apps.common.progress import LoopProgress
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import FIELDS, GROUPS
from nst_jax.errors import NSTError

DEFAULT_FOLDER = "stylized"
OUTPUT_FORMATS = ("png", "tif", "tiff")


class _OneOrMore(argparse.Action):
    """``--content FILE [FILE ...]``: one value is stored as it is (the single-image mode's
    ``str``, what ``Config.content`` takes), several as a tuple."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values[0] if len(values) == 1 else tuple(values))


def add_content_flag(parser: ArgumentParser, flags: ConfigFlags) -> None:
    """``--content`` taking one file (one image), several files or a folder (many photos),
    in the images group, set by ``flags`` like the other fields (``flags`` was made
    without it: :class:`ConfigFlags` makes one-value flags)."""
    meta = FIELDS["content"].metadata
    group = next((g for g in getattr(parser, "_action_groups", ())
                  if g.title == GROUPS[meta["group"]]), parser)
    group.add_argument("--content", dest="content", nargs="+", action=_OneOrMore,
                       type=file_path, default=None, metavar="FILE",
                       help=f"{meta['help']}; a folder or several files: many photos, in "
                            f"batches, into the --output folder (see docs/usage.md) (default: "
                            f"{meta['shown_default']})")
    flags.flags = {"content": "--content", **flags.flags}  # first, as Config's field


def add_flags(parser: ArgumentParser) -> None:
    """The flags of many photos only."""
    group = parser.add_argument_group("many photos (--content DIR, or several files)")
    group.add_argument("--batch-size", type=int, default=None, metavar="N",
                       help="photos per compiled call; 0: as many as fit in memory (the model "
                            "of --tile-size auto) (default: 0)")
    group.add_argument("--output-format", choices=OUTPUT_FORMATS, default=None,
                       help="format of each photo's file in the --output folder: png, or "
                            "tif/tiff (needs the tifffile package) (default: png)")


def many(args) -> bool:
    """Whether ``--content`` asks for many photos: several paths, or one folder."""
    if isinstance(args.content, tuple):
        return True
    return args.content is not None and os.path.isdir(os.path.expanduser(args.content))


def check_one(args) -> None:
    """Refuse the flags of many photos in the single-image mode."""
    for flag, value in (("--batch-size", args.batch_size), ("--output-format", args.output_format)):
        if value is not None:
            raise UsageError(f"{flag} is for many photos (--content DIR, or several files); "
                             f"drop it, or choose the format by --output's suffix")


def _refuse_single_run_flags(args) -> None:
    if args.save_every:
        raise UsageError("--save-every snapshots one image; with many photos drop it (each "
                         "photo is written as its batch ends)")
    for flag, given in (("--checkpoint-every", args.checkpoint_every),
                        ("--checkpoint", args.checkpoint), ("--resume", args.resume)):
        if given:
            raise UsageError(f"{flag} keeps one run's state; with many photos drop it (each "
                             "photo is written as its batch ends)")
    if args.coarse_iterations is not None:
        raise UsageError("--coarse-iterations belongs to --start-size (coarse to fine), which "
                         "a batch of photos does not do: drop it")
    if args.batch_size is not None and args.batch_size < 0:
        raise UsageError(f"--batch-size must be >= 0, got {args.batch_size}")


def output_folder(args) -> pathlib.Path:
    """``--output`` as the folder of many photos; :class:`UsageError` for a file, or a
    folder whose parent is missing or cannot be written."""
    folder = pathlib.Path(args.output or DEFAULT_FOLDER).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder} is a file; with many photos --output names the "
                         "folder their files go to")
    if not folder.exists() and folder.suffix.lower() in images.OUTPUT_FORMATS:
        raise UsageError(f"--output {folder}: with many photos --output names the folder their "
                         f"files go to, not a file; e.g. --output {folder.with_suffix('')}")
    try:
        files.check_writable_folder(folder if folder.exists() else folder.parent, folder)
    except NSTError as e:  # named by the flag
        raise UsageError(f"--output: {e}") from None
    return folder


def output_paths(folder: pathlib.Path, paths, suffix: str) -> dict[pathlib.Path, pathlib.Path]:
    """``{photo: folder/<stem><suffix>}``; :class:`UsageError` for two photos of one name
    or a name too long for the file system."""
    out, by_name = {}, {}
    for path in paths:
        target = folder / f"{path.stem}{suffix}"
        if target.name in by_name:
            raise UsageError(f"--content: {by_name[target.name]} and {path} would both be written "
                             f"to {target}; rename one of them")
        problem = files.name_too_long(target)
        if problem is not None:
            raise UsageError(f"--output: the result of {path} would be "
                             f"{files.shorten_path(target)}: {problem}; shorten the folder's or "
                             "the photo's name")
        by_name[target.name] = path
        out[path] = target
    return out


def run(args, flags: ConfigFlags) -> int:
    """Many photos: see the module docstring."""
    _refuse_single_run_flags(args)
    given = args.content if isinstance(args.content, tuple) else (args.content,)
    # the settings every photo shares; each photo's file records itself as the content
    config = flags.config(argparse.Namespace(**{**vars(args), "content": None}))
    batches.check(config)
    suffix = "." + (args.output_format or "png")
    folder = output_folder(args)
    paths = batches.list_photos(given)
    outputs = output_paths(folder, paths, suffix)
    # TIFF's package and the folder, before any work (the folder may not exist yet)
    where = folder if folder.is_dir() else folder.parent
    images.check_output_path(where / outputs[paths[0]].name)
    inputs = [item for item in flags.input_files(config) if item[0] != "--content"]
    refuse_replacing_inputs(list(outputs.values()), inputs + [("--content", str(p)) for p in paths],
                            "--output", "a photo's result")
    log = runner.logger(args.quiet)
    bits = args.bit_depth
    arguments = {**flags.given(args), "output": str(folder), "batch_size": args.batch_size or 0,
                 "output_format": suffix[1:]}

    runner.phase("reading the photos", "nothing was written")
    scanned = batches.scan(paths, config, on_read=lambda done, count: runner.check_interrupt())
    runner.phase("reading the style images")
    first = batches.read(scanned[0].path, config)
    loaded = stylize.load_inputs(config, content=first)
    runner.phase("loading the weights")
    network = stylize.load_network(config, first, loaded.styles, log=log)
    written: list[pathlib.Path] = []

    def save(photo: batches.Photo, result) -> None:
        target = outputs[photo.path]
        folder.mkdir(exist_ok=True)
        meta = png_metadata(config.replace(content=str(photo.path)), arguments, network.info, {
            "source": str(photo.path), "status": result.status,
            "iterations_done": result.iterations, "evaluations": result.evaluations,
            "loss_total": result.total, "loss_content": result.terms.content,
            "loss_style": result.terms.style, "loss_tv": result.terms.tv, "bit_depth": bits})
        images.save_image(target, result.image, meta, bits=bits)
        written.append(target)
        runner.phase("stylizing", f"{len(written)} photo(s) were written to {folder}", check=False)

    job = batches.PhotoRun(config, network, scanned, loaded.styles, style_masks=loaded.style_masks,
                           init_image=loaded.init, batch_size=args.batch_size or None,
                           chunk=driver.CHUNK, bits=bits, on_photo=save, stop=runner.stop_token())
    log(f"{job.describe()}; style {', '.join(config.style)}, {config.iterations} iterations of "
        f"{config.optimizer}, alpha/beta = {config.alpha / config.beta:.3g}")
    runner.phase("compiling")
    began = time.monotonic()
    with LoopProgress("stylizing", len(scanned), "group {group} photos {done} {rate} photos/h",
                      unit="photo", quiet=args.quiet) as bar:
        for at in job:
            hours = at.seconds / 3600.0
            rate = f"{at.done / hours:.0f}" if at.done and hours > 0 else "?"
            height, width = at.shape
            bar.update(at.photos, group=f"{at.group + 1}/{at.groups} ({width}x{height})",
                       done=f"{at.done}/{at.total}", rate=rate)
    seconds = time.monotonic() - began
    for target in written:
        print(f"wrote {target}")
    if job.status != "completed":
        runner.interrupt_handled()
        left = job.total - len(written)
        rest = f"; the {left} others were not (the batch under way was dropped)" if left else ""
        print(f"interrupted: {len(written)} of {job.total} photos were written to {folder}{rest}",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    if job.nonfinite:
        names = ", ".join(p.path.name for p in job.nonfinite[:5])
        more = f" and {len(job.nonfinite) - 5} more" if len(job.nonfinite) > 5 else ""
        print(f"error: the loss became non-finite for {len(job.nonfinite)} of {job.total} photos "
              f"({names}{more}); their best images so far were written to {folder}",
              file=sys.stderr)
        return ExitCode.NONFINITE
    log(f"{len(written)} photos ({bits}-bit) in {seconds:.1f} s: "
        f"{len(written) / seconds * 3600:.0f} photos/h")
    return ExitCode.OK
