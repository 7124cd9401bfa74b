"""The benchmark's case kinds, one module each, found by name here.

A case kind is a module with:

- ``CASE``: the function a worker process runs for it (:mod:`nst_jax.apps.benchmark.worker`,
  by the kind's name), or None when its cases run in another kind's worker or as processes
  of their own;
- ``add_flags(parser)``: its flags;
- ``plan(args) -> dict | None``: its flags checked (:class:`~nst_jax.errors.NSTError`, before
  any work), as the keywords of ``run``; None when they ask for none of its cases;
- ``run(results, **plan, timeout, log, save)``: its cases, each recorded into ``results``
  and saved as soon as it is done;
- ``markdown(results) -> list[str]``: its tables (``[]`` when it has none);
- ``STANDALONE``: whether its tables stand without the speed table (a benchmark needs
  ``--sizes`` or one such kind; see :func:`nst_jax.apps.benchmark.report.markdown`).

Adding a case kind: a module here and a line in :data:`KINDS` and :data:`RUN_ORDER`.
"""
from nst_jax.apps.benchmark.cases import (bfloat16, binding, distances, memory, parity, peer,
                                          photos, profile, quality, speed, startup, tiled, video)

# The order of their flags in --help and of their tables in the report.
KINDS = {
    "speed": speed,
    "bfloat16": bfloat16,
    "memory": memory,
    "parity": parity,
    "quality": quality,
    "tiled": tiled,
    "profile": profile,
    "startup": startup,
    "binding": binding,
    "peer": peer,
    "video": video,
    "photos": photos,
    "distances": distances,
}

# The order they run in (the benchmark's order before the registry): the parity check
# before anything is timed.
RUN_ORDER = ("parity", "speed", "memory", "bfloat16", "tiled", "quality", "profile", "startup",
             "binding", "peer", "video", "photos", "distances")

# What a worker process runs, by kind: ``worker.run_in_subprocess(name, **kwargs)``.
CASES = {name: kind.CASE for name, kind in KINDS.items() if kind.CASE is not None}
