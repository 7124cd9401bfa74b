"""Regenerate ``tests/data/vgg19_reference.npz`` (run once; the result is committed).

Made with the independent NumPy implementation (``tests/numpy_reference.py``, float64)
from the converted real weights, so the stored numbers do not come from the code
under test. Usage: ``python -m tests.make_reference``.
"""
from __future__ import annotations

import pathlib

import numpy as np

from nst_jax.vgg import VGG19_BLOCKS
from nst_jax.weights import default_weights_path, read_canonical
from tests import numpy_reference as ref

OUT = pathlib.Path(__file__).resolve().parent / "data" / "vgg19_reference.npz"
STORED_FULL = ("conv4_2", "conv5_1")  # the paper's content layer and deepest style layer


def reference_input() -> np.ndarray:
    """A 32x48 RGB image in [0, 1]: smooth gradients plus seeded noise."""
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([yy / 31.0, xx / 47.0, 0.5 + 0.5 * np.sin(xx / 5.0) * np.cos(yy / 7.0)], -1)
    noise = np.random.default_rng(2016).random((32, 48, 3))
    return (0.7 * smooth + 0.3 * noise).astype(np.float32)


def main() -> None:
    layers, attrs = read_canonical(default_weights_path())
    layers = {name: (v["kernel"], v["bias"]) for name, v in layers.items()}
    image = reference_input()
    feats = ref.vgg_features(ref.caffe_preprocess(image.astype(np.float64)), layers, VGG19_BLOCKS, "avg")
    arrays = {"image": image, "params_sha256": np.array(attrs["params_sha256"])}
    for name, f in feats.items():
        arrays[f"mean/{name}"] = f.mean(axis=(0, 1)).astype(np.float32)
        if name in STORED_FULL:
            arrays[f"full/{name}"] = f.astype(np.float32)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) for weights {attrs['params_sha256']}")


if __name__ == "__main__":
    main()
