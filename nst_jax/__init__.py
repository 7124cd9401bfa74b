"""nst_jax: Gatys, Ecker & Bethge (CVPR 2016) style transfer in JAX/Flax.

The library, one concern per module:

- :mod:`nst_jax.config` -- :class:`~nst_jax.config.Config`, every setting with its default,
  help and check;
- :mod:`nst_jax.vgg` -- the VGG19 Flax module and its input preprocessing;
- :mod:`nst_jax.weights` -- the canonical weights file: reading, checking, loading as params;
- :mod:`nst_jax.weight_sources` -- converting and downloading the published weight files;
- :mod:`nst_jax.losses` -- the paper's losses (eq. 1, 3, 4, 5, 6, 7) as pure functions;
- :mod:`nst_jax.optimize` -- L-BFGS (stepwise / optax / jaxopt) and Adam under ``jit``/``vmap``,
  with box constraints;
- :mod:`nst_jax.images` -- decoding, validation, resizing and atomic PNG output;
- :mod:`nst_jax.stylize` -- the wiring of one style transfer;
- :mod:`nst_jax.sweep` -- grids of them as one compiled ``vmap``, sharded over devices.

The applications (command-line tools, benchmark, plots, the paper's figures) are in
:mod:`nst_jax.apps`; nothing here imports them.
"""

__version__ = "0.1.0"
