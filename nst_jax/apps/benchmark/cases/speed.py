"""The speed case: at one square size, compile time and seconds per loss+gradient
evaluation (median after warm-up), the FLOPs of one evaluation against the machine's
matmul peak, and per L-BFGS backend (the PyTorch baseline's too) seconds per iteration,
evaluations per iteration, the overhead beyond its evaluations, and the lowest loss within
each checkpoint's number of evaluations, every backend from the same white noise.

Flags: ``--sizes``, ``--backends``, ``--checkpoints``, ``--repeats``, ``--remat-sizes``.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.evaluation import evaluation
from nst_jax.apps.benchmark.machine import (evaluation_flops, matmul_peak, median_seconds,
                                            peak_memory_bytes)
from nst_jax.apps.benchmark.options import DEFAULT_SIZES, SIZES_RULE, check_sizes, ints
from nst_jax.apps.benchmark.report import gb
from nst_jax.errors import NSTError

DEFAULT_CHECKPOINTS = (50, 100, 300)
DEFAULT_BACKENDS = ("lbfgs", "lbfgs-stepwise", "torch")
STANDALONE = False  # the memory, parity and bfloat16 results are shown after its table


# --- in the worker ---------------------------------------------------------------------------

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

    from nst_jax import driver, stylize
    from nst_jax.stop import Stop

    job = stylize.prepare(content, style, params, config, preprocessing=preprocessing)
    start = time.perf_counter()
    job.step(1)  # compiles
    jax.block_until_ready(job.state)
    compile_and_first = time.perf_counter() - start
    first_evals, first_iterations = int(job.state.evaluations), int(job.state.iteration)
    start = time.perf_counter()
    spent = Stop()  # the evaluation budget is spent
    if first_evals >= evaluations:
        spent.set()
    for _ in driver.advance(job, chunk=chunk, stop=spent):
        jax.block_until_ready(job.state)
        if int(job.state.evaluations) >= evaluations:
            spent.set()
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


def speed_case(size: int, backends: Sequence[str], checkpoints: Sequence[int], repeats: int,
               remat: bool = False, precision: str = "float32", seed: int = 0) -> dict:
    """Everything measured at one size (runs in the worker process)."""
    from nst_jax import stylize

    # Unconstrained pixels, as the PyTorch baseline's: the losses compare like with like.
    config = stylize.Config(remat=remat, precision=precision, seed=seed,
                            iterations=max(checkpoints) + 1, bounds="none")
    params, preprocessing, content, style, value_and_grad, data = evaluation(size, config)
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


CASE = speed_case


# --- in the benchmark's process --------------------------------------------------------------

def add_flags(p) -> None:
    p.add_argument("--sizes", type=ints, default=list(DEFAULT_SIZES), help="square image sizes, px")
    p.add_argument("--backends", default=",".join(DEFAULT_BACKENDS),
                   help="L-BFGS backends to run: nst_jax's lbfgs, lbfgs-stepwise, lbfgs-jaxopt, "
                        "and torch (the PyTorch baseline, skipped with a note if not installed)")
    p.add_argument("--checkpoints", type=ints, default=list(DEFAULT_CHECKPOINTS),
                   help="report the loss after these numbers of evaluations (the largest is the budget)")
    p.add_argument("--repeats", type=int, default=5, help="timed evaluations per size (median)")
    p.add_argument("--remat-sizes", type=ints, default=[],
                   help="also time evaluations at these sizes with --remat")


def backends(args) -> list[str]:
    """The backends ``--backends`` names; :class:`NSTError` for an unknown one."""
    from nst_jax import optimize

    names = [b for b in args.backends.split(",") if b]
    unknown = [b for b in names if b != "torch" and b not in optimize.OPTIMIZERS[:3]]
    if unknown:
        raise NSTError(f"unknown backend(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(optimize.OPTIMIZERS[:3])}, torch")
    return names


def plan(args) -> dict | None:
    """The keywords of :func:`run`, or None without ``--sizes`` and ``--remat-sizes``; the
    backends, checkpoints and repeats are checked either way (the bfloat16 and tiled kinds
    use them too)."""
    names = backends(args)
    check_sizes(args.sizes + args.remat_sizes)
    if not args.checkpoints or min(args.checkpoints) < 1:
        raise NSTError(SIZES_RULE)
    if args.repeats < 1:
        raise NSTError(f"--repeats must be >= 1, got {args.repeats}")
    if not args.sizes and not args.remat_sizes:
        return None
    return {"sizes": args.sizes, "backends": names, "checkpoints": sorted(args.checkpoints),
            "repeats": args.repeats, "remat_sizes": args.remat_sizes}


def measure(results: dict, size: int, label: str, checkpoints: Sequence[int], repeats: int,
            timeout: float | None, log: Callable[[str], None], save: Callable[[dict], None],
            **variant) -> None:
    """One speed case (``variant``: its backends, remat, precision) into ``results["speed"]``."""
    log(f"{size} px{label} ...")
    case = worker.run_in_subprocess("speed", timeout=timeout, size=size,
                                    checkpoints=list(checkpoints), repeats=repeats, **variant)
    results["speed"].append(case)
    log(summary_line(case))
    save(results)


def run(results: dict, sizes: Sequence[int], backends: Sequence[str], checkpoints: Sequence[int],
        repeats: int, remat_sizes: Sequence[int], timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """Every backend at each of ``sizes``, then evaluations only with remat at ``remat_sizes``."""
    for size in sizes:
        measure(results, size, f", backends {','.join(backends)}", checkpoints, repeats, timeout,
                log, save, backends=list(backends))
    for size in remat_sizes:
        measure(results, size, " with --remat (evaluations only)", checkpoints, repeats, timeout,
                log, save, backends=[], remat=True)


def summary_line(case: dict) -> str:
    """One speed case in one line, for the log."""
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


def markdown(results: dict) -> list[str]:
    """The evaluations table (every speed case, bfloat16's included), then the backends'."""
    speed = [c for c in results["speed"] if "error" not in c]
    lines = ["| size | precision | remat | compile s | s / evaluation | GFLOP / evaluation | "
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
            f"{c['gflops_per_s'] / c['peak_gflops']:.0%} | {torch_cells} | {gb(c['memory_before_backends']['rss'])} |")
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
    return lines
