"""The project's errors: one base, ``ProjectError``, for every problem the user can fix (a file, a setting, the
data, a missing extra), so that every command line reports them the same way (``deeplab_mobile.cli``: the message
and exit status 1; anything else is a bug and keeps its traceback).

Each error also derives from the built-in exception it stands for (``ValueError``, ``FileNotFoundError``,
``RuntimeError``, ``ImportError``), so code that catches those keeps working.

``ArgumentError``: a value the core cannot honour, named by the argument it came in; a caller that took it from a
config (the config layer) names the config key instead, so the core's messages never spell the apps' keys.
"""

from __future__ import annotations


class ProjectError(Exception):
    """A problem the user can fix; its message says what and where (a file, a key), without a traceback."""


class InvalidValue(ProjectError, ValueError):
    """A value (an argument, a setting, a file's content) the code cannot honour."""


class MissingFile(ProjectError, FileNotFoundError):
    """A file or folder the work needs is not there."""


class ArgumentError(InvalidValue):
    """``argument``: the parameter (or mapping key) the value came in; ``message``: what is wrong with it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(_join(argument, message))
        self.argument, self.message = argument, message

    def with_key(self, key: str, hint: str = "") -> str:
        """The message with ``key`` (e.g. ``eval.os``) in place of the argument, and a hint after it."""
        return _join(key, self.message) + hint


def is_number(value, integer: bool = False) -> bool:
    """Whether ``value`` is a number (an integer with ``integer``) and not a bool: the one such check of the
    plain-Python API's arguments (a config's values are typed by its schema, ``config/schema.py``)."""
    return not isinstance(value, bool) and isinstance(value, int if integer else int | float)


def _join(name: str, message: str) -> str:
    """``os=12: ...``, ``root is not set ...``, ``lr must be ...``, ``output_stride: ...``."""
    if message.startswith("="):
        return f"{name}{message}"
    return f"{name} {message}" if message.startswith(("is ", "must ")) else f"{name}: {message}"


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` could not read a file, in one line, without PyTorch's advice to
    load it with ``weights_only=False`` (which runs code from the file: not for a file of unknown origin)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
        return (
            f"it holds Python objects other than tensors and plain containers ({reason}); it is read only as data "
            "(weights_only=True), never by running code from it"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"
