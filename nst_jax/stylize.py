"""Wiring: images + VGG + losses + optimiser into one style transfer (paper §2.3).

Everything a sweep may vary (α, β, layer weights, TV weight, the initial image)
enters :func:`make_loss_fn` / :func:`prepare` as arrays; the layer *names*
and image sizes are static (they fix the shapes). The settings are a
:class:`nst_jax.config.Config`; :func:`load_inputs` and :func:`load_network`
read the files it names.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import images, optimize, weights
from nst_jax.config import CONTENT_LAYERS, INITS, STYLE_LAYERS, Config, ConfigError  # noqa: F401
from nst_jax.errors import NSTError
from nst_jax.losses import LossTerms, LossWeights, Targets, gram_matrix, total_loss
from nst_jax.vgg import CAFFE, VGG, VGG19, Preprocessing, layer_names, normalize_params, preprocess

# The box the pixels live in: RGB in [0, 1].
PIXEL_BOUNDS = (0.0, 1.0)


def network(config: Config) -> VGG:
    """The VGG19 module ``config`` asks for (pooling, remat, precision)."""
    dtype = None if config.precision == "float32" else config.precision
    return VGG19(pooling=config.pooling, remat=config.remat, dtype=dtype)


def optimizer_settings(config: Config) -> optimize.Settings:
    """The :class:`nst_jax.optimize.Settings` of ``config`` (pixels kept in [0, 1]
    unless ``config.bounds == 'none'``)."""
    return optimize.Settings(method=config.optimizer, learning_rate=config.learning_rate,
                             tolerance=config.tolerance,
                             bounds=PIXEL_BOUNDS if config.bounds == "box" else None)


def loss_weights(config: Config, content_layers: Sequence[str] | None = None,
                 style_layers: Sequence[str] | None = None) -> LossWeights:
    """The hyper-parameters as the arrays :func:`nst_jax.losses.total_loss` takes.

    Each layer weight is keyed by its layer (:meth:`Config.layer_weights`). With
    ``content_layers`` / ``style_layers`` (a sweep's union of layers) the dicts
    cover those layers, with weight 0 for the ones ``config`` does not use.
    """
    f32 = np.float32

    def spread(kind: str, layers: Sequence[str] | None) -> dict[str, np.ndarray]:
        own = config.layer_weights(kind)
        layers = tuple(own) if layers is None else tuple(layers)
        unknown = sorted(set(own) - set(layers))
        if unknown:
            raise NSTError(f"the {kind} layer(s) {', '.join(unknown)} are not among {', '.join(layers)}")
        return {layer: f32(own.get(layer, 0.0)) for layer in layers}

    return LossWeights(f32(config.alpha), f32(config.beta), spread("content", content_layers),
                       spread("style", style_layers), f32(config.tv_weight))


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
    """The best pixels seen (the current ones if no finite loss yet), clipped to [0, 1]
    (a no-op when the optimiser kept them in the box); one state or a batch of them."""
    finite = jnp.isfinite(state.best_value)[..., None, None, None]
    return jnp.clip(jnp.where(finite, state.best_pixels, state.pixels), *PIXEL_BOUNDS)


def saved_pixels(state: optimize.OptimizeState) -> jax.Array:
    """What a PNG of :func:`best_image` holds: those pixels rounded to 8 bits (as floats
    in [0, 1]); one state or a batch of them. The losses reported are of these pixels."""
    return jnp.round(best_image(state) * 255.0) / 255.0


def white_noise(seed: jax.Array | int, shape: tuple[int, ...],
                amplitude: jax.Array | float = 0.1) -> jax.Array:
    """``0.5 + amplitude * (U[0, 1) - 0.5)``: white noise around mid-grey.

    ``seed`` is an unsigned 32-bit integer (0 to 2**32 - 1; a Python int or a
    uint32 array give the same noise), and may be traced with ``amplitude``, so a
    sweep over seeds is a ``vmap``.
    """
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
            return jnp.asarray(images.resize_to(np.asarray(style), shape[:2]), jnp.float32)
        raise NSTError(f"unknown init {init!r}; choose one of {', '.join(INITS)} or an image file")
    init = np.asarray(init, np.float32)
    if init.shape != shape:
        init = images.resize_to(init, shape[:2])
    return jnp.asarray(init)


class Inputs(NamedTuple):
    """The images of a run, RGB float32 in [0, 1]: ``content (H, W, 3)`` (the
    output's size), ``style (H', W', 3)``, and ``init`` (an image file's pixels, or None)."""

    content: np.ndarray
    style: np.ndarray
    init: np.ndarray | None


def _load_sized(path: str, long_side: int, what: str, field: str) -> np.ndarray:
    rgb = images.load_image(path, max_side=long_side)
    if min(rgb.shape[:2]) < images.MIN_SIDE:
        raise ConfigError(field, f"{long_side} makes the {what} image {path} {rgb.shape[1]}x"
                                 f"{rgb.shape[0]} px; both sides must be at least "
                                 f"{images.MIN_SIDE} px (VGG19 pools 4 times before conv5_1): "
                                 f"raise it")
    return rgb


def load_inputs(config: Config) -> Inputs:
    """Read the images ``config`` names, resized to ``size`` / ``style_size``.

    Raises:
      NSTError: a file is missing or unreadable (see :func:`nst_jax.images.load_image`);
        ConfigError: an image too thin at this size, or an ``init`` that is neither
        ``noise``, ``content``, ``style`` nor an existing file.
    """
    content = _load_sized(config.content, config.size, "content", "size")
    style_side = config.style_size or config.size
    style = _load_sized(config.style, style_side, "style",
                        "style_size" if config.style_size else "size")
    init = None
    if config.init_is_file:
        if not pathlib.Path(config.init).exists():
            raise ConfigError("init", f"must be {', '.join(INITS)} or an existing image file, "
                                      f"got {config.init!r}")
        init = images.load_image(config.init)
    return Inputs(content, style, init)


class Network(NamedTuple):
    """The VGG module, its params (normalised if asked), the weights' preprocessing,
    and ``info``: the weights file's provenance (for the output's metadata)."""

    module: VGG
    params: dict
    preprocessing: Preprocessing
    info: dict


def load_network(config: Config, content: np.ndarray, style: np.ndarray, *,
                 log: Callable[[str], object] = lambda message: None) -> Network:
    """The network of ``config``: its weights file (the default one is converted on
    first use, see :func:`nst_jax.weight_sources.download.ensure_weights`), normalised on
    ``content`` and ``style`` when ``config.normalize_network`` (paper §2)."""
    if config.weights is None:
        from nst_jax.weight_sources.download import ensure_weights  # downloads only when absent

        path = ensure_weights(log=log)
    else:
        path = pathlib.Path(config.weights)
    params, preprocessing = weights.load_params(path)
    module = network(config)
    if config.normalize_network:
        batch = jnp.stack([preprocess(jnp.asarray(content), preprocessing),
                           preprocess(jnp.asarray(images.resize_to(style, content.shape[:2])),
                                      preprocessing)])
        params = jax.tree_util.tree_map(np.asarray, normalize_params(module, params, batch))
    return Network(module, params, preprocessing, {"path": str(path), **weights.describe(path)})


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
        total, terms = self._terms(jnp.asarray(pixels, jnp.float32), self.weights)
        return float(total), LossTerms(*(float(t) for t in terms))

    def latest(self) -> tuple[float, LossTerms]:
        """The loss and its terms at the end of the last iteration: from the trace where
        the optimiser recorded them, else (optax's L-BFGS keeps only the total) by a
        forward pass at the current pixels."""
        i = int(self.state.iteration) - 1
        if i >= 0:
            total = float(self.state.trace.value[i])
            terms = LossTerms(*(float(t[i]) for t in self.state.trace.aux))
            if np.isfinite(total) and all(np.isfinite(terms)):
                return total, terms
        return self.terms()

    def result(self) -> np.ndarray:
        """The best image so far, RGB float32 in [0, 1]."""
        return np.asarray(best_image(self.state))

    def saved(self) -> tuple[np.ndarray, float, LossTerms]:
        """``(image, total, terms)`` of what a PNG of :meth:`result` holds: the best
        image rounded to 8 bits, and the eq. 7 loss of exactly those pixels."""
        pixels = saved_pixels(self.state)
        total, terms = self.terms(pixels)
        return images.to_uint8(np.asarray(pixels)), total, terms


def prepare(content: np.ndarray, style: np.ndarray, params, config: Config = Config(), *,
            module: VGG | None = None, preprocessing: Preprocessing = CAFFE,
            init_image: np.ndarray | None = None) -> Stylization:
    """Set up a style transfer of ``content`` in the style of ``style``.

    Args:
      content: RGB float32 in [0, 1], ``(H, W, 3)``; the output has this size.
      style: RGB float32 in [0, 1], ``(H', W', 3)``; any size (the Gram matrices
        do not depend on it, but the scale of the texture does).
      params: the VGG params tree (``nst_jax.weights.load_params``).
      config: :class:`nst_jax.config.Config` (its image paths are not read here:
        see :func:`load_inputs`).
      module: the VGG module (default :func:`network` of ``config``).
      preprocessing: the weights' input preprocessing.
      init_image: the starting image when ``config.init`` is an image file.
    """
    module = module or network(config)
    settings = optimizer_settings(config)
    loss_fn = build_loss_fn(params, content, style, config.content_layers, config.style_layers,
                            module, preprocessing)
    if config.init_is_file and init_image is None:
        raise NSTError(f"config.init is the file {config.init!r}: pass its pixels as init_image "
                       "(see load_inputs)")
    x0 = initial_pixels(init_image if config.init_is_file else config.init, content, style,
                        config.seed, config.noise_amplitude)
    weights_ = loss_weights(config)

    def fresh_state(x0, weights):
        fun = lambda x: loss_fn(x, weights)
        solver = optimize.make_solver(fun, settings)
        return optimize.init(solver, fun, x0, config.iterations)

    def run(state, num_steps, weights):
        fun = lambda x: loss_fn(x, weights)
        return optimize.run(optimize.make_solver(fun, settings), state, num_steps,
                            settings.tolerance)

    state = jax.jit(fresh_state)(x0, weights_)
    return Stylization(config, loss_fn, weights_, state, jax.jit(run), jax.jit(loss_fn))
