"""User-facing errors.

Every mistake a user can make (bad prompt, wrong shape, missing file) raises
``MigmError`` with one line that names what is wrong and what to do. The CLI prints
that line and exits non-zero instead of showing a traceback.
"""


class MigmError(Exception):
    """An error caused by the user's input or environment, with a one-line explanation."""
