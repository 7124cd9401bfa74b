"""The parity case: the largest relative differences between nst_jax and the PyTorch
baseline (:mod:`nst_jax.apps.benchmark.torch_baseline`) at one size (``--parity-size``),
checked before anything is timed."""
from __future__ import annotations

from typing import Callable

from nst_jax.apps.benchmark import worker
from nst_jax.apps.benchmark.evaluation import square_pair

STANDALONE = False


def parity_case(size: int) -> dict:
    """Largest relative differences between nst_jax and the PyTorch baseline at ``size``."""
    from nst_jax import stylize, weights
    from nst_jax.apps.benchmark import torch_baseline
    from nst_jax.weight_sources.download import ensure_weights

    params, preprocessing = weights.load_params(ensure_weights(log=lambda m: None))
    content, style = square_pair(size)
    return torch_baseline.parity(params, content, style, stylize.Config(), preprocessing)


CASE = parity_case


def add_flags(p) -> None:
    p.add_argument("--parity-size", type=int, default=64,
                   help="check nst_jax against the PyTorch baseline at this size (0: skip)")


def plan(args) -> dict | None:
    return {"size": args.parity_size} if args.parity_size else None


def run(results: dict, size: int, timeout: float | None = None,
        log: Callable[[str], None] = print,
        save: Callable[[dict], None] = lambda results: None) -> None:
    log(f"parity with the PyTorch baseline at {size} px ...")
    results["parity"] = {"size": size, **worker.run_in_subprocess("parity", timeout=timeout, size=size)}
    save(results)


def markdown(results: dict) -> list[str]:
    parity = results.get("parity")
    if parity and "error" not in parity:
        return ["", f"Parity with the PyTorch baseline ({parity['size']} px): activations "
                f"{max(parity['features'].values()):.1e}, losses {max(parity['losses'].values()):.1e}, "
                f"gradient {parity['gradient']:.1e} (largest relative differences)."]
    if parity:
        return ["", f"Parity: {parity['error']}"]
    return []
