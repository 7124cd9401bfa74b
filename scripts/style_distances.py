"""Compare the style distances on held-out measures: ``python scripts/style_distances.py --help``."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import style_distances
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(style_distances())
