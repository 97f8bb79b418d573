"""Errors a user can cause.  The CLI prints their message as one line on stderr and exits with ``exit_code``."""

from __future__ import annotations

#: exit codes of the CLI
EXIT_OK = 0
EXIT_FAILED = 1  # a run that failed for a reason other than bad input
EXIT_USAGE = 2  # bad input: config, data, files, command-line arguments
EXIT_DIVERGED = 3  # training produced a non-finite loss


class NnctlError(Exception):
    """An error with a message fit to show a user as is: where it happened, what is wrong, what is allowed."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(NnctlError):
    """A config that cannot be read or is not valid; ``messages`` holds one line per problem."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


def one_of(name: str, value, allowed: tuple[str, ...]) -> None:
    """Refuse a value outside ``allowed``, naming the option or argument it was given as."""
    if value not in allowed:
        raise NnctlError(f"{name}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def from_os_error(exc: OSError) -> NnctlError:
    """An OSError (a full disk, a read-only folder) as a user error: the file and the reason, on one line."""
    where = f"{exc.filename}: " if exc.filename else ""
    return NnctlError(f"{where}{exc.strerror or exc}", EXIT_FAILED)
