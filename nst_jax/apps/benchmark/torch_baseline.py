"""A PyTorch (CPU) baseline of the paper's algorithm, for benchmarks and parity tests.

The same network, preprocessing and losses as :mod:`nst_jax.vgg` and
:mod:`nst_jax.losses` (eqs. 1-5, 7, plus the TV term), written with
``torch.nn.functional``, and minimised with ``torch.optim.LBFGS`` and its
strong-Wolfe line search: the usual way the paper is reproduced in PyTorch.
``scripts/bench.py`` compares speed and convergence with nst_jax, and
``tests/test_torch_parity.py`` checks that both compute the same numbers.

PyTorch is an optional extra (``pip install -e '.[bench]'``): it is imported
inside the functions here, through :func:`require_torch`, so this module
imports without it, and no other nst_jax module imports this one.

Images are RGB float32 ``(H, W, 3)`` in [0, 1] as everywhere in nst_jax;
inside the network activations are ``(1, C, H, W)`` (PyTorch's layout), and
:func:`vgg_features` returns them channels-last ``(h, w, C)`` like
:func:`nst_jax.stylize.make_features_fn`.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE, POOLINGS, VGG19_BLOCKS, Preprocessing, check_layers, layer_names

MISSING_TORCH = "PyTorch is not installed; install the benchmark extra: pip install -e '.[bench]'"

# What :func:`make_loss` returns: ``pixels (H, W, 3) -> (total, content, style, tv)``,
# each a 0-d torch tensor (``content``/``style``/``tv`` unweighted by α, β, tv_weight).
LossFn = Callable[[Any], tuple]


def require_torch():
    """The ``torch`` module, or :class:`NSTError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise NSTError(MISSING_TORCH) from None
    return torch


def preprocess(rgb, preprocessing: Preprocessing = CAFFE):
    """RGB ``(H, W, 3)`` in [0, 1] (NumPy array or torch tensor) -> the network's
    input ``(1, 3, H, W)`` float32: :func:`nst_jax.vgg.preprocess`, then NCHW."""
    torch = require_torch()
    rgb = rgb if isinstance(rgb, torch.Tensor) else torch.tensor(np.asarray(rgb, np.float32))
    x = rgb[..., list(preprocessing.channel_order)] * preprocessing.scale
    mean = torch.tensor(preprocessing.mean, dtype=x.dtype)
    std = torch.tensor(preprocessing.std, dtype=x.dtype)
    return ((x - mean) / std).permute(2, 0, 1).unsqueeze(0)


class TorchVGG:
    """The convolutional part of VGG in PyTorch, the twin of :class:`nst_jax.vgg.VGG`.

    Built once from an nst_jax params tree (kernels ``(3, 3, Ci, Co)`` HWIO are
    converted to PyTorch's ``(Co, Ci, 3, 3)`` here, once, as float32 constants).

    Args:
      params: ``{'params': {'conv1_1': {'kernel', 'bias'}, ...}}`` (JAX or NumPy arrays).
      blocks: channels of each conv layer, grouped by pooling block (as ``VGG.blocks``).
      pooling: ``'avg'`` (the paper's choice) or ``'max'``.
    """

    def __init__(self, params, blocks: Sequence[Sequence[int]] = VGG19_BLOCKS,
                 pooling: str = "avg"):
        torch = require_torch()
        if pooling not in POOLINGS:
            raise NSTError(f"unknown pooling {pooling!r}; choose 'avg' or 'max'")
        self.blocks = tuple(tuple(b) for b in blocks)
        self.pooling = pooling
        self.names = layer_names(self.blocks)
        self.layers = {}
        for name in self.names:
            layer = params["params"][name]
            kernel = np.asarray(layer["kernel"], np.float32).transpose(3, 2, 0, 1)
            self.layers[name] = (torch.from_numpy(np.ascontiguousarray(kernel)),
                                 torch.from_numpy(np.array(layer["bias"], np.float32)))

    def __call__(self, images, layers: Sequence[str]) -> dict:
        """Post-ReLU activations ``{name: (N, C, h, w)}`` of preprocessed ``images
        (N, 3, H, W)``; layers past the deepest one asked for are not computed."""
        import torch.nn.functional as F

        wanted = set(check_layers(layers, self.names))
        deepest = max(self.names.index(name) for name in wanted)
        pool = F.avg_pool2d if self.pooling == "avg" else F.max_pool2d
        features = {}
        x = images
        index = 0
        for b, block in enumerate(self.blocks):
            if b > 0:
                x = pool(x, kernel_size=2, stride=2)  # 'VALID': odd sizes round down, as in Flax
            for i in range(len(block)):
                name = f"conv{b + 1}_{i + 1}"
                kernel, bias = self.layers[name]
                x = F.relu(F.conv2d(x, kernel, bias, padding=1))  # 3x3 'SAME'
                if name in wanted:
                    features[name] = x
                if index == deepest:
                    return features
                index += 1
        return features


def vgg_features(params, rgb, layers: Sequence[str], preprocessing: Preprocessing = CAFFE,
                 pooling: str = "avg", blocks: Sequence[Sequence[int]] = VGG19_BLOCKS) -> dict:
    """``{layer: (h, w, C)}`` post-ReLU activations of ``rgb (H, W, 3)`` in [0, 1]:
    the PyTorch twin of :func:`nst_jax.stylize.make_features_fn` (torch tensors,
    channels-last). Converts the weights on every call: build a :class:`TorchVGG`
    to reuse them."""
    features = TorchVGG(params, blocks, pooling)(preprocess(rgb, preprocessing), layers)
    return {name: f[0].permute(1, 2, 0) for name, f in features.items()}


def gram_matrix(features):
    """Eq. 3, ``G = F F^T`` of one image's ``(1, N, h, w)`` activations: ``(N, N)``."""
    flat = features.reshape(features.shape[1], -1)  # (N, M)
    return flat @ flat.T


def _positions(features) -> int:
    """``M = h w`` of ``(1, N, h, w)`` activations."""
    return features.shape[2] * features.shape[3]


def content_loss(features, content_features):
    """Eq. 1: ``1/2 sum (F - P)^2``."""
    return 0.5 * ((features - content_features) ** 2).sum()


def style_layer_loss(features, style_gram):
    """Eq. 4: ``sum (G - A)^2 / (4 N^2 M^2)`` of ``(1, N, h, w)`` activations."""
    _, channels, height, width = features.shape
    m = height * width
    return ((gram_matrix(features) - style_gram) ** 2).sum() / (4.0 * channels**2 * m**2)


def total_variation(pixels):
    """``sum (x[i+1,j]-x[i,j])^2 + (x[i,j+1]-x[i,j])^2`` of ``(H, W, C)`` pixels."""
    return (((pixels[1:] - pixels[:-1]) ** 2).sum()
            + ((pixels[:, 1:] - pixels[:, :-1]) ** 2).sum())


def make_loss(params, content: np.ndarray, style: np.ndarray, config,
              preprocessing: Preprocessing = CAFFE,
              blocks: Sequence[Sequence[int]] = VGG19_BLOCKS) -> LossFn:
    """Eq. 7 (+ TV) of the pixels, for this content and style: the PyTorch twin of
    :func:`nst_jax.stylize.build_loss_fn`.

    The targets (content activations ``P^l``, style Gram matrices ``A^l`` scaled
    to the output's number of positions, as nst_jax does) are computed once,
    without gradients.

    Args:
      params: the VGG params tree (``nst_jax.weights.load_params``).
      content / style: RGB float32 ``(H, W, 3)`` in [0, 1] (sizes may differ).
      config: a :class:`nst_jax.config.Config`: its layers, layer weights,
        ``alpha``, ``beta``, ``tv_weight`` and ``pooling`` are used.
      preprocessing: the weights' input preprocessing.
      blocks: the network's layout (``VGG19_BLOCKS``; tests use a tiny one).
    Returns:
      ``loss(pixels) -> (total, content, style, tv)``: ``pixels`` a float32 torch
      tensor ``(H, W, 3)`` (with ``requires_grad`` for a gradient), each output
      a 0-d tensor; ``content`` / ``style`` / ``tv`` are not yet weighted by α, β, tv_weight.
    """
    torch = require_torch()
    content_layers, style_layers = tuple(config.content_layers), tuple(config.style_layers)
    layers = tuple(dict.fromkeys(content_layers + style_layers))
    alpha, beta, tv_weight = config.alpha, config.beta, config.tv_weight
    content_weights = config.layer_weights("content")  # {layer: weight}, as nst_jax ties them
    style_weights = config.layer_weights("style")
    vgg = TorchVGG(params, blocks, config.pooling)

    with torch.no_grad():
        content_features = vgg(preprocess(content, preprocessing), layers)
        style_features = vgg(preprocess(style, preprocessing), layers)
        targets_content = {l: content_features[l] for l in content_layers}
        # A^l per position of the style, times the output's positions (nst_jax's Â^l M^l:
        # the paper's A^l when the two images have the same size).
        targets_style = {l: gram_matrix(style_features[l]) * (_positions(content_features[l])
                                                              / _positions(style_features[l]))
                         for l in style_layers}

    def loss(pixels):
        features = vgg(preprocess(pixels, preprocessing), layers)
        content_term = sum(w * content_loss(features[l], targets_content[l])
                           for l, w in content_weights.items())
        style_term = sum(w * style_layer_loss(features[l], targets_style[l])
                         for l, w in style_weights.items())
        tv = total_variation(pixels)
        total = alpha * content_term + beta * style_term + tv_weight * tv
        return total, content_term, style_term, tv

    return loss


class LBFGSResult(NamedTuple):
    """What :func:`run_lbfgs` measured.

    Attributes:
      values: ``(evaluations,)`` float64, the total loss at every loss+gradient
        evaluation, in order (``values[k]`` is evaluation ``k + 1``; line-search
        trials included, so it is not monotone).
      evaluations: loss+gradient evaluations made.
      iterations: L-BFGS iterations completed (accepted steps).
      seconds: wall time of the optimisation (targets and weights not included).
      best_pixels: ``(H, W, 3)`` float32, the pixels of the lowest finite loss (not clipped).
      best_value: that loss (``inf`` if none was finite).
      nonfinite: the run stopped on a non-finite loss.
    """

    values: np.ndarray
    evaluations: int
    iterations: int
    seconds: float
    best_pixels: np.ndarray
    best_value: float
    nonfinite: bool

    def best_within(self, evaluations: int) -> float:
        """The lowest finite loss among the first ``evaluations`` evaluations (NaN if none)."""
        return lowest_loss(self.values, evaluations)


def lowest_loss(values: np.ndarray, evaluations: int) -> float:
    """The lowest finite entry of ``values[:evaluations]``, or NaN if there is none."""
    head = np.asarray(values, np.float64)[:evaluations]
    head = head[np.isfinite(head)]
    return float(head.min()) if head.size else math.nan


class _Stop(Exception):
    """Raised inside the closure to end ``LBFGS.step`` (budget spent or non-finite loss)."""


def run_lbfgs(loss: LossFn, x0: np.ndarray, max_evaluations: int, memory_size: int = 10,
              threads: int | None = None) -> LBFGSResult:
    """Minimise ``loss`` from ``x0`` with ``torch.optim.LBFGS`` (strong-Wolfe line search).

    Stops after exactly ``max_evaluations`` loss+gradient evaluations, earlier
    if L-BFGS stops by itself (zero gradient, no descent direction) or at the
    first non-finite loss. The tolerances are 0, so it never stops on a small change.

    torch's line search has no cap of its own other than the evaluations left
    (``LBFGS.step`` passes ``max_ls = max_eval - evaluations``), so there is no
    counterpart to :attr:`nst_jax.optimize.Settings.max_linesearch_steps`.
    ``values`` holds every evaluation, line-search trials included, whereas
    nst_jax's trace holds the loss at the end of each iteration.

    Timing: the first run in a process may include PyTorch's one-time setup
    (up to ~2.5 s on a 2-core CPU), and with as many threads as cores any other
    load on the machine (another process, a JAX computation still running)
    slows PyTorch's OpenMP threads many-fold: warm up, then repeat.

    Args:
      loss: ``pixels -> total`` or ``-> (total, ...)`` (e.g. :func:`make_loss`).
      x0: ``(H, W, 3)`` initial pixels (NumPy or JAX array).
      max_evaluations: the evaluation budget, >= 1.
      memory_size: the L-BFGS history length (``history_size``).
      threads: if given, ``torch.set_num_threads(threads)`` for this run (restored after).
    Returns:
      :class:`LBFGSResult`.
    """
    torch = require_torch()
    if max_evaluations < 1:
        raise NSTError(f"max_evaluations must be >= 1, got {max_evaluations}")
    x = torch.tensor(np.asarray(x0, np.float32), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [x], lr=1, max_iter=max_evaluations, max_eval=max_evaluations, history_size=memory_size,
        line_search_fn="strong_wolfe", tolerance_grad=0, tolerance_change=0)
    values: list[float] = []
    best = {"value": math.inf, "pixels": np.array(x0, np.float32)}
    stopped = {"nonfinite": False, "early": False}

    def closure():
        # torch's last line search may ask for one evaluation past max_eval (its first
        # trial is not counted against max_ls): refuse it, ending that iteration unfinished.
        if len(values) >= max_evaluations:
            stopped["early"] = True
            raise _Stop
        optimizer.zero_grad()
        out = loss(x)
        total = out[0] if isinstance(out, tuple) else out
        value = float(total.detach())
        values.append(value)
        if not math.isfinite(value):
            stopped["nonfinite"] = stopped["early"] = True
            raise _Stop
        total.backward()
        if value < best["value"]:
            best["value"], best["pixels"] = value, x.detach().numpy().copy()
        return total

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        start = time.perf_counter()
        try:
            optimizer.step(closure)
        except _Stop:
            pass
        seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous_threads)
    iterations = optimizer.state[x].get("n_iter", 0)
    if stopped["early"] and iterations > 0:
        iterations -= 1  # the iteration whose line search was cut short
    return LBFGSResult(np.asarray(values, np.float64), len(values), int(iterations), seconds,
                       best["pixels"], float(best["value"]), stopped["nonfinite"])


def parity(params, content: np.ndarray, style: np.ndarray, config, preprocessing: Preprocessing = CAFFE,
           blocks: Sequence[Sequence[int]] = VGG19_BLOCKS, pixels: np.ndarray | None = None) -> dict:
    """How far this baseline is from nst_jax on the same weights, images and ``pixels``
    (default: ``content`` plus a little noise).

    Returns relative differences: ``features`` per layer (largest absolute
    difference over the layer's largest activation, every layer of ``blocks``), ``losses`` per term (total, content, style,
    tv; against nst_jax's value, NaN where that is 0), and ``gradient`` (norm
    of the difference of the gradients w.r.t. the pixels over nst_jax's norm).
    """
    import jax

    from nst_jax import stylize
    from nst_jax.vgg import VGG

    torch = require_torch()
    if pixels is None:
        noise = np.random.default_rng(0).normal(size=content.shape)
        pixels = np.clip(content + 0.1 * noise, 0, 1).astype(np.float32)
    names = layer_names(blocks)
    module = VGG(blocks=blocks, pooling=config.pooling)
    loss_fn = stylize.build_loss_fn(params, content, style, config.content_layers,
                                    config.style_layers, module, preprocessing)
    features_fn = stylize.make_features_fn(params, names, module, preprocessing)
    weights = stylize.loss_weights(config)

    @jax.jit
    def reference(x):
        (total, terms), grad = jax.value_and_grad(lambda p: loss_fn(p, weights), has_aux=True)(x)
        return features_fn(x), (total, *terms), grad

    j_features, j_losses, j_grad = reference(pixels)
    t_features = vgg_features(params, pixels, names, preprocessing, config.pooling, blocks)
    x = torch.tensor(np.asarray(pixels, np.float32), requires_grad=True)
    t_losses = make_loss(params, content, style, config, preprocessing, blocks)(x)
    t_losses[0].backward()

    def relative(got, want):
        return float(abs(got - want) / abs(want)) if want != 0 else math.nan

    features = {}
    for name in names:
        got, want = t_features[name].numpy(), np.asarray(j_features[name])
        if got.shape != want.shape:
            raise NSTError(f"{name}: torch shape {got.shape}, nst_jax shape {want.shape}")
        features[name] = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    losses = {what: relative(float(got.detach()), float(want))
              for what, got, want in zip(("total", "content", "style", "tv"), t_losses, j_losses)}
    j_grad = np.asarray(j_grad, np.float64)
    gradient = float(np.linalg.norm(x.grad.numpy() - j_grad) / np.linalg.norm(j_grad))
    return {"features": features, "losses": losses, "gradient": gradient,
            "jax_losses": [float(v) for v in j_losses]}
