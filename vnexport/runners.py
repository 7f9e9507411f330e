"""Loaders that turn any vnexport artifact into one callable: float32 [N, C, H, W] -> [N, classes].

In Polygraphy's manner, each loader is named "<runner> from <source>":

- ``torch_from_checkpoint``: a training or deploy checkpoint, run by PyTorch in its own form;
- ``ort_from_onnx``: an ONNX file, run by ONNX Runtime (CPU; CUDA first where available);
- ``trt_from_engine``: a serialized TensorRT engine (``.engine``/``.plan``), run by
  ``vnexport.trt.run_engine`` (needs TensorRT and a CUDA GPU, else MissingRuntimeError, exit 3).

``runner_from_path`` picks the loader from the file's suffix and content (a ``.pth`` holding
the training form or the deploy form).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime
import torch

from . import ort, trt
from .checkpoint import load_checkpoint
from .errors import MissingRuntimeError, VnexportError
from .fileio import check_regular
from .model import VanillaNetConfig
from .onnx_file import detect_precision, load_onnx
from .quiet import third_party_output

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = trt.ENGINE_SUFFIXES
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar", ".safetensors")


@dataclass
class Runner:
    """An artifact ready to run: ``runner(x)`` maps float32 NCHW numpy to [N, classes] float64."""

    path: Path
    kind: str  # "training", "deploy", "onnx" or "engine"
    precision: str  # "fp32", "fp16" or "int8"
    fn: Callable[[np.ndarray], np.ndarray]
    backend: str  # what runs it, e.g. "PyTorch 2.13 (cpu)" or "ONNX Runtime 1.32 (CPU)"
    cfg: VanillaNetConfig | None = None
    model: torch.nn.Module | None = None  # the network, for PyTorch runners
    session: Any = None  # the InferenceSession, for ONNX runners
    notes: list[str] = field(default_factory=list)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "precision": self.precision,
                "backend": self.backend}


# --------------------------------------------------------------------------------------------
# PyTorch


def require_torch_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise MissingRuntimeError("--device cuda: PyTorch sees no CUDA GPU here "
                                  f"(torch {torch.__version__}, built "
                                  f"{'with CUDA ' + torch.version.cuda if torch.version.cuda else 'for CPU only'})")


def torch_from_checkpoint(ckpt, device: str = "cpu") -> Runner:
    """A training or deploy checkpoint (a ``checkpoint.Checkpoint``), run in its own form."""
    require_torch_device(device)
    model = ckpt.build_model().to(device)

    @torch.no_grad()
    def fn(x: np.ndarray) -> np.ndarray:
        out = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device))
        return out.double().cpu().numpy()

    return Runner(path=Path(ckpt.path), kind=ckpt.form, precision="fp32", fn=fn,
                  backend=f"PyTorch {torch.__version__.split('+')[0]} ({device})",
                  cfg=ckpt.cfg, model=model)


# --------------------------------------------------------------------------------------------
# ONNX Runtime


def ort_from_onnx(path: str | os.PathLike, threads: int | None = None,
                  device: str = "auto") -> Runner:
    """An ONNX file on ONNX Runtime; its precision is read from the graph
    (``onnx_file.detect_precision``, any Q/DQ type judged int8)."""
    path = Path(path)
    model = load_onnx(path)
    precision = detect_precision(path, model, strict=False)
    session = ort.session(path, threads=threads, device=device)
    provider = session.get_providers()[0].replace("ExecutionProvider", "")
    return Runner(path=path, kind="onnx", precision=precision, fn=ort.as_function(session, path),
                  backend=f"ONNX Runtime {onnxruntime.__version__} ({provider})",
                  session=session)


# --------------------------------------------------------------------------------------------
# TensorRT


def engine_precision(path: Path) -> tuple[str, list[str]]:
    """The engine's precision from the provenance JSON written beside it (``X.engine.json``)."""
    precision = (trt.read_provenance(path) or {}).get("precision")
    if precision in ("fp32", "fp16", "int8"):
        return precision, []
    return "fp32", [f"no provenance file {trt.provenance_path(path).name} with its precision: "
                    "judged as fp32 (override the limits with --max-rel-err/--min-cosine/"
                    "--min-top1)"]


def trt_from_engine(path: str | os.PathLike) -> Runner:
    path = check_regular(path)
    with third_party_output(library="TensorRT"):  # its log: VNEXPORT_DEBUG=1
        runtime = trt.require_engine_runtime(path)  # a CUDA GPU, then its builder, or exit 3
        precision, notes = engine_precision(path)
        engine = trt.load_engine(path)  # once: the runner is called batch after batch

    def fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(trt.infer(engine, np.ascontiguousarray(x, np.float32)), np.float64)

    label = "TensorRT-RTX" if runtime.get("builder") == "tensorrt-rtx" else "TensorRT"
    return Runner(path=path, kind="engine", precision=precision, fn=fn,
                  backend=f"{label} {runtime.get('builder_version', '')}".strip(), notes=notes)


# --------------------------------------------------------------------------------------------
# by file


def artifact_kind(path: str | os.PathLike) -> str:
    """'onnx', 'engine' or 'checkpoint', from the suffix. A checkpoint's form (training or
    deploy) is then read from its content by ``checkpoint.load_checkpoint``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    raise VnexportError(f"unknown artifact type {suffix or '(no suffix)'!r}: expected a "
                        f"checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), an ONNX file (.onnx) "
                        f"or a TensorRT engine ({', '.join(ENGINE_SUFFIXES)})", path)


def runner_from_path(path: str | os.PathLike, load: Callable[[Path], Any] | None = None,
                     threads: int | None = None, device: str = "auto") -> Runner:
    """The right loader for ``path``. ``load(path) -> Checkpoint`` reads checkpoints (the CLI's
    loading options); by default ``checkpoint.load_checkpoint(path)``."""
    path = Path(path)
    kind = artifact_kind(path)
    if kind == "onnx":
        return ort_from_onnx(path, threads=threads, device=device)
    if kind == "engine":
        return trt_from_engine(path)
    if load is None:
        load = load_checkpoint
    torch_device = "cuda" if device == "cuda" else "cpu"
    return torch_from_checkpoint(load(path), device=torch_device)


def load_runners(paths: list[Path], load_artifact, threads: int | None = None,
                 device: str = "auto") -> list:
    """Every artifact loaded up front, so that bad input (2) or a missing runtime (3) stops the
    command before anything is run."""
    return [runner_from_path(p, load=load_artifact, threads=threads, device=device)
            for p in paths]
