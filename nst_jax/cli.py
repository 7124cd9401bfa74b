"""``nst-stylize`` / ``python scripts/stylize.py``: the command-line style transfer.

Thin: parses flags, calls the library, reports progress. Every user error is one
line on stderr and a non-zero exit; the output PNG is written atomically.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from importlib import resources

import numpy as np

from nst_jax import images, optimize
from nst_jax.errors import NSTError
from nst_jax.vgg import DTYPES

EXIT_ERROR = 2
EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130

DEFAULT_SIZE = 256
DEFAULT_ITERATIONS = 200
DEFAULT_OUTPUT = "stylized.png"


def example_path(name: str) -> pathlib.Path:
    """Path of a bundled example image (``chelsea.jpg``, ``starry_night.jpg``)."""
    return pathlib.Path(str(resources.files("nst_jax") / "examples" / name))


def _layers(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from nst_jax.stylize import CONTENT_LAYERS, Config, STYLE_LAYERS

    defaults = Config()
    p = argparse.ArgumentParser(
        prog="stylize",
        description="Gatys, Ecker & Bethge (CVPR 2016) style transfer: optimise an image so that "
                    "its VGG19 conv4_2 features match the content image and its Gram matrices "
                    "match the style image's. With no arguments, stylizes the bundled photo of "
                    "Chelsea the cat in the style of The Starry Night.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = p.add_argument_group("images")
    io.add_argument("--content", default=str(example_path("chelsea.jpg")),
                    help="content image (any format Pillow reads)")
    io.add_argument("--style", default=str(example_path("starry_night.jpg")), help="style image")
    io.add_argument("--output", default=DEFAULT_OUTPUT, help="output PNG (written atomically)")
    io.add_argument("--size", type=int, default=DEFAULT_SIZE,
                    help=f"long side of the output in pixels ({images.MIN_SIDE}-{images.MAX_SIDE})")
    io.add_argument("--style-size", type=int, default=None,
                    help="long side the style image is resized to (default: --size); "
                         "smaller makes the style's strokes larger")
    loss = p.add_argument_group("loss (eq. 7: alpha * content + beta * style)")
    loss.add_argument("--alpha", type=float, default=defaults.alpha, help="content weight")
    loss.add_argument("--beta", type=float, default=defaults.beta, help="style weight")
    loss.add_argument("--ratio", type=float, default=None,
                      help="alpha/beta ratio; if given, sets alpha=RATIO and beta=1")
    loss.add_argument("--content-layers", type=_layers, default=",".join(CONTENT_LAYERS),
                      help="comma-separated content layers", metavar="L1,L2")
    loss.add_argument("--content-layer-weights", type=_floats, default=None,
                      help="one weight per content layer (default 1 each)", metavar="W1,W2")
    loss.add_argument("--style-layers", type=_layers, default=",".join(STYLE_LAYERS),
                      help="comma-separated style layers", metavar="L1,L2")
    loss.add_argument("--style-layer-weights", type=_floats, default=None,
                      help="one weight per style layer (default 1/number of layers, as the paper)",
                      metavar="W1,W2")
    loss.add_argument("--tv-weight", type=float, default=defaults.tv_weight,
                      help="total-variation weight (not in the paper; 0 = off)")
    net = p.add_argument_group("network")
    net.add_argument("--pooling", choices=("avg", "max"), default=defaults.pooling,
                     help="pooling in VGG19 (the paper uses avg)")
    add_compute_flags(net)
    net.add_argument("--normalize-network", action="store_true",
                     help="rescale VGG filters so each has mean activation 1 over the content and "
                          "style images (paper §2)")
    net.add_argument("--weights", default=None,
                     help="converted weights file (default: weights/vgg19.h5, converted on first "
                          "use; see scripts/fetch_weights.py)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="optimiser iterations")
    opt.add_argument("--optimizer", choices=optimize.OPTIMIZERS, default=optimize.DEFAULT_OPTIMIZER,
                     help="lbfgs = optax L-BFGS (default, see README), lbfgs-jaxopt, adam")
    opt.add_argument("--learning-rate", type=float, default=optimize.Settings().learning_rate,
                     help="Adam's step size (pixels in [0, 1]); unused by L-BFGS")
    opt.add_argument("--tolerance", type=float, default=optimize.Settings().tolerance,
                     help="stop early once an iteration changes the loss by at most this "
                          "fraction of it (0 = run every iteration)")
    opt.add_argument("--init", default=defaults.init,
                     help="start from 'noise' (white noise, the paper's), 'content', 'style', "
                          "or an image file")
    opt.add_argument("--seed", type=int, default=defaults.seed, help="seed of the white noise")
    opt.add_argument("--noise-amplitude", type=float, default=defaults.noise_amplitude,
                     help="white noise is 0.5 + A * (uniform - 0.5); 1.0 = full-range noise")
    opt.add_argument("--save-every", type=int, default=0,
                     help="also save OUTPUT_iterNNNNN.png every N iterations (0 = never)")
    p.add_argument("--quiet", action="store_true", help="print only the output path and errors")
    return p


class Progress:
    """One status line: iteration, losses, elapsed time and ETA (redrawn on a terminal)."""

    def __init__(self, total: int, stream=sys.stderr, quiet: bool = False):
        self.total, self.stream, self.quiet = total, stream, quiet
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_line_at = -1.0

    def update(self, iteration: int, total_loss: float, content: float, style: float,
               first_done: float | None) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        elapsed = now - self.start
        # ETA from the iterations after the first chunk, which includes compilation.
        if first_done is not None and iteration > first_done:
            rate = (now - self.first_time) / (iteration - first_done)
            eta = f"{rate * (self.total - iteration):5.0f}s"
        else:
            eta = "  ?  "
        width = 24
        filled = int(width * iteration / self.total)
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {iteration:>{len(str(self.total))}}/"
                f"{self.total} loss {total_loss:.4g} (content {content:.4g}, style {style:.4g}) "
                f"{elapsed:5.0f}s elapsed, ETA {eta}")
        if self.tty:
            self.stream.write("\r" + line)
        elif now - self.last_line_at >= 5 or iteration == self.total:
            self.stream.write(line + "\n")
            self.last_line_at = now
        self.stream.flush()

    def mark_first(self) -> None:
        self.first_time = time.monotonic()

    def close(self) -> None:
        if self.tty and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()


def _config(args):
    from nst_jax.stylize import Config

    alpha, beta = (args.ratio, 1.0) if args.ratio is not None else (args.alpha, args.beta)
    init = args.init if args.init in ("noise", "content", "style") else "image"
    return Config(
        content_layers=args.content_layers, style_layers=args.style_layers,
        content_layer_weights=args.content_layer_weights,
        style_layer_weights=args.style_layer_weights, alpha=alpha, beta=beta,
        tv_weight=args.tv_weight, pooling=args.pooling, remat=args.remat,
        precision=args.precision, init=init, seed=args.seed,
        noise_amplitude=args.noise_amplitude,
        iterations=args.iterations,
        optimizer=optimize.Settings(method=args.optimizer, learning_rate=args.learning_rate,
                                    tolerance=args.tolerance))


def check_sizes_and_iterations(args) -> None:
    """``--size``, ``--style-size`` and ``--iterations``, as every script takes them."""
    images.check_size(args.size)
    if args.style_size is not None:
        images.check_size(args.style_size)
    if args.iterations < 1 or args.iterations > 100_000:
        raise NSTError(f"--iterations must be between 1 and 100000, got {args.iterations}")


def check_tolerance(tolerance: float) -> None:
    if not (np.isfinite(tolerance) and 0 <= tolerance < 1):
        raise NSTError(f"--tolerance must be a number in [0, 1), got {tolerance}")


def add_compute_flags(group) -> None:
    """``--remat`` and ``--precision`` (memory and speed of the network; stylize and sweep)."""
    group.add_argument("--remat", action="store_true",
                       help="recompute VGG activations in the backward pass: less memory for "
                            "large images, about 1.3x the time per evaluation (see README)")
    group.add_argument("--precision", choices=DTYPES, default="float32",
                       help="compute dtype of the convolutions (bfloat16: see README's "
                            "performance section before using it)")


def config_dict(config) -> dict:
    """A :class:`nst_jax.stylize.Config` as JSON-able fields (the optimiser settings as a dict)."""
    return {k: (v._asdict() if hasattr(v, "_asdict") else v) for k, v in vars(config).items()}


def _check_args(args) -> None:
    check_sizes_and_iterations(args)
    if args.save_every < 0:
        raise NSTError(f"--save-every must be >= 0, got {args.save_every}")
    if not (np.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise NSTError(f"--learning-rate must be a positive number, got {args.learning_rate}")
    check_tolerance(args.tolerance)
    if args.ratio is not None and not (np.isfinite(args.ratio) and args.ratio > 0):
        raise NSTError(f"--ratio must be a positive number, got {args.ratio}")


def _load(path: str, long_side: int, what: str) -> np.ndarray:
    rgb = images.load_image(path, max_side=long_side)
    if min(rgb.shape[:2]) < images.MIN_SIDE:
        raise NSTError(f"{what} image {path} is {rgb.shape[1]}x{rgb.shape[0]} px at --size "
                       f"{long_side}; both sides must be at least {images.MIN_SIDE} px "
                       f"(VGG19 pools 4 times before conv5_1): raise --size")
    return rgb


def _snapshot_path(output: pathlib.Path, iteration: int) -> pathlib.Path:
    return output.with_name(f"{output.stem}_iter{iteration:05d}.png")


def _metadata(args, config, weights_info: dict, extra: dict) -> dict[str, str]:
    from nst_jax import __version__

    meta = {
        "Software": f"nst_jax {__version__}",
        "nst_jax:arguments": json.dumps(vars(args), default=str),
        "nst_jax:config": json.dumps(config_dict(config), default=str),
        "nst_jax:weights": json.dumps(weights_info, default=str),
    }
    meta.update({f"nst_jax:{k}": str(v) for k, v in extra.items()})
    return meta


def run(args) -> int:
    _check_args(args)
    output = images.check_output_path(args.output)
    config = _config(args)
    content = _load(args.content, args.size, "content")
    style = _load(args.style, args.style_size or args.size, "style")
    init_image = None
    if config.init == "image":
        init_image = images.load_image(args.init)
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr))

    # Import JAX-heavy modules only once the cheap checks have passed.
    import jax.numpy as jnp

    from nst_jax import stylize, weights
    from nst_jax.vgg import normalize_params, preprocess

    weights_path = pathlib.Path(args.weights) if args.weights else weights.ensure_weights(log=log)
    params, preprocessing = weights.load_params(weights_path)
    module = config.network()
    if args.normalize_network:
        batch = jnp.stack([jnp.asarray(content), jnp.asarray(images.resize_to(style, content.shape[:2]))])
        params = normalize_params(module, params, preprocess(batch, preprocessing))
    weights_info = {"path": str(weights_path), **weights.describe(weights_path)}

    log(f"content {args.content} ({content.shape[1]}x{content.shape[0]}), style {args.style} "
        f"({style.shape[1]}x{style.shape[0]}), {config.iterations} iterations of "
        f"{config.optimizer.method}, alpha/beta = {config.alpha / config.beta:.3g}")
    job = stylize.prepare(content, style, params, config, module=module,
                          preprocessing=preprocessing, init_image=init_image)
    progress = Progress(config.iterations, quiet=args.quiet)
    chunk = 10 if args.save_every == 0 else max(1, min(10, args.save_every))
    first_done = None
    started = time.monotonic()
    status = "completed"
    try:
        while not job.done:
            target = int(job.state.iteration) + chunk
            if args.save_every:
                # End chunks on multiples of --save-every so snapshots land on them.
                target = min(target, (int(job.state.iteration) // args.save_every + 1) * args.save_every)
            state = job.step(target - int(job.state.iteration))
            iteration = int(state.iteration)
            if first_done is None:
                first_done = iteration
                progress.mark_first()
            total, terms = job.terms()
            progress.update(iteration, total, terms.content, terms.style, first_done)
            if args.save_every and iteration % args.save_every == 0 and iteration < config.iterations:
                images.save_png(_snapshot_path(output, iteration), job.result(),
                                _metadata(args, config, weights_info, {"iteration": iteration}))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        progress.close()
    iteration = int(job.state.iteration)
    total, terms = job.terms(jnp.asarray(job.result()))
    extra = {"status": status, "iterations_done": iteration,
             "evaluations": int(job.state.evaluations),
             "loss_total": total, "loss_content": terms.content, "loss_style": terms.style,
             "seconds": round(time.monotonic() - started, 1)}
    if bool(job.state.nonfinite):
        extra["status"] = status = "nonfinite"
    elif bool(job.state.converged) and status == "completed":
        extra["status"] = status = "converged"
    images.save_png(output, job.result(), _metadata(args, config, weights_info, extra))
    if status == "nonfinite":
        print(f"error: the loss became non-finite at iteration {iteration}; stopped and saved the "
              f"best image so far to {output}", file=sys.stderr)
        return EXIT_NONFINITE
    if status == "interrupted":
        print(f"interrupted at iteration {iteration}/{config.iterations}; saved the current image "
              f"to {output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    log(f"final loss {total:.4g} (content {terms.content:.4g}, style {terms.style:.4g}) after "
        f"{iteration} iterations{' (converged)' if status == 'converged' else ''}, "
        f"{int(job.state.evaluations)} evaluations, "
        f"{time.monotonic() - started:.0f}s")
    print(f"wrote {output}")
    return 0


def guarded(run, args, started: str = "the optimisation started") -> int:
    """``run(args)``, with an :class:`NSTError` as one ``error:`` line (exit 2) and an
    interrupt that ``run`` did not handle as one line (exit 130)."""
    try:
        return run(args)
    except NSTError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"error: interrupted before {started}; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    return guarded(run, build_parser().parse_args(argv))
