"""Running an engine: load it (its runtime and a CUDA GPU checked first), run it on a batch,
read its inputs/outputs, and time it (``measure_latency``, for benchmarks/trt_latency.py and
``vnexport bench``). References [TAG]: ``vnexport/trt/__init__.py``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..errors import VnexportError
from ..timing import latency_stats
from .runtime import _active_trt, _engine_from_bytes, require_engine_runtime


def engine_io(engine_path: str | os.PathLike) -> dict:
    """The engine's own inputs and outputs (name, mode, dtype, shape; -1 = dynamic) and the
    first profile's min/opt/max shapes, read from the deserialized engine [TRT-ENGINE]. Needs
    the engine's runtime and a CUDA GPU (require_engine_runtime), else exit 3."""
    engine = load_engine(engine_path)
    trt = _active_trt()
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        shape = [int(d) for d in engine.get_tensor_shape(name)]
        entry = {"name": name, "mode": getattr(mode, "name", str(mode)).lower(),
                 "dtype": str(getattr(engine.get_tensor_dtype(name), "name",
                                      engine.get_tensor_dtype(name))).lower(),
                 "shape": shape}
        if mode == trt.TensorIOMode.INPUT and -1 in shape:
            lo, opt, hi = engine.get_tensor_profile_shape(name, 0)
            entry["profile"] = {"min": [int(d) for d in lo], "opt": [int(d) for d in opt],
                                "max": [int(d) for d in hi]}
        tensors.append(entry)
    return {"tensors": tensors}


def infer(engine, x: np.ndarray) -> np.ndarray:
    """Run ``engine`` on ``x`` [N, C, H, W] in chunks that fit its profile [PG-RUNNER, TRT-ENGINE].

    A static-batch engine gets exactly its batch, a dynamic one at least its profile's min
    (a short last chunk is padded with zeros, the padding's outputs dropped).
    """
    from polygraphy.backend.trt import TrtRunner
    from polygraphy.datatype import DataType
    from polygraphy.exception import PolygraphyException

    trt = _active_trt()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    if len(inputs) != 1 or len(outputs) != 1:
        raise VnexportError(f"expected an engine with one input and one output, this one has "
                            f"{len(inputs)} and {len(outputs)}")
    name = inputs[0]
    shape = tuple(engine.get_tensor_shape(name))
    if shape[0] == -1:
        min_shape, _, max_shape = engine.get_tensor_profile_shape(name, 0)
        chunk, least = int(max_shape[0]), int(min_shape[0])
    else:
        chunk = least = int(shape[0])
    outs = []
    try:
        with TrtRunner(engine) as runner:
            meta = runner.get_input_metadata()
            dtype = DataType.to_dtype(meta[name].dtype, "numpy")
            for i in range(0, len(x), chunk):
                part = np.ascontiguousarray(x[i:i + chunk], dtype=dtype)
                n = len(part)
                if n < least:
                    part = np.concatenate([part, np.zeros((least - n,) + part.shape[1:], dtype)])
                out = runner.infer({name: part})[outputs[0]]
                outs.append(np.array(out[:n], dtype=np.float64))  # copy: buffers are reused
    except PolygraphyException as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "failed")
        raise VnexportError(f"running the engine failed: {first}") from None
    return np.concatenate(outs)


def load_engine(engine_path: str | os.PathLike):
    """The deserialized engine at ``engine_path``: its runtime and a CUDA GPU are checked
    first (require_engine_runtime: exit 3 with one line where either is missing), then the
    file is read and deserialized once. The one way engine_io, run_engine, measure_latency
    and the engine runner get an engine."""
    path = Path(engine_path)
    if not path.is_file():
        raise VnexportError("no such engine file", path)
    require_engine_runtime(path)
    from polygraphy.backend.common import BytesFromPath

    return _engine_from_bytes(BytesFromPath(str(path))(), path)


def run_engine(engine_path: str | os.PathLike, x) -> np.ndarray:
    """Outputs of the serialized engine at ``engine_path`` on ``x`` (numpy or torch), float64.
    Loads the engine for this one call; a caller running many batches keeps ``load_engine``'s
    engine and calls ``infer`` (as the engine runner does)."""
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return infer(load_engine(engine_path), x)


def measure_latency(engine_path: str | os.PathLike, batch: int, iters: int = 200,
                    warmup: int = 20) -> dict:
    """Wall-clock latency of one execute_async_v3 + stream synchronize, at ``batch``.

    Raw TensorRT runtime [TRT-ENGINE, TRT-CONTEXT] with Polygraphy's CUDA wrapper for device
    buffers and the stream [PG-RUNNER]; inputs stay on the device (no copies timed). Times
    with time.perf_counter around enqueue + synchronize, so it includes the launch overhead.
    Returns ``bench.Latency.to_dict()`` (median, p90, p99, mean, min, images/s), or
    ``{"batch", "skipped": why}`` for a batch the engine cannot run.
    """
    engine = load_engine(engine_path)
    from polygraphy import cuda
    from polygraphy.datatype import DataType

    trt = _active_trt()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    context = engine.create_execution_context()
    buffers = []
    stream = cuda.Stream()
    try:
        for name in names:
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            shape = tuple(engine.get_tensor_shape(name))
            if shape[0] == -1:
                lo, _, hi = engine.get_tensor_profile_shape(name, 0)
                if not lo[0] <= batch <= hi[0]:
                    return {"batch": batch, "skipped": f"profile allows batch {lo[0]}..{hi[0]}"}
                shape = (batch,) + tuple(shape[1:])
            elif shape[0] != batch:
                return {"batch": batch, "skipped": f"static batch {shape[0]}"}
            context.set_input_shape(name, shape)
        for name in names:
            shape = tuple(context.get_tensor_shape(name))
            pg_dtype = DataType.from_dtype(engine.get_tensor_dtype(name), "tensorrt")
            buf = cuda.DeviceArray(shape=shape, dtype=pg_dtype)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                host = np.random.default_rng(0).standard_normal(shape)
                buf.copy_from(np.ascontiguousarray(host, DataType.to_dtype(pg_dtype, "numpy")))
            buffers.append(buf)
            context.set_tensor_address(name, buf.ptr)
        times = []
        for i in range(warmup + iters):
            t = time.perf_counter()
            if not context.execute_async_v3(stream.ptr):
                raise VnexportError("execute_async_v3 failed", engine_path)
            stream.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1e3)
    finally:
        for b in buffers:
            b.free()
        stream.free()
        del context
    return latency_stats(times, batch, warmup).to_dict()
