"""Reading ``torch.save`` files (legacy and zip) as ``{key: array}`` without torch.

Security: a torch file is a pickle, and a plain unpickler runs whatever code
the file names (``os.system``, ``builtins.eval``, ...). :class:`_RestrictedUnpickler`
resolves only the globals a state_dict of tensors needs, each to a harmless
stand-in, and refuses every other before anything is called. Tensor bounds are
checked against their storage before any bytes are read, and zip members are
size-capped, so a hostile file can neither run code nor exhaust memory.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import math
import pickle
import struct
import zipfile
import zlib
from typing import IO, Mapping, NamedTuple

import numpy as np

from nst_jax.errors import NSTError, one_line

# Member files over this size are refused before reading: a guard against zip
# bombs, far above the largest real file (the 548 MB torchvision checkpoint).
_MAX_MEMBER_BYTES = 2 << 30

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
            called = one_line(f"{module}.{name}")[:200]
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
        raise NSTError(f"{origin} is not a readable torch weights file ({one_line(e)}); "
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


def read_legacy_torch(f: IO[bytes], origin: str) -> dict[str, np.ndarray]:
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


def read_torch_zip(archive: zipfile.ZipFile, origin: str) -> dict[str, np.ndarray]:
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
    state = _unpickle(io.BytesIO(read_member(archive, pickles[0], origin)), origin, storages)
    data = {}
    for key, ref in storages.items():
        nbytes = ref.length * ref.dtype.itemsize
        raw = read_member(archive, f"{prefix}data/{key}", origin)
        if len(raw) < nbytes:
            raise NSTError(f"{origin} is truncated or corrupt (storage {key!r}); get a fresh copy")
        data[key] = np.frombuffer(raw[:nbytes], ref.dtype)
    return _materialize(state, data, origin)


def read_member(archive: zipfile.ZipFile, name: str, origin: str) -> bytes:
    """The bytes of member ``name`` of ``archive``, refused if implausibly large;
    a missing or damaged member is an NSTError naming ``origin``."""
    try:
        info = archive.getinfo(name)
        if info.file_size > _MAX_MEMBER_BYTES:
            raise NSTError(f"{origin}: {name!r} is implausibly large ({info.file_size} bytes)")
        return archive.read(info)
    except KeyError:
        raise NSTError(f"{origin} is incomplete: it has no {name!r}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise NSTError(f"{origin} is corrupt ({one_line(e)}); get a fresh copy") from None
