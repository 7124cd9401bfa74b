"""Video and frame-folder IO (nst_jax.frames) on tiny clips that PyAV encodes here.

PyAV is imported directly, not skipped when missing: CI installs the ``video`` extra, and
a skip would hide a broken reader.
"""
from __future__ import annotations

import os
import pathlib
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from nst_jax import frames, images
from nst_jax.errors import NSTError

H, W = 48, 64
SR = 44_100


# --- clips made here ---------------------------------------------------------------------


def grey_level(i: int) -> int:
    """The 8-bit grey of frame ``i`` in :func:`make_clip`: 9 levels apart, so H.264's
    error (a level or two) never confuses two frames."""
    return 20 + 9 * i


def index_of(frame: np.ndarray) -> int:
    """Which frame of :func:`make_clip` ``frame`` is, from its brightness."""
    return round((float(frame.mean()) * 255 - 20) / 9)


def gradient(i: int, n: int, shape=(H, W)) -> np.ndarray:
    """Frame ``i`` of a horizontal gradient moving right, RGB float32 in [0, 1]."""
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    return np.stack([(x / shape[1] + i / n) % 1.0, y / shape[0], np.full_like(x, i / n)], -1)


def sine(seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    """A 440 Hz tone whose amplitude grows with time (0.1 + 0.2 t), (channels, samples)
    float32: the loudness at the start of a cut tells where the cut began."""
    t = np.arange(round(seconds * rate)) / rate
    tone = ((0.1 + 0.2 * t) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.repeat(tone[None], channels, axis=0)


def make_clip(path: pathlib.Path, n: int = 24, fps=12, *, shape=(H, W), gop: int | None = 4,
              audio: str | None = None, audio_seconds: float | None = None,
              rotation: int | None = None, video: bool = True) -> pathlib.Path:
    """Encode frame ``i`` as the grey :func:`grey_level(i) <grey_level>` (H.264, near
    lossless, a keyframe every ``gop`` frames so that seeking lands before the start)
    and, if ``audio`` names an encoder (aac, pcm_s16le), :func:`sine` under it."""
    with av.open(str(path), "w") as container:
        if video:
            stream = container.add_stream("libx264", rate=Fraction(fps), options={"crf": "10"})
            stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], "yuv420p"
            if gop:
                stream.codec_context.gop_size = gop
            if rotation is not None:
                stream.set_display_rotation(rotation)
        if audio:
            sound = container.add_stream(audio, rate=SR, layout="stereo" if audio != "aac" else "mono")
        if video:
            for i in range(n):
                pixels = np.full((*shape, 3), grey_level(i), np.uint8)
                pixels[:4, :4] = 255  # a corner mark, for the rotation
                picture = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
                picture.pts = i
                container.mux(stream.encode(picture))
            container.mux(stream.encode(None))
        if audio:
            layout = "mono" if audio == "aac" else "stereo"
            samples = sine(audio_seconds or n / float(fps), channels=1 if layout == "mono" else 2)
            for at in range(0, samples.shape[1], 1000):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, at:at + 1000]),
                                                   format="fltp", layout=layout)
                frame.sample_rate, frame.pts = SR, at
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


def decoded_audio(path: pathlib.Path) -> tuple[str, float, float, np.ndarray]:
    """``(codec, first sample's time, seconds, mono samples)`` of the audio in ``path``."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        name, first, pieces = stream.codec_context.name, None, []
        for frame in container.decode(stream):
            if first is None:
                first = float(frame.time)
            pieces.append(frame.to_ndarray().reshape(frame.layout.nb_channels, -1)[0]
                          if frame.format.is_planar else frame.to_ndarray()[0, ::frame.layout.nb_channels])
        rate = stream.codec_context.sample_rate
    samples = np.concatenate(pieces).astype(np.float32)
    return name, first, len(samples) / rate, samples


def audio_packets(path: pathlib.Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    return message


# --- reading and writing -----------------------------------------------------------------


def test_roundtrip_of_a_moving_gradient(tmp_path):
    clip = [gradient(i, 12) for i in range(12)]
    out = tmp_path / "clip.mp4"
    frames.write_video(out, clip, 12)
    got = frames.read(out)
    assert len(got.frames) == 12 and got.fps == pytest.approx(12)
    assert got.times == pytest.approx([i / 12 for i in range(12)])
    assert got.source == str(out) and got.has_audio is False
    for want, frame in zip(clip, got.frames):
        assert frame.shape == (H, W, 3) and frame.dtype == np.float32
        assert 0.0 <= frame.min() and frame.max() <= 1.0
        assert np.abs(frame - want).mean() < 0.03
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_writes_bt709_tags_and_fractional_rate(tmp_path):
    out = tmp_path / "ntsc.mov"
    frames.write_video(out, [gradient(i, 6) for i in range(6)], 30000 / 1001)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == Fraction(30000, 1001)
        assert stream.codec_context.colorspace == 1 and stream.codec_context.color_range == 1
    assert frames.read(out).fps == pytest.approx(30000 / 1001)


@pytest.mark.parametrize("kwargs, indices, fps", [
    ({}, list(range(24)), 12),
    ({"start": 0.5, "duration": 1.0}, list(range(6, 18)), 12),
    ({"start": 0.75}, list(range(9, 24)), 12),  # 0.75 s is frame 9, after keyframe 8
    ({"start": 0.5, "duration": 1.0, "every": 3}, [6, 9, 12, 15], 4),
    ({"fps": 6}, list(range(0, 24, 2)), 6),
    ({"fps": 4, "start": 0.25}, list(range(3, 24, 3)), 4),
    ({"fps": 8, "duration": 1.0}, [0, 1, 3, 4, 6, 7, 9, 10], 8),  # nearest; a tie takes the earlier
    ({"fps": 6, "every": 2}, list(range(0, 24, 4)), 3),
    ({"fps": 30}, list(range(24)), 12),  # above the source's rate: every frame, the source's rate
    ({"start": 1.0, "max_frames": 12}, list(range(12, 24)), 12),
])
def test_selection_picks_the_right_frames(tmp_path, kwargs, indices, fps):
    clip = frames.read(make_clip(tmp_path / "c.mp4"), **kwargs)
    assert [index_of(f) for f in clip.frames] == indices
    assert clip.times == pytest.approx([i / 12 for i in indices])
    assert clip.fps == pytest.approx(fps)


def test_long_side_resizes_keeping_the_aspect(tmp_path):
    path = make_clip(tmp_path / "c.mp4", n=3)
    full, small = frames.read(path), frames.read(path, long_side=32)
    assert small.frames[0].shape == (24, 32, 3)
    assert frames.read(path, long_side=96).frames[0].shape == (72, 96, 3)
    for a, b in zip(full.frames, small.frames):
        assert abs(float(a.mean()) - float(b.mean())) < 0.01


def test_display_rotation_is_applied(tmp_path):
    clip = frames.read(make_clip(tmp_path / "phone.mp4", n=2, rotation=90))
    frame = clip.frames[0]
    assert frame.shape == (W, H, 3)
    # 90 degrees counter-clockwise: the top-left mark goes to the bottom-left.
    assert frame[-2, 1].mean() > 0.9 and frame[1, 1].mean() < 0.5


def test_reads_a_gif_and_writes_one(tmp_path):
    out = tmp_path / "loop.gif"
    clip = [np.full((H, W, 3), grey_level(i) / 255, np.float32) for i in range(6)]
    frames.write_video(out, clip, 10)
    got = frames.read(out)
    assert [index_of(f) for f in got.frames] == list(range(6))
    assert got.fps == pytest.approx(10)


def test_odd_sizes_are_padded_to_even(tmp_path):
    clip = [gradient(i, 6, shape=(47, 63)) for i in range(6)]
    out = tmp_path / "odd.mkv"
    frames.write_video(out, clip, 12)
    got = frames.read(out)
    assert got.frames[0].shape == (48, 64, 3)
    for want, frame in zip(clip, got.frames):
        assert np.abs(frame[:47, :63] - want).mean() < 0.03
        # The added row and column repeat the last ones.
        assert np.abs(frame[47] - frame[46]).mean() < 0.03
        assert np.abs(frame[:, 63] - frame[:, 62]).mean() < 0.03


# --- frame folders -----------------------------------------------------------------------


def grey(i: int, shape=(H, W)) -> np.ndarray:
    return np.full((*shape, 3), grey_level(i) / 255, np.float32)


def test_folder_in_natural_order(tmp_path):
    for number, i in ((10, 2), (2, 1), (1, 0), (11, 3)):
        images.save_png(tmp_path / f"frame{number}.png", grey(i))
    (tmp_path / "notes.txt").write_text("not a frame")
    images.save_png(tmp_path / ".hidden.png", grey(20))
    clip = frames.read(tmp_path, folder_fps=4)
    assert [index_of(f) for f in clip.frames] == [0, 1, 2, 3]
    assert clip.fps == 4 and clip.times == [0, 0.25, 0.5, 0.75] and clip.has_audio is False
    assert clip.source == str(tmp_path)
    every = frames.read(tmp_path, folder_fps=4, start=0.25, every=2, long_side=32)
    assert [index_of(f) for f in every.frames] == [1, 3] and every.fps == 2
    assert every.frames[0].shape == (24, 32, 3)


def test_folder_frames_of_another_size_are_refused(tmp_path):
    images.save_png(tmp_path / "f1.png", grey(0))
    images.save_png(tmp_path / "f2.png", grey(1))
    images.save_png(tmp_path / "f3.png", grey(2, shape=(40, 64)))
    images.save_png(tmp_path / "f4.png", grey(3, shape=(32, 64)))
    with pytest.raises(NSTError, match="frame f3.png is 64x40 px but f1.png is 64x48") as e:
        frames.read(tmp_path)
    one_line_error(e)


def test_write_frames_and_frame_name(tmp_path):
    assert frames.frame_name(1) == "frame_00001.png"
    folder = tmp_path / "new" / "frames"
    paths = frames.write_frames(folder, [grey(i) for i in range(3)], start_number=7)
    assert [p.name for p in paths] == ["frame_00007.png", "frame_00008.png", "frame_00009.png"]
    assert [index_of(images.load_image(p)) for p in paths] == [0, 1, 2]
    assert [index_of(f) for f in frames.read(folder).frames] == [0, 1, 2]


# --- audio -------------------------------------------------------------------------------


def test_audio_part_is_cut_and_placed_at_the_start(tmp_path):
    source = make_clip(tmp_path / "src.mp4", audio="aac", audio_seconds=2.0)
    assert frames.read(source).has_audio
    out = tmp_path / "out.mp4"
    clip = [gradient(i, 12) for i in range(12)]
    frames.write_video(out, clip, 12, audio_from=source, start=0.5, duration=1.0)
    name, first, seconds, samples = decoded_audio(out)
    assert name == "aac" and abs(first) < 0.05
    assert seconds == pytest.approx(1.0, abs=0.15)
    # The tone's amplitude is 0.1 + 0.2 t, so its loudness tells where the cut began: at
    # 0.5 s (the median of 10 ms peaks, as AAC may add a transient at a stream's start).
    for at in (0.1, 0.5, 0.9):
        peaks = [np.abs(samples[round((at + k / 100) * SR):][:SR // 100]).max() for k in range(-3, 4)]
        assert np.median(peaks) == pytest.approx(0.1 + 0.2 * (0.5 + at), abs=0.01)
    assert len(frames.read(out).frames) == 12


def test_whole_aac_track_is_copied_unchanged(tmp_path):
    source = make_clip(tmp_path / "src.mp4", audio="aac")
    out = tmp_path / "out.mp4"
    frames.write_video(out, [gradient(i, 24) for i in range(24)], 12, audio_from=source)
    assert audio_packets(out) == audio_packets(source)
    assert decoded_audio(out)[2] == pytest.approx(2.0, abs=0.1)


def test_other_audio_is_encoded_as_aac(tmp_path):
    source = make_clip(tmp_path / "src.mkv", audio="pcm_s16le")
    out = tmp_path / "out.mkv"
    frames.write_video(out, [gradient(i, 24) for i in range(24)], 12, audio_from=source)
    name, first, seconds, _ = decoded_audio(out)
    assert name == "aac" and seconds == pytest.approx(2.0, abs=0.15)


def test_source_without_audio_writes_none(tmp_path):
    source = make_clip(tmp_path / "silent.mp4", n=4)
    out = tmp_path / "out.mp4"
    frames.write_video(out, [grey(i) for i in range(4)], 12, audio_from=source, start=0.1)
    with av.open(str(out)) as container:
        assert not container.streams.audio and len(container.streams.video) == 1


# --- errors ------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(NSTError, match="does not exist") as e:
        frames.read(tmp_path / "nope.mp4")
    one_line_error(e)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(NSTError, match="is not a video PyAV can read") as e:
        frames.read(path)
    assert one_line_error(e).count(str(tmp_path)) == 1


def test_file_without_video_stream(tmp_path):
    path = make_clip(tmp_path / "sound.m4a", audio="aac", audio_seconds=0.5, video=False)
    with pytest.raises(NSTError, match="has no video stream") as e:
        frames.read(path)
    one_line_error(e)


def test_image_file_is_not_a_video(tmp_path):
    images.save_png(tmp_path / "still.png", grey(0))
    with pytest.raises(NSTError, match="is an image, not a video"):
        frames.read(tmp_path / "still.png")


def test_start_beyond_the_end(tmp_path):
    path = make_clip(tmp_path / "c.mp4")
    with pytest.raises(NSTError, match=r"start 5 s is beyond the end of .*2\.000 s long") as e:
        frames.read(path, start=5)
    one_line_error(e)
    folder = tmp_path / "frames"
    frames.write_frames(folder, [grey(0), grey(1)])
    with pytest.raises(NSTError, match=r"beyond the end of .*frames \(0\.083 s long\)"):
        frames.read(folder, start=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NSTError, match="holds no frame images"):
        frames.read(tmp_path / "empty")


def test_no_frame_in_a_short_window(tmp_path):
    with pytest.raises(NSTError, match="no frame of .* lies between") as e:
        frames.read(make_clip(tmp_path / "c.mp4"), start=0.51, duration=0.05)
    one_line_error(e)


def test_start_after_the_last_frame_but_before_the_end(tmp_path):
    # The last of 24 frames at 12 fps is at 1.917 s and lasts to 2 s.
    with pytest.raises(NSTError, match="no frame of .* begins at or after 1.95 s") as e:
        frames.read(make_clip(tmp_path / "c.mp4"), start=1.95)
    one_line_error(e)


def test_max_frames(tmp_path):
    path = make_clip(tmp_path / "c.mp4")
    # Just under the count: the stated length (an estimate) lets it through, the exact
    # count from the packets refuses it, before any frame is decoded.
    with pytest.raises(NSTError, match="the clip has 24 frames, more than the limit 23; use "
                                       "--duration or --every") as e:
        frames.read(path, max_frames=23)
    one_line_error(e)
    with pytest.raises(NSTError, match="the clip has 12 frames, more than the limit 11"):
        frames.read(path, every=2, max_frames=11)
    assert len(frames.read(path, every=2, max_frames=12).frames) == 12


def test_max_frames_from_the_stated_length_before_scanning(tmp_path, monkeypatch):
    path = make_clip(tmp_path / "c.mp4")

    def no_scan(*args, **kwargs):
        raise AssertionError("the stated length should have refused the clip")

    monkeypatch.setattr(frames, "_scan", no_scan)
    with pytest.raises(NSTError, match="the clip has about 24 frames, more than the limit 5"):
        frames.read(path, max_frames=5)


@pytest.mark.parametrize("kwargs, match", [
    ({"fps": 0}, "fps must be a number above 0, got 0"),
    ({"fps": -12.0}, "fps must be a number above 0"),
    ({"start": -1}, "start must be a number at least 0"),
    ({"duration": 0}, "duration must be a number above 0"),
    ({"every": 0}, "every must be a whole number above 0"),
    ({"every": 1.5}, "every must be a whole number"),
    ({"max_frames": -3}, "max_frames must be a whole number above 0"),
    ({"long_side": 0}, "long_side must be a whole number above 0"),
    ({"folder_fps": float("nan")}, "folder_fps must be a number above 0"),
])
def test_bad_values(tmp_path, kwargs, match):
    with pytest.raises(NSTError, match=match) as e:
        frames.read(tmp_path / "any.mp4", **kwargs)
    one_line_error(e)


def test_without_pyav(tmp_path, monkeypatch):
    path = make_clip(tmp_path / "c.mp4", n=2)
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` then raises ImportError
    with pytest.raises(NSTError) as e:
        frames.read(path)
    assert str(e.value) == "reading video needs PyAV: pip install 'nst_jax[video]'"
    with pytest.raises(NSTError, match="writing video needs PyAV"):
        frames.write_video(tmp_path / "out.mp4", [grey(0)], 12)


@pytest.mark.parametrize("name", ["out.avi", "out.webm", "out"])
def test_bad_suffix_for_writing(tmp_path, name):
    with pytest.raises(NSTError, match=r"must end in \.mp4, \.mov, \.mkv or \.gif") as e:
        frames.write_video(tmp_path / name, [grey(0)], 12)
    one_line_error(e)


@pytest.mark.parametrize("folder, match", [
    ("/proc", "cannot create files in /proc"),
    ("missing", "does not exist"),
])
def test_unwritable_folder(tmp_path, folder, match):
    target = pathlib.Path(folder if os.path.isabs(folder) else tmp_path / folder) / "nst_jax_test.mp4"
    with pytest.raises(NSTError, match=match) as e:
        frames.write_video(target, [grey(0)], 12)
    one_line_error(e)


@pytest.mark.parametrize("failure", ["nan", "interrupt", "audio"])
def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch, failure):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the old video")
    clip = [gradient(i, 8) for i in range(8)]
    audio_from = None
    if failure == "nan":
        clip[5] = clip[5].copy()
        clip[5][3, 3] = np.nan
        expected = pytest.raises(NSTError, match="NaN")
    elif failure == "interrupt":
        quantize, calls = images.quantize, []

        def interrupted(*args, **kwargs):
            calls.append(1)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return quantize(*args, **kwargs)

        monkeypatch.setattr(images, "quantize", interrupted)
        expected = pytest.raises(KeyboardInterrupt)
    else:
        audio_from = tmp_path / "sound.mp4"
        audio_from.write_text("not a video")
        expected = pytest.raises(NSTError, match="cannot read the audio of")
    with expected:
        frames.write_video(out, clip, 12, audio_from=audio_from)
    assert out.read_bytes() == b"the old video"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.mp4"] + (["sound.mp4"] if audio_from else []))


def test_bad_frames_for_writing(tmp_path):
    with pytest.raises(NSTError, match="no frames"):
        frames.write_video(tmp_path / "a.mp4", [], 12)
    with pytest.raises(NSTError, match="frame 1 has shape"):
        frames.write_video(tmp_path / "a.mp4", [grey(0), grey(1, shape=(40, 64))], 12)
    with pytest.raises(NSTError, match="crf must be"):
        frames.write_video(tmp_path / "a.mp4", [grey(0)], 12, crf=60)
    with pytest.raises(NSTError, match="no video encoder 'libnothing'"):
        frames.write_video(tmp_path / "a.mp4", [grey(0)], 12, codec="libnothing")
    assert not list(tmp_path.iterdir())
