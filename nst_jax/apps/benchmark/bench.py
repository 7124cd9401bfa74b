"""Benchmarks of one style transfer: speed, FLOPs, memory, convergence, and a PyTorch baseline.

``scripts/bench.py`` is the command line. Every measurement of one image size
runs in a fresh subprocess (:func:`worker`), so compile times are cold, peak
memory (RSS on CPU, the device's peak on an accelerator) belongs to that case
alone, and one case running out of memory does not end the benchmark.

What is measured, per size (square images, the bundled example pair resized):

- compile time and seconds per loss+gradient evaluation (median after warm-up);
- the FLOPs of one evaluation (:func:`evaluation_flops`) and the achieved
  GFLOP/s as a fraction of the machine's float32 matmul peak, which
  :func:`matmul_peak` measures first;
- per L-BFGS backend: seconds per iteration, evaluations per iteration, the
  overhead beyond its evaluations, and the lowest total loss reached within
  each checkpoint's number of evaluations, every backend from the same white noise;
- the same with the PyTorch baseline (:mod:`nst_jax.apps.benchmark.torch_baseline`) when
  PyTorch is installed, and the parity of the two implementations.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.errors import NSTError

RESULT_PREFIX = "BENCH-RESULT "
DEFAULT_SIZES = (128, 256, 512)
DEFAULT_CHECKPOINTS = (50, 100, 300)
DEFAULT_BACKENDS = ("lbfgs", "lbfgs-stepwise", "torch")


# --- FLOPs -------------------------------------------------------------------------------

def evaluation_flops(height: int, width: int, content_layers: Sequence[str],
                     style_layers: Sequence[str], blocks: Sequence[Sequence[int]] | None = None
                     ) -> dict[str, int]:
    """FLOPs (a multiply-add is 2) of one loss+gradient evaluation with respect to the pixels.

    Counted: the 3x3 convolutions up to the deepest layer used, forward
    (``2 * h * w * 9 * C_in * C_out`` each) and backward to the input (the same
    again: the gradient of a convolution with respect to its input is a
    convolution of the same size; the kernels' gradients are not needed); the
    Gram matrices of the style layers (``2 * M * N^2``) and their backward
    (one ``M x N`` by ``N x N`` product each, eq. 6). Elementwise work (ReLU,
    pooling, the content loss) is not counted: it is memory traffic, not FLOPs.
    ``convolutions`` and ``grams`` split ``total`` (both directions each).
    """
    from nst_jax.vgg import VGG19_BLOCKS, layer_names

    blocks = VGG19_BLOCKS if blocks is None else blocks
    names = layer_names(blocks)
    deepest = max(names.index(l) for l in tuple(content_layers) + tuple(style_layers))
    conv, gram = 0, 0
    h, w, c_in, index = height, width, 3, 0
    for b, block in enumerate(blocks):
        if b > 0:
            h, w = h // 2, w // 2
        for c_out in block:
            if index > deepest:
                break
            conv += 2 * h * w * 9 * c_in * c_out
            if names[index] in style_layers:
                gram += 2 * h * w * c_out * c_out
            c_in, index = c_out, index + 1
    return {"forward": conv + gram, "backward": conv + gram, "total": 2 * (conv + gram),
            "convolutions": 2 * conv, "grams": 2 * gram}


# --- timing and memory ---------------------------------------------------------------------

def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list]:
    """Median wall time of ``fn()`` (its result blocked on) over ``repeats`` runs after ``warmup``."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def matmul_peak(sizes: Sequence[int] = (1024, 2048, 3072), repeats: int = 5) -> dict:
    """This machine's float32 matmul throughput: jitted ``jnp.dot`` and NumPy, square
    ``n x n`` matrices; ``peak_gflops`` is the best of them, the denominator of
    every "fraction of peak" in the benchmark."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    out = {"jax": {}, "numpy": {}}
    dot = jax.jit(jnp.dot)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32)
        b = rng.random((n, n), dtype=np.float32)
        aj, bj = jnp.asarray(a), jnp.asarray(b)
        flops = 2.0 * n**3
        out["jax"][str(n)] = flops / median_seconds(lambda: dot(aj, bj), repeats)[0] / 1e9
        out["numpy"][str(n)] = flops / median_seconds(lambda: a @ b, repeats)[0] / 1e9
    out["peak_gflops"] = max(v for table in (out["jax"], out["numpy"]) for v in table.values())
    return out


def peak_memory_bytes() -> dict:
    """Peak resident memory of this process (``ru_maxrss``) and, on an accelerator,
    the device's peak bytes in use."""
    import jax

    out = {"rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        out["device"] = stats.get("peak_bytes_in_use")
    return out


def machine() -> dict:
    """What the numbers were measured on."""
    import jax

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": device.platform,
            "device": device.device_kind, "devices": jax.device_count(), "jax": jax.__version__,
            "python": platform.python_version()}


# --- one case, in a worker process ---------------------------------------------------------

def square_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled content and style images resized to ``size x size``."""
    from nst_jax import images
    from nst_jax.config import example_path

    return tuple(images.resize_to(images.load_image(example_path(name)), (size, size))
                 for name in ("chelsea.jpg", "starry_night.jpg"))


def lowest_loss_within(state, evaluations: int) -> float:
    """Lowest loss a nst_jax run had reached (at the end of an iteration) within
    ``evaluations`` loss+gradient evaluations (NaN if none)."""
    count = np.asarray(state.trace.evaluations)
    value = np.asarray(state.trace.value)
    ok = (count >= 0) & (count <= evaluations) & np.isfinite(value)
    return float(value[ok].min()) if ok.any() else float("nan")


def _run_summary(seconds: float, iterations: int, evaluations: int, eval_seconds: float) -> dict:
    """The per-iteration figures of an optimisation that took ``seconds`` (any backend)."""
    return {
        "timed_s": seconds, "iterations": iterations, "evaluations": evaluations,
        "s_per_iteration": seconds / max(iterations, 1),
        "evaluations_per_iteration": evaluations / max(iterations, 1),
        "s_per_evaluation_in_loop": seconds / max(evaluations, 1),
        "overhead": 1.0 - evaluations * eval_seconds / seconds if seconds > 0 else float("nan"),
    }


def _jax_backend(content, style, params, preprocessing, config, x0, evaluations: int,
                 checkpoints, eval_seconds: float, chunk: int = 5) -> dict:
    import jax

    from nst_jax import stylize

    job = stylize.prepare(content, style, params, config, preprocessing=preprocessing)
    start = time.perf_counter()
    job.step(1)  # compiles
    jax.block_until_ready(job.state)
    compile_and_first = time.perf_counter() - start
    first_evals, first_iterations = int(job.state.evaluations), int(job.state.iteration)
    start = time.perf_counter()
    while int(job.state.evaluations) < evaluations and not job.done:
        job.step(chunk)
        jax.block_until_ready(job.state)
    seconds = time.perf_counter() - start
    return {
        "first_call_s": compile_and_first,
        **_run_summary(seconds, int(job.state.iteration) - first_iterations,
                       int(job.state.evaluations) - first_evals, eval_seconds),
        "loss_after": {str(c): lowest_loss_within(job.state, c) for c in checkpoints},
    }


def _torch_backend(content, style, params, preprocessing, config, x0, evaluations: int,
                   checkpoints, repeats: int) -> dict:
    from nst_jax import stylize
    from nst_jax.apps.benchmark import torch_baseline as tb

    torch = tb.require_torch()
    loss = tb.make_loss(params, content, style, config, preprocessing)
    x = torch.tensor(np.asarray(x0, np.float32), requires_grad=True)

    def evaluate():
        x.grad = None
        total = loss(x)[0]
        total.backward()
        return total

    eval_seconds, times = median_seconds(evaluate, repeats, warmup=2)
    run = tb.run_lbfgs(loss, x0, evaluations, stylize.optimizer_settings(config).memory_size)
    return {
        "s_per_evaluation": eval_seconds, "evaluation_times": times, "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **_run_summary(run.seconds, run.iterations, run.evaluations, eval_seconds),
        "loss_after": {str(c): run.best_within(c) for c in checkpoints},
    }


def _evaluation(size: int, config, tile: int | None = None):
    """The weights, the square example pair at ``size`` and the jitted loss+gradient
    of ``config``'s network (tiled with ``tile`` px tiles, or not), its kernels and targets
    an argument, as :func:`nst_jax.stylize.prepare` passes them: what every worker case
    starts from. The loss+gradient takes the pixels and the data (the last item)."""
    import jax

    from nst_jax import stylize, weights
    from nst_jax.weight_sources.download import ensure_weights

    params, preprocessing = weights.load_params(ensure_weights(log=lambda m: None))
    content, style = square_pair(size)
    loss_fn = stylize.build_loss_fn(params, content, style, config.content_layers,
                                    config.style_layers, stylize.network(config), preprocessing,
                                    tile_size=tile)
    loss_weights = stylize.loss_weights(config)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x, data: loss_fn.fn(x, loss_weights, data)[0]))
    data = jax.device_put(loss_fn.data)
    return params, preprocessing, content, style, value_and_grad, data


def speed_case(size: int, backends: Sequence[str], checkpoints: Sequence[int], repeats: int,
               remat: bool = False, precision: str = "float32", seed: int = 0) -> dict:
    """Everything measured at one size (runs in the worker process)."""
    from nst_jax import stylize

    # Unconstrained pixels, as the PyTorch baseline's: the losses compare like with like.
    config = stylize.Config(remat=remat, precision=precision, seed=seed,
                            iterations=max(checkpoints) + 1, bounds="none")
    params, preprocessing, content, style, value_and_grad, data = _evaluation(size, config)
    x0 = np.asarray(stylize.white_noise(seed, content.shape, config.noise_amplitude))
    start = time.perf_counter()
    executable = value_and_grad.lower(x0, data).compile()
    compiled = lambda x: executable(x, data)  # noqa: E731
    compile_s = time.perf_counter() - start
    # The machine's speed drifts (shared cores): the peak is measured again next to each case.
    peak = matmul_peak(sizes=(2048,), repeats=3)["peak_gflops"]
    eval_s, times = median_seconds(lambda: compiled(x0), repeats)
    flops = evaluation_flops(size, size, config.content_layers, config.style_layers)
    result = {
        "size": size, "remat": remat, "precision": precision, "compile_s": compile_s,
        "s_per_evaluation": eval_s, "evaluation_times": times, "flops": flops,
        "gflops_per_s": flops["total"] / eval_s / 1e9, "peak_gflops": peak,
        "initial_loss": float(compiled(x0)[0]),
        "backends": {}, "memory_before_backends": peak_memory_bytes(),
    }
    for backend in backends:
        if backend == "torch":
            try:
                result["backends"]["torch"] = _torch_backend(
                    content, style, params, preprocessing, config, x0, max(checkpoints),
                    checkpoints, repeats)
            except NSTError as e:
                result["backends"]["torch"] = {"error": str(e)}
            continue
        run_config = config.replace(optimizer=backend)  # starts from the same noise, x0
        result["backends"][backend] = _jax_backend(content, style, params, preprocessing,
                                                   run_config, x0, max(checkpoints), checkpoints,
                                                   eval_s)
    result["memory"] = peak_memory_bytes()
    return result


def memory_case(size: int, remat: bool, precision: str = "float32", tile: int | None = None,
                repeats: int = 0) -> dict:
    """Compile and run one evaluation at ``size`` (tiled with ``tile`` px tiles, or not);
    peak memory, and the median time of ``repeats`` more evaluations (runs in the worker
    process)."""
    import jax

    from nst_jax import stylize

    config = stylize.Config(remat=remat, precision=precision)
    _, _, content, _, jitted, data = _evaluation(size, config, tile)
    value_and_grad = functools.partial(jitted, data=data)
    x0 = np.asarray(stylize.white_noise(0, content.shape))
    start = time.perf_counter()
    value, _ = jax.block_until_ready(value_and_grad(x0))
    seconds = time.perf_counter() - start
    result = {"size": size, "remat": remat, "precision": precision, "tile": tile,
              "first_evaluation_s": seconds, "finite": bool(np.isfinite(value)),
              "value": float(value), "memory": peak_memory_bytes()}
    if repeats:
        result["s_per_evaluation"], result["evaluation_times"] = median_seconds(
            lambda: value_and_grad(x0), repeats, warmup=0)
    return result


def startup_case(size: int, cache: str) -> dict:
    """What each stage of a ``stylize.py`` start-up costs, in a fresh process, with JAX's
    persistent compilation cache in the folder ``cache`` (empty: a first run; filled by
    an earlier case: a repeated run). The stages, in seconds: importing JAX and nst_jax,
    reading the images, loading the weights, the targets (the network on the content and
    style), the optimiser's start (compiling or loading it, one evaluation) and the first
    iteration (compiling or loading the loop, the iteration itself); ``cached``: whether
    the cache folder held anything before. Process start-up before this function (the
    interpreter, the benchmark module) is not counted: it is the same for every tool."""
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


def binding_case(size: int, constants: bool, iterations: int = 10) -> dict:
    """The weights and targets as compile-time constants or as arguments (what
    :func:`nst_jax.stylize.prepare` does): compile time of the optimiser's start and loop,
    and seconds per evaluation inside the loop, at ``size`` (the example pair's long side;
    runs in the worker process)."""
    import jax
    import jax.numpy as jnp

    from nst_jax import stylize

    config = stylize.Config(size=size, iterations=iterations + 1)
    inputs = stylize.load_inputs(config)
    network = stylize.load_network(config, inputs.content, inputs.styles)
    loss = stylize.build_loss_fn(network.params, inputs.content, list(inputs.styles),
                                 config.content_layers, config.style_layers, network.module,
                                 network.preprocessing)
    # As constants: the loss's own data, closed over; as arguments: the data passed in.
    fn = (lambda x, weights, data: loss(x, weights)) if constants else loss.fn
    data = None if constants else jax.device_put(loss.data)
    weights = stylize.loss_weights(config)
    x0 = stylize.white_noise(0, inputs.content.shape)
    start_fn, run_fn, _ = stylize.compiled_programs(fn, stylize.optimizer_settings(config),
                                                    config.iterations)
    began = time.perf_counter()
    start = start_fn.lower(x0, weights, data).compile()
    compile_start = time.perf_counter() - began
    state = jax.block_until_ready(start(x0, weights, data))
    began = time.perf_counter()
    run = run_fn.lower(state, jnp.int32(1), weights, data).compile()
    compile_run = time.perf_counter() - began
    state = jax.block_until_ready(run(state, jnp.int32(1), weights, data))  # warm
    evaluations = int(state.evaluations)
    began = time.perf_counter()
    state = jax.block_until_ready(run(state, jnp.int32(iterations), weights, data))
    seconds = time.perf_counter() - began
    done = int(state.evaluations) - evaluations
    return {"size": size, "shape": list(inputs.content.shape[:2]), "constants": constants,
            "compile_start_s": compile_start, "compile_run_s": compile_run,
            "s_per_evaluation_in_loop": seconds / max(done, 1), "evaluations": done,
            "memory": peak_memory_bytes()}


def binding_markdown(cases: Sequence[dict]) -> list[str]:
    """The table of :func:`binding_case` (constants against arguments)."""
    if not cases:
        return []
    lines = ["", "| size | weights and targets | compile start s | compile loop s | "
             "s / evaluation in the loop | peak RSS GiB |", "|---|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['size']} | {'constants' if c['constants'] else 'arguments'} | "
                         f"failed: {c['error']} |")
            continue
        lines.append(f"| {c['size']} | {'constants' if c['constants'] else 'arguments'} | "
                     f"{c['compile_start_s']:.2f} | {c['compile_run_s']:.2f} | "
                     f"{c['s_per_evaluation_in_loop']:.4f} | {_gb(c['memory']['rss'])} |")
    return lines


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
    params, preprocessing, content, style, value_and_grad, data = _evaluation(size, config)
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


def parity_case(size: int) -> dict:
    """Largest relative differences between nst_jax and the PyTorch baseline at ``size``."""
    from nst_jax import stylize, weights
    from nst_jax.apps.benchmark import torch_baseline
    from nst_jax.weight_sources.download import ensure_weights

    params, preprocessing = weights.load_params(ensure_weights(log=lambda m: None))
    content, style = square_pair(size)
    return torch_baseline.parity(params, content, style, stylize.Config(), preprocessing)


def quality_case(size: int, iterations: int, start_size: int | None = None,
                 coarse_iterations: int = 100, seed: int = 0, chunk: int = 10,
                 image: str | None = None) -> dict:
    """One run of the bundled example at ``size`` (long side), single-scale or coarse to
    fine from ``start_size`` (runs in the worker process): the eq. 7 loss at the last
    scale against the wall time since the first scale began, compilation included.

    ``curve`` has one point per chunk of the last scale (``s``, ``iteration``, ``loss``:
    the lowest loss so far), and first the loss of the pixels the last scale starts
    from (the coarse scales' result, upsampled; noise for a single scale), computed
    with the clock stopped. ``cost`` counts every scale's loss+gradient evaluations in
    evaluations at the last scale's size (an evaluation costs about its pixel count):
    unlike the wall time, it does not depend on the load of a shared machine.
    ``texture_period`` and ``high_frequency_share`` (:mod:`nst_jax.measures`) say how
    large the output's structures are and how much fine grain it has. ``image``: also
    write the output there (PNG).
    """
    import jax

    from nst_jax import coarse_to_fine, images, stylize
    from nst_jax import measures

    config = stylize.Config(size=size, iterations=iterations, seed=seed, start_size=start_size,
                            coarse_iterations=coarse_iterations)
    inputs = stylize.load_inputs(config)
    network = stylize.load_network(config, inputs.content, inputs.styles)
    pixels = inputs.content.shape[0] * inputs.content.shape[1]
    scales, curve, paused = [], [], 0.0
    load = os.getloadavg()[0]
    start = time.perf_counter()
    for scale, job in coarse_to_fine.stylizations(config, network, inputs=inputs):
        began = time.perf_counter()
        jax.block_until_ready(job.state)
        if scale.last:  # the loss the last scale starts from, off the clock
            stop = time.perf_counter()
            curve.append({"s": stop - start - paused, "iteration": 0, "evaluations": 0,
                          "loss": job.terms()[0]})
            paused += time.perf_counter() - stop
        first_chunk = None
        while not job.done:
            job.step(chunk)
            jax.block_until_ready(job.state)
            first_chunk = first_chunk or time.perf_counter() - began
            if scale.last:
                values = np.asarray(job.state.trace.value)[: int(job.state.iteration)]
                curve.append({"s": time.perf_counter() - start - paused,
                              "iteration": int(job.state.iteration),
                              "evaluations": int(job.state.evaluations),
                              "loss": float(np.nanmin(values))})
        height, width = job.content.shape[:2]
        scales.append({"size": scale.size, "shape": [height, width],
                       "iterations": int(job.state.iteration),
                       "evaluations": int(job.state.evaluations),
                       "seconds": time.perf_counter() - began,
                       "first_chunk_s": first_chunk,
                       "cost": int(job.state.evaluations) * height * width / pixels})
    seconds = time.perf_counter() - start - paused
    saved, total, terms = job.saved()
    output = np.asarray(saved, np.float32) / 255.0
    if image:
        images.save_png(image, output)
    return {"size": size, "start_size": start_size, "coarse_iterations": coarse_iterations,
            "iterations": iterations, "seed": seed, "seconds": seconds,
            "cost": sum(s["cost"] for s in scales), "scales": scales, "curve": curve,
            "final_loss": total, "final_content": terms.content, "final_style": terms.style,
            "texture_period": measures.texture_period(output),
            "high_frequency_share": measures.high_frequency_share(output),
            "load_average": [load, os.getloadavg()[0]]}


def quality_variants(starts: Sequence[int], coarse: Sequence[int], size: int
                     ) -> list[dict]:
    """Single scale, then coarse to fine from each start below ``size`` with each number of
    coarse iterations."""
    out = [{"start_size": None}]
    out += [{"start_size": s, "coarse_iterations": c} for s in starts if s < size for c in coarse]
    return out


def quality_label(case: dict) -> str:
    if case.get("start_size") is None:
        return "single scale"
    return f"from {case['start_size']} px, {case['coarse_iterations']} it./coarse scale"


def lowest_within(curve: Sequence[dict], seconds: float) -> float:
    """The lowest loss a curve had reached ``seconds`` into the run (NaN if none yet)."""
    seen = [p["loss"] for p in curve if p["s"] <= seconds and p["iteration"] > 0]
    return min(seen) if seen else float("nan")


def time_to(curve: Sequence[dict], loss: float) -> float | None:
    """Seconds until a curve first reached ``loss`` (None if it never did)."""
    return next((p["s"] for p in curve if p["iteration"] > 0 and p["loss"] <= loss), None)


def quality_markdown(cases: Sequence[dict]) -> list[str]:
    """One table per size: each variant's final loss, its loss within fractions of the
    single-scale run's time, and the time it took to reach the single-scale final loss."""
    lines = []
    for size in sorted({c["size"] for c in cases}):
        group = [c for c in cases if c["size"] == size and "error" not in c]
        failed = [c for c in cases if c["size"] == size and "error" in c]
        single = next((c for c in group if c.get("start_size") is None), None)
        budgets = [single["seconds"] * f for f in (0.25, 0.5, 1.0)] if single else []
        title = (f"*Coarse to fine at {size} px (the bundled example, seed "
                 f"{group[0]['seed'] if group else '-'}): eq. 7 loss at the last scale against "
                 "the wall time from the first scale's start, compilation included.*")
        header = (f"| variant | scales px | iterations | wall s | cost (evaluations at {size} px) "
                  "| final loss (8-bit) | "
                  + "".join(f"lowest loss by {b:.0f} s | " for b in budgets)
                  + "s to the single scale's final loss | texture period px | high-frequency "
                    "share |")
        lines += ["", title, "", header,
                  "|---|---|---|---|---|---|" + "---|" * len(budgets) + "---|---|---|"]
        target = min(p["loss"] for p in single["curve"]) if single else None
        for c in group:
            reach = time_to(c["curve"], target) if target is not None else None
            its = "+".join(str(s["iterations"]) for s in c["scales"])
            lines.append(
                f"| {quality_label(c)} | {','.join(str(s['size']) for s in c['scales'])} | {its} | "
                f"{c['seconds']:.0f} | {c['cost']:.0f} | {c['final_loss']:.4g} | "
                + "".join(f"{lowest_within(c['curve'], b):.4g} | " for b in budgets)
                + (f"{reach:.0f} | " if reach is not None else "not reached | ")
                + f"{c.get('texture_period', float('nan')):.1f} | "
                  f"{c.get('high_frequency_share', float('nan')):.3f} |")
        lines += [f"| {quality_label(c)} | failed: {c['error']} |" for c in failed]
    return lines


CASES = {"speed": speed_case, "memory": memory_case, "parity": parity_case,
         "quality": quality_case, "binding": binding_case, "startup": startup_case,
         "profile": profile_case}


def worker(argv: Sequence[str]) -> int:
    """``python -m nst_jax.apps.benchmark.bench KIND JSON-KWARGS``: run one case, print its result as one line."""
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
    command = [sys.executable, "-m", "nst_jax.apps.benchmark.bench", kind, json.dumps(kwargs)]
    # Compile times are cold: the compilation cache this process's runner turned on
    # (nst_jax.apps.common.compile_cache) is not the workers'; startup_case sets its own.
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


# --- the whole benchmark ---------------------------------------------------------------------

def largest_size(points: Sequence[dict], limit_bytes: float, remat: bool, timeout: float | None,
                 log: Callable[[str], None], step: int = 64) -> dict:
    """The largest square size whose evaluation stays within ``limit_bytes`` of peak RSS.

    Peak RSS is close to affine in the pixel count, so a line through the
    measured ``points`` predicts the size; that size (a multiple of ``step``)
    is then run, and lowered by 10 % until a run fits.
    """
    ok = [p for p in points if "error" not in p]
    if len(ok) < 2:
        return {"remat": remat, "error": "needs two memory measurements"}
    pixels = np.array([p["size"] ** 2 for p in ok], np.float64)
    rss = np.array([p["memory"]["rss"] for p in ok], np.float64)
    slope, intercept = np.polyfit(pixels, rss, 1)
    size = int(np.sqrt(max(limit_bytes - intercept, 0) / slope)) // step * step
    tries = []
    for _ in range(4):
        log(f"largest size within {limit_bytes / 2**30:.0f} GiB (remat={remat}): trying {size}")
        run = run_in_subprocess("memory", timeout=timeout, size=size, remat=remat)
        tries.append(run)
        if "error" not in run and run["memory"]["rss"] <= limit_bytes:
            return {"remat": remat, "size": size, "rss": run["memory"]["rss"],
                    "predicted_bytes_per_pixel": slope, "tries": tries}
        size = int(size * 0.9) // step * step
    return {"remat": remat, "error": "no size fitted", "tries": tries}


def run_benchmark(sizes: Sequence[int], backends: Sequence[str], checkpoints: Sequence[int],
                  repeats: int, remat_sizes: Sequence[int], bfloat16_sizes: Sequence[int],
                  memory_sizes: Sequence[int], memory_limit_gb: float | None, parity_size: int | None,
                  timeout: float | None, log: Callable[[str], None] = print,
                  save: Callable[[dict], None] = lambda results: None,
                  quality: dict | None = None, tiled: dict | None = None,
                  peer: dict | None = None, binding_sizes: Sequence[int] = (),
                  binding_rounds: int = 2, startup_sizes: Sequence[int] = (),
                  profile_sizes: Sequence[int] = ()) -> dict:
    """Every case of the benchmark, each in its own process; the JSON-able results.

    ``tiled``: ``{"sizes", "tile", "overhead_size"}``: one tiled evaluation's peak memory at
    each size, and untiled against ``--tile-size auto``'s tile, timed, at ``overhead_size``.

    ``save(results)`` is called after every case, so an interrupted or partly
    failed benchmark keeps what it measured. ``quality``: the keywords of
    :func:`run_quality` (coarse to fine against a single scale), or None. ``peer``: the
    keywords of :func:`run_peer` (against neural-style-pt), or None. ``binding_sizes``:
    sizes where :func:`binding_case` compares the weights and targets as constants and as
    arguments, alternating, ``binding_rounds`` times each. ``startup_sizes``: sizes where
    :func:`startup_case` times the stages of a first and of a repeated start-up.
    ``profile_sizes``: sizes where :func:`profile_case` splits an evaluation's time.
    """
    started = time.time()
    results = {"machine": machine(), "command": sys.argv, "started": time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(started)), "speed": [], "memory": []}
    log("matmul peak ...")
    results["matmul"] = matmul_peak()
    log(f"matmul peak {results['matmul']['peak_gflops']:.0f} GFLOP/s")
    if parity_size:
        log(f"parity with the PyTorch baseline at {parity_size} px ...")
        results["parity"] = {"size": parity_size,
                             **run_in_subprocess("parity", timeout=timeout, size=parity_size)}
        save(results)

    def speed(size, label, **variant):
        log(f"{size} px{label} ...")
        case = run_in_subprocess("speed", timeout=timeout, size=size, checkpoints=list(checkpoints),
                                 repeats=repeats, **variant)
        results["speed"].append(case)
        log(summary_line(case))
        save(results)

    for size in sizes:
        speed(size, f", backends {','.join(backends)}", backends=list(backends))
    for size in remat_sizes:
        speed(size, " with --remat (evaluations only)", backends=[], remat=True)
    for remat in (False, True):
        points = []
        for size in memory_sizes:
            log(f"memory at {size} px (remat={remat}) ...")
            points.append(run_in_subprocess("memory", timeout=timeout, size=size, remat=remat))
            results["memory"].append(points[-1])
            save(results)
        if memory_limit_gb:
            results.setdefault("largest", []).append(
                largest_size(points, memory_limit_gb * 2**30, remat, timeout, log))
            save(results)
    # bfloat16 runs the first nst_jax backend only: its question is speed and final loss.
    first = [b for b in backends if b != "torch"][:1]
    for size in bfloat16_sizes:
        speed(size, f", bfloat16, backends {','.join(first)}", backends=first, precision="bfloat16")
    if tiled:
        run_tiled(results, repeats=repeats, timeout=timeout, log=log, save=save, **tiled)
    if quality:
        run_quality(results, timeout=timeout, log=log, save=save, **quality)
    for size in profile_sizes:
        log(f"{size} px, profile of one evaluation ...")
        results.setdefault("profile", []).append(
            run_in_subprocess("profile", timeout=timeout, size=size))
        save(results)
    if startup_sizes:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="nst_jax-startup-") as folder:
            for size in startup_sizes:
                cache = os.path.join(folder, str(size))
                for run in ("first", "repeated", "repeated"):
                    log(f"{size} px, {run} start-up ...")
                    results.setdefault("startup", []).append(
                        run_in_subprocess("startup", timeout=timeout, size=size, cache=cache))
                    save(results)
    for size in binding_sizes:
        for r in range(binding_rounds):
            for constants in (True, False):
                log(f"{size} px, weights and targets as {'constants' if constants else 'arguments'}"
                    f" (round {r + 1}) ...")
                case = run_in_subprocess("binding", timeout=timeout, size=size,
                                         constants=constants)
                results.setdefault("binding", []).append(case)
                save(results)
    if peer:
        run_peer(results, timeout=timeout, log=log, save=save, **peer)
    results["seconds"] = time.time() - started
    save(results)
    return results


def run_quality(results: dict, sizes: Sequence[int], iterations: int, starts: Sequence[int],
                coarse: Sequence[int], single_iterations: int | None = None, seed: int = 0,
                images: str | None = None,
                timeout: float | None = None, log: Callable[[str], None] = print,
                save: Callable[[dict], None] = lambda results: None) -> None:
    """Coarse to fine against a single scale at each of ``sizes`` (:func:`quality_case`, one
    process per variant, all from ``seed``), into ``results["quality"]``; each variant's
    output goes to ``images/quality_<size>_<variant>.png`` when ``images`` is a folder."""
    results.setdefault("quality", [])
    for size in sizes:
        for variant in quality_variants(starts, coarse, size):
            label = quality_label(variant)
            log(f"quality at {size} px, {label} ...")
            name = "single" if variant["start_size"] is None else (
                f"from{variant['start_size']}_coarse{variant['coarse_iterations']}")
            image = os.path.join(images, f"quality_{size}_{name}.png") if images else None
            its = iterations if variant["start_size"] is not None else (
                single_iterations or iterations)
            case = run_in_subprocess("quality", timeout=timeout, size=size, iterations=its,
                                     seed=seed, image=image, **variant)
            results["quality"].append(case)
            log(f"  failed: {case['error']}" if "error" in case else
                f"  {case['seconds']:.0f} s, cost {case['cost']:.0f} evaluations, final loss "
                f"{case['final_loss']:.4g}")
            save(results)


def run_tiled(results: dict, sizes: Sequence[int], tile: int, overhead_size: int | None,
              repeats: int, timeout: float | None = None, log: Callable[[str], None] = print,
              save: Callable[[dict], None] = lambda results: None) -> None:
    """Tiled evaluations (:mod:`nst_jax.tiling`) into ``results["tiled"]``: peak memory at
    ``sizes`` with ``tile`` px tiles; at ``overhead_size``, seconds per evaluation untiled
    and with the tile ``--tile-size auto`` picks for an 8 GB budget, one after the other."""
    from nst_jax import tiling

    results.setdefault("tiled", [])
    cases = [dict(size=size, tile=tile, repeats=0) for size in sizes]
    if overhead_size:
        auto = tiling.choose("auto", (overhead_size, overhead_size), None, budget=8e9).tile_size
        cases += [dict(size=overhead_size, tile=t, repeats=repeats) for t in (None, auto)]
    for case in cases:
        log(f"tiled memory at {case['size']} px, tile {case['tile'] or 'none'} ...")
        results["tiled"].append(run_in_subprocess("memory", timeout=timeout, remat=False, **case))
        save(results)


def run_peer(results: dict, checkout: str, sizes: Sequence[int], short: int, long: int,
             rounds: int, race_iterations: int, race_fractions: Sequence[float],
             race_repeats: int = 2, timeout: float | None = None, log: Callable[[str], None] = print,
             save: Callable[[dict], None] = lambda results: None) -> None:
    """``scripts/stylize.py`` against neural-style-pt (:mod:`nst_jax.apps.benchmark.peer`), whole
    processes, at each of ``sizes``, into ``results["peer"]``: seconds per iteration and
    start-up (:func:`nst_jax.apps.benchmark.peer.compare`), and, when ``race_iterations``, the time
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
    """The tables of :func:`run_peer`."""
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


def tiled_markdown(cases: Sequence[dict]) -> list[str]:
    lines = ["", "| size | tile px | peak RSS GiB | first evaluation s | s / evaluation |",
             "|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c['size']} | {c.get('tile') or 'none'} | failed: {c['error']} | | |")
            continue
        timed = f"{c['s_per_evaluation']:.1f}" if "s_per_evaluation" in c else "-"
        lines.append(f"| {c['size']} | {c['tile'] or 'none'} | {_gb(c['memory']['rss'])} | "
                     f"{c['first_evaluation_s']:.1f} | {timed} |")
    return lines


def summary_line(case: dict) -> str:
    if "error" in case:
        return f"  failed: {case['error']}"
    parts = [f"  compile {case['compile_s']:.1f} s, {case['s_per_evaluation']:.3f} s/evaluation, "
             f"{case['gflops_per_s']:.0f} GFLOP/s"]
    for name, run in case["backends"].items():
        if "error" in run:
            parts.append(f"{name}: {run['error']}")
        else:
            parts.append(f"{name}: {run['s_per_iteration']:.3f} s/iteration, loss "
                         + ", ".join(f"{v:.4g}" for v in run["loss_after"].values()))
    return "; ".join(parts)


def _gb(n) -> str:
    return f"{n / 2**30:.2f}" if n is not None else "-"


def markdown(results: dict) -> str:
    """The benchmark's tables (the README's performance section quotes them)."""
    m = results["machine"]
    peak = results["matmul"]["peak_gflops"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']} ({m['device']}), "
             f"jax {m['jax']}; float32 matmul peak {peak:.0f} GFLOP/s "
             f"(best of jnp.dot and NumPy, {', '.join(results['matmul']['jax'])} squared).", ""]
    # The tables of the cases that need no speed case, in the order they run.
    tables = ((tiled_markdown(results["tiled"]) if results.get("tiled") else [])
              + profile_markdown(results.get("profile", []))
              + startup_markdown(results.get("startup", []))
              + binding_markdown(results.get("binding", []))
              + peer_markdown(results.get("peer", [])))
    if not results["speed"] and (results.get("quality") or tables):
        extra = (quality_markdown(results["quality"])[1:] if results.get("quality") else [])
        return "\n".join(lines + extra + tables) + "\n"
    speed = [c for c in results["speed"] if "error" not in c]
    lines += ["| size | precision | remat | compile s | s / evaluation | GFLOP / evaluation | "
              "GFLOP/s | of matmul peak (measured beside it) | torch s / evaluation | torch of matmul "
              "peak | speed-up vs torch | peak RSS GiB (nst_jax) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in speed:
        t_eval = c["backends"].get("torch", {}).get("s_per_evaluation")
        torch_cells = (f"{t_eval:.3f} | {c['flops']['total'] / t_eval / 1e9 / c['peak_gflops']:.0%} | "
                       f"{t_eval / c['s_per_evaluation']:.2f}x" if t_eval else "- | - | -")
        lines.append(
            f"| {c['size']} | {c['precision']} | {'yes' if c['remat'] else 'no'} | {c['compile_s']:.1f} | "
            f"{c['s_per_evaluation']:.3f} | {c['flops']['total'] / 1e9:.1f} | {c['gflops_per_s']:.0f} | "
            f"{c['gflops_per_s'] / c['peak_gflops']:.0%} | {torch_cells} | {_gb(c['memory_before_backends']['rss'])} |")
    checkpoints = None
    rows = []
    for c in speed:
        for name, run in c["backends"].items():
            if "error" in run:
                rows.append(f"| {c['size']} | {name} ({c['precision']}) | {run['error']} |")
                continue
            checkpoints = list(run["loss_after"])
            label = name if c["precision"] == "float32" else f"{name} ({c['precision']})"
            rows.append(
                f"| {c['size']} | {label} | "
                f"{run['s_per_iteration']:.3f} | {run['evaluations_per_iteration']:.2f} | "
                f"{run['overhead']:.1%} | " + " | ".join(f"{v:.4g}" for v in run["loss_after"].values()) + " |")
    if rows:
        lines += ["", "| size | backend | s / iteration | evaluations / iteration | overhead beyond "
                  "evaluations | " + " | ".join(f"loss after {k} evaluations" for k in checkpoints) + " |",
                  "|---|---|---|---|---|" + "---|" * len(checkpoints)] + rows
    memory = results.get("memory", [])
    if memory:
        sizes = sorted({p["size"] for p in memory})
        lines += ["", "| size | peak RSS GiB | with --remat | first evaluation s | with --remat |",
                  "|---|---|---|---|---|"]
        for size in sizes:
            cells = []
            for remat in (False, True):
                p = next((p for p in memory if p["size"] == size and p["remat"] == remat), None)
                cells.append((p or {}).get("error") or _gb(p["memory"]["rss"]) if p else "-")
            times = []
            for remat in (False, True):
                p = next((p for p in memory if p["size"] == size and p["remat"] == remat), None)
                times.append(f"{p['first_evaluation_s']:.1f}" if p and "error" not in p else "-")
            lines.append(f"| {size} | {cells[0]} | {cells[1]} | {times[0]} | {times[1]} |")
    for largest in results.get("largest", []):
        label = "with --remat" if largest["remat"] else "without remat"
        if "error" in largest:
            lines.append(f"\nLargest square size {label}: {largest['error']}.")
        else:
            above = ""
            if len(largest["tries"]) > 1:
                over = largest["tries"][-2]
                above = (f"; {over['size']} px " + (f"peaked at {_gb(over['memory']['rss'])} GiB"
                                                    if "error" not in over else f"failed: {over['error']}"))
            lines.append(f"\nLargest square size within the limit {label}: **{largest['size']} px** "
                         f"(peak RSS {_gb(largest['rss'])} GiB{above}).")
    parity = results.get("parity")
    if parity and "error" not in parity:
        lines += ["", f"Parity with the PyTorch baseline ({parity['size']} px): activations "
                  f"{max(parity['features'].values()):.1e}, losses {max(parity['losses'].values()):.1e}, "
                  f"gradient {parity['gradient']:.1e} (largest relative differences)."]
    elif parity:
        lines += ["", f"Parity: {parity['error']}"]
    lines += quality_markdown(results.get("quality", [])) + tables
    return "\n".join(lines) + "\n"


def _reals(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


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


def main(argv=None) -> int:
    from nst_jax.apps.common.flags import ArgumentParser

    p = ArgumentParser(prog="bench", description="Benchmark nst_jax (and a PyTorch baseline) on this machine.")
    p.add_argument("--sizes", type=_ints, default=list(DEFAULT_SIZES), help="square image sizes, px")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="L-BFGS backends to run: nst_jax's lbfgs, lbfgs-stepwise, lbfgs-jaxopt, "
                        "and torch (the PyTorch baseline, skipped with a note if not installed)")
    p.add_argument("--checkpoints", type=_ints, default=list(DEFAULT_CHECKPOINTS),
                   help="report the loss after these numbers of evaluations (the largest is the budget)")
    p.add_argument("--repeats", type=int, default=5, help="timed evaluations per size (median)")
    p.add_argument("--remat-sizes", type=_ints, default=[],
                   help="also time evaluations at these sizes with --remat")
    p.add_argument("--bfloat16-sizes", type=_ints, default=[],
                   help="also run these sizes with --precision bfloat16 (first nst_jax backend)")
    p.add_argument("--memory-sizes", type=_ints, default=[],
                   help="peak memory of one evaluation at these sizes, with and without remat")
    p.add_argument("--memory-limit-gb", type=float, default=None,
                   help="find the largest square size whose peak RSS stays within this (needs "
                        "two --memory-sizes)")
    p.add_argument("--parity-size", type=int, default=64,
                   help="check nst_jax against the PyTorch baseline at this size (0: skip)")
    p.add_argument("--quality-sizes", type=_ints, default=[],
                   help="coarse to fine against a single scale at these long sides, px: the eq. 7 "
                        "loss at that size against the wall time, every variant from the same "
                        "seed (see README, Coarse to fine)")
    p.add_argument("--quality-iterations", type=int, default=300,
                   help="iterations at the full size, every variant (default: 300)")
    p.add_argument("--quality-single-iterations", type=int, default=None,
                   help="iterations of the single-scale run, so that its curve can cover the "
                        "coarse-to-fine runs' whole time (default: --quality-iterations)")
    p.add_argument("--quality-starts", type=_ints, default=[256, 362],
                   help="--start-size of the coarse-to-fine variants, px (default: 256,362)")
    p.add_argument("--quality-coarse-iterations", type=_ints, default=[50, 100],
                   help="--coarse-iterations of the coarse-to-fine variants (default: 50,100)")
    p.add_argument("--quality-images", default=None, metavar="DIR",
                   help="also write each variant's output into this folder")
    p.add_argument("--tiled-memory-sizes", type=_ints, default=[],
                   help="peak memory of one tiled evaluation (--tile-size) at these sizes")
    p.add_argument("--tile-size", type=int, default=512, help="tile side for --tiled-memory-sizes")
    p.add_argument("--tile-overhead-size", type=int, default=None,
                   help="time evaluations at this size untiled and with --tile-size auto's tile "
                        "(for an 8 GB budget)")
    p.add_argument("--profile-sizes", type=_ints, default=[],
                   help="split one evaluation's time (convolutions, matrix products, the rest) "
                        "at these sizes, nst_jax and the PyTorch baseline")
    p.add_argument("--startup-sizes", type=_ints, default=[],
                   help="time each stage of a first and of a repeated start-up at these sizes")
    p.add_argument("--binding-sizes", type=_ints, default=[],
                   help="compare the weights and targets as compile-time constants and as "
                        "arguments at these sizes: compile time and seconds per evaluation")
    p.add_argument("--neural-style-pt", default=None, metavar="DIR",
                   help="a checkout of ProGamerGov/neural-style-pt: run scripts/stylize.py against "
                        "it, whole processes side by side (needs the bench extra; see README, "
                        "Performance)")
    p.add_argument("--peer-sizes", type=_ints, default=list(DEFAULT_SIZES),
                   help="sizes for --neural-style-pt, px (default: 128,256,512)")
    p.add_argument("--peer-iterations", type=_ints, default=[5, 45],
                   help="SHORT,LONG: iterations of the two runs whose difference gives the cost "
                        "per iteration (default: 5,45; with 5,25 the difference at 128 px is "
                        "2 s, no more than the spread of a process's start-up)")
    p.add_argument("--peer-rounds", type=int, default=2,
                   help="alternating rounds after the cold one (medians; default: 2)")
    p.add_argument("--race-iterations", type=int, default=200,
                   help="iterations of neural-style-pt in the same-loss race (0: skip it)")
    p.add_argument("--race-fractions", type=_reals, default=[0.5, 0.6],
                   help="nst_jax's iterations in the race, as fractions of --race-iterations")
    p.add_argument("--race-repeats", type=int, default=2,
                   help="runs of nst_jax per fraction: the first compiles, the next are "
                        "repeated runs (default: 2)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per case")
    p.add_argument("--output", default="bench.json", help="JSON results")
    p.add_argument("--markdown", default=None, help="also write the tables here")
    args = p.parse_args(argv)
    return run(args)


def run(args) -> int:
    from nst_jax import optimize
    from nst_jax.apps.common import runner

    backends = [b for b in args.backends.split(",") if b]
    unknown = [b for b in backends if b != "torch" and b not in optimize.OPTIMIZERS[:3]]
    if unknown:
        raise NSTError(f"unknown backend(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(optimize.OPTIMIZERS[:3])}, torch")
    every_size = (args.sizes + args.remat_sizes + args.bfloat16_sizes + args.memory_sizes
                  + args.binding_sizes + args.startup_sizes + args.profile_sizes)
    if (not args.sizes and not args.quality_sizes and not args.tiled_memory_sizes
            and not args.tile_overhead_size and not args.neural_style_pt
            and not args.binding_sizes and not args.startup_sizes
            and not args.profile_sizes) or min(every_size, default=32) < 32 or (
            not args.checkpoints or min(args.checkpoints) < 1):
        raise NSTError("--sizes (and the other sizes) must be >= 32 px and --checkpoints >= 1")
    quality = None
    if args.quality_sizes:
        if min(args.quality_sizes + args.quality_starts) < 32 or min(
                args.quality_iterations, args.quality_single_iterations or 1) < 1 or (
                not args.quality_coarse_iterations or min(args.quality_coarse_iterations) < 1):
            raise NSTError("--quality-sizes and --quality-starts must be >= 32 px, and "
                           "--quality-iterations and --quality-coarse-iterations >= 1")
        if args.quality_images:
            from nst_jax.files import check_writable_folder

            check_writable_folder(args.quality_images)
            args.quality_images = os.path.abspath(args.quality_images)
        quality = {"sizes": args.quality_sizes, "iterations": args.quality_iterations,
                   "single_iterations": args.quality_single_iterations,
                   "starts": args.quality_starts, "coarse": args.quality_coarse_iterations,
                   "images": args.quality_images}
    if args.repeats < 1:
        raise NSTError(f"--repeats must be >= 1, got {args.repeats}")
    tiled = None
    if args.tiled_memory_sizes or args.tile_overhead_size:
        if min(args.tiled_memory_sizes + [args.tile_overhead_size or 64]) < 32 or args.tile_size < 64:
            raise NSTError("--tiled-memory-sizes must be >= 32 px and --tile-size >= 64")
        tiled = {"sizes": args.tiled_memory_sizes, "tile": args.tile_size,
                 "overhead_size": args.tile_overhead_size}
    peer = None
    if args.neural_style_pt:
        from nst_jax.apps.benchmark import peer as peer_tool
        from nst_jax.apps.benchmark.torch_baseline import require_torch

        peer_tool.check_checkout(args.neural_style_pt)
        require_torch()
        sizes = args.peer_sizes
        if (len(args.peer_iterations) != 2 or not 1 <= args.peer_iterations[0]
                < args.peer_iterations[1] or args.peer_rounds < 1 or args.race_iterations < 0
                or args.race_repeats < 1 or not sizes or min(sizes) < 32
                or not args.race_fractions or not all(0 < f <= 10 for f in args.race_fractions)):
            raise NSTError("--peer-iterations must be SHORT,LONG with 1 <= SHORT < LONG, "
                           "--peer-rounds >= 1, --race-iterations >= 0, --race-fractions in (0, 10], "
                           "--race-repeats >= 1 and the sizes >= 32 px")
        peer = {"checkout": args.neural_style_pt, "sizes": sizes,
                "short": args.peer_iterations[0], "long": args.peer_iterations[1],
                "rounds": args.peer_rounds, "race_iterations": args.race_iterations,
                "race_fractions": args.race_fractions, "race_repeats": args.race_repeats}
    if args.memory_limit_gb and len(args.memory_sizes) < 2:
        raise NSTError("--memory-limit-gb needs at least two --memory-sizes")
    for path in (args.output, args.markdown):
        if path:
            check_writable(path)
    runner.phase("benchmarking", f"the cases finished so far are in {args.output}")

    def save(results):
        write_text(args.output, json.dumps(results, indent=1))
        if args.markdown:
            write_text(args.markdown, markdown(results))
        runner.check_interrupt()  # a safe point between cases

    results = run_benchmark(args.sizes, backends, sorted(args.checkpoints), args.repeats,
                            args.remat_sizes, args.bfloat16_sizes, args.memory_sizes,
                            args.memory_limit_gb, args.parity_size, args.timeout,
                            log=lambda m: print(m, file=sys.stderr, flush=True), save=save,
                            quality=quality, tiled=tiled, peer=peer,
                            binding_sizes=args.binding_sizes,
                            startup_sizes=args.startup_sizes,
                            profile_sizes=args.profile_sizes)
    sys.stdout.write(markdown(results))
    return runner.ExitCode.OK




if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))
