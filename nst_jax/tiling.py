"""Eq. 7 and its gradient evaluated tile by tile: exactly the untiled values, in memory
bounded by the tile, not by the image.

Eq. 1 is local: each generated position's content term needs only its own
activations. Eq. 4 is not (``G`` sums over every position), but its gradient,
eq. 6, is local once ``G`` is known: ``dE/dF = F (G - A) / (N^2 M^2)``. So one
evaluation is two passes over the tiles:

1. **forward** (nothing kept for a backward pass): each tile's activations give
   its share of every style layer's Gram matrix (per region, for guided Gram
   matrices) and of every content layer's squared error; the shares add up to
   the loss, exactly.
2. **backward**: with ``dL/dG`` now fixed, each tile is evaluated again and
   back-propagated through the *surrogate*
   ``sum_l α c_l 1/2 |F_l - P_l|^2 + sum_{l,r} <F_l^T diag(m_r) F_l, dL/dG_{l,r}>``
   over the tile's own positions, whose gradient is the tile's part of eq. 6 and
   of eq. 1's gradient. The pixel gradients of overlapping halos add up.

**Tiles and halos.** A tile is a *core* of the image plus a halo as wide as the
receptive field of the deepest layer evaluated on it (every 3x3 convolution at
scale ``s``, i.e. after ``log2 s`` poolings, reaches ``s`` px further), rounded
up to the pooling stride so that every pooling window of the tile is one of the
whole image's. Outside the image the activations are zeroed after every layer,
which is what the network's 'SAME' zero padding sees, and positions a 'VALID'
pooling drops are dropped too: the activations of a tile's core are exactly the
untiled ones, at image borders and for sizes the tiles do not divide.

**Stages.** The memory is in the first blocks (a 64-channel activation of a
4096² image is 4.3 GB), the width of the receptive fields in the last ones (the
halo of ``conv5_1`` is 70 px; that of ``conv3_4`` is 22 px). So the network is
cut into *stages* (:data:`STAGE_CUTS`: blocks 1-3, then 4-5): the first stage
tiles the pixels with a 24 px halo and writes its ``pool3`` output (256 channels
at 1/64 of the positions: 16 bytes per pixel) in full; the second stage tiles
that with a halo of 6 positions (48 px) and tiles twice as wide. A stage whose
input fits in one tile has no halo at all. The backward pass runs the stages in
reverse, the later stage's input gradient becoming the earlier one's output
cotangent.

**Many devices.** :func:`make_tiled_loss` with a ``mesh`` spreads the tiles of
every pass over the mesh's devices (``shard_map``; device ``d`` of ``D`` takes
tiles ``d, d + D, ...``) and adds the Gram matrices, squared errors, stage
outputs and gradients with a ``psum``: one image over many devices and processes,
with the result of one device up to the order of the sums.

Which tile fits in memory (``--tile-size auto``) is :mod:`nst_jax.memory`'s question.
"""
from __future__ import annotations

from typing import Callable, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.config import MIN_TILE
from nst_jax.errors import NSTError
from nst_jax import distances
from nst_jax.distances import ADDITIVE
from nst_jax.losses import Loss, LossTerms, Targets, gram_error, total_variation
from nst_jax.vgg import VGG, Preprocessing, conv3x3, layer_names, preprocess

# The network is cut after these blocks (1-based): blocks 1-3 are one stage, 4-5 the next.
STAGE_CUTS = (3,)
# A later stage's tiles span this many times the side of the first stage's tiles, in px.
DEEP_TILE_FACTOR = 2


def block_of(layer: str) -> int:
    """``conv3_1`` -> 3: the layer's block, after ``block - 1`` 2x2 poolings."""
    return int(layer[len("conv"):].split("_")[0])


class Stage(NamedTuple):
    """Blocks ``first`` ... ``last`` (1-based) of the network, their input at ``scale`` px
    per position; ``convs``: the conv layers evaluated, in order; ``layers``: those of
    them the loss uses; ``trailing_pool``: its output is pooled for the next stage."""

    first: int
    last: int
    scale: int
    convs: tuple[str, ...]
    layers: tuple[str, ...]
    trailing_pool: bool

    @property
    def poolings(self) -> int:
        """Poolings inside the stage, the trailing one included."""
        return self.last - self.first + int(self.trailing_pool)

    @property
    def align(self) -> int:
        """Tile corners and sides are multiples of this (stage input positions), so every
        pooling window of a tile is a pooling window of the whole input."""
        return 2**self.poolings

    @property
    def reach(self) -> int:
        """How far (stage input positions) the last activation of the stage depends on its
        input: each 3x3 convolution after ``k`` poolings of the stage reaches ``2^k``."""
        return sum(2 ** (block_of(name) - self.first) for name in self.convs)

    @property
    def halo(self) -> int:
        return -(-self.reach // self.align) * self.align


def stages(blocks: Sequence[Sequence[int]], layers: Sequence[str],
           cuts: Sequence[int] = STAGE_CUTS) -> tuple[Stage, ...]:
    """The stages evaluating ``layers`` of a VGG with ``blocks`` (up to the deepest one)."""
    names = layer_names(blocks)
    deepest = max(names.index(name) for name in layers)
    used = names[: deepest + 1]
    last_block = block_of(used[-1])
    bounds = [c for c in cuts if c < last_block]
    out = []
    for first, last in zip([1] + [c + 1 for c in bounds], bounds + [last_block]):
        convs = tuple(n for n in used if first <= block_of(n) <= last)
        out.append(Stage(first, last, 2 ** (first - 1), convs,
                         tuple(n for n in convs if n in layers), last != last_block))
    return tuple(out)


class TileGrid(NamedTuple):
    """How one stage's input of ``size`` (h, w) positions is cut: ``count`` tiles of side
    ``tile`` each way, each with ``halo`` positions around it (0 along a side one tile
    covers)."""

    size: tuple[int, int]
    tile: tuple[int, int]
    count: tuple[int, int]
    halo: tuple[int, int]

    @property
    def tiles(self) -> int:
        return self.count[0] * self.count[1]

    @property
    def padded(self) -> tuple[int, int]:
        """The input zero-padded: halo, ``count`` tiles, halo."""
        return tuple(c * t + 2 * h for c, t, h in zip(self.count, self.tile, self.halo))

    @property
    def canvas(self) -> tuple[int, int]:
        return tuple(t + 2 * h for t, h in zip(self.tile, self.halo))


def grid(stage: Stage, size: tuple[int, int], tile: int) -> TileGrid:
    """``tile`` (stage input positions) rounded up to the stage's alignment; one tile,
    without halo, along a side it covers."""
    tile = -(-max(tile, 1) // stage.align) * stage.align
    tiles, counts, halos = [], [], []
    for side in size:
        if side <= tile:
            tiles.append(-(-side // stage.align) * stage.align)
            counts.append(1)
            halos.append(0)
        else:
            tiles.append(tile)
            counts.append(-(-side // tile))
            halos.append(stage.halo)
    return TileGrid(tuple(size), tuple(tiles), tuple(counts), tuple(halos))


def stage_tile(stage: Stage, tile_px: int) -> int:
    """A stage's tile side in its own input positions, from the first stage's side in px."""
    factor = 1 if stage.first == 1 else DEEP_TILE_FACTOR
    return max(1, tile_px * factor // stage.scale)


# --- one tile -----------------------------------------------------------------------------

def _valid(origin: jax.Array, length: int, size: int, level: int) -> jax.Array:
    """``(length,)`` 1.0 where the position (at ``level`` poolings into the stage) is in the
    input, whose side there is ``size``; ``origin`` is the canvas corner at level 0."""
    positions = origin // 2**level + jnp.arange(length)
    return ((positions >= 0) & (positions < size)).astype(jnp.float32)


def _stage_forward(kernels: Mapping, stage: Stage, g: TileGrid, pool: Callable, dtype,
                   canvas: jax.Array, origin: tuple[jax.Array, jax.Array]
                   ) -> tuple[dict[str, jax.Array], jax.Array | None]:
    """The stage on one tile's canvas: ``({layer: core activations}, core of the pooled
    output or None)``, each exactly what the untiled network computes there."""
    sizes = [g.size]
    for _ in range(stage.poolings):
        sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))

    def mask(x, level):
        rows = _valid(origin[0], x.shape[1], sizes[level][0], level)
        cols = _valid(origin[1], x.shape[2], sizes[level][1], level)
        return x * (rows[:, None] * cols[None, :])[None, :, :, None].astype(x.dtype)

    def core(x, level):
        (hy, hx), (ty, tx) = g.halo, g.tile
        d = 2**level
        return x[0, hy // d: (hy + ty) // d, hx // d: (hx + tx) // d].astype(jnp.float32)

    x = canvas[None].astype(dtype or canvas.dtype)
    features, level = {}, 0
    for name in stage.convs:
        block = block_of(name) - stage.first
        if block > level:
            x = mask(pool(x, (2, 2), strides=(2, 2), padding="VALID"), block)
            level = block
        kernel, bias = kernels[name]
        x = mask(nn.relu(conv3x3(x, kernel.astype(x.dtype)) + bias.astype(x.dtype)), level)
        if name in stage.layers:
            features[name] = core(x, level)
    out = None
    if stage.trailing_pool:
        level += 1
        out = core(mask(pool(x, (2, 2), strides=(2, 2), padding="VALID"), level), level)
    return features, out


def _pad_to_grid(array: np.ndarray, g: TileGrid, level: int, axes: tuple[int, int]) -> np.ndarray:
    """A layer's array (its positions on ``axes``) zero-padded to the grid's cores at ``level``."""
    d = 2**level
    pad = [(0, 0)] * array.ndim
    for axis, count, tile in zip(axes, g.count, g.tile):
        pad[axis] = (0, count * tile // d - array.shape[axis])
    return np.pad(np.asarray(array, np.float32), pad)


class Plan(NamedTuple):
    stages: tuple[Stage, ...]
    grids: tuple[TileGrid, ...]


def plan(blocks: Sequence[Sequence[int]], layers: Sequence[str], shape: tuple[int, int],
         tile_px: int) -> Plan:
    """The stages and their grids for an image of ``shape`` (h, w) px and tiles of ``tile_px``."""
    if tile_px < MIN_TILE:
        raise NSTError(f"tile size {tile_px} px is too small; use at least {MIN_TILE} px")
    out_stages = stages(blocks, layers)
    grids, size = [], tuple(shape)
    for s in out_stages:
        grids.append(grid(s, size, stage_tile(s, tile_px)))
        for _ in range(s.poolings):
            size = (size[0] // 2, size[1] // 2)
    return Plan(out_stages, tuple(grids))


def describe(p: Plan) -> str:
    """``'blocks 1-3: 4x4 tiles of 512 px + 24 px halo; blocks 4-5: one tile'``."""
    parts = []
    for s, g in zip(p.stages, p.grids):
        where = f"blocks {s.first}-{s.last}" if s.last > s.first else f"block {s.first}"
        if g.tiles == 1:
            parts.append(f"{where}: one tile")
        else:
            parts.append(f"{where}: {g.count[0]}x{g.count[1]} tiles of {g.tile[0] * s.scale} px "
                         f"+ {max(g.halo) * s.scale} px halo")
    return "; ".join(parts)


# --- tiled passes -------------------------------------------------------------------------

class Tiled:
    """VGG on one image shape, tile by tile: the two passes of the module docstring.

    Args:
      params: the VGG params tree; module: its VGG (``blocks``, ``pooling``, ``dtype``).
      layers: every layer the loss or the targets use.
      shape: the image's ``(H, W)``; tile_px: the first stage's tile side, px.
      mesh: a one-axis ``jax.sharding.Mesh`` whose devices share the tiles (``psum``).
    """

    def __init__(self, params, module: VGG, layers: Sequence[str], shape: tuple[int, int],
                 tile_px: int, mesh: jax.sharding.Mesh | None = None):
        self.plan = plan(module.blocks, tuple(layers), shape, tile_px)
        inner = params["params"]
        self.kernels = {name: (jnp.asarray(inner[name]["kernel"]), jnp.asarray(inner[name]["bias"]))
                        for s in self.plan.stages for name in s.convs}
        self.pool = nn.avg_pool if module.pooling == "avg" else nn.max_pool
        self.dtype = None if module.dtype is None else jnp.dtype(module.dtype)
        self.mesh = mesh
        self.axis = None if mesh is None else mesh.axis_names[0]

    # where things are
    def stage_of(self, layer: str) -> int:
        return next(k for k, s in enumerate(self.plan.stages) if layer in s.layers)

    def level_of(self, layer: str) -> int:
        return block_of(layer) - self.plan.stages[self.stage_of(layer)].first

    def on_cores(self, array: np.ndarray, layer: str, axes: tuple[int, int] = (0, 1)) -> jax.Array:
        """A layer's array (positions on ``axes``) zero-padded to its stage's cores."""
        g = self.plan.grids[self.stage_of(layer)]
        return jnp.asarray(_pad_to_grid(array, g, self.level_of(layer), axes))

    def core(self, array: jax.Array, k: int, level: int, ij, axes=(0, 1)) -> jax.Array:
        """The slice of a cores-padded array that tile ``ij`` of stage ``k`` owns."""
        g, d = self.plan.grids[k], 2**level
        starts, sizes = [0] * array.ndim, list(array.shape)
        for axis, index, tile in zip(axes, ij, g.tile):
            starts[axis], sizes[axis] = index * (tile // d), tile // d
        return jax.lax.dynamic_slice(array, starts, sizes)

    def _tiles(self, g: TileGrid, body, carry):
        """``fori_loop`` over this device's tiles: ``body(t, carry)``."""
        first, step = 0, 1
        if self.mesh is not None:
            first, step = jax.lax.axis_index(self.axis), self.mesh.devices.size
        steps = (g.tiles - first + step - 1) // step
        return jax.lax.fori_loop(0, steps, lambda n, c: body(first + n * step, c), carry)

    def _sum(self, tree):
        return tree if self.mesh is None else jax.lax.psum(tree, self.axis)

    def _canvas(self, xp: jax.Array, g: TileGrid, t):
        i, j = t // g.count[1], t % g.count[1]
        corner = (i * g.tile[0], j * g.tile[1])  # in the padded input
        origin = (corner[0] - g.halo[0], corner[1] - g.halo[1])  # in the input
        start, shape = (*corner, 0), (*g.canvas, xp.shape[-1])
        return jax.lax.dynamic_slice(xp, start, shape), origin, (i, j), start, shape

    def _forward(self, kernels, k: int, canvas, origin):
        return _stage_forward(kernels, self.plan.stages[k], self.plan.grids[k], self.pool,
                              self.dtype, canvas, origin)

    def forward(self, kernels, x: jax.Array, per_tile: Callable, init, maps: Sequence[str] = (),
                keep: bool = False):
        """Pass 1 over the preprocessed image ``x (H, W, 3)``.

        ``kernels``: ``{layer: (kernel, bias)}`` (:attr:`kernels`, or the same passed as an
        argument of a jitted function). ``per_tile(k, ij, features, acc) -> acc`` adds a tile's share (``features``: its
        stage's layers on its core) to the accumulator ``acc`` (starting at ``init``);
        ``maps``: layers whose activations are also returned whole.
        Returns ``(acc, {layer: (h, w, C)}, state)``, summed over devices; ``state``
        is what :meth:`backward` needs. With ``keep`` (and one device), a stage that is
        one tile keeps what its backward pass needs instead of evaluating it again (such
        a stage is small: the deep blocks, or an image that fits).
        """
        acc, inputs, whole = init, [], {}
        for k, (s, g) in enumerate(zip(self.plan.stages, self.plan.grids)):
            xp = _pad_input(x, g)
            if keep and g.tiles == 1 and self.mesh is None:
                (features, pooled), vjp = jax.vjp(lambda c, k=k: self._forward(kernels, k, c, (0, 0)),
                                                     xp)
                inputs.append((features, pooled, vjp))
                acc = per_tile(k, (0, 0), features, acc)
                for l in maps:
                    if l in s.layers:
                        h, w = layer_size(self.plan.grids[0].size, l)
                        whole[l] = features[l][:h, :w]
                if s.trailing_pool:
                    h, w = self.plan.grids[k + 1].size
                    x = pooled[:h, :w]
                continue
            inputs.append(xp)
            outs = {l: jnp.zeros((*(c * t // 2**self.level_of(l) for c, t in zip(g.count, g.tile)),
                                  self.kernels[l][0].shape[-1]), jnp.float32)
                    for l in maps if l in s.layers}
            pooled_out = None
            if s.trailing_pool:
                d = 2**s.poolings
                pooled_out = jnp.zeros((g.count[0] * g.tile[0] // d, g.count[1] * g.tile[1] // d,
                                        self.kernels[s.convs[-1]][0].shape[-1]), jnp.float32)

            def body(t, carry, k=k, s=s, g=g, xp=xp):
                acc, outs, pooled_out = carry
                canvas, origin, ij, _, _ = self._canvas(xp, g, t)
                features, pooled = self._forward(kernels, k, canvas, origin)
                acc = per_tile(k, ij, features, acc)

                def put(out, value, level):
                    d = 2**level
                    return jax.lax.dynamic_update_slice(
                        out, value, (ij[0] * g.tile[0] // d, ij[1] * g.tile[1] // d, 0))

                outs = {l: put(out, features[l], self.level_of(l)) for l, out in outs.items()}
                if pooled_out is not None:
                    pooled_out = put(pooled_out, pooled, s.poolings)
                return acc, outs, pooled_out

            acc, outs, pooled_out = self._tiles(g, body, (acc, outs, pooled_out))
            outs = self._sum(outs)
            for l, out in outs.items():
                h, w = layer_size(self.plan.grids[0].size, l)
                whole[l] = out[:h, :w]
            if s.trailing_pool:
                h, w = self.plan.grids[k + 1].size
                x = self._sum(pooled_out)[:h, :w]
        return self._sum(acc), whole, inputs

    def backward(self, kernels, inputs, surrogate: Callable) -> jax.Array:
        """Pass 2: the gradient with respect to the preprocessed image of the sum over tiles
        of ``surrogate(k, ij, features)``, a tile's share of the loss as a function of its
        stage's layers on its core (its gradient must be the loss's there, with whatever
        the loss sums over the whole image held fixed)."""
        cotangent = None  # of the current stage's pooled output
        for k in reversed(range(len(self.plan.stages))):
            s, g, xp = self.plan.stages[k], self.plan.grids[k], inputs[k]
            cores = None
            if cotangent is not None:
                d = 2**s.poolings
                cores = _pad_to_grid_jnp(cotangent, (g.count[0] * g.tile[0] // d,
                                                     g.count[1] * g.tile[1] // d))
            if isinstance(xp, tuple):  # kept by forward: one tile, no halo
                features, pooled, vjp = xp

                def kept_value(features, pooled, k=k, cores=cores):
                    value = surrogate(k, (0, 0), features)
                    return value if pooled is None else value + jnp.sum(pooled * cores)

                grad = vjp(jax.grad(kept_value, argnums=(0, 1))(features, pooled))[0]
                cotangent = grad[: g.size[0], : g.size[1]]
                continue

            def tile_value(canvas, origin, ij, k=k, s=s, cores=cores):
                features, pooled = self._forward(kernels, k, canvas, origin)
                value = surrogate(k, ij, features)
                if pooled is not None:
                    value = value + jnp.sum(pooled * self.core(cores, k, s.poolings, ij))
                return value

            def body(t, grad, g=g, xp=xp, tile_value=tile_value):
                canvas, origin, ij, start, shape = self._canvas(xp, g, t)
                tile_grad = jax.grad(tile_value)(canvas, origin, ij)
                return jax.lax.dynamic_update_slice(
                    grad, jax.lax.dynamic_slice(grad, start, shape) + tile_grad, start)

            grad = self._sum(self._tiles(g, body, jnp.zeros_like(xp)))
            (hy, hx), (h, w) = g.halo, g.size
            cotangent = grad[hy: hy + h, hx: hx + w]
        return cotangent

    def shard(self, fn: Callable, *args):
        """``fn(*args)`` on every device of the mesh (replicated in and out), or just called."""
        if self.mesh is None:
            return fn(*args)
        spec = jax.sharding.PartitionSpec()
        return jax.shard_map(fn, mesh=self.mesh, in_specs=(spec,) * len(args), out_specs=spec,
                             check_vma=False)(*args)


def tiled_features(params, module: VGG, preprocessing: Preprocessing, rgb: np.ndarray,
                   map_layers: Sequence[str], gram_layers: Sequence[str],
                   masks: Mapping[str, np.ndarray] | None, tile_px: int,
                   mesh: jax.sharding.Mesh | None = None
                   ) -> tuple[dict[str, jax.Array], dict[str, jax.Array], dict[str, jax.Array]]:
    """What the targets need from one image, in bounded memory: ``({layer: activations}
    for map_layers, {layer: (R, N, N) F^T diag(m_r) F} and {layer: (R, N) F^T m_r} for
    gram_layers)`` (``masks``: ``{layer: (R, h, w)}`` at each layer's resolution, or None
    for one region of ones)."""
    tiled = Tiled(params, module, tuple(map_layers) + tuple(gram_layers), np.shape(rgb)[:2],
                  tile_px, mesh)
    regions = 1 if masks is None else int(next(iter(masks.values())).shape[0])
    mask_cores = {l: tiled.on_cores(masks[l], l, (1, 2)) for l in gram_layers} if masks else {}

    def per_tile(k, ij, features, acc):
        grams, sums = dict(acc[0]), dict(acc[1])
        for l in gram_layers:
            if l in tiled.plan.stages[k].layers:
                m = None if masks is None else tiled.core(mask_cores[l], k, tiled.level_of(l), ij,
                                                          (1, 2))
                grams[l] = grams[l] + _region_grams(features[l], m)
                sums[l] = sums[l] + _region_sums(features[l], m)
        return grams, sums

    def run(x, kernels):
        channels = {l: kernels[l][0].shape[-1] for l in gram_layers}
        init = ({l: jnp.zeros((regions, channels[l], channels[l]), jnp.float32)
                 for l in gram_layers},
                {l: jnp.zeros((regions, channels[l]), jnp.float32) for l in gram_layers})
        (grams, sums), maps, _ = tiled.forward(kernels, preprocess(x, preprocessing), per_tile,
                                               init, map_layers)
        return maps, grams, sums

    # The kernels are an argument: a jitted function's large constants cost several copies.
    return jax.jit(lambda x, kernels: tiled.shard(run, x, kernels))(jnp.asarray(rgb, jnp.float32),
                                                                     tiled.kernels)


def _region_grams(features: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``(R, N, N)``: ``F^T diag(m_r) F`` for each region (one region of ones without masks)."""
    flat = features.reshape(-1, features.shape[-1])
    if mask is None:
        return (flat.T @ flat)[None]
    return jnp.einsum("rm,mi,mj->rij", mask.reshape(mask.shape[0], -1), flat, flat)


def _region_sums(features: jax.Array, mask: jax.Array | None) -> jax.Array:
    """``(R, N)``: ``F^T m_r`` for each region (the features' sum without masks)."""
    flat = features.reshape(-1, features.shape[-1])
    if mask is None:
        return jnp.sum(flat, axis=0)[None]
    return mask.reshape(mask.shape[0], -1) @ flat


def make_tiled_loss(params, module: VGG, preprocessing: Preprocessing, targets: Targets,
                    content_layers: Sequence[str], style_layers: Sequence[str],
                    shape: tuple[int, int], tile_px: int, *, mesh: jax.sharding.Mesh | None = None
                    ) -> "TiledLoss":
    """``(pixels (H, W, 3), LossWeights) -> (total, LossTerms)``: the value of
    :func:`nst_jax.stylize.make_loss_fn`'s loss, evaluated tile by tile (module docstring).

    Called alone it makes the forward pass only; under ``jax.grad`` /
    ``jax.value_and_grad`` both passes (a ``custom_vjp``), so the optimisers use it
    as they use the untiled loss. Returns a :class:`TiledLoss` (its ``data`` and ``plan``).

    Args:
      params, module, preprocessing: the network.
      targets: as :func:`nst_jax.stylize.compute_targets` returns them for this image.
      shape: the image's ``(H, W)``; tile_px: the first stage's tile side, px.
      mesh: a one-axis ``jax.sharding.Mesh`` to spread the tiles over its devices.
    """
    content_layers, style_layers = tuple(content_layers), tuple(style_layers)
    tiled = Tiled(params, module, content_layers + style_layers, shape, tile_px, mesh)
    masks = targets.masks
    regions = 1 if masks is None else int(next(iter(masks.values())).shape[0])
    if masks is None:
        areas = {l: np.full((1,), float(np.prod(layer_size(shape, l))), np.float32)
                 for l in style_layers}
    else:
        areas = {l: np.asarray(masks[l], np.float32).sum(axis=(1, 2)) for l in style_layers}
    # Everything large the loss reads, passed as one argument (see TiledLoss).
    own_data = {
        "kernels": tiled.kernels,
        "content": {l: tiled.on_cores(targets.content[l], l) for l in content_layers},
        "masks": ({l: tiled.on_cores(masks[l], l, (1, 2)) for l in style_layers}
                  if masks is not None else {}),
        "areas": {l: jnp.asarray(a) for l, a in areas.items()},
        "style": {l: jnp.asarray(targets.style[l]) for l in style_layers},
        "distances": {name: jax.tree_util.tree_map(jnp.asarray, target)
                      for name, target in (targets.distances or {}).items()},
    }
    unsupported = sorted(set(own_data["distances"]) - set(ADDITIVE))
    if unsupported:
        raise NSTError(f"the style distance {' and '.join(unsupported)} does not tile (it sorts a "
                       "layer's features over the whole image)")

    guided = masks is not None
    # The features' sums are accumulated only for a distance that needs them (mean-cov).
    with_sums = bool(own_data["distances"])
    del masks, areas  # the loss reads them from ``data`` only

    def evaluate(pixels, weights, data, with_gradient: bool):
        def tile_mask(l, k, ij):
            if not guided:
                return None
            return tiled.core(data["masks"][l], k, tiled.level_of(l), ij, (1, 2))

        def tile_error(l, k, ij, features):
            """``1/2 |F - P|^2`` over the tile's core (zero outside the image on both sides)."""
            target = tiled.core(data["content"][l], k, tiled.level_of(l), ij)
            return 0.5 * jnp.sum(jnp.square(features[l] - target))

        def per_tile(k, ij, features, acc):
            grams, sums, squares = dict(acc[0]), dict(acc[1]), dict(acc[2])
            for l in tiled.plan.stages[k].layers:
                if l in style_layers:
                    grams[l] = grams[l] + _region_grams(features[l], tile_mask(l, k, ij))
                    if with_sums:
                        sums[l] = sums[l] + _region_sums(features[l], tile_mask(l, k, ij))
                if l in content_layers:
                    squares[l] = squares[l] + tile_error(l, k, ij, features)
            return grams, sums, squares

        def style_term(stats):
            """The style term of :func:`nst_jax.losses.mixed_style_loss` from the sums over
            the tiles: Gram matrices (eq. 4) and, for mean-cov, the features' sums."""
            grams, sums = stats
            lam = (jnp.ones((regions,), jnp.float32) if weights.region_weights is None
                   else jnp.asarray(weights.region_weights, jnp.float32))
            mix = (jnp.ones((1, 1), jnp.float32) if weights.style_mix is None
                   else jnp.asarray(weights.style_mix, jnp.float32))
            total = jnp.float32(0.0)
            for name, u in (weights.distance_weights or {"gram": 1.0}).items():
                term = jnp.float32(0.0)
                for l, w in weights.style_layer_weights.items():
                    areas = data["areas"][l]
                    if name == "gram":
                        t = jnp.einsum("rk,kij->rij", mix, data["style"][l])
                        errors = jnp.stack([gram_error(grams[l][r], t[r], areas[r])
                                            for r in range(regions)])
                    else:  # mean-cov (the others are refused above)
                        t = {key: v[l] for key, v in data["distances"][name].items()}
                        errors = jnp.stack([distances.SCALES[name] * distances.mean_cov_error(
                            sums[l][r] / areas[r], grams[l][r] / areas[r], t["mean"][r],
                            t["cov_sqrt"][r], t["cov_trace"][r]) for r in range(regions)])
                    term = term + jnp.asarray(w, jnp.float32) * jnp.dot(lam, errors)
                total = total + jnp.asarray(u, jnp.float32) * term
            return total

        x, to_pixels = jax.vjp(lambda p: preprocess(p, preprocessing), pixels)
        init = ({l: jnp.zeros((regions,) + data["style"][l].shape[1:], jnp.float32)
                 for l in style_layers},
                {l: jnp.zeros((regions, data["style"][l].shape[-1]), jnp.float32)
                 for l in style_layers} if with_sums else {},
                {l: jnp.float32(0.0) for l in content_layers})
        (grams, sums, squares), _, inputs = tiled.forward(data["kernels"], x, per_tile, init,
                                                          keep=with_gradient)
        content = sum((jnp.asarray(w, jnp.float32) * squares[l]
                       for l, w in weights.content_layer_weights.items()), jnp.float32(0.0))
        style = style_term((grams, sums))
        tv = total_variation(pixels)
        total = weights.alpha * content + weights.beta * style + weights.tv_weight * tv
        if not with_gradient:
            return (total, LossTerms(content, style, tv)), None
        # dL/dG (and dL/dS), fixed for pass 2: <F^T diag(m) F, dL/dG> + <F^T m, dL/dS> has
        # eq. 6 (and mean-cov's gradient) as its gradient in F.
        d_grams, d_sums = jax.grad(lambda stats: weights.beta * style_term(stats))((grams, sums))

        def surrogate(k, ij, features):
            value = jnp.float32(0.0)
            for l in tiled.plan.stages[k].layers:
                if l in weights.content_layer_weights:
                    value += (weights.alpha * jnp.asarray(weights.content_layer_weights[l])
                              * tile_error(l, k, ij, features))
                if l in style_layers:
                    value += jnp.sum(_region_grams(features[l], tile_mask(l, k, ij)) * d_grams[l])
                    if with_sums:
                        value += jnp.sum(_region_sums(features[l], tile_mask(l, k, ij))
                                         * d_sums[l])
            return value

        grad = to_pixels(tiled.backward(data["kernels"], inputs, surrogate))[0]
        grad = grad + weights.tv_weight * jax.grad(total_variation)(pixels)
        return (total, LossTerms(content, style, tv)), grad

    @jax.custom_vjp
    def loss(pixels, weights, data):
        return tiled.shard(lambda x, w, d: evaluate(x, w, d, False)[0], pixels, weights, data)

    def loss_fwd(pixels, weights, data):
        out, grad = tiled.shard(lambda x, w, d: evaluate(x, w, d, True), pixels, weights, data)
        return out, (grad, weights, data)

    def loss_bwd(residuals, cotangent):
        grad, weights, data = residuals
        zeros = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)  # noqa: E731
        return cotangent[0] * grad, zeros(weights), zeros(data)

    loss.defvjp(loss_fwd, loss_bwd)
    return TiledLoss(loss, own_data, tiled.plan)


class TiledLoss(Loss):
    """The loss of :func:`make_tiled_loss`: ``loss(pixels, weights, data=None)``.

    ``data`` holds the kernels and the targets; pass :attr:`data` as an argument of
    the jitted function that calls the loss (:func:`nst_jax.stylize.prepare` does), not
    as a closed-over constant: XLA keeps several copies of a jitted function's large
    constants (a 1 GB constant raised the peak memory by 5 GB, measured with jax 0.10.2
    on CPU). Without ``data`` the loss uses its own, as constants (fine for small images).
    ``plan`` is the tiling.
    """


def _pad_input(x: jax.Array, g: TileGrid) -> jax.Array:
    """A stage's input ``(h, w, C)`` zero-padded to the grid: halo, tiles, halo."""
    (hy, hx), (py, px) = g.halo, g.padded
    return jnp.pad(x, ((hy, py - hy - x.shape[0]), (hx, px - hx - x.shape[1]), (0, 0)))


def _pad_to_grid_jnp(x: jax.Array, shape: tuple[int, int]) -> jax.Array:
    return jnp.pad(x, ((0, shape[0] - x.shape[0]), (0, shape[1] - x.shape[1]), (0, 0)))


def layer_size(shape: tuple[int, int], layer: str) -> tuple[int, int]:
    """``(h, w)`` of ``layer``'s activations for an image of ``shape``: VALID poolings."""
    h, w = shape
    for _ in range(block_of(layer) - 1):
        h, w = h // 2, w // 2
    return h, w
