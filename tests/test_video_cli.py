"""``scripts/video.py`` (``nst_jax.apps.cli.video``): a clip made here, stylised end to end on the
real weights at 32 px, Ctrl-C and --resume, and bad input (one ``error:`` line, nothing written)."""
from __future__ import annotations

import signal

import numpy as np
import pytest
from PIL import Image

from nst_jax import frames as clips, images, video
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode

FAST = ["--size", "32", "--iterations", "3"]


def run_cli(args, capsys):
    code = runner.launch("nst_jax.apps.cli.video", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clip_files(tmp_path):
    """A 6-frame 48x32 mp4 of a pan at 6 fps, and a style image."""
    rng = np.random.default_rng(0)
    photo = rng.random((40, 80, 3)).astype(np.float32)
    photo = (photo + np.roll(photo, 1, 0) + np.roll(photo, 1, 1)) / 3
    frames = video.pan_clip(photo, 6, (32, 48), step=2.0)
    path = tmp_path / "clip.mp4"
    clips.write_video(path, frames, 6.0)
    style = tmp_path / "style.png"
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(style)
    return path, style


def test_a_clip_becomes_a_stylised_mp4_and_frames(real_weights, clip_files, tmp_path, capsys):
    clip, style = clip_files
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    code, stdout, err = run_cli(["--content", clip, "--style", style, "--output", out,
                                 "--frames", frames_dir, *FAST, "--every", "2"], capsys)
    assert code == ExitCode.OK, err
    assert f"wrote {out}" in stdout
    result = clips.read(out)
    # 32x21 px frames (--size 32); H.264 wants even sides: the mp4 repeats the last row
    assert len(result.frames) == 3 and result.frames[0].shape == (22, 32, 3)
    assert result.fps == pytest.approx(3.0)
    pngs = sorted(frames_dir.iterdir())
    assert [p.name for p in pngs] == [clips.frame_name(t) for t in (1, 2, 3)]
    meta = images.read_png_metadata(pngs[0])
    assert meta["nst_jax:frame"] == "1" and meta["nst_jax:frames"] == "3"
    assert '"schedule": "sequential"' in meta["nst_jax:arguments"]
    assert not (tmp_path / "out.work").exists()  # the work folder goes with success
    # the mp4 holds what the PNGs hold (up to H.264)
    png = images.load_image(pngs[0])
    assert png.shape == (21, 32, 3)
    assert np.abs(result.frames[0][:21] - png).mean() < 0.05


def test_multipass_and_independent_schedules(real_weights, clip_files, tmp_path, capsys):
    clip, style = clip_files
    for schedule in ("multipass", "independent"):
        out = tmp_path / f"{schedule}.mp4"
        code, _, err = run_cli(["--content", clip, "--style", style, "--output", out, *FAST,
                                "--schedule", schedule, "--passes", "2", "--duration", "0.5"],
                               capsys)
        assert code == ExitCode.OK, err
        assert len(clips.read(out).frames) == 3


def test_ctrl_c_keeps_the_frames_done_and_resume_finishes_the_same_clip(
        real_weights, clip_files, tmp_path, capsys, monkeypatch):
    from nst_jax import stylize

    clip, style = clip_files
    args = ["--content", clip, "--style", style, *FAST, "--duration", "0.5"]
    whole = tmp_path / "whole"
    code, _, err = run_cli(args + ["--output", tmp_path / "whole.mp4", "--frames", whole], capsys)
    assert code == ExitCode.OK, err

    real_step = stylize.Stylization.step
    calls = []

    def interrupted(self, n):
        calls.append(n)
        if len(calls) == 3:  # Ctrl-C during the third frame
            signal.raise_signal(signal.SIGINT)
            return self.state
        return real_step(self, n)

    monkeypatch.setattr(stylize.Stylization, "step", interrupted)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    code, _, err = run_cli(args + ["--output", out, "--frames", frames_dir], capsys)
    assert code == ExitCode.INTERRUPTED
    assert "2 of 3 frames done, kept in" in err and "--resume continues" in err
    assert "Traceback" not in err
    assert not out.exists() and not frames_dir.exists()
    assert sorted(p.name for p in (tmp_path / "out.work").glob("frame_*.png")) == [
        clips.frame_name(1), clips.frame_name(2)]

    monkeypatch.setattr(stylize.Stylization, "step", real_step)
    code, _, err = run_cli(args + ["--output", out, "--frames", frames_dir], capsys)
    assert code != 0 and "--resume" in err  # the work folder is not overwritten
    code, _, err = run_cli(args + ["--output", out, "--frames", frames_dir, "--resume"], capsys)
    assert code == ExitCode.OK, err
    for t in (1, 2, 3):
        a = np.asarray(Image.open(whole / clips.frame_name(t)))
        b = np.asarray(Image.open(frames_dir / clips.frame_name(t)))
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_other_settings(real_weights, clip_files, tmp_path, capsys, monkeypatch):
    clip, style = clip_files
    work = tmp_path / "w"
    work.mkdir()
    (work / "run.json").write_text('{"version": 1, "fingerprint": {}, "done": 1}')
    code, _, err = run_cli(["--content", clip, "--style", style, *FAST, "--work", work,
                            "--output", tmp_path / "o.mp4", "--resume"], capsys)
    _one_line(code, err, "other settings")


def _one_line(code, err, *needles):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


@pytest.mark.parametrize("extra, needle", [
    (["--output", "o.gif"], ".mp4"),
    (["--passes", "1"], "2 passes"),
    (["--temporal-weight", "-1"], "temporal weight"),
    (["--resume"], "no saved run"),
    (["--start", "-2"], "--start"),
    (["--start-size", "16"], "unrecognized"),
])
def test_bad_flags_are_one_line(clip_files, tmp_path, capsys, extra, needle, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clip, style = clip_files
    code, _, err = run_cli(["--content", clip, "--style", style, *FAST, *extra], capsys)
    _one_line(code, err, needle)
    assert not (tmp_path / "stylized.mp4").exists()


def test_a_missing_or_broken_clip_is_one_line(tmp_path, capsys, clip_files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, style = clip_files
    code, _, err = run_cli(["--content", tmp_path / "none.mp4", "--style", style, *FAST], capsys)
    _one_line(code, err)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    code, _, err = run_cli(["--content", broken, "--style", style, *FAST], capsys)
    _one_line(code, err)
    assert not (tmp_path / "stylized.mp4").exists() and not (tmp_path / "stylized.work").exists()
