"""The one user-facing error type, and the exit codes every command uses."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_RUNTIME = 3
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM (128 + SIGINT, as shells report it)


class VnexportError(Exception):
    """A problem with the user's input or environment, reported as one line.

    ``path`` names the file the problem is about (if any); the CLI prints
    ``error: <path>: <message>`` and exits with ``exit_code``.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, path: object | None = None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def __str__(self) -> str:  # one line, always
        text = f"{self.path}: {self.message}" if self.path else self.message
        return " ".join(text.split())


class MissingRuntimeError(VnexportError):
    """A runtime the command needs (TensorRT, CUDA) is not installed or not usable."""

    exit_code = EXIT_MISSING_RUNTIME
