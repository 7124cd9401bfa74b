"""Side by side with the real PyTorch port: ``scripts/stylize.py`` against
ProGamerGov/neural-style-pt, whole processes, as a user runs them.

neural-style-pt is not vendored: pass a checkout of its public repository
(``scripts/bench.py --neural-style-pt DIR``). It runs on PyTorch (the ``bench``
extra) with *our* weights, converted by :func:`write_model` into the state dict
its ``CaffeLoader`` reads (the Keras / Caffe VGG19 both use: BGR, mean pixel
subtracted, 0-255), average pooling, L-BFGS, no TV term, from its own random
start, on the same images at the same size.

What is measured (:func:`compare`): for each size, each tool is run for
``short`` and ``long`` iterations, alternating nst_jax and the peer in the same
order each round, so both see the same machine. The cost of an iteration is
``(t_long - t_short) / (long - short)`` (start-up cancels), and the start-up
is ``t_short - short * cost``: process start, imports, weights, targets and
compilation, up to the first iteration.

neural-style-pt imports ``torchvision`` only for ``transforms`` (loading and
resizing the images, before anything is timed per iteration). Where torchvision
is missing or does not load with the installed PyTorch, :func:`torchvision_shim`
puts a stand-in with those six transforms (PIL resize, to-tensor, normalise) on
its path; its optimisation loop is untouched.
"""
from __future__ import annotations

import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np

from nst_jax.errors import NSTError

SCRIPT = "neural_style.py"
# Its file name must contain "vgg19" (CaffeLoader picks the architecture by name).
MODEL_NAME = "nst_jax-vgg19.pth"

_SHIM = '''"""A stand-in for torchvision.transforms (written by nst_jax.apps.benchmark.peer): only what
neural-style-pt uses, for loading images; never used for timing anything else."""
import torch
import numpy as np
from PIL import Image


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    def __init__(self, size):
        self.size = size  # (h, w)

    def __call__(self, image):
        h, w = self.size
        return image.resize((w, h), Image.BILINEAR)


class ToTensor:
    def __call__(self, image):
        a = np.asarray(image, np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


class Normalize:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, x):
        return (x - self.mean) / self.std


class Lambda:
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class ToPILImage:
    def __call__(self, x):
        a = (x.detach().numpy().transpose(1, 2, 0) * 255.0).round().clip(0, 255)
        return Image.fromarray(a.astype(np.uint8))
'''


def check_checkout(path: str | os.PathLike) -> pathlib.Path:
    """The neural-style-pt checkout at ``path``, or :class:`NSTError` saying what is missing."""
    root = pathlib.Path(path)
    for name in (SCRIPT, "CaffeLoader.py"):
        if not (root / name).is_file():
            raise NSTError(f"{root} is not a neural-style-pt checkout: it has no {name} "
                           "(clone ProGamerGov/neural-style-pt and pass its folder)")
    return root


def state_dict(params) -> dict:
    """Our VGG19 params as neural-style-pt's ``features.N.weight`` / ``.bias`` (OIHW kernels),
    NumPy arrays: ``features`` is ``[conv, relu, (pool), ...]``, as ``buildSequential`` makes it."""
    from nst_jax.vgg import VGG19_BLOCKS, layer_names

    inner = params["params"]
    out, index = {}, 0
    names = iter(layer_names(VGG19_BLOCKS))
    for b, block in enumerate(VGG19_BLOCKS):
        for _ in block:
            name = next(names)
            kernel = np.asarray(inner[name]["kernel"], np.float32)  # (3, 3, Ci, Co)
            out[f"features.{index}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
            out[f"features.{index}.bias"] = np.asarray(inner[name]["bias"], np.float32)
            index += 2  # the conv and its ReLU
        index += 1  # the block's pooling
    return out


def write_model(params, folder: str | os.PathLike) -> pathlib.Path:
    """Save :func:`state_dict` with ``torch.save`` as ``folder/MODEL_NAME``; its path."""
    from nst_jax.apps.benchmark.torch_baseline import require_torch

    torch = require_torch()
    path = pathlib.Path(folder) / MODEL_NAME
    torch.save({k: torch.from_numpy(v) for k, v in state_dict(params).items()}, path)
    return path


def torchvision_works(python: str = sys.executable) -> bool:
    """Whether ``import torchvision.transforms`` succeeds in a fresh ``python``."""
    done = subprocess.run([python, "-c", "import torchvision.transforms"], capture_output=True)
    return done.returncode == 0


def torchvision_shim(folder: str | os.PathLike) -> pathlib.Path:
    """Write the stand-in ``torchvision`` package into ``folder``; the folder to put on the path."""
    package = pathlib.Path(folder) / "torchvision"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("from . import transforms  # noqa: F401\n")
    (package / "transforms.py").write_text(_SHIM)
    return pathlib.Path(folder)


def peer_command(checkout: pathlib.Path, model: pathlib.Path, content: str, style: str, size: int,
                 iterations: int, output: str, gpu: str = "c") -> list[str]:
    """neural-style-pt with the paper's choices our defaults make: avg pooling, L-BFGS,
    conv4_2 content and conv1_1-conv5_1 style (its defaults), no TV term; on the CPU
    (``gpu="c"``) or on GPU ``gpu`` ("0") with cuDNN."""
    device = ["-gpu", gpu] + ([] if gpu == "c" else ["-backend", "cudnn"])
    return [sys.executable, str(checkout / SCRIPT), "-content_image", content, "-style_image", style,
            "-image_size", str(size), "-num_iterations", str(iterations), *device,
            "-pooling", "avg", "-optimizer", "lbfgs", "-init", "random", "-seed", "0",
            "-tv_weight", "0", "-print_iter", "0", "-save_iter", "0", "-model_file", str(model),
            "-disable_check", "-output_image", output]


def nst_jax_command(content: str, style: str, size: int, iterations: int, output: str,
                    extra: Sequence[str] = ()) -> list[str]:
    """``scripts/stylize.py`` (through its module) with its defaults, at ``size``."""
    script = pathlib.Path(__file__).resolve().parents[3] / "scripts" / "stylize.py"
    if not script.is_file():  # an installed package without the repository's scripts/
        script = None
    head = [sys.executable, str(script)] if script else [sys.executable, "-c",
                                                          "import sys; from nst_jax.apps.common.runner "
                                                          "import stylize; sys.exit(stylize())"]
    return [*head, "--content", content, "--style",
            style, "--size", str(size), "--iterations", str(iterations), "--output", output,
            "--quiet", *extra]


def timed(command: list[str], env: dict | None = None, cwd: str | None = None,
          timeout: float | None = None) -> tuple[float, float]:
    """Wall seconds of ``command`` to its exit, and the CPU seconds (user + system) it used:
    their ratio is how many cores it kept busy. :class:`NSTError` with its last line if it
    failed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise NSTError(f"{pathlib.Path(command[1]).name} timed out after {timeout:.0f} s") from None
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise NSTError(f"{pathlib.Path(command[1]).name} failed: {tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def per_iteration(short: int, long: int, t_short: Sequence[float], t_long: Sequence[float]
                  ) -> dict:
    """Cost per iteration and start-up from runs of ``short`` and ``long`` iterations (medians
    over the rounds): ``s_per_iteration = (t_long - t_short) / (long - short)`` and
    ``startup_s = t_short - short * s_per_iteration``."""
    if long <= short:
        raise ValueError(f"long ({long}) must exceed short ({short})")
    ts, tl = float(np.median(t_short)), float(np.median(t_long))
    cost = (tl - ts) / (long - short)
    return {"s_per_iteration": cost, "startup_s": ts - short * cost, "t_short": list(t_short),
            "t_long": list(t_long)}


class Tools:
    """How to run each side: ``command(tool, content, style, size, iterations, output, extra)``
    gives the argv, ``env(tool)`` and ``cwd(tool)`` its environment and folder. Built by
    :func:`tools` for the real pair; tests pass stand-ins."""

    def __init__(self, command: Callable, env: dict[str, dict], cwd: dict[str, str | None]):
        self.command, self.env, self.cwd = command, env, cwd

    def run(self, tool: str, content: str, style: str, size: int, iterations: int, output: str,
            extra: Sequence[str] = (), timeout: float | None = None) -> tuple[float, float]:
        """``(wall seconds, CPU seconds)`` of one run (:func:`timed`)."""
        return timed(self.command(tool, content, style, size, iterations, output, extra),
                     env=self.env[tool], cwd=self.cwd[tool], timeout=timeout)


TOOLS = ("nst_jax", "peer")


def tools(checkout: str | os.PathLike, params, folder: str | os.PathLike) -> Tools:
    """The real pair: ``scripts/stylize.py`` with a compilation cache of its own in ``folder``
    (so that its first run is a first run), and neural-style-pt in ``checkout`` with our
    weights (:func:`write_model`) and, where needed, :func:`torchvision_shim`; on the GPU
    when JAX's default backend is one (and then PyTorch's first CUDA device), else both on
    the CPU."""
    import jax

    checkout = check_checkout(checkout).resolve()
    gpu = "0" if jax.default_backend() == "gpu" else "c"
    folder = pathlib.Path(folder)
    model = write_model(params, folder)
    peer_env = dict(os.environ)
    if not torchvision_works():
        peer_env["PYTHONPATH"] = os.pathsep.join(
            [str(torchvision_shim(folder / "shim"))]
            + ([peer_env["PYTHONPATH"]] if peer_env.get("PYTHONPATH") else []))
    jax_env = {**os.environ, "NST_JAX_CACHE_DIR": str(folder / "xla-cache")}
    jax_env.pop("JAX_COMPILATION_CACHE_DIR", None)

    def command(tool, content, style, size, iterations, output, extra=()):
        if tool == "nst_jax":
            return nst_jax_command(content, style, size, iterations, output, extra)
        return peer_command(checkout, model, content, style, size, iterations, output, gpu)

    return Tools(command, {"nst_jax": jax_env, "peer": peer_env}, {"nst_jax": None,
                                                                   "peer": str(checkout)})


def evaluations_of(path: str | os.PathLike) -> int | None:
    """The loss+gradient evaluations ``stylize.py`` recorded in its output's metadata (None
    where the file has none)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return int(image.text["nst_jax:evaluations"])
    except (OSError, KeyError, ValueError, AttributeError):
        return None


def compare(pair: Tools, folder: str | os.PathLike, size: int, content: str, style: str,
            short: int = 5, long: int = 45, rounds: int = 2, timeout: float | None = None,
            log: Callable[[str], None] = print) -> dict:
    """Seconds per iteration and start-up of both tools at ``size``, side by side.

    First each tool runs ``short`` and ``long`` iterations once, cold (nst_jax compiles,
    filling its cache): ``first_startup_s``. Then ``rounds`` rounds, each running
    nst_jax and the peer for ``short``, then both for ``long``: :func:`per_iteration` of
    their medians. ``ratio`` is the peer's cost per iteration over nst_jax's (above 1,
    nst_jax is faster); ``startup_gap_s`` is nst_jax's repeated start-up minus the peer's.
    nst_jax's ``evaluations_per_iteration`` comes from its outputs' metadata (between the
    short and the long run); the peer makes one per iteration (``torch.optim.LBFGS``
    without a line search: one call of its closure each). ``cores_busy``: the CPU seconds
    over the wall seconds of the iterations (the long runs less the short ones).
    """
    times = {tool: {"cold": {}, short: [], long: []} for tool in TOOLS}
    cpu = {tool: {short: [], long: []} for tool in TOOLS}
    evaluations = {}
    for r in range(rounds + 1):
        for n in (short, long):
            for tool in TOOLS:
                output = str(pathlib.Path(folder) / f"{tool}_{size}_{n}.png")
                seconds, cpu_seconds = pair.run(tool, content, style, size, n, output,
                                                timeout=timeout)
                if r == 0:
                    times[tool]["cold"][n] = seconds
                else:
                    times[tool][n].append(seconds)
                    cpu[tool][n].append(cpu_seconds)
                if tool == "nst_jax":
                    evaluations[n] = evaluations_of(output)
                log(f"{size} px, {tool}, {n} iterations: {seconds:.1f} s "
                    f"({'cold' if r == 0 else f'round {r}'})")
    case = {"size": size, "short": short, "long": long, "rounds": rounds}
    for tool in TOOLS:
        case[tool] = per_iteration(short, long, times[tool][short], times[tool][long])
        case[tool]["first_startup_s"] = (times[tool]["cold"][short]
                                         - short * case[tool]["s_per_iteration"])
        # Cores kept busy by the iterations: CPU seconds over wall seconds of the difference.
        busy = (np.median(cpu[tool][long]) - np.median(cpu[tool][short])) / (
            np.median(times[tool][long]) - np.median(times[tool][short]))
        case[tool]["cores_busy"] = float(busy)
    if None not in (evaluations[short], evaluations[long]):
        case["nst_jax"]["evaluations_per_iteration"] = (
            (evaluations[long] - evaluations[short]) / (long - short))
    case["peer"]["evaluations_per_iteration"] = 1.0
    case["ratio"] = case["peer"]["s_per_iteration"] / case["nst_jax"]["s_per_iteration"]
    case["startup_gap_s"] = case["nst_jax"]["startup_s"] - case["peer"]["startup_s"]
    log(f"{size} px: nst_jax {case['nst_jax']['s_per_iteration']:.3f} s/it, start "
        f"{case['nst_jax']['startup_s']:.1f} s (first {case['nst_jax']['first_startup_s']:.1f} s); "
        f"neural-style-pt {case['peer']['s_per_iteration']:.3f} s/it, start "
        f"{case['peer']['startup_s']:.1f} s: {case['ratio']:.2f}x per iteration")
    return case


# --- the same loss in less time ---------------------------------------------------------------

# neural-style-pt's defaults: -content_weight 5, -style_weight 100.
PEER_CONTENT_WEIGHT = 5.0
PEER_STYLE_WEIGHT = 100.0


def matched_flags(shape: tuple[int, int], content_weight: float = PEER_CONTENT_WEIGHT,
                  style_weight: float = PEER_STYLE_WEIGHT) -> list[str]:
    """``stylize.py`` flags that make eq. 7 *equal* to neural-style-pt's objective (without
    its TV term) for a content image of ``shape`` (h, w), so that both minimise the same
    function and a loss reached by one is a loss reached by the other.

    neural-style-pt's content term is ``cw * mean((F - P)^2)`` over conv4_2's
    ``N = 512`` channels and ``M`` positions, ours ``alpha / 2 * sum((F - P)^2)``: so
    ``alpha = 2 cw / (N M)``. Its style term per layer is ``sw * mean((G/(N M) - A/(N M_s))^2)``
    (Gram matrices divided by the number of elements), ours ``beta w_l / (4 N^2) *
    sum((G/M - A/M_s)^2)`` (eq. 4 with the per-position targets): so ``beta = 1`` and
    ``w_l = 4 sw / N_l^2``.
    """
    from nst_jax.config import STYLE_LAYERS
    from nst_jax.tiling import layer_size
    from nst_jax.vgg import LAYER_NAMES, VGG19_BLOCKS

    channels = dict(zip(LAYER_NAMES, (c for block in VGG19_BLOCKS for c in block)))
    h, w = layer_size(shape, "conv4_2")
    alpha = 2.0 * content_weight / (channels["conv4_2"] * h * w)
    layer_weights = [4.0 * style_weight / channels[l] ** 2 for l in STYLE_LAYERS]
    return ["--alpha", f"{alpha:.9g}", "--beta", "1",
            "--style-layer-weights", ",".join(f"{x:.9g}" for x in layer_weights)]


def prepared_pair(folder: str | os.PathLike, content: str, style: str, size: int
                  ) -> tuple[str, str, tuple[int, int]]:
    """``content`` and ``style`` resized as ``stylize.py --size size`` resizes them, saved as
    PNG in ``folder``: both tools then read the very same pixels and resize nothing.
    Returns the two paths and the content's ``(h, w)``."""
    from nst_jax import images

    paths = []
    for name, path in (("content", content), ("style", style)):
        rgb = images.load_image(path, max_side=size)
        out = pathlib.Path(folder) / f"{name}_{size}.png"
        images.save_png(out, rgb)
        paths.append(str(out))
        if name == "content":
            shape = rgb.shape[:2]
    return paths[0], paths[1], shape


def matched_losses(params, preprocessing, content: str, style: str, outputs: Sequence[str]
                   ) -> list[float]:
    """Eq. 7 with :func:`matched_flags` (= neural-style-pt's objective, no TV) of each image in
    ``outputs`` (files as the tools wrote them: clipped to [0, 1], 8 bits), against the
    targets of ``content`` and ``style`` (:func:`prepared_pair`'s files)."""
    from nst_jax import images, stylize

    c, s = images.load_image(content), images.load_image(style)
    config = stylize.Config(content=content, style=(style,), **_matched_fields(c.shape[:2]))
    loss = stylize.build_loss_fn(params, c, s, config.content_layers, config.style_layers,
                                 stylize.network(config), preprocessing)
    weights = stylize.loss_weights(config)
    return [float(loss(np.asarray(images.load_image(o), np.float32), weights)[0]) for o in outputs]


def _matched_fields(shape: tuple[int, int]) -> dict:
    flags = matched_flags(shape)
    return {"alpha": float(flags[1]), "beta": float(flags[3]),
            "style_layer_weights": tuple(float(x) for x in flags[5].split(","))}


def race(pair: Tools, folder: str | os.PathLike, params, preprocessing, size: int, content: str,
         style: str, peer_iterations: int = 200, fractions: Sequence[float] = (0.5, 0.6),
         extra: Sequence[str] = (), repeats: int = 1, timeout: float | None = None,
         log: Callable[[str], None] = print) -> dict:
    """The same loss in less time: both tools minimise the same objective
    (:func:`matched_flags`) on the same pixels (:func:`prepared_pair`) at ``size``.

    The peer runs ``peer_iterations``; nst_jax runs ``fraction * peer_iterations`` for each
    of ``fractions`` (with ``extra`` flags, e.g. coarse to fine), ``repeats`` times each:
    the first run compiles the programs of that number of iterations, the others load them
    from the compilation cache. Each is a whole process, timed from start to exit; each
    output file is then scored with the same function (:func:`matched_losses`). ``runs``
    lists nst_jax's runs with ``time_ratio`` (its last run's wall time over the peer's),
    ``first_time_ratio`` (its first run's) and ``loss_ratio`` (its loss over the peer's);
    ``best`` is the quickest run whose loss is at most the peer's (None if none is).
    """
    folder = pathlib.Path(folder)
    c, s, shape = prepared_pair(folder, content, style, size)
    flags = matched_flags(shape)
    outputs = [str(folder / f"race_peer_{size}.png")]
    peer_seconds = pair.run("peer", c, s, size, peer_iterations, outputs[0], timeout=timeout)[0]
    log(f"race at {size} px: neural-style-pt, {peer_iterations} iterations: {peer_seconds:.1f} s")
    counts = [max(1, round(peer_iterations * f)) for f in fractions]
    seconds = []
    for n in counts:
        outputs.append(str(folder / f"race_nst_jax_{size}_{n}.png"))
        seconds.append([pair.run("nst_jax", c, s, size, n, outputs[-1], [*flags, *extra],
                                 timeout=timeout)[0] for _ in range(max(1, repeats))])
        log(f"race at {size} px: nst_jax, {n} iterations: "
            + ", then ".join(f"{t:.1f} s" for t in seconds[-1]))
    losses = matched_losses(params, preprocessing, c, s, outputs)
    peer = {"iterations": peer_iterations, "seconds": peer_seconds, "loss": losses[0]}
    runs = [{"iterations": n, "seconds": t[-1], "first_seconds": t[0], "loss": l,
             "time_ratio": t[-1] / peer_seconds, "first_time_ratio": t[0] / peer_seconds,
             "loss_ratio": l / losses[0]}
            for n, t, l in zip(counts, seconds, losses[1:])]
    reached = [r for r in runs if r["loss"] <= peer["loss"]]
    best = min(reached, key=lambda r: r["seconds"]) if reached else None
    for r in runs:
        log(f"  nst_jax {r['iterations']} iterations: {r['time_ratio']:.2f}x the time "
            f"(first run {r['first_time_ratio']:.2f}x), {r['loss_ratio']:.3f}x the loss")
    return {"size": size, "shape": list(shape), "flags": flags, "extra": list(extra),
            "repeats": max(1, repeats), "peer": peer, "runs": runs, "best": best}
