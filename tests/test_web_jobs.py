"""The web page's jobs without the page (nst_jax.apps.web.jobs), on the tiny VGG."""
import json
import threading

import numpy as np
import pytest
from PIL import Image

from nst_jax import stylize
from nst_jax.apps.web import jobs
from nst_jax.config import Config, example_path
from nst_jax.errors import NSTError
from nst_jax.images import read_png_metadata
from nst_jax.stop import Stop
from nst_jax.vgg import CAFFE

LAYERS = dict(content_layers=("conv4_2",), style_layers=("conv1_1", "conv2_1", "conv3_1"))


@pytest.fixture
def network(tiny_vgg, tiny_params):
    return stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny.h5"})


@pytest.fixture
def uploads(image_files):
    content, style = image_files
    return jobs.Upload(content, "my photo.png"), jobs.Upload(style, "my painting.jpg")


def _mask(path, size, left=True):
    mask = np.zeros((size[1], size[0]), np.uint8)
    half = size[0] // 2
    if left:
        mask[:, :half] = 255
    else:
        mask[:, half:] = 255
    Image.fromarray(mask).save(path)
    return jobs.Upload(path, path.name)


def test_limits_are_checked():
    assert jobs.Limits().max_upload_bytes == 20_000_000
    for bad in (dict(max_size=8), dict(max_iterations=0), dict(max_points=0),
                dict(max_upload_mb=float("nan")), dict(max_size=5000)):
        with pytest.raises(NSTError):
            jobs.Limits(**bad)


def _trust(folder, *uploaded):
    """A :class:`jobs.Trust` of the upload folder ``folder`` that received ``uploaded``."""
    return jobs.Trust(folder, {str(p) for p in uploaded}, jobs.bundled_examples())


def test_upload_checks_the_file(tmp_path):
    limits = jobs.Limits(max_upload_mb=0.001)
    small, big = tmp_path / "a1" / "small.png", tmp_path / "b2" / "big.png"
    for path, size in ((small, 500), (big, 2000)):
        path.parent.mkdir()
        path.write_bytes(b"x" * size)
    trust = _trust(tmp_path, small, big)
    assert jobs.upload(None, "content image", limits, trust) is None
    item = jobs.upload({"path": str(small), "orig_name": "cat.png"}, "content image", limits,
                       trust)
    assert item == jobs.Upload(small, "cat.png")
    assert item.named(f"cannot read {small}: broken") == "cannot read cat.png: broken"
    with pytest.raises(NSTError, match=r"the style image 2 big.png is 0.0 MB; this server takes "
                                       r"files up to 0.001 MB"):
        jobs.upload(str(big), "style image 2", limits, trust)


def test_only_uploads_and_examples_are_read(tmp_path):
    """A request's path is read only if it is a file the server received as an upload (in
    its upload folder, links followed) or a bundled example; every other path gets one
    message, the same for each, that names nothing of it."""
    folder, outside = tmp_path / "uploads", tmp_path / "private"
    (folder / "abc").mkdir(parents=True)
    outside.mkdir()
    uploaded = folder / "abc" / "cat.png"
    uploaded.write_bytes(b"x" * 100)
    private = outside / "secret.png"
    private.write_bytes(b"y" * 100)
    link = folder / "abc" / "link.png"  # a link inside the folder, pointing out of it
    link.symlink_to(private)
    stray = folder / "abc" / "stray.png"  # in the folder, never uploaded (a cached result)
    stray.write_bytes(b"z" * 100)
    trust = _trust(folder, uploaded, link)
    limits = jobs.Limits()
    assert jobs.upload({"path": str(uploaded)}, "content image", limits, trust).path == uploaded
    example = example_path("chelsea.jpg")
    assert jobs.upload(str(example), "style image 1", limits, trust) == jobs.Upload(
        example.resolve(), "chelsea.jpg")
    probes = [private, link, stray, tmp_path / "missing.png", "/etc/passwd", outside,
              f"{folder}/abc/../abc/cat.png", f"{folder}/../private/secret.png",
              "abc/cat.png", "", "\0", 7, ["x"], str(uploaded) + "/"]
    for probe in probes:
        if probe == "":
            continue  # no file given
        value = probe if isinstance(probe, (int, list)) else {"path": str(probe)}
        with pytest.raises(NSTError) as error:
            jobs.upload(value, "region mask 2", limits, trust)
        assert str(error.value) == jobs.refused("region mask 2"), probe
    message = jobs.refused("region mask 2")
    assert "/" not in message and "secret" not in message
    assert jobs.upload({"path": ""}, "content image", limits, trust) is None


def test_the_page_defaults_are_the_command_lines(uploads):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style])
    cli = Config(content=str(content.path), style=(str(style.path),))
    assert config == cli  # α = 1, β = 1e3 from log10 α/β = -3, like every other default


def test_controls_become_the_config(uploads, tmp_path):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style, None, style], weights=[3, 1, 1],
                              size=64, iterations=7, log_ratio=-2, style_scale=0.5,
                              preserve_colors="luminance", start_size=32, init="content",
                              seed=5, optimizer="adam")
    assert config.style == (str(style.path),) * 2 and config.style_blend_weights == (3.0, 1.0)
    assert np.isclose(config.alpha / config.beta, 1e-2) and config.style_scale == (0.5,)
    assert (config.size, config.iterations, config.start_size, config.seed) == (64, 7, 32, 5)
    assert (config.preserve_colors, config.init, config.optimizer) == ("luminance", "content", "adam")
    masks = [_mask(tmp_path / "a.png", (48, 40)), _mask(tmp_path / "b.png", (48, 40), left=False)]
    regions = jobs.make_config(content=content, styles=[style, style], weights=[1, 2],
                               mode=jobs.REGIONS, masks=masks)
    assert regions.content_masks == tuple(str(m.path) for m in masks)
    assert regions.region_weights == (1.0, 2.0) and regions.style_blend_weights is None
    shown = jobs.named_config(regions, [content, style, *masks])
    assert shown.content == "my photo.png" and shown.content_masks == ("a.png", "b.png")


@pytest.mark.parametrize("controls, message", [
    (dict(size=600), r"Size must be a whole number from 16 to 512 \(this server's limit\), got 600"),
    (dict(size=12.5), "Size must be a whole number"),
    (dict(iterations=5000), "Iterations must be a whole number from 1 to 1000"),
    (dict(seed=-1), "Seed must be a whole number"),
    (dict(log_ratio="x"), "α/β must be a number"),
    (dict(style_scale=9), "Style scale must be numbers in"),
    (dict(preserve_colors="sepia"), "Colours must be one of none, luminance"),
    (dict(init="paint"), "Start from must be one of noise, content, style"),
    (dict(optimizer="sgd"), "Optimiser must be one of"),
    (dict(start_size=300, size=256), "Start size must not exceed Size"),
    (dict(mode=jobs.REGIONS), "needs a region mask for every style: style 1 has none"),
    (dict(weights=[0]), "Style weights must not all be 0, got 0, 0"),
])
def test_bad_controls_name_the_control(uploads, controls, message):
    content, style = uploads
    styles = [style, style] if "weights" in controls else [style]
    if "weights" in controls:
        controls["weights"] = [0, 0]
    with pytest.raises(NSTError, match=message):
        jobs.make_config(content=content, styles=styles, **controls)


def test_missing_images_are_asked_for(uploads):
    content, style = uploads
    with pytest.raises(NSTError, match="upload a content image"):
        jobs.make_config(content=None, styles=[style])
    with pytest.raises(NSTError, match="upload a style image"):
        jobs.make_config(content=content, styles=[None, None])


def test_unreadable_uploads_are_named_as_uploaded(uploads, tmp_path):
    content, style = uploads
    text = tmp_path / "abc123.png"
    text.write_text("not an image")
    bad = jobs.Upload(text, "notes.png")
    config = jobs.make_config(content=bad, styles=[style])
    with pytest.raises(NSTError) as error:
        jobs.read_inputs(config, [bad, style])
    assert "notes.png" in str(error.value) and str(tmp_path) not in str(error.value)


def test_masks_of_another_shape_are_refused(uploads, tmp_path):
    """The library's rule (nst_jax.stylize.load_inputs), in the page's words."""
    content, style = uploads  # 48x40
    good = _mask(tmp_path / "good.png", (96, 80))
    wide = _mask(tmp_path / "wide.png", (100, 40))
    config = jobs.make_config(content=content, styles=[style, style], mode=jobs.REGIONS,
                              masks=[good, good], size=32)
    assert jobs.read_inputs(config, [content, style, good]).content_masks.shape == (2, 27, 32)
    config = jobs.make_config(content=content, styles=[style, style], mode=jobs.REGIONS,
                              masks=[good, wide], size=32)
    with pytest.raises(NSTError) as error:
        jobs.read_inputs(config, [content, style, good, wide])
    assert str(error.value).startswith("Region masks wide.png is 100x40 px but the content image "
                                       "my photo.png is resized to 32x27 px")
    assert str(tmp_path) not in str(error.value)


def _run(network, config, **kwargs):
    return list(jobs.stylize_job(config, network, kwargs.pop("folder"), arguments={"size": 32},
                             **kwargs))


def test_a_job_streams_updates_and_writes_the_command_lines_png(network, uploads, tmp_path):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style], size=32, iterations=5)
    config = config.replace(**LAYERS)
    ticks = iter(range(100))
    updates = _run(network, config, folder=tmp_path, every=2, clock=lambda: float(next(ticks)),
                   shown=jobs.named_config(config, [content, style]))
    assert [u.done for u in updates] == [2, 4, 5, 5]
    assert [u.status for u in updates] == ["running"] * 3 + ["completed"]
    assert all(u.image.dtype == np.uint8 and u.image.shape == (27, 32, 3) for u in updates)
    assert updates[0].rate is None and updates[1].rate == pytest.approx(2.0)  # 2 it per tick
    assert updates[1].eta == pytest.approx(0.5) and updates[0].startup == 1.0
    last = updates[-1]
    assert last.output == tmp_path / "stylized.png" and last.output.is_file()
    meta = read_png_metadata(last.output)
    # The keys of scripts/stylize.py's PNG (nst_jax.apps.cli.stylize.run's save()).
    for key in ("Software", "nst_jax:arguments", "nst_jax:config", "nst_jax:weights",
                "nst_jax:status", "nst_jax:iterations_done", "nst_jax:evaluations",
                "nst_jax:loss_total", "nst_jax:loss_content", "nst_jax:loss_style",
                "nst_jax:loss_tv", "nst_jax:bit_depth"):
        assert key in meta, key
    assert json.loads(meta["nst_jax:config"])["content"] == "my photo.png"
    assert float(meta["nst_jax:loss_total"]) == pytest.approx(last.loss)
    with Image.open(last.output) as img:
        np.testing.assert_array_equal(np.asarray(img.convert("RGB")), last.image)


def test_stop_keeps_the_image_so_far(network, uploads, tmp_path):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style], size=32, iterations=50)
    config = config.replace(**LAYERS)
    stop = Stop()
    updates = []
    for update in jobs.stylize_job(config, network, tmp_path, arguments={}, stop=stop, every=3):
        updates.append(update)
        stop.set()
    assert [u.done for u in updates] == [3, 3] and updates[-1].status == "stopped"
    meta = read_png_metadata(updates[-1].output)
    assert meta["nst_jax:status"] == "stopped" and meta["nst_jax:iterations_done"] == "3"


def test_coarse_to_fine_counts_every_scale(network, uploads, tmp_path):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style], size=48, iterations=4,
                              start_size=32).replace(coarse_iterations=3, **LAYERS)
    updates = _run(network, config, folder=tmp_path, every=10)
    assert [(u.done, u.total) for u in updates] == [(3, 7), (7, 7), (7, 7)]
    assert updates[0].scale.startswith("scale 1/2") and updates[-1].scale.startswith("scale 2/2")
    assert read_png_metadata(updates[-1].output)["nst_jax:scale"] == "2/2"


def test_sweep_grid_parses_the_values(uploads):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32, iterations=3)
    grid = jobs.sweep_grid(base, "1e-4, 1e-3 1e-2", "0,7", jobs.Limits())
    assert grid.shape == (3, 2) and grid.labels(5) == {"ratio": 1e-2, "seed": 7}
    for ratios, seeds, message in (("", "0", "α/β values: give at least one value"),
                                   ("1e-3, x", "0", "'x' is not a number"),
                                   ("1e-3", "0 0", "given twice"),
                                   ("-1", "0", "α/β values must be a finite number >= 0"),
                                   ("1e-3", "1.5", "Seeds: '1.5' is not a number"),
                                   (" ".join(str(10.0 ** -k) for k in range(9)), "0 1",
                                    "18 points .* this server runs at most 16")):
        with pytest.raises(NSTError, match=message):
            jobs.sweep_grid(base, ratios, seeds, jobs.Limits())


def test_a_sweep_writes_the_sweep_tools_files(network, uploads, tmp_path):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32, iterations=3).replace(**LAYERS)
    grid = jobs.sweep_grid(base, "1e-3, 1e-1", "0", jobs.Limits())
    inputs = stylize.load_inputs(base)
    updates = list(jobs.sweep(grid, inputs, network, tmp_path))
    last = updates[-1]
    assert last.status == "completed" and [u.status for u in updates[:-1]] == ["running"] * (
        len(updates) - 1)
    assert [r.index for r in last.results] == [0, 1] and all(f.is_file() for f in last.files.values())
    assert last.sheet == tmp_path / "contact_sheet.png" and last.sheet.is_file()
    assert (tmp_path / "results.json").is_file()
    assert last.results[0].total != last.results[1].total


def test_a_sweep_stops_with_the_points_so_far(network, uploads, tmp_path):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32, iterations=40).replace(**LAYERS)
    grid = jobs.sweep_grid(base, "1e-3", "0 1", jobs.Limits())
    stop = Stop()
    stop.set()
    last = list(jobs.sweep(grid, stylize.load_inputs(base), network, tmp_path, stop=stop))[-1]
    assert last.status == "stopped" and [r.status for r in last.results] == ["interrupted"] * 2
    assert last.sheet.is_file()


def test_leaving_a_sweep_early_ends_its_thread(network, uploads, tmp_path):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32,
                            iterations=1000).replace(**LAYERS)
    grid = jobs.sweep_grid(base, "1e-3", "0 1", jobs.Limits(max_iterations=1000))
    stop = Stop()
    updates = jobs.sweep(grid, stylize.load_inputs(base), network, tmp_path, stop=stop)
    assert next(updates).status == "running"
    updates.close()  # as gradio does when the page goes away
    assert stop.is_set()
    for thread in threading.enumerate():
        if thread.name == "nst_jax-sweep":
            thread.join(timeout=120)
            assert not thread.is_alive()


def test_the_command_line_and_the_page_refuse_the_same_masks(tmp_path, capsys):
    """One rule, in the library (nst_jax.stylize.load_inputs): a mask of another aspect
    ratio than the content's (64x20 on 64x43) is refused by scripts/stylize.py and by the
    page alike, with one message naming the mask and both sizes."""
    from tests.test_cli import assert_one_line_error, run_cli

    rng = np.random.default_rng(3)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray((rng.random((43, 64, 3)) * 255).astype(np.uint8)).save(content)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(style)
    wide, fits = _mask(tmp_path / "wide.png", (64, 20)), _mask(tmp_path / "fits.png", (128, 86))
    out = tmp_path / "out.png"
    code, _, err = run_cli(["--content", content, "--style", f"{style},{style}",
                            "--content-masks", f"{fits.path},{wide.path}", "--size", "32",
                            "--iterations", "1", "--output", out], capsys)
    rule = ("is 64x20 px but the content image {} is resized to 32x22 px: a mask of another "
            "shape would be stretched")
    assert_one_line_error(code, err, f"--content-masks {wide.path} " + rule.format(content))
    assert not out.exists()
    photo, painting = jobs.Upload(content, "photo.png"), jobs.Upload(style, "painting.png")
    config = jobs.make_config(content=photo, styles=[painting, painting], mode=jobs.REGIONS,
                              masks=[fits, wide], size=32, iterations=1)
    with pytest.raises(NSTError) as error:
        jobs.read_inputs(config, [photo, painting, fits, wide])
    assert str(error.value).startswith("Region masks wide.png " + rule.format("photo.png"))
