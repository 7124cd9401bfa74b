"""What the case kinds' flags share: the list-of-sizes type, the default sizes and the
size rule most kinds check against.

Lists of numbers: :data:`nst_jax.apps.common.flags.SINGLE` ``["floats"]`` (``--race-fractions``);
lists of whole numbers are :func:`ints` here, because a benchmark's size list may be empty
(``--sizes ''``: no speed case), which the sweep axes' parser refuses.
"""
from __future__ import annotations

import argparse
from typing import Sequence

from nst_jax.errors import NSTError

DEFAULT_SIZES = (128, 256, 512)
MIN_SIZE = 32
SIZES_RULE = "--sizes (and the other sizes) must be >= 32 px and --checkpoints >= 1"


def ints(text: str) -> list[int]:
    """``"128,256"`` -> ``[128, 256]``; ``""`` -> ``[]`` (an argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return values


def check_sizes(sizes: Sequence[int]) -> None:
    """:class:`NSTError` (:data:`SIZES_RULE`, one message for every kind's sizes) if one of
    ``sizes`` is below :data:`MIN_SIZE`."""
    if min(sizes, default=MIN_SIZE) < MIN_SIZE:
        raise NSTError(SIZES_RULE)
