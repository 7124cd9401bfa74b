"""The video schedules (nst_jax.video) and the batch they run on (nst_jax.batch), on the tiny
test-only VGG: a batch equals separate runs, the temporal term is the one of a single run,
the schedules finish, stop and resume to the same frames, and the temporal term reduces the
flicker of a panning clip."""
from __future__ import annotations

import numpy as np
import pytest

from nst_jax import batch, driver, stylize, temporal, video
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.inputs import Network
from nst_jax.stop import Stop
from nst_jax.vgg import CAFFE

CONFIG = Config(iterations=6)


@pytest.fixture(scope="module")
def net(tiny_vgg, tiny_params):
    return Network(tiny_vgg, tiny_params, CAFFE, {})


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    photo = rng.random((40, 60, 3)).astype(np.float32)
    photo = (photo + np.roll(photo, 1, 0) + np.roll(photo, 1, 1)) / 3  # some structure
    return video.pan_clip(photo, 4, (24, 32), step=1.5)


@pytest.fixture(scope="module")
def style():
    return np.random.default_rng(1).random((24, 24, 3)).astype(np.float32)


def _single(content, style, net, config=CONFIG, **kw):
    job = stylize.prepare(content, [style], net.params, config, module=net.module, **kw)
    for _ in driver.advance(job, chunk=3):
        pass
    return job


def _same_image(a, b):
    """Equal up to float rounding: XLA may sum in another order in a batch of another size,
    which moves a rare pixel by one level."""
    difference = np.abs(a.astype(int) - b.astype(int))
    assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


def test_a_batch_is_the_separate_runs(clip, style, net):
    job = batch.Batch(CONFIG, net, clip[:3], [style], size=4)  # padded: one more row
    for _ in driver.advance(job, chunk=3):
        pass
    results = job.results()
    assert len(results) == 3
    for content, result in zip(clip, results):
        image, total, terms = _single(content, style, net).saved()
        _same_image(result.image, image)
        assert result.total == pytest.approx(total, rel=1e-4)
        assert result.status == "completed" and result.iterations == 6


def test_the_temporal_term_in_a_batch_is_a_single_runs(clip, style, net):
    rng = np.random.default_rng(2)
    targets = [temporal.Target(rng.random((24, 32, 3)).astype(np.float32),
                               (rng.random((24, 32)) > 0.3).astype(np.float32)) for _ in clip[:2]]
    job = batch.Batch(CONFIG, net, clip[:2], [style], targets=targets, temporal_weight=1e4)
    for _ in driver.advance(job, chunk=6):
        pass
    plain = _single(clip[0], style, net)
    for content, target, result in zip(clip, targets, job.results()):
        single = _single(content, style, net, temporal_target=target, temporal_weight=1e4)
        image, total, _ = single.saved()
        _same_image(result.image, image)
        # the total is eq. 7 plus γ D L_temporal of the pixels
        eq7 = single.terms(result.pixels)[1]
        term = float(temporal.temporal_loss(result.pixels, target.warped, target.weights))
        expected = (eq7.content + 1e3 * eq7.style + 1e4 * term * result.pixels.size)
        assert result.total == pytest.approx(expected, rel=1e-4)
    assert not np.array_equal(job.results()[0].image, plain.saved()[0])


def test_a_zero_temporal_weight_or_no_target_is_plain_eq7(clip, style, net):
    plain = _single(clip[0], style, net).saved()
    none = _single(clip[0], style, net, temporal_target=temporal.no_target(clip[0].shape),
                   temporal_weight=1e6).saved()
    np.testing.assert_array_equal(plain[0], none[0])
    assert plain[1] == pytest.approx(none[1], rel=1e-6)


def test_every_frame_shares_the_compiled_programs(clip, style, net):
    stylize.compiled_programs.cache_clear()
    frames = {}
    video.VideoRun(CONFIG, net, clip, [style], on_frame=lambda f: frames.__setitem__(f.index, f))()
    assert sorted(frames) == [0, 1, 2, 3]
    assert stylize.compiled_programs.cache_info().misses == 1


def _collect(run_kwargs, clip, style, net, settings, stop_after=None):
    frames, passes = {}, {}
    stop = Stop()

    def on_frame(frame):
        frames[frame.index] = frame.result
        if stop_after is not None and len(frames) >= stop_after:
            stop.set()

    def on_pass(index, results):
        passes[index] = [r.pixels for r in results]
        if stop_after is not None and len(passes) >= stop_after:
            stop.set()

    run = video.VideoRun(CONFIG, net, clip, [style], settings, on_frame=on_frame,
                         on_pass=on_pass, stop=stop, chunk=3, **run_kwargs)
    status = run()
    return status, frames, passes


@pytest.mark.parametrize("schedule", video.SCHEDULES)
def test_each_schedule_stopped_and_resumed_makes_the_frames_of_an_unbroken_run(
        schedule, clip, style, net):
    settings = video.VideoSettings(schedule=schedule, temporal_weight=1e5, passes=3)
    status, whole, whole_passes = _collect({}, clip, style, net, settings)
    assert status == "completed" and sorted(whole) == [0, 1, 2, 3]
    status, part, part_passes = _collect({"batch_size": 2}, clip, style, net, settings,
                                         stop_after=1 if schedule == "multipass" else 2)
    assert status == "stopped"
    if schedule == "multipass":
        assert list(part_passes) == [0] and not part
        resume = video.Resume(1, part_passes[0])
    else:
        assert sorted(part) == [0, 1]
        resume = video.Resume(2, [part[1].pixels])
    status, rest, _ = _collect({"resume": resume, "batch_size": 2}, clip, style, net, settings)
    assert status == "completed"
    done = {**part, **rest}
    assert sorted(done) == [0, 1, 2, 3]
    for t in range(4):
        np.testing.assert_array_equal(done[t].image, whole[t].image)


def test_multipass_pulls_frames_towards_their_neighbours(clip, style, net):
    """Flicker (Ruder's temporal error) of the tiny clip: the temporal schedules beat
    independent frames."""
    errors = {}
    for schedule, weight in (("independent", 0.0), ("sequential", 1e6), ("multipass", 1e6)):
        settings = video.VideoSettings(schedule=schedule, temporal_weight=weight, passes=3)
        _, frames, _ = _collect({}, clip, style, net, settings)
        errors[schedule] = video.flicker([frames[t].image for t in range(4)], clip)
    assert errors["sequential"] < 0.5 * errors["independent"], errors
    assert errors["multipass"] < errors["independent"], errors


def test_blend_takes_the_warped_neighbour_only_where_consistent():
    own = np.zeros((2, 2, 3), np.float32)
    target = temporal.Target(np.ones((2, 2, 3), np.float32), np.array([[1, 0], [0, 1]], np.float32))
    out = video.blend(own, target)
    np.testing.assert_allclose(out[..., 0], [[0.5, 0], [0, 0.5]])


def test_flicker_is_zero_for_a_still_clip_and_grows_with_noise():
    rng = np.random.default_rng(3)
    frame = rng.random((24, 32, 3)).astype(np.float32)
    assert video.flicker([frame, frame, frame], [frame, frame, frame]) == pytest.approx(0, abs=1e-7)
    noisy = [np.clip(frame + rng.normal(0, 0.1, frame.shape), 0, 1).astype(np.float32)
             for _ in range(3)]
    assert video.flicker(noisy, [frame] * 3) > 0.005


def test_what_a_video_refuses(clip, style, net):
    with pytest.raises(NSTError, match="content-masks"):
        video.check(Config(content_masks=("a.png",), style=("s.png",)))
    with pytest.raises(NSTError, match="one scale"):
        video.check(Config(start_size=64))
    with pytest.raises(NSTError, match="schedule"):
        video.VideoSettings(schedule="parallel")
    with pytest.raises(NSTError, match="temporal weight"):
        video.VideoSettings(temporal_weight=float("nan"))
    with pytest.raises(NSTError, match="2 passes"):
        video.VideoSettings(passes=1)
    with pytest.raises(NSTError, match="no frames"):
        video.VideoRun(CONFIG, net, [], [style])
    with pytest.raises(NSTError, match="one size"):
        batch.Batch(CONFIG, net, [clip[0], clip[0][:20]], [style])


def test_the_pan_clip_moves_and_keeps_its_shape():
    photo = np.random.default_rng(4).random((30, 40, 3)).astype(np.float32)
    frames = video.pan_clip(photo, 5, (20, 24), step=2.0)
    assert len(frames) == 5 and all(f.shape == (20, 24, 3) for f in frames)
    assert all(f.dtype == np.float32 and 0 <= f.min() and f.max() <= 1 for f in frames)
    assert not np.array_equal(frames[0], frames[1])
