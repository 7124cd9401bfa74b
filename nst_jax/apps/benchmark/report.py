"""The report: the machine line, then every case kind's tables in the registry's order
(:data:`nst_jax.apps.benchmark.cases.KINDS`), and writing the JSON and markdown files."""
from __future__ import annotations

import os
from types import ModuleType
from typing import Iterable

from nst_jax.errors import NSTError


def gb(n) -> str:
    """Bytes as GiB with two decimals; ``-`` for unknown (None)."""
    return f"{n / 2**30:.2f}" if n is not None else "-"


def markdown(results: dict, kinds: Iterable[ModuleType]) -> str:
    """The benchmark's tables (docs/performance.md quotes them): each kind's
    ``markdown(results)`` in turn. Without a speed case, only the kinds whose tables stand
    alone (``STANDALONE``) are shown, the first one's leading blank line dropped (so a
    report that starts with another standalone table keeps the empty line it always had)."""
    kinds = list(kinds)
    m = results["machine"]
    peak = results["matmul"]["peak_gflops"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']} ({m['device']}), "
             f"jax {m['jax']}; float32 matmul peak {peak:.0f} GFLOP/s "
             f"(best of jnp.dot and NumPy, {', '.join(results['matmul']['jax'])} squared).", ""]
    standalone = [kind.markdown(results) for kind in kinds if kind.STANDALONE]
    if not results["speed"] and any(standalone):
        first, *rest = standalone
        return "\n".join(lines + first[1:] + [line for table in rest for line in table]) + "\n"
    for kind in kinds:
        lines += kind.markdown(results)
    return "\n".join(lines) + "\n"


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically; :class:`NSTError` if it cannot."""
    from nst_jax.files import atomic_write

    try:
        with atomic_write(path) as tmp:
            tmp.write_text(text)
    except OSError as e:
        raise NSTError(f"cannot write {path}: {e.strerror or e}") from None


def check_writable(path: str) -> None:
    """:class:`NSTError` now, not after an hour of benchmarking, if ``path`` cannot be written."""
    from nst_jax.files import check_writable_folder

    check_writable_folder(os.path.dirname(os.path.abspath(path)), path)
