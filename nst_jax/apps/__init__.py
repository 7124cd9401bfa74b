"""The applications built on the nst_jax library: command-line tools, the benchmark and its
PyTorch baseline, plots, and the paper's figures.

The arrow points one way: these modules import the library (``nst_jax.*``), and no
library module imports anything from here.
"""
