"""The web page's jobs without the page (nst_jax.apps.web_jobs), on the tiny VGG."""
import json
import threading

import numpy as np
import pytest
from PIL import Image

from nst_jax import stylize
from nst_jax.apps import web_jobs as jobs
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.images import read_png_metadata
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


def test_upload_checks_the_file(tmp_path):
    limits = jobs.Limits(max_upload_mb=0.001)
    assert jobs.upload(None, "content image", limits) is None
    small = tmp_path / "small.png"
    small.write_bytes(b"x" * 500)
    item = jobs.upload({"path": str(small), "orig_name": "cat.png"}, "content image", limits)
    assert item == jobs.Upload(small, "cat.png")
    assert item.named(f"cannot read {small}: broken") == "cannot read cat.png: broken"
    big = tmp_path / "big.png"
    big.write_bytes(b"x" * 2000)
    with pytest.raises(NSTError, match=r"the style image 2 big.png is 0.0 MB; this server takes "
                                       r"files up to 0.001 MB"):
        jobs.upload(str(big), "style image 2", limits)
    with pytest.raises(NSTError, match="did not arrive"):
        jobs.upload({"path": str(tmp_path / "gone.png")}, "content image", limits)


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
    (dict(start_size=300, size=256), "Start size must not exceed size"),
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
        jobs.load_inputs(config, [bad, style])
    assert "notes.png" in str(error.value) and str(tmp_path) not in str(error.value)


def test_masks_of_another_shape_are_refused(uploads, tmp_path):
    content, _ = uploads  # 48x40
    good = _mask(tmp_path / "good.png", (96, 80))
    jobs.check_masks([good], content)
    wide = _mask(tmp_path / "wide.png", (100, 40))
    with pytest.raises(NSTError, match=r"region mask 2 \(wide.png\) is 100x40 px but the content "
                                       r"\(my photo.png\) is 48x40"):
        jobs.check_masks([good, wide], content)


def _run(network, config, **kwargs):
    return list(jobs.stylize(config, network, kwargs.pop("folder"), arguments={"size": 32},
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
    # The keys of scripts/stylize.py's PNG (nst_jax.apps.stylize.run's save()).
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
    stop = threading.Event()
    updates = []
    for update in jobs.stylize(config, network, tmp_path, arguments={}, stop=stop, every=3):
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
    stop = threading.Event()
    stop.set()
    last = list(jobs.sweep(grid, stylize.load_inputs(base), network, tmp_path, stop=stop))[-1]
    assert last.status == "stopped" and [r.status for r in last.results] == ["interrupted"] * 2
    assert last.sheet.is_file()


def test_leaving_a_sweep_early_ends_its_thread(network, uploads, tmp_path):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32,
                            iterations=1000).replace(**LAYERS)
    grid = jobs.sweep_grid(base, "1e-3", "0 1", jobs.Limits(max_iterations=1000))
    stop = threading.Event()
    updates = jobs.sweep(grid, stylize.load_inputs(base), network, tmp_path, stop=stop)
    assert next(updates).status == "running"
    updates.close()  # as gradio does when the page goes away
    assert stop.is_set()
    for thread in threading.enumerate():
        if thread.name == "nst_jax-sweep":
            thread.join(timeout=120)
            assert not thread.is_alive()
