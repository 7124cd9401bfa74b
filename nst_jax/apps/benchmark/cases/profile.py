"""The profile case (``--profile-sizes``): where the time of one loss+gradient evaluation
goes, nst_jax and the PyTorch baseline side by side."""
from __future__ import annotations

import json
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.evaluation import evaluation
from nst_jax.apps.benchmark.machine import evaluation_flops, matmul_peak
from nst_jax.apps.benchmark.options import check_sizes, ints
from nst_jax.errors import NSTError

STANDALONE = True


def _hlo_kinds(hlo: str) -> dict[str, str]:
    """``{instruction: "convolution" | "dot" | "other"}`` for the instructions of an optimised
    HLO module, by what they compute (a fusion by what its called computation holds)."""
    import re

    bodies = {}
    for block in re.split(r"\n(?=\S)", hlo):
        name = re.match(r"(?:ENTRY )?%?([\w.\-]+)", block)
        if name:
            bodies[name.group(1)] = block
    kinds = {}
    for match in re.finditer(r"%([\w.\-]+) = [^\n]*?\b(convolution|dot|fusion)\(([^\n]*)", hlo):
        name, op, rest = match.groups()
        if op == "fusion":
            called = re.search(r"calls=%?([\w.\-]+)", rest)
            body = bodies.get(called.group(1), "") if called else ""
            op = ("convolution" if " convolution(" in body else "dot" if " dot(" in body
                  else "other")
        kinds[name] = op
    return kinds


def profile_case(size: int, repeats: int = 3) -> dict:
    """Where the time of one loss+gradient evaluation goes, nst_jax and the PyTorch baseline
    side by side (runs in the worker process): seconds in convolutions, in matrix products
    (the Gram matrices and eq. 6) and in everything else, from ``jax.profiler`` (XLA's
    operations, classified by their optimised HLO) and ``torch.profiler`` (PyTorch's
    operators' own time); with the FLOPs, each kind's GFLOP/s against the matmul peak
    measured beside it."""
    import glob
    import gzip
    import tempfile

    import jax

    from nst_jax import stylize

    config = stylize.Config()
    params, preprocessing, content, style, value_and_grad, data = evaluation(size, config)
    x0 = np.asarray(stylize.white_noise(0, content.shape))
    executable = value_and_grad.lower(x0, data).compile()
    kinds = _hlo_kinds(executable.as_text())
    for _ in range(2):
        jax.block_until_ready(executable(x0, data))
    seconds = {"convolution": 0.0, "dot": 0.0, "other": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        jax.profiler.start_trace(folder, create_perfetto_trace=True)
        for _ in range(repeats):
            jax.block_until_ready(executable(x0, data))
        jax.profiler.stop_trace()
        wall = (time.perf_counter() - began) / repeats
        trace = json.load(gzip.open(sorted(glob.glob(f"{folder}/**/*.json.gz", recursive=True))[-1]))
    for event in trace["traceEvents"] if isinstance(trace, dict) else trace:
        if event.get("ph") == "X" and event.get("name") in kinds:
            seconds[kinds[event["name"]]] += event.get("dur", 0) / 1e6 / repeats
    flops = evaluation_flops(size, size, config.content_layers, config.style_layers)
    peak = matmul_peak(sizes=(2048,), repeats=3)["peak_gflops"]
    result = {"size": size, "flops": flops, "peak_gflops": peak,
              "nst_jax": {"seconds": seconds, "wall_s": wall}}
    try:
        result["torch"] = _torch_profile(params, preprocessing, content, style, config, x0, repeats)
    except NSTError as e:
        result["torch"] = {"error": str(e)}
    return result


def _torch_profile(params, preprocessing, content, style, config, x0, repeats: int) -> dict:
    from nst_jax.apps.benchmark import torch_baseline as tb

    torch = tb.require_torch()
    loss = tb.make_loss(params, content, style, config, preprocessing)
    x = torch.tensor(np.asarray(x0, np.float32), requires_grad=True)

    def evaluate():
        x.grad = None
        loss(x)[0].backward()

    for _ in range(2):
        evaluate()
    seconds = {"convolution": 0.0, "dot": 0.0, "other": 0.0}
    began = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            evaluate()
    wall = (time.perf_counter() - began) / repeats
    for event in prof.key_averages():
        name = event.key.lower()
        kind = ("convolution" if "conv" in name else
                "dot" if any(k in name for k in ("mm", "matmul", "dot", "linear")) else "other")
        seconds[kind] += event.self_cpu_time_total / 1e6 / repeats
    return {"seconds": seconds, "wall_s": wall, "threads": torch.get_num_threads()}


CASE = profile_case


def add_flags(p) -> None:
    p.add_argument("--profile-sizes", type=ints, default=[],
                   help="split one evaluation's time (convolutions, matrix products, the rest) "
                        "at these sizes, nst_jax and the PyTorch baseline")


def plan(args) -> dict | None:
    check_sizes(args.profile_sizes)
    return {"sizes": args.profile_sizes} if args.profile_sizes else None


def run(results: dict, sizes: Sequence[int], timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    for size in sizes:
        log(f"{size} px, profile of one evaluation ...")
        results.setdefault("profile", []).append(
            worker.run_in_subprocess("profile", timeout=timeout, size=size))
        save(results)


def profile_markdown(cases: Sequence[dict]) -> list[str]:
    """The table of :func:`profile_case`."""
    cases = [c for c in cases if "error" not in c]
    if not cases:
        return []
    lines = ["", "Where one evaluation's time goes (profilers; the tools' own accounting, with "
             "the profiler's overhead in the wall time):", "",
             "| size | implementation | wall s | convolutions s | their GFLOP/s | of matmul peak "
             "| matrix products s | everything else s |", "|---|---|---|---|---|---|---|---|"]
    for c in cases:
        for name in ("nst_jax", "torch"):
            p = c.get(name, {})
            if "error" in p or not p:
                continue
            conv = p["seconds"]["convolution"]
            gflops = c["flops"]["convolutions"] / conv / 1e9 if conv > 0 else float("nan")
            lines.append(f"| {c['size']} | {name} | {p['wall_s']:.3f} | {conv:.3f} | "
                         f"{gflops:.0f} | {gflops / c['peak_gflops']:.0%} | "
                         f"{p['seconds']['dot']:.3f} | {p['seconds']['other']:.3f} |")
    return lines


def markdown(results: dict) -> list[str]:
    return profile_markdown(results.get("profile", []))
