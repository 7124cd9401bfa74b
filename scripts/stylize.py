"""Stylize an image (Gatys et al. 2016). See ``python scripts/stylize.py --help``."""
import sys

from nst_jax.cli import main

if __name__ == "__main__":
    sys.exit(main())
