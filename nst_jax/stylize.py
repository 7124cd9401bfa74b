"""Wiring: images + VGG + losses + optimiser into one style transfer (paper §2.3).

Everything a sweep may vary (α, β, layer weights, TV weight, the styles' blend
and region weights, the initial image) enters :func:`make_loss_fn` /
:func:`prepare` as arrays; the layer *names*, image sizes, the number of styles
and regions and the colour mode are static (they fix the program). The artistic
controls of Gatys et al. 2017 are here too: several styles blended
(:meth:`Config.style_mix`), a style per region (:func:`propagate_masks`,
:func:`nst_jax.losses.guided_style_loss`) and colour preservation
(:mod:`nst_jax.colors`). The settings are a
:class:`nst_jax.config.Config`; :func:`load_inputs` and :func:`load_network`
(defined in :mod:`nst_jax.inputs`, re-exported here) read the files it names.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import colors, images, optimize, temporal, tiling
from nst_jax import distances as distance_fns  # 'distances' here names a run's distances
from nst_jax import memory as memory_model  # 'memory' here names a run's Choice
from nst_jax.config import (  # noqa: F401
    CONTENT_LAYERS, DEFAULT_LBFGS_MEMORY, INITS, STYLE_LAYERS, Config, ConfigError)
from nst_jax.errors import NSTError
# Reading the files a Config names lives in nst_jax.inputs; these names stay here, the API
# most callers use (stylize.load_inputs, stylize.load_network, stylize.network).
from nst_jax.inputs import (  # noqa: F401
    Inputs, Network, as_style_list, load_inputs, load_network, network, style_sides)
from nst_jax.losses import Loss, LossTerms, LossWeights, Targets, guided_gram_matrix, total_loss
from nst_jax.vgg import (CAFFE, LAYER_NAMES, VGG, VGG19, Preprocessing, layer_names, preprocess,
                         ready_kernels)

LAYER_INDEX = {name: index for index, name in enumerate(LAYER_NAMES)}

# The box the pixels live in: RGB in [0, 1].
PIXEL_BOUNDS = (0.0, 1.0)


def optimizer_settings(config: Config, distances: Sequence[str] | None = None
                       ) -> optimize.Settings:
    """The :class:`nst_jax.optimize.Settings` of ``config`` (pixels kept in [0, 1]
    unless ``config.bounds == 'none'``; rounds of ``config.redraw_every`` iterations where
    the style distances, ``distances`` or ``config``'s own, include ``sliced``)."""
    distances = config.distance_weights() if distances is None else distances
    return optimize.Settings(method=config.optimizer, learning_rate=config.learning_rate,
                             tolerance=config.tolerance,
                             memory_size=config.lbfgs_memory or DEFAULT_LBFGS_MEMORY,
                             bounds=PIXEL_BOUNDS if config.bounds == "box" else None,
                             round_length=config.redraw_every if "sliced" in distances else 0)


def loss_weights(config: Config, content_layers: Sequence[str] | None = None,
                 style_layers: Sequence[str] | None = None,
                 distances: Sequence[str] | None = None) -> LossWeights:
    """The hyper-parameters as the arrays :func:`nst_jax.losses.total_loss` takes.

    Each layer weight is keyed by its layer (:meth:`Config.layer_weights`), each style
    distance's weight by its name (:meth:`Config.distance_weights`). With
    ``content_layers`` / ``style_layers`` / ``distances`` (a sweep's unions) the dicts
    cover those, with weight 0 for the ones ``config`` does not use.
    """
    f32 = np.float32

    def spread(kind: str, own: dict, names: Sequence[str] | None) -> dict[str, np.ndarray]:
        names = tuple(own) if names is None else tuple(names)
        unknown = sorted(set(own) - set(names))
        if unknown:
            raise NSTError(f"the {kind} {', '.join(unknown)} are not among {', '.join(names)}")
        return {name: f32(own.get(name, 0.0)) for name in names}

    return LossWeights(f32(config.alpha), f32(config.beta),
                       spread("content layer(s)", config.layer_weights("content"), content_layers),
                       spread("style layer(s)", config.layer_weights("style"), style_layers),
                       f32(config.tv_weight),
                       np.asarray(config.style_mix(), f32),
                       np.asarray(config.region_weight_values(), f32),
                       spread("style distance(s)", config.distance_weights(), distances))


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


def propagate_masks(masks: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Region masks at each layer's resolution: ``(R, H, W)`` -> ``{layer: (R, h, w)}``.

    A mask goes through the same 2x2 average poolings as the network (``VALID``:
    an odd last row or column is dropped, as VGG drops it), so a position's value
    is the fraction of its pooled window inside the region. Why not the receptive
    fields: keeping only the positions whose receptive field lies inside the region
    (Gatys et al. 2017's alternative) leaves the positions along a boundary guided by
    no region and erases thin regions at conv5_1 (a receptive field there is 200+ px);
    averaging guides every position, softly across boundaries, keeps masks that
    partition the image a partition at every layer, and leaves a mask of ones exactly
    ones (so one full-image region is exactly the unguided loss).
    """
    masks = np.asarray(masks, np.float32)
    out, pooled, done = {}, masks, 1
    for layer in sorted(dict.fromkeys(layers), key=tiling.block_of):
        while done < tiling.block_of(layer):
            r, h, w = pooled.shape
            pooled = pooled[:, : h // 2 * 2, : w // 2 * 2].reshape(r, h // 2, 2, w // 2, 2).mean(
                axis=(2, 4), dtype=np.float32)
            done += 1
        out[layer] = pooled
    return out


def _check_regions(masks: dict[str, np.ndarray], what: str) -> None:
    for layer, mask in masks.items():
        for r, area in enumerate(mask.sum(axis=(1, 2))):
            if not area > 0:
                raise NSTError(f"{what} {r + 1} vanishes at {layer} ({mask.shape[2]}x{mask.shape[1]} "
                               f"positions): make the region larger or the image bigger")


@jax.jit
def _moments(features: dict, masks: dict | None) -> tuple[dict, dict]:
    """``({layer: mean}, {layer: Â^l})`` of ``{layer: (h, w, C)}`` (over ``masks[layer]`` when
    given), in one compiled call rather than an eager operation each (each compiles a
    program of its own)."""
    means, grams = {}, {}
    for l, f in features.items():
        mask = jnp.ones(f.shape[:2]) if masks is None else masks[l]
        means[l] = distance_fns.moments(f, mask)[0]
        grams[l] = guided_gram_matrix(f, mask)
    return means, grams


def compute_targets(features_fn: FeaturesFn, content: jax.Array, style: jax.Array | Sequence[jax.Array],
                    content_layers: Sequence[str], style_layers: Sequence[str], *,
                    style_masks: Sequence[np.ndarray | None] | None = None,
                    content_masks: np.ndarray | None = None, tile_size: int | None = None,
                    network: tuple | None = None, distances: Sequence[str] = ("gram",),
                    style_mix: np.ndarray | None = None, seed: int = 0) -> Targets:
    """The content activations ``P^l``, the styles' Gram matrices per position ``Â^l``,
    the regions at each layer and the targets of the other style ``distances``
    (:mod:`nst_jax.distances`), computed once.

    Args:
      features_fn: :func:`make_features_fn`.
      content: ``(H, W, 3)``; style: one ``(H', W', 3)`` image or a list of them.
      style_masks: per style image, ``(H', W')`` in [0, 1] or None (the whole image).
      content_masks: ``(R, H, W)`` in [0, 1], one region per style, or None.
      tile_size: evaluate the network tile by tile (:func:`nst_jax.tiling.tiled_features`),
        in memory bounded by the tile; then ``network`` is ``(params, module, preprocessing)``.
      distances: the style distances the loss will use (:data:`nst_jax.distances.STYLE_DISTANCES`).
      style_mix: ``(R, K)`` the styles' blend in each region (:meth:`Config.style_mix`), for
        ``mean-cov``'s target Gaussians (a region's is fitted to its blend's moments).
      seed: ``sliced``'s random directions are drawn from it (the run's seed), anew in
        each of the optimiser's rounds (:attr:`Config.redraw_every`).
    Raises:
      NSTError: a region is empty at one of the style layers; a distance that sorts is asked
        for tiles, regions or several styles.
    """
    styles = as_style_list(style)
    style_masks = list(style_masks) if style_masks is not None else [None] * len(styles)
    sorting = [d for d in distances if d not in distance_fns.ADDITIVE]
    if sorting and (tile_size is not None or content_masks is not None or len(styles) > 1
                    or any(m is not None for m in style_masks)):
        raise NSTError(f"the style distance {' and '.join(sorting)} takes one style image over the "
                       "whole image, untiled")
    raw = {}  # the style's activations, for the distances that sort them
    if tile_size is None:
        content_features = features_fn(content)

        def moments_of(image, layer_masks):
            features = features_fn(image)
            if sorting:
                raw.update({l: np.asarray(features[l]) for l in style_layers})
            return _moments({l: features[l] for l in style_layers},
                            None if layer_masks is None else {l: layer_masks[l][0]
                                                              for l in style_layers})
    else:
        params, module, preprocessing = network
        content_features = tiling.tiled_features(params, module, preprocessing, content,
                                                 content_layers, (), None, tile_size)[0]

        def moments_of(image, layer_masks):
            _, grams, sums = tiling.tiled_features(params, module, preprocessing, image, (),
                                                   style_layers, layer_masks, tile_size)
            area = {l: (np.prod(tiling.layer_size(np.shape(image)[:2], l)) if layer_masks is None
                        else layer_masks[l][0].sum(dtype=np.float32)) for l in style_layers}
            return ({l: sums[l][0] / area[l] for l in style_layers},
                    {l: grams[l][0] / area[l] for l in style_layers})
    means, grams = [], []
    for k, (image, mask) in enumerate(zip(styles, style_masks)):
        layer_masks = None
        if mask is not None:
            layer_masks = propagate_masks(np.asarray(mask)[None], style_layers)
            _check_regions(layer_masks, f"the style mask of style image {k + 1}, region")
        mean, gram = moments_of(image, layer_masks)
        means.append(mean)
        grams.append(gram)
    masks = None
    if content_masks is not None:
        masks = propagate_masks(content_masks, style_layers)
        _check_regions(masks, "content mask")
    # Stacked on the host: eagerly on the device, each layer's stack compiles a program.
    style = {l: np.stack([np.asarray(g[l]) for g in grams]) for l in style_layers}
    others = {}
    if "mean-cov" in distances:
        mix = np.asarray([[1.0]] if style_mix is None else style_mix, np.float64)
        per_layer = {}
        for l in style_layers:
            mean = np.stack([np.asarray(m[l], np.float64) for m in means])  # (K, N)
            fitted = [distance_fns.mean_cov_target(row @ mean, np.einsum("k,kij->ij", row,
                                                                         style[l].astype(np.float64)))
                      for row in mix]
            per_layer[l] = {key: np.stack([f[key] for f in fitted]) for key in fitted[0]}
        others["mean-cov"] = {key: {l: per_layer[l][key] for l in style_layers}
                              for key in ("mean", "cov_sqrt", "cov_trace")}
    positions = {l: int(np.prod(tiling.layer_size(np.shape(content)[:2], l))) for l in style_layers}
    if "sliced" in distances:
        per_layer = {l: distance_fns.sliced_target(raw[l], seed, LAYER_INDEX[l]) for l in style_layers}
        others["sliced"] = {key: {l: per_layer[l][key] for l in style_layers}
                            for key in ("style", "key")}
    if "histogram" in distances:
        others["histogram"] = {"quantiles": {l: distance_fns.histogram_target(raw[l], positions[l])
                                             for l in style_layers}}
    return Targets(content={l: content_features[l] for l in content_layers}, style=style,
                   masks=masks, distances=others or None)


def distance_arguments(config: Config) -> dict:
    """The arguments of :func:`compute_targets` / :func:`build_loss_fn` that make the targets
    of ``config``'s style distances (the distances, the styles' blend, the seed)."""
    return dict(distances=tuple(config.distance_weights()),
                style_mix=np.asarray(config.style_mix(), np.float32), seed=config.seed)


def make_loss_fn(features_fn: FeaturesFn, targets: Targets
                 ) -> Callable[[jax.Array, LossWeights], tuple[jax.Array, LossTerms]]:
    """``(pixels (H, W, 3), LossWeights) -> (total, LossTerms)``, eq. 7 of the pixels."""

    def loss(pixels, weights):
        return total_loss(features_fn(pixels), pixels, targets, weights)

    return loss


@functools.lru_cache(maxsize=32)
def untiled_loss(module: VGG, preprocessing: Preprocessing, content_layers: tuple[str, ...],
                 style_layers: tuple[str, ...]) -> Callable:
    """``fn(pixels, weights, (variables, targets)) -> (total, LossTerms)``: eq. 7 through
    ``module``; one function per network and layers (cached), so that compiled callers
    keyed by it are shared."""
    # The targets' jitted forward pass (same network, layers and, for the content, shape):
    # JAX traces the network once for both.
    features = _features_program(module, preprocessing,
                                 tuple(content_layers) + tuple(style_layers))

    def fn(pixels, weights, data):
        variables, targets = data
        return make_loss_fn(functools.partial(features, variables), targets)(pixels, weights)

    return fn


@functools.lru_cache(maxsize=32)
def _features_program(module: VGG, preprocessing: Preprocessing, layers: tuple[str, ...]):
    """Jitted ``(variables, rgb) -> {layer: activations}`` (the variables an argument:
    one compilation per image shape, whatever the weights and images)."""
    return jax.jit(lambda variables, rgb: make_features_fn(variables, layers, module,
                                                           preprocessing)(rgb))


def device_features(params, module: VGG, preprocessing: Preprocessing, layers: Sequence[str]
                    ) -> tuple[dict, FeaturesFn]:
    """``(variables, features_fn)``: the network's variables (params and
    :func:`nst_jax.vgg.ready_kernels`, host arrays, a loss's data) and the compiled
    :data:`FeaturesFn` of ``layers`` with them put on the device once, for the calls
    of :func:`compute_targets` (two or three for a run; one per item of a batch)."""
    params = jax.tree_util.tree_map(np.asarray, params)
    variables = {**params, **ready_kernels(params)}
    return variables, functools.partial(_features_program(module, preprocessing, tuple(layers)),
                                        jax.device_put(variables))


def build_loss_fn(params, content: np.ndarray, style: np.ndarray | Sequence[np.ndarray],
                  content_layers: Sequence[str], style_layers: Sequence[str], module: VGG,
                  preprocessing: Preprocessing = CAFFE, *,
                  style_masks: Sequence[np.ndarray | None] | None = None,
                  content_masks: np.ndarray | None = None, tile_size: int | None = None,
                  mesh: jax.sharding.Mesh | None = None, distances: Sequence[str] = ("gram",),
                  style_mix: np.ndarray | None = None, seed: int = 0) -> Loss:
    """Eq. 7 of the pixels for this content and style(s): computes the targets once
    (see :func:`compute_targets` for the styles, masks and style ``distances``); a :class:`Loss`.

    With ``tile_size`` (px) the loss is evaluated tile by tile, the same values in
    memory bounded by the tile (:func:`nst_jax.tiling.make_tiled_loss`; ``mesh``
    spreads the tiles over its devices).

    The weights and the targets are host (NumPy) arrays in the loss's ``data``.
    """
    params = jax.tree_util.tree_map(np.asarray, params)
    content_layers, style_layers = tuple(content_layers), tuple(style_layers)
    variables, features_fn = device_features(params, module, preprocessing,
                                             content_layers + style_layers)
    styles = as_style_list(style)
    targets = compute_targets(features_fn, np.asarray(content, np.float32),
                              [np.asarray(s, np.float32) for s in styles], content_layers,
                              style_layers, style_masks=style_masks,
                              content_masks=content_masks, tile_size=tile_size,
                              network=(params, module, preprocessing), distances=tuple(distances),
                              style_mix=style_mix, seed=seed)
    targets = jax.tree_util.tree_map(np.asarray, targets)
    if tile_size is not None:
        return tiling.make_tiled_loss(params, module, preprocessing, targets, content_layers,
                                      style_layers, np.shape(content)[:2], tile_size, mesh=mesh)
    return Loss(untiled_loss(module, preprocessing, content_layers, style_layers),
                (variables, targets))


def start_state(fn: Callable, settings: optimize.Settings, iterations: int, x0, weights, data
                ) -> optimize.OptimizeState:
    """The optimiser's state at ``x0`` (one evaluation) for the loss ``fn(x, weights,
    data)``, with a trace of ``iterations``; traced inside :func:`compiled_programs` and
    :func:`nst_jax.sweep.grid_programs`."""
    fun = _round_loss(fn, weights, data, settings)(jnp.int32(0))
    return optimize.init(optimize.make_solver(fun, settings), fun, x0, iterations)


def advance_state(fn: Callable, settings: optimize.Settings, state, num_steps, weights, data
                  ) -> optimize.OptimizeState:
    """Up to ``num_steps`` more iterations of ``state`` on the loss ``fn(x, weights, data)``
    (with ``settings.round_length``, the loss of each round: :meth:`LossWeights.at_round`)."""
    loss_for = _round_loss(fn, weights, data, settings)
    if not settings.round_length:
        return optimize.run(optimize.make_solver(loss_for(0), settings), state, num_steps,
                            settings.tolerance)
    return optimize.run(lambda r: optimize.make_solver(loss_for(r), settings), state, num_steps,
                        settings.tolerance, settings.round_length)


def _round_loss(fn: Callable, weights, data, settings: optimize.Settings) -> Callable:
    """``round -> (x -> fn(x, weights, data))``, the weights told the round where the run
    has rounds (:meth:`nst_jax.losses.LossWeights.at_round`)."""
    if not settings.round_length:
        return lambda r: (lambda x: fn(x, weights, data))
    return lambda r: (lambda x: fn(x, weights.at_round(r), data))


@functools.lru_cache(maxsize=32)
def compiled_programs(fn: Callable, settings: optimize.Settings, iterations: int):
    """The compiled functions of a run of the loss ``fn`` (:attr:`Loss.fn`), its data an
    argument: ``start(x0, weights, data)``, ``run(state, num_steps, weights, data)`` (the
    state donated) and ``terms(pixels, weights, data)``. Cached, so that every run with
    the same loss function, settings and iterations shares them: a second image pair of
    the same size traces and compiles nothing."""

    # The loss, jitted on its own and called inside both programs: JAX traces the network
    # (Python, Flax) once per shape and differentiates that trace for the start and the loop,
    # where each traced it anew (XLA inlines the call: the compiled programs are the same).
    # A repeated run, whose programs come from the compilation cache, still traces them.
    loss = jax.jit(fn)

    # Named functions: JAX names the programs, and their compilation-cache entries, after them.
    def start(x0, weights, data):
        return start_state(loss, settings, iterations, x0, weights, data)

    def run(state, num_steps, weights, data):
        return advance_state(loss, settings, state, num_steps, weights, data)

    # The state is donated: XLA reuses its buffers (the L-BFGS history is 2 image-sized
    # vectors per step) instead of holding old and new.
    return jax.jit(start), jax.jit(run, donate_argnums=0), loss


def best_image(state: optimize.OptimizeState) -> jax.Array:
    """The best pixels seen (the current ones if no finite loss yet), clipped to [0, 1]
    (a no-op when the optimiser kept them in the box); one state or a batch of them."""
    finite = jnp.isfinite(state.best_value)[..., None, None, None]
    return jnp.clip(jnp.where(finite, state.best_pixels, state.pixels), *PIXEL_BOUNDS)


def saved_pixels(state: optimize.OptimizeState, bits: int = 8) -> jax.Array:
    """What a ``bits``-bit (8 or 16) file of :func:`best_image` holds: those pixels rounded
    to ``2**bits - 1`` levels (as floats in [0, 1]); one state or a batch of them. The
    losses reported are of these pixels."""
    if bits not in images.BIT_DEPTHS:
        raise ValueError(f"bits must be one of {images.BIT_DEPTHS}, got {bits!r}")
    return _rounded(state, float(2**bits - 1))


@jax.jit
def _rounded(state: optimize.OptimizeState, levels: float) -> jax.Array:
    # One compiled call: eagerly, each of its operations compiles a program of its own.
    return jnp.round(best_image(state) * levels) / levels


def white_noise(seed: jax.Array | int, shape: tuple[int, ...],
                amplitude: jax.Array | float = 0.1) -> jax.Array:
    """``0.5 + amplitude * (U[0, 1) - 0.5)``: white noise around mid-grey.

    ``seed`` is an unsigned 32-bit integer (0 to 2**32 - 1; a Python int or a
    uint32 array give the same noise), and may be traced with ``amplitude``, so a
    sweep over seeds is a ``vmap``.
    """
    if isinstance(seed, int):
        seed = np.uint32(seed)
    return _white_noise(seed, tuple(shape), amplitude)


@functools.partial(jax.jit, static_argnums=1)
def _white_noise(seed, shape, amplitude):
    # One compiled call: eagerly, the key, the draw and the arithmetic compile a program each.
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


def init_of(config: Config, init_image: np.ndarray | None):
    """What :func:`initial_pixels` starts from for ``config``: its ``init`` name, or the
    ``init_image`` its ``init`` file holds (as the optimiser sees it: grey under
    ``preserve_colors='luminance'``)."""
    if not config.init_is_file:
        return config.init
    if config.preserve_colors == "luminance":
        return np.asarray(colors.gray3(colors.luminance(init_image)))
    return init_image


@dataclasses.dataclass
class Stylization:
    """A prepared run: call :meth:`step` repeatedly (each call is one compiled function).

    Built by :func:`prepare`. ``state`` is the :class:`nst_jax.optimize.OptimizeState`;
    ``content`` the content image in its own colours (for ``preserve_colors``);
    ``tiles`` the tiling of the loss (:func:`nst_jax.tiling.plan`) or None (untiled), and
    ``memory`` the tile size and L-BFGS history settled on (:func:`nst_jax.memory.choose`).
    """

    config: Config
    loss_fn: Callable
    weights: LossWeights
    state: optimize.OptimizeState
    content: np.ndarray
    _run: Callable
    _terms: Callable
    tiles: tiling.Plan | None = None
    memory: memory_model.Choice | None = None

    def step(self, num_iterations: int) -> optimize.OptimizeState:
        """Run up to ``num_iterations`` more iterations (fewer at the end or on a non-finite loss).

        The previous state is donated to the compiled loop (its arrays are deleted): keep
        a copy (``jax.device_get``) of one you still need."""
        self.state = self._run(self.state, np.asarray(num_iterations, np.int32), self.weights)
        return self.state

    @property
    def iteration(self) -> int:
        """Iterations done."""
        return int(self.state.iteration)

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
        if i >= 0:  # read on the host: indexing on the device compiles a program per operation
            total = float(np.asarray(self.state.trace.value)[i])
            terms = LossTerms(*(float(np.asarray(t)[i]) for t in self.state.trace.aux))
            if np.isfinite(total) and all(np.isfinite(terms)):
                return total, terms
        return self.terms()

    def result(self) -> np.ndarray:
        """The output so far, RGB float32 in [0, 1]: the best image, with the content's
        colours put back where ``preserve_colors`` asks (:func:`nst_jax.colors.finish`)."""
        return np.asarray(colors.finish(self.config.preserve_colors, best_image(self.state),
                                        self.content))

    def saved(self, bits: int = 8) -> tuple[np.ndarray, float, LossTerms]:
        """``(image, total, terms)`` of what a ``bits``-bit file of :meth:`result` holds:
        the output as uint8 (``bits=8``) or uint16 (``bits=16``), and the eq. 7 loss of
        the optimised pixels rounded to those bits (for ``luminance`` / ``original``
        colours, of the image before the content's colours are put back: that is what
        was optimised)."""
        pixels = saved_pixels(self.state, bits)
        total, terms = self.terms(pixels)
        out = colors.finish(self.config.preserve_colors, pixels, self.content)
        return images.quantize(np.asarray(out), bits), total, terms


def prepare(content: np.ndarray, style: np.ndarray | Sequence[np.ndarray], params,
            config: Config = Config(), *, module: VGG | None = None,
            preprocessing: Preprocessing = CAFFE, init_image: np.ndarray | None = None,
            content_masks: np.ndarray | None = None,
            style_masks: Sequence[np.ndarray | None] | None = None,
            start: np.ndarray | None = None, temporal_target: temporal.Target | None = None,
            temporal_weight: float = 0.0) -> Stylization:
    """Set up a style transfer of ``content`` in the style of ``style``.

    Args:
      content: RGB float32 in [0, 1], ``(H, W, 3)``; the output has this size.
      style: RGB float32 in [0, 1], ``(H', W', 3)``, or a list of such images (one per
        entry of ``config.style``: blended, or one per region); any size (the Gram
        matrices are per position, but the scale of the texture follows the size).
      params: the VGG params tree (``nst_jax.weights.load_params``).
      config: :class:`nst_jax.config.Config` (its image paths are not read here:
        see :func:`load_inputs`).
      module: the VGG module (default :func:`network` of ``config``).
      preprocessing: the weights' input preprocessing.
      init_image: the starting image when ``config.init`` is an image file.
      content_masks: ``(R, H, W)`` in [0, 1], region ``r`` styled by style ``r``
        (needed when ``config.content_masks`` is set; :func:`load_inputs` reads them).
      style_masks: one ``(H'_k, W'_k)`` mask per style image, or None.
      start: the starting pixels, ``(H, W, 3)`` in [0, 1], as they are optimised (before
        ``preserve_colors`` puts the content's colours back), used as they are instead of
        ``config.init`` (:mod:`nst_jax.coarse_to_fine` passes the previous scale's
        result here).
      temporal_target / temporal_weight: a video frame's :class:`nst_jax.temporal.Target`
        (the previous result warped into this frame, and where to trust it) and γ: the
        loss is then Ruder et al.'s eq. 7 (:func:`nst_jax.temporal.with_temporal`), the
        target a data argument, so every frame of a clip shares the compiled programs.
    """
    module = module or network(config)
    settings = optimizer_settings(config)
    styles = as_style_list(style)
    _check_arrays(config, content, styles, content_masks, style_masks)
    seen_content, styles = colors.prepare(config.preserve_colors, content, styles)
    seen_content = np.asarray(seen_content, np.float32)
    styles = [np.asarray(s, np.float32) for s in styles]
    memory = memory_model.choose(config.tile_size, seen_content.shape[:2], config.lbfgs_memory)
    sorting = config.sorting_distances()
    if sorting and memory.tile_size is not None:
        raise NSTError(f"a {seen_content.shape[1]}x{seen_content.shape[0]} image needs tiles of "
                       f"{memory.tile_size} px to fit in memory, and the style distance "
                       f"{' and '.join(sorting)} does not tile: make it smaller, or use gram or "
                       "mean-cov")
    settings = settings._replace(memory_size=memory.lbfgs_memory)
    loss_fn = build_loss_fn(params, seen_content, styles, config.content_layers, config.style_layers,
                            module, preprocessing, style_masks=style_masks,
                            content_masks=content_masks, tile_size=memory.tile_size,
                            **distance_arguments(config))
    if config.init_is_file and init_image is None:
        raise NSTError(f"config.init is the file {config.init!r}: pass its pixels as init_image "
                       "(see load_inputs)")
    init = init_of(config, init_image)
    if start is not None:
        if np.shape(start) != seen_content.shape:
            raise NSTError(f"start has shape {np.shape(start)}; the content is {seen_content.shape}")
        x0 = jnp.asarray(start, jnp.float32)
    else:
        x0 = initial_pixels(init, seen_content, styles[0], config.seed, config.noise_amplitude)
    weights_ = loss_weights(config)
    fn, data = loss_fn.fn, loss_fn.data
    if temporal_target is not None:  # exact when tiled too: the term is of the pixels alone
        fn, data = temporal.with_temporal(fn), (data, temporal_target)
        weights_ = temporal.TemporalWeights(weights_, np.float32(temporal_weight))

    # The kernels and targets enter the compiled functions as an argument (see Loss), put
    # on the device once.
    data = jax.device_put(data)
    # A tiled loss's function is new with each build (its plan and kernels inside): not
    # cached, so that a long process does not keep every tiled run's kernels alive.
    programs = compiled_programs if loss_fn.plan is None else compiled_programs.__wrapped__
    start_fn, run, terms = programs(fn, settings, config.iterations)
    state = start_fn(x0, weights_, data)
    return Stylization(config, loss_fn, weights_, state, np.asarray(content, np.float32),
                       functools.partial(run, data=data),
                       # data positional, as the programs pass it: the loss's trace is reused
                       lambda pixels, weights: terms(pixels, weights, data),
                       loss_fn.plan, memory)


def _check_arrays(config: Config, content, styles: list, content_masks, style_masks) -> None:
    """The images and masks passed to :func:`prepare` against what ``config`` names."""
    if len(styles) != len(config.style):
        raise NSTError(f"config names {len(config.style)} style image(s) but {len(styles)} were "
                       "given")
    if (content_masks is None) != (config.content_masks is None):
        raise NSTError("content_masks must be given exactly when config.content_masks is set")
    if content_masks is not None and np.shape(content_masks) != (len(styles), *np.shape(content)[:2]):
        raise NSTError(f"content_masks must be {len(styles)} masks of the content's size "
                       f"{np.shape(content)[:2]}, got shape {np.shape(content_masks)}")
    if style_masks is not None:
        if len(style_masks) != len(styles):
            raise NSTError(f"{len(style_masks)} style masks for {len(styles)} styles")
        for k, (mask, style) in enumerate(zip(style_masks, styles)):
            if mask is not None and np.shape(mask) != np.shape(style)[:2]:
                raise NSTError(f"style mask {k + 1} has shape {np.shape(mask)}; its style image "
                               f"is {np.shape(style)[:2]}")
