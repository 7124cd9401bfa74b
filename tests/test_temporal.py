"""Ruder et al.'s temporal consistency (nst_jax.temporal) against NumPy references of its
equations and OpenCV's remap; the DIS flow (nst_jax.flow) on a known motion."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import flow, temporal
from nst_jax.errors import NSTError


# --- NumPy references --------------------------------------------------------------------


def numpy_warp(image: np.ndarray, flow_: np.ndarray) -> np.ndarray:
    """Bilinear sampling of ``image`` at ``p + flow(p)``, coordinates clamped to the image."""
    image = np.asarray(image, np.float64)
    h, w = image.shape[:2]
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y = np.clip(ys + flow_[..., 1], 0, h - 1)
    x = np.clip(xs + flow_[..., 0], 0, w - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (y - y0)[..., None], (x - x0)[..., None]
    return ((1 - fy) * (1 - fx) * image[y0, x0] + (1 - fy) * fx * image[y0, x1]
            + fy * (1 - fx) * image[y1, x0] + fy * fx * image[y1, x1])


def numpy_consistency(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder §3.2 / Sundaram et al. 2010, written out per pixel."""
    h, w = backward.shape[:2]
    out = np.ones((h, w))
    there = numpy_warp(forward, backward)
    du_dy, du_dx = np.gradient(backward[..., 0].astype(np.float64))
    dv_dy, dv_dx = np.gradient(backward[..., 1].astype(np.float64))
    for y in range(h):
        for x in range(w):
            b, f = backward[y, x].astype(np.float64), there[y, x]
            if np.sum((b + f) ** 2) > 0.01 * (np.sum(b**2) + np.sum(f**2)) + 0.5:
                out[y, x] = 0
            if (du_dx[y, x] ** 2 + du_dy[y, x] ** 2 + dv_dx[y, x] ** 2 + dv_dy[y, x] ** 2
                    > 0.01 * np.sum(b**2) + 0.002):
                out[y, x] = 0
    return out


def numpy_temporal_loss(x, omega, c):
    x, omega = np.asarray(x, np.float64), np.asarray(omega, np.float64)
    return float(np.sum(np.asarray(c, np.float64)[..., None] * (x - omega) ** 2) / x.size)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# --- warp ----------------------------------------------------------------------------------


def test_warp_matches_bilinear_sampling_with_clamped_edges(rng):
    image = rng.random((13, 17, 3), np.float32)
    flow_ = rng.normal(0, 4, (13, 17, 2)).astype(np.float32)  # many samples fall outside
    got = np.asarray(temporal.warp(image, flow_))
    np.testing.assert_allclose(got, numpy_warp(image, flow_), atol=1e-5)
    assert got.shape == image.shape and got.dtype == np.float32


def test_warp_matches_opencv_remap(rng):
    import cv2  # the test extra installs it (opencv-python-headless)

    image = rng.random((20, 24, 3), np.float32)
    flow_ = rng.normal(0, 3, (20, 24, 2)).astype(np.float32)
    ys, xs = np.mgrid[0:20, 0:24].astype(np.float32)
    want = cv2.remap(image, xs + flow_[..., 0], ys + flow_[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    # OpenCV interpolates with 5-bit weights: within 1/32 of a neighbour's difference
    np.testing.assert_allclose(np.asarray(temporal.warp(image, flow_)), want, atol=1 / 32)


def test_a_whole_pixel_shift_moves_the_image_exactly(rng):
    image = rng.random((8, 10, 1), np.float32)
    shift = np.zeros((8, 10, 2), np.float32)
    shift[..., 0] = -2  # each pixel was 2 px to the left in the previous frame
    got = np.asarray(temporal.warp(image, shift))
    np.testing.assert_array_equal(got[:, 2:], image[:, :-2])
    np.testing.assert_array_equal(got[:, :2], np.repeat(image[:, :1], 2, axis=1))  # the edge


def test_warp_runs_under_jit_and_vmap(rng):
    images = rng.random((3, 6, 7, 3), np.float32)
    flows = rng.normal(0, 1, (3, 6, 7, 2)).astype(np.float32)
    got = jax.jit(jax.vmap(temporal.warp))(images, flows)
    for k in range(3):
        np.testing.assert_allclose(got[k], numpy_warp(images[k], flows[k]), atol=1e-5)


# --- the consistency check -------------------------------------------------------------------


def test_consistent_translation_is_trusted_everywhere():
    backward = np.zeros((10, 12, 2), np.float32)
    backward[..., 0] = -2.0  # the scene moved 2 px to the right
    forward = -backward
    np.testing.assert_array_equal(np.asarray(temporal.consistency(backward, forward)), 1.0)


def test_flows_that_disagree_are_occlusions():
    backward = np.zeros((6, 6, 2), np.float32)
    backward[..., 0] = -2.0
    forward = np.zeros((6, 6, 2), np.float32)  # the previous frame says nothing moved
    np.testing.assert_array_equal(np.asarray(temporal.consistency(backward, forward)), 0.0)


def test_a_motion_boundary_is_not_trusted():
    backward = np.zeros((8, 8, 2), np.float32)
    backward[:, 4:, 0] = -1.0  # the right half moves, the left half does not
    forward = np.zeros_like(backward)
    forward[:, 3:, 0] = 1.0
    c = np.asarray(temporal.consistency(backward, forward))
    assert (c[:, 3:5] == 0).all() and (c[:, :2] == 1).all() and (c[:, 6:] == 1).all()


def test_consistency_matches_the_per_pixel_reference(rng):
    ys, xs = np.mgrid[0:12, 0:14].astype(np.float32)
    backward = np.stack([1.5 + 0.3 * np.sin(2 * np.pi * xs / 14),
                         -0.5 + 0.2 * np.cos(2 * np.pi * ys / 12)], axis=-1)
    backward[:, 10:, 0] += 3.0  # a step: a motion boundary
    forward = -backward
    forward[rng.random((12, 14)) < 0.15] += 3.0  # where the flows disagree: occlusions
    got = np.asarray(temporal.consistency(backward, forward))
    want = numpy_consistency(backward, forward)
    assert 0.3 < want.mean() < 0.9  # both kinds of pixel are there
    np.testing.assert_array_equal(got, want)


# --- the temporal loss and the flicker measure -------------------------------------------


def test_temporal_loss_is_ruders_eq_4_with_its_gradient(rng):
    x = rng.random((5, 6, 3), np.float32)
    omega = rng.random((5, 6, 3), np.float32)
    c = (rng.random((5, 6)) > 0.3).astype(np.float32)
    np.testing.assert_allclose(float(temporal.temporal_loss(x, omega, c)),
                               numpy_temporal_loss(x, omega, c), rtol=1e-6)
    grad = np.asarray(jax.grad(temporal.temporal_loss)(jnp.asarray(x), omega, c))
    np.testing.assert_allclose(grad, 2 * c[..., None] * (x - omega) / x.size, rtol=1e-5,
                               atol=1e-9)
    assert float(temporal.temporal_loss(x, x, c)) == 0.0


def test_temporal_error_counts_only_consistent_pixels(rng):
    previous = rng.random((6, 8, 3), np.float32)
    backward = np.zeros((6, 8, 2), np.float32)
    frame = previous.copy()
    frame[0, 0] += 0.5  # a change where the flow is not trusted
    weights = np.ones((6, 8), np.float32)
    weights[0, 0] = 0
    assert float(temporal.temporal_error(frame, previous, backward, weights)) == 0.0
    weights[0, 0] = 1
    np.testing.assert_allclose(float(temporal.temporal_error(frame, previous, backward, weights)),
                               3 * 0.25 / (48 * 3), rtol=1e-5)


# --- DIS optical flow --------------------------------------------------------------------


def textured(h, w, seed=0):
    """A smooth random texture (blurred noise): DIS needs gradients to follow."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h // 4 + 2, w // 4 + 2, 3)).astype(np.float32)
    big = np.kron(noise, np.ones((4, 4, 1), np.float32))
    kernel = np.ones(5, np.float32) / 5
    for axis in (0, 1):
        big = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, big)
    return big[:h, :w]


def test_dis_finds_a_known_translation_both_ways():
    scene = textured(72, 96)
    previous, current = scene[:, 3:83], scene[:, 0:80]  # the camera pans: content moves right
    flows = flow.between(previous, current)
    inner = (slice(8, -8), slice(8, -8))
    # each pixel of the current frame was 3 px to its left in the previous one
    np.testing.assert_allclose(np.median(flows.backward[inner], axis=(0, 1)), [-3, 0], atol=0.25)
    np.testing.assert_allclose(np.median(flows.forward[inner], axis=(0, 1)), [3, 0], atol=0.25)
    # and the previous frame, carried by the backward flow, lands on the current one
    warped = np.asarray(temporal.warp(previous, flows.backward))
    c = np.asarray(temporal.consistency(flows.backward, flows.forward))
    assert c[inner].mean() > 0.9
    assert np.abs(warped - current)[inner].mean() < 0.2 * np.abs(previous - current)[inner].mean()


def test_flow_refuses_bad_frames_in_one_line():
    with pytest.raises(NSTError, match="preset must be one of"):
        flow.dis(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)), preset="slow")
    with pytest.raises(NSTError, match="different shapes"):
        flow.dis(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(NSTError, match=r"\(H, W, 3\)"):
        flow.dis(np.zeros((8, 8)), np.zeros((8, 8)))
