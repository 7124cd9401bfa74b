"""A tiny sweep run in a subprocess, for the device-sharding and multi-process tests.

``python -m tests.sweep_worker OUT.npz [--devices N ...] [--coordinator H:P --num-processes N
--process-id I]``: runs :func:`grid` on the tiny VGG over a mesh of the first N devices
(each N given), writes, per N, the results and where each of its devices' shards of
the final state lies (process 0 to OUT.npz, process I to OUT.npz.I.npz).
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def grid():
    from nst_jax.stylize import Config
    from nst_jax.sweep import Grid

    return Grid.product(Config(iterations=6), ratio=[1e-3, 1e-1], init=["noise", "content"],
                        seed=[0, 1])


def pictures():
    import numpy as np

    yy, xx = np.mgrid[0:24, 0:32] / 32.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1).astype(np.float32)
    style = np.random.default_rng(3).random((28, 28, 3)).astype(np.float32)
    return np.clip(content, 0, 1), style


def main() -> None:
    from tests.workers import join, parser

    p = parser()
    p.add_argument("--devices", type=int, action="append")
    args = p.parse_args()
    join(args)
    import jax

    from nst_jax import sweep
    import numpy as np
    from jax.sharding import Mesh

    from tests.conftest import TINY_BLOCKS, make_tiny_params
    from nst_jax.vgg import VGG

    module, params = VGG(blocks=TINY_BLOCKS), make_tiny_params()
    content, style = pictures()
    the_grid = grid()
    out = {}
    for n in args.devices or [len(jax.devices())]:
        mesh = Mesh(np.asarray(jax.devices()[:n]), (sweep.GRID_AXIS,))
        results = sweep.run_grid(content, style, params, the_grid, module=module, mesh=mesh,
                                 batch_size=len(the_grid))
        out[f"images_{n}"] = np.stack([r.image for r in results])
        out[f"total_{n}"] = np.array([r.total for r in results])
        out[f"trace_{n}"] = np.stack([r.trace for r in results])
        if n == 1:
            continue
        # Where the state lives: each addressable shard's device and grid rows.
        sweeper = sweep.Sweeper(content, style, params, content_layers=the_grid.content_layers,
                                style_layers=the_grid.style_layers,
                                iterations=the_grid.iterations, module=module, mesh=mesh)
        points = sweeper.place(the_grid.points())
        state = sweeper.advance(sweeper.start(points), the_grid.iterations, points)
        full = sweep.to_host(state.pixels)
        shards = [{"device": shard.device.id, "process": jax.process_index(),
                   "rows": [shard.index[0].start or 0, shard.index[0].stop or len(full)],
                   "equal": bool(np.array_equal(np.asarray(shard.data), full[shard.index]))}
                  for shard in state.pixels.addressable_shards]
        out[f"shards_{n}"] = np.asarray(json.dumps(shards))
        out[f"state_pixels_{n}"] = full
    out["process_count"] = np.asarray(jax.process_count())
    target = args.out if jax.process_index() == 0 else f"{args.out}.{jax.process_index()}"
    np.savez(target, **out)


if __name__ == "__main__":
    main()
