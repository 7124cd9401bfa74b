"""The start-up case (``--startup-sizes``): what each stage of a ``stylize.py`` start-up
costs, a first run and two repeated ones (JAX's persistent compilation cache filled)."""
from __future__ import annotations

import importlib
import os
import time
from typing import Callable, Sequence

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.options import check_sizes, ints

STANDALONE = True


def startup_case(size: int, cache: str) -> dict:
    """What each stage of a ``stylize.py`` start-up costs, in a fresh process, with JAX's
    persistent compilation cache in the folder ``cache`` (empty: a first run; filled by
    an earlier case: a repeated run). The stages, in seconds: importing JAX and nst_jax,
    reading the images, loading the weights, the targets (the network on the content and
    style), the optimiser's start (compiling or loading it, one evaluation) and the first
    iteration (compiling or loading the loop, the iteration itself); ``cached``: whether
    the cache folder held anything before. Process start-up before this function (the
    interpreter, the benchmark's modules) is not counted: it is the same for every tool."""
    os.environ["NST_JAX_CACHE_DIR"] = cache
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    from nst_jax.apps.common import compile_cache, runner

    cached = os.path.isdir(cache) and any(os.scandir(cache))
    compile_cache.enable()
    stages, began = {}, time.perf_counter()

    def lap(name):
        nonlocal began
        now = time.perf_counter()
        stages[name] = now - began
        began = now

    import jax

    from nst_jax import stylize
    importlib.import_module(runner.TOOLS["stylize"])  # what the command line imports too
    lap("imports")
    config = stylize.Config(size=size, iterations=5)
    inputs = stylize.load_inputs(config)
    lap("images")
    network = stylize.load_network(config, inputs.content, inputs.styles)
    lap("weights")
    loss = stylize.build_loss_fn(network.params, inputs.content, list(inputs.styles),
                                 config.content_layers, config.style_layers, network.module,
                                 network.preprocessing)
    jax.block_until_ready(loss.data)
    lap("targets")
    # prepare() computes the targets again (the same programs): subtract them.
    job = stylize.prepare(inputs.content, list(inputs.styles), network.params, config,
                          module=network.module, preprocessing=network.preprocessing)
    jax.block_until_ready(job.state)
    lap("start")
    stages["start"] -= stages["targets"]
    job.step(1)
    jax.block_until_ready(job.state)
    lap("first iteration")
    return {"size": size, "cached": cached, "stages": stages,
            "total_s": sum(stages.values())}


CASE = startup_case


def add_flags(p) -> None:
    p.add_argument("--startup-sizes", type=ints, default=[],
                   help="time each stage of a first and of a repeated start-up at these sizes")


def plan(args) -> dict | None:
    check_sizes(args.startup_sizes)
    return {"sizes": args.startup_sizes} if args.startup_sizes else None


def run(results: dict, sizes: Sequence[int], timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """A first start-up and two repeated ones at each of ``sizes``, a cache folder per size."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nst_jax-startup-") as folder:
        for size in sizes:
            cache = os.path.join(folder, str(size))
            for run in ("first", "repeated", "repeated"):
                log(f"{size} px, {run} start-up ...")
                results.setdefault("startup", []).append(
                    worker.run_in_subprocess("startup", timeout=timeout, size=size, cache=cache))
                save(results)


def startup_markdown(cases: Sequence[dict]) -> list[str]:
    """The table of :func:`startup_case`: first and repeated runs."""
    cases = [c for c in cases if "error" not in c]
    if not cases:
        return []
    names = list(cases[0]["stages"])
    lines = ["", "| size | run | " + " | ".join(names) + " | total s |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for c in cases:
        lines.append(f"| {c['size']} | {'repeated' if c['cached'] else 'first'} | "
                     + " | ".join(f"{c['stages'][n]:.2f}" for n in names)
                     + f" | {c['total_s']:.2f} |")
    return lines


def markdown(results: dict) -> list[str]:
    return startup_markdown(results.get("startup", []))
