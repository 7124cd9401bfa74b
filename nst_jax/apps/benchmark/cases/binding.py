"""The binding case (``--binding-sizes``): the weights and targets as compile-time constants
against arguments (what :func:`nst_jax.stylize.prepare` does), alternating, two rounds."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.machine import peak_memory_bytes
from nst_jax.apps.benchmark.options import check_sizes, ints
from nst_jax.apps.benchmark.report import gb

STANDALONE = True
ROUNDS = 2


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


CASE = binding_case


def add_flags(p) -> None:
    p.add_argument("--binding-sizes", type=ints, default=[],
                   help="compare the weights and targets as compile-time constants and as "
                        "arguments at these sizes: compile time and seconds per evaluation")


def plan(args) -> dict | None:
    check_sizes(args.binding_sizes)
    return {"sizes": args.binding_sizes, "rounds": ROUNDS} if args.binding_sizes else None


def run(results: dict, sizes: Sequence[int], rounds: int, timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """At each of ``sizes``, ``rounds`` times: constants, then arguments."""
    for size in sizes:
        for r in range(rounds):
            for constants in (True, False):
                log(f"{size} px, weights and targets as {'constants' if constants else 'arguments'}"
                    f" (round {r + 1}) ...")
                case = worker.run_in_subprocess("binding", timeout=timeout, size=size,
                                                constants=constants)
                results.setdefault("binding", []).append(case)
                save(results)


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
                     f"{c['s_per_evaluation_in_loop']:.4f} | {gb(c['memory']['rss'])} |")
    return lines


def markdown(results: dict) -> list[str]:
    return binding_markdown(results.get("binding", []))
