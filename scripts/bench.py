"""Benchmark nst_jax on this machine (and a PyTorch baseline, if installed): docs/performance.md."""
import sys

try:  # standard library only; a Ctrl-C during it still gets one line, no traceback
    from nst_jax.apps.common.runner import run_tool
except KeyboardInterrupt:
    print("error: interrupted while starting; nothing was written", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(run_tool("nst_jax.apps.benchmark.bench"))
