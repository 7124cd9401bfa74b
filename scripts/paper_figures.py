"""Regenerate the paper's Figs. 2, 4, 5 and 6: ``python scripts/paper_figures.py --help``."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import paper_figures
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(paper_figures())
