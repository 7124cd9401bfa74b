"""Optical flow between video frames, for temporal consistency (:mod:`nst_jax.temporal`).

OpenCV's DIS flow (Kroeger et al., *Fast Optical Flow using Dense Inverse Search*, ECCV
2016), from the optional ``video`` extra (``opencv-python-headless``, whose wheels need
no system libraries). DIS is dense, runs on the CPU in milliseconds per frame at the
sizes we stylise, and its ``MEDIUM`` preset is the one OpenCV recommends for quality:
``ULTRAFAST`` and ``FAST`` skip the variational refinement that keeps the flow smooth
inside objects (which the motion-boundary check of :func:`nst_jax.temporal.consistency`
would otherwise mark as boundaries everywhere). Ruder et al. used DeepFlow, which is
slower by two orders of magnitude; the stylisation, not the flow, is the cost here.

Frames are RGB float arrays in [0, 1], ``(H, W, 3)``; flows are ``(H, W, 2)`` float32,
``(dx, dy)`` in px, with the conventions of :mod:`nst_jax.temporal`.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nst_jax.errors import NSTError

PRESETS = ("ultrafast", "fast", "medium")
DEFAULT_PRESET = "medium"


def _cv2():
    try:
        import cv2
    except ImportError:
        raise NSTError("optical flow needs OpenCV: pip install 'nst_jax[video]' "
                       "(opencv-python-headless)") from None
    return cv2


def _grey(frame: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] -> uint8 luminance (BT.601), what DIS takes."""
    frame = np.asarray(frame, np.float32)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise NSTError(f"a frame must be (H, W, 3) RGB, got shape {frame.shape}")
    luminance = frame @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(luminance * 255.0), 0, 255).astype(np.uint8)


def dis(source: np.ndarray, target: np.ndarray, preset: str = DEFAULT_PRESET) -> np.ndarray:
    """The flow ``f`` ``(H, W, 2)`` with ``source(p) ≈ target(p + f(p))`` (OpenCV's DIS)."""
    cv2 = _cv2()
    if preset not in PRESETS:
        raise NSTError(f"the flow preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if np.shape(source) != np.shape(target):
        raise NSTError(f"frames of different shapes: {np.shape(source)} and {np.shape(target)}")
    method = cv2.DISOpticalFlow_create(getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}"))
    return np.asarray(method.calc(_grey(source), _grey(target), None), np.float32)


class Flows(NamedTuple):
    """The two flows between a frame and the one before it: ``backward`` (current ->
    previous, what :func:`nst_jax.temporal.warp` carries the previous result with) and
    ``forward`` (previous -> current, for :func:`nst_jax.temporal.consistency`)."""

    backward: np.ndarray
    forward: np.ndarray


def between(previous: np.ndarray, current: np.ndarray, preset: str = DEFAULT_PRESET) -> Flows:
    """:class:`Flows` between consecutive frames ``previous`` and ``current``."""
    return Flows(dis(current, previous, preset), dis(previous, current, preset))
