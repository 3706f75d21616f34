"""The errors the tools that use a model share, and how they put a caught exception into one line."""

from __future__ import annotations


class ModelLoadError(ValueError):
    """The model (a folder or a Hub id) could not be loaded, or is not the kind asked for; the
    message says why. A `ValueError`, so the commands report it as a usage error (exit status 2)."""


def one_line(error: BaseException) -> str:
    """`"TypeName: message"` with the message's whitespace (newlines included) collapsed."""
    return " ".join(f"{type(error).__name__}: {error}".split())


__all__ = ["ModelLoadError", "one_line"]
