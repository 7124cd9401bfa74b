"""nst_jax: Gatys, Ecker & Bethge (CVPR 2016) style transfer in JAX/Flax.

The pieces, one concern per module:

- :mod:`nst_jax.vgg` -- the VGG19 Flax module and its input preprocessing;
- :mod:`nst_jax.weights` -- reading, converting and loading VGG19 weights;
- :mod:`nst_jax.losses` -- the paper's losses (eq. 1, 3, 4, 5, 7) as pure functions;
- :mod:`nst_jax.optimize` -- L-BFGS (optax / jaxopt) and Adam under ``jit``/``vmap``;
- :mod:`nst_jax.images` -- decoding, validation, resizing and atomic PNG output;
- :mod:`nst_jax.stylize` -- the wiring of one style transfer.
"""

__version__ = "0.1.0"
