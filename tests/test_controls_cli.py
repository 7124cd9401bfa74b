"""The artistic controls from the command line (``stylize.py`` and ``sweep.py``), on the
real weights at 32-48 px, and their bad input (one ``error:`` line, exit 2, nothing written)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from nst_jax import colors, images
from nst_jax.apps.common.runner import ExitCode
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_sweep_cli import run_sweep

FAST = ["--size", "32", "--iterations", "4"]


@pytest.fixture
def controls(tmp_path):
    """Content 48x40, a warm and a cool style, two masks (left/right halves, half size)."""
    rng = np.random.default_rng(5)
    files = {}

    def save(name, array):
        path = tmp_path / name
        Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8)).save(path)
        files[name.split(".")[0]] = path

    save("content.png", 0.25 + 0.5 * rng.random((40, 48, 3)))
    save("warm.png", rng.random((36, 36, 3)) * [1.0, 0.5, 0.2])
    save("cool.jpg", rng.random((30, 40, 3)) * [0.2, 0.6, 1.0])
    left = np.zeros((20, 24))
    left[:, :12] = 1
    save("left.png", left)
    save("right.png", 1 - left)
    save("black.png", np.zeros((20, 24)))
    return files


def stylize(files, tmp_path, capsys, *flags, name="out.png"):
    out = tmp_path / name
    code, stdout, err = run_cli(["--content", files["content"], "--output", out, *FAST, *flags],
                                capsys)
    return code, out, err


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32) / 255


def test_blend_of_one_and_zero_is_that_style_alone(real_weights, controls, tmp_path, capsys):
    code, alone, err = stylize(controls, tmp_path, capsys, "--style", controls["warm"], name="a.png")
    assert code == 0, err
    code, blend, err = stylize(controls, tmp_path, capsys, "--style",
                               f"{controls['warm']},{controls['cool']}",
                               "--style-blend-weights", "1,0", name="b.png")
    assert code == 0, err
    np.testing.assert_array_equal(pixels(alone), pixels(blend))
    meta = json.loads(images.read_png_metadata(blend)["nst_jax:config"])
    assert meta["style"] == [str(controls["warm"]), str(controls["cool"])]
    assert meta["style_blend_weights"] == [1.0, 0.0]
    # (that an equal blend differs is in test_sweep_interpolates_between_styles)


# luminance here; original (the same finishing step after a plain run) in test_controls and
# in the control figures' end-to-end test, both of which also check luminance.
@pytest.mark.parametrize("mode", ["luminance"])
def test_preserve_colors_keeps_the_contents_chroma(real_weights, controls, tmp_path, capsys, mode):
    code, out, err = stylize(controls, tmp_path, capsys, "--style", controls["warm"],
                             "--preserve-colors", mode, "--beta", "1e5")
    assert code == 0, err
    got, content = pixels(out), pixels(controls["content"])[:, :, :3]
    content = images.resize_to(content, got.shape[:2])
    yiq_got, yiq_content = np.asarray(colors.rgb_to_yiq(got)), np.asarray(colors.rgb_to_yiq(content))
    assert np.abs(yiq_got[..., 1:] - yiq_content[..., 1:]).mean() <= 0.01
    assert np.abs(yiq_got[..., 0] - yiq_content[..., 0]).mean() > 0.01
    meta = images.read_png_metadata(out)
    assert json.loads(meta["nst_jax:config"])["preserve_colors"] == mode


def test_histogram_and_scale_and_regions_run(real_weights, controls, tmp_path, capsys):
    code, out, err = stylize(controls, tmp_path, capsys, "--style", controls["warm"],
                             "--preserve-colors", "histogram-cholesky", "--style-scale", "0.75",
                             name="h.png")
    assert code == 0, err
    assert '"style_scale": [0.75]' in images.read_png_metadata(out)["nst_jax:config"]
    # regions, swept over their weights, with a scale per style
    folder = tmp_path / "regions"
    code, _, err = run_sweep(["--content", controls["content"], "--style",
                              f"{controls['warm']},{controls['cool']}", "--content-masks",
                              f"{controls['left']},{controls['right']}", "--region-weights",
                              "1,0.2;0.2,1", "--style-scale", "1,0.75", "--output-dir", folder,
                              *FAST], capsys)
    assert code == 0, err
    document = json.loads((folder / "results.json").read_text())
    assert [r["region_weights"] for r in document["results"]] == ["1.0+0.2", "0.2+1.0"]
    assert document["results"][0]["style"] != document["results"][1]["style"]
    png = folder / document["results"][1]["file"]
    config = json.loads(images.read_png_metadata(png)["nst_jax:config"])
    assert config["content_masks"] == [str(controls["left"]), str(controls["right"])]
    assert config["region_weights"] == [0.2, 1.0] and config["style_scale"] == [1.0, 0.75]


def test_sweep_interpolates_between_styles(real_weights, controls, tmp_path, capsys):
    out = tmp_path / "grid"
    code, _, err = run_sweep(["--content", controls["content"], "--style",
                              f"{controls['warm']},{controls['cool']}", "--style-blend-weights",
                              "1,0;0.5,0.5;0,1", "--preserve-colors", "original",
                              "--output-dir", out, *FAST], capsys)
    assert code == 0, err
    document = json.loads((out / "results.json").read_text())
    assert len({r["style"] for r in document["results"]}) == 3  # the blend moves the style loss
    assert [r["style_blend_weights"] for r in document["results"]] == ["1.0+0.0", "0.5+0.5",
                                                                           "0.0+1.0"]
    assert document["shared"]["preserve_colors"] == "original"
    assert len(list(out.glob("00?_style_blend_weights-*.png"))) >= 3


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, needles", [
    (["--style", "{warm},{cool}", "--content-masks", "{left}"], ["--content-masks has 1 mask(s) for 2"]),
    (["--style", "{warm},{cool}", "--content-masks", "{left},{black}"], ["black everywhere"]),
    (["--style", "{warm},{cool}", "--content-masks", "{left},{tmp}/missing.png"], ["missing.png"]),
    (["--style", "{warm},{cool}", "--style-blend-weights", "1,2,3"],
     ["--style-blend-weights has 3 weight(s) for 2 style image(s)"]),
    (["--style", "{warm},{cool}", "--style-blend-weights", "1,-1"], ["--style-blend-weights", ">= 0"]),
    (["--style", "{warm},{cool}", "--style-blend-weights", "0,0"], ["not all be 0"]),
    (["--style", "{warm}", "--preserve-colors", "chroma"], ["--preserve-colors", "luminance"]),
    (["--style", "{warm}", "--region-weights", "1"], ["--region-weights needs --content-masks"]),
    (["--style", "{warm},{cool}", "--content-masks", "{left},{right}", "--region-weights", "1,-1"],
     ["--region-weights", ">= 0"]),
    (["--style", "{warm}", "--style-scale", "0.5", "--style-size", "32"], ["give one"]),
    (["--style", "{warm}", "--style-scale", "0.1"], ["--style-scale", "3 px"]),
    (["--style", "{warm},{cool}", "--style-scale", "1,0.5"],
     ["--style-scale 0.5 (a 16 px long side) makes the style image", "16x12 px"]),
    (["--style", "{warm}", "--style-scale", "-1"], ["--style-scale", "(0, 8]"]),
    (["--style", "{warm},{tmp}/nope.jpg"], ["nope.jpg"]),
    (["--style", "{warm}", "--style-masks", "{left},{right}"], ["--style-masks has 2 mask(s) for 1"]),
])
def test_bad_control_flags_give_one_line_and_write_nothing(controls, tmp_path, capsys, flags,
                                                           needles):
    names = {**{k: str(v) for k, v in controls.items()}, "tmp": str(tmp_path)}
    flags = [f.format(**names) for f in flags]
    code, out, err = stylize(controls, tmp_path, capsys, *flags, name="never.png")
    assert code == ExitCode.ERROR, err
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


def test_bad_sweep_blend_weights(controls, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = run_sweep(["--content", controls["content"], "--style",
                              f"{controls['warm']},{controls['cool']}", "--style-blend-weights",
                              "1,0;1", "--output-dir", out, *FAST], capsys)
    assert code == ExitCode.ERROR
    assert_one_line_error(code, err, "--style-blend-weights has 1 weight(s) for 2")
    assert not out.exists()
