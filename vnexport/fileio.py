"""The output contract: every file vnexport writes goes through here.

- An output is never the same file as any input of the command (resolved paths, and
  ``os.path.samefile`` for links), nor the same as another output of it.
- An existing file is replaced only with ``--force`` (an ``update`` output, a cache that the
  command reads and extends, is replaced without it); something that is not a regular file
  (a folder, a FIFO, a device) never is.
- A command declares all its outputs in one ``OutputPlan`` before it starts any work, so that
  a bad output is refused (one line, exit 2) before anything is written; it writes them only
  after the work succeeded.
- Each file is written to a temporary file beside the target, then published in one step:
  ``os.link`` when the target must not exist (so a file that appeared meanwhile, say from a
  concurrent run, is never replaced: no check-then-write race), ``os.replace`` with ``--force``.
- Temporary files are named ``.NAME.vnexport-<pid>-<random>.tmp``. Planning an output removes
  those of processes that no longer run from its folder (left by kill -9 or a power cut).

    plan = OutputPlan(inputs=[ckpt], force=force)
    out = plan.add(output, "--output")
    report = plan.add(json_path, "--json")        # None for None or "-" (standard output)
    ... the work ...
    with atomic_output(out) as tmp:                # publishes as planned (link, or replace)
        torch.save(obj, tmp)
    write_text(report, text)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import VnexportError

STDOUT = "-"
_TEMP = re.compile(r"^\..+\.vnexport-(\d+)-[0-9a-f]+\.tmp$")
# resolved output path -> may it replace an existing file (force or update)
_PLANNED: dict[Path, bool] = {}
# inside ``command_outputs()``: every output planned by the command so far (one command may
# plan in several places, e.g. the CLI for --json and the stage for -o)
_COMMAND: list[list[Path]] = []

PathLike = str | os.PathLike


def temp_path(path: PathLike) -> Path:
    """A fresh temporary name beside ``path``: ``.NAME.vnexport-<pid>-<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.vnexport-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temps(folder: PathLike) -> list[Path]:
    """Remove the temporary files of vnexport processes that no longer run from ``folder``."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name one file (through symlinks, ``..`` and hard links)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _create_temp(path: Path) -> Path:
    """Create a new, empty temporary file beside ``path`` (mode 0666 less the umask)."""
    while True:
        tmp = temp_path(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as e:
            raise VnexportError(f"not writable: cannot create a file in its folder "
                                f"({e.strerror or e})", path) from None
        os.close(fd)
        return tmp


def _folder_writable(path: Path, option: str) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise VnexportError(f"{option}: not writable: its folder does not exist", path)
    tmp = _create_temp(path)  # a real probe: also right for root, read-only mounts and /proc
    tmp.unlink()


class OutputPlan:
    """All the files one command will write, checked together before any work starts."""

    def __init__(self, inputs: Iterable[PathLike | None] = (), force: bool = False):
        self.inputs = [Path(p) for p in inputs if p is not None and str(p) != STDOUT]
        self.force = force
        self.outputs: list[Path] = []

    def add(self, path: PathLike | None, option: str = "--output", *,
            update: bool = False) -> Path | None:
        """Check one output and reserve its publishing mode; None for None or "-" (stdout).
        ``update``: the command reads the file and writes it back (a cache), so it may be
        replaced without --force."""
        if path is None or str(path) == STDOUT:
            return None
        path = Path(path)
        for other in self.inputs:
            if same_file(path, other):
                raise VnexportError(f"{option} would overwrite the input {other}", path)
        for other in self.outputs + (_COMMAND[-1] if _COMMAND else []):
            if same_file(path, other):
                raise VnexportError(f"{option} is already another output of this command", path)
        if os.path.lexists(path):
            if path.is_dir():
                raise VnexportError(f"{option}: is a directory", path)
            if not path.is_file():
                raise VnexportError(f"{option}: exists and is not a regular file", path)
            if not (self.force or update):
                raise VnexportError(f"{option}: output exists; pass --force to replace it",
                                    path)
        _folder_writable(path, option)
        clean_stale_temps(path.parent)
        _PLANNED[path.resolve()] = self.force or update
        self.outputs.append(path)
        if _COMMAND:
            _COMMAND[-1].append(path)
        return path

    def add_folder(self, path: PathLike, option: str) -> Path:
        """A folder the command creates or writes into (``demo --workdir``)."""
        path = Path(path)
        for other in self.inputs:
            if same_file(path, other):
                raise VnexportError(f"{option} is an input of this command", path)
        if os.path.lexists(path) and not path.is_dir():
            raise VnexportError(f"{option}: exists and is not a folder", path)
        probe = path if path.is_dir() else path.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise VnexportError(f"{option}: {probe} is not a folder", path)
        _folder_writable(probe / ".probe", option)
        if path.is_dir():
            clean_stale_temps(path)
        return path


@contextlib.contextmanager
def command_outputs() -> Iterator[None]:
    """One command's scope: outputs planned inside it (by any ``OutputPlan``) must differ from
    each other, and their publishing modes are forgotten afterwards."""
    _COMMAND.append([])
    try:
        yield
    finally:
        for path in _COMMAND.pop():
            _PLANNED.pop(path.resolve(), None)


def _publish(tmp: Path, path: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise VnexportError("the file appeared while this command ran (another process?); "
                            "not replaced: pass --force to replace it", path) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV,
                           errno.EMLINK, errno.ENOSYS):
            raise
        # no hard links on this file system: reserve the name exclusively, then replace it
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise VnexportError("the file appeared while this command ran (another "
                                "process?); not replaced: pass --force to replace it",
                                path) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def check_new_output(path: PathLike, overwrite: bool = False) -> None:
    """A library writer's check before its work: an existing file is replaced only as an
    ``OutputPlan`` planned it (--force) or with ``overwrite``."""
    path = Path(path)
    if os.path.lexists(path) and not (overwrite or _PLANNED.get(path.resolve(), False)):
        raise VnexportError("output exists; pass overwrite=True to replace it", path)


@contextlib.contextmanager
def atomic_output(path: PathLike, replace: bool | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds it is published as
    ``path``, on any error (or interrupt) it is removed.

    ``replace``: may an existing file be replaced. Default: as planned by ``OutputPlan.add``
    (its force / update); a path no plan declared (library use) is never replaced: the
    library's writers take ``overwrite=True`` for that. Outside a command (library use) the
    plan's entry is spent by the write."""
    path = Path(path)
    if replace is None:
        replace = _PLANNED.get(path.resolve(), False)
    tmp = _create_temp(path)
    try:
        yield tmp
        _publish(tmp, path, replace)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise VnexportError(f"could not write the output ({e.strerror or e})", path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if not _COMMAND:
            _PLANNED.pop(path.resolve(), None)


def write_text(path: PathLike | None, text: str, overwrite: bool = False) -> None:
    """Write ``text`` to a planned output atomically (nothing for None); an existing file
    only as planned (--force) or with ``overwrite``."""
    if path is None:
        return
    with atomic_output(path, replace=True if overwrite else None) as tmp:
        tmp.write_text(text if text.endswith("\n") else text + "\n")


def write_json_atomic(path: PathLike | None, data: Any, overwrite: bool = False) -> None:
    """``data`` as indented JSON (anything else as its str), written as ``write_text`` does."""
    write_text(path, json.dumps(data, indent=2, default=str), overwrite)
