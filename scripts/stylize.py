"""Stylize an image (Gatys et al. 2016): ``python scripts/stylize.py --help``."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import stylize
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(stylize())
