"""Run a grid of style transfers in one compiled call. See ``python scripts/sweep.py --help``."""
import sys

from nst_jax.sweep_cli import main

if __name__ == "__main__":
    sys.exit(main())
