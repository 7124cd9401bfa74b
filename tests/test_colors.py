"""Colour preservation (Gatys et al., CVPR 2017, §5) against hand-written NumPy float64 references."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import colors

# The NTSC matrix written out again here, so that a typo in the module cannot hide.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)
EPS = 1e-8  # the module's variance floor (eigenvalues, flat luminance)
CHOLESKY_JITTER = 1e-5  # the module's Cholesky jitter, relative to the trace
ATOL = 1e-5


def rand_image(seed: int, shape=(12, 10), low=0.0, high=1.0, mix=0.0) -> np.ndarray:
    """float32 RGB in [low, high]; ``mix`` > 0 correlates the channels (a non-diagonal covariance)."""
    rng = np.random.default_rng(seed)
    pixels = (1 - mix) * rng.random((*shape, 3)) + mix * rng.random((*shape, 1))
    return (low + (high - low) * pixels).astype(np.float32)


# ---- NumPy float64 references --------------------------------------------------------------

def ref_yiq(rgb):
    return np.asarray(rgb, np.float64) @ RGB_TO_YIQ.T


def ref_rgb(yiq):
    return np.asarray(yiq, np.float64) @ YIQ_TO_RGB.T


def ref_match_luminance(style_y, content_y):
    style_y, content_y = np.asarray(style_y, np.float64), np.asarray(content_y, np.float64)
    if style_y.var() < EPS:
        return np.full_like(style_y, content_y.mean())
    return (style_y - style_y.mean()) * content_y.std() / style_y.std() + content_y.mean()


def ref_combine(luma_rgb, chroma_rgb):
    yiq = ref_yiq(chroma_rgb)
    yiq[..., 0] = ref_yiq(luma_rgb)[..., 0]
    return np.clip(ref_rgb(yiq), 0, 1)


def ref_mean_cov(image):
    flat = np.asarray(image, np.float64).reshape(-1, 3)
    mean = flat.mean(axis=0)
    return mean, (flat - mean).T @ (flat - mean) / len(flat)


def ref_sym_power(cov, power, floor):
    values, vectors = np.linalg.eigh(cov)
    return vectors @ np.diag(np.maximum(values, floor) ** power) @ vectors.T


def ref_match_histogram(style, content, method):
    mu_s, cov_s = ref_mean_cov(style)
    mu_c, cov_c = ref_mean_cov(content)
    if method == "symmetric":
        a = ref_sym_power(cov_c, 0.5, 0.0) @ ref_sym_power(cov_s, -0.5, EPS)
    else:
        chol = [np.linalg.cholesky(c + (EPS + CHOLESKY_JITTER * np.trace(c)) * np.eye(3)) for c in (cov_s, cov_c)]
        a = chol[1] @ np.linalg.inv(chol[0])
    flat = np.asarray(style, np.float64).reshape(-1, 3)
    return np.clip((flat - mu_s) @ a.T + mu_c, 0, 1).reshape(style.shape)


# ---- YIQ ---------------------------------------------------------------------------------

def test_yiq_conversions_match_numpy_reference():
    rgb = rand_image(0)
    np.testing.assert_allclose(colors.rgb_to_yiq(rgb), ref_yiq(rgb), atol=ATOL)
    yiq = ref_yiq(rand_image(1)).astype(np.float32)
    np.testing.assert_allclose(colors.yiq_to_rgb(yiq), ref_rgb(yiq), atol=ATOL)
    np.testing.assert_allclose(colors.luminance(rgb), ref_yiq(rgb)[..., 0], atol=ATOL)
    assert colors.luminance(rgb).shape == (12, 10)


def test_yiq_of_known_colours():
    rgb = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    expected = np.array([[1, 0, 0], [0, 0, 0], [0.299, 0.595716, 0.211456],
                         [0.587, -0.274453, -0.522591], [0.114, -0.321263, 0.311135]])
    np.testing.assert_allclose(colors.rgb_to_yiq(rgb), expected, atol=1e-6)


def test_yiq_round_trips_are_exact_to_float32_rounding():
    rgb = rand_image(2, shape=(2, 12, 10))  # a leading batch axis
    yiq = colors.rgb_to_yiq(rgb)
    assert isinstance(yiq, jax.Array) and yiq.dtype == jnp.float32 and yiq.shape == rgb.shape
    np.testing.assert_allclose(colors.yiq_to_rgb(yiq), rgb, atol=2e-6)
    np.testing.assert_allclose(colors.rgb_to_yiq(colors.yiq_to_rgb(yiq)), yiq, atol=2e-6)


def test_gray3_repeats_luminance_in_three_channels():
    y = np.random.default_rng(3).random((4, 12, 10)).astype(np.float32)
    out = colors.gray3(y)
    assert out.shape == (4, 12, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], y)


# ---- §5.1 luminance ----------------------------------------------------------------------

def test_match_luminance_matches_reference_and_content_statistics():
    style_y, content_y = ref_yiq(rand_image(4, (9, 11)))[..., 0], ref_yiq(rand_image(5))[..., 0]
    out = np.asarray(colors.match_luminance(style_y.astype(np.float32), content_y.astype(np.float32)))
    assert out.shape == (9, 11)
    np.testing.assert_allclose(out, ref_match_luminance(style_y, content_y), atol=ATOL)
    assert out.mean() == pytest.approx(content_y.mean(), abs=1e-5)
    assert out.std() == pytest.approx(content_y.std(), abs=1e-5)


def test_match_luminance_of_a_flat_style_is_the_content_mean():
    content_y = ref_yiq(rand_image(6))[..., 0].astype(np.float32)
    out = colors.match_luminance(np.full((9, 11), 0.3, np.float32), content_y)
    np.testing.assert_allclose(out, np.full((9, 11), content_y.mean()), atol=1e-6)


def test_luminance_inputs_match_reference():
    # A low-contrast style with one white pixel: matching its Y to the content's overshoots there.
    content, style = rand_image(7), rand_image(8, (9, 11), low=0.45, high=0.55)
    style[0, 0] = 1.0
    content_y3, style_y3 = colors.luminance_inputs(content, style)
    assert content_y3.shape == (12, 10, 3) and style_y3.shape == (9, 11, 3)
    content_y = ref_yiq(content)[..., 0]
    matched = ref_match_luminance(ref_yiq(style)[..., 0], content_y)
    assert matched.min() < 0 or matched.max() > 1  # the premise: clipping bites
    expected_style_y = np.clip(matched, 0, 1)
    for channel in range(3):
        np.testing.assert_allclose(content_y3[..., channel], np.clip(content_y, 0, 1), atol=ATOL)
        np.testing.assert_allclose(style_y3[..., channel], expected_style_y, atol=ATOL)


def test_luminance_inputs_give_equal_channels_and_the_contents_statistics():
    # Mid-range pixels: matching then needs no clipping, so the statistics are exact.
    content, style = rand_image(9, low=0.3, high=0.7), rand_image(10, (9, 11), low=0.2, high=0.8)
    content_y3, style_y3 = (np.asarray(a) for a in colors.luminance_inputs(content, style))
    for out in (content_y3, style_y3):
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert 0 < style_y3.min() and style_y3.max() < 1  # the premise: nothing clipped
    content_y = ref_yiq(content)[..., 0]
    assert style_y3[..., 0].mean() == pytest.approx(content_y.mean(), abs=1e-5)
    assert style_y3[..., 0].std() == pytest.approx(content_y.std(), abs=1e-5)
    assert style_y3[..., 0].std() != pytest.approx(ref_yiq(style)[..., 0].std(), abs=1e-3)


def test_combine_luminance_chroma_matches_reference_including_clipping():
    luma, chroma = rand_image(11), rand_image(12)
    out = np.asarray(colors.combine_luminance_chroma(luma, chroma))
    expected = ref_combine(luma, chroma)
    assert out.shape == (12, 10, 3)
    assert ((expected == 0) | (expected == 1)).any()  # the premise: some pixels clip
    np.testing.assert_allclose(out, expected, atol=ATOL)


def test_combine_takes_y_of_one_and_chroma_of_the_other():
    luma, chroma = rand_image(13, low=0.3, high=0.7), rand_image(14, low=0.3, high=0.7)
    out = np.asarray(colors.combine_luminance_chroma(luma, chroma))
    assert 0 < out.min() and out.max() < 1  # the premise: nothing clipped
    np.testing.assert_allclose(ref_yiq(out)[..., 0], ref_yiq(luma)[..., 0], atol=ATOL)
    np.testing.assert_allclose(ref_yiq(out)[..., 1:], ref_yiq(chroma)[..., 1:], atol=ATOL)


# ---- §5.2 colour histogram matching ----------------------------------------------------------

@pytest.mark.parametrize("method", ["symmetric", "cholesky"])
def test_match_histogram_matches_reference(method):
    style, content = rand_image(15, (9, 11), mix=0.5), rand_image(16, mix=0.3)
    out = colors.match_histogram(style, content, method)
    assert isinstance(out, jax.Array) and out.shape == (9, 11, 3) and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref_match_histogram(style, content, method), atol=ATOL)


@pytest.mark.parametrize("method", ["symmetric", "cholesky"])
def test_match_histogram_gives_the_contents_mean_and_covariance(method):
    style = rand_image(17, (9, 11), low=0.3, high=0.7, mix=0.6)
    content = rand_image(18, low=0.3, high=0.7, mix=0.2)
    out = np.asarray(colors.match_histogram(style, content, method))
    assert 0 < out.min() and out.max() < 1  # the premise: nothing clipped
    (mu_out, cov_out), (mu_c, cov_c), (_, cov_s) = (ref_mean_cov(a) for a in (out, content, style))
    np.testing.assert_allclose(mu_out, mu_c, atol=1e-4)
    np.testing.assert_allclose(cov_out, cov_c, atol=1e-4)
    assert np.abs(cov_s - cov_c).max() > 1e-3  # the premise: there was something to match


@pytest.mark.parametrize("method", ["symmetric", "cholesky"])
@pytest.mark.parametrize("kind", ["flat", "greyscale"])
def test_match_histogram_of_a_degenerate_style_is_finite(method, kind):
    content = rand_image(19, low=0.3, high=0.7, mix=0.3)
    grey = rand_image(20, (64, 64))[..., :1]
    style = np.full((64, 64, 3), 0.4, np.float32) if kind == "flat" else np.repeat(grey, 3, axis=-1)
    out = np.asarray(colors.match_histogram(style, content, method))
    assert np.isfinite(out).all()
    if kind == "flat":  # nothing to recolour: every pixel becomes the content's mean
        np.testing.assert_allclose(out, np.broadcast_to(ref_mean_cov(content)[0], out.shape), atol=1e-3)
    else:  # x' is affine in the grey level: rounding noise off the grey axis must not be blown up
        assert abs(np.corrcoef(ref_yiq(out)[..., 0].ravel(), grey.ravel())[0, 1]) > 0.999


def test_match_histogram_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="cholesky"):
        colors.match_histogram(rand_image(21), rand_image(22), "qr")


# ---- prepare / finish --------------------------------------------------------------------

CONTENT = rand_image(23)
STYLES = [rand_image(24, (9, 11)), rand_image(25, (7, 8))]


@pytest.mark.parametrize("mode", colors.MODES)
def test_prepare_for_every_mode(mode):
    content, styles = colors.prepare(mode, CONTENT, STYLES)
    assert content.shape == CONTENT.shape
    # The modes that change nothing hand the arrays back as they are (no device copies);
    # the others compute on the device.
    assert (content is CONTENT) == (mode in ("none", "original"))
    assert isinstance(content, jax.Array) or mode in ("none", "original")
    assert isinstance(styles, list) and [s.shape for s in styles] == [s.shape for s in STYLES]
    if mode in ("none", "original"):
        np.testing.assert_array_equal(content, CONTENT)
        for got, style in zip(styles, STYLES):
            np.testing.assert_array_equal(got, style)
    elif mode == "luminance":
        gray = np.clip(ref_yiq(CONTENT)[..., :1], 0, 1)
        np.testing.assert_allclose(content, np.broadcast_to(gray, CONTENT.shape), atol=ATOL)
        for got, style in zip(styles, STYLES):
            np.testing.assert_allclose(got, colors.luminance_inputs(CONTENT, style)[1], atol=1e-6)
    else:
        method = "cholesky" if mode == "histogram-cholesky" else "symmetric"
        np.testing.assert_array_equal(content, CONTENT)
        for got, style in zip(styles, STYLES):
            np.testing.assert_allclose(got, ref_match_histogram(style, CONTENT, method), atol=ATOL)


@pytest.mark.parametrize("mode", colors.MODES)
def test_finish_for_every_mode(mode):
    pixels = rand_image(26)
    out = colors.finish(mode, pixels, CONTENT)
    assert isinstance(out, jax.Array) and out.shape == pixels.shape
    expected = ref_combine(pixels, CONTENT) if mode in ("luminance", "original") else pixels
    np.testing.assert_allclose(out, expected, atol=ATOL)


def test_unknown_mode_is_a_value_error_naming_the_choices():
    for call in (lambda: colors.prepare("lab", CONTENT, STYLES), lambda: colors.finish("lab", CONTENT, CONTENT)):
        with pytest.raises(ValueError, match="'lab'.*histogram-cholesky"):
            call()


def test_jit_and_vmap_equal_one_by_one():
    styles = np.stack([rand_image(27, mix=0.4), rand_image(28, mix=0.1)])
    contents = np.stack([rand_image(29), rand_image(30, mix=0.5)])

    @jax.jit
    @jax.vmap
    def run(style, content):
        return (colors.match_histogram(style, content, "symmetric"),
                colors.match_histogram(style, content, "cholesky"),
                colors.finish("luminance", colors.luminance_inputs(content, style)[1], content),
                colors.match_luminance(colors.luminance(style), colors.luminance(content)))

    batched = run(styles, contents)
    for i in range(2):
        single = (colors.match_histogram(styles[i], contents[i], "symmetric"),
                  colors.match_histogram(styles[i], contents[i], "cholesky"),
                  colors.finish("luminance", colors.luminance_inputs(contents[i], styles[i])[1], contents[i]),
                  colors.match_luminance(colors.luminance(styles[i]), colors.luminance(contents[i])))
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[i], want, atol=1e-5)
