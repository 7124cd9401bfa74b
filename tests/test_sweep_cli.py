"""``scripts/sweep.py`` (``nst_jax.apps.cli.sweep``): the outputs of a grid (real weights, 32 px),
the labels, bad input."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys

import pytest

from nst_jax import images
from nst_jax.apps.common import runner
from nst_jax.apps.cli import sweep as sweep_cli
from nst_jax.apps.common import sweeps
from nst_jax.apps.common.runner import ExitCode
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, wait_for_line

FAST = ["--size", "32", "--iterations", "3"]


def run_sweep(args, capsys):
    code = runner.launch("nst_jax.apps.cli.sweep", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_grid_writes_pngs_curves_sheet_and_tables(real_weights, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "grid"
    code, stdout, err = run_sweep(["--content", content, "--style", style, "--output-dir", out,
                                   *FAST, "--ratios", "1e-4,10", "--content-layers",
                                   "conv2_2,conv4_2", "--seeds", "0,3000000000", "--batch-size", "3"],
                         capsys)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    assert "chunk 3/3, points done 8/8" in err  # 8 points in chunks of 3
    document = json.loads((out / "results.json").read_text())
    assert document["points_done"] == document["points"] == 8
    assert document["axes"] == {"ratio": ["1e-4", "10"], "content_layers": ["conv2_2", "conv4_2"],
                                "seed": ["0", "3000000000"]}
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 8 and rows[5]["ratio"] == "10.0" and rows[5]["content_layers"] == "conv2_2"
    assert rows[5]["seed"] == "3000000000" and rows[5]["status"] == "completed"
    for row, entry in zip(rows, document["results"]):
        assert float(row["total"]) > 0 and float(row["content"]) > 0 and float(row["style"]) > 0
        picture = images.load_image(out / entry["file"])
        assert picture.shape == (27, 32, 3)  # the content image's 40x48 at --size 32
        assert (out / entry["file"].replace(".png", "_loss.png")).is_file()
        meta = json.loads(images.read_png_metadata(out / entry["file"])["nst_jax:point"])
        assert meta["index"] == int(row["index"])
    # The ratio axis changes the balance: more content weight, lower content loss.
    assert "seconds" not in document  # nothing that changes between identical runs
    by = {(r["ratio"], r["content_layers"], r["seed"]): r for r in rows}
    assert float(by[("10.0", "conv4_2", "0")]["content"]) < float(by[("0.0001", "conv4_2", "0")]["content"])
    sheet = images.load_image(out / "contact_sheet.png")
    assert sheet.shape[0] > 4 * 32 and sheet.shape[1] > 2 * 32  # 4 rows x 2 columns plus labels


def test_layout_rows_and_columns_are_the_swept_axes():
    from nst_jax.stylize import Config
    from nst_jax.sweep import Grid

    grid = Grid.product(Config(), ratio=[1e-4, 1e-3], tv_weight=[0.0], seed=[0, 1, 2])
    layout = sweeps.sheet_layout(grid)
    assert (layout.rows, layout.cols, layout.col_title) == (2, 3, "seed")
    assert layout.row_labels == ["ratio=1e-4", "ratio=1e-3"] and layout.col_labels == ["0", "1", "2"]
    single = sweeps.sheet_layout(Grid.product(Config()))
    assert (single.rows, single.cols) == (1, 1)


def test_labels_and_file_names():
    assert sweeps.format_value(1e-3) == "1e-3" and sweeps.format_value(0.5) == "0.5"
    assert sweeps.format_value(("conv1_1", "conv2_1")) == "conv1_1+conv2_1"
    assert sweeps.point_name(3, {"ratio": 1e-5, "init": "noise"}) == "003_ratio-1e-5_init-noise"
    assert "/" not in sweeps.point_name(0, {"x": "a/b c"})


def test_style_layer_sets_and_weights_parse():
    parser, flags = sweep_cli.build_parser()
    args = parser.parse_args(["--style-layers", "conv1_1,conv1_1+conv2_1", "--inits", "noise,content"])
    grid = sweep_cli.make_grid(args, flags)
    assert grid.shape == (2, 2) and grid.configs[2].style_layers == ("conv1_1", "conv2_1")
    args = parser.parse_args(["--style-layer-weights", "1,0,0,0,0;0.2,0.2,0.2,0.2,0.2"])
    assert sweep_cli.make_grid(args, flags).configs[0].style_layer_weights == (1.0, 0.0, 0.0, 0.0, 0.0)


def test_real_sigint_keeps_the_finished_chunks(real_weights, image_files, tmp_path):
    content, style = image_files
    out = tmp_path / "int"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "sweep.py"), "--content", str(content), "--style",
         str(style), "--output-dir", str(out), "--size", "32", "--iterations", "100000",
         "--tolerance", "0", "--seeds", "0,1", "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    seen = wait_for_line(proc, "chunk 1/2")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == ExitCode.INTERRUPTED, seen + err
    assert "Traceback" not in err and "interrupted" in err
    document = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in document["results"]] == ["interrupted"]
    assert (out / "contact_sheet.png").is_file()
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("flags, needles", [
    (["--ratios", "1e-3", "--alphas", "1"], ["--ratios"]),
    (["--content-layers", "conv9_1"], ["conv9_1"]),
    (["--inits", "image.png"], ["noise, content, style"]),
    (["--iterations", "0"], ["iterations"]),
    (["--batch-size", "-1"], ["batch-size"]),
    (["--tolerance", "2"], ["tolerance"]),
    (["--style-layer-weights", "1,2"], ["--style-layer-weights has 2 weight(s) for 5 style layer(s)"]),
])
def test_bad_flags_one_line(flags, needles, image_files, tmp_path, capsys):
    content, style = image_files
    out = tmp_path / "never"
    code, _, err = run_sweep(["--content", content, "--style", style, "--output-dir", out, *FAST,
                              *flags], capsys)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()


def test_unwritable_output_dir(image_files, tmp_path, capsys):
    content, style = image_files
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_sweep(["--content", content, "--style", style, "--output-dir",
                              blocker / "sub", *FAST], capsys)
    assert_one_line_error(code, err, "output folder")


def test_missing_image(tmp_path, capsys):
    code, _, err = run_sweep(["--content", tmp_path / "nope.png", "--output-dir", tmp_path / "o",
                              *FAST], capsys)
    assert_one_line_error(code, err, "nope.png")


def test_help_lists_the_axes():
    text = " ".join(sweep_cli.build_parser()[0].format_help().split())
    for flag in ("--ratios", "--content-layers", "--style-layers", "--style-layer-weights",
                 "--tv-weights", "--inits", "--seeds", "--batch-size", "--output-dir"):
        assert flag in text


def test_ratios_beyond_float32_are_refused(image_files, tmp_path, capsys):
    """Defect: --ratios 1e300 overflowed in the float32 cast (RuntimeWarnings) and the
    points ended non-finite (exit 3)."""
    content, style = image_files
    out = tmp_path / "never"
    code, _, err = run_sweep(["--content", content, "--style", style, "--output-dir", out, *FAST,
                              "--ratios", "1e-3,1e300"], capsys)
    assert_one_line_error(code, err, "--ratios must be at most 1e+08, got 1e+300")
    assert code == ExitCode.ERROR and "Warning" not in err
    assert not out.exists()


def test_a_point_larger_than_memory_is_refused_before_any_work(real_weights, image_files,
                                                              tmp_path, capsys, monkeypatch):
    from nst_jax import memory

    monkeypatch.setattr(memory, "machine_memory", lambda: 1e8)  # 0.1 GB: not even the process
    content, style = image_files
    out = tmp_path / "new" / "sweep"
    code, _, err = run_sweep(["--content", content, "--style", style, "--output-dir", out, *FAST,
                              "--seeds", "0,1"], capsys)
    assert_one_line_error(code, err, "one point of this sweep at 32x27 px needs about",
                          "more than the 0.1 GB of memory here")
    assert code == ExitCode.ERROR
    assert not (tmp_path / "new").exists()


def test_out_of_memory_names_batch_size_and_leaves_no_empty_folder(real_weights, image_files,
                                                                   tmp_path, capsys, monkeypatch):
    """Defect: 10,000 points said "try a smaller --size" (--batch-size is the advice) and
    left an empty output folder."""
    from nst_jax import sweep

    def exhausted(self, grid, **kwargs):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 36.00GiB")

    monkeypatch.setattr(sweep.Sweeper, "run", exhausted)
    content, style = image_files
    out = tmp_path / "new" / "sweep"
    code, _, err = run_sweep(["--content", content, "--style", style, "--output-dir", out, *FAST,
                              "--seeds", "0,1,2,3", "--batch-size", "4", "--quiet"], capsys)
    assert_one_line_error(code, err, "out of memory with 4 points per compiled call at 32x27 px",
                          "try a smaller --batch-size (e.g. 2)")
    assert code == ExitCode.FAILED
    assert not (tmp_path / "new").exists()
