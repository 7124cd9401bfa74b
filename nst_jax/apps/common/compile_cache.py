"""JAX's persistent compilation cache for the command-line tools: a second run of the
same shape loads its compiled programs from disk instead of compiling them.

Only the standard library here: :func:`enable` runs before JAX is imported (it sets
JAX's own environment variables, which JAX reads when it starts).

Where: ``$NST_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nst_jax/xla``, else
``~/.cache/nst_jax/xla``. ``NST_JAX_CACHE_DIR=off`` (or empty) turns it off; a
``JAX_COMPILATION_CACHE_DIR`` set by the user wins. The cache is capped at
:data:`MAX_BYTES` (JAX evicts the least recently used entries). A folder that cannot
be created or written leaves the cache off: it is an optimisation, never an error.
JAX needs the ``filelock`` package (a dependency of nst_jax) to keep the cap; without it
the cache runs uncapped rather than failing on every entry with a warning.

The compiled programs do not depend on the images or the weights (they are
arguments, see :class:`nst_jax.losses.Loss`), so every run of the same size,
settings and number of iterations shares them.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib

ENV = "NST_JAX_CACHE_DIR"
OFF = ("", "off", "0", "none")
MAX_BYTES = 2 * 2**30
# Programs that compile faster than this are not worth a file (eager operations' own).
MIN_COMPILE_SECONDS = 0.1


def cache_dir(environ=os.environ) -> pathlib.Path | None:
    """The folder the cache goes in, or None when it is turned off."""
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in OFF else pathlib.Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(pathlib.Path("~/.cache").expanduser())
    return pathlib.Path(base) / "nst_jax" / "xla"


def enable(environ=os.environ) -> pathlib.Path | None:
    """Turn the cache on for JAX in this process (before JAX is imported); the folder used,
    or None (turned off, or not writable)."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return pathlib.Path(environ["JAX_COMPILATION_CACHE_DIR"])
    folder = cache_dir(environ)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):
            return None
    except OSError:
        return None
    environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(MIN_COMPILE_SECONDS))
    environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if importlib.util.find_spec("filelock") is not None:
        environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(MAX_BYTES))
    return folder
