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

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import MissingRuntimeError, VnexportError
from .model import VanillaNetConfig

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
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


def load_onnx(path: str | os.PathLike, external_data: bool = True):
    """``onnx.load`` with a one-line error for a missing, empty or unreadable file.
    ``external_data=False`` reads the graph without a ``.onnx.data`` weights file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise VnexportError("no such file", path)
    if path.stat().st_size == 0:
        raise VnexportError("the file is empty", path)
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # onnx raises DecodeError, ValueError, OSError ...
        first = (str(e).splitlines() or [type(e).__name__])[0][:200] or "parse error"
        raise VnexportError(f"not a readable ONNX file ({type(e).__name__}: {first})",
                            path) from None


def ort_providers(device: str = "auto") -> list[str]:
    """CUDA first where ONNX Runtime has it (device auto or cuda), always CPU last."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise MissingRuntimeError("ONNX Runtime has no CUDAExecutionProvider here "
                                  "(install onnxruntime-gpu on a machine with CUDA)")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def ort_session(model_or_path, threads: int | None = None, device: str = "auto",
                path: object = None, providers: list[str] | None = None):
    """The one way vnexport opens an ``onnxruntime.InferenceSession``.

    ``model_or_path``: a ModelProto, its serialized bytes or a file path. ``threads`` sets the
    intra-op threads (inter-op 1); ``device`` "auto" (CUDA first where available), "cuda" or
    "cpu", unless ``providers`` names them. A model ONNX Runtime cannot load is a one-line
    VnexportError naming ``path``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if isinstance(model_or_path, (str, os.PathLike)):
        source, path = str(model_or_path), path or model_or_path
    elif isinstance(model_or_path, bytes):
        source = model_or_path
    else:
        source = model_or_path.SerializeToString()
    try:
        return ort.InferenceSession(source, sess_options=opts,
                                    providers=providers or ort_providers(device))
    except VnexportError:
        raise
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException
        first = (str(e).splitlines() or [type(e).__name__])[0][:240]
        raise VnexportError(f"ONNX Runtime cannot load the model ({first})", path) from None


_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64}


def ort_input_dtype(session, path: object = None) -> type:
    """The numpy type of the session's (first) input; a non-float input is refused."""
    inp = session.get_inputs()[0]
    dtype = _ORT_FLOAT.get(inp.type)
    if dtype is None:
        raise VnexportError(f"the model's input {inp.name!r} is {inp.type}, not a float tensor",
                            path)
    return dtype


def ort_fixed_batch(session) -> int | None:
    """The session input's fixed batch size, or None for a dynamic batch."""
    dim = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
    return dim if isinstance(dim, int) and dim > 0 else None


def with_extra_outputs(model, names: list[str]):
    """A copy of ``model`` that also outputs the tensors ``names``."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
        types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    except Exception:  # shape inference is best effort here; float is the usual type
        types = {}
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(
                name, types.get(name, onnx.TensorProto.FLOAT), None))
    return copy


def run_ort_outputs(session, x: np.ndarray, names: list[str], batch: int | None = None,
                    path: object = None) -> list[np.ndarray]:
    """The outputs ``names`` (float64 each) of ``session`` on NCHW inputs ``x``, in chunks.

    The inputs are cast to the session's input type (float16 for an fp16-io file). A graph with
    a fixed batch B gets chunks of B, the last one padded with copies of its final input and the
    padding dropped from the outputs; a dynamic batch gets chunks of ``batch`` (all at once when
    None). ONNX Runtime's failures become a one-line VnexportError naming ``path``.
    """
    inp = session.get_inputs()[0]
    x = np.ascontiguousarray(x, ort_input_dtype(session, path))
    fixed = ort_fixed_batch(session)
    step = fixed or batch or max(len(x), 1)
    runs = []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        short = step - len(chunk) if fixed else 0
        if short:  # a fixed-batch graph: pad the last chunk, drop the padding after
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
        try:
            ys = session.run(names, {inp.name: chunk})
        except Exception as e:  # onnxruntime's own error types
            first = (str(e).splitlines() or [type(e).__name__])[0][:240]
            raise VnexportError(f"ONNX Runtime failed to run the model ({first})", path) from None
        runs.append([np.asarray(y, np.float64)[:len(chunk) - short] for y in ys])
    return [np.concatenate([r[k] for r in runs]) for k in range(len(names))]


def run_ort(session, x: np.ndarray, batch: int | None = None, path: object = None) -> np.ndarray:
    """The first output (float64) of ``session`` on NCHW inputs ``x``: ``run_ort_outputs``."""
    return run_ort_outputs(session, x, [session.get_outputs()[0].name], batch, path)[0]


def check_input_shape(session, shape: tuple, path: object = None) -> None:
    """Refuse a batch whose C, H, W differ from the graph's fixed ones (one line, exit 2)."""
    want = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:]]
    got = list(shape[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise VnexportError(f"the model takes inputs of shape [N, "
                            f"{', '.join(str(w) if w else '?' for w in want)}], "
                            f"not {list(shape)} (see --img-size)", path)


def ort_callable(session, path: object = None) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> run_ort(session, x)`` for a Runner, refusing inputs of the wrong C, H, W."""
    ort_input_dtype(session, path)  # refuse a non-float input up front

    def fn(x: np.ndarray) -> np.ndarray:
        check_input_shape(session, x.shape, path)
        return run_ort(session, x, path=path).reshape(len(x), -1)

    return fn


def ort_from_onnx(path: str | os.PathLike, threads: int | None = None,
                  device: str = "auto") -> Runner:
    """An ONNX file on ONNX Runtime; its precision is read from the graph
    (``trt.detect_precision``, any Q/DQ type judged int8)."""
    import onnxruntime as ort

    from .trt import detect_precision

    path = Path(path)
    model = load_onnx(path)
    precision = detect_precision(path, model, strict=False)
    session = ort_session(path, threads=threads, device=device)
    provider = session.get_providers()[0].replace("ExecutionProvider", "")
    return Runner(path=path, kind="onnx", precision=precision, fn=ort_callable(session, path),
                  backend=f"ONNX Runtime {ort.__version__} ({provider})", session=session)


# --------------------------------------------------------------------------------------------
# TensorRT


def _trt_module():
    """``vnexport.trt`` with its runtime checked, or MissingRuntimeError (exit 3)."""
    try:
        from . import trt  # optional stage; imports TensorRT only inside its functions
    except ImportError:
        raise MissingRuntimeError("running TensorRT engines needs vnexport's TensorRT stage "
                                  "(vnexport.trt), TensorRT and a CUDA GPU; this installation "
                                  "has no vnexport.trt") from None
    require = getattr(trt, "require_runtime", None)
    if require is not None:
        require()
    return trt


def engine_precision(path: Path) -> tuple[str, list[str]]:
    """The engine's precision from the provenance JSON written beside it (``X.engine.json``)."""
    side = path.with_name(path.name + ".json")
    try:
        precision = json.loads(side.read_text()).get("precision")
    except (OSError, ValueError, AttributeError):
        precision = None
    if precision in ("fp32", "fp16", "int8"):
        return precision, []
    return "fp32", [f"no provenance file {side.name} with its precision: judged as fp32 "
                    "(override the limits with --max-rel-err/--min-cosine/--min-top1)"]


def trt_from_engine(path: str | os.PathLike) -> Runner:
    path = Path(path)
    if not path.is_file():
        raise VnexportError("no such file", path)
    trt = _trt_module()
    precision, notes = engine_precision(path)

    def fn(x: np.ndarray) -> np.ndarray:
        return np.asarray(trt.run_engine(path, np.ascontiguousarray(x, np.float32)), np.float64)

    return Runner(path=path, kind="engine", precision=precision, fn=fn, backend="TensorRT",
                  notes=notes)


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
        from .checkpoint import load_checkpoint as load
    torch_device = "cuda" if device == "cuda" else "cpu"
    return torch_from_checkpoint(load(path), device=torch_device)
