"""One tiled loss+gradient evaluation in a subprocess, for the multi-device tests.

``python -m tests.tiling_worker OUT.npz [--devices N] [--coordinator H:P --num-processes N
--process-id I]``: evaluates :func:`case` on the tiny VGG with its tiles spread over a
mesh of the first N devices (every device without ``--devices``) and writes the value,
its terms and the gradient (process 0 to OUT.npz, process I to OUT.npz.I.npz).
"""
from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

SHAPE = (75, 98)  # 2x2 tiles of 64 px in the first stage: a partial tile at each far border
TILE = 64


def case():
    """``(params, module, content, styles, content masks, config)`` of the test image."""
    import numpy as np

    from nst_jax.config import Config
    from nst_jax.vgg import VGG
    from tests.conftest import TINY_BLOCKS, make_tiny_params

    rng = np.random.default_rng(5)
    content = rng.random((*SHAPE, 3)).astype(np.float32)
    styles = [rng.random((40, 44, 3)).astype(np.float32), rng.random((36, 30, 3)).astype(np.float32)]
    masks = np.zeros((2, *SHAPE), np.float32)
    masks[0, :, : SHAPE[1] // 2] = 1
    masks[1] = 1 - masks[0]
    config = Config(style=("a.jpg", "b.jpg"), content_masks=("a.png", "b.png"),
                    content_layers=("conv4_2", "conv2_1"), tv_weight=0.1)
    return make_tiny_params(), VGG(blocks=TINY_BLOCKS), content, styles, masks, config


def evaluate(mesh=None, tile: int | None = TILE):
    """``(value, terms, gradient)`` at a fixed random image, tiled over ``mesh`` or untiled."""
    import jax
    import numpy as np

    from nst_jax import stylize
    from nst_jax.vgg import CAFFE

    params, module, content, styles, masks, config = case()
    loss = stylize.build_loss_fn(params, content, styles, config.content_layers,
                                 config.style_layers, module, CAFFE, content_masks=masks,
                                 tile_size=tile, mesh=mesh)
    weights = stylize.loss_weights(config)
    x = np.random.default_rng(6).random((*SHAPE, 3)).astype(np.float32)
    if mesh is not None:  # replicated over the mesh (every process holds the whole image)
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        x, weights = jax.tree_util.tree_map(
            lambda a: jax.make_array_from_callback(np.shape(a), sharding,
                                                   lambda index, a=a: np.asarray(a)[index]),
            (x, weights))
    (value, terms), grad = jax.jit(jax.value_and_grad(loss, has_aux=True))(x, weights)
    local = lambda a: np.asarray(a.addressable_data(0))  # noqa: E731
    return local(value), np.array([local(t) for t in terms]), local(grad)


def main() -> None:
    from tests.workers import join, parser

    p = parser()
    p.add_argument("--devices", type=int)
    args = p.parse_args()
    join(args)
    import jax
    import numpy as np
    from jax.sharding import Mesh

    devices = jax.devices()[: args.devices or len(jax.devices())]
    value, terms, grad = evaluate(Mesh(np.asarray(devices), ("tiles",)))
    target = args.out if jax.process_index() == 0 else f"{args.out}.{jax.process_index()}"
    np.savez(target, value=value, terms=terms, grad=grad, devices=len(devices),
             processes=jax.process_count())


if __name__ == "__main__":
    main()
