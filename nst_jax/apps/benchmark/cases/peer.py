"""nst_jax against neural-style-pt (``--neural-style-pt DIR``): ``scripts/stylize.py`` and
the peer as whole processes side by side, at each of ``--peer-sizes``. The runs are the
baseline's (:mod:`nst_jax.apps.benchmark.peer`), in the benchmark's own process: each is a
process already.
"""
from __future__ import annotations

from typing import Callable, Sequence

from nst_jax.apps.benchmark.options import DEFAULT_SIZES, ints
from nst_jax.errors import NSTError

STANDALONE = True
CASE = None  # each run is a process of its own: scripts/stylize.py or neural_style.py


def add_flags(p) -> None:
    from nst_jax.apps.common.flags import SINGLE

    p.add_argument("--neural-style-pt", default=None, metavar="DIR",
                   help="a checkout of ProGamerGov/neural-style-pt: run scripts/stylize.py against "
                        "it, whole processes side by side (needs the bench extra; see "
                        "docs/performance.md)")
    p.add_argument("--peer-sizes", type=ints, default=list(DEFAULT_SIZES),
                   help="sizes for --neural-style-pt, px (default: 128,256,512)")
    p.add_argument("--peer-iterations", type=ints, default=[5, 45],
                   help="SHORT,LONG: iterations of the two runs whose difference gives the cost "
                        "per iteration (default: 5,45; with 5,25 the difference at 128 px is "
                        "2 s, no more than the spread of a process's start-up)")
    p.add_argument("--peer-rounds", type=int, default=2,
                   help="alternating rounds after the cold one (medians; default: 2)")
    p.add_argument("--race-iterations", type=int, default=200,
                   help="iterations of neural-style-pt in the same-loss race (0: skip it)")
    p.add_argument("--race-fractions", type=SINGLE["floats"], default=[0.5, 0.6],
                   help="nst_jax's iterations in the race, as fractions of --race-iterations")
    p.add_argument("--race-repeats", type=int, default=2,
                   help="runs of nst_jax per fraction: the first compiles, the next are "
                        "repeated runs (default: 2)")


def plan(args) -> dict | None:
    if not args.neural_style_pt:
        return None
    from nst_jax.apps.benchmark import peer
    from nst_jax.apps.benchmark.torch_baseline import require_torch

    peer.check_checkout(args.neural_style_pt)
    require_torch()
    sizes = args.peer_sizes
    if (len(args.peer_iterations) != 2 or not 1 <= args.peer_iterations[0]
            < args.peer_iterations[1] or args.peer_rounds < 1 or args.race_iterations < 0
            or args.race_repeats < 1 or not sizes or min(sizes) < 32
            or not args.race_fractions or not all(0 < f <= 10 for f in args.race_fractions)):
        raise NSTError("--peer-iterations must be SHORT,LONG with 1 <= SHORT < LONG, "
                       "--peer-rounds >= 1, --race-iterations >= 0, --race-fractions in (0, 10], "
                       "--race-repeats >= 1 and the sizes >= 32 px")
    return {"checkout": args.neural_style_pt, "sizes": sizes,
            "short": args.peer_iterations[0], "long": args.peer_iterations[1],
            "rounds": args.peer_rounds, "race_iterations": args.race_iterations,
            "race_fractions": list(args.race_fractions), "race_repeats": args.race_repeats}


def run(results: dict, checkout: str, sizes: Sequence[int], short: int, long: int,
        rounds: int, race_iterations: int, race_fractions: Sequence[float],
        race_repeats: int = 2, timeout: float | None = None, log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """``scripts/stylize.py`` against neural-style-pt, whole processes, at each of ``sizes``,
    into ``results["peer"]``: seconds per iteration and start-up
    (:func:`nst_jax.apps.benchmark.peer.compare`), and, when ``race_iterations``, the time
    each takes to the same loss (:func:`nst_jax.apps.benchmark.peer.race`)."""
    import tempfile

    from nst_jax import weights
    from nst_jax.apps.benchmark import peer
    from nst_jax.config import example_path
    from nst_jax.weight_sources.download import ensure_weights

    params, preprocessing = weights.load_params(ensure_weights(log=lambda m: None))
    results.setdefault("peer", [])
    with tempfile.TemporaryDirectory(prefix="nst_jax-peer-") as folder:
        pair = peer.tools(checkout, params, folder)
        for size in sizes:
            content, style, _ = peer.prepared_pair(folder, example_path("chelsea.jpg"),
                                                   example_path("starry_night.jpg"), size)
            try:
                case = peer.compare(pair, folder, size, content, style, short, long, rounds,
                                    timeout=timeout, log=log)
                if race_iterations:
                    case["race"] = peer.race(pair, folder, params, preprocessing, size,
                                             content, style, race_iterations, race_fractions,
                                             repeats=race_repeats, timeout=timeout, log=log)
            except NSTError as e:
                case = {"size": size, "error": str(e)}
                log(f"  failed: {e}")
            results["peer"].append(case)
            save(results)


def peer_markdown(cases: Sequence[dict]) -> list[str]:
    """The tables of :func:`run`."""
    if not cases:
        return []
    lines = ["", "nst_jax (`scripts/stylize.py`) against neural-style-pt, whole processes side by "
             "side, alternating; cost per iteration = (t(long) - t(short)) / (long - short), "
             "start-up = t(short) - short x cost (medians of the rounds; first: the cold run, "
             "nst_jax compiling):", "",
             "| size | nst_jax s / iteration | evaluations / iteration | cores busy | "
             "neural-style-pt s / iteration | cores busy | nst_jax speed-up per iteration | "
             "start-up nst_jax, repeated (first) | start-up neural-style-pt | difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['size']} | failed: {c['error']} |")
            continue
        j, p = c["nst_jax"], c["peer"]
        per = j.get("evaluations_per_iteration")
        lines.append(f"| {c['size']} | {j['s_per_iteration']:.3f} | "
                     f"{'-' if per is None else f'{per:.2f}'} | {j.get('cores_busy', 0):.2f} | "
                     f"{p['s_per_iteration']:.3f} | {p.get('cores_busy', 0):.2f} | "
                     f"{c['ratio']:.2f}x | {j['startup_s']:.1f} s ({j['first_startup_s']:.1f} s) | "
                     f"{p['startup_s']:.1f} s | {c['startup_gap_s']:+.1f} s |")
    races = [c["race"] for c in cases if "race" in c]
    if races:
        lines += ["", "The same loss in less time: both minimise neural-style-pt's objective "
                  "(eq. 7 with `peer.matched_flags`) on the same pixels; wall time from process "
                  "start to exit, each output file scored by the same function; nst_jax's "
                  "repeated run (its first run, compiling that number of iterations, in "
                  "brackets):", "",
                  "| size | neural-style-pt iterations | its time | its loss | nst_jax iterations "
                  "| nst_jax time | time ratio | loss ratio |", "|---|---|---|---|---|---|---|---|"]
        for r in races:
            for run in r["runs"]:
                mark = " **(best)**" if run == r["best"] else ""
                first = run.get("first_seconds", run["seconds"])
                lines.append(f"| {r['size']} | {r['peer']['iterations']} | "
                             f"{r['peer']['seconds']:.1f} s | {r['peer']['loss']:.4g} | "
                             f"{run['iterations']}{mark} | {run['seconds']:.1f} s "
                             f"({first:.1f} s) | {run['time_ratio']:.2f}x "
                             f"({run.get('first_time_ratio', run['time_ratio']):.2f}x) | "
                             f"{run['loss_ratio']:.3f} |")
    return lines


def markdown(results: dict) -> list[str]:
    return peer_markdown(results.get("peer", []))
