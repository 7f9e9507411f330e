"""ONNX Runtime: one session factory and one way to run it.

Modelled on Polygraphy's ``SessionFromOnnx`` (backend/onnxrt/loader.py) and ``OnnxrtRunner``
(backend/onnxrt/runner.py): :func:`session` opens every ``InferenceSession`` vnexport uses (a
ModelProto, its bytes or a file; threads; providers), :func:`run` / :func:`run_outputs` feed it
NCHW batches and return float64 outputs. Failures of ONNX Runtime become one-line
``VnexportError``s naming the file.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import numpy as np
import onnxruntime

from .errors import MissingRuntimeError, VnexportError

# ONNX Runtime's own log lines (its C++ logger writes to stderr) are off: its failures reach
# vnexport as exceptions, which become one line naming the file.
onnxruntime.set_default_logger_severity(4)
_ORT_ERRORS = tuple(c for c in vars(onnxruntime.capi.onnxruntime_pybind11_state).values()
                    if isinstance(c, type) and issubclass(c, Exception))


@contextlib.contextmanager
def failures_named(path: object) -> Iterator[None]:
    """ONNX Runtime's exceptions raised inside the block (also from code that runs sessions
    of its own, such as ``quantize_static``'s calibration) as a one-line VnexportError naming
    ``path``."""
    try:
        yield
    except _ORT_ERRORS as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:240]
        raise VnexportError(f"ONNX Runtime failed to run the model ({first})", path) from None


def available_providers() -> list[str]:
    """The providers verification runs on: CUDA where onnxruntime has it, and always CPU."""
    have = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in have]


def providers_for(device: str = "auto") -> list[str]:
    """CUDA first where ONNX Runtime has it (device auto or cuda), always CPU last."""
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise MissingRuntimeError("ONNX Runtime has no CUDAExecutionProvider here "
                                  "(install onnxruntime-gpu on a machine with CUDA)")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(model_or_path, threads: int | None = None, device: str = "auto",
            path: object = None, providers: list[str] | None = None):
    """The one way vnexport opens an ``onnxruntime.InferenceSession``.

    ``model_or_path``: a ModelProto, its serialized bytes or a file path. ``threads`` sets the
    intra-op threads (inter-op 1); ``device`` "auto" (CUDA first where available), "cuda" or
    "cpu", unless ``providers`` names them. A model ONNX Runtime cannot load is a one-line
    VnexportError naming ``path``.
    """
    opts = onnxruntime.SessionOptions()
    opts.log_severity_level = 4
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
        return onnxruntime.InferenceSession(source, sess_options=opts,
                                            providers=providers or providers_for(device))
    except VnexportError:
        raise
    except Exception as e:  # onnxruntime raises its own Fail / InvalidGraph / RuntimeException
        first = (str(e).splitlines() or [type(e).__name__])[0][:240]
        raise VnexportError(f"ONNX Runtime cannot load the model ({first})", path) from None


_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64}


def input_dtype(session, path: object = None) -> type:
    """The numpy type of the session's (first) input; a non-float input is refused."""
    inp = session.get_inputs()[0]
    dtype = _ORT_FLOAT.get(inp.type)
    if dtype is None:
        raise VnexportError(f"the model's input {inp.name!r} is {inp.type}, not a float tensor",
                            path)
    return dtype


def fixed_batch(session) -> int | None:
    """The session input's fixed batch size, or None for a dynamic batch."""
    dim = session.get_inputs()[0].shape[0] if session.get_inputs()[0].shape else None
    return dim if isinstance(dim, int) and dim > 0 else None


def run_outputs(session, x: np.ndarray, names: list[str], batch: int | None = None,
                    path: object = None) -> list[np.ndarray]:
    """The outputs ``names`` (float64 each) of ``session`` on NCHW inputs ``x``, in chunks.

    The inputs are cast to the session's input type (float16 for an fp16-io file). A graph with
    a fixed batch B gets chunks of B, the last one padded with copies of its final input and the
    padding dropped from the outputs; a dynamic batch gets chunks of ``batch`` (all at once when
    None). ONNX Runtime's failures become a one-line VnexportError naming ``path``.
    """
    inp = session.get_inputs()[0]
    x = np.ascontiguousarray(x, input_dtype(session, path))
    fixed = fixed_batch(session)
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


def run(session, x: np.ndarray, batch: int | None = None, path: object = None) -> np.ndarray:
    """The first output (float64) of ``session`` on NCHW inputs ``x``: ``run_outputs``."""
    return run_outputs(session, x, [session.get_outputs()[0].name], batch, path)[0]


def check_input_shape(session, shape: tuple, path: object = None) -> None:
    """Refuse a batch whose C, H, W differ from the graph's fixed ones (one line, exit 2)."""
    want = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape[1:]]
    got = list(shape[1:])
    if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got)):
        raise VnexportError(f"the model takes inputs of shape [N, "
                            f"{', '.join(str(w) if w else '?' for w in want)}], "
                            f"not {list(shape)} (see --img-size)", path)


def as_function(session, path: object = None) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> run(session, x)`` for a Runner, refusing inputs of the wrong C, H, W."""
    input_dtype(session, path)  # refuse a non-float input up front

    def fn(x: np.ndarray) -> np.ndarray:
        check_input_shape(session, x.shape, path)
        return run(session, x, path=path).reshape(len(x), -1)

    return fn
