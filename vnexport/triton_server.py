"""A local Triton server: the ``tritonserver`` binary of the nvidia-pytriton wheel, run directly.

The wheel (``pytriton/tritonserver``) ships Triton with the Python backend only, a backend stub
per Python minor version (``python_backend_stubs/3.X/triton_python_backend_stub``) and its
libraries in ``nvidia_pytriton.libs``. To run it: one backend folder holding the Python
backend's files and the stub for this interpreter; ``nvidia_pytriton.libs`` and the
interpreter's ``LIBDIR`` (its shared libpython) on ``LD_LIBRARY_PATH``; this environment's
``bin`` first on ``PATH`` (the stub finds numpy and onnxruntime through ``python3``).

The server runs in its own process group; :meth:`TritonServer.stop` ends it by its PID
(SIGTERM, then SIGKILL to the group) and removes the Python backend's shared-memory regions,
which carry a prefix unique to the server.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from .errors import MissingRuntimeError, VnexportError

MIN_GLIBC = (2, 35)
SHM = Path("/dev/shm")


@dataclass(frozen=True)
class ServerFiles:
    """Where the wheel's server parts are."""

    binary: Path
    python_backend: Path  # libtriton_python.so, triton_python_backend_utils.py
    stub: Path
    libs: Path
    caches: Path


def _wheel_root() -> Path | None:
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _libpython() -> Path | None:
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    path = Path(libdir or "") / (name or "")
    return path if libdir and name and path.exists() else None


def server_files() -> ServerFiles | None:
    root = _wheel_root()
    if root is None:
        return None
    dist = root / "tritonserver"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return ServerFiles(binary=dist / "bin" / "tritonserver",
                       python_backend=dist / "backends" / "python",
                       stub=dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                       libs=root.parent / "nvidia_pytriton.libs", caches=dist / "caches")


def missing_reason() -> str | None:
    """What stops the wheel's server from running here, in one line; None when nothing does."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return (f"the nvidia-pytriton server runs on x86_64 Linux; this is "
                f"{platform.system()} {platform.machine()}")
    libc, version = platform.libc_ver()
    parsed = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if libc != "glibc" or parsed < MIN_GLIBC:
        return (f"the nvidia-pytriton server needs glibc >= 2.35; this system has "
                f"{libc or 'no glibc'} {version}".rstrip())
    if _libpython() is None:
        return (f"the Triton Python backend stub needs a shared libpython; {sys.executable} "
                "was built without one (--enable-shared)")
    files = server_files()
    if files is None:
        return "nvidia-pytriton is not installed (pip install 'vnexport[serve]')"
    for what, path in (("tritonserver binary", files.binary), ("Python backend", files.python_backend),
                       (f"Python backend stub for Python {sys.version_info[0]}."
                        f"{sys.version_info[1]}", files.stub)):
        if not path.exists():
            return f"the nvidia-pytriton wheel has no {what} ({path})"
    return None


def require_server() -> ServerFiles:
    reason = missing_reason()
    if reason:
        raise MissingRuntimeError(reason)
    return server_files()


def prepare_backends(files: ServerFiles, folder: Path) -> Path:
    """``folder/backends/python`` with the Python backend and this interpreter's stub."""
    backends = folder / "backends"
    target = backends / "python"
    shutil.copytree(files.python_backend, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(files.stub, target / "triton_python_backend_stub")
    return backends


def server_env(files: ServerFiles) -> dict[str, str]:
    env = dict(os.environ)
    libs = [str(files.libs), str(_libpython().parent)]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


class TritonServer:
    """One ``tritonserver`` process serving ``repo`` on ``host`` and the given ports."""

    def __init__(self, repo: str | os.PathLike, *, host: str = "127.0.0.1",
                 http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 log_verbose: int = 0):
        self.repo = Path(repo)
        self.host = host
        self.ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
        self.log_verbose = log_verbose
        self.shm_prefix = f"vnexport_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None
        self.log_text = ""  # the log's last lines, kept when stop() removes the work folder

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def urls(self) -> dict[str, str]:
        return {"http": f"http://{self.host}:{self.ports['http']}",
                "grpc": f"grpc://{self.host}:{self.ports['grpc']}",
                "metrics": f"http://{self.host}:{self.ports['metrics']}/metrics"}

    def command(self, backends: Path, files: ServerFiles) -> list[str]:
        return [str(files.binary), f"--model-repository={self.repo}",
                f"--backend-directory={backends}", f"--cache-directory={files.caches}",
                f"--http-address={self.host}", f"--http-port={self.ports['http']}",
                f"--grpc-address={self.host}", f"--grpc-port={self.ports['grpc']}",
                f"--metrics-address={self.host}", f"--metrics-port={self.ports['metrics']}",
                "--allow-gpu-metrics=false", "--exit-on-error=true", "--strict-readiness=true",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                f"--log-verbose={self.log_verbose}", "--exit-timeout-secs=20"]

    def start(self) -> "TritonServer":
        files = require_server()
        if not self.repo.is_dir():
            raise VnexportError("not a model repository folder", self.repo)
        self.workdir = Path(tempfile.mkdtemp(prefix="vnexport-triton-"))
        backends = prepare_backends(files, self.workdir)
        self.log_path = self.workdir / "tritonserver.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command(backends, files), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=server_env(files), start_new_session=True)
        return self

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "\n".join(self.log_text.splitlines()[-lines:])
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str, data: bytes | None = None):
        req = urllib.request.Request(self.urls["http"] + path, data=data, method="POST"
                                     if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
            return resp.status, (json.loads(body) if body else None)

    def ready(self) -> bool:
        try:
            return self._get("/v2/health/ready")[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 120.0) -> list[dict]:
        """Wait until the server is ready; return the repository index. A server that exits
        first (a model failed to load) is a VnexportError with the log's last lines."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise VnexportError("tritonserver exited (code "
                                    f"{self.process.returncode}) before it was ready: "
                                    + _first_error(self.log_tail(40)), self.repo)
            if time.monotonic() > deadline:
                self.stop()
                raise VnexportError(f"tritonserver was not ready after {timeout:.0f} s",
                                    self.repo)
            time.sleep(0.2)
        return self.models()

    def models(self) -> list[dict]:
        return self._get("/v2/repository/index", b"{}")[1] or []

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM by PID (Triton unloads its models and ends the stubs), SIGKILL to the
        process group if it has not exited within ``timeout``; then remove shared memory
        regions with this server's prefix. Returns the exit code."""
        if self.process is None:
            return None
        pid = self.process.pid
        if self.process.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(pid)
        self.process.wait()
        for leftover in shm_regions(self.shm_prefix):
            leftover.unlink(missing_ok=True)
        self.log_text = self.log_tail(200)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        return self.process.returncode

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left in the server's process group (stubs of a hung server)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def shm_regions(prefix: str) -> list[Path]:
    return sorted(SHM.glob(prefix + "*")) if SHM.is_dir() else []


def _first_error(log: str) -> str:
    """The log's first error line (Triton prefixes them with E), else its last line."""
    lines = [line for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E")]
    text = (errors or lines or ["no log output"])[0]
    return " ".join(text.split())[:500]
