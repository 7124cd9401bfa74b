"""How every command-line tool starts and ends: one wrapper, one set of exit codes.

:func:`launch` installs the Ctrl-C handler *before* importing the tool (so an
interrupt during ``import jax`` is caught too), imports it, runs its ``main``,
and turns what escapes into one ``error:`` line and an exit code:

- :class:`~nst_jax.errors.NSTError` (bad input, including bad flags) -> 2;
- Ctrl-C -> 130, with a line that says what was being done (:func:`phase`) and
  what that left on disk;
- running out of memory -> 1;
- a file name too long for the file system (``ENAMETOOLONG``), wherever a check
  before the run missed it -> 2, in one line, like bad input.

**Ctrl-C is deferred.** Python's default handler raises ``KeyboardInterrupt``
wherever the main thread happens to be, and in a JAX program that is often
inside a callback from C++ (nanobind) — during ``import jax`` that ended in
``terminate called after throwing an instance of 'nanobind::python_error'``
or a segfault — or inside a garbage-collector callback, where Python can only
print and ignore it (a bare ``except:`` in a library swallows it the same way).
So the handler only counts, and sets the stop tokens the tool asked for
(:func:`stop_token`): the run driver (:mod:`nst_jax.driver`) reads its token
after each chunk of iterations and ends the run with the best image so far.
Outside the run the tools raise ``KeyboardInterrupt`` at safe points:
:func:`phase` between steps. A long step (a compilation, an import) finishes
before the tool stops. A third Ctrl-C stops the process at once: the
outputs are written atomically, so that leaves none half-written either (the
temporary files of the writes under way are removed first, and what a tool
registered with :func:`on_exit_now`, such as a checkpoint save under way).

This module imports only the standard library, :mod:`nst_jax.errors` and
:mod:`nst_jax.stop` (which import nothing else): it runs before anything else.
"""
from __future__ import annotations

import enum
import errno
import importlib
import os
import signal
import sys
import threading
from typing import Callable, Sequence

from nst_jax.errors import NSTError, one_line
from nst_jax.stop import INTERRUPTED, Stop

# Ctrl-Cs after which the process stops at once, without waiting for a safe point.
AT_ONCE = 3


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # the machine ran out of something (memory)
    ERROR = 2  # bad input: a file, a flag, the weights
    NONFINITE = 3  # the loss became non-finite; the best image so far was kept
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


# What the third Ctrl-C runs before the process stops (on_exit_now).
_CLEANUPS: list[Callable[[], None]] = []


class _State:
    interrupts = 0  # Ctrl-Cs received
    seen = 0  # of those, the ones raised at a safe point
    doing = "starting"
    outcome = "nothing was written"
    tokens: list[Stop] = []  # set by every Ctrl-C (stop_token)


def _message() -> str:
    return f"error: interrupted while {_State.doing}; {_State.outcome}"


def _on_sigint(signum, frame) -> None:
    _State.interrupts += 1
    if _State.interrupts < AT_ONCE:
        for token in _State.tokens:
            token.set(INTERRUPTED)
    else:
        from nst_jax.files import remove_partial_files  # imported by then: the tool runs

        for cleanup in (remove_partial_files, *_CLEANUPS):
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - best effort: the process stops anyway
                pass
        _exit_now(f"{_message()} (stopped at once after {AT_ONCE} Ctrl-Cs)")


def on_exit_now(cleanup: Callable[[], None]) -> None:
    """Have ``cleanup`` run before a third Ctrl-C stops the process at once, without
    unwinding: it removes the partial files of a write under way that no ``finally`` will
    (best effort, and quick: it runs in the signal handler). Registered once."""
    if cleanup not in _CLEANUPS:
        _CLEANUPS.append(cleanup)


def _exit_now(line: str) -> None:
    """Print ``line`` and end the process now, skipping the interpreter's teardown."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is sys.stderr:
                stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(ExitCode.INTERRUPTED)


def phase(doing: str, outcome: str | None = None, *, check: bool = True) -> None:
    """The previous step is done and the tool now starts ``doing``; ``outcome`` says what
    an interrupt leaves on disk from now on (default: as before).

    A safe point: a Ctrl-C that arrived during the previous step is raised here, and
    reported as "interrupted while <the previous step>; <outcome>" (the outcome is
    already the new one: that step finished, a file it wrote is there). ``check=False``:
    only record the step (inside a run, where the stop token says when to stop).
    """
    if outcome is not None:
        _State.outcome = outcome
    if check:
        check_interrupt()
    _State.doing = doing


def stop_token() -> Stop:
    """A :class:`~nst_jax.stop.Stop` that every Ctrl-C from now on sets (reason
    ``"interrupted"``), for the run driver; set at once if a Ctrl-C is pending. A tool
    that ends its run on it calls :func:`interrupt_handled`."""
    token = Stop()
    _State.tokens.append(token)
    if _State.interrupts > _State.seen:
        token.set(INTERRUPTED)
    return token


def check_interrupt() -> None:
    """A safe point: raise ``KeyboardInterrupt`` if a Ctrl-C arrived since the last one."""
    if _State.interrupts > _State.seen:
        _State.seen = _State.interrupts
        raise KeyboardInterrupt


def interrupt_handled() -> None:
    """The tool caught the ``KeyboardInterrupt`` and deals with it itself."""
    _State.seen = _State.interrupts


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the machine (or the accelerator) running out of memory."""
    text = str(error)
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text or (
        "Out of memory" in text or "out of memory" in text)


def name_too_long(error: BaseException) -> str | None:
    """The one-line message for ``error`` if it is, or was caused by, an ``OSError`` with
    ``ENAMETOOLONG`` (a name over the file system's 255 bytes, a path over 4096); else None.

    The tools check their paths before any work (:func:`nst_jax.files.name_too_long`,
    naming the flag); this is the net under those checks, so that no path the user typed
    ends in a traceback.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:
            name = error.filename
            name = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else ""
            short = name if len(name) <= 40 else f"{name[:28]}...{name[-9:]}"
            which = f" ({short!r}, {len(os.fsencode(name))} bytes)" if name else ""
            return (f"a file name{which} is too long for the file system, met while "
                    f"{_State.doing}; names may have 255 bytes on most file systems, paths "
                    f"4096: shorten it")
        error = error.__cause__ or error.__context__
    return None


def logger(quiet: bool) -> Callable[[str], None]:
    """A tool's messages: one line each on stderr, or nothing when ``quiet``."""
    return (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))


def guarded(main: Callable[[], int]) -> int:
    """``main()`` with the exits described in the module docstring."""
    try:
        code = int(main())
        check_interrupt()  # a Ctrl-C in the last moments still counts
        return code
    except KeyboardInterrupt:
        print(_message(), file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:  # stdout closed early (| head): nothing to say, nowhere to say it
        return ExitCode.FAILED
    except Exception as e:  # noqa: BLE001 - sorted below: ours, memory, or a bug
        if _State.interrupts > _State.seen:  # e.g. pip, interrupted too, failed the download
            print(_message(), file=sys.stderr)
            return ExitCode.INTERRUPTED
        if isinstance(e, NSTError):
            print(f"error: {one_line(e)}", file=sys.stderr)
            return ExitCode.ERROR
        too_long = name_too_long(e)
        if too_long is not None:
            print(f"error: {too_long}", file=sys.stderr)
            return ExitCode.ERROR
        if out_of_memory(e):
            print(f"error: out of memory while {_State.doing}; try a smaller --size "
                  f"({one_line(e)[:200]})", file=sys.stderr)
            return ExitCode.FAILED
        raise  # a bug: keep the traceback


def launch(module: str, argv: Sequence[str] | None = None) -> int:
    """Run the tool ``module`` (a module with ``main(argv) -> int``) under :func:`guarded`,
    with Ctrl-C deferred (see the module docstring) from before its import."""

    def main() -> int:
        tool = importlib.import_module(module)
        check_interrupt()
        return tool.main(argv)

    _State.interrupts = _State.seen = 0
    _State.doing, _State.outcome = "starting", "nothing was written"
    _State.tokens = []
    if threading.current_thread() is not threading.main_thread():  # signals are the main thread's
        return guarded(main)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        return guarded(main)
    finally:
        signal.signal(signal.SIGINT, previous)


def run_tool(module: str) -> int:
    """:func:`launch` for a process of its own (the scripts and console scripts).

    After a Ctrl-C the process ends at once (``os._exit``) once the line is
    printed: an interrupt may have left XLA in the middle of compiling, and the
    interpreter's teardown then crashed (SIGSEGV seen at exit). Every output is
    complete on disk by then (written atomically).

    JAX's persistent compilation cache is turned on first
    (:mod:`nst_jax.apps.common.compile_cache`): a repeated run does not compile.
    """
    from nst_jax.apps.common import compile_cache  # standard library only

    compile_cache.enable()
    code = launch(module)
    if code == ExitCode.INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(int(code))
    return code


# Console scripts (pyproject.toml) and scripts/*.py: each runs its tool in this process.
TOOLS = {
    "stylize": "nst_jax.apps.cli.stylize",
    "sweep": "nst_jax.apps.cli.sweep",
    "fetch_weights": "nst_jax.apps.cli.fetch_weights",
    "paper_figures": "nst_jax.apps.figures.paper_figures",
    "control_figures": "nst_jax.apps.figures.control_figures",
    "serve": "nst_jax.apps.web.serve",
    "video": "nst_jax.apps.cli.video",
    "style_distances": "nst_jax.apps.figures.style_distances",
}


def stylize() -> int:
    return run_tool(TOOLS["stylize"])


def sweep() -> int:
    return run_tool(TOOLS["sweep"])


def fetch_weights() -> int:
    return run_tool(TOOLS["fetch_weights"])


def paper_figures() -> int:
    return run_tool(TOOLS["paper_figures"])


def control_figures() -> int:
    return run_tool(TOOLS["control_figures"])


def serve() -> int:
    return run_tool(TOOLS["serve"])


def video() -> int:
    return run_tool(TOOLS["video"])


def style_distances() -> int:
    return run_tool(TOOLS["style_distances"])
