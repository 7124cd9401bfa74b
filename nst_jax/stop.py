"""The stop token: the one way to end a run early.

A :class:`Stop` is set by whoever wants the run to end — the command-line runner's
Ctrl-C handler (reason ``"interrupted"``), a web request (``"stopped"``), or any caller
(a thread, a hook) — and read by :mod:`nst_jax.driver` between chunks of iterations,
which then ends the run with the best image so far. Nothing is raised across the
compiled code: the state of the last finished chunk is always kept.

:func:`ctrl_c_sets` connects Python's own Ctrl-C to tokens for a library caller (a
notebook, a script) while runs are under way: the first Ctrl-C sets every token of the
runs under way (nested runs included), a second raises ``KeyboardInterrupt`` as usual. A
program that handles SIGINT itself (the command-line runner) is left alone.

Standard library only: the runner imports it before JAX.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

INTERRUPTED = "interrupted"  # Ctrl-C
STOPPED = "stopped"  # a request (the web page's Stop) or a caller


class Stop:
    """A thread-safe flag with the reason it was first set.

    :meth:`set` takes no lock, so a signal handler may call it while the interrupted
    code is itself inside :meth:`set` (a lock there could deadlock); two threads setting
    it at once may each see their own reason win, which is harmless."""

    def __init__(self):
        self._event = threading.Event()
        self.reason: str | None = None

    def set(self, reason: str = STOPPED) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"Stop({self.reason!r})" if self.is_set() else "Stop()"


class _CtrlC:
    """The tokens Python's Ctrl-C sets, while :func:`ctrl_c_sets` has its handler in place."""

    tokens: list[Stop] = []
    presses = 0


def _on_sigint(signum, frame) -> None:
    _CtrlC.presses += 1
    if _CtrlC.presses > 1:
        raise KeyboardInterrupt
    for token in list(_CtrlC.tokens):
        token.set(INTERRUPTED)


@contextlib.contextmanager
def ctrl_c_sets(stop: Stop) -> Iterator[Stop]:
    """While inside, Ctrl-C sets ``stop`` (reason ``"interrupted"``) instead of raising
    ``KeyboardInterrupt`` in the middle of a compiled call (which would lose the chunk's
    state, donated to it); a second Ctrl-C raises as usual. Only in the main thread, and
    only where SIGINT has Python's default handler (or this module's, for nested runs);
    the default handler is put back when the outermost context ends."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    current = signal.getsignal(signal.SIGINT)
    if current is not _on_sigint:
        if current is not signal.default_int_handler:  # someone else handles Ctrl-C
            yield stop
            return
        _CtrlC.presses = 0
        signal.signal(signal.SIGINT, _on_sigint)
    _CtrlC.tokens.append(stop)
    try:
        yield stop
    finally:
        _CtrlC.tokens.remove(stop)
        if (not _CtrlC.tokens and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is _on_sigint):
            signal.signal(signal.SIGINT, signal.default_int_handler)
