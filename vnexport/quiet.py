"""Third-party output (TensorRT's parser and builder, Polygraphy's ``[!]``/``[E]`` lines, ONNX
Runtime, CUDA) kept off the terminal: while a library call runs, file descriptors 1 and 2 (where
C++ code writes) and ``sys.stdout``/``sys.stderr`` (where Polygraphy prints) point at a
temporary file; they are restored whatever happens. A ``VnexportError`` raised in the block gets
the log's most telling line folded into its one line. ``verbose`` (``--verbose``) or
``VNEXPORT_DEBUG=1``: nothing is captured, the libraries print as they do.

    with third_party_output(verbose, "TensorRT"):
        engine = build(...)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from typing import Iterator

from .errors import VnexportError

_PREFIX = re.compile(r"^\[(?:[EWIV!]|TRT)\]\s*(?:[\w./-]+\.(?:cpp|cu|h|py):\d+:\s*)?")


def wanted(verbose: bool = False) -> bool:
    """Whether third-party output should reach the terminal."""
    return bool(verbose or os.environ.get("VNEXPORT_DEBUG"))


def telling_line(log: str) -> str | None:
    """The log's most telling line: the last error line of the library itself (``[E]``,
    ``ERROR``; else Polygraphy's summary ``[!]``), its prefix and source location dropped;
    None when there is none."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and "---" not in ln]
    errors = ([ln for ln in lines if ln.startswith("[E]") or "ERROR" in ln]
              or [ln for ln in lines if ln.startswith("[!]")])
    if not errors:
        return None
    text = " ".join(_PREFIX.sub("", errors[-1]).split())
    return text[:300] or None


class _Sink(io.TextIOBase):
    """Python-level prints of a library, into the capture file; a failed write (a full disk)
    is dropped: the library's chatter must not fail the command."""

    def __init__(self, fd: int):
        self.fd = fd

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode("utf-8", "replace"))
        return len(text)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def _redirected(target) -> Iterator[None]:
    _flush()
    saved = [os.dup(1), os.dup(2)]
    streams = sys.stdout, sys.stderr
    text = _Sink(target.fileno())
    try:
        os.dup2(target.fileno(), 1)
        os.dup2(target.fileno(), 2)
        sys.stdout = sys.stderr = text
        yield
    finally:
        sys.stdout, sys.stderr = streams
        _flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def third_party_output(verbose: bool = False, library: str = "TensorRT") -> Iterator[None]:
    """Run the block with its third-party output captured (see the module docstring)."""
    if wanted(verbose):
        yield
        return
    with tempfile.TemporaryFile() as log:
        try:
            with _redirected(log):
                yield
        except VnexportError as e:
            log.seek(0)
            line = telling_line(log.read().decode("utf-8", "replace"))
            if line and line not in e.message:
                e.message = f"{e.message} ({library}: {line})"
                e.args = (e.message,)
            raise
