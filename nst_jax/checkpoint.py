"""Saving a run's optimiser state, and resuming it bit for bit (orbax-checkpoint).

A checkpoint is a folder kept by orbax's ``CheckpointManager``. Each save writes
a new step folder under a temporary name and renames it when it is complete;
only then is the previous step deleted. A save cut short (Ctrl-C three times,
a crash, ``kill -9``) therefore leaves the previous checkpoint as it was; its
unfinished temporary folder (``<step>.orbax-checkpoint-tmp``) is removed by
:func:`remove_unfinished` (the next run calls it, and :func:`save` does), or at
once by :func:`remove_partial_saves` when the process stops without unwinding.
The folder itself is created by the first save, so a run that fails or stops
before it leaves nothing. orbax keeps one step (the latest): a damaged one has
no earlier one to fall back on. A step holds two items:

- ``state``: the whole :class:`nst_jax.optimize.OptimizeState` (pixels, the
  optimiser's memory and line search, the best image, the trace), restored with
  the same shapes and dtypes, so that a run of 20 iterations equals 10 plus a
  resumed 10, bit for bit;
- ``meta`` (JSON): the run's :func:`fingerprint` and its ``position`` (the
  scale of a coarse-to-fine run, the iteration, the trace's length).

**What must match to resume** (:func:`check_fingerprint`): every field of the
:class:`~nst_jax.config.Config` but ``iterations`` (the last scale's count: a
run may be continued for longer; its trace is then extended), the *contents*
of the image, mask and init files (SHA-256, so a moved file is fine and an
edited one is not), the weights' provenance (their checksum, not their path)
and the nst_jax version. Anything else is refused in one line that says what
differs. Bit-for-bit equality also needs the same jax, XLA and machine, which
are not checked.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import shutil
import sys
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import __version__
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.files import check_writable_folder
from nst_jax.optimize import OptimizeState, Trace

FORMAT = 1
# Fields that may change when resuming: the last scale's iteration count.
RESUMABLE_FIELDS = ("iterations",)
# Fields naming files: compared by their contents, not their paths.
FILE_FIELDS = ("content", "style", "content_masks", "style_masks")
SUFFIX = ".ckpt"
# orbax's name for a step folder being written: <step>.orbax-checkpoint-tmp[-<time>].
UNFINISHED = "*.orbax-checkpoint-tmp*"
# The checkpoint folders a save is writing now, each with whether that save created it
# (for remove_partial_saves, which runs when the process stops at once).
_SAVING: dict[pathlib.Path, bool] = {}


def default_path(output: str | pathlib.Path) -> pathlib.Path:
    """The checkpoint folder of an output PNG: ``out.png`` -> ``out.ckpt``."""
    return pathlib.Path(output).with_suffix(SUFFIX)


def file_digest(path: str | pathlib.Path) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise NSTError(f"cannot read {path}: {e.strerror or e}") from None
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def fingerprint(config: Config, weights_info: Mapping[str, Any]) -> dict:
    """What a checkpoint must share with the run that resumes it (see the module docstring).

    ``weights_info`` is :attr:`nst_jax.stylize.Network.info` (its ``path`` is left out).
    """
    settings = config.to_dict()
    files = {}
    for name in FILE_FIELDS + (("init",) if config.init_is_file else ()):
        value = settings.pop(name)
        if value is not None:
            files[name] = [file_digest(p) for p in ([value] if isinstance(value, str) else value)]
    for name in RESUMABLE_FIELDS + ("weights",):
        settings.pop(name)
    return _jsonable({"nst_jax": __version__, "format": FORMAT, "config": settings,
                      "files": files,
                      "weights": {k: v for k, v in weights_info.items() if k != "path"}})


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, as short phrases (empty when they match)."""
    out = []
    if saved.get("nst_jax") != current.get("nst_jax") or saved.get("format") != current.get("format"):
        out.append(f"it was made by nst_jax {saved.get('nst_jax')} (this is {current['nst_jax']})")
    old, new = saved.get("config", {}), current.get("config", {})
    for name in sorted(set(old) | set(new), key=lambda n: list(new).index(n) if n in new else 99):
        if old.get(name, "absent") != new.get(name, "absent"):
            out.append(f"{name} {_short(new.get(name, 'absent'))} (the checkpoint's: "
                       f"{_short(old.get(name, 'absent'))})")
    old_files, new_files = saved.get("files", {}), current.get("files", {})
    for name in sorted(set(old_files) | set(new_files)):
        if old_files.get(name) != new_files.get(name):
            out.append(f"the {name} file's contents" if name in old_files and name in new_files
                       else f"{name} {'given' if name in new_files else 'not given'}")
    if saved.get("weights") != current.get("weights"):
        out.append("the weights (their checksums differ)")
    return out


def check_fingerprint(saved: Mapping[str, Any], current: Mapping[str, Any],
                      path: str | pathlib.Path) -> None:
    """:class:`NSTError` in one line naming what differs, unless the fingerprints match."""
    found = differences(saved, current)
    if found:
        shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
        raise NSTError(f"the checkpoint in {path} is of another run: {shown}. Resume with its "
                       f"settings, or remove {path} to start over")


def _manager(path: pathlib.Path, *, create: bool):
    import orbax.checkpoint as ocp  # here: only runs that checkpoint pay for the import

    path = path.resolve()  # orbax's array store takes absolute paths only

    # Unfinished saves are removed by remove_unfinished: orbax's own clean-up runs in a
    # thread that nothing waits for, and a process that only reads was gone before it ended.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=1, create=create, cleanup_tmp_directories=False,
        enable_async_checkpointing=False)  # saved when save() returns: a Ctrl-C then exits
    return ocp, ocp.CheckpointManager(path, options=options)


def check_folder(path: str | pathlib.Path) -> pathlib.Path:
    """Check that the checkpoint folder can be written, or created in its parent (before
    the run, not after its first hour), without creating it: the first :func:`save` does,
    so a run that stops before it leaves nothing. :class:`NSTError` in one line if not."""
    path = pathlib.Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise NSTError(f"cannot use {path} as a checkpoint folder: it is a file")
    check_writable_folder(path if path.exists() else path.parent, path)
    return path


def _remove_folders(folders) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def remove_unfinished(path: str | pathlib.Path) -> list[str]:
    """Delete the unfinished saves in ``path`` (orbax's temporary step folders, left by a
    save cut short: a crash, ``kill -9``, three Ctrl-Cs) and ``path`` itself if that
    leaves it empty; the names of the folders removed (none: nothing changed)."""
    path = pathlib.Path(path).expanduser()
    if not path.is_dir():
        return []
    found = sorted(p for p in path.glob(UNFINISHED) if p.is_dir())
    _remove_folders(found)
    if found:
        with contextlib.suppress(OSError):
            path.rmdir()  # only if nothing else is there
    return [p.name for p in found]


def remove_partial_saves() -> None:
    """Delete what the saves under way have written (best effort), and their checkpoint
    folders where a save created them: for a process that stops at once, without
    unwinding (see :mod:`nst_jax.apps.common.runner`). The checkpoints saved before stay."""
    for path, created in list(_SAVING.items()):
        _remove_folders(path.glob(UNFINISHED))
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()


def _closed_loop(unraisable) -> bool:
    return (isinstance(unraisable.exc_value, RuntimeError) and unraisable.object is None
            and str(unraisable.exc_value) == "Event loop is closed")


def _drop_closed_loop_tracebacks() -> None:
    """When one read of a damaged checkpoint fails, orbax closes its event loop while
    TensorStore's other reads still run; each of their callbacks then ends in a
    ``RuntimeError: Event loop is closed`` that Python prints as a traceback
    (``sys.unraisablehook``): up to dozens around the one-line error, some while orbax is
    still failing. Drop those, and only those, from the first read on."""
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop", False):
        return

    def hook(unraisable) -> None:
        if not _closed_loop(unraisable):
            previous(unraisable)

    hook.drops_closed_loop = True
    sys.unraisablehook = hook


def _unreadable(error: Exception, path: pathlib.Path, step: int | None) -> Exception:
    """The error to raise for a checkpoint orbax could not read: ``error`` itself when the
    machine ran out of memory, else one short line. (TensorStore's own message holds its
    whole JSON spec: some 2,000 characters that tell a user nothing more.)"""
    if isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error):
        return error
    where = f"{path}" if step is None else f"{path} (step {step})"
    if isinstance(error, OSError) and error.strerror:
        return NSTError(f"cannot read the checkpoint in {where}: {error.strerror}")
    return NSTError(f"the checkpoint in {where} is damaged and cannot be read; remove that "
                    "folder to start over")  # path once: it may be long


def read(path: str | pathlib.Path) -> dict | None:
    """The ``meta`` of the latest checkpoint in ``path`` (``fingerprint``, ``position``,
    ``step``), or None if there is none; :class:`NSTError` if it cannot be read."""
    path = pathlib.Path(path).expanduser()
    if not path.is_dir():
        return None
    try:
        step = None
        ocp, manager = _manager(path, create=False)
        _drop_closed_loop_tracebacks()
        with manager:
            step = manager.latest_step()
            if step is None:
                return None
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds; all mean "unreadable"
        raise _unreadable(e, path, step) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NSTError(f"the checkpoint in {path} is not one this nst_jax can read "
                       f"(format {meta.get('format') if isinstance(meta, dict) else '?'})")
    return meta


def save(path: str | pathlib.Path, step: int, state: OptimizeState, fingerprint: Mapping[str, Any],
         position: Mapping[str, Any]) -> bool:
    """Save ``state`` as checkpoint ``step`` (a number that grows along the run), atomically
    (see the module docstring); False, and nothing written, if ``step`` is already saved
    (the state has not moved since). OSError and orbax's errors propagate."""
    path = pathlib.Path(path).expanduser()
    meta = _jsonable({"format": FORMAT, "step": int(step), "fingerprint": dict(fingerprint),
                      "position": {**position, "trace_length": int(state.trace.value.shape[0])}})
    remove_unfinished(path)  # orbax would not write a step over its unfinished folder
    created = not path.exists()
    _SAVING[path] = created
    try:
        ocp, manager = _manager(path, create=True)
        with manager:
            if int(step) in manager.all_steps():
                return False
            manager.save(int(step), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            meta=ocp.args.JsonSave(meta)))
    except BaseException:
        remove_partial_saves()  # a failed first save leaves no folder either
        raise
    finally:
        del _SAVING[path]
    return True


def _with_trace_length(like: OptimizeState, length: int) -> Any:
    """``like`` as abstract arrays (shape, dtype, sharding), its trace ``length`` long."""
    abstract = lambda a, n=None: jax.ShapeDtypeStruct(
        a.shape if n is None else (n,) + a.shape[1:], a.dtype, sharding=a.sharding)
    tree = jax.tree_util.tree_map(abstract, like)
    trace = jax.tree_util.tree_map(lambda a: abstract(a, length), like.trace)
    return tree._replace(trace=trace)


def resize_trace(state: OptimizeState, length: int) -> OptimizeState:
    """``state`` with room for ``length`` iterations in its trace: cut (only the unused
    end), or extended as :func:`nst_jax.optimize.init` starts it (NaN, -1)."""
    have = state.trace.value.shape[0]
    if length == have:
        return state
    if length < int(state.iteration):
        raise NSTError(f"the checkpoint has done {int(state.iteration)} iterations of this scale; "
                       f"it cannot be continued with {length}")

    def fit(a, fill):
        if length < have:
            return a[:length]
        return jnp.concatenate([a, jnp.full((length - have,) + a.shape[1:], fill, a.dtype)])

    trace = Trace(value=fit(state.trace.value, jnp.nan),
                  aux=jax.tree_util.tree_map(lambda a: fit(a, jnp.nan), state.trace.aux),
                  evaluations=fit(state.trace.evaluations, -1))
    return state._replace(trace=trace)


def restore(path: str | pathlib.Path, like: OptimizeState, meta: Mapping[str, Any]
            ) -> OptimizeState:
    """The state of the checkpoint ``meta`` (from :func:`read`) in ``path``, in the structure
    of ``like`` (a freshly prepared state of the same scale) and with ``like``'s trace
    length; :class:`NSTError` if it does not fit."""
    path = pathlib.Path(path).expanduser()
    position = meta["position"]
    if list(position["shape"]) != list(like.pixels.shape):
        raise NSTError(f"the checkpoint in {path} holds an image of shape {position['shape']}, "
                       f"this run's is {list(like.pixels.shape)}")
    target = _with_trace_length(like, int(position["trace_length"]))
    try:
        ocp, manager = _manager(path, create=False)
        _drop_closed_loop_tracebacks()
        with manager:
            state = manager.restore(int(meta["step"]), args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target))).state
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds; all mean "unreadable"
        raise _unreadable(e, path, int(meta["step"])) from None
    # orbax hands back arrays committed to a device; a fresh state's are not, and jit keys
    # its programs on that too: as they are, the restored state would compile the loop
    # again (which stylize.compiled_programs shares with every run of the same shape).
    leaves = [jax.device_put(np.asarray(r)) if not getattr(l, "committed", True) else r
              for r, l in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(like))]
    state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like), leaves)
    return resize_trace(state, like.trace.value.shape[0])


def describe(meta: Mapping[str, Any]) -> str:
    """``'scale 2/3 (362 px), iteration 40'``, or ``'iteration 40'`` for a single scale."""
    position = meta["position"]
    where = (f"scale {position['scale'] + 1}/{position['scales']} ({position['size']} px), "
             if position.get("scales", 1) > 1 else "")
    return f"{where}iteration {position['iteration']}"
