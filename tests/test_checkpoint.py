"""Checkpoints (``nst_jax.checkpoint``, ``--checkpoint-every`` / ``--resume``): a resumed run
equals the uninterrupted one bit for bit, a checkpoint of another run is refused in one line,
and a save cut short leaves the previous checkpoint intact."""
from __future__ import annotations

import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from nst_jax import checkpoint, coarse_to_fine, images, optimize, stylize
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.config import Config
from nst_jax.errors import NSTError
from tests.conftest import REPO
from tests.test_cli import assert_one_line_error, run_cli


def compilations(step) -> int:
    """How many programs a jitted function (or a partial of one) has compiled."""
    return getattr(step, "func", step)._cache_size()


@pytest.fixture(scope="module")
def pictures():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:32, 0:40] / 40.0
    content = np.stack([yy, xx, 0.5 + 0.3 * np.sin(8 * xx)], -1).astype(np.float32)
    return np.clip(content, 0, 1), rng.random((36, 36, 3)).astype(np.float32)


def assert_same_state(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # NaN == NaN here


def quadratic(x):
    return jax.numpy.sum(x**2), ()


def with_aux(x):
    return jax.numpy.sum(x**2), {"a": jax.numpy.sum(x)}


def position(state, scale=0, scales=1):
    return {"scale": scale, "scales": scales, "size": state.pixels.shape[1],
            "iteration": int(state.iteration), "shape": list(state.pixels.shape)}


@pytest.mark.parametrize("optimizer", ["lbfgs-stepwise", "adam"])
def test_20_iterations_equal_10_plus_a_resumed_10_bit_for_bit(tiny_vgg, tiny_params, pictures,
                                                                tmp_path, optimizer):
    """A run of 10 iterations, saved, restored into a run of 20 (its trace grows) and run
    10 more, ends exactly where 20 iterations in one go do: every leaf of the state, the
    optimiser's memory and line search included. (The CLI test below resumes a run with
    the same --iterations.)"""
    content, style = pictures
    config = Config(iterations=20, beta=1e2, optimizer=optimizer)
    whole = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    whole.step(20)
    first = stylize.prepare(content, style, tiny_params, config.replace(iterations=10),
                            module=tiny_vgg)
    first.step(10)
    fingerprint = checkpoint.fingerprint(config, {})
    assert checkpoint.save(tmp_path / "ck", 10, first.state, fingerprint, position(first.state))
    assert not checkpoint.save(tmp_path / "ck", 10, first.state, fingerprint, position(first.state))
    meta = checkpoint.read(tmp_path / "ck")
    assert meta["step"] == 10 and meta["fingerprint"] == fingerprint
    assert meta["position"]["trace_length"] == 10
    resumed = stylize.prepare(content, style, tiny_params, config, module=tiny_vgg)
    resumed.state = checkpoint.restore(tmp_path / "ck", resumed.state, meta)
    assert int(resumed.state.iteration) == 10 and resumed.state.trace.value.shape == (20,)
    resumed.step(10)
    assert_same_state(resumed.state, whole.state)
    assert compilations(resumed._run) == 1  # the restored state did not recompile the step
    # a state cannot be continued with fewer iterations than it has done
    with pytest.raises(NSTError, match="done 10 iterations"):
        checkpoint.resize_trace(first.state, 5)


def test_resize_trace_pads_as_init_does():
    fun = with_aux
    settings = optimize.Settings(method="adam")
    solver = optimize.make_solver(fun, settings)
    state = optimize.run(solver, optimize.init(solver, fun, jax.numpy.ones(3), 4), 2)
    longer = checkpoint.resize_trace(state, 6)
    fresh = optimize.init(solver, fun, jax.numpy.ones(3), 6)
    np.testing.assert_array_equal(longer.trace.value[2:], fresh.trace.value[2:])
    np.testing.assert_array_equal(longer.trace.evaluations[2:], fresh.trace.evaluations[2:])
    np.testing.assert_array_equal(longer.trace.value[:2], state.trace.value[:2])
    assert checkpoint.resize_trace(state, 2).trace.value.shape == (2,)


def test_a_checkpoint_of_another_run_is_refused_in_one_line(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(photo)
    base = Config(content=str(photo), size=32)
    saved = checkpoint.fingerprint(base, {"path": "a.h5", "params_sha256": "x"})

    def check(config, info=None):
        checkpoint.check_fingerprint(saved, checkpoint.fingerprint(
            config, info or {"path": "elsewhere.h5", "params_sha256": "x"}), tmp_path / "ck")

    check(base.replace(iterations=500))  # more iterations: fine
    moved = tmp_path / "moved.png"
    shutil.copy(photo, moved)
    check(base.replace(content=str(moved)))  # the same file elsewhere: fine
    for config, info, needle in (
            (base.replace(size=48), None, "size 48 (the checkpoint's: 32)"),
            (base.replace(ratio=1e-2, seed=3), None, "seed 3 (the checkpoint's: 0)"),
            (base.replace(start_size=16), None, "start_size 16 (the checkpoint's: null)"),
            (base, {"path": "a.h5", "params_sha256": "y"}, "the weights"),
    ):
        with pytest.raises(NSTError) as e:
            check(config, info)
        assert "\n" not in str(e.value) and needle in str(e.value), str(e.value)
        assert "is of another run" in str(e.value) and "remove" in str(e.value)
    Image.new("RGB", (40, 30), (10, 200, 31)).save(moved)  # edited: refused
    with pytest.raises(NSTError, match="the content file's contents"):
        check(base.replace(content=str(moved)))


def test_restore_refuses_an_image_of_another_shape(tmp_path):
    fun = quadratic
    solver = optimize.make_solver(fun, optimize.Settings(method="adam"))
    state = optimize.init(solver, fun, jax.numpy.ones((4, 5, 3)), 3)
    checkpoint.save(tmp_path / "ck", 1, state, {}, position(state))
    other = optimize.init(solver, fun, jax.numpy.ones((4, 6, 3)), 3)
    with pytest.raises(NSTError, match="shape"):
        checkpoint.restore(tmp_path / "ck", other, checkpoint.read(tmp_path / "ck"))


def test_folders_that_cannot_hold_a_checkpoint(tmp_path):
    assert checkpoint.read(tmp_path / "none") is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(NSTError, match="it is a file"):
        checkpoint.check_folder(tmp_path / "file")
    with pytest.raises(NSTError, match="does not exist"):
        checkpoint.check_folder(tmp_path / "missing" / "ck")
    assert checkpoint.check_folder(tmp_path / "ck") == tmp_path / "ck"
    assert not (tmp_path / "ck").exists()  # created by the first save, not before
    (tmp_path / "ck").mkdir()
    assert checkpoint.check_folder(tmp_path / "ck") == tmp_path / "ck"
    assert checkpoint.read(tmp_path / "ck") is None  # an empty folder holds no checkpoint
    assert checkpoint.default_path("out/run.png").as_posix() == "out/run.ckpt"


KILLED_MID_SAVE = """
import os, signal, sys
import jax.numpy as jnp
import orbax.checkpoint as ocp
from nst_jax import checkpoint, optimize

fun = lambda x: (jnp.sum(x ** 2), ())
solver = optimize.make_solver(fun, optimize.Settings(method="adam"))
state = optimize.init(solver, fun, jnp.ones((4, 5, 3)), 3)
position = {"scale": 0, "scales": 1, "size": 5, "iteration": 0, "shape": [4, 5, 3]}
checkpoint.save(sys.argv[1], 1, state, {}, position)

def die(self, *args, **kwargs):  # every item is written, the step folder not yet renamed
    os.kill(os.getpid(), signal.SIGKILL)

ocp.CompositeCheckpointHandler.finalize = die
checkpoint.save(sys.argv[1], 2, state._replace(pixels=state.pixels * 2), {}, position)
"""


def test_a_save_cut_short_leaves_the_previous_checkpoint(tmp_path):
    folder = tmp_path / "ck"
    done = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(folder)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == -9, done.stderr[-2000:]
    assert any("tmp" in p.name for p in folder.iterdir())  # the unfinished step is there
    meta = checkpoint.read(folder)
    assert meta["step"] == 1
    fun = quadratic
    solver = optimize.make_solver(fun, optimize.Settings(method="adam"))
    like = optimize.init(solver, fun, jax.numpy.zeros((4, 5, 3)), 3)
    np.testing.assert_array_equal(checkpoint.restore(folder, like, meta).pixels, np.ones((4, 5, 3)))
    checkpoint.save(folder, 2, like, {}, meta["position"])  # and saving goes on
    assert sorted(p.name for p in folder.iterdir()) == ["2"]


# --- the command line, on the real weights ------------------------------------------------


def interrupt_after(monkeypatch, calls_before: int, when=lambda job: True):
    """A Ctrl-C (SIGINT, to the runner's handler, which sets the run's stop token) just
    before ``Stylization.step``'s call number ``calls_before + 1`` among those where
    ``when(job)``; that call then does nothing, as if the Ctrl-C came after the chunk
    before it."""
    real_step = stylize.Stylization.step
    calls = []

    def step(self, n):
        if when(self):
            calls.append(n)
            if len(calls) > calls_before:
                signal.raise_signal(signal.SIGINT)
                return self.state
        return real_step(self, n)

    monkeypatch.setattr(stylize.Stylization, "step", step)
    return lambda: monkeypatch.setattr(stylize.Stylization, "step", real_step)


def pixels_and_loss(path):
    meta = images.read_png_metadata(path)
    return np.asarray(Image.open(path)), meta["nst_jax:loss_total"], meta


def test_cli_20_iterations_equal_10_plus_a_resumed_10(real_weights, image_files, tmp_path, capsys,
                                                      monkeypatch):
    content, style = image_files
    common = ["--content", content, "--style", style, "--size", "32", "--iterations", "20"]
    code, _, err = run_cli([*common, "--output", tmp_path / "whole.png"], capsys)
    assert code == 0, err
    restore_step = interrupt_after(monkeypatch, 1)  # Ctrl-C after the first 10 iterations
    out = tmp_path / "parts.png"
    code, _, err = run_cli([*common, "--output", out, "--checkpoint-every", "10"], capsys)
    assert code == ExitCode.INTERRUPTED, err
    assert f"interrupted at iteration 10/20; saved the best image so far to {out}; --resume " \
           f"continues from {tmp_path / 'parts.ckpt'}" in err
    assert checkpoint.read(tmp_path / "parts.ckpt")["position"]["iteration"] == 10
    restore_step()
    code, _, err = run_cli([*common, "--output", out, "--resume"], capsys)
    assert code == 0, err
    assert "resuming from" in err and "at iteration 10" in err
    whole, whole_loss, _ = pixels_and_loss(tmp_path / "whole.png")
    parts, parts_loss, meta = pixels_and_loss(out)
    np.testing.assert_array_equal(parts, whole)
    assert parts_loss == whole_loss and meta["nst_jax:iterations_done"] == "20"


def test_coarse_to_fine_resumed_in_its_second_scale_bit_for_bit(tiny_vgg, tiny_params, tmp_path):
    """Saved 2 iterations into the last scale, then resumed from that scale alone (the
    earlier scales are not run again): the same final state as without the break."""
    rng = np.random.default_rng(2)
    for name in ("content", "style"):
        Image.fromarray((rng.random((32, 40, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"{name}.png")
    config = Config(content=str(tmp_path / "content.png"), style=str(tmp_path / "style.png"),
                    size=40, start_size=24, iterations=5, coarse_iterations=3, beta=1e2)
    network = stylize.Network(tiny_vgg, tiny_params, stylize.CAFFE, {})
    fingerprint = checkpoint.fingerprint(config, network.info)
    for scale, job in coarse_to_fine.stylizations(config, network):
        if scale.last:
            job.step(2)
            checkpoint.save(tmp_path / "ck", 3 + 2, job.state, fingerprint,
                            position(job.state, scale.index, scale.count))
        job.step(5)
    meta = checkpoint.read(tmp_path / "ck")
    checkpoint.check_fingerprint(meta["fingerprint"], fingerprint, tmp_path / "ck")
    scales = list(coarse_to_fine.stylizations(config, network, first=meta["position"]["scale"]))
    (scale, resumed), = scales  # one scale left: the last
    assert scale.last
    resumed.state = checkpoint.restore(tmp_path / "ck", resumed.state, meta)
    resumed.step(5)
    assert_same_state(resumed.state, job.state)


def test_cli_coarse_to_fine_interrupted_and_resumed(real_weights, image_files, tmp_path, capsys,
                                                   monkeypatch):
    content, style = image_files
    common = ["--content", content, "--style", style, "--size", "48", "--start-size", "32",
              "--iterations", "6", "--coarse-iterations", "4", "--save-every", "2"]
    # Ctrl-C during the last scale, after its first 2 iterations
    restore_step = interrupt_after(monkeypatch, 1, when=lambda job: job.config.size == 48)
    out = tmp_path / "run.png"
    code, _, err = run_cli([*common, "--output", out, "--checkpoint-every", "2"], capsys)
    assert code == ExitCode.INTERRUPTED, err
    assert "coarse to fine: 32, 48 px, 4 iterations at each scale before the last" in err
    assert "stylizing (scale 1/2, 32 px)" in err and "stylizing (scale 2/2, 48 px)" in err
    assert f"interrupted at scale 2/2, 48 px, iteration 2/6; saved the best image so far to " \
           f"{out}; --resume continues from {tmp_path / 'run.ckpt'}" in err
    assert Image.open(tmp_path / "run_scale1_iter00002.png").size == (32, 27)
    assert Image.open(tmp_path / "run_scale2_iter00002.png").size == (48, 40)
    assert images.read_png_metadata(out)["nst_jax:scale"] == "2/2"
    restore_step()
    code, _, err = run_cli([*common, "--output", out, "--resume"], capsys)
    assert code == 0, err
    assert "resuming from" in err and "at scale 2/2 (48 px), iteration 2" in err
    assert "scale 1/2" not in err  # the first scale is not run again
    meta = images.read_png_metadata(out)
    assert Image.open(out).size == (48, 40) and meta["nst_jax:status"] == "completed"
    assert meta["nst_jax:iterations_done"] == "6" and meta["nst_jax:scale"] == "2/2"


def test_cli_refusals_are_one_line_before_any_work(real_weights, image_files, tmp_path, capsys):
    content, style = image_files
    common = ["--content", content, "--style", style, "--size", "32", "--iterations", "2"]
    out = tmp_path / "o.png"

    def refused(args, *needles):
        code, _, err = run_cli([*common, "--output", out, *args], capsys)
        assert code == ExitCode.ERROR
        assert_one_line_error(code, err, *needles)

    refused(["--resume"], "--resume: there is no checkpoint in", "o.ckpt")
    refused(["--checkpoint", tmp_path / "x"], "--checkpoint needs --checkpoint-every")
    refused(["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0")
    refused(["--coarse-iterations", "5"], "--coarse-iterations needs --start-size")
    refused(["--start-size", "64"], "--start-size must not exceed --size (32)")
    (tmp_path / "file").write_text("x")
    refused(["--checkpoint-every", "1", "--checkpoint", tmp_path / "file"], "it is a file")
    refused(["--checkpoint-every", "1", "--checkpoint", tmp_path / "no" / "ck"], "does not exist")
    assert not out.exists()
    code, _, err = run_cli([*common, "--output", out, "--checkpoint-every", "1"], capsys)
    assert code == 0, err
    refused(["--checkpoint-every", "1"], "already holds a checkpoint", "--resume")
    out.unlink()
    refused(["--resume", "--size", "48"], "is of another run", "size 48 (the checkpoint's: 32)")
    refused(["--resume", "--iterations", "1"], "--iterations 1 is fewer than the 2")
    assert not out.exists()


# --- what a run leaves when it stops early, and damaged checkpoints (issue 21, items 8, 9) ---


def small_state(value: float = 1.0):
    solver = optimize.make_solver(quadratic, optimize.Settings(method="adam"))
    state = optimize.init(solver, quadratic, jax.numpy.full((4, 5, 3), value), 3)
    return state, position(state)


def test_a_failed_first_save_leaves_no_folder(tmp_path, monkeypatch):
    import orbax.checkpoint as ocp

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ocp.CompositeCheckpointHandler, "finalize", full_disk)
    state, where = small_state()
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / "ck", 1, state, {}, where)
    assert not (tmp_path / "ck").exists()


def test_unfinished_saves_are_removed_and_the_complete_step_kept(tmp_path):
    folder = tmp_path / "ck"
    state, where = small_state()
    checkpoint.save(folder, 10, state, {}, where)
    shutil.copytree(folder / "10", folder / "20.orbax-checkpoint-tmp")  # a save cut short
    shutil.copytree(folder / "10", folder / "30.orbax-checkpoint-tmp-1733150000")
    assert checkpoint.remove_unfinished(folder) == ["20.orbax-checkpoint-tmp",
                                                    "30.orbax-checkpoint-tmp-1733150000"]
    assert sorted(p.name for p in folder.iterdir()) == ["10"]
    assert checkpoint.read(folder)["step"] == 10
    assert checkpoint.remove_unfinished(folder) == []
    (folder / "10").rename(folder / "10.orbax-checkpoint-tmp")  # nothing complete: all goes
    assert checkpoint.remove_unfinished(folder) == ["10.orbax-checkpoint-tmp"]
    assert not folder.exists()


STOPPED_MID_SAVE = """
import signal, sys
import jax.numpy as jnp
import orbax.checkpoint as ocp
from nst_jax import checkpoint, optimize
from nst_jax.apps.common import runner

fun = lambda x: (jnp.sum(x ** 2), ())
solver = optimize.make_solver(fun, optimize.Settings(method="adam"))
state = optimize.init(solver, fun, jnp.ones((4, 5, 3)), 3)
position = {"scale": 0, "scales": 1, "size": 5, "iteration": 0, "shape": [4, 5, 3]}
if sys.argv[2] == "second":
    checkpoint.save(sys.argv[1], 1, state, {}, position)
runner.on_exit_now(checkpoint.remove_partial_saves)  # as nst_jax.apps.cli.stylize does

def three_ctrl_cs(self, *args, **kwargs):  # every item is written, the step folder not yet renamed
    for _ in range(runner.AT_ONCE):
        runner._on_sigint(signal.SIGINT, None)

ocp.CompositeCheckpointHandler.finalize = three_ctrl_cs
checkpoint.save(sys.argv[1], 2, state._replace(pixels=state.pixels * 2), {}, position)
"""


@pytest.mark.parametrize("which", ["first", "second"])
def test_three_ctrl_cs_mid_save_remove_the_unfinished_save(tmp_path, which):
    """The third Ctrl-C stops the process at once, in the middle of a save: its temporary
    step folder goes, and the folder too if that save made it; a checkpoint before stays."""
    folder = tmp_path / "ck"
    done = subprocess.run([sys.executable, "-c", STOPPED_MID_SAVE, str(folder), which], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == ExitCode.INTERRUPTED, done.stderr[-2000:]
    assert "stopped at once after 3 Ctrl-Cs" in done.stderr
    if which == "first":
        assert not folder.exists()
    else:
        assert sorted(p.name for p in folder.iterdir()) == ["1"]


@pytest.fixture
def tiny_network(monkeypatch, tiny_vgg, tiny_params):
    """The command line on the tiny VGG (its logic, not its looks): no weights to load."""
    network = stylize.Network(tiny_vgg, tiny_params, stylize.CAFFE, {"params_sha256": "tiny"})
    monkeypatch.setattr(stylize, "load_network", lambda *args, **kwargs: network)
    return network


@pytest.mark.parametrize("case", ["missing style", "black mask", "start size too thin"])
def test_a_run_that_fails_early_leaves_no_checkpoint_folder(tiny_network, image_files, tmp_path,
                                                            capsys, case):
    content, style = image_files
    args = {"missing style": ["--content", content, "--style", tmp_path / "none.jpg"],
            "black mask": ["--content", content, "--style", style, "--content-masks",
                           tmp_path / "black.png", "--style-masks", tmp_path / "black.png"],
            "start size too thin": ["--content", tmp_path / "thin.png", "--style", style,
                                    "--size", "96", "--start-size", "32"]}[case]
    Image.new("L", (48, 40), 0).save(tmp_path / "black.png")
    Image.new("RGB", (200, 40), (9, 90, 200)).save(tmp_path / "thin.png")  # 32x6 px at 32
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--size", "32", *args, "--iterations", "2", "--checkpoint-every", "1",
                            "--output", out], capsys)
    assert code == ExitCode.ERROR and err.strip().splitlines()[-1].startswith("error: "), err
    assert not (tmp_path / "o.ckpt").exists() and not out.exists()


def test_an_interrupt_while_compiling_leaves_no_checkpoint_folder(tiny_network, image_files,
                                                                  tmp_path, capsys, monkeypatch):
    real = coarse_to_fine.stylizations

    def ctrl_c_while_compiling(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # counted by the runner; raised at its next safe point
        yield from real(*args, **kwargs)

    monkeypatch.setattr(coarse_to_fine, "stylizations", ctrl_c_while_compiling)
    content, style = image_files
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--content", content, "--style", style, "--size", "32", "--iterations",
                            "2", "--checkpoint-every", "1", "--output", out, "--quiet"], capsys)
    assert code == ExitCode.INTERRUPTED
    assert_one_line_error(code, err, "interrupted while compiling", "o.png was not written")
    assert not (tmp_path / "o.ckpt").exists() and not out.exists()
    assert checkpoint.remove_partial_saves in runner._CLEANUPS  # for a third Ctrl-C mid-save


def test_resume_with_only_an_unfinished_save_says_so_and_removes_it(image_files, tmp_path, capsys):
    content, style = image_files
    folder = tmp_path / "o.ckpt"
    state, where = small_state()
    checkpoint.save(folder, 10, state, {}, where)
    (folder / "10").rename(folder / "10.orbax-checkpoint-tmp")  # the first save, cut short
    code, _, err = run_cli(["--content", content, "--style", style, "--size", "32", "--output",
                            tmp_path / "o.png", "--resume"], capsys)
    assert_one_line_error(code, err, f"there is no checkpoint in {folder}",
                          "10.orbax-checkpoint-tmp", "now removed")
    assert code == ExitCode.ERROR and not folder.exists()


def test_an_unfinished_save_beside_a_complete_one_is_removed_and_resume_goes_on(
        tiny_network, image_files, tmp_path, capsys, monkeypatch):
    content, style = image_files
    common = ["--content", content, "--style", style, "--size", "32", "--iterations", "4",
              "--output", tmp_path / "o.png"]
    restore_step = interrupt_after(monkeypatch, 1)  # Ctrl-C after iteration 2
    code, _, err = run_cli([*common, "--checkpoint-every", "2"], capsys)
    assert code == ExitCode.INTERRUPTED, err
    restore_step()
    folder = tmp_path / "o.ckpt"
    shutil.copytree(folder / "2", folder / "4.orbax-checkpoint-tmp")  # the next save, cut short
    code, _, err = run_cli([*common, "--resume"], capsys)
    assert code == ExitCode.OK, err
    assert f"removed an unfinished save (4.orbax-checkpoint-tmp) cut short by an earlier run " \
           f"from {folder}; the complete checkpoint before it (iteration 2) is kept" in err
    assert "resuming from" in err and "at iteration 2" in err
    assert sorted(p.name for p in folder.iterdir()) == ["4"]
    assert images.read_png_metadata(tmp_path / "o.png")["nst_jax:iterations_done"] == "4"


def truncate_manifest(step: pathlib.Path) -> None:
    manifest = step / "state" / "manifest.ocdbt"
    manifest.write_bytes(manifest.read_bytes()[:20])


def flip_bytes(step: pathlib.Path) -> None:
    chunks = [p for p in (step / "state" / "d").iterdir() if p.is_file()]  # the arrays read
    assert chunks
    for chunk in chunks:
        data = bytearray(chunk.read_bytes())
        for i in range(len(data) // 2, min(len(data), len(data) // 2 + 8)):
            data[i] ^= 0xFF
        chunk.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [truncate_manifest, flip_bytes])
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")  # no tracebacks
def test_a_damaged_checkpoint_is_one_short_line(tiny_network, image_files, tmp_path, capsys,
                                                monkeypatch, damage):
    monkeypatch.chdir(tmp_path)  # short paths, as a user types them
    content, style = image_files
    common = ["--content", content, "--style", style, "--size", "32", "--iterations", "2",
              "--output", "o.png"]
    code, _, err = run_cli([*common, "--checkpoint-every", "2"], capsys)
    assert code == ExitCode.OK, err
    damage(tmp_path / "o.ckpt" / "2")
    code, _, err = run_cli([*common, "--resume", "--quiet"], capsys)
    assert code == ExitCode.ERROR
    assert_one_line_error(code, err, "the checkpoint in o.ckpt (step 2) is damaged",
                          "remove that folder to start over")
    line = err.strip()
    assert len(line) < 200 and "{" not in line and "tensorstore" not in line.lower(), line
