"""Benchmark nst_jax on this machine (and a PyTorch baseline, if installed); see README."""
import sys

from nst_jax.bench import main

if __name__ == "__main__":
    sys.exit(main())
