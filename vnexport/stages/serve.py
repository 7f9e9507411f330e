"""``vnexport serve``: run Triton here (the nvidia-pytriton wheel's server, CPU serving) on a
model repository, or on one artifact written first to a temporary Python-backend repository.
Stops cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import MissingRuntimeError, VnexportError
from ..fileio import check_regular
from ..triton import (ServingOptions, default_name, model_folders, parse_config, read_facts,
                      write_repository)
from ..triton_server import TritonServer, require_server
from .common import Log, Result

EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, whatever the target (as every command)
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
    if not opts.target.is_dir():
        check_regular(opts.target)


def _bind_family(host: str) -> tuple[int, str]:
    if not host.strip() or host != host.strip():
        raise VnexportError(f"--host {host!r}: give an address or host name of this machine")
    try:
        info = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError, ValueError) as e:
        raise VnexportError(f"--host {host!r}: not an address or known host name "
                            f"({getattr(e, 'strerror', None) or e})") from None
    return info[0], info[4][0]


def check_ports_free(opts: ServeOptions) -> None:
    """Each port must be free on ``--host`` now (bound and released here): a server already
    answering there would otherwise be taken for the one this command starts."""
    family, address = _bind_family(opts.host)
    for option, port in (("--http-port", opts.http_port), ("--grpc-port", opts.grpc_port),
                         ("--metrics-port", opts.metrics_port)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise VnexportError(f"{option} {port}: the port is taken on {opts.host} "
                                        "(another server listens there)") from None
                if e.errno == errno.EADDRNOTAVAIL:
                    raise VnexportError(f"--host {opts.host!r}: not an address of this "
                                        "machine") from None
                raise VnexportError(f"{option} {port}: cannot listen on {opts.host} "
                                    f"({e.strerror or e})") from None


def check_repository(repo: Path) -> None:
    """Refuse models the wheel's server cannot load (only the Python backend is in it)."""
    configs = sorted(repo.glob("*/config.pbtxt"))
    if not configs:
        raise VnexportError("no model folders (<name>/config.pbtxt) in the repository", repo)
    for path in configs:
        check_regular(path, "config.pbtxt")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise VnexportError("not a text file (config.pbtxt is Triton's text format)",
                                path) from None
        except OSError as e:
            raise VnexportError(f"cannot read it ({e.strerror or e})", path) from None
        cfg = parse_config(text, path)
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


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(src, dst)


def linked_copy(repo: Path, dst: Path) -> Path:
    """``repo`` as hard links (copies where links cannot be made) under ``dst``: the server
    reads the same bytes, and whatever it writes lands in ``dst``, never in the user's folder."""
    try:
        shutil.copytree(repo, dst, copy_function=_link_or_copy, symlinks=False)
    except (OSError, shutil.Error) as e:
        raise VnexportError(f"cannot prepare the repository for serving ({e})", repo) from None
    return dst


def start(opts: ServeOptions, workdir: Path) -> tuple[TritonServer, ServeResult]:
    """Check, prepare the repository, start the server and wait until it is ready."""
    check_options(opts)
    require_server()
    target = Path(opts.target)
    repo = target if target.is_dir() else artifact_repository(target, workdir)
    check_repository(repo)
    check_ports_free(opts)
    if repo == target:  # the server writes into what it serves (__pycache__): a linked copy
        repo = linked_copy(target, workdir / "repository")
    server = TritonServer(repo, host=opts.host, http_port=opts.http_port,
                          grpc_port=opts.grpc_port, metrics_port=opts.metrics_port)
    server.start()
    try:
        models = check_identity(server, repo, opts, server.wait_ready(opts.ready_timeout))
    except VnexportError as e:
        server.stop()
        if e.path == str(repo):
            e.path = str(target)
        raise
    except BaseException:
        server.stop()
        raise
    return server, ServeResult(repo=target, urls=server.urls, models=models, pid=server.pid)


def check_identity(server: TritonServer, repo: Path, opts: ServeOptions,
                   models: list[dict]) -> list[dict]:
    """The server that answered ready must be the one started here: its process alive, and the
    repository's models, and only those, loaded."""
    if server.process.poll() is not None:
        raise VnexportError(f"--http-port {opts.http_port}: another server answered there; "
                            f"the one started here exited ({server.process.returncode})", repo)
    want = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    got = sorted(str(m.get("name")) for m in models if m.get("state", "READY") == "READY")
    if got != want:
        raise VnexportError(f"--http-port {opts.http_port}: the server answering there serves "
                            f"{got}, not this repository's {want} (another server?)", repo)
    return models


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_for_signal(server: TritonServer) -> None:
    """Block until Ctrl-C or SIGTERM (both arrive as KeyboardInterrupt: returns), or fail when
    the server exits by itself."""
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
            result.exit_code = EXIT_INTERRUPTED  # stopped by a signal: as any command is
        finally:
            result.exit_status = server.stop()
        return result
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(workdir, ignore_errors=True)
