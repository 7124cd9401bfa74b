"""The web page's video jobs (nst_jax.apps.web.jobs.video_job and its checks), on the tiny
VGG, with clips made here (nst_jax.video.pan_clip written by nst_jax.frames.write_video);
and one browser run of the page's Video tab."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av", reason="the video extra is not installed")
pytest.importorskip("cv2", reason="the video extra is not installed")

from nst_jax import frames, stylize, video  # noqa: E402
from nst_jax.apps.web import jobs  # noqa: E402
from nst_jax.config import example_path  # noqa: E402
from nst_jax.errors import NSTError  # noqa: E402
from nst_jax.stop import Stop  # noqa: E402
from nst_jax.vgg import CAFFE  # noqa: E402

LAYERS = dict(content_layers=("conv4_2",), style_layers=("conv1_1", "conv2_1", "conv3_1"))
COUNT, SHAPE, FPS = 4, (24, 32), 6.0


@pytest.fixture(scope="module")
def network(tiny_vgg, tiny_params):
    return stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny.h5"})


def _pan(count=COUNT, shape=SHAPE):
    rng = np.random.default_rng(0)
    photo = rng.random((40, 60, 3)).astype(np.float32)
    photo = (photo + np.roll(photo, 1, 0) + np.roll(photo, 1, 1)) / 3  # some structure
    return video.pan_clip(photo, count, shape, step=1.5)


@pytest.fixture
def uploaded(tmp_path):
    """An upload folder that received a clip (``clip`` as it was named, ``my clip.mp4``)
    and a style image, and the server's :class:`jobs.Trust` of it."""
    folder = tmp_path / "uploads"
    (folder / "a1").mkdir(parents=True)
    (folder / "b2").mkdir()
    clip = folder / "a1" / "my clip.mp4"
    frames.write_video(clip, _pan(), FPS)
    style = folder / "b2" / "painting.png"
    Image.fromarray((np.random.default_rng(1).random((24, 24, 3)) * 255).astype(np.uint8)).save(
        style)
    trust = jobs.Trust(folder, {str(clip), str(style)}, jobs.bundled_examples())
    return {"folder": folder, "clip": clip, "style": style, "trust": trust}


@pytest.fixture
def job_folder(tmp_path):
    folder = tmp_path / "jobs" / "0123456789ab"
    folder.mkdir(parents=True)
    return folder


def _clip(uploaded, limits=jobs.Limits()):
    return jobs.upload({"path": str(uploaded["clip"]), "orig_name": "my clip.mp4"}, "clip",
                       limits, uploaded["trust"], examples=False)


def _config(uploaded, limits=jobs.Limits(), **controls):
    style = jobs.Upload(uploaded["style"], "painting.png")
    config = jobs.video_config(clip=_clip(uploaded, limits), styles=[style], limits=limits,
                               **{"size": 32, "iterations": 3, **controls})
    return config.replace(**LAYERS), [style]


def _job(network, uploaded, folder, *, settings=video.VideoSettings(), limits=jobs.Limits(),
         stop=None, every=2, **controls):
    config, styles = _config(uploaded, limits, **controls)
    return jobs.video_job(config, network, folder, clip=_clip(uploaded, limits),
                          settings=settings, limits=limits, fps=FPS, uploads=styles, stop=stop,
                          every=every)


def test_the_video_limits_are_checked():
    limits = jobs.Limits()
    assert (limits.max_video_frames, limits.max_video_size, limits.max_video_seconds) == (
        48, 256, 10.0)
    for bad in (dict(max_video_frames=0), dict(max_video_size=8), dict(max_video_size=5000),
                dict(max_video_seconds=0), dict(max_video_seconds=float("inf"))):
        with pytest.raises(NSTError, match=next(iter(bad))):
            jobs.Limits(**bad)


def test_the_clip_is_an_upload_or_nothing(uploaded, tmp_path):
    """A clip is read only if the server received it as an upload: never a bundled example,
    and every other path gets one message that names nothing of it."""
    trust, limits = uploaded["trust"], jobs.Limits()
    assert _clip(uploaded).path == uploaded["clip"]
    assert jobs.upload(None, "clip", limits, trust, examples=False) is None
    private = tmp_path / "private.mp4"
    frames.write_video(private, _pan(), FPS)
    link = uploaded["clip"].parent / "link.mp4"  # in the upload folder, pointing out of it
    link.symlink_to(private)
    stray = uploaded["clip"].parent / "stray.mp4"  # in the folder, never uploaded
    stray.write_bytes(private.read_bytes())
    probes = [private, link, stray, example_path("chelsea.jpg"), tmp_path / "missing.mp4",
              "/etc/passwd", f"{uploaded['folder']}/a1/../../private.mp4", "a1/my clip.mp4", 7]
    for probe in probes:
        value = probe if isinstance(probe, int) else {"path": str(probe), "orig_name": "x.mp4"}
        with pytest.raises(NSTError) as error:
            jobs.upload(value, "clip", limits, trust, examples=False)
        assert str(error.value) == "the clip is not a file this server received; upload it " \
                                   "again", probe
    # The images still take the bundled examples.
    assert jobs.upload(str(example_path("chelsea.jpg")), "style image 1", limits, trust)


def test_what_is_not_a_video_never_reaches_ffmpeg(uploaded, job_folder):
    """A clip is read only if its first bytes are a video container's: a text playlist
    (which would make FFmpeg open other files), an image or junk is refused by name."""
    folder = uploaded["clip"].parent
    playlist = folder / "playlist.mp4"
    playlist.write_text(f"#EXTM3U\n#EXTINF:1,\n{uploaded['clip']}\n#EXT-X-ENDLIST\n")
    image = folder / "photo.mp4"
    Image.new("RGB", (32, 24)).save(image, format="PNG")
    junk = folder / "junk.webm"
    junk.write_bytes(b"\x00" * 64)
    for path in (playlist, image, junk):
        clip = jobs.Upload(path, path.name)
        with pytest.raises(NSTError) as error:
            jobs.read_clip(clip, job_folder, jobs.Limits(), size=32, fps=FPS)
        assert str(error.value) == f"the clip {path.name} is not a video this server reads " \
                                   f"(MP4, MOV, WebM, MKV, AVI or GIF)"
    assert not list(job_folder.iterdir())  # nothing was copied for FFmpeg to open
    with pytest.raises(NSTError):
        jobs.read_clip(_clip(uploaded), job_folder, jobs.Limits(max_video_frames=1), size=32,
                       fps=FPS)
    assert not list(job_folder.iterdir())  # a clip refused leaves no copy
    broken = folder / "broken.mp4"  # a container's header, then damage
    broken.write_bytes(uploaded["clip"].read_bytes()[:48] + b"\x00" * 64)
    with pytest.raises(NSTError) as error:
        jobs.read_clip(jobs.Upload(broken, "broken.mp4"), job_folder, jobs.Limits(), size=32,
                       fps=FPS)
    assert "broken.mp4" in str(error.value)
    assert str(job_folder) not in str(error.value) and str(folder) not in str(error.value)


def test_clips_over_the_limits_are_refused(uploaded, job_folder):
    clip = _clip(uploaded)
    with pytest.raises(NSTError, match=r"^the clip my clip.mp4 gives 4 frames at 6 frames a "
                                       r"second over 10 s; this server takes at most 3: take "
                                       r"fewer seconds or fewer frames a second$"):
        jobs.read_clip(clip, job_folder, jobs.Limits(max_video_frames=3), size=32, fps=FPS)
    assert len(jobs.read_clip(clip, job_folder, jobs.Limits(max_video_frames=3), size=32,
                              fps=FPS, seconds=0.5)[0].frames) == 3  # 0.5 s of it fits
    with pytest.raises(NSTError, match=r"Seconds must be above 0 and at most 2 \(this server's "
                                       r"limit\), got 3"):
        jobs.read_clip(clip, job_folder, jobs.Limits(max_video_seconds=2), size=32, fps=FPS,
                       seconds=3)
    with pytest.raises(NSTError, match=r"Size must be a whole number from 16 to 64 \(this "
                                       r"server's limit\), got 100"):
        _config(uploaded, jobs.Limits(max_video_size=64), size=100)
    with pytest.raises(NSTError, match=r"start 5 s is beyond the end of my clip.mp4"):
        jobs.read_clip(clip, job_folder, jobs.Limits(), size=32, fps=FPS, start=5)
    with pytest.raises(NSTError, match="the clip my clip.mp4 is 0.0 MB; this server takes files "
                                       "up to 0.0001 MB"):
        _clip(uploaded, jobs.Limits(max_upload_mb=0.0001))


def test_the_video_controls_are_checked(uploaded):
    style = jobs.Upload(uploaded["style"], "painting.png")
    with pytest.raises(NSTError, match="upload a clip"):
        jobs.video_config(clip=None, styles=[style])
    with pytest.raises(NSTError, match="a video blends its styles"):
        jobs.video_config(clip=_clip(uploaded), styles=[style, style], mode=jobs.REGIONS)
    assert jobs.video_settings("multipass", 1e5, 3) == video.VideoSettings("multipass", 1e5, 3)
    for bad, message in ((("zigzag",), "Schedule must be one of sequential, multipass"),
                         (("sequential", -1), "Temporal weight must be a number >= 0"),
                         (("sequential", "x"), "Temporal weight must be a number"),
                         (("multipass", 1.0, 1), "Passes must be a whole number from 2 to 16")):
        with pytest.raises(NSTError, match=message):
            jobs.video_settings(*bad)


def test_a_video_job_shows_its_frames_and_writes_the_mp4(network, uploaded, job_folder):
    updates = list(_job(network, uploaded, job_folder))
    last = updates[-1]
    assert [u.status for u in updates[:-1]] == ["running"] * (len(updates) - 1)
    assert last.status == "completed" and last.output == job_folder / "stylized.mp4"
    # The frames appear one by one, each update saying whether the gallery changed.
    counts = [len(u.frames) for u in updates]
    assert counts == sorted(counts) and counts[0] == 0 and counts[-1] == COUNT
    assert updates[0].changed and all(
        u.changed == (len(u.frames) != len(p.frames)) for p, u in zip(updates, updates[1:]))
    assert [caption for _, caption in last.frames] == [f"frame {t + 1}" for t in range(COUNT)]
    assert all(pathlib.Path(path).is_file() for path, _ in last.frames)
    assert [(u.frame, u.iteration) for u in updates[:2]] == [(1, 2), (1, 3)]
    assert (last.done, last.total, last.count, last.shape, last.fps) == (12, 12, 4, SHAPE, FPS)
    assert not list(job_folder.glob("clip.*"))  # the copy FFmpeg read is removed
    clip = frames.read(last.output)
    assert len(clip.frames) == COUNT and clip.frames[0].shape == (*SHAPE, 3)
    assert clip.fps == pytest.approx(FPS)
    with Image.open(last.frames[0][0]) as first:  # the mp4 holds the frames shown
        shown = np.asarray(first.convert("RGB"), np.float32) / 255
    assert np.abs(clip.frames[0] - shown).mean() < 0.05


def test_a_multipass_job_shows_each_pass(network, uploaded, job_folder):
    settings = jobs.video_settings("multipass", video.DEFAULT_TEMPORAL_WEIGHT, 2)
    updates = list(_job(network, uploaded, job_folder, settings=settings, iterations=4))
    last = updates[-1]
    # the first pass runs the 4 iterations, the second a quarter of them
    assert last.status == "completed" and (last.passes, last.iterations) == (2, 1)
    assert last.done == last.total == COUNT * (4 + 1)
    captions = [[c for _, c in u.frames] for u in updates if u.changed]
    assert captions[1] == [f"frame {t + 1} (pass 1/2)" for t in range(COUNT)]
    assert captions[-1] == [f"frame {t + 1}" for t in range(COUNT)]
    assert len(frames.read(last.output).frames) == COUNT


def test_stop_keeps_the_frames_done_and_writes_no_mp4(network, uploaded, job_folder):
    stop = Stop()
    updates = []
    for update in _job(network, uploaded, job_folder, stop=stop, iterations=4):
        updates.append(update)
        if len(update.frames) == 2:
            stop.set()
    last = updates[-1]
    assert last.status == "stopped" and last.output is None
    assert [c for _, c in last.frames] == ["frame 1", "frame 2"]
    assert last.done == 2 * 4 and last.frame == 3  # the third was under way, dropped
    assert not (job_folder / "stylized.mp4").exists()
    assert not list(job_folder.glob("clip.*"))  # the clip's copy is removed too


# --- through the server, and in a real browser ----------------------------------------------

CHROMIUM = os.environ.get("NST_JAX_CHROMIUM", "/usr/bin/chromium")
VIDEO_LIMITS = jobs.Limits(max_size=64, max_video_size=64, max_video_frames=8)


@pytest.fixture(scope="module")
def server(tiny_vgg, tiny_params, tmp_path_factory):
    """The page on the tiny VGG, its uploads in a folder of its own (as serve.py does)."""
    pytest.importorskip("gradio", reason="the web extra is not installed")
    from nst_jax.apps.web import serve
    from nst_jax.apps.web.page import App

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("video-uploads")))
        network = stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny.h5"})
        app = App(network, VIDEO_LIMITS, tmp_path_factory.mktemp("video-jobs"))
        port = serve.free_port("127.0.0.1")
        page = app.launch("127.0.0.1", port)
        yield f"http://127.0.0.1:{port}/"
        page.close()


def _run_video_data(clip, style, **controls):
    """The inputs of the Video tab's Run (App.run_video), in order, as a raw request sends
    them."""
    values = dict(clip=clip, style_1=style, style_2=None, style_3=None, weight_1=1.0,
                  weight_2=1.0, weight_3=1.0, mode="blend", style_scale=1.0, colours="none",
                  init="noise", optimizer="lbfgs-stepwise", size=32, iterations=2,
                  log_ratio=-3.0, fps=6, start=0.0, seconds=3.0, schedule="sequential",
                  temporal_weight=2e6, passes=4)
    values.update(controls)
    return list(values.values())


def test_a_video_request_reads_no_clip_but_uploads(server, tmp_path):
    """The Video tab's endpoint refuses every clip that is not an upload (a private file,
    a system file, a bundled example, ``..`` out of the upload folder), with one message
    that names nothing of the path; an upload runs."""
    from tests.test_web import META, _error, _raw, _upload

    private = tmp_path / "private.mp4"
    frames.write_video(private, _pan(2), FPS)
    style = {"path": str(example_path("starry_night.jpg"))}
    probes = [str(private), "/etc/passwd", str(example_path("chelsea.jpg")),
              f"{_upload(server, private).rsplit('/', 1)[0]}/../../{private}"]
    for path in probes:
        for meta in ({}, {"meta": META}):
            text = _error(_raw(server, "run_video", _run_video_data(
                {"path": path, "orig_name": "x.mp4", **meta}, style)))
            assert text is None or text == "the clip is not a file this server received; " \
                                           "upload it again", (path, text)
    clip = {"path": _upload(server, private, "my <clip>.mp4"), "orig_name": "my <clip>.mp4",
            "meta": META}
    name, data = _raw(server, "run_video", _run_video_data(clip, style))[-1]
    assert name == "complete" and 'data-state="completed"' in data[1], data
    assert "2/2 frames" in data[1] and data[2]["path"].endswith("stylized.mp4")
    assert len(data[0]) == 2  # the gallery: both frames
    text = _error(_raw(server, "run_video", _run_video_data(clip, style, seconds=30)))
    assert text == "Seconds must be above 0 and at most 10 (this server's limit), got 30", text


def test_the_video_tab_shows_frames_as_they_finish(server, tmp_path):
    """The Video tab in Chromium: upload a clip, Run, the frames appear in the gallery and
    the mp4 in the player."""
    if not pathlib.Path(CHROMIUM).is_file():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium; NST_JAX_CHROMIUM)"
        if os.environ.get("NST_JAX_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (NST_JAX_REQUIRE_BROWSER=1)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    from tests.test_web import CHROMIUM_ARGS, _set_slider

    clip = tmp_path / "pan.mp4"
    frames.write_video(clip, _pan(3), FPS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server)
        page.wait_for_selector("#run", timeout=60_000)
        page.get_by_role("tab", name="Video").click()
        page.locator("#video-clip input[type=file]").set_input_files(str(clip))
        page.wait_for_selector("#video-clip :text('pan.mp4')", timeout=30_000)
        _set_slider(page, "video-size", 32)
        _set_slider(page, "video-iterations", 2)
        _set_slider(page, "video-fps", 6)
        page.click("#run-video")
        page.wait_for_selector('#video-status [data-state="completed"]', timeout=120_000)
        assert "3/3 frames" in page.inner_text("#video-status")
        assert page.locator("#video-frames img").count() >= 3
        assert "frame 3" in page.inner_text("#video-frames")
        page.wait_for_function("document.querySelector('#video-result video')?.videoWidth > 0",
                               timeout=30_000)  # the browser plays the mp4
        source = page.locator("#video-result video").first.get_attribute("src")
        result = tmp_path / "result.mp4"
        result.write_bytes(page.request.get(source).body())
        assert len(frames.read(result).frames) == 3
        screenshots = os.environ.get("NST_JAX_SCREENSHOTS")
        if screenshots:
            page.screenshot(path=str(pathlib.Path(screenshots, "video.png")), full_page=True)
        assert not errors, errors
        browser.close()
