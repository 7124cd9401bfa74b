"""What a single run's result is written as, for every tool that writes one (the command
line and the web page): the image at its bit depth with the settings, the weights'
provenance, how the run ended and the eq. 7 loss of exactly the pixels written in its
metadata."""
from __future__ import annotations

import json
import pathlib

from nst_jax import __version__, coarse_to_fine, images, stylize


def png_metadata(config, arguments: dict, weights_info: dict, extra: dict) -> dict[str, str]:
    """The PNG text chunks: the settings, the arguments as given, the weights' provenance
    and ``extra`` (status, losses). Nothing that varies between identical runs."""
    meta = {
        "Software": f"nst_jax {__version__}",
        "nst_jax:arguments": json.dumps(arguments, default=str),
        "nst_jax:config": json.dumps(config.to_dict(), default=str),
        "nst_jax:weights": json.dumps(weights_info, default=str),
    }
    meta.update({f"nst_jax:{k}": str(v) for k, v in extra.items()})
    return meta


def save_result(path: pathlib.Path, job: stylize.Stylization, config, arguments: dict,
                weights_info: dict, extra: dict, bits: int = 8):
    """Write ``job``'s output at ``bits`` (:meth:`~nst_jax.stylize.Stylization.saved`) to
    ``path``, atomically, with :func:`png_metadata` of ``extra`` and the eq. 7 loss of the
    pixels written; returns ``(image, total, terms)``."""
    image, total, terms = job.saved(bits)
    losses = {"loss_total": total, "loss_content": terms.content, "loss_style": terms.style,
              "loss_tv": terms.tv}
    meta = png_metadata(config, arguments, weights_info, {**extra, **losses, "bit_depth": bits})
    images.save_image(path, image, meta, bits=bits)
    return image, total, terms


def scale_metadata(scale: coarse_to_fine.Scale) -> dict:
    """The output's metadata about its scale: nothing for a single-scale run."""
    return {} if scale.count == 1 else {"scale": f"{scale.index + 1}/{scale.count}"}
