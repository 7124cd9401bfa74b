"""Writing a file atomically: readers see the old file or the whole new one, never half."""
from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from typing import Iterator


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
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # the rename must not publish unflushed data
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(dest.parent)
