"""The subprocess protocol: every case runs in a fresh Python process.

So compile times are cold, peak memory (RSS on CPU, the device's peak on an accelerator)
belongs to that case alone, and one case running out of memory does not end the benchmark.

``python -m nst_jax.apps.benchmark.worker KIND JSON-KWARGS`` runs the worker function of the
case kind ``KIND`` (:data:`nst_jax.apps.benchmark.cases.CASES`) with those keywords and
prints its result as one line, after :data:`RESULT_PREFIX`; :func:`run_in_subprocess` is
the other end.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Sequence

from nst_jax.errors import NSTError

RESULT_PREFIX = "BENCH-RESULT "


def worker(argv: Sequence[str]) -> int:
    """``python -m nst_jax.apps.benchmark.worker KIND JSON-KWARGS``: run one case, print its result as one line."""
    # Here, not at the top: the case modules import this one (for run_in_subprocess).
    from nst_jax.apps.benchmark.cases import CASES

    kind, kwargs = argv[0], json.loads(argv[1])
    try:
        result = CASES[kind](**kwargs)
    except NSTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def run_in_subprocess(kind: str, timeout: float | None = None, **kwargs) -> dict:
    """Run one case in a fresh Python process; ``{"error": ...}`` if it failed (e.g. out of memory)."""
    command = [sys.executable, "-m", "nst_jax.apps.benchmark.worker", kind, json.dumps(kwargs)]
    # Compile times are cold: the compilation cache this process's runner turned on
    # (nst_jax.apps.common.compile_cache) is not the workers'; the start-up case sets its own.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**kwargs, "error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if done.returncode < 0:
        tail = f"killed by signal {-done.returncode} (out of memory?)"
    return {**kwargs, "error": tail}


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
