"""Writing outputs atomically: a temporary file beside the target, renamed on success."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import VnexportError


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """Refuse an output that exists (without ``force``) or cannot be written, before any work."""
    path = Path(path)
    if path.is_dir():
        raise VnexportError("output path is a directory", path)
    if path.exists() and not force:
        raise VnexportError("output exists; pass --force to replace it", path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise VnexportError("output path not writable: its folder does not exist", path)
    if not os.access(parent, os.W_OK):
        raise VnexportError("output path not writable: no write permission on its folder", path)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VnexportError(f"could not write the output ({e.strerror or e})", path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """``data`` as indented JSON (anything else as its str), written atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
