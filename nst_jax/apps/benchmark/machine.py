"""What the benchmark measures with: the machine, its float32 matmul peak, the FLOPs of one
evaluation, median wall times and peak memory.

JAX is imported inside the functions: a worker process (:mod:`.worker`) pays for it where
a case says so, and the start-up case times that import itself.
"""
from __future__ import annotations

import os
import platform
import resource
import time
from typing import Callable, Sequence

import numpy as np


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
