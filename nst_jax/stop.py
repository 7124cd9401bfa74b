"""The stop token: the one way to end a run early.

A :class:`Stop` is set by whoever wants the run to end — the command-line runner's
Ctrl-C handler (reason ``"interrupted"``), a web request (``"stopped"``), or any caller
(a thread, a hook) — and read by :mod:`nst_jax.driver` between chunks of iterations,
which then ends the run with the best image so far. Nothing is raised across the
compiled code: the state of the last finished chunk is always kept.

:func:`ctrl_c_sets` connects Python's own Ctrl-C to a token for a library caller
(a notebook, a script) while a run is under way: the first Ctrl-C sets the token, a
second raises ``KeyboardInterrupt`` as usual. A program that handles SIGINT itself (the
command-line runner) is left alone.

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
    """A thread-safe flag with the reason it was set (the first reason wins)."""

    def __init__(self):
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason: str | None = None

    def set(self, reason: str = STOPPED) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"Stop({self.reason!r})" if self.is_set() else "Stop()"


@contextlib.contextmanager
def ctrl_c_sets(stop: Stop) -> Iterator[Stop]:
    """While inside, the first Ctrl-C sets ``stop`` (reason ``"interrupted"``) instead of
    raising ``KeyboardInterrupt`` in the middle of a compiled call (which would lose the
    chunk's state, donated to it); a second Ctrl-C raises as usual. Only in the main
    thread, and only where SIGINT has Python's default handler."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield stop
        return

    def on_sigint(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set(INTERRUPTED)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
