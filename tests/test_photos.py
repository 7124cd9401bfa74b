"""Many photos (nst_jax.photos, and ``stylize.py --content DIR`` in nst_jax.apps.cli.photos) on
the tiny test-only VGG: the photos of a folder, grouped by shape, run as batches that give
the pixels of separate runs, in chunks, stopping cleanly; the command line writes one file
per photo with its metadata and refuses, in one line and before any work, what it cannot do.
"""
from __future__ import annotations

import signal

import numpy as np
import pytest
from PIL import Image

from nst_jax import batch, driver, images, photos, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import Config
from nst_jax.errors import NSTError
from nst_jax.inputs import Network
from nst_jax.stop import Stop
from nst_jax.vgg import CAFFE
from tests.test_cli import assert_one_line_error
from tests.test_paths_cli import snapshot

SIZE, ITERATIONS = 32, 4
# (H, W) of each photo file: three landscape ones (24x32 at --size 32) and one portrait.
SHAPES = {"a.png": (36, 48), "b.jpg": (30, 40), "c.png": (36, 48), "d.png": (48, 36)}


def _picture(rng, shape) -> np.ndarray:
    pixels = rng.random((*shape, 3))
    return ((pixels + np.roll(pixels, 1, 0) + np.roll(pixels, 1, 1)) / 3 * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def album(tmp_path_factory):
    """A folder of four photos (:data:`SHAPES`) and, beside it, a style image."""
    root = tmp_path_factory.mktemp("album")
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in SHAPES.items():
        Image.fromarray(_picture(rng, shape)).save(folder / name, quality=95)
    style = root / "style.png"
    Image.fromarray(_picture(rng, (36, 36))).save(style)
    return folder, style


@pytest.fixture(scope="module")
def net(tiny_vgg, tiny_params):
    return Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"})


@pytest.fixture(scope="module")
def config(album):
    return Config(style=(str(album[1]),), size=SIZE, iterations=ITERATIONS)


def _styles(config):
    return stylize.load_inputs(config, content=np.zeros((SIZE, SIZE, 3), np.float32)).styles


def _run(config, net, paths, **kwargs):
    """``{name: ItemResult}`` of a :class:`photos.PhotoRun` over ``paths``, and the run."""
    got = {}
    job = photos.PhotoRun(config, net, photos.scan(paths, config), _styles(config),
                          on_photo=lambda photo, result: got.setdefault(photo.path.name, result),
                          **kwargs)
    for _ in job:
        pass
    return got, job


@pytest.fixture(scope="module")
def separate(album, config, net):
    """Each landscape photo's image from a run of its own (stylize.prepare, as stylize.py
    runs it); the portrait one is left out, as one more compilation."""
    out = {}
    for path in sorted(album[0].glob("[abc].*")):
        job = stylize.prepare(photos.read(path, config), list(_styles(config)), net.params, config,
                              module=net.module, preprocessing=net.preprocessing)
        for _ in driver.advance(job, chunk=driver.CHUNK):
            pass
        out[path.name] = job.saved()
    return out


# --- listing, reading, grouping ----------------------------------------------------------


def test_a_folder_lists_its_images_sorted_without_hidden_files_or_others(tmp_path, album):
    folder = album[0]
    for name in (".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes((folder / "a.png").read_bytes())
    for name in ("z.JPG", "m.png"):
        (tmp_path / name).write_bytes((folder / "b.jpg").read_bytes())
    (tmp_path / "sub.png").mkdir()  # a folder, whatever its name
    assert [p.name for p in photos.list_photos([tmp_path])] == ["m.png", "z.JPG"]
    # several paths, in the order given, a folder among them standing for its photos; once each
    listed = photos.list_photos([folder / "d.png", tmp_path, str(folder / "d.png")])
    assert [p.name for p in listed] == ["d.png", "m.png", "z.JPG"]


def test_an_empty_folder_or_a_missing_photo_is_one_error(tmp_path):
    with pytest.raises(NSTError, match="holds no photos") as caught:
        photos.list_photos([tmp_path])
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(NSTError, match="nope.jpg does not exist"):
        photos.list_photos([tmp_path / "nope.jpg"])


def test_an_unreadable_photo_is_named(tmp_path, config):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a picture")
    with pytest.raises(NSTError, match="bad.jpg"):
        photos.scan([bad], config)


def test_photos_are_grouped_by_shape_in_order(album, config):
    scanned = photos.scan(photos.list_photos([album[0]]), config)
    groups = photos.group(scanned)
    assert [(g.shape, [p.path.name for p in g.photos]) for g in groups] == [
        ((24, 32), ["a.png", "b.jpg", "c.png"]), ((32, 24), ["d.png"])]


@pytest.mark.parametrize("change, needle", [
    ({"content_masks": ("m.png",)}, "--content-masks"),
    ({"start_size": 16}, "--start-size"),
    ({"tile_size": 64}, "--tile-size"),
    ({"normalize_network": True}, "--normalize-network"),
])
def test_what_a_batch_cannot_do_is_refused(config, net, change, needle):
    changed = config.replace(**change)
    with pytest.raises(NSTError, match=needle):
        photos.check(changed)
    with pytest.raises(NSTError, match=needle):
        photos.PhotoRun(changed, net, [photos.Photo(None, (24, 32))], [])


# --- the run -------------------------------------------------------------------------------


def test_a_batch_of_photos_gives_the_pixels_of_separate_runs(album, config, net, separate):
    got, job = _run(config, net, photos.list_photos([album[0]]))
    assert job.status == "completed" and job.done == 4 and not job.nonfinite
    assert [len(g.photos) for g in job.groups] == [3, 1]  # two sizes: two groups
    assert job.sizes == [3, 1]  # the memory model: the whole group fits
    assert sorted(got) == sorted(SHAPES)
    assert all(r.status == "completed" and r.iterations == ITERATIONS for r in got.values())
    for name, (image, total, terms) in separate.items():
        np.testing.assert_array_equal(got[name].image, image)  # bit for bit
        assert got[name].total == pytest.approx(total, rel=1e-5)


def test_a_group_larger_than_the_batch_runs_in_chunks(album, config, net, separate, monkeypatch):
    made = []
    real = batch.Batch

    def counted(config, network, contents, styles, **kwargs):
        made.append((len(contents), kwargs["size"]))
        return real(config, network, contents, styles, **kwargs)

    monkeypatch.setattr(photos.batching, "Batch", counted)
    paths = [album[0] / n for n in ("a.png", "b.jpg", "c.png")]
    got, job = _run(config, net, paths, batch_size=2)
    assert made == [(2, 2), (1, 2)]  # the last chunk padded: the same program
    assert job.describe() == "3 photo(s) in 1 group(s): 3 of 32x24 px (2 batches of 2)"
    for name, result in got.items():
        # Another batch size may sum in another order: a rare pixel one level off.
        difference = np.abs(result.image.astype(int) - separate[name][0].astype(int))
        assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


def test_a_stop_keeps_the_photos_done_and_drops_the_chunk_under_way(album, config, net):
    stop = Stop()
    paths = [album[0] / n for n in ("a.png", "b.jpg", "c.png")]
    job = photos.PhotoRun(config, net, photos.scan(paths, config), _styles(config),
                          batch_size=2, chunk=1, stop=stop,
                          on_photo=lambda photo, result: handed.append(photo.path.name))
    handed, seen = [], []
    for at in job:
        seen.append((at.done, at.running, at.iteration))
        if at.done == 2 and at.iteration == 1:  # the second chunk's first call
            stop.set()
    assert handed == ["a.png", "b.jpg"] and job.done == 2
    assert job.status == "stopped"
    assert seen == [(0, 2, 1), (0, 2, 2), (0, 2, 3), (0, 2, 4), (2, 0, 0), (2, 1, 1)]


# --- the command line -----------------------------------------------------------------------


@pytest.fixture
def tiny_cli(monkeypatch, tiny_vgg, tiny_params):
    """stylize.py on the tiny VGG: its weights are not read."""
    monkeypatch.setattr(stylize, "load_network", lambda config, content, styles, **kwargs:
                        Network(tiny_vgg, tiny_params, CAFFE, {"path": "tiny"}))


def _cli(args, capsys):
    code = runner.launch("nst_jax.apps.cli.stylize", [str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _fast(style):
    return ["--style", style, "--size", SIZE, "--iterations", ITERATIONS]


def test_a_folder_on_the_command_line_writes_one_file_per_photo(album, tmp_path, capsys,
                                                                 tiny_cli):
    folder, style = album
    out = tmp_path / "out"
    code, stdout, err = _cli(["--content", folder, *_fast(style), "--output", out], capsys)
    assert code == ExitCode.OK, err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
    assert stdout.splitlines() == [f"wrote {out / n}" for n in ("a.png", "b.png", "c.png", "d.png")]
    assert "4 photo(s) in 2 group(s)" in err and "photos/h" in err
    meta = images.read_png_metadata(out / "b.png")
    assert meta["nst_jax:source"] == str(folder / "b.jpg")
    assert meta["nst_jax:status"] == "completed" and meta["nst_jax:iterations_done"] == "4"
    assert f'"content": "{folder / "b.jpg"}"' in meta["nst_jax:config"]
    assert float(meta["nst_jax:loss_total"]) > 0 and meta["nst_jax:bit_depth"] == "8"
    # the same photo alone, in the single-image mode: the same pixels
    single = tmp_path / "single.png"
    code, _, err = _cli(["--content", folder / "b.jpg", *_fast(style), "--output", single], capsys)
    assert code == ExitCode.OK, err
    np.testing.assert_array_equal(np.asarray(Image.open(single)),
                                  np.asarray(Image.open(out / "b.png")))
    assert (images.read_png_metadata(single)["nst_jax:loss_total"] == meta["nst_jax:loss_total"])


def test_several_files_in_16_bits_as_tiff(album, tmp_path, capsys, tiny_cli):
    pytest.importorskip("tifffile")
    folder, style = album
    out = tmp_path / "prints"
    code, _, err = _cli(["--content", folder / "c.png", folder / "a.png", *_fast(style),
                         "--output", out, "--output-format", "tif", "--bit-depth", "16",
                         "--batch-size", "2", "--quiet"], capsys)
    assert code == ExitCode.OK, err
    assert err == ""
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "c.tif"]
    assert images.read_metadata(out / "a.tif")["nst_jax:bit_depth"] == "16"


@pytest.mark.parametrize("extra, needle", [
    (["--content-masks", "{mask}"], "--content-masks"),
    (["--start-size", "16"], "--start-size"),
    (["--tile-size", "64"], "--tile-size"),
    (["--normalize-network"], "--normalize-network"),
    (["--save-every", "2"], "--save-every"),
    (["--checkpoint-every", "2"], "--checkpoint-every"),
    (["--resume"], "--resume"),
    (["--batch-size", "-1"], "--batch-size must be >= 0"),
    (["--output", "{tmp}/out.png"], "names the folder"),
    (["--output", "{tmp}/no/such/out"], "does not exist"),
    (["--output", "{photos}"], "would replace"),  # PNG photos, written where they are
])
def test_what_many_photos_cannot_do_is_one_line_before_any_work(album, tmp_path, capsys, extra,
                                                                 needle, monkeypatch):
    folder, style = album
    monkeypatch.setattr(stylize, "load_inputs", lambda *a, **k: pytest.fail("read the images"))
    values = {"mask": folder / "a.png", "tmp": tmp_path, "photos": folder}
    before = snapshot(tmp_path), snapshot(folder)
    code, _, err = _cli(["--content", folder, *_fast(style),
                         *[e.format(**values) for e in extra]], capsys)
    assert code == ExitCode.ERROR
    assert_one_line_error(code, err, needle)
    assert (snapshot(tmp_path), snapshot(folder)) == before


def test_an_empty_folder_two_photos_of_one_name_and_a_bad_photo_are_one_line(album, tmp_path,
                                                                              capsys, tiny_cli):
    folder, style = album
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    code, _, err = _cli(["--content", empty, *_fast(style), "--output", out], capsys)
    assert_one_line_error(code, err, "holds no photos", str(empty))
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes((folder / "b.jpg").read_bytes())
    code, _, err = _cli(["--content", folder / "a.png", other / "a.jpg", *_fast(style),
                         "--output", out], capsys)
    assert_one_line_error(code, err, "would both be written", "a.png")
    (other / "broken.png").write_text("not a picture")
    code, _, err = _cli(["--content", other, *_fast(style), "--output", out], capsys)
    assert_one_line_error(code, err, "broken.png")
    assert code == ExitCode.ERROR and not out.exists()
    # the flags of many photos are refused with one image
    code, _, err = _cli(["--content", folder / "a.png", *_fast(style), "--batch-size", "2",
                         "--output", tmp_path / "x.png"], capsys)
    assert_one_line_error(code, err, "--batch-size is for many photos")


def test_ctrl_c_keeps_the_photos_written_and_says_how_many(album, tmp_path, capsys, tiny_cli,
                                                           monkeypatch):
    folder, style = album
    real_step, calls = batch.Batch.step, []

    def interrupted(self, n):
        calls.append(n)
        if len(calls) == 2:  # Ctrl-C in the second batch: it is dropped
            signal.raise_signal(signal.SIGINT)
            return None
        return real_step(self, n)

    monkeypatch.setattr(batch.Batch, "step", interrupted)
    out = tmp_path / "out"
    code, stdout, err = _cli(["--content", folder, *_fast(style), "--output", out,
                              "--batch-size", "2"], capsys)
    assert code == ExitCode.INTERRUPTED
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [f"interrupted: 2 of 4 photos were written to {out}; the 2 others were not "
                     "(the batch under way was dropped)"]
    assert "Traceback" not in err
