"""Running a test worker module (``tests.sweep_worker``, ``tests.tiling_worker``) in
subprocesses: one process with forced CPU devices, or several joined by ``jax.distributed``."""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

from tests.conftest import REPO


def spawn(module: str, *args, env_extra: dict | None = None) -> subprocess.Popen:
    """``python -m module args`` on the CPU, output captured."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]


def local_address() -> str:
    """``127.0.0.1:PORT`` with a free port, for a coordinator."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def parser() -> argparse.ArgumentParser:
    """A worker's arguments: ``OUT`` and those of a multi-process run."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    return p


def join(args) -> None:
    """Join the multi-process run the arguments name, if any (before any other JAX call)."""
    if args.coordinator:
        from nst_jax import sweep

        sweep.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
