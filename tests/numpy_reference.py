"""An independent NumPy (float64) implementation of the paper's network and losses.

Written from the paper's equations and the VGG19 definition, sharing no code with
nst_jax, so that the tests compare two implementations rather than one with itself.
Images are channels-last ``(H, W, C)``.
"""
from __future__ import annotations

import numpy as np

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


def caffe_preprocess(rgb01: np.ndarray) -> np.ndarray:
    """RGB [0, 1] -> x255 -> BGR -> minus the mean pixel."""
    return rgb01[..., ::-1] * 255.0 - CAFFE_MEAN_BGR


def conv3x3_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Cross-correlation with zero padding 1: x (H, W, Ci), kernel (3, 3, Ci, Co)."""
    h, w, _ = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, kernel.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += padded[dy:dy + h, dx:dx + w, :] @ kernel[dy, dx]
    return out + bias


def pool2x2(x: np.ndarray, kind: str) -> np.ndarray:
    h, w, c = x.shape
    x = x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
    return x.mean(axis=(1, 3)) if kind == "avg" else x.max(axis=(1, 3))


def vgg_features(x: np.ndarray, layers: dict, blocks, pooling: str = "avg") -> dict:
    """All post-ReLU activations ``conv{b}_{i}`` of a preprocessed image ``x``."""
    out = {}
    x = x.astype(np.float64)
    for b, block in enumerate(blocks):
        if b:
            x = pool2x2(x, pooling)
        for i in range(len(block)):
            name = f"conv{b + 1}_{i + 1}"
            kernel, bias = layers[name]
            x = np.maximum(conv3x3_same(x, np.asarray(kernel, np.float64), np.asarray(bias, np.float64)), 0.0)
            out[name] = x
    return out


def gram(f: np.ndarray) -> np.ndarray:
    """G_ij = sum_k F_ik F_jk with F (N filters x M positions)."""
    F = f.reshape(-1, f.shape[-1]).T  # (N, M)
    return F @ F.T


def content_loss(f: np.ndarray, p: np.ndarray) -> float:
    """Eq. 1."""
    return 0.5 * float(np.sum((f - p) ** 2))


def style_layer_loss(f: np.ndarray, a_gram: np.ndarray) -> float:
    """Eq. 4."""
    n = f.shape[-1]
    m = f.shape[0] * f.shape[1]
    return float(np.sum((gram(f) - a_gram) ** 2)) / (4.0 * n**2 * m**2)


def style_loss(fs: dict, a_grams: dict, weights: dict) -> float:
    """Eq. 5."""
    return sum(weights[l] * style_layer_loss(fs[l], a_grams[l]) for l in weights)


def total_variation(x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) ** 2) + np.sum((x[:, 1:] - x[:, :-1]) ** 2))


# --- Gatys et al. 2017 (Controlling Perceptual Factors), §4: guided Gram matrices -------------


def guided_gram(f: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Guided Gram matrix per position: sum_k m_k F_k F_k^T / sum_k m_k."""
    flat = f.reshape(-1, f.shape[-1])
    m = mask.reshape(-1)
    return (flat * m[:, None]).T @ flat / m.sum()


def guided_style_layer_loss(f: np.ndarray, mask: np.ndarray, target: np.ndarray) -> float:
    """Eq. 4 over a region: 1/(4 N^2) sum (G_r / M_r - T)^2, G_r = F^T diag(m) F, M_r = sum m."""
    n = f.shape[-1]
    return float(np.sum((guided_gram(f, mask) - target) ** 2) / (4.0 * n**2))


def pool_mask(mask: np.ndarray, times: int) -> np.ndarray:
    """A (H, W) mask through ``times`` 2x2 average poolings that drop an odd last row/column."""
    for _ in range(times):
        h, w = mask.shape
        mask = mask[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return mask
