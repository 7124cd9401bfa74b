"""Stylize a video clip with temporal consistency (Ruder et al. 2016): ``python scripts/video.py --help``."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import video
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(video())
