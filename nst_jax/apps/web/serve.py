"""``python scripts/serve.py`` / ``nst-serve``: the web page (:mod:`nst_jax.apps.web.page`).

It loads the VGG19 weights once, then serves the page on ``--host`` (127.0.0.1: this
machine only) and ``--port`` (the first free one from 7860) until Ctrl-C. Jobs wait in
gradio's queue and run ``--concurrency`` at a time; ``--max-size``,
``--max-iterations``, ``--max-upload-mb``, ``--max-points`` and, for a video,
``--max-video-frames``, ``--max-video-size`` and ``--max-video-seconds`` bound what a
visitor may ask. The compiled programs stay in the process, so a second job of a shape already run
starts without compiling. The PNGs of the jobs, the uploads and gradio's copies of the
results are kept in a temporary folder of the server's, removed when it stops. Needs
the ``web`` extra (``pip install 'nst_jax[web]'``).
"""
from __future__ import annotations

import ipaddress
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import time
from typing import Sequence

from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser, UsageError
from nst_jax.apps.common.runner import ExitCode
from nst_jax.errors import NSTError, one_line

DEFAULT_PORTS = range(7860, 7960)
DEFAULT_HOST = "127.0.0.1"
TEMP_DIR = "GRADIO_TEMP_DIR"  # gradio's upload folder and cache


def build_parser() -> ArgumentParser:
    from nst_jax.apps.web.jobs import Limits

    limits = Limits()
    parser = ArgumentParser(
        prog="serve",
        description="Serve nst_jax's web page: style transfer in the browser, with the image "
                    "shown as it forms, and sweeps of alpha/beta and seeds as one compiled grid. "
                    "An API endpoint /stylize serves scripts (gradio_client; see docs/web.md).")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; "
                             "0.0.0.0 lets every machine that can reach this one run jobs)")
    parser.add_argument("--port", type=int, default=None,
                        help=f"port (default: the first free one from {DEFAULT_PORTS[0]} to "
                             f"{DEFAULT_PORTS[-1]})")
    limit = parser.add_argument_group("limits of a job")
    limit.add_argument("--max-size", type=int, default=limits.max_size, metavar="PX",
                       help=f"largest long side of an output (default: {limits.max_size})")
    limit.add_argument("--max-iterations", type=int, default=limits.max_iterations, metavar="N",
                       help=f"most iterations of a job (of each scale) "
                            f"(default: {limits.max_iterations})")
    limit.add_argument("--max-upload-mb", type=float, default=limits.max_upload_mb, metavar="MB",
                       help=f"largest uploaded file (default: {limits.max_upload_mb:g})")
    limit.add_argument("--max-points", type=int, default=limits.max_points, metavar="N",
                       help=f"most points of a sweep (default: {limits.max_points})")
    limit.add_argument("--max-video-frames", type=int, default=limits.max_video_frames,
                       metavar="N", help=f"most frames of a video job "
                                         f"(default: {limits.max_video_frames})")
    limit.add_argument("--max-video-size", type=int, default=limits.max_video_size,
                       metavar="PX", help=f"largest long side of a video's frames "
                                          f"(default: {limits.max_video_size})")
    limit.add_argument("--max-video-seconds", type=float, default=limits.max_video_seconds,
                       metavar="S", help=f"most seconds of a clip a video job takes "
                                         f"(default: {limits.max_video_seconds:g})")
    queue = parser.add_argument_group("queue")
    queue.add_argument("--concurrency", type=int, default=1, metavar="N",
                       help="jobs run at once (default: 1; a CPU is busy with one)")
    queue.add_argument("--queue-size", type=int, default=20, metavar="N",
                       help="jobs that may wait; more are turned away (default: 20)")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="converted VGG19 weights (default: weights/vgg19.h5, converted on "
                             "first use)")
    parser.add_argument("--quiet", action="store_true", help="print only the address and errors")
    return parser


def free_port(host: str, ports: Sequence[int] = DEFAULT_PORTS) -> int:
    """The first port of ``ports`` nothing listens on at ``host``."""
    for port in ports:
        if port_is_free(host, port):
            return port
    raise NSTError(f"no free port from {ports[0]} to {ports[-1]} on {host}; choose one with --port")


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the server's own socket (uvicorn): connections of a server that has just stopped
        # (TIME_WAIT) do not keep the port; one listening on it does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_args(args) -> None:
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port must be from 1 to 65535, got {args.port}")
    for name in ("concurrency", "queue_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{getattr(args, name)}")


def limits_of(args):
    from nst_jax.apps.web.jobs import Limits

    try:
        return Limits(args.max_size, args.max_iterations, args.max_upload_mb, args.max_points,
                      max_video_frames=args.max_video_frames,
                      max_video_size=args.max_video_size,
                      max_video_seconds=args.max_video_seconds)
    except NSTError as e:
        raise UsageError(f"--{one_line(e).replace('_', '-')}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    limits = limits_of(args)
    log = runner.logger(args.quiet)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise NSTError("the web page needs gradio: pip install 'nst_jax[web]'") from None
    try:
        socket.getaddrinfo(args.host, None)
    except OSError:
        raise UsageError(f"--host {args.host!r} is not an address of this machine") from None
    port = args.port if args.port is not None else free_port(args.host)
    if not port_is_free(args.host, port):
        raise NSTError(f"port {port} is in use on {args.host}; choose another with --port, or "
                       "leave --port out for a free one")

    from nst_jax import stylize
    from nst_jax.apps.web.page import App
    from nst_jax.config import Config

    runner.phase("loading the weights")
    network = stylize.load_network(Config(weights=args.weights), None, None, log=log)
    runner.phase("starting the server")
    # The server's own folder: the jobs' PNGs, and gradio's uploads and cache (its copies of
    # the results it serves), all removed when it stops.
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nst_jax-serve-"))
    page, before = None, os.environ.get(TEMP_DIR)
    try:
        _gradio_temp_dir(folder / "uploads")
        app = App(network, limits, folder / "jobs", concurrency=args.concurrency)
        try:
            page = app.launch(args.host, port, queue_size=args.queue_size)
        except OSError as e:
            raise NSTError(f"cannot serve on {args.host}:{port}: {one_line(e)}") from None
        if not _loopback(args.host):
            log(f"warning: --host {args.host} lets other machines reach the page and run jobs")
        log(f"limits: {limits.max_size} px, {limits.max_iterations} iterations, "
            f"{limits.max_upload_mb:g} MB uploads, {limits.max_points} sweep points, videos "
            f"of {limits.max_video_frames} frames, {limits.max_video_size} px and "
            f"{limits.max_video_seconds:g} s; "
            f"{args.concurrency} job(s) at a time")
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving on http://{shown}:{port} (Ctrl-C stops)", flush=True)
        runner.phase("serving", "nothing was written")
        try:
            while True:
                time.sleep(0.25)
                runner.check_interrupt()
        except KeyboardInterrupt:
            runner.interrupt_handled()
        print("stopped serving", file=sys.stderr)
        return ExitCode.OK
    finally:
        if page is not None:
            page.close()
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop(TEMP_DIR, None)
        else:
            os.environ[TEMP_DIR] = before


def _gradio_temp_dir(folder: pathlib.Path) -> None:
    """gradio's upload folder and cache (``GRADIO_TEMP_DIR``, read when a page is built
    and served) in ``folder``, while the server runs: what visitors upload and the results
    gradio serves them stay in the server's folder, instead of gradio's shared
    ``/tmp/gradio`` where they outlived the server. (Constants gradio reads when imported
    serve features the page does not use: screen recording, MCP.)"""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[TEMP_DIR] = str(folder)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
