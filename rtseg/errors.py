"""The errors rtseg raises for a user's mistake, as opposed to a bug.

Every one derives from :class:`RtsegError`; the command line prints such an error as one line
``rtseg <command>: error: <message>`` and exits with status 2, while any other exception keeps
its traceback (it is a defect to report). Each also derives from the built-in exception a
Python caller would expect (``ValueError``, ``KeyError``, ``FileNotFoundError``), so
``except ValueError`` keeps working.
"""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (libraries' messages run over many
    lines), or its type's name when it has no message."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def one_line(message: str) -> str:
    """``message``'s non-empty lines joined by "; ": an error printed as one line."""
    return "; ".join(line.strip() for line in message.strip().splitlines() if line.strip())


class RtsegError(Exception):
    """Base of the expected, user-facing errors."""


class ConfigError(RtsegError, ValueError):
    """A training configuration, override or option value is invalid."""


class CheckpointError(RtsegError, ValueError):
    """A checkpoint or exported model file is missing, unreadable, unsafe or incompatible."""


class UnknownNameError(RtsegError, KeyError):
    """An unknown model, upsampler, data set or option name (the message lists the valid ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputNotFoundError(RtsegError, FileNotFoundError):
    """A file or folder given by the user does not exist."""


class MissingDependencyError(RtsegError, ImportError):
    """An optional extra that a feature needs is not installed (the message names the command)."""


class UsageError(RtsegError, ValueError):
    """An argument combination or value that a command cannot honour."""


class TrainingError(RtsegError, RuntimeError):
    """Training cannot go on (a NaN or infinite loss); the last checkpoint is intact."""


class RunInterrupted(RtsegError):
    """A run stopped by SIGINT or SIGTERM after writing ``last.pt``; ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
