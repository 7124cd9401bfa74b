"""What the worker cases start from: the bundled example pair resized to a square, and the
jitted loss+gradient of a configuration's network on it."""
from __future__ import annotations

import numpy as np


def square_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled content and style images resized to ``size x size``."""
    from nst_jax import images
    from nst_jax.config import example_path

    return tuple(images.resize_to(images.load_image(example_path(name)), (size, size))
                 for name in ("chelsea.jpg", "starry_night.jpg"))


def evaluation(size: int, config, tile: int | None = None):
    """The weights, the square example pair at ``size`` and the jitted loss+gradient
    of ``config``'s network (tiled with ``tile`` px tiles, or not), its kernels and targets
    an argument, as :func:`nst_jax.stylize.prepare` passes them: what every worker case
    starts from. The loss+gradient takes the pixels and the data (the last item)."""
    import jax

    from nst_jax import stylize, weights
    from nst_jax.weight_sources.download import ensure_weights

    params, preprocessing = weights.load_params(ensure_weights(log=lambda m: None))
    content, style = square_pair(size)
    loss_fn = stylize.build_loss_fn(params, content, style, config.content_layers,
                                    config.style_layers, stylize.network(config), preprocessing,
                                    tile_size=tile)
    loss_weights = stylize.loss_weights(config)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x, data: loss_fn.fn(x, loss_weights, data)[0]))
    data = jax.device_put(loss_fn.data)
    return params, preprocessing, content, style, value_and_grad, data
