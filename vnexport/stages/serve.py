"""``vnexport serve``: run Triton here (the nvidia-pytriton wheel's server, CPU serving) on a
model repository, or on one artifact written first to a temporary Python-backend repository.
Stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import MissingRuntimeError, VnexportError
from ..triton import (ServingOptions, default_name, model_folders, parse_config, read_facts,
                      write_repository)
from ..triton_server import TritonServer, require_server
from .common import Log, Result

# what the wheel's server can load: the Python backend, and ensembles of it
SERVABLE = {("", "python"), ("ensemble", "")}


@dataclass(frozen=True)
class ServeOptions:
    target: Path  # a model repository folder or one artifact
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    ready_timeout: float = 180.0


@dataclass
class ServeResult(Result):
    """The server as it was when ready (URLs, models, PID) and, once stopped, its status."""

    repo: Path = Path()
    urls: dict[str, str] = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)
    pid: Optional[int] = None
    exit_status: Optional[int] = None  # the server's, once stopped

    def to_dict(self) -> dict:
        return {"repository": str(self.repo), "urls": self.urls, "models": self.models,
                "pid": self.pid, "server_exit_status": self.exit_status}

    def ready_lines(self) -> list[str]:
        out = [f"tritonserver (pid {self.pid}) ready, repository {self.repo}"]
        out += [f"{k:8s}{v}" for k, v in self.urls.items()]
        out += [f"model   {m.get('name')} version {m.get('version')}: {m.get('state')}"
                for m in self.models]
        return out + ["Ctrl-C or SIGTERM stops it"]

    def lines(self) -> list[str]:
        return [f"tritonserver (pid {self.pid}) stopped, status {self.exit_status}"]


def check_options(opts: ServeOptions) -> None:
    ports = [opts.http_port, opts.grpc_port, opts.metrics_port]
    bad = [p for p in ports if not 1 <= p <= 65535]
    if bad:
        raise VnexportError(f"port {bad[0]} is outside 1..65535")
    if len(set(ports)) != 3:
        raise VnexportError(f"--http-port, --grpc-port and --metrics-port must differ, got "
                            f"{ports}")
    if not opts.target.exists():
        raise VnexportError("no such file or folder", opts.target)


def check_repository(repo: Path) -> None:
    """Refuse models the wheel's server cannot load (only the Python backend is in it)."""
    configs = sorted(repo.glob("*/config.pbtxt"))
    if not configs:
        raise VnexportError("no model folders (<name>/config.pbtxt) in the repository", repo)
    for path in configs:
        try:
            cfg = parse_config(path.read_text())
        except VnexportError as e:
            raise VnexportError(e.message, path) from None
        if (cfg.platform, cfg.backend) not in SERVABLE:
            raise MissingRuntimeError(
                f"platform {cfg.platform or cfg.backend!r} needs a backend the nvidia-pytriton "
                "server does not have (it has the Python backend only); write the model with "
                "`vnexport triton --backend python`, or serve it in the NGC container", path)


def artifact_repository(artifact: Path, folder: Path) -> Path:
    """One artifact as a Python-backend repository in ``folder`` (with the preprocessing
    ensemble where the file carries its mean/std)."""
    facts = read_facts(artifact)
    if facts.kind != "onnx":
        raise MissingRuntimeError("a TensorRT engine needs Triton's TensorRT backend, which the "
                                  "nvidia-pytriton server does not have; serve an ONNX file, "
                                  "or the engine in the NGC container", artifact)
    opts = ServingOptions(name=default_name(artifact), backend="python", kind="cpu",
                          preprocess=facts.mean is not None and facts.std is not None)
    repo = folder / "models"
    write_repository(repo, model_folders(facts, opts))
    return repo


def start(opts: ServeOptions, workdir: Path) -> tuple[TritonServer, ServeResult]:
    """Check, prepare the repository, start the server and wait until it is ready."""
    check_options(opts)
    require_server()
    target = Path(opts.target)
    repo = target if target.is_dir() else artifact_repository(target, workdir)
    check_repository(repo)
    server = TritonServer(repo, host=opts.host, http_port=opts.http_port,
                          grpc_port=opts.grpc_port, metrics_port=opts.metrics_port)
    server.start()
    try:
        models = server.wait_ready(opts.ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server, ServeResult(repo=target, urls=server.urls, models=models, pid=server.pid)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_for_signal(server: TritonServer) -> None:
    """Block until Ctrl-C or SIGTERM (both arrive as KeyboardInterrupt), or fail when the
    server exits by itself."""
    try:
        while server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        return
    raise VnexportError(f"tritonserver exited by itself (status {server.process.returncode}): "
                        f"{server.log_tail(1)}", server.repo)


def run(opts: ServeOptions, log: Log = Log(),
        on_ready: Optional[Callable[[ServeResult], None]] = None) -> ServeResult:
    """Serve until Ctrl-C or SIGTERM. Once the server is ready, ``on_ready`` gets the result
    (default: its ready lines to ``log.echo``). The server is stopped by its PID whatever
    happens (SIGTERM during start-up included)."""
    on_ready = on_ready or (lambda r: [log.echo(line) for line in r.ready_lines()])
    workdir = Path(tempfile.mkdtemp(prefix="vnexport-serve-"))
    # both signals as KeyboardInterrupt, also where SIGINT was inherited ignored (a background
    # job of a shell without job control)
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server, result = start(opts, workdir)
        try:
            on_ready(result)
            wait_for_signal(server)
        finally:
            result.exit_status = server.stop()
        return result
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(workdir, ignore_errors=True)
