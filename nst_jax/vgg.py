"""VGG19 as a pure Flax module (Gatys et al. 2016, §2: "the 16 convolutional and
5 pooling layers of the 19-layer VGG network"), and the input preprocessing that
its weights expect.

The module holds no weights: build the parameter tree with ``init`` or
``jax.eval_shape`` and fill it from a converted file (``nst_jax.weights``).
"""
from __future__ import annotations

import functools
from typing import Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError

# Channels of each conv layer, block by block, as in VGG19 ("configuration E").
VGG19_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)


def layer_names(blocks: Sequence[Sequence[int]] = VGG19_BLOCKS) -> tuple[str, ...]:
    """The paper's names of the conv layers, in network order: ``conv1_1`` ... ``conv5_4``."""
    return tuple(f"conv{b + 1}_{i + 1}" for b, block in enumerate(blocks) for i in range(len(block)))


LAYER_NAMES: tuple[str, ...] = layer_names()
POOLINGS = ("avg", "max")
DTYPES = ("float32", "bfloat16")


_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMENSIONS)


def backward_kernel(kernel: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """A ``(3, 3, Ci, Co)`` kernel as the gradient's convolution takes it: flipped in space,
    its channels swapped, ``(3, 3, Co, Ci)``; a JAX array (traced) or a NumPy array
    (:func:`ready_kernels`), in kind."""
    return kernel[::-1, ::-1].swapaxes(2, 3)


def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """3x3 'SAME' cross-correlation, ``x (N, H, W, Ci)``, ``kernel (3, 3, Ci, Co)``
    (:func:`conv3x3_ready` with the kernel's backward form computed here)."""
    return conv3x3_ready(x, kernel, backward_kernel(kernel))


@jax.custom_vjp
def conv3x3_ready(x: jax.Array, forward: jax.Array, backward: jax.Array) -> jax.Array:
    """3x3 'SAME' cross-correlation of ``x (N, H, W, Ci)`` with ``forward (3, 3, Ci, Co)``;
    ``backward`` is :func:`backward_kernel` of the same kernel, the form the gradient's
    convolution takes (the caller keeps them consistent).

    The gradient with respect to ``x`` is a plain forward convolution with the
    flipped kernel. Mathematically this is the standard VJP; it exists because XLA
    on CPU runs the standard VJP's transposed convolution about 3x slower inside a
    ``while_loop`` (every optimiser loop here) than outside one, while a forward
    convolution runs at full speed in both (measured with jax 0.10.2 on a 2-core AMD
    EPYC: 0.10 s vs 0.03 s per gradient of a 32x32x256 layer). Taking both forms
    ready-made lets a caller compute them once, outside the optimiser's loop
    (:func:`ready_kernels`), instead of at every evaluation.
    """
    return _conv(x, forward)


def _conv3x3_fwd(x, forward, backward):
    return _conv(x, forward), (x, forward, backward)


def _conv3x3_bwd(residuals, cotangent):
    x, forward, backward = residuals
    dx = _conv(cotangent, backward)
    # The kernel's cotangent (dead code, removed by XLA, when only pixels are optimised);
    # the output does not depend on ``backward`` (it only serves the gradient).
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k), forward)
    return dx, kernel_vjp(cotangent)[0], jnp.zeros_like(backward)


conv3x3_ready.defvjp(_conv3x3_fwd, _conv3x3_bwd)

# The variable collection that holds :func:`ready_kernels`.
READY = "ready"


def ready_kernels(params) -> dict:
    """``{"ready": {layer: {"backward": (3, 3, Co, Ci)}}}``: :func:`backward_kernel` of every
    kernel of ``params``, as contiguous NumPy arrays (computed once, on the host).

    Pass it to :meth:`VGG.apply` beside the params (``{**params, **ready_kernels(params)}``)
    when the params are an argument of a jitted function: the module then uses these
    instead of flipping and transposing every kernel at every evaluation, which XLA
    does inside the optimiser's loop (measured: 2-13 % of each evaluation at 128-512 px
    on a 2-core CPU). With the params as compile-time constants XLA folds that itself.
    """
    return {READY: {name: {"backward": np.ascontiguousarray(
        backward_kernel(np.asarray(layer["kernel"])))} for name, layer in params["params"].items()}}


class Conv3x3(nn.Module):
    """The parameters of a 3x3 'SAME' conv layer with bias: ``kernel (3, 3, Ci, Co)``,
    ``bias (Co,)`` (the layout of ``flax.linen.Conv``). Called, it returns the kernel's
    two forms (:func:`conv3x3_ready`: from the ``ready`` collection when the caller gave
    it, see :func:`ready_kernels`, else computed here) and the bias; :func:`conv_block`
    applies them (so a whole block can be rematerialised)."""

    in_features: int
    features: int

    @nn.compact
    def __call__(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (3, 3, self.in_features, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if self.has_variable(READY, "backward"):
            return kernel, self.get_variable(READY, "backward"), bias
        return kernel, backward_kernel(kernel), bias


def conv_block(x: jax.Array, weights: Sequence[tuple[jax.Array, jax.Array, jax.Array]]
               ) -> list[jax.Array]:
    """One VGG block: ``relu(conv3x3(x) + bias)`` for each ``(forward, backward, bias)``
    (:meth:`Conv3x3.__call__`), in ``x``'s dtype.

    Returns every layer's post-ReLU activations (the last is the block's output).
    """
    outputs = []
    for forward, backward, bias in weights:
        x = nn.relu(conv3x3_ready(x, forward.astype(x.dtype), backward.astype(x.dtype))
                    + bias.astype(x.dtype))
        outputs.append(x)
    return outputs


def check_layers(layers: Sequence[str], known: Sequence[str] = LAYER_NAMES) -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise :class:`NSTError` naming any unknown layer."""
    layers = tuple(layers)
    unknown = [name for name in layers if name not in known]
    if unknown:
        raise NSTError(
            f"unknown layer name(s) {', '.join(unknown)}; choose from {known[0]} ... {known[-1]} "
            f"({', '.join(known)})"
        )
    if not layers:
        raise NSTError("no layers given")
    return layers


class VGG(nn.Module):
    """The convolutional part of VGG, returning post-ReLU activations by name.

    Attributes:
      blocks: channels of each 3x3 conv layer, grouped by pooling block.
        ``VGG19_BLOCKS`` is the real network; tests use a few channels.
      pooling: ``'avg'`` (the paper's choice, §2) or ``'max'`` (the original VGG).
      remat: rematerialise each block in the backward pass (``jax.checkpoint``):
        only the blocks' inputs and the requested activations are kept for the
        gradient, trading about one more forward pass for memory.
      dtype: ``None`` (compute in the input's dtype) or ``'bfloat16'`` (mixed
        precision: the convolutions in bfloat16, the activations returned in
        the input's dtype).

    Call with ``images`` of shape ``(H, W, 3)`` or ``(N, H, W, 3)``, already
    preprocessed (see :func:`preprocess`), and the tuple of layer names wanted.
    Returns ``{name: activations}`` with activations ``(h, w, C)`` or ``(N, h, w, C)``.
    Layers past the deepest one asked for are not computed.
    """

    blocks: Sequence[Sequence[int]] = VGG19_BLOCKS
    pooling: str = "avg"
    remat: bool = False
    dtype: str | None = None

    @nn.compact
    def __call__(self, images: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
        if self.pooling not in POOLINGS:
            raise NSTError(f"unknown pooling {self.pooling!r}; choose 'avg' or 'max'")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise NSTError(f"unknown dtype {self.dtype!r}; choose None or {' or '.join(DTYPES)}")
        names = layer_names(self.blocks)
        wanted = set(check_layers(layers, names))
        deepest = max(names.index(name) for name in wanted)
        unbatched = images.ndim == 3
        x = (images[None] if unbatched else images).astype(self.dtype or images.dtype)
        pool = nn.avg_pool if self.pooling == "avg" else nn.max_pool
        block_fn = jax.checkpoint(conv_block) if self.remat else conv_block
        features = {}
        first = 0  # index in ``names`` of the block's first layer
        in_channels = x.shape[-1]
        for b, block in enumerate(self.blocks):
            if first > deepest:
                break
            if b > 0:
                x = pool(x, (2, 2), strides=(2, 2), padding="VALID")
            block_names = names[first:min(first + len(block), deepest + 1)]
            weights = []
            for name, channels in zip(block_names, block):
                weights.append(Conv3x3(in_channels, channels, name=name)())
                in_channels = channels
            outputs = block_fn(x, weights)
            for name, activations in zip(block_names, outputs):
                if name in wanted:
                    activations = activations.astype(images.dtype)
                    features[name] = activations[0] if unbatched else activations
            x = outputs[-1]
            first += len(block)
        return features


VGG19 = functools.partial(VGG, blocks=VGG19_BLOCKS)


class Preprocessing(NamedTuple):
    """How RGB images in [0, 1] become the network's input.

    ``x = (rgb * scale)[..., channel_order] - mean) / std``, per channel, in the
    network's channel order. Recorded in the converted weights file.
    """

    scale: float
    channel_order: tuple[int, int, int]  # indices into RGB: (2, 1, 0) means BGR
    mean: tuple[float, float, float]  # in the network's channel order
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {"scale": self.scale, "channel_order": list(self.channel_order),
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Preprocessing":
        try:
            p = cls(float(d["scale"]), tuple(int(c) for c in d["channel_order"]),
                    tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"]))
        except (KeyError, TypeError, ValueError) as e:
            raise NSTError(f"bad preprocessing metadata {dict(d)!r}: {e}") from None
        if sorted(p.channel_order) != [0, 1, 2] or len(p.mean) != 3 or len(p.std) != 3:
            raise NSTError(f"bad preprocessing metadata {dict(d)!r}")
        return p


# Keras / Caffe VGG19: RGB 0-255 -> BGR -> minus the ImageNet mean pixel (in BGR order).
CAFFE = Preprocessing(255.0, (2, 1, 0), (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# torchvision VGG19: RGB in [0, 1], ImageNet mean and std.
TORCHVISION = Preprocessing(1.0, (0, 1, 2), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def preprocess(rgb: jax.Array, preprocessing: Preprocessing = CAFFE) -> jax.Array:
    """Map RGB images in [0, 1], shape ``(..., 3)``, to the network's input space."""
    x = rgb[..., list(preprocessing.channel_order)] * preprocessing.scale
    return (x - jnp.asarray(preprocessing.mean, x.dtype)) / jnp.asarray(preprocessing.std, x.dtype)


def deprocess(x: jax.Array, preprocessing: Preprocessing = CAFFE) -> jax.Array:
    """Inverse of :func:`preprocess`: network input back to RGB (not clipped)."""
    x = x * jnp.asarray(preprocessing.std, x.dtype) + jnp.asarray(preprocessing.mean, x.dtype)
    inverse = np.argsort(preprocessing.channel_order)
    return x[..., list(inverse)] / preprocessing.scale


def normalize_params(module: VGG, params, images: jax.Array) -> dict:
    """The paper's normalised network (§2): rescale each filter so that its mean
    post-ReLU activation over ``images`` and positions is 1.

    Each conv layer ``l`` is divided, filter by filter, by its mean activation
    ``m`` (computed on the already-normalised layers below it); the next layer's
    input weights are multiplied by ``m`` so that, with ReLU and average pooling
    both positively homogeneous, the network computes the same features up to a
    per-channel scale. Filters whose mean activation is 0 on ``images`` (dead on
    this input) are left as they are.

    Args:
      module: the VGG module (its ``blocks`` and ``pooling``).
      params: ``{'params': {name: {'kernel', 'bias'}}}`` as loaded.
      images: preprocessed images ``(N, H, W, 3)`` (e.g. content and style).
    Returns:
      a new params tree of the same structure.
    """
    inner = dict(jax.tree_util.tree_map(jnp.asarray, params["params"]))
    names = layer_names(module.blocks)
    previous_scale = None
    for name in names:
        layer = dict(inner[name])
        if previous_scale is not None:
            layer["kernel"] = layer["kernel"] * previous_scale[None, None, :, None]
        inner[name] = layer
        activations = module.apply({"params": inner}, images, (name,))[name]
        mean = jnp.mean(activations, axis=tuple(range(activations.ndim - 1)))
        scale = jnp.where(mean > 0, mean, 1.0)
        inner[name] = {"kernel": layer["kernel"] / scale, "bias": layer["bias"] / scale}
        previous_scale = scale
    return {"params": inner}
