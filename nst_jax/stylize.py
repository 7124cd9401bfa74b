"""Wiring: images + VGG + losses + optimiser into one style transfer (paper §2.3).

Everything a sweep may vary (α, β, layer weights, TV weight, the initial image)
enters :func:`make_loss_fn` / :func:`run_stylize` as arrays; the layer *names*
and image sizes are static (they fix the shapes).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import optimize
from nst_jax.errors import NSTError
from nst_jax.losses import LossTerms, LossWeights, Targets, gram_matrix, total_loss
from nst_jax.vgg import (CAFFE, DTYPES, VGG, VGG19, Preprocessing, check_layers, layer_names,
                         preprocess)

CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
INITS = ("noise", "content", "style")


@dataclasses.dataclass(frozen=True)
class Config:
    """One style transfer's settings. Defaults are the paper's (§2, §3): content
    ``conv4_2``; style ``conv1_1`` ... ``conv5_1`` with ``w_l = 1/5``; α/β = 1e-3
    (Fig. 3's ratio, which also works with these unnormalised weights); average
    pooling; L-BFGS from white noise.

    Attributes:
      content_layers / style_layers: layer names (``conv4_2``; ``conv1_1`` ... ``conv5_1``).
      content_layer_weights / style_layer_weights: one weight per layer; ``None``
        means 1 per content layer and ``1/len(style_layers)`` per style layer (paper: w_l = 1/5).
      alpha / beta: eq. 7's weights of the content and the style loss.
      tv_weight: weight of the total-variation regulariser (0: off, as in the paper).
      pooling: ``'avg'`` (paper) or ``'max'``.
      remat: recompute each VGG block's activations in the backward pass instead
        of keeping them (less memory, about one more forward pass per evaluation).
      precision: ``'float32'`` (default) or ``'bfloat16'`` (the convolutions in
        bfloat16; the losses and the optimiser stay float32). See the README's
        performance section for the speed and loss measured with each.
      init: ``'noise'`` (white noise, paper), ``'content'``, ``'style'``, or
        ``'image'`` (an image given to :func:`prepare` as ``init_image``).
      seed: seed of the white-noise initialisation.
      noise_amplitude: the white noise is ``0.5 + noise_amplitude * (U[0, 1] - 0.5)``.
        The paper gives no amplitude; full-range noise (1.0) leaves high
        frequencies that the losses barely constrain, visible as grain after a
        few hundred iterations, so the default is a faint noise (0.1).
      iterations: optimiser iterations.
      optimizer: :class:`nst_jax.optimize.Settings`.
    """

    content_layers: tuple[str, ...] = CONTENT_LAYERS
    style_layers: tuple[str, ...] = STYLE_LAYERS
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    alpha: float = 1.0
    beta: float = 1e3
    tv_weight: float = 0.0
    pooling: str = "avg"
    remat: bool = False
    precision: str = "float32"
    init: str = "noise"
    seed: int = 0
    noise_amplitude: float = 0.1
    iterations: int = 300
    optimizer: optimize.Settings = optimize.Settings()

    def __post_init__(self):
        check_layers(self.content_layers)
        check_layers(self.style_layers)
        for name, weights, layers in (("content", self.content_layer_weights, self.content_layers),
                                      ("style", self.style_layer_weights, self.style_layers)):
            if weights is not None and len(weights) != len(layers):
                raise NSTError(f"{len(weights)} {name} layer weights given for "
                               f"{len(layers)} {name} layers ({', '.join(layers)})")
            if weights is not None and not all(np.isfinite(w) and w >= 0 for w in weights):
                raise NSTError(f"{name} layer weights must be finite and >= 0, got {weights}")
        for name in ("alpha", "beta", "tv_weight", "noise_amplitude"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise NSTError(f"{name} must be a finite number >= 0, got {value}")
        if self.iterations < 1:
            raise NSTError(f"iterations must be >= 1, got {self.iterations}")
        if self.init not in INITS + ("image",):
            raise NSTError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)} or an image file")
        if self.pooling not in ("avg", "max"):
            raise NSTError(f"unknown pooling {self.pooling!r}; choose 'avg' or 'max'")
        if self.precision not in DTYPES:
            raise NSTError(f"unknown precision {self.precision!r}; choose {' or '.join(DTYPES)}")

    def network(self) -> VGG:
        """The VGG19 module these settings ask for (pooling, remat, precision)."""
        dtype = None if self.precision == "float32" else self.precision
        return VGG19(pooling=self.pooling, remat=self.remat, dtype=dtype)

    def loss_weights(self) -> LossWeights:
        """The hyper-parameters as the arrays :func:`nst_jax.losses.total_loss` takes."""
        content = self.content_layer_weights or (1.0,) * len(self.content_layers)
        style = self.style_layer_weights or (1.0 / len(self.style_layers),) * len(self.style_layers)
        f32 = lambda v: jnp.asarray(v, jnp.float32)
        return LossWeights(f32(self.alpha), f32(self.beta), f32(content), f32(style),
                           f32(self.tv_weight))


FeaturesFn = Callable[[jax.Array], dict]


def make_features_fn(params, layers: Sequence[str], module: VGG | None = None,
                     preprocessing: Preprocessing = CAFFE) -> FeaturesFn:
    """``rgb (H, W, 3) in [0, 1] -> {layer: (h, w, C)}`` post-ReLU activations."""
    module = module or VGG19()
    layers = tuple(dict.fromkeys(layers))  # unique, in order
    # Sort by depth so the deepest layer asked for bounds the forward pass.
    layers = tuple(sorted(layers, key=layer_names(module.blocks).index))

    def features(rgb):
        return module.apply(params, preprocess(rgb, preprocessing), layers)

    return features


def compute_targets(features_fn: FeaturesFn, content: jax.Array, style: jax.Array,
                    content_layers: Sequence[str], style_layers: Sequence[str]) -> Targets:
    """The content activations ``P^l`` and the style Gram matrices ``A^l`` (computed once)."""
    content_features = features_fn(content)
    style_features = features_fn(style)
    return Targets(content={l: content_features[l] for l in content_layers},
                   style={l: gram_matrix(style_features[l]) for l in style_layers})


def make_loss_fn(features_fn: FeaturesFn, targets: Targets
                 ) -> Callable[[jax.Array, LossWeights], tuple[jax.Array, LossTerms]]:
    """``(pixels (H, W, 3), LossWeights) -> (total, LossTerms)``, eq. 7 of the pixels."""

    def loss(pixels, weights):
        return total_loss(features_fn(pixels), pixels, targets, weights)

    return loss


def build_loss_fn(params, content: np.ndarray, style: np.ndarray, content_layers: Sequence[str],
                  style_layers: Sequence[str], module: VGG, preprocessing: Preprocessing = CAFFE
                  ) -> Callable[[jax.Array, LossWeights], tuple[jax.Array, LossTerms]]:
    """Eq. 7 of the pixels for this content and style: computes the targets once.

    The weights and the targets are host (NumPy) arrays, so a function that
    closes over the loss embeds them as compile-time constants: XLA folds the
    kernels' layout changes into them (as arguments, one loss+gradient
    evaluation at 64 px took 0.14 s instead of 0.09 s), and every process of a
    multi-process run embeds the same values.
    """
    params = jax.tree_util.tree_map(np.asarray, params)
    features_fn = make_features_fn(params, tuple(content_layers) + tuple(style_layers), module,
                                   preprocessing)
    targets = jax.jit(compute_targets, static_argnums=(0, 3, 4))(
        features_fn, np.asarray(content, np.float32), np.asarray(style, np.float32),
        tuple(content_layers), tuple(style_layers))
    return make_loss_fn(features_fn, jax.tree_util.tree_map(np.asarray, targets))


def best_image(state: optimize.OptimizeState) -> jax.Array:
    """The best pixels seen (the current ones if no finite loss yet), clipped to [0, 1];
    works on one state or a batch of them."""
    finite = jnp.isfinite(state.best_value)[..., None, None, None]
    return jnp.clip(jnp.where(finite, state.best_pixels, state.pixels), 0.0, 1.0)


def white_noise(seed: jax.Array | int, shape: tuple[int, ...],
                amplitude: jax.Array | float = 0.1) -> jax.Array:
    """``0.5 + amplitude * (U[0, 1) - 0.5)``: white noise around mid-grey (seed and
    amplitude may be traced, so a sweep over seeds is a ``vmap``)."""
    u = jax.random.uniform(jax.random.key(seed), shape, jnp.float32)
    return 0.5 + amplitude * (u - 0.5)


def initial_pixels(init: str | np.ndarray, content: np.ndarray, style: np.ndarray,
                   seed: int, noise_amplitude: float = 0.1) -> jax.Array:
    """The starting image ``(H, W, 3)`` at the content image's size.

    ``'noise'``: :func:`white_noise` (the paper's start); ``'content'`` / ``'style'``:
    that image (style resized to the content's size); an array: that image.
    """
    shape = content.shape
    if isinstance(init, str):
        if init == "noise":
            return white_noise(seed, shape, noise_amplitude)
        if init == "content":
            return jnp.asarray(content, jnp.float32)
        if init == "style":
            from nst_jax.images import resize_to
            return jnp.asarray(resize_to(np.asarray(style), shape[:2]), jnp.float32)
        raise NSTError(f"unknown init {init!r}; choose one of {', '.join(INITS)} or an image file")
    init = np.asarray(init, np.float32)
    if init.shape != shape:
        from nst_jax.images import resize_to
        init = resize_to(init, shape[:2])
    return jnp.asarray(init)


@dataclasses.dataclass
class Stylization:
    """A prepared run: call :meth:`step` repeatedly (each call is one compiled function).

    Built by :func:`prepare`. ``state`` is the :class:`nst_jax.optimize.OptimizeState`.
    """

    config: Config
    loss_fn: Callable
    weights: LossWeights
    state: optimize.OptimizeState
    _run: Callable
    _terms: Callable

    def step(self, num_iterations: int) -> optimize.OptimizeState:
        """Run up to ``num_iterations`` more iterations (fewer at the end or on a non-finite loss)."""
        self.state = self._run(self.state, jnp.int32(num_iterations), self.weights)
        return self.state

    @property
    def done(self) -> bool:
        return (bool(self.state.nonfinite) or bool(self.state.converged)
                or int(self.state.iteration) >= self.config.iterations)

    def terms(self, pixels: jax.Array | None = None) -> tuple[float, LossTerms]:
        """The total loss and its terms at ``pixels`` (default: the current pixels)."""
        pixels = self.state.pixels if pixels is None else pixels
        total, terms = self._terms(pixels, self.weights)
        return float(total), LossTerms(*(float(t) for t in terms))

    def result(self) -> np.ndarray:
        """The best image so far, RGB float32 in [0, 1] (clipped)."""
        return np.asarray(best_image(self.state))


def prepare(content: np.ndarray, style: np.ndarray, params, config: Config = Config(), *,
            module: VGG | None = None, preprocessing: Preprocessing = CAFFE,
            init_image: np.ndarray | None = None) -> Stylization:
    """Set up a style transfer of ``content`` in the style of ``style``.

    Args:
      content: RGB float32 in [0, 1], ``(H, W, 3)``; the output has this size.
      style: RGB float32 in [0, 1], ``(H', W', 3)``; any size (the Gram matrices
        do not depend on it, but the scale of the texture does).
      params: the VGG params tree (``nst_jax.weights.load_params``).
      config: :class:`Config`.
      module: the VGG module (default ``config.network()``).
      preprocessing: the weights' input preprocessing.
      init_image: starting image when ``config.init`` is an image file.
    """
    module = module or config.network()
    loss_fn = build_loss_fn(params, content, style, config.content_layers, config.style_layers,
                            module, preprocessing)
    x0 = initial_pixels(init_image if init_image is not None else config.init, content, style,
                        config.seed, config.noise_amplitude)
    weights = config.loss_weights()

    def fresh_state(x0, weights):
        fun = lambda x: loss_fn(x, weights)
        solver = optimize.make_solver(fun, config.optimizer)
        return optimize.init(solver, fun, x0, config.iterations)

    def run(state, num_steps, weights):
        fun = lambda x: loss_fn(x, weights)
        return optimize.run(optimize.make_solver(fun, config.optimizer), state, num_steps,
                            config.optimizer.tolerance)

    state = jax.jit(fresh_state)(x0, weights)
    return Stylization(config, loss_fn, weights, state, jax.jit(run), jax.jit(loss_fn))
