"""``--style-loss`` / ``--style-losses`` (Config.style_loss) in the applications, on the tiny
VGG: stylize.py (one image, many photos), video.py and sweep.py write it in their outputs
and refuse bad values in one ``error:`` line naming the flag; the web page's Style distance
control reaches the job's Config and refuses anything but its choices, naming nothing the
client sent."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nst_jax import frames as clips, stylize, video
from nst_jax.apps.cli import stylize as stylize_cli, sweep as sweep_cli, video as video_cli
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.apps.web import jobs
from nst_jax.config import Config, example_path
from nst_jax.errors import NSTError
from nst_jax.images import read_png_metadata
from nst_jax.inputs import Network
from nst_jax.vgg import CAFFE
from tests.test_cli import assert_one_line_error

try:  # the page's server, as tests/test_web.py starts it (module fixtures, on the tiny VGG)
    from tests.test_web import jobs_folder, pictures, server, uploads_folder  # noqa: F401
except pytest.skip.Exception:  # no web extra: the test of the server skips
    @pytest.fixture
    def server():
        pytest.skip("the web extra is not installed")

    @pytest.fixture
    def pictures():
        pytest.skip("the web extra is not installed")

FAST = ["--size", "32", "--iterations", "2"]
# Fewer layers than the paper's: a smaller program to compile (the sweeps compile a vmapped one).
LAYERS = dict(content_layers=("conv2_2",), style_layers=("conv1_1", "conv2_1"))
FEW_LAYERS = ["--content-layers", "conv2_2", "--style-layers", "conv1_1,conv2_1"]
SWEEP_LAYERS = ["--content-layers", "conv2_2", "--style-layers", "conv1_1+conv2_1"]  # one point


@pytest.fixture
def tiny_cli(monkeypatch, tiny_vgg, tiny_params):
    """The command-line tools on the tiny VGG: no weights file is read."""
    monkeypatch.setattr(stylize, "load_network", lambda config, content, styles, **kwargs:
                        Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"}))


def run(tool, args, capsys):
    code = runner.launch(f"nst_jax.apps.cli.{tool}", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def config_of(path) -> dict:
    return json.loads(read_png_metadata(path)["nst_jax:config"])


# --- the command line -----------------------------------------------------------------------


def test_stylize_records_the_style_loss_in_the_png(tiny_cli, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "o.png"
    code, stdout, err = run("stylize", ["--content", content, "--style", style, "--output", out,
                                        *FAST, *FEW_LAYERS, "--style-loss", "gram:0.5,sliced:1"],
                            capsys)
    assert code == ExitCode.OK, err
    assert f"wrote {out}" in stdout
    assert config_of(out)["style_loss"] == "gram:0.5,sliced"  # as Config writes it
    meta = read_png_metadata(out)
    assert json.loads(meta["nst_jax:arguments"])["style_loss"] == "gram:0.5,sliced:1"
    assert meta["nst_jax:status"] == "completed" and float(meta["nst_jax:loss_style"]) > 0


def test_many_photos_take_the_style_loss(tiny_cli, image_files, tmp_path, capsys):
    content, style = image_files
    second = tmp_path / "second.png"
    Image.open(content).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
    out = tmp_path / "out"
    code, stdout, err = run("stylize", ["--content", content, second, "--style", style,
                                        "--output", out, *FAST, *FEW_LAYERS, "--style-loss",
                                        "histogram"], capsys)
    assert code == ExitCode.OK, err
    assert sorted(p.name for p in out.iterdir()) == ["content.png", "second.png"]
    for name in ("content.png", "second.png"):
        assert config_of(out / name)["style_loss"] == "histogram"


def test_video_frames_record_the_style_loss(tiny_cli, tmp_path, capsys):
    rng = np.random.default_rng(0)
    clip = tmp_path / "clip.mp4"
    clips.write_video(clip, video.pan_clip(rng.random((40, 80, 3)).astype(np.float32), 2,
                                           (32, 48), step=2.0), 6.0)
    style = tmp_path / "style.png"
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(style)
    out, frames_dir = tmp_path / "out.mp4", tmp_path / "frames"
    code, _, err = run("video", ["--content", clip, "--style", style, "--output", out,
                                 "--frames", frames_dir, *FAST, *FEW_LAYERS, "--style-loss",
                                 "mean-cov"], capsys)
    assert code == ExitCode.OK, err
    pngs = sorted(frames_dir.iterdir())
    assert len(pngs) == 2 and all(config_of(p)["style_loss"] == "mean-cov" for p in pngs)


def test_sweep_makes_an_axis_of_style_losses(tiny_cli, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "grid"
    code, stdout, err = run("sweep", ["--content", content, "--style", style, "--output-dir",
                                      out, *FAST, *SWEEP_LAYERS, "--style-losses",
                                      "gram;mean-cov"], capsys)
    assert code == ExitCode.OK, err
    document = json.loads((out / "results.json").read_text())
    assert document["points_done"] == document["points"] == 2
    assert document["axes"]["style_loss"] == ["gram", "mean-cov"]
    files = [r["file"] for r in document["results"]]
    assert files[0].startswith("000_") and files[0].endswith("_style_loss-gram.png")
    assert files[1].startswith("001_") and files[1].endswith("_style_loss-mean-cov.png")
    assert [config_of(out / f)["style_loss"] for f in files] == ["gram", "mean-cov"]
    assert [r["style_loss"] for r in document["results"]] == ["gram", "mean-cov"]
    assert (out / "contact_sheet.png").is_file()


def test_sweep_labels_are_the_configs_own_spelling():
    """``gram:1,histogram:2`` is the point ``gram,histogram:2`` (a weight of 1 left out):
    its label, file name and results row say what its PNG's config says."""
    parser, flags = sweep_cli.build_parser()
    args = parser.parse_args(["--style-losses", "gram:1; histogram:2 , gram:1", "--seeds", "0,1"])
    grid = sweep_cli.make_grid(args, flags)
    assert grid.axes == (("style_loss", ("gram", "gram,histogram:2")), ("seed", (0, 1)))
    assert [c.style_loss for c in grid.configs] == ["gram", "gram", "gram,histogram:2",
                                                    "gram,histogram:2"]


@pytest.mark.parametrize("tool, flags, needles", [
    ("stylize", ["--style-loss", "foo"], ["--style-loss", "'foo'", "gram, mean-cov"]),
    ("stylize", ["--style-loss", "sliced", "--tile-size", "128"], ["--tile-size", "--style-loss"]),
    ("stylize", ["--style-loss", "gram:-1"], ["--style-loss", "weight -1"]),
    ("stylize", ["--style-loss", "histogram", "--content-masks", "{content},{content}",
                 "--style", "{style},{style}"], ["--content-masks", "--style-loss"]),
    ("video", ["--style-loss", "foo"], ["--style-loss", "'foo'"]),
    ("video", ["--style-loss", "sliced", "--tile-size", "128"], ["--tile-size", "--style-loss"]),
    ("sweep", ["--style-losses", "gram;foo"], ["--style-losses", "'foo'"]),
    ("sweep", ["--style-losses", "gram;gram:-1"], ["--style-losses", "weight -1"]),
    ("sweep", ["--style-losses", "sliced", "--style", "{style},{style}"],
     ["--style ", "--style-losses"]),
])
def test_bad_style_losses_are_one_line_naming_the_flag(image_files, tmp_path, capsys, tool,
                                                       flags, needles):
    content, style = image_files
    flags = [f.format(content=content, style=style) for f in flags]
    out = {"stylize": ["--output", tmp_path / "never.png"],
           "video": ["--output", tmp_path / "never.mp4"],
           "sweep": ["--output-dir", tmp_path / "never"]}[tool]
    code, stdout, err = run(tool, ["--content", content, "--style", style, *out, *FAST, *flags],
                            capsys)
    assert code == ExitCode.ERROR
    assert_one_line_error(code, err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.jpg"]


def test_help_shows_the_flags():
    single = " ".join(stylize_cli.build_parser()[0].format_help().split())
    assert "--style-loss NAME[:W],..." in single and "mean-cov" in single
    assert "(default: gram)" in single
    swept = " ".join(sweep_cli.build_parser()[0].format_help().split())
    assert "--style-losses VALUES" in swept and "--style-losss" not in swept
    assert "';'-separated points, each a distance or a mix (default: gram)" in swept
    assert "--style-loss NAME" in " ".join(video_cli.build_parser()[0].format_help().split())


# --- the web page's jobs --------------------------------------------------------------------


@pytest.fixture
def network(tiny_vgg, tiny_params):
    return Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny.h5"})


@pytest.fixture
def uploads(image_files):
    content, style = image_files
    return jobs.Upload(content, "my photo.png"), jobs.Upload(style, "my painting.jpg")


def test_each_choice_becomes_the_configs_style_loss(uploads):
    content, style = uploads
    assert jobs.make_config(content=content, styles=[style]).style_loss == "gram"  # the CLI's
    assert [value for _, value in jobs.STYLE_DISTANCES] == [
        "gram", "mean-cov", "sliced", "histogram", "gram,histogram"]
    for _, value in jobs.STYLE_DISTANCES:
        config = jobs.make_config(content=content, styles=[style], style_loss=value)
        assert config.style_loss == value == Config(style_loss=value).style_loss


@pytest.mark.parametrize("hostile", [
    "foo", "gram:0.5,sliced:0.5", "histogram,gram", "GRAM", " gram", "", None, 7, ["gram"],
    {"path": "/etc/passwd"}, "/etc/passwd", "<img src=x onerror=alert(1)>", "gram" * 10_000])
def test_a_hostile_style_distance_is_refused_naming_nothing_of_it(uploads, hostile):
    content, style = uploads
    with pytest.raises(NSTError) as error:
        jobs.make_config(content=content, styles=[style], style_loss=hostile)
    assert str(error.value) == ("Style distance must be one of gram, mean-cov, sliced, histogram "
                                "or gram + histogram")
    with pytest.raises(NSTError, match="^Style distances must be one of"):
        jobs.sweep_grid(jobs.make_config(content=content, styles=[style]), "1e-3", "0",
                        jobs.Limits(), ["gram", hostile])


def test_distances_that_sort_refuse_several_styles_and_regions(uploads, tmp_path):
    content, style = uploads
    with pytest.raises(NSTError, match=r"^Style images cannot be used with the style distance "
                                       r"sliced \(Style distance\)"):
        jobs.make_config(content=content, styles=[style, style], style_loss="sliced")
    mask = jobs.Upload(content.path, "mask.png")
    with pytest.raises(NSTError, match=r"^Region masks cannot be used with the style distance "
                                       r"histogram \(Style distance\)"):
        jobs.make_config(content=content, styles=[style], mode=jobs.REGIONS, masks=[mask],
                         style_loss="gram,histogram")
    # blends and regions go on with the additive ones
    assert jobs.make_config(content=content, styles=[style, style],
                            style_loss="mean-cov").style_loss == "mean-cov"
    base = jobs.make_config(content=content, styles=[style, style])
    with pytest.raises(NSTError, match=r"^Style images cannot be used with the style distance "
                                       r"sliced"):
        jobs.sweep_grid(base, "1e-3", "0", jobs.Limits(), ["gram", "sliced"])


def test_a_job_writes_the_style_distance_in_its_png(network, uploads, tmp_path):
    content, style = uploads
    config = jobs.make_config(content=content, styles=[style], size=32, iterations=2,
                              style_loss="gram,histogram").replace(**LAYERS)
    updates = list(jobs.stylize_job(config, network, tmp_path,
                                    arguments={"style_loss": "gram,histogram"},
                                    shown=jobs.named_config(config, [content, style])))
    last = updates[-1]
    assert last.status == "completed" and last.style > 0
    meta = read_png_metadata(last.output)
    assert json.loads(meta["nst_jax:config"])["style_loss"] == "gram,histogram"
    assert json.loads(meta["nst_jax:arguments"])["style_loss"] == "gram,histogram"


def test_the_sweep_grid_takes_style_distances_as_rows(uploads):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32, iterations=2)
    grid = jobs.sweep_grid(base, "1e-4, 1e-3", "0", jobs.Limits(), ["gram", "mean-cov"])
    assert grid.axes == (("style_loss", ("gram", "mean-cov")), ("ratio", (1e-4, 1e-3)),
                         ("seed", (0,)))
    assert [c.style_loss for c in grid.configs] == ["gram", "gram", "mean-cov", "mean-cov"]
    # One distance is no axis: the points and their names are a plain sweep's.
    one = jobs.sweep_grid(base, "1e-3", "0", jobs.Limits(), ["mean-cov"])
    assert [name for name, _ in one.axes] == ["ratio", "seed"]
    assert one.configs[0].style_loss == "mean-cov"
    assert jobs.sweep_grid(base, "1e-3", "0", jobs.Limits()).configs[0].style_loss == "gram"
    with pytest.raises(NSTError, match=r"^6 points \(3 α/β values x 1 seeds x 2 style "
                                       r"distances\); this server runs at most 4"):
        jobs.sweep_grid(base, "1 2 3", "0", jobs.Limits(max_points=4), ["gram", "sliced"])
    for bad, message in (([], "Style distances: choose at least one"),
                         (["gram", "gram"], "Style distances: a value is given twice")):
        with pytest.raises(NSTError, match=f"^{message}$"):
            jobs.sweep_grid(base, "1e-3", "0", jobs.Limits(), bad)


def test_a_sweep_job_of_two_distances_writes_both(network, uploads, tmp_path):
    content, style = uploads
    base = jobs.make_config(content=content, styles=[style], size=32,
                            iterations=2).replace(**LAYERS)
    grid = jobs.sweep_grid(base, "1e-3", "0", jobs.Limits(), ["gram", "mean-cov"])
    inputs = jobs.read_inputs(base, [content, style])
    *_, last = jobs.sweep(grid, inputs, network, tmp_path)
    assert last.status == "completed" and len(last.results) == 2
    assert [last.files[r.index].name for r in last.results] == [
        "000_style_loss-gram_ratio-1e-3_seed-0.png",
        "001_style_loss-mean-cov_ratio-1e-3_seed-0.png"]
    assert [config_of(last.files[r.index])["style_loss"] for r in last.results] == [
        "gram", "mean-cov"]
    page = pytest.importorskip("nst_jax.apps.web.page", reason="the web extra is not installed")
    caption = page.caption(last.results[1])
    assert caption.startswith("distance mean-cov · α/β 1e-3 · seed 0: loss")


# --- the page -------------------------------------------------------------------------------


def test_the_page_offers_the_distances_and_refuses_others(network, tmp_path):
    pytest.importorskip("gradio", reason="the web extra is not installed")
    import gradio as gr

    from nst_jax.apps.web.page import App

    app = App(network, jobs.Limits(max_size=64), tmp_path)
    page = app.blocks()
    blocks = {b.elem_id: b for b in page.blocks.values() if getattr(b, "elem_id", None)}
    assert blocks["style-loss"].value == "gram" == Config().style_loss
    assert blocks["style-loss"].choices == [tuple(c) for c in jobs.STYLE_DISTANCES]
    assert blocks["sweep-distances"].value == ["gram"]
    # The Run button's job with a value no choice has: the page's message, and no work.
    chelsea, starry = str(example_path("chelsea.jpg")), str(example_path("starry_night.jpg"))
    images_and_shared = [chelsea, starry, None, None, 1.0, 1.0, 1.0, jobs.BLEND, None, None, None,
                         1.0, "none", "noise", "lbfgs-stepwise"]
    outputs = app.run_page(*images_and_shared, 32, 2, -3.0, 0, 0, 1, "../../etc/passwd",
                           request=None)
    shown = next(outputs)  # the status: the message
    with pytest.raises(gr.Error) as error:
        next(outputs)
    assert "Style distance must be one of gram, mean-cov" in str(error.value)
    assert "passwd" not in str(error.value) and "passwd" not in shown[1]
    assert "nst-error" in shown[1] and "Style distance must be one of" in shown[1]
    sweep = app.run_sweep(*images_and_shared, 32, 2, "1e-3", "0", ["gram", "<b>x</b>"],
                          request=None)
    with pytest.raises(gr.Error, match="Style distances must be one of"):
        list(sweep)
    assert not any(tmp_path.iterdir())  # no job folder: refused before any work


def test_a_raw_request_gets_the_distance_it_chose_and_nothing_else(server, pictures):
    """The page's Run endpoint as any HTTP client may call it: a choice reaches the PNG's
    config; any other value is the page's one message, echoing nothing of it."""
    from tests.test_web import META, _error, _page_data, _raw, _upload

    content = {"path": _upload(server, pictures["content"]), "orig_name": "content.png",
               "meta": META}
    style = {"path": _upload(server, pictures["style"]), "orig_name": "style.jpg", "meta": META}
    for hostile in ("/etc/passwd", "gram:1e8", "<b>sliced</b>", ["gram"], {"a": 1}, 3, None):
        text = _error(_raw(server, "run_page", _page_data(content=content, style_1=style,
                                                          style_loss=hostile)))
        assert text == ("Style distance must be one of gram, mean-cov, sliced, histogram or "
                        "gram + histogram"), (hostile, text)
    name, data = _raw(server, "run_page", _page_data(content=content, style_1=style, size=32,
                                                     iterations=2, style_loss="mean-cov"))[-1]
    assert name == "complete" and 'data-state="completed"' in data[1], data
    meta = read_png_metadata(data[2]["path"])
    assert json.loads(meta["nst_jax:config"])["style_loss"] == "mean-cov"
    assert json.loads(meta["nst_jax:arguments"])["style_loss"] == "mean-cov"
