"""Paths on the command line (``stylize.py``, ``sweep.py``): names too long for the file
system, an output that would replace an input, and the names derived from ``--output``.

Each bad path must give exit 2 and one ``error:`` line that names the flag, before any
work, with no traceback, every input file unchanged and nothing left behind; a legal
name (up to 255 bytes) must work to the end. On the tiny VGG: no weights are read.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax import files, images, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.cli import sweep as sweep_cli
from nst_jax.apps.common import sweeps
from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error

FAST = ["--size", "32", "--iterations", "2"]
TOO_LONG = "a" * 300  # one name of 300 bytes: every Linux file system allows 255
ALL_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", *(f"conv{b}_{i}" for b in (3, 4, 5)
                                                           for i in (1, 2, 3, 4)))


@pytest.fixture
def tiny_network(monkeypatch, tiny_vgg, tiny_params):
    """The tools run on the tiny VGG (their weights are not read), and ``reads`` counts
    the runs that got as far as reading the images: a refusal must come before."""
    reads = []
    load_inputs = stylize.load_inputs

    def counted(config):
        reads.append(config)
        return load_inputs(config)

    monkeypatch.setattr(stylize, "load_inputs", counted)
    monkeypatch.setattr(stylize, "load_network", lambda config, content, styles, **kwargs:
                        stylize.Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"}))
    return reads


@pytest.fixture
def pictures(tmp_path):
    """content.png (48x40), style.png (36x36), mask.png (white, 48x40) in ``tmp_path``."""
    rng = np.random.default_rng(0)
    paths = {name: tmp_path / f"{name}.png" for name in ("content", "style", "mask")}
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(paths["content"])
    Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(paths["style"])
    Image.fromarray(np.full((40, 48), 255, np.uint8)).save(paths["mask"])
    return paths


def snapshot(folder) -> dict:
    """Every file (hidden ones too) and folder under ``folder``: ``{path: bytes or 'dir'}``."""
    found = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(root, name), folder)] = "dir"
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = (open(path, "rb").read()
                                                    if os.path.isfile(path) else "other")
    return found


def run_tool(module, args, capsys):
    code = runner.launch(module, [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(module, args, capsys, folder, *needles):
    """Run ``module`` with ``args``: exit 2, one error line holding ``needles``, and every
    file in ``folder`` as it was (nothing written, nothing removed, no input changed)."""
    before = snapshot(folder)
    code, out, err = run_tool(module, args, capsys)
    assert code == 2, (code, err)
    assert_one_line_error(code, err, *needles)
    assert snapshot(folder) == before
    return err


# --- 2. a name over 255 bytes: one line naming the flag, before any work ------------------


@pytest.mark.parametrize("flag", ["--content", "--style", "--content-masks", "--style-masks",
                                  "--weights", "--init", "--output", "--checkpoint"])
def test_stylize_refuses_a_name_too_long_for_the_file_system(flag, pictures, tmp_path, capsys,
                                                             tiny_network):
    long_name = tmp_path / (TOO_LONG + ("" if flag == "--checkpoint" else ".png"))
    args = {"--content": pictures["content"], "--style": pictures["style"],
            "--output": tmp_path / "out.png", flag: long_name}
    extra = ["--checkpoint-every", "1"] if flag == "--checkpoint" else []
    err = refused("nst_jax.apps.cli.stylize", [*sum(args.items(), ()), *FAST, *extra], capsys,
                  tmp_path, flag, "bytes long", "255")
    assert "Traceback" not in err and "Errno" not in err
    assert not tiny_network


@pytest.mark.parametrize("flag", ["--content", "--style", "--content-masks", "--output-dir"])
def test_sweep_refuses_a_name_too_long_for_the_file_system(flag, pictures, tmp_path, capsys,
                                                           tiny_network):
    long_name = tmp_path / (TOO_LONG + ("" if flag == "--output-dir" else ".png"))
    args = {"--content": pictures["content"], "--style": pictures["style"],
            "--output-dir": tmp_path / "grid", flag: long_name}
    refused("nst_jax.apps.cli.sweep", [*sum(args.items(), ()), *FAST], capsys, tmp_path, flag,
            "bytes long")
    assert not tiny_network


def test_a_long_name_in_a_subprocess_gives_one_line_and_exit_2(pictures, tmp_path):
    """The script as a user runs it: exit 2, not a 50-line OSError traceback and exit 1."""
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "stylize.py"), "--content",
                           TOO_LONG + ".jpg", "--style", pictures["style"], *FAST],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert_one_line_error(done.returncode, done.stderr, "--content", "304 bytes")


def test_a_path_longer_than_the_system_allows_is_refused(pictures, tmp_path, capsys,
                                                         tiny_network):
    deep = "/".join(["b" * 200] * 25) + "/c.png"  # every name legal, the whole over 4096 bytes
    refused("nst_jax.apps.cli.stylize", ["--content", deep, "--style", pictures["style"], *FAST],
            capsys, tmp_path, "--content", "bytes long")


def test_the_runner_turns_a_name_too_long_into_one_line(capsys):
    """The net under the flag checks: an ENAMETOOLONG met anywhere, even wrapped in another
    exception, ends in one line and exit 2."""

    def opens():
        open("c" * 300, "rb")

    def wraps():
        try:
            opens()
        except OSError as e:
            raise RuntimeError("could not load") from e

    for main in (opens, wraps):
        assert runner.guarded(main) == runner.ExitCode.ERROR
        _, err = capsys.readouterr()
        assert_one_line_error(2, err, "too long", "300 bytes")
    def bug():
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # other errors are bugs: they keep their traceback
        runner.guarded(bug)


def test_the_library_words_a_name_too_long(tmp_path):
    """The image reader and the output check (the web server's too) say NSTError, not OSError."""
    with pytest.raises(NSTError, match="300 bytes"):
        images.load_image(tmp_path / TOO_LONG)
    with pytest.raises(NSTError, match="304 bytes"):
        images.check_output_path(tmp_path / (TOO_LONG + ".png"))
    with pytest.raises(NSTError, match="300 bytes"):
        files.check_writable_folder(tmp_path / TOO_LONG)
    assert files.name_too_long(tmp_path / ("é" * 125 + ".png")) is None  # 254 bytes
    assert "258 bytes" in files.name_too_long(tmp_path / ("é" * 127 + "xxxx"))  # 131 characters
    assert os.listdir(tmp_path) == []


# --- 3. an output that is an input: refused, the input untouched ----------------------------


def _alias(kind, target, tmp_path):
    """Another name for ``target``: the same path spelt otherwise, a hard or symbolic link."""
    if kind == "same":
        return target
    if kind == "dotted":
        (tmp_path / "sub").mkdir()
        return tmp_path / "sub" / ".." / "." / target.name
    link = tmp_path / f"{kind}.png"
    (os.link if kind == "hardlink" else os.symlink)(target, link)
    return link


@pytest.mark.parametrize("kind", ["same", "dotted", "hardlink", "symlink"])
@pytest.mark.parametrize("flag", ["--content", "--style", "--content-masks", "--init"])
def test_stylize_refuses_an_output_that_would_replace_an_input(flag, kind, pictures, tmp_path,
                                                               capsys, tiny_network):
    args = {"--content": pictures["content"], "--style": pictures["style"]}
    if flag == "--content-masks":
        args[flag] = pictures["mask"]
    if flag == "--init":
        args[flag] = tmp_path / "start.png"
        args[flag].write_bytes(pictures["style"].read_bytes())
    target = args[flag]
    output = _alias(kind, target, tmp_path)
    refused("nst_jax.apps.cli.stylize", [*sum(args.items(), ()), "--output", output, *FAST,
                                     "--checkpoint-every", "1"], capsys, tmp_path,
            "--output", flag, "would replace")
    assert not tiny_network  # refused before the images were read


def test_stylize_refuses_a_snapshot_that_would_replace_an_input(pictures, tmp_path, capsys,
                                                                tiny_network):
    start = tmp_path / "out_iter00002.png"  # what --save-every 2 writes beside out.png
    start.write_bytes(pictures["style"].read_bytes())
    refused("nst_jax.apps.cli.stylize", ["--content", pictures["content"], "--style",
                                     pictures["style"], "--init", start, "--output",
                                     tmp_path / "out.png", "--save-every", "2", "--size",
                                     "32", "--iterations", "4"],
            capsys, tmp_path, "--output", "--init", "out_iter00002.png")
    assert not tiny_network


def test_sweep_refuses_an_output_folder_whose_files_would_replace_an_input(
        pictures, tmp_path, capsys, tiny_network):
    grid = tmp_path / "grid"
    grid.mkdir()
    content = grid / sweeps.CONTACT_SHEET
    content.write_bytes(pictures["content"].read_bytes())
    refused("nst_jax.apps.cli.sweep", ["--content", content, "--style", pictures["style"],
                                   "--output-dir", grid, *FAST, "--seeds", "0,1"],
            capsys, tmp_path, "--output-dir", "--content", "contact_sheet.png")
    assert not tiny_network


def test_an_output_beside_the_inputs_still_runs(pictures, tmp_path, capsys, tiny_network):
    """The check refuses only what would replace an input: not a new name in the same
    folder, nor a snapshot's name that this run never writes (none at the last iteration)."""
    start = tmp_path / "out_iter00002.png"
    start.write_bytes(pictures["style"].read_bytes())
    code, _, err = run_tool("nst_jax.apps.cli.stylize", [
        "--content", pictures["content"], "--style", pictures["style"], "--init", start,
        "--output", tmp_path / "out.png", "--save-every", "1", *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "out.png").is_file() and (tmp_path / "out_iter00001.png").is_file()
    assert start.read_bytes() == pictures["style"].read_bytes()


# --- 4. legal long names: they work to the end, or derived ones are refused before ----------


def test_a_251_byte_output_name_is_written(pictures, tmp_path, capsys, tiny_network):
    """The atomic write's temporary name was the output's plus 22 bytes: a legal 251-byte
    name failed after the whole run."""
    output = tmp_path / ("o" * 247 + ".png")
    code, stdout, err = run_tool("nst_jax.apps.cli.stylize", [
        "--content", pictures["content"], "--style", pictures["style"], "--output", output,
        *FAST], capsys)
    assert code == 0, err
    assert f"wrote {output}" in stdout
    assert images.load_image(output).shape == (27, 32, 3)
    assert sorted(os.listdir(tmp_path)) == sorted(["content.png", "style.png", "mask.png",
                                                   output.name])


def test_temporary_and_probe_names_are_short_whatever_the_destination(tmp_path):
    lengths = {len(files.temporary_path(tmp_path).name) for _ in range(5)}
    assert lengths == {len(".nst_jax-0123456789abcdef.partial")}
    dest = tmp_path / ("d" * 255)  # the longest name a file system allows
    with files.atomic_write(dest) as tmp:
        assert tmp.parent == tmp_path and len(tmp.name) < 40
        tmp.write_bytes(b"x")
    assert dest.read_bytes() == b"x" and os.listdir(tmp_path) == [dest.name]


@pytest.mark.parametrize("flags, words", [
    (["--save-every", "2"], "--save-every"),  # out_iter00002.png: 10 bytes more than out.png
    (["--checkpoint-every", "1"], "--checkpoint"),  # out.ckpt: 1 byte more
])
def test_derived_names_too_long_are_refused_before_the_run(flags, words, pictures, tmp_path,
                                                           capsys, tiny_network):
    output = tmp_path / ("o" * 251 + ".png")  # 255 bytes: legal itself
    refused("nst_jax.apps.cli.stylize", ["--content", pictures["content"], "--style",
                                     pictures["style"], "--output", output, *FAST, *flags],
            capsys, tmp_path, "--output", words, "bytes long")
    assert not tiny_network


def test_sweep_shortens_point_names_too_long_for_the_file_system(pictures, tmp_path, capsys,
                                                                 tiny_network):
    """Long axis values (16 layers and their weights) made a point's file name over 255
    bytes: the grid ran, then failed to write it."""
    grid = tmp_path / "grid"
    code, _, err = run_tool("nst_jax.apps.cli.sweep", [
        "--content", pictures["content"], "--style", pictures["style"], "--output-dir", grid,
        "--size", "32", "--iterations", "1", "--style-layers", "+".join(ALL_LAYERS),
        "--style-layer-weights", ",".join(f"{0.0123456 * (k + 1):.7f}" for k in range(16))],
        capsys)
    assert code == 0, err
    names = os.listdir(grid)
    assert max(len(name.encode()) for name in names) <= 255
    [png] = [n for n in names if n.endswith(".png") and not n.endswith("_loss.png")
             and n != sweeps.CONTACT_SHEET]
    assert png.startswith("000_style_layers-conv1_1+") and len(png) == sweeps.MAX_STEM + 4
    other = sweeps.point_name(1, {"style_layers": ALL_LAYERS, "content_layers": ALL_LAYERS})
    assert len(other) == sweeps.MAX_STEM and other != png[:-4]  # distinct, by the hash
    assert sweeps.point_name(0, {"seed": 1}) == "000_seed-1"  # short names as they were
