"""The one exception type the command line turns into a one-line message and exit code 2."""


class GtmmError(Exception):
    """A problem the user can fix: bad input, a corrupt file, a conflicting run directory.

    The message is one line that names the problem and how to fix it.
    """
