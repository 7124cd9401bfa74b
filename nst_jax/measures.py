"""Measures of images that no loss optimises: colour statistics, chroma and luminance
differences, and the size and fineness of textures (pure NumPy, float ``(H, W, 3)`` RGB in
[0, 1]).

The figures use them to check that each artistic control does what it promises, and the
benchmark to describe an output (how large its structures are, how much fine grain it has).
"""
from __future__ import annotations

import numpy as np

from nst_jax import colors

# Frequencies above this (cycles per pixel; Nyquist is 0.5) count as high.
HIGH_FREQUENCY = 0.25


def _pixels(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float64).reshape(-1, 3)


def yiq(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` NTSC YIQ of RGB in [0, 1] (float64; :func:`nst_jax.colors.rgb_to_yiq`)."""
    return np.asarray(colors.rgb_to_yiq(np.asarray(image, np.float32)), np.float64)


def chroma_difference(image: np.ndarray, content: np.ndarray) -> float:
    """Mean ``|ΔI|`` and ``|ΔQ|`` (over pixels and both channels) between two RGB images."""
    return float(np.mean(np.abs(yiq(image)[..., 1:] - yiq(content)[..., 1:])))


def luminance_difference(image: np.ndarray, content: np.ndarray) -> float:
    """Mean ``|ΔY|`` between two RGB images of the same shape."""
    return float(np.mean(np.abs(yiq(image)[..., 0] - yiq(content)[..., 0])))


def color_stats(image: np.ndarray, weights: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (3,), covariance (3, 3))`` of an image's RGB pixels, each pixel weighted by
    ``weights`` ``(H, W)`` (a soft region; default: all equal). Population covariance."""
    pixels = _pixels(image)
    w = np.ones(len(pixels)) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    w = w / w.sum()
    mean = w @ pixels
    centred = pixels - mean
    return mean, (centred * w[:, None]).T @ centred


def color_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """``||mu_a - mu_b|| + ||Sigma_a - Sigma_b||_F`` of two :func:`color_stats`."""
    return float(np.linalg.norm(a[0] - b[0]) + np.linalg.norm(a[1] - b[1]))


def _luminance_spectrum(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(power, frequency)`` of the luminance, both ``(H, W)``: the power spectrum (DC set
    to 0) after a Hann window, so that the jump between opposite borders (the FFT wraps
    around) does not count as texture; the radial frequency in cycles per pixel."""
    y = yiq(image)[..., 0]
    window = np.outer(np.hanning(y.shape[0]), np.hanning(y.shape[1]))
    power = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
    power[0, 0] = 0.0
    fy, fx = np.meshgrid(np.fft.fftfreq(y.shape[0]), np.fft.fftfreq(y.shape[1]), indexing="ij")
    return power, np.hypot(fy, fx)


def high_frequency_share(image: np.ndarray, cutoff: float = HIGH_FREQUENCY) -> float:
    """The share of the luminance's variance at spatial frequencies above ``cutoff`` cycles
    per pixel: near 0 for a smooth ramp, about 0.8 for white noise, near 1 for a one-pixel
    checkerboard. It measures fine detail (how sharp the texture's strokes are) more than
    the size of its structures: see :func:`texture_period`."""
    power, frequency = _luminance_spectrum(image)
    total = power.sum()
    return float(power[frequency > cutoff].sum() / total) if total > 0 else 0.0


def texture_period(image: np.ndarray, max_frequency: float = HIGH_FREQUENCY) -> float:
    """The typical size of the luminance's structures, in px: ``1 / f_half``, where half of
    the power at frequencies ``0 < f <= max_frequency`` lies below ``f_half``.

    The finest octave (above ``max_frequency``, periods under 4 px) is left out: it holds
    the strokes' sharpness, which grows with the style image's resolution, not the size of
    its swirls. NaN for an image with no power in the band.
    """
    power, frequency = _luminance_spectrum(image)
    band = (frequency > 0) & (frequency <= max_frequency)
    order = np.argsort(frequency[band], kind="stable")
    cumulative = np.cumsum(power[band][order])
    if not cumulative.size or cumulative[-1] <= 0:
        return float("nan")
    return float(1.0 / frequency[band][order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


# --- colour distributions ---------------------------------------------------------------------

COLOUR_SPACES = ("rgb", "lab")
# sRGB's linear RGB to CIE XYZ (IEC 61966-2-1, D65) and the D65 white point (CIE 1931 2°).
SRGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# Directions per chunk of colour_sliced_wasserstein: bounds its memory (a few arrays of
# pixels x chunk float64) at any image size.
_DIRECTIONS_PER_CHUNK = 8


def srgb_to_lab(image: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65 white) of sRGB pixels in [0, 1], any shape ``(..., 3)``; float64,
    ``L*`` in [0, 100], ``a*`` and ``b*`` within about [-128, 128]. A perceptual space:
    a distance of 1 is about one just-noticeable difference, in light and dark colours
    alike (in sRGB the same step is far larger in the darks)."""
    rgb = np.clip(np.asarray(image, np.float64), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ SRGB_TO_XYZ.T / D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]),
                     200.0 * (f[..., 1] - f[..., 2])], axis=-1)


def sphere_directions(count: int, seed: int = 0, dims: int = 3) -> np.ndarray:
    """``(dims, count)`` unit vectors, uniform on the sphere, drawn from ``seed``."""
    directions = np.random.default_rng(seed).standard_normal((dims, count))
    return directions / np.linalg.norm(directions, axis=0, keepdims=True)


def _merged_steps(na: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(widths, ia, ib)``: the intervals on which the step quantile functions of ``na`` and
    ``nb`` samples are both constant (widths in units of ``1 / (na nb)``), and the sample of
    each that the interval reads."""
    # The quantile functions step at k / na and k / nb: in units of 1 / (na nb) those are
    # the integers k nb and k na, so the merged steps are exact (no float rounding).
    ends = np.union1d(np.arange(1, na + 1, dtype=np.int64) * nb,
                      np.arange(1, nb + 1, dtype=np.int64) * na)
    widths = np.diff(ends, prepend=0).astype(np.float64)
    # Each interval (previous end, end] lies in one step of each: sample (end - 1) // n.
    return widths, (ends - 1) // nb, (ends - 1) // na


def _w2_squared(a: np.ndarray, b: np.ndarray, steps) -> np.ndarray:
    """:func:`wasserstein_1d_squared` of the rows of ``a`` ``(P, n_a)`` and ``b`` ``(P, n_b)``
    (samples along the last axis: contiguous, the fast axis to sort)."""
    widths, ia, ib = steps
    a, b = np.sort(a, axis=-1), np.sort(b, axis=-1)
    return np.square(a[:, ia] - b[:, ib]) @ widths / (float(a.shape[1]) * b.shape[1])


def wasserstein_1d_squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The squared 2-Wasserstein distance between the empirical distributions of each
    column of ``a`` ``(n_a, P)`` and ``b`` ``(n_b, P)``, exactly, for any two sample sizes:
    ``int_0^1 (Q_a(t) - Q_b(t))^2 dt`` with ``Q`` the step quantile functions. Equal sizes
    reduce it to ``mean (sort(a) - sort(b))^2``; a sample repeated ``k`` times is the same
    distribution (distance 0). ``(P,)`` float64."""
    a, b = np.asarray(a, np.float64).T, np.asarray(b, np.float64).T
    return _w2_squared(a, b, _merged_steps(a.shape[1], b.shape[1]))


def colour_sliced_wasserstein(image: np.ndarray, style: np.ndarray, space: str = "rgb",
                              projections: int = 64, seed: int = 0) -> float:
    """How far an image's colours are from a style's, as distributions of pixels: the
    sliced 2-Wasserstein distance ``sqrt(mean_p W2^2(<x, d_p>, <y, d_p>))`` over
    ``projections`` random directions ``d_p`` (:func:`sphere_directions` of ``seed``) of
    the two images' pixel colours (:func:`wasserstein_1d_squared`: exact, whatever the
    images' sizes). Positions do not count: only which colours occur, and how often.

    Args:
      image, style: RGB in [0, 1], ``(H, W, 3)`` and ``(H', W', 3)``.
      space: ``'rgb'`` (units of [0, 1] sRGB) or ``'lab'`` (CIE L*a*b* units,
        :func:`srgb_to_lab`).
    Returns:
      a float >= 0: 0 for the same colours in any arrangement, symmetric in the images.
    """
    if space not in COLOUR_SPACES:
        raise ValueError(f"unknown colour space {space!r}; choose one of {', '.join(COLOUR_SPACES)}")
    convert = srgb_to_lab if space == "lab" else (lambda x: np.asarray(x, np.float64))
    # (3, pixels): a direction's projections are then a contiguous row.
    x, y = (np.ascontiguousarray(convert(np.asarray(v)).reshape(-1, 3).T) for v in (image, style))
    directions = sphere_directions(projections, seed)
    steps = _merged_steps(x.shape[1], y.shape[1])
    total = 0.0
    for begin in range(0, projections, _DIRECTIONS_PER_CHUNK):
        chunk = directions[:, begin:begin + _DIRECTIONS_PER_CHUNK].T  # (P, 3)
        total += float(np.sum(_w2_squared(chunk @ x, chunk @ y, steps)))
    return float(np.sqrt(total / projections))
