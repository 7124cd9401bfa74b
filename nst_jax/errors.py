"""The one exception type that the command-line tools turn into a one-line message."""


class NSTError(Exception):
    """A problem with the user's input (files, flags, weights) that is not a bug.

    The message is a single line that names the problem and, where it can,
    says how to fix it. Scripts print it and exit with status 2.
    """
