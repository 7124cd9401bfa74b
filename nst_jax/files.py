"""Writing a file atomically: readers see the old file or the whole new one, never half."""
from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import uuid
from typing import Iterable, Iterator

# Temporary files of the atomic writes under way, for remove_partial_files().
_PARTIAL: set[pathlib.Path] = set()


# Where os.pathconf cannot tell: the limits of Linux's common file systems.
NAME_MAX = 255  # bytes in one name (one component of a path)
PATH_MAX = 4096  # bytes in a whole path, its final NUL included


def temporary_path(folder: str | os.PathLike) -> pathlib.Path:
    """A fresh hidden name in ``folder`` for a file being written: ``.nst_jax-<16 hex>.partial``.

    33 bytes whatever the destination is called, so that every name the file system
    allows can be written atomically (a temporary name made longer than its
    destination's would refuse a legal 250-byte name after the whole run).
    :func:`check_writable_folder` probes with the same scheme.
    """
    return pathlib.Path(folder) / f".nst_jax-{uuid.uuid4().hex[:16]}.partial"


def _limits(path: pathlib.Path) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` of the file system that holds ``path``'s nearest existing folder."""
    folder = pathlib.Path(os.path.abspath(path)).parent
    while not os.path.isdir(folder) and folder != folder.parent:
        folder = folder.parent
    limits = []
    for name, default in (("PC_NAME_MAX", NAME_MAX), ("PC_PATH_MAX", PATH_MAX)):
        try:
            limits.append(int(os.pathconf(folder, name)) or default)
        except (OSError, ValueError, AttributeError):  # not asked on this system
            limits.append(default)
    return limits[0], limits[1]


def shorten(text: str, keep: int = 40) -> str:
    """``text`` for a message: whole if short, else its start and end around ``...``."""
    return text if len(text) <= keep else f"{text[:keep - 12]}...{text[-9:]}"


def shorten_path(path: str | os.PathLike, keep: int = 200) -> str:
    """``path`` for a message, each over-long name in it :func:`shorten`-ed, and the whole
    too if it is still longer than ``keep`` characters."""
    parts = pathlib.PurePath(path).parts
    text = str(pathlib.PurePath(*(shorten(part) for part in parts))) if parts else str(path)
    return shorten(text, keep)


def name_too_long(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot name a file on this system because of its length, or None.

    Each name in a path is limited (255 bytes on most file systems, by
    ``os.pathconf``'s ``PC_NAME_MAX`` of the nearest existing folder) and so is the
    whole path (4096 bytes on Linux); past either, every open, stat and mkdir fails
    with ``ENAMETOOLONG``. A path the lengths allow is also asked of the system
    (``lstat``), which knows any stricter limit. The reason names the offending
    name, shortened, and its length in bytes (UTF-8 names take more than a byte a
    character).
    """
    path = pathlib.Path(os.path.expanduser(os.fspath(path)))
    name_max, path_max = _limits(path)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > name_max:
            return (f"the name {shorten(part)!r} is {size} bytes long, more than the {name_max} "
                    f"bytes a name may have on this file system")
    size = len(os.fsencode(str(path)))
    if size >= path_max:
        return (f"the path {shorten_path(path, 80)!r} is {size} bytes long, more than the "
                f"{path_max - 1} bytes a path may have")
    try:
        os.lstat(path)
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return f"the system refuses the path {shorten_path(path, 80)!r} as too long"
    except ValueError:  # a NUL byte: not a length problem
        pass
    return None


def find_clash(outputs: Iterable[str | os.PathLike],
               inputs: Iterable[tuple[str, str | os.PathLike]]
               ) -> tuple[pathlib.Path, str, pathlib.Path] | None:
    """The first ``(output, label, input)`` where writing ``output`` would replace or
    change the input file ``input`` (called ``label`` in messages), or None.

    An output clashes with an input when both are the same path once resolved
    (``.``, ``..``, symbolic links), or when the output exists and is the same file
    (``st_dev`` and ``st_ino``: a hard link, or a symbolic link to it). ``outputs``
    may be long (a sweep's every file): each costs one ``stat``, and each folder one
    ``realpath``.
    """
    by_path: dict[pathlib.Path, tuple[str, pathlib.Path]] = {}
    by_inode: dict[tuple[int, int], tuple[str, pathlib.Path]] = {}
    for label, given in inputs:
        given = pathlib.Path(os.path.expanduser(os.fspath(given)))
        by_path.setdefault(pathlib.Path(os.path.realpath(given)), (label, given))
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(given)
            by_inode.setdefault((st.st_dev, st.st_ino), (label, given))
    folders: dict[pathlib.Path, pathlib.Path] = {}
    for output in outputs:
        output = pathlib.Path(os.path.expanduser(os.fspath(output)))
        if output.parent not in folders:
            folders[output.parent] = pathlib.Path(os.path.realpath(output.parent))
        hit = by_path.get(folders[output.parent] / output.name)
        if hit is None and by_inode:
            with contextlib.suppress(OSError, ValueError):
                st = os.stat(output)
                hit = by_inode.get((st.st_dev, st.st_ino))
        if hit is not None:
            return output, hit[0], hit[1]
    return None


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
    tmp = temporary_path(dest.parent)
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
    ends at once, without unwinding: see :mod:`nst_jax.apps.common.runner`)."""
    for tmp in list(_PARTIAL):
        with contextlib.suppress(OSError):
            tmp.unlink()


def check_writable_folder(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> None:
    """Raise :class:`~nst_jax.errors.NSTError` unless a file can be created in ``folder``.

    It creates and removes a hidden probe file, named as :func:`atomic_write`'s
    temporary files are (:func:`temporary_path`), because ``os.access`` answers yes
    to root for any folder (``/proc`` included), so only trying tells. ``target``
    names the file the caller will write, for the message; a ``target`` whose name is
    too long for the file system (:func:`name_too_long`) is refused too.
    """
    from nst_jax.errors import NSTError

    folder = pathlib.Path(folder)
    name = target if target is not None else folder
    for path in (folder,) if target is None else (folder, target):
        problem = name_too_long(path)
        if problem is not None:
            raise NSTError(f"cannot write {shorten_path(name)}: {problem}; shorten it")
    if not folder.exists():
        raise NSTError(f"cannot write {name}: directory {folder} does not exist; create it first")
    if not folder.is_dir():
        raise NSTError(f"cannot write {name}: {folder} is a file, not a directory")
    probe = temporary_path(folder)
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise NSTError(f"cannot write {name}: cannot create files in {folder} "
                       f"({e.strerror or e})") from None
    with contextlib.suppress(OSError):
        probe.unlink()
