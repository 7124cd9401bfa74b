"""The style distances case (``--distance-sizes``): what each style distance of
:mod:`nst_jax.distances` costs per evaluation of the loss and its gradient, as a ratio to
Gram's (the paper's eq. 4) timed side by side in one process, and the two ways of taking
``tr(X^(1/2))`` (:data:`nst_jax.distances.SQRTM_METHODS`) on the real conv4_1 and conv5_1
covariances: time under ``jit`` and ``vmap``, and accuracy in float32 against a float64
reference (docs/style-distances.md)."""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.options import check_sizes, ints
from nst_jax.errors import NSTError

STANDALONE = True
# Each a Config.style_loss; gram first: the others' ratios are to it.
STYLE_LOSSES = ("gram", "mean-cov", "sliced", "histogram", "gram,histogram")
DEFAULT_REPEATS = 3
# The covariances of the square-root micro-benchmark: VGG19's 512-channel style layers.
SQRT_LAYERS = ("conv4_1", "conv5_1")


def distances_case(size: int, repeats: int) -> dict:
    """:func:`measure` on the bundled pair at ``size`` px (long side) with the real VGG19
    (runs in the worker process)."""
    import hashlib
    import pathlib

    from nst_jax import distances, stylize

    # Which nst_jax/distances.py was measured (the file changes while the distances do).
    source = hashlib.sha256(pathlib.Path(distances.__file__).read_bytes()).hexdigest()[:12]
    config = stylize.Config(size=size)
    inputs = stylize.load_inputs(config)
    network = stylize.load_network(config, inputs.content, inputs.styles)
    load = os.getloadavg()[0]
    result = measure(network, inputs.content, inputs.styles[0], repeats, config)
    return {"size": size, **result, "distances_sha256": source,
            "load_average": [load, os.getloadavg()[0]]}


CASE = distances_case


def measure(network, content: np.ndarray, style: np.ndarray, repeats: int, config=None,
            style_losses: Sequence[str] = STYLE_LOSSES) -> dict:
    """The losses' and the square roots' timings for one image pair.

    Args:
      network: a :class:`nst_jax.stylize.Network` (module, params, preprocessing).
      content, style: ``(H, W, 3)`` float32 in [0, 1].
      repeats: timed rounds after a warm-up call (medians are reported).
      config: the run's other settings (layers, weights, seed); None: the defaults.
    Returns:
      ``{"shape", "repeats", "losses", "matrices", "sqrtm"}``: :func:`time_losses`, what
      the :func:`covariances` are and :func:`time_trace_sqrt` of them.
    """
    from nst_jax import stylize

    config = config or stylize.Config()
    rows = time_losses(network, content, style, repeats, config, style_losses)
    matrices, eps, about = covariances(network, content, style, config)
    return {"shape": list(np.shape(content)[:2]), "repeats": repeats, "losses": rows,
            "matrices": about, "sqrtm": time_trace_sqrt(matrices, eps, repeats)}


def _programs(network, content, style, config, style_losses) -> dict:
    """``{label: (jitted value-and-gradient, its arguments, what it is)}``: the loss of
    :func:`nst_jax.stylize.build_loss_fn` for each of ``style_losses`` and, for
    ``mean-cov``, the same loss with each square root of :data:`SQRTM_METHODS`."""
    import jax

    from nst_jax import distances, stylize

    module, params, preprocessing = network.module, network.params, network.preprocessing
    x0 = stylize.white_noise(config.seed, np.shape(content))
    grad = jax.jit(jax.value_and_grad(lambda x, w, d, fn: fn(x, w, d)[0], argnums=0),
                   static_argnums=3)
    variables = None  # the network's, on the device once for every loss
    programs = {}
    for name in style_losses:
        run = config.replace(style_loss=name)
        loss = stylize.build_loss_fn(params, content, [style], run.content_layers,
                                     run.style_layers, module, preprocessing,
                                     **stylize.distance_arguments(run))
        if variables is None:
            variables = jax.device_put(loss.data[0])
        data = (variables, jax.device_put(loss.data[1]))
        weights = stylize.loss_weights(run)
        programs[name] = (grad, (x0, weights, data, loss.fn), {"style_loss": run.style_loss,
                                                               "sqrtm": None})
        if name != "mean-cov":
            continue
        layers = tuple(run.content_layers) + tuple(run.style_layers)
        for method in distances.SQRTM_METHODS:
            fn = _loss_with_sqrtm(module, preprocessing, layers, method)
            programs[f"mean-cov:{method}"] = (grad, (x0, weights, data, fn),
                                              {"style_loss": run.style_loss, "sqrtm": method})
    return programs


def _loss_with_sqrtm(module, preprocessing, layers: tuple[str, ...], method: str) -> Callable:
    """``fn(pixels, weights, (variables, targets)) -> (total, style)``: eq. 7 as
    :func:`nst_jax.losses.total_loss` computes it, with the style term's square root
    ``method``: total_loss takes none (:func:`nst_jax.losses.mixed_style_loss` does)."""
    from nst_jax import losses, stylize

    def fn(pixels, weights, data):
        variables, targets = data
        features = stylize.make_features_fn(variables, layers, module, preprocessing)(pixels)
        content = losses.weighted_content_loss(features, targets.content,
                                               weights.content_layer_weights)
        style = losses.mixed_style_loss(features, targets, weights, sqrtm=method)
        total = (weights.alpha * content + weights.beta * style
                 + weights.tv_weight * losses.total_variation(pixels))
        return total, style

    return fn


def time_losses(network, content, style, repeats: int, config,
                style_losses: Sequence[str] = STYLE_LOSSES) -> list[dict]:
    """One loss-and-gradient evaluation (``jax.value_and_grad`` of the jitted loss at white
    noise) of each style loss, compiled first, then timed in ``repeats`` rounds of one call
    each, taken in turn (so that the machine's load falls on all of them alike).

    Each row: ``label``, ``style_loss``, ``sqrtm`` (None: the library's default),
    ``compile_s``, ``seconds`` (per round), ``s_per_evaluation`` (their median),
    ``ratio_to_gram`` (the median over rounds of its time over gram's in the same round;
    None without a gram row), ``loss`` (at white noise) and ``finite`` (the loss and its
    gradient)."""
    import jax

    programs = _programs(network, content, style, config, style_losses)
    compiled, rows = {}, {}
    for label, (fn, args, what) in programs.items():
        began = time.perf_counter()
        compiled[label] = fn.lower(*args).compile()
        compile_s = time.perf_counter() - began
        value, gradient = jax.block_until_ready(compiled[label](*args[:3]))  # the warm-up
        rows[label] = {"label": label, **what, "compile_s": compile_s, "seconds": [],
                       "loss": float(value),
                       "finite": bool(np.isfinite(value) and np.all(np.isfinite(gradient)))}
    for _ in range(repeats):
        for label, (_, args, _) in programs.items():
            began = time.perf_counter()
            jax.block_until_ready(compiled[label](*args[:3]))
            rows[label]["seconds"].append(time.perf_counter() - began)
    gram = rows.get("gram")
    for row in rows.values():
        row["s_per_evaluation"] = statistics.median(row["seconds"])
        row["ratio_to_gram"] = (None if gram is None else statistics.median(
            [t / g for t, g in zip(row["seconds"], gram["seconds"])]))
    return list(rows.values())


def covariances(network, content, style, config) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The matrices whose square root's trace ``mean-cov`` takes (``C_s^(1/2) C C_s^(1/2)``,
    :func:`nst_jax.distances.mean_cov_error`), at each of :data:`SQRT_LAYERS`, ``C`` the
    covariance of the content image's and of the white noise's features: ``(4, N, N)``
    float32, the regularisation ``eps`` of each (``(4,)``, as the loss takes it from the
    target: :data:`nst_jax.distances.EPS_RELATIVE` ``(tr C_s / N)^2``), and what each is."""
    import jax.numpy as jnp

    from nst_jax import distances, stylize

    features_fn = stylize.make_features_fn(network.params, SQRT_LAYERS, network.module,
                                           network.preprocessing)
    style_features = features_fn(jnp.asarray(style))
    generated = {"content": features_fn(jnp.asarray(content)),
                 "white noise": features_fn(stylize.white_noise(config.seed, np.shape(content)))}
    matrices, eps, about = [], [], []
    for layer in SQRT_LAYERS:
        target = distances.mean_cov_target(*map(np.asarray, distances.moments(style_features[layer])))
        channels = target["mean"].shape[-1]
        for image, features in generated.items():
            mean, second = distances.moments(features[layer])
            cov = second - jnp.outer(mean, mean)
            cross = jnp.asarray(target["cov_sqrt"]) @ cov @ jnp.asarray(target["cov_sqrt"])
            matrices.append(np.asarray(cross, np.float32))
            eps.append(distances.EPS_RELATIVE * (float(target["cov_trace"]) / channels) ** 2)
            largest = float(np.linalg.eigvalsh(matrices[-1].astype(np.float64))[-1])
            about.append({"layer": layer, "image": image,
                          "positions": int(np.prod(features[layer].shape[:2])),
                          "eps": eps[-1], "eps_over_largest": eps[-1] / largest})
    return np.stack(matrices), np.asarray(eps, np.float32), about


def exact_trace_sqrt(matrix: np.ndarray) -> float:
    """``tr(X^(1/2))`` of a symmetric ``matrix`` in float64 (NumPy's eigh, eigenvalues
    below 0 taken as 0), unregularised: what ``mean-cov`` means."""
    x = np.asarray(matrix, np.float64)
    return float(np.sum(np.sqrt(np.maximum(np.linalg.eigvalsh(0.5 * (x + x.T)), 0.0))))


def _relative(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def time_trace_sqrt(matrices: np.ndarray, eps: np.ndarray, repeats: int) -> list[dict]:
    """``jax.value_and_grad`` of each ``tr(X^(1/2))`` of :data:`nst_jax.distances.TRACE_SQRT`
    on ``matrices`` ``(M, N, N)`` (float32, symmetric positive semi-definite) with their
    ``eps`` ``(M,)``, jitted (one matrix a call) and ``vmap``-ped (all at once).

    Each row: ``method``, ``mode`` (``jit`` / ``vmap``), ``matrices`` (per call),
    ``channels``, ``compile_s``, ``seconds`` (``repeats`` rounds after a warm-up),
    ``s_per_call`` (their median), ``finite`` (every value and gradient), and the largest
    relative errors over the matrices: ``value_error`` to :func:`exact_trace_sqrt` (all
    that the method, its regularisation and float32 change), ``float32_value_error`` and
    ``float32_gradient_error`` (Frobenius) to the same function in float64 (the rounding
    alone: how stable it is in float32)."""
    import jax
    import jax.numpy as jnp

    from nst_jax import distances

    matrices, eps = np.asarray(matrices, np.float32), np.asarray(eps, np.float32)
    exact = [exact_trace_sqrt(m) for m in matrices]
    stack, eps_stack = jnp.asarray(matrices), jnp.asarray(eps)
    rows = []
    for method in distances.SQRTM_METHODS:
        single = jax.value_and_grad(distances.TRACE_SQRT[method])
        with jax.enable_x64(True):
            values64, gradients64 = map(np.asarray, jax.jit(jax.vmap(single))(
                jnp.asarray(matrices, jnp.float64), jnp.asarray(eps, jnp.float64)))
        for mode, fn, args in (("jit", jax.jit(single), list(zip(stack, eps_stack))),
                               ("vmap", jax.jit(jax.vmap(single)), [(stack, eps_stack)])):
            began = time.perf_counter()
            compiled = fn.lower(*args[0]).compile()
            compile_s = time.perf_counter() - began
            outputs = [jax.block_until_ready(compiled(*a)) for a in args]  # the warm-up
            values = np.concatenate([np.atleast_1d(np.asarray(v)) for v, _ in outputs])
            gradients = np.concatenate([np.asarray(g).reshape(-1, *matrices.shape[1:])
                                        for _, g in outputs])
            seconds = []
            for _ in range(repeats):
                for a in args:
                    began = time.perf_counter()
                    jax.block_until_ready(compiled(*a))
                    seconds.append(time.perf_counter() - began)
            rows.append({
                "method": method, "mode": mode, "matrices": len(stack) // len(args),
                "channels": int(matrices.shape[-1]), "compile_s": compile_s,
                "seconds": seconds, "s_per_call": statistics.median(seconds),
                "value_error": max(abs(float(v) - t) / t for v, t in zip(values, exact)),
                "float32_value_error": max(abs(float(v) - t) / abs(t)
                                           for v, t in zip(values, values64)),
                "float32_gradient_error": max(_relative(g, r)
                                              for g, r in zip(gradients, gradients64)),
                "finite": bool(np.all(np.isfinite(values)) and np.all(np.isfinite(gradients)))})
    return rows


def add_flags(p) -> None:
    p.add_argument("--distance-sizes", type=ints, default=[],
                   help="time one loss-and-gradient evaluation of each style distance "
                        f"({', '.join(STYLE_LOSSES)}) against gram's, and the square roots of "
                        "mean-cov, at these sizes")
    p.add_argument("--distance-repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"timed rounds of those (medians) (default: {DEFAULT_REPEATS})")


def plan(args) -> dict | None:
    check_sizes(args.distance_sizes)
    if not args.distance_sizes:
        return None
    if args.distance_repeats < 1:
        raise NSTError("--distance-repeats must be >= 1")
    return {"sizes": args.distance_sizes, "repeats": args.distance_repeats}


def run(results: dict, sizes: Sequence[int], repeats: int, timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    """A process per size, into ``results["distances"]``."""
    for size in sizes:
        log(f"style distances at {size} px ...")
        case = worker.run_in_subprocess("distances", timeout=timeout, size=size, repeats=repeats)
        results.setdefault("distances", []).append(case)
        if "error" in case:
            log(f"  failed: {case['error']}")
        else:
            log("  " + ", ".join(f"{r['label']} {r['s_per_evaluation']:.3f} s" for r in case["losses"]))
        save(results)


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}x"


def distances_markdown(cases: Sequence[dict]) -> list[str]:
    """The tables of :func:`distances_case`: the losses, then the square roots."""
    if not cases:
        return []
    good = [c for c in cases if "error" not in c]
    repeats = good[0]["repeats"] if good else "?"
    lines = ["", "*The style distances: one evaluation of the loss and its gradient at white "
                 "noise on the bundled pair (jitted, compiled first; median of "
                 f"{repeats} rounds, each loss once a round in turn); × gram: the median over "
                 "rounds of its time over gram's in the same round. The mean-cov rows with a "
                 "square root name compute eq. 7 as total_loss does with that "
                 "nst_jax.distances.TRACE_SQRT.*", "",
             "| size | style loss | square root | s / evaluation | × gram | compile s | "
             "loss at white noise | finite |", "|---|---|---|---|---|---|---|---|"]
    for c in cases:
        if "error" in c:
            lines.append(f"| {c.get('size', '?')} | failed: {c['error']} | | | | | | |")
            continue
        for r in c["losses"]:
            lines.append(f"| {c['size']} | {r['style_loss']} | {r['sqrtm'] or 'default'} | "
                         f"{r['s_per_evaluation']:.3f} | {_ratio(r['ratio_to_gram'])} | "
                         f"{r['compile_s']:.1f} | {r['loss']:.4g} | "
                         f"{'yes' if r['finite'] else 'no'} |")
    if not good:
        return lines
    lines += ["", "*tr(X^(1/2)) and its gradient (jax.value_and_grad) in float32 on the "
                  "matrices mean-cov takes it of, C_s^(1/2) C C_s^(1/2), at "
                  f"{' and '.join(SQRT_LAYERS)} with C the content image's and the white "
                  "noise's covariance, each with the loss's eps (nst_jax.distances.EPS_RELATIVE "
                  "(tr C_s / N)^2): jit, one matrix a call; vmap, all at once. Errors, the "
                  "largest over the matrices, relative: the value to the exact, unregularised "
                  "tr(X^(1/2)) (NumPy's float64 eigh of the same float32 matrix); float32: the "
                  "value and the gradient (Frobenius) to the same function in float64.*", "",
              "| size | method | mode | matrices × channels a call | s / call | compile s | "
              "value rel. error | float32 value error | float32 gradient error | finite |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in good:
        for r in c["sqrtm"]:
            lines.append(f"| {c['size']} | {r['method']} | {r['mode']} | {r['matrices']} × "
                         f"{r['channels']} | {r['s_per_call']:.4f} | {r['compile_s']:.2f} | "
                         f"{r['value_error']:.1e} | {r['float32_value_error']:.1e} | "
                         f"{r['float32_gradient_error']:.1e} | "
                         f"{'yes' if r['finite'] else 'no'} |")
    # Fewer positions than channels: a singular covariance, whose (N, N) matrix the loss
    # does not take (nst_jax.distances.mean_cov_distance takes an (M, M) one instead).
    lines += ["", "The matrices (content; white noise): " + "; ".join(
        f"{c['size']} px: " + ", ".join(
            f"{layer} {ms[0]['positions']} positions, eps "
            + " and ".join(f"{m['eps_over_largest']:.1e}" for m in ms)
            for layer in SQRT_LAYERS
            for ms in [[m for m in c["matrices"] if m["layer"] == layer]])
        for c in good) + f" of the largest eigenvalue (channels: "
        f"{good[0]['sqrtm'][0]['channels']}; with fewer positions M than channels the loss "
        "takes the square root of an M × M matrix instead)."]
    return lines


def markdown(results: dict) -> list[str]:
    return distances_markdown(results.get("distances", []))
