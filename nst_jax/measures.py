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
