"""The real VGG19 weights: parity with a stored reference and with an independent
NumPy implementation of the paper (features and every loss to ~1e-4 relative)."""
import pathlib

import jax
import numpy as np
import pytest

from nst_jax import stylize
from nst_jax.losses import LossWeights, Targets, gram_matrix, total_loss
from nst_jax.vgg import LAYER_NAMES, VGG19, VGG19_BLOCKS, preprocess
from tests import numpy_reference as ref
from tests.make_reference import STORED_FULL, reference_input

REFERENCE = pathlib.Path(__file__).resolve().parent / "data" / "vgg19_reference.npz"
RTOL = 1e-4


def positions(features) -> int:
    """``M_l``: the number of positions of a layer's ``(H, W, N)`` activations."""
    return features.shape[0] * features.shape[1]


def close(got, want, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max()
    err = np.abs(got - want).max() / scale
    assert err < RTOL, f"{what}: max error {err:.2e} of the largest value {scale:.3g}"


@pytest.fixture(scope="module")
def features_fn(real_weights):
    params, preprocessing = real_weights
    module = VGG19(pooling="avg")
    return jax.jit(lambda rgb: module.apply(params, preprocess(rgb, preprocessing), LAYER_NAMES))


@pytest.fixture(scope="module")
def numpy_layers(real_weights):
    params, _ = real_weights
    return {k: (np.asarray(v["kernel"]), np.asarray(v["bias"])) for k, v in params["params"].items()}


def test_weights_are_the_pinned_ones(real_weights):
    from nst_jax.weights import default_weights_path, describe

    stored = np.load(REFERENCE)
    assert describe(default_weights_path())["params_sha256"] == str(stored["params_sha256"])


def test_features_match_the_stored_reference(features_fn):
    stored = np.load(REFERENCE)
    np.testing.assert_array_equal(stored["image"], reference_input())
    feats = features_fn(stored["image"])
    for name in LAYER_NAMES:
        close(np.asarray(feats[name]).mean(axis=(0, 1)), stored[f"mean/{name}"], f"mean of {name}")
    for name in STORED_FULL:
        close(feats[name], stored[f"full/{name}"], name)


def test_features_and_losses_match_an_independent_numpy_implementation(features_fn, numpy_layers):
    content = reference_input()
    rng = np.random.default_rng(7)
    style = rng.random((32, 48, 3)).astype(np.float32)
    generated = np.clip(content + 0.2 * rng.normal(size=content.shape), 0, 1).astype(np.float32)

    np_feats = {k: ref.vgg_features(ref.caffe_preprocess(x.astype(np.float64)), numpy_layers, VGG19_BLOCKS)
                for k, x in (("content", content), ("style", style), ("generated", generated))}
    jx = {k: features_fn(x) for k, x in (("content", content), ("style", style), ("generated", generated))}
    for name in LAYER_NAMES:
        close(jx["generated"][name], np_feats["generated"][name], name)

    cl, sl = stylize.CONTENT_LAYERS, stylize.STYLE_LAYERS
    targets = Targets(content={l: jx["content"][l] for l in cl},
                      style={l: gram_matrix(jx["style"][l])[None] / positions(jx["style"][l])
                             for l in sl})
    weights = LossWeights(alpha=np.float32(1.0), beta=np.float32(1e3),
                          content_layer_weights={l: np.float32(1.0) for l in cl},
                          style_layer_weights={l: np.float32(0.2) for l in sl}, tv_weight=np.float32(0.0))
    total, terms = jax.jit(total_loss)(jx["generated"], generated, targets, weights)

    want_content = ref.content_loss(np_feats["generated"]["conv4_2"], np_feats["content"]["conv4_2"])
    a = {l: ref.gram(np_feats["style"][l]) for l in sl}
    for l in sl:
        close(targets.style[l][0] * positions(jx["style"][l]), a[l], f"Gram matrix of {l}")
    # The style and the generated image have the same size here, so the per-position
    # targets give exactly the paper's eq. 4 with A^l.
    want_style = ref.style_loss(np_feats["generated"], a, {l: 0.2 for l in sl})
    close(terms.content, want_content, "content loss (eq. 1)")
    close(terms.style, want_style, "style loss (eq. 5)")
    close(total, want_content + 1e3 * want_style, "total loss (eq. 7)")


def test_real_stylization_moves_toward_both_targets(real_weights):
    params, preprocessing = real_weights
    content = reference_input()
    style = np.random.default_rng(3).random((32, 32, 3)).astype(np.float32)
    job = stylize.prepare(content, style, params, stylize.Config(iterations=15), preprocessing=preprocessing)
    start_total, start = job.terms()
    job.step(15)
    end_total, end = job.terms(job.state.best_pixels)
    assert end_total < 0.1 * start_total
    assert end.content < start.content and end.style < start.style
