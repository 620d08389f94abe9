"""The one exception type meant for users.

Anything raised as :class:`EgraffError` is a problem with the user's input (a file, an
option, a model) and the CLI prints it as one line on stderr with exit code 2. Every other
exception is a bug in egraff-lmp and may show a traceback (``--debug``).
"""

from __future__ import annotations


class EgraffError(Exception):
    """A user-facing error: the message names the file or option and the problem."""


def located(path, message: str) -> EgraffError:
    """An :class:`EgraffError` whose message starts with the file it is about."""
    return EgraffError(f"{path}: {message}")
