"""Writing a file atomically: readers see the old file or the whole new one, never half."""
from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from typing import Iterator

# Temporary files of the atomic writes under way, for remove_partial_files().
_PARTIAL: set[pathlib.Path] = set()


def fsync_dir(directory: pathlib.Path) -> None:
    """Make a rename in ``directory`` durable; best effort (some systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(dest: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a hidden temporary path beside ``dest`` for the caller to write.

    When the block ends normally the file is fsynced and renamed over ``dest``.
    On any exception, ``KeyboardInterrupt`` included, the temporary file is
    removed and the exception propagates, so ``dest`` is left as it was. The
    file gets the permissions a plain ``open`` would give (0o666 less the
    umask), not ``mkstemp``'s private 0o600. ``OSError`` from creating the file
    propagates for the caller to word.
    """
    dest = pathlib.Path(dest)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.partial")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    _PARTIAL.add(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the rename must not publish unflushed data
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    finally:
        _PARTIAL.discard(tmp)
    fsync_dir(dest.parent)


def remove_partial_files() -> None:
    """Delete the temporary files of the atomic writes under way (before a process
    ends at once, without unwinding: see :mod:`nst_jax.apps.runner`)."""
    for tmp in list(_PARTIAL):
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_writable_folder(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> None:
    """Raise :class:`~nst_jax.errors.NSTError` unless a file can be created in ``folder``.

    It creates and removes a hidden probe file, because ``os.access`` answers yes
    to root for any folder (``/proc`` included), so only trying tells. ``target``
    names the file the caller will write, for the message.
    """
    from nst_jax.errors import NSTError

    folder = pathlib.Path(folder)
    name = target if target is not None else folder
    if not folder.exists():
        raise NSTError(f"cannot write {name}: directory {folder} does not exist; create it first")
    if not folder.is_dir():
        raise NSTError(f"cannot write {name}: {folder} is a file, not a directory")
    probe = folder / f".nst_jax-write-test-{uuid.uuid4().hex[:12]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise NSTError(f"cannot write {name}: cannot create files in {folder} "
                       f"({e.strerror or e})") from None
    with contextlib.suppress(OSError):
        probe.unlink()
