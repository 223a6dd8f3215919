"""Errors a user can act on.

Anything raised as :class:`UserError` (or a subclass) is shown by the CLI as
one clear line and exit code 2 -- never a traceback. Everything else is an
internal error (exit code 1).
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: a missing file, an unknown name, a bad key."""

    exit_code = 2


class UnknownNameError(UserError, KeyError):
    """A plugin name (backbone, classifier, dataset, suite) that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(UserError):
    """Two plugins registered the same name."""


class BadImagesError(UserError):
    """One or more images cannot be used; ``problems`` lists (path, reason)."""

    def __init__(self, problems: list[tuple[str, str]], hint: str = "") -> None:
        self.problems = problems
        lines = [f"{len(problems)} bad image(s):"]
        lines += [f"  {path}: {reason}" for path, reason in problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


class WeightsNotFoundError(UserError):
    """Pretrained weights are not available offline."""


class WriteError(UserError):
    """A file or folder could not be written (disk full, read-only, bad path)."""
