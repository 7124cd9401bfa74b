"""Many photos in one go: a folder of photos (or several files) stylised as compiled, vmapped
batches, one file per photo.

A style transfer of one photo spends most of a short run starting up and compiling, and a
small image leaves a GPU (or a many-core CPU) mostly idle. Photos resized to one ``--size``
mostly share a shape (the camera's aspect ratio), so they can share one program: each group
of photos of one shape runs as :class:`nst_jax.batch.Batch`, the sweep machinery with the
content as a batched *argument* instead of a constant (each photo has its own targets ``P^l``
of eq. 1, the style's Gram matrices ``A^l`` of eq. 3 are shared), laid out over the devices'
mesh, of every process, as a sweep's grid axis is. Every batch of one shape (the next chunk,
the next folder) reuses the compiled program, so photos after the first chunk cost only
their iterations, and each photo's result is the one a separate run gives.

The pieces:

- :func:`list_photos`: the image files of a folder (:data:`SUFFIXES`, sorted by name,
  hidden files skipped) or of several paths (a folder among them stands for its photos);
- :func:`scan`: each photo read once at ``config.size``, as a single run reads its content
  (:func:`read`), to know its shape: a photo that cannot be read is one error naming it,
  before any work. The pixels are not kept: a folder of thousands of photos would not fit
  in memory, and each chunk reads its photos again (decoding is cheap next to the
  optimisation);
- :func:`group`: the photos by shape, each group in the order given;
- :class:`PhotoRun`: every group in chunks of :func:`nst_jax.batch.fitting_batch_size`
  photos (the memory model of ``--tile-size auto``; a group larger than memory runs in
  several chunks) or of a given batch size, each chunk advanced by
  :func:`nst_jax.driver.advance`. It yields a :class:`Progress` after every chunk of
  iterations and hands each finished photo to a callback, so a caller writes it at once;
  when the stop token is set, the photos finished are kept and the chunk under way is
  dropped.

The style images do not depend on the photos (their sizes come from the config alone:
:func:`nst_jax.inputs.style_sides`), so one :func:`nst_jax.inputs.load_inputs` serves every
group. A batch cannot do what belongs to one image (content masks, tiles, coarse to fine:
:func:`nst_jax.batch.check`) nor share a network normalised on each content image
(``normalize_network``): :func:`check` refuses them.
"""
from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from jax.sharding import Mesh

from nst_jax import batch as batching, driver
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.inputs import Network, load_sized
from nst_jax.stop import Stop
from nst_jax.sweep import default_mesh

# The files of a folder taken as photos (any case).
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


def list_photos(paths: Sequence[str | os.PathLike]) -> list[pathlib.Path]:
    """The photos ``paths`` name: each file as given, each folder's image files
    (:data:`SUFFIXES`, hidden ones skipped, sorted by name); a path named twice is taken once.

    Raises:
      NSTError: a path that does not exist, or no photo at all (an empty folder).
    """
    if not paths:
        raise NSTError("no photos given: name a folder of photos or several image files")
    found, seen = [], set()
    for given in paths:
        path = pathlib.Path(os.path.expanduser(os.fspath(given)))
        if path.is_dir():
            members = sorted(p for p in path.iterdir()
                             if p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
                             and p.is_file())
            if not members:
                raise NSTError(f"the folder {path} holds no photos ({', '.join(SUFFIXES)}; "
                               f"hidden files skipped); give a folder of photos")
        elif not path.exists():
            raise NSTError(f"photo {path} does not exist; check the path")
        else:
            members = [path]  # not an image: read() says so, naming it
        for member in members:
            key = os.path.realpath(member)
            if key not in seen:
                seen.add(key)
                found.append(member)
    return found


def read(path: str | os.PathLike, config: Config) -> np.ndarray:
    """The photo at ``path`` as a run of ``config`` reads its content: RGB float32 in
    [0, 1], ``(H, W, 3)``, its long side ``config.size`` px.

    Raises:
      NSTError: the file cannot be read (the message names it); ConfigError (``size``):
        the photo is too thin for VGG at that size.
    """
    return load_sized(path, config.size, "content", "size",
                      advice="raise it, or leave that photo out")


class Photo(NamedTuple):
    """A photo: its ``path`` and the ``shape`` ``(H, W)`` it is stylised at."""

    path: pathlib.Path
    shape: tuple[int, int]


def scan(paths: Sequence[str | os.PathLike], config: Config,
         on_read: Callable[[int, int], object] | None = None) -> list[Photo]:
    """Each of ``paths`` read (:func:`read`) for its shape; ``on_read(done, count)`` after
    each (a progress line: reading thousands of photos takes a while)."""
    out = []
    for k, path in enumerate(paths):
        out.append(Photo(pathlib.Path(path), tuple(read(path, config).shape[:2])))
        if on_read is not None:
            on_read(k + 1, len(paths))
    return out


class Group(NamedTuple):
    """Photos of one ``shape`` ``(H, W)``, in the order given."""

    shape: tuple[int, int]
    photos: tuple[Photo, ...]


def group(photos: Sequence[Photo]) -> list[Group]:
    """``photos`` by shape: one :class:`Group` per shape, in the order each shape first
    appears, each keeping the photos' order."""
    by_shape: dict[tuple[int, int], list[Photo]] = {}
    for photo in photos:
        by_shape.setdefault(tuple(photo.shape), []).append(photo)
    return [Group(shape, tuple(members)) for shape, members in by_shape.items()]


def check(config: Config) -> None:
    """:class:`NSTError` for what a batch of photos cannot do: what one image owns
    (:func:`nst_jax.batch.check`: content masks, tiles, coarse to fine) and a network
    normalised on each content image."""
    batching.check(config)
    if config.normalize_network:
        raise NSTError("--normalize-network rescales the network on each content image, so the "
                       "photos of a batch cannot share one: drop it, or stylize the photos one "
                       "by one")


class Progress(NamedTuple):
    """Where a :class:`PhotoRun` stands: ``group`` (0-based) of ``groups`` and its
    ``shape``; ``done`` photos finished of ``total``; the chunk under way holds ``running``
    photos and is at ``iteration`` of ``iterations``; ``seconds`` since the start."""

    group: int
    groups: int
    shape: tuple[int, int]
    done: int
    total: int
    running: int
    iteration: int
    iterations: int
    seconds: float

    @property
    def photos(self) -> float:
        """Photos done, counting the chunk under way by its iterations (for a progress bar)."""
        return self.done + self.running * min(1.0, self.iteration / max(1, self.iterations))


class PhotoRun(driver.Jobs):
    """Photos stylised as batches, group by group, chunk by chunk (see the module docstring;
    a :class:`nst_jax.driver.Jobs`): iterate for :class:`Progress`, or call it for the
    status; ``on_photo(photo, result)`` gets each
    :class:`Photo` with its :class:`~nst_jax.batch.ItemResult` as its chunk ends.

    Args:
      config: the settings every photo shares (``config.content`` is not read).
      network: :func:`nst_jax.inputs.load_network`.
      photos: :func:`scan` of the photos.
      styles: the style image(s) (:func:`nst_jax.inputs.load_inputs`); style_masks: one per
        style, or None; init_image: ``config.init``'s pixels when it names a file.
      batch_size: photos per compiled call (rounded up to a multiple of the devices; None:
        as many as fit, :func:`nst_jax.batch.fitting_batch_size`); memory: bytes per device
        for that choice (default: what the machine has).
      chunk: iterations per compiled call.
      bits: the bit depth the results are quantised to (8 or 16).
      stop: ends the run after the current chunk of iterations; the chunk of photos under
        way is dropped (default: a fresh token, which Python's Ctrl-C sets while the run is
        under way).
      mesh: default :func:`nst_jax.sweep.default_mesh`.

    :attr:`sizes` (the photos per call of each group) is settled on construction, so a
    group that cannot fit is refused before any work. After the run, :attr:`status` is
    ``completed`` or the stop's reason, :attr:`done` the photos handed over and
    :attr:`nonfinite` those whose loss became non-finite (handed over too, as a single run
    keeps its best image).
    """

    def __init__(self, config: Config, network: Network, photos: Sequence[Photo],
                 styles: Sequence[np.ndarray], *, style_masks=None,
                 init_image: np.ndarray | None = None, batch_size: int | None = None,
                 memory: float | None = None, chunk: int = driver.CHUNK, bits: int = 8,
                 on_photo: Callable[[Photo, batching.ItemResult], object] | None = None,
                 stop: Stop | None = None, mesh: Mesh | None = None):
        check(config)
        if not photos:
            raise NSTError("no photos to stylize")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.config, self.network, self.styles = config, network, list(styles)
        self.style_masks, self.init_image = style_masks, init_image
        self.chunk, self.bits, self.on_photo = int(chunk), int(bits), on_photo
        self.stop = stop if stop is not None else Stop()
        self.mesh = mesh or default_mesh()
        self.groups = group(photos)
        self.total = len(photos)
        self.sizes = [self._batch_size(g, batch_size, memory) for g in self.groups]
        self.done, self.nonfinite = 0, []
        self.status: str | None = None

    def _batch_size(self, members: Group, asked: int | None, memory: float | None) -> int:
        if asked is None:
            return batching.fitting_batch_size(len(members.photos), members.shape, self.config,
                                               self.network, mesh=self.mesh, memory=memory,
                                               what="photo of this size")
        devices = self.mesh.size
        return -(-min(asked, len(members.photos)) // devices) * devices

    def describe(self) -> str:
        """The plan in words: each group's photos, shape and chunks."""
        parts = []
        for members, size in zip(self.groups, self.sizes):
            count = len(members.photos)
            calls = -(-count // size)
            height, width = members.shape
            how = f"one batch of {size}" if calls == 1 else f"{calls} batches of {size}"
            parts.append(f"{count} of {width}x{height} px ({how})")
        return f"{self.total} photo(s) in {len(self.groups)} group(s): " + "; ".join(parts)

    def _jobs(self) -> Iterator[Progress]:
        yield from self._groups(time.monotonic())

    def _at(self, g: int, iteration: int, running: int, began: float) -> Progress:
        return Progress(g, len(self.groups), self.groups[g].shape, self.done, self.total, running,
                        iteration, self.config.iterations, time.monotonic() - began)

    def _groups(self, began: float) -> Iterator[Progress]:
        config = self.config
        for g, (members, size) in enumerate(zip(self.groups, self.sizes)):
            for begin in range(0, len(members.photos), size):
                if self.stop.is_set():
                    return
                chunk = members.photos[begin:begin + size]
                contents = [read(photo.path, config) for photo in chunk]
                job = batching.Batch(config, self.network, contents, self.styles,
                                     style_masks=self.style_masks, size=size, mesh=self.mesh,
                                     init_image=self.init_image)
                for iteration in driver.advance(job, chunk=self.chunk, stop=self.stop):
                    yield self._at(g, iteration, len(chunk), began)
                if not job.done:  # stopped: this chunk is dropped
                    return
                for photo, result in zip(chunk, job.results(self.bits)):
                    self.done += 1
                    if result.status == "nonfinite":
                        self.nonfinite.append(photo)
                    if self.on_photo is not None:
                        self.on_photo(photo, result)
                job = None  # its device buffers go before the next chunk's are made
                yield self._at(g, 0, 0, began)
