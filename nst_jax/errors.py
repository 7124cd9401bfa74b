"""The one exception type that the command-line tools turn into a one-line message."""


class NSTError(Exception):
    """A problem with the user's input (files, flags, weights) that is not a bug.

    The message is a single line that names the problem and, where it can,
    says how to fix it. The command-line tools print it as ``error: ...`` and
    exit with status 2 (:mod:`nst_jax.apps.common.runner`).
    """


def one_line(error: object) -> str:
    """``error`` (an exception or any text) squeezed onto one line; an empty
    exception gives its type name."""
    text = " ".join(str(error).split())
    return text or (type(error).__name__ if isinstance(error, BaseException) else "")
