"""Speed cases in bfloat16 (``--bfloat16-sizes``): the first nst_jax backend only, since the
question is speed and final loss. They run in the speed kind's worker (:mod:`.speed`), and
their rows are in its tables.
"""
from __future__ import annotations

from typing import Callable, Sequence

from nst_jax.apps.benchmark.cases import speed
from nst_jax.apps.benchmark.options import check_sizes, ints

STANDALONE = False
CASE = None  # speed.speed_case, with precision="bfloat16"


def add_flags(p) -> None:
    p.add_argument("--bfloat16-sizes", type=ints, default=[],
                   help="also run these sizes with --precision bfloat16 (first nst_jax backend)")


def plan(args) -> dict | None:
    check_sizes(args.bfloat16_sizes)
    if not args.bfloat16_sizes:
        return None
    first = [b for b in speed.backends(args) if b != "torch"][:1]
    return {"sizes": args.bfloat16_sizes, "backends": first,
            "checkpoints": sorted(args.checkpoints), "repeats": args.repeats}


def run(results: dict, sizes: Sequence[int], backends: Sequence[str], checkpoints: Sequence[int],
        repeats: int, timeout: float | None = None, log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    for size in sizes:
        speed.measure(results, size, f", bfloat16, backends {','.join(backends)}", checkpoints,
                      repeats, timeout, log, save, backends=list(backends), precision="bfloat16")


def markdown(results: dict) -> list[str]:
    return []  # in the speed kind's tables
