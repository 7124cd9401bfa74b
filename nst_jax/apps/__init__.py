"""The applications built on the nst_jax library, one folder per role:

- ``cli``: the command-line tools (stylize, sweep, fetch_weights);
- ``web``: the web page and its server;
- ``benchmark``: the benchmark, its cases and its baselines (PyTorch, neural-style-pt);
- ``figures``: the paper's figures and the artistic controls' figures;
- ``common``: the plumbing the tools share (runner, flags, progress, outputs, sweep files).

The arrows point one way: these modules import the library (``nst_jax.*``), and no library
module imports anything from here; a tool imports the library, ``common`` and its own
folder's helpers, never another tool (tests/test_layout.py).
"""
