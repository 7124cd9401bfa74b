"""The benchmark's many-photos case (nst_jax.apps.benchmark.cases.photos): its flags, its runs
with stand-in tools, its table, and the real stylize.py at a tiny size."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from nst_jax import images
from nst_jax.apps.benchmark import bench
from nst_jax.apps.benchmark.cases import KINDS, photos as case
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from tests.test_cli import assert_one_line_error


def test_the_kind_is_registered_and_off_unless_asked():
    assert KINDS["photos"] is case and case.CASE is None and case.STANDALONE
    args = bench.parser().parse_args(["--sizes", ""])
    assert case.plan(args) is None
    args = bench.parser().parse_args(["--sizes", "", "--photos", "8"])
    assert case.plan(args) == {"photos": 8, "size": 256, "iterations": 200, "checkout": None}


@pytest.mark.parametrize("flags, needle", [
    (["--photos", "2", "--photos-size", "16"], "must be >= 32"),
    (["--photos", "-1"], "--photos must be >= 0"),
    (["--photos", "2", "--photos-iterations", "0"], "--photos-iterations >= 1"),
    (["--photos", "2", "--photos-peer", "/no/such/checkout"], "neural-style-pt checkout"),
])
def test_bad_flags_are_one_line_errors(capsys, flags, needle):
    code = runner.launch("nst_jax.apps.benchmark.bench", ["--sizes", "", *flags])
    assert code == ExitCode.ERROR
    assert_one_line_error(code, capsys.readouterr().err, needle)


def test_the_photos_share_one_shape_and_differ(tmp_path):
    made = case.make_photos(tmp_path, 5, 64)
    pixels = [images.load_image(p) for p in made]
    assert {p.shape for p in pixels} == {(48, 64, 3)}
    assert len({p.tobytes() for p in pixels}) == 5


class FakeTools:
    """Each run 'takes' a start-up and a cost per photo, and writes what stylize.py would."""

    def __init__(self, startup, per_photo):
        self.startup, self.per_photo, self.calls = startup, per_photo, []

    def run(self, tool, content, style, size, iterations, output, extra=(), timeout=None):
        self.calls.append((tool, pathlib.Path(content).name, iterations))
        content = pathlib.Path(content)
        photos = sorted(content.iterdir()) if content.is_dir() else [content]
        out = pathlib.Path(output)
        if content.is_dir():
            out.mkdir()
        for photo in photos:
            target = out / f"{photo.stem}.png" if content.is_dir() else out
            Image.fromarray(np.full((4, 4, 3), len(photo.stem), np.uint8)).save(target)
        seconds = self.startup[tool] + self.per_photo[tool] * len(photos)
        return seconds, seconds


def test_the_batch_against_separate_runs_and_the_peer(tmp_path):
    made = case.make_photos(tmp_path / "photos", 4, 32)
    tools = FakeTools({"nst_jax": 10.0, "peer": 5.0}, {"nst_jax": 2.0, "peer": 4.0})
    result = case.measure(tools, tmp_path, made, "style.png", 32, 50, peer=True,
                          log=lambda m: None)
    assert [c[:2] for c in tools.calls] == (
        [("nst_jax", "photos")] * 2 + [("nst_jax", p.name) for p in made]
        + [("peer", p.name) for p in made])
    # the batch: 10 + 4 x 2 = 18 s for 4 photos; separately 4 x 12 = 48 s; the peer 4 x 9 = 36 s
    assert result["batch"]["photos_per_hour"] == pytest.approx(4 * 3600 / 18)
    assert result["separate"]["total_s"] == pytest.approx(48)
    assert result["speedup"] == pytest.approx(48 / 18)
    assert result["speedup_peer"] == pytest.approx(36 / 18)
    assert result["pixel_difference"] == 0
    table = "\n".join(case.markdown({"photos": [result]}))
    assert ("| 32 | 4 | 50 | one batch, repeated (mean |difference| to the separate runs' "
            "pixels: 0.00 levels) | 18.0 | 800 | |") in table
    assert "| 32 | 4 | 50 | 4 x stylize.py | 48.0 | 300 | 2.67x |" in table
    assert "| 32 | 4 | 50 | 4 x neural-style-pt | 36.0 | 400 | 2.00x |" in table
    failed = case.markdown({"photos": [{"size": 32, "photos": 4, "iterations": 50,
                                        "error": "boom"}]})
    assert "| 32 | 4 | 50 | failed: boom | | | |" in failed
    assert case.markdown({}) == []


def test_the_real_tools_at_a_tiny_size(real_weights):
    results = {}
    case.run(results, photos=2, size=32, iterations=2, log=lambda m: None)
    (result,) = results["photos"]
    assert "error" not in result, result
    assert result["pixel_difference"] == 0  # at 32 px, 2 iterations: the separate runs' pixels
    assert result["batch"]["first_s"] > 0 and len(result["separate"]["seconds"]) == 2
    assert "peer" not in result
    assert "2 x stylize.py" in "\n".join(case.markdown(results))
