"""Get the VGG19 weights and convert them: ``python scripts/fetch_weights.py --help``."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import fetch_weights
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(fetch_weights())
