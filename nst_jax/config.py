"""One style transfer's settings: the single source of their defaults, help and checks.

:class:`Config` is a frozen dataclass. Each field carries, in its metadata, the
help text, the group it belongs to, how it is checked, and whether a sweep may
vary it (an array hyper-parameter) or it fixes the compiled program. The
command-line tools build their flags from these fields
(:mod:`nst_jax.apps.common.flags`), the sweep's axes are the sweepable field names, and
the PNG metadata is the config as a dict, so a default or a range is written
once, here.

Defaults are the paper's (§2, §3) where it gives one: content ``conv4_2``; style
``conv1_1`` ... ``conv5_1`` with ``w_l = 1/5``; α/β = 1e-3 (Fig. 3); average
pooling; L-BFGS from white noise.
"""
from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from importlib import resources
from typing import Any, Callable, Mapping, NamedTuple

from nst_jax.errors import NSTError

CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
# Starting images a sweep can vary by an integer code; ``init`` may also be an image file.
INITS = ("noise", "content", "style")
POOLINGS = ("avg", "max")
PRECISIONS = ("float32", "bfloat16")
# Kept in step with nst_jax.optimize (a test checks it); listed here so that reading
# the configuration does not import JAX.
OPTIMIZERS = ("lbfgs", "lbfgs-stepwise", "lbfgs-jaxopt", "adam")
BOUNDS = ("box", "none")
# Style distances (nst_jax.distances.STYLE_DISTANCES; a test keeps them in step): the first is
# the paper's. Those after ADDITIVE_DISTANCES sort a whole layer at once (no tiles, regions
# or several styles).
STYLE_DISTANCES = ("gram", "mean-cov", "sliced", "histogram")
ADDITIVE_DISTANCES = ("gram", "mean-cov")
# Colour preservation (Gatys et al. 2017, §5); kept in step with nst_jax.colors.MODES (a test checks it).
COLOR_MODES = ("none", "luminance", "histogram", "histogram-cholesky", "original")
# --style-scale: the style's long side as a multiple of the output's.
MAX_STYLE_SCALE = 8.0
# Image sides, in px. VGG's four poolings before conv5_1 need 16; larger than 4096 is
# almost surely a typo (and 1.7e7 px per image is more than one machine evaluates).
MIN_SIDE = 16
MAX_SIDE = 4096
# --tile-size: the smallest tile (its halo is 24 px each side; see nst_jax.tiling).
MIN_TILE = 64
MAX_ITERATIONS = 100_000
# sliced's directions are drawn anew every this many iterations (docs/style-distances.md).
REDRAW_EVERY = 50
DEFAULT_LBFGS_MEMORY = 10
MAX_LBFGS_MEMORY = 100
# --coarse-iterations: chosen by measurement (docs/high-resolution.md, "Coarse to fine").
COARSE_ITERATIONS = 100
# Seeds are unsigned 32-bit integers: a sweep carries them in a uint32 array.
MAX_SEED = 2**32 - 1
# Every number of a Config becomes float32 (the loss weights, the noise, Adam's step), so
# none may exceed float32's largest finite value.
MAX_FLOAT32 = 3.4028234663852886e38
# The loss weights (alpha, beta, tv_weight, the layer and region weights, and the weight
# of each term, alpha x a content layer's weight and beta x a style layer's x a region's).
# The loss and its gradient are float32, and L-BFGS squares the gradient (its norm, its
# inner products), which overflows once the gradient's norm passes 1.8e19 = sqrt(3.4e38):
# the run then silently stalls at its first image. Measured with the real VGG19 from white
# noise, the content gradient's norm per unit of alpha is 1.6e8 at 64 px, 6.7e8 at 256 px,
# 2.4e9 at 1024 px (about 3e10 at 4096 px); the style gradient's per unit of beta is below
# 4e7. At 64 px, alpha and beta (1, 1e3) scaled by 1e8 ran as at 1, scaled by 1e9 stalled.
# 1e8 keeps the largest image's squares 30x below overflow, and the losses far from inf;
# only the ratio alpha/beta matters (eq. 7), so larger weights can be scaled down together.
MAX_WEIGHT = 1e8

GROUPS = {
    "images": "images",
    "loss": "loss (eq. 7: alpha * content + beta * style)",
    "network": "network",
    "optimisation": "optimisation",
}


def example_path(name: str) -> pathlib.Path:
    """Path of a bundled example image (``chelsea.jpg``, ``starry_night.jpg``)."""
    return pathlib.Path(str(resources.files("nst_jax") / "examples" / name))


# A field named inside a problem (mention): private-use characters, which no value holds.
_MENTION = re.compile("\ue000([a-z_0-9]+)\ue001")


def mention(name: str) -> str:
    """The field ``name`` inside a :class:`ConfigError`'s problem: shown as the field's
    name by default, as its flag (``--size``) on the command line and as its control's
    label on the page (:meth:`ConfigError.problem_naming`)."""
    return f"\ue000{name}\ue001"


class ConfigError(NSTError):
    """A field of :class:`Config` has a value it cannot take.

    ``field`` names the field (``'size'``) and ``problem`` says what is wrong
    (``'must be a whole number from 16 to 4096, got 8'``); the command-line
    tools replace the field name by the flag the user typed. Other fields the
    problem names are marked with :func:`mention`: ``problem`` (and ``str()``) show their
    names, :meth:`problem_naming` what a tool calls them.
    """

    def __init__(self, field: str, problem: str):
        self.field, self.template = field, problem
        self.problem = self.problem_naming(lambda name: name)
        super().__init__(f"{field} {self.problem}")

    def problem_naming(self, name_of: Callable[[str], str]) -> str:
        """The problem with each field it mentions named ``name_of(field)``."""
        return _MENTION.sub(lambda m: name_of(m.group(1)), self.template)


# --- checks: each takes the value and returns it normalised, or raises ConfigError ------


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) or (
        hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "iuf")


def _is_whole(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind in "iu")


def number(low: float = 0.0, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False) -> Callable[[str, Any], float]:
    """A finite real number in ``[low, high]`` (open ends where asked)."""
    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    span = f"in {left}{low:g}, {high:g}{right}" if high != math.inf else (
        f"> {low:g}" if low_open else f">= {low:g}")

    def check(name: str, value: Any) -> float:
        if not _is_real(value):
            raise ConfigError(name, f"must be a number, got {value!r}")
        value = float(value)
        bad = (not math.isfinite(value) or value < low or value > high
               or (low_open and value == low) or (high_open and value == high))
        if bad:
            raise ConfigError(name, f"must be a finite number {span}, got {value:g}")
        if abs(value) > MAX_FLOAT32:
            raise ConfigError(name, f"must be a number float32 can hold (at most "
                                    f"{MAX_FLOAT32:.3g}), got {value:g}")
        return value

    return check


def weight(name: str, value: Any) -> float:
    """A loss weight: a finite number from 0 to :data:`MAX_WEIGHT`."""
    if _is_real(value) and math.isfinite(float(value)) and float(value) > MAX_WEIGHT:
        raise ConfigError(name, f"must be at most {MAX_WEIGHT:g}, got {float(value):g}: larger "
                                "weights overflow float32 in the optimiser; only the weights' "
                                "ratios matter (eq. 7), so scale them down together")
    return number()(name, value)


def whole(low: int, high: int) -> Callable[[str, Any], int]:
    """A whole number in ``[low, high]``."""

    def check(name: str, value: Any) -> int:
        if not _is_whole(value) or not low <= int(value) <= high:
            shown = repr(value) if not _is_real(value) else f"{value}"
            raise ConfigError(name, f"must be a whole number from {low} to {high}, got {shown}")
        return int(value)

    return check


def side(name: str, value: Any) -> int:
    return whole(MIN_SIDE, MAX_SIDE)(name, value)


def optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


def choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(name, f"must be one of {', '.join(options)}, got {value!r}")
        return value

    return check


def tile_size(name: str, value: Any) -> int | str | None:
    """None, ``'auto'`` or a whole number of px from :data:`MIN_TILE` to :data:`MAX_SIDE`."""
    if value is None or value == "auto":
        return value
    return whole(MIN_TILE, MAX_SIDE)(name, value)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"must be True or False, got {value!r}")
    return value


def text(name: str, value: Any) -> str:
    if not isinstance(value, (str, pathlib.PurePath)) or not str(value).strip():
        raise ConfigError(name, f"must be a file path, got {value!r}")
    return str(value)


def paths(name: str, value: Any) -> tuple[str, ...]:
    """One file path or several (a str or PathLike is one path, commas included)."""
    values = (value,) if isinstance(value, (str, pathlib.PurePath)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise ConfigError(name, f"must be a file path or a list of them, got {value!r}") from None
    if not values:
        raise ConfigError(name, "must name at least one file")
    return tuple(text(name, v) for v in values)


def positive_numbers(high: float) -> Callable[[str, Any], tuple[float, ...] | None]:
    """None, or one or more finite numbers in ``(0, high]``."""

    def check(name: str, value: Any) -> tuple[float, ...] | None:
        if value is None:
            return None
        values = (value,) if _is_real(value) else tuple(value)
        ok = values and all(_is_real(v) and math.isfinite(float(v)) and 0 < float(v) <= high
                            for v in values)
        if not ok:
            raise ConfigError(name, f"must be numbers in (0, {high:g}], got "
                                    f"{', '.join(map(str, values)) or 'none'}")
        return tuple(float(v) for v in values)

    return check


def layer_names(name: str, value: Any) -> tuple[str, ...]:
    from nst_jax.vgg import LAYER_NAMES  # here, not at the top: vgg imports flax and JAX

    layers = (value,) if isinstance(value, str) else tuple(value)
    if not layers:
        raise ConfigError(name, "must name at least one layer")
    unknown = [layer for layer in layers if layer not in LAYER_NAMES]
    if unknown:
        raise ConfigError(name, f"has unknown layer name(s) {', '.join(map(str, unknown))}; choose "
                                f"from {', '.join(LAYER_NAMES)}")
    twice = sorted({layer for layer in layers if layers.count(layer) > 1})
    if twice:
        raise ConfigError(name, f"names {', '.join(twice)} more than once")
    return layers


def _weights(name: str, value: Any) -> tuple[float, ...] | None:
    """None, or finite numbers >= 0."""
    if value is None:
        return None
    values = tuple(value) if not isinstance(value, str) and not _is_real(value) else (value,)
    for v in values:
        if not _is_real(v) or not math.isfinite(float(v)) or float(v) < 0:
            raise ConfigError(name, f"must be finite numbers >= 0, got {', '.join(map(str, values))}")
    return tuple(float(v) for v in values)


def layer_weights(name: str, value: Any) -> tuple[float, ...] | None:
    """None, or finite numbers from 0 to :data:`MAX_WEIGHT` (layer and region weights)."""
    values = _weights(name, value)
    if values is not None and max(values, default=0.0) > MAX_WEIGHT:
        raise ConfigError(name, f"must be at most {MAX_WEIGHT:g} each, got "
                                f"{', '.join(f'{v:g}' for v in values)}: larger weights overflow "
                                "float32 in the optimiser; scale them down together")
    return values


def some_weight(name: str, value: Any) -> tuple[float, ...] | None:
    """None, or finite numbers >= 0, not all zero: blend weights, which are normalised
    to sum to 1 (:meth:`Config.style_mix`) before they become float32, so any finite
    ones are taken."""
    values = _weights(name, value)
    if values is not None and not max(values, default=0.0) > 0:
        raise ConfigError(name, f"must not all be 0, got {', '.join(f'{v:g}' for v in values)}")
    return values


def parse_style_loss(text: str) -> dict[str, float]:
    """``'gram'``, ``'mean-cov'`` or a weighted mix ``'gram:1,histogram:0.5'`` (a name alone
    weighs 1) -> ``{distance: weight}``; :class:`ValueError` saying what is wrong."""
    mix: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, _, weight = part.partition(":")
        name = name.strip()
        if name not in STYLE_DISTANCES:
            raise ValueError(f"has an unknown style distance {name!r}; choose from "
                             f"{', '.join(STYLE_DISTANCES)}")
        if name in mix:
            raise ValueError(f"names {name} more than once")
        try:
            value = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ValueError(f"has {weight.strip()!r} as the weight of {name}; expected a "
                             "number") from None
        if not math.isfinite(value) or value < 0 or value > MAX_WEIGHT:
            raise ValueError(f"gives {name} the weight {weight.strip()}; a weight is a number "
                             f"from 0 to {MAX_WEIGHT:g}")
        mix[name] = value
    if not mix:
        raise ValueError("names no style distance; choose from " + ", ".join(STYLE_DISTANCES))
    if not max(mix.values()) > 0:
        raise ValueError("gives every distance the weight 0: no style term")
    return mix


def style_loss(name: str, value: Any) -> str:
    """A style distance or a weighted mix of them (:func:`parse_style_loss`), written back
    in one canonical form (``'gram'``, ``'gram:1,histogram:0.5'``; a weight of 1 is left
    out, the distances in :data:`STYLE_DISTANCES`' order)."""
    if isinstance(value, Mapping):
        value = ",".join(f"{k}:{v}" for k, v in value.items())
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a style distance or a mix like gram:1,histogram:0.5, "
                                f"got {value!r}")
    try:
        mix = parse_style_loss(value)
    except ValueError as e:
        raise ConfigError(name, str(e)) from None
    return ",".join(k if mix[k] == 1.0 else f"{k}:{mix[k]:g}" for k in STYLE_DISTANCES if k in mix)


# --- the fields ---------------------------------------------------------------------------


def field(default: Any, help: str, group: str, check: Callable[[str, Any], Any], *,
          kind: str, sweep: bool = False, choices: tuple[str, ...] | None = None,
          metavar: str | None = None, shown_default: str | None = None) -> Any:
    """A :class:`Config` field and its metadata.

    ``kind`` says how a command line writes the value: ``path``, ``int``,
    ``float``, ``choice``, ``bool``, ``paths`` (comma-separated files), ``layers``
    (comma-separated names), ``floats`` (comma-separated numbers) or ``tile`` (px or
    ``auto``) or ``mix`` (a style distance or a weighted mix). ``sweep``: a sweep may vary it (it
    becomes an array); otherwise it fixes the compiled program and every point
    of a sweep shares it.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, check=check, kind=kind, sweep=sweep, choices=choices,
        metavar=metavar, shown_default=shown_default))


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of one style transfer (see the module docstring).

    Build it with keywords (``Config(size=384, beta=1e4)``), change it with
    :meth:`replace` (which also takes the shorthand ``ratio``); each field's help,
    group and check are in ``FIELDS[name].metadata``. Invalid values raise
    :class:`ConfigError`.
    """

    # images
    content: str = field(str(example_path("chelsea.jpg")), "content image (any format Pillow reads)",
                         "images", text, kind="path", shown_default="the bundled photo of Chelsea the cat")
    style: tuple[str, ...] = field(
        (str(example_path("starry_night.jpg")),), "style image, or several separated by commas: "
        "blended (--style-blend-weights), or one per region (--content-masks)", "images", paths,
        kind="paths", shown_default="the bundled Starry Night")
    size: int = field(256, f"long side of the output in px ({MIN_SIDE}-{MAX_SIDE})", "images", side,
                      kind="int")
    start_size: int | None = field(
        None, "coarse to fine: start at this long side and grow by about sqrt(2) per scale up to "
              "--size, each scale starting from the previous one's result upsampled; --size itself "
              "means one scale (see docs/high-resolution.md)", "images", optional(side), kind="int",
        metavar="PX",
        shown_default="off")
    style_size: int | None = field(None, "long side the style image is resized to; smaller makes "
                                         "its strokes larger", "images", optional(side), kind="int",
                                   shown_default="--size")
    style_scale: tuple[float, ...] | None = field(
        None, f"resize each style image to F x the output's long side (F in (0, "
              f"{MAX_STYLE_SCALE:g}]; one F for every style, or one per style); instead of "
              "--style-size", "images",
        positive_numbers(MAX_STYLE_SCALE), kind="floats", metavar="F", shown_default="1")
    style_blend_weights: tuple[float, ...] | None = field(
        None, "with several styles, the weight of each in the blend of their Gram matrices "
              "(normalised to sum to 1)", "images", some_weight, kind="floats", sweep=True,
        shown_default="equal")
    preserve_colors: str = field(
        "none", "keep the content's colours: luminance (transfer on luminance only, Gatys et al. "
                "2017 §5.1), histogram (recolour the style to the content's colour mean and "
                "covariance first, §5.2; histogram-cholesky: the Cholesky variant), original (swap "
                "the content's colours into the result afterwards)", "images",
        choice(COLOR_MODES), kind="choice", choices=COLOR_MODES)
    content_masks: tuple[str, ...] | None = field(
        None, "one greyscale mask per style image (white = that style's region; resized with the "
              "content), separated by commas: a style per region (Gatys et al. 2017 §4)", "images",
        optional(paths), kind="paths", shown_default="none: every style over the whole image")
    style_masks: tuple[str, ...] | None = field(
        None, "one greyscale mask per style image: take each style only from the white part of "
              "its own image", "images", optional(paths), kind="paths",
        shown_default="each whole style image")
    region_weights: tuple[float, ...] | None = field(
        None, "with --content-masks, the weight of each region's style term", "images",
        layer_weights, kind="floats", sweep=True, shown_default="1/number of regions")
    # loss
    alpha: float = field(1.0, f"content weight (eq. 7; 0-{MAX_WEIGHT:g})", "loss", weight,
                         kind="float", sweep=True)
    beta: float = field(1e3, f"style weight (eq. 7; 0-{MAX_WEIGHT:g})", "loss", weight,
                        kind="float", sweep=True)
    content_layers: tuple[str, ...] = field(CONTENT_LAYERS, "content layers", "loss", layer_names,
                                            kind="layers", sweep=True)
    content_layer_weights: tuple[float, ...] | None = field(
        None, "one weight per content layer, in the order of --content-layers", "loss",
        layer_weights, kind="floats", sweep=True, shown_default="1 each")
    style_layers: tuple[str, ...] = field(STYLE_LAYERS, "style layers", "loss", layer_names,
                                          kind="layers", sweep=True)
    style_layer_weights: tuple[float, ...] | None = field(
        None, "one weight w_l per style layer, in the order of --style-layers (eq. 5)", "loss",
        layer_weights, kind="floats", sweep=True, shown_default="1/number of layers, as the paper")
    tv_weight: float = field(0.0, "total-variation weight (not in the paper; 0 = off)", "loss",
                             weight, kind="float", sweep=True)
    style_loss: str = field(
        "gram", "the style distance: gram (the paper's eq. 4), mean-cov (2-Wasserstein between "
                "Gaussians), sliced (sliced Wasserstein) or histogram (Risser et al.'s), or a "
                "weighted mix such as gram:1,histogram:1 (docs/style-distances.md)", "loss",
        style_loss, kind="mix", sweep=True, metavar="NAME[:W],...")
    redraw_every: int = field(
        REDRAW_EVERY, "with the style distance sliced: draw its random directions anew every N "
                      "iterations, L-BFGS starting afresh on each draw as Heitz et al.'s does "
                      f"(1-{MAX_ITERATIONS}; 0 = one draw for the whole run)", "loss",
        whole(0, MAX_ITERATIONS), kind="int")
    # network
    pooling: str = field("avg", "pooling in VGG19 (the paper uses avg)", "network", choice(POOLINGS),
                         kind="choice", choices=POOLINGS)
    remat: bool = field(False, "recompute VGG activations in the backward pass: a little less "
                               "memory, more time (see docs/high-resolution.md)", "network", flag,
                        kind="bool")
    tile_size: int | str | None = field(
        None, f"evaluate the loss tile by tile in memory bounded by the tile: tiles of PX px "
              f"({MIN_TILE}-{MAX_SIDE}; exactly the untiled loss and gradient), or auto (a size "
              "from the free memory; images that fit are not tiled)", "network", tile_size,
        kind="tile", metavar="PX|auto", shown_default="off")
    precision: str = field("float32", "compute dtype of the convolutions (bfloat16: see "
                                      "docs/performance.md before using it)", "network",
                           choice(PRECISIONS),
                           kind="choice", choices=PRECISIONS)
    normalize_network: bool = field(False, "rescale VGG filters so each has mean activation 1 over "
                                           "the content and style images (paper §2)", "network",
                                    flag, kind="bool")
    weights: str | None = field(None, "converted VGG19 weights file (see scripts/fetch_weights.py)",
                                "network", optional(text), kind="path",
                                shown_default="weights/vgg19.h5, converted on first use")
    # optimisation
    iterations: int = field(200, "optimiser iterations (with --start-size: of the last scale)",
                            "optimisation", whole(1, MAX_ITERATIONS), kind="int")
    coarse_iterations: int = field(COARSE_ITERATIONS, "with --start-size, the optimiser iterations of "
                                                      "each scale before the last",
                                   "optimisation", whole(1, MAX_ITERATIONS), kind="int")
    optimizer: str = field("lbfgs-stepwise", "lbfgs-stepwise (L-BFGS with optax's memory and a "
                                             "projected line search), lbfgs (optax's), "
                                             "lbfgs-jaxopt or adam (docs/optimizers.md)",
                           "optimisation", choice(OPTIMIZERS), kind="choice", choices=OPTIMIZERS)
    lbfgs_memory: int | None = field(
        None, f"L-BFGS history: the last N steps (each 2 vectors the size of the image; "
              f"1-{MAX_LBFGS_MEMORY})", "optimisation", optional(whole(1, MAX_LBFGS_MEMORY)),
        kind="int", shown_default=f"{DEFAULT_LBFGS_MEMORY}, or fewer where --tile-size auto needs "
                                  "the memory")
    learning_rate: float = field(0.02, "Adam's step size (pixels in [0, 1]); unused by L-BFGS",
                                 "optimisation", number(0.0, low_open=True), kind="float")
    tolerance: float = field(0.0, "stop once an iteration changes the loss by at most this fraction "
                                  "of it (0 = run every iteration)", "optimisation",
                             number(0.0, 1.0, high_open=True), kind="float")
    bounds: str = field("box", "box: every pixel stays in [0, 1] while optimising, so the best image "
                               "found is the one saved; none: unconstrained, clipped when saved "
                               "(for comparison; see docs/optimizers.md)", "optimisation",
                        choice(BOUNDS),
                        kind="choice", choices=BOUNDS)
    init: str = field("noise", "start from noise (white noise, the paper's), content, style, or an "
                               "image file", "optimisation", text, kind="path", sweep=True,
                      metavar="{noise,content,style,FILE}")
    seed: int = field(0, f"seed of the white noise (0 to {MAX_SEED})", "optimisation",
                      whole(0, MAX_SEED), kind="int", sweep=True)
    noise_amplitude: float = field(0.1, "the white noise is 0.5 + A * (uniform - 0.5); 1 = full "
                                         "range", "optimisation", number(0.0, 1.0), kind="float",
                                   sweep=True)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))
        for kind in ("content", "style"):
            weights = getattr(self, f"{kind}_layer_weights")
            layers = getattr(self, f"{kind}_layers")
            if weights is not None and len(weights) != len(layers):
                raise ConfigError(f"{kind}_layer_weights",
                                  f"has {len(weights)} weight(s) for {len(layers)} {kind} layer(s) "
                                  f"({', '.join(layers)}); give one per layer")
        self._check_styles()
        self._check_term_weights()
        if self.start_size is not None and self.start_size > self.size:
            raise ConfigError("start_size", f"must not exceed {mention('size')} ({self.size}), "
                                            f"got {self.start_size}; it is the first scale's "
                                            "long side")

    def _check_term_weights(self):
        """Each term's weight (a product of weights, float32 too) within :data:`MAX_WEIGHT`."""
        terms = (("alpha", self.alpha * max(self.layer_weights("content").values()),
                  ["content_layer_weights"]),
                 ("beta", self.beta * max(self.layer_weights("style").values())
                  * max(self.region_weight_values()),
                  ["style_layer_weights"] + ["region_weights"] * (self.region_weights is not None)))
        for name, product, factors in terms:
            if product > MAX_WEIGHT:
                factors = " and ".join(map(mention, factors))
                raise ConfigError(name, f"times the largest of {factors} gives a term of eq. 7 "
                                        f"the weight {product:g}; it must be at most "
                                        f"{MAX_WEIGHT:g} (larger weights overflow float32 in "
                                        "the optimiser): scale them down")

    def _check_styles(self):
        styles = len(self.style)

        def one_per_style(name: str, what: str, allow_one: bool = False):
            values = getattr(self, name)
            if values is not None and len(values) != styles and not (allow_one and len(values) == 1):
                raise ConfigError(name, f"has {len(values)} {what} for {styles} style image(s); "
                                        f"give {'one, or ' if allow_one else ''}one per style image")

        one_per_style("style_blend_weights", "weight(s)")
        one_per_style("style_scale", "scale(s)", allow_one=True)
        one_per_style("content_masks", "mask(s)")
        one_per_style("style_masks", "mask(s)")
        if self.style_scale is not None and self.style_size is not None:
            raise ConfigError("style_scale", f"and {mention('style_size')} both set the style's "
                                             "size; give one")
        if self.content_masks is not None and self.style_blend_weights is not None:
            raise ConfigError("style_blend_weights", f"blends styles over the whole image; with "
                                                     f"{mention('content_masks')} each region has "
                                                     "its own style")
        self._check_distances()
        if self.region_weights is not None:
            if self.content_masks is None:
                raise ConfigError("region_weights", f"needs {mention('content_masks')} (the "
                                                    "regions)")
            if len(self.region_weights) != len(self.content_masks):
                raise ConfigError("region_weights", f"has {len(self.region_weights)} weight(s) "
                                                    f"for {len(self.content_masks)} region(s)")

    def _check_distances(self):
        """sliced and histogram sort a whole layer's features at once: one style image over
        the whole image, untiled (``tile_size='auto'`` is taken: an image that fits is not
        tiled, and :func:`nst_jax.stylize.prepare` says so when one does not fit)."""
        sorting = self.sorting_distances()
        if not sorting:
            return
        which = " and ".join(sorting)
        for name, given, why in (
                ("tile_size", self.tile_size not in (None, "auto"),
                 "sorts each layer's features over the whole image, so does not tile (gram "
                 "and mean-cov tile exactly)"),
                ("content_masks", self.content_masks is not None,
                 "has no regions (gram and mean-cov do)"),
                ("style_masks", self.style_masks is not None,
                 "takes the whole style image (gram and mean-cov take style masks)"),
                ("style", len(self.style) > 1,
                 "takes one style image (gram and mean-cov blend several)")):
            if given:
                raise ConfigError(name, f"cannot be used with the style distance {which} "
                                        f"({mention('style_loss')}), which {why}")

    def sorting_distances(self) -> list[str]:
        """The distances of :attr:`style_loss` that sort a whole layer (not in
        :data:`ADDITIVE_DISTANCES`): no tiles, regions or several styles."""
        return [d for d in self.distance_weights() if d not in ADDITIVE_DISTANCES]

    def distance_weights(self) -> dict[str, float]:
        """``{distance: weight}`` of :attr:`style_loss` (:func:`parse_style_loss`)."""
        return parse_style_loss(self.style_loss)

    def replace(self, **changes: Any) -> "Config":
        """A copy with ``changes``; ``ratio=r`` is short for ``alpha=r, beta=1``."""
        changes = expand_aliases(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    def layer_weights(self, kind: str) -> dict[str, float]:
        """``{layer: weight}`` of the ``'content'`` or ``'style'`` layers: the one place
        where a weight is tied to its layer (1 per content layer and ``1/L`` per style
        layer, as the paper, unless given)."""
        layers = getattr(self, f"{kind}_layers")
        weights = getattr(self, f"{kind}_layer_weights")
        if weights is None:
            weights = (1.0,) * len(layers) if kind == "content" else (1.0 / len(layers),) * len(layers)
        return dict(zip(layers, weights))

    def style_mix(self) -> list[list[float]]:
        """``(R, K)`` blend weights of the ``K`` styles in each of ``R`` regions (rows sum
        to 1): one row of blend weights (equal unless given) without content masks; with
        them, style ``r`` in region ``r``."""
        styles = len(self.style)
        if self.content_masks is not None:
            return [[float(r == k) for k in range(styles)] for r in range(styles)]
        weights = self.style_blend_weights or (1.0,) * styles
        # Divided by the largest first: the sum of weights near float64's largest (1e308)
        # would overflow to inf, and every weight become 0.
        largest = max(weights)
        weights = [w / largest for w in weights]
        return [[w / sum(weights) for w in weights]]

    def region_weight_values(self) -> list[float]:
        """``λ_r`` of each region: ``region_weights``, or ``1/R`` (1 without masks)."""
        regions = 1 if self.content_masks is None else len(self.content_masks)
        return list(self.region_weights or (1.0 / regions,) * regions)

    @property
    def init_is_file(self) -> bool:
        return self.init not in INITS


class Alias(NamedTuple):
    """A shorthand that sets several fields (used by :meth:`Config.replace`, the CLIs and sweeps)."""

    help: str
    check: Callable[[str, Any], Any]
    sets: Callable[[Any], dict]
    kind: str
    sweep: bool


ALIASES: dict[str, Alias] = {
    "ratio": Alias(f"alpha/beta; sets alpha = RATIO (0-{MAX_WEIGHT:g}) and beta = 1", weight,
                   lambda r: {"alpha": r, "beta": 1.0}, "float", True),
}


def expand_aliases(changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` with every alias replaced by the fields it sets (checked first)."""
    out = {}
    for name, value in changes.items():
        if name in ALIASES:
            alias = ALIASES[name]
            sets = alias.sets(0.0)
            if set(sets) & set(changes):
                raise ConfigError(name, f"sets {' and '.join(map(mention, sets))}; give one or "
                                        "the other")
            out.update(alias.sets(alias.check(name, value)))
        else:
            out[name] = value
    return out


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Config)}
# What a sweep may vary (array hyper-parameters), and what fixes the compiled program.
SWEEPABLE = tuple(name for name, f in FIELDS.items() if f.metadata["sweep"]) + tuple(
    name for name, alias in ALIASES.items() if alias.sweep)
STATIC_FIELDS = tuple(name for name, f in FIELDS.items() if not f.metadata["sweep"])
