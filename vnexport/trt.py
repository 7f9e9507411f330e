"""The TensorRT runtime: strongly typed engines from ONNX files (builders, engines, provenance,
latency). The ``vnexport trt`` flow that uses them is ``vnexport/stages/trt.py``.

Precision comes from the ONNX file (an FP16 graph, or Q/DQ INT8), never from builder flags:
TensorRT 11 builds only strongly typed networks and removed BuilderFlag.FP16/INT8, and
TensorRT 10.12+ builds them with NetworkDefinitionCreationFlag.STRONGLY_TYPED.

Everything up to the builder call (option checks, profile decisions, precision detection,
provenance, tolerances) is plain Python and runs without TensorRT. ``tensorrt`` and
``polygraphy`` are imported only inside the functions that need them (``require_runtime``,
``build_engine``, ``run_engine``, ``measure_latency``); no other vnexport module imports them.

API references (the names below were taken from these pages, not guessed):

[TRT-BUILDER]  TensorRT Python API, Builder / NetworkDefinitionCreationFlag.STRONGLY_TYPED:
               docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
               (11.0: the flag is deprecated, "strongly typed mode is always enabled", kept for
               API compatibility: .../tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html)
[TRT-11-MIG]   TensorRT 10.x -> 11.x Python migration (BuilderFlag.FP16/INT8/BF16/FP8 removed;
               precision from strong typing or Q/DQ):
               docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
[TRT-CONFIG]   IBuilderConfig (set_memory_pool_limit, MemoryPoolType, builder_optimization_level,
               hardware_compatibility_level, create_timing_cache/set_timing_cache/get_timing_cache):
               docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/BuilderConfig.html
[TRT-HWCOMPAT] HardwareCompatibilityLevel NONE / AMPERE_PLUS / SAME_COMPUTE_CAPABILITY; AMPERE_PLUS
               "is only supported for engines built on NVIDIA Ampere and later GPUs":
               docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html
[TRT-ENGINE]   ICudaEngine (num_io_tensors, get_tensor_name, get_tensor_mode, get_tensor_shape,
               get_tensor_profile_shape):
               docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Engine.html
[TRT-CONTEXT]  IExecutionContext (set_input_shape, set_tensor_address, execute_async_v3):
               docs.nvidia.com/deeplearning/tensorrt/11.4.0/_static/python-api/infer/Core/ExecutionContext.html
[PG-LOADERS]   Polygraphy TensorRT loaders (NetworkFromOnnxPath(strongly_typed=...),
               EngineBytesFromNetwork(save_timing_cache=...), EngineFromBytes):
               docs.nvidia.com/deeplearning/tensorrt/11.4.0/_static/polygraphy/backend/trt/loader.html
[PG-CONFIG]    Polygraphy CreateConfig (profiles, memory_pool_limits, load_timing_cache,
               builder_optimization_level, hardware_compatibility_level, tf32):
               docs.nvidia.com/deeplearning/tensorrt/11.4.0/_static/polygraphy/backend/trt/config.html
[PG-PROFILE]   Polygraphy Profile.add(name, min, opt, max):
               docs.nvidia.com/deeplearning/tensorrt/latest/_static/polygraphy/backend/trt/profile.html
[PG-RUNNER]    Polygraphy TrtRunner (infer, get_input_metadata) and polygraphy.cuda
               (DeviceArray, Stream): docs.nvidia.com/deeplearning/tensorrt/latest/_static/polygraphy/index.html
[CUDA-DRV]     CUDA driver API (cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName,
               cuDeviceGetAttribute with CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75 /
               _MINOR = 76, as in cuda.h): docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__DEVICE.html
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import __version__
from .checkpoint import sha256_of
from .errors import MissingRuntimeError, VnexportError
from .fileio import atomic_output
from .onnx_file import OnnxInput, detect_precision, load_onnx, read_onnx_input
from .timing import latency_stats

if TYPE_CHECKING:  # annotations only: a runtime does not import the checks
    from .verify import Comparison

MIN_TRT = (10, 12)
INSTALL_HINT = ("pip install 'vnexport[trt]' on a machine with an NVIDIA GPU, or use the image "
                "from docker/Dockerfile (see README, 'vnexport trt')")

# --hardware-compat value -> trt.HardwareCompatibilityLevel member name [TRT-HWCOMPAT]
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}



# ------------------------------------------------------------------------------------------
# options and profile decisions (CPU)


@dataclass(frozen=True)
class BuildOptions:
    """What ``vnexport trt`` asks of the builder. ``None`` means TensorRT's own default."""

    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_gib: float | None = None
    timing_cache: Path | None = None
    hardware_compat: str = "none"
    builder_opt_level: int | None = None
    strongly_typed: bool = True
    verbose: bool = False

    def validate(self) -> "BuildOptions":
        for name in ("min_batch", "opt_batch", "max_batch"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise VnexportError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.workspace_gib is not None and not self.workspace_gib > 0:
            raise VnexportError(f"--workspace must be > 0 GiB, got {self.workspace_gib}")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise VnexportError(f"--hardware-compat must be one of {', '.join(HARDWARE_COMPAT)}, "
                                f"got {self.hardware_compat!r}")
        if self.builder_opt_level is not None and not 0 <= self.builder_opt_level <= 5:
            raise VnexportError(
                f"--builder-opt-level must be 0..5, got {self.builder_opt_level}")
        if not self.strongly_typed:
            raise VnexportError("only strongly typed engines are built: TensorRT 11 builds "
                                "nothing else, and the precision comes from the ONNX file")
        if self.timing_cache is not None:
            cache = Path(self.timing_cache)
            if cache.is_dir():
                raise VnexportError("--timing-cache is a directory, not a file", cache)
            if not (cache.parent if str(cache.parent) else Path(".")).is_dir():
                raise VnexportError("--timing-cache: its folder does not exist", cache)
        return self

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * 2**30)


@dataclass(frozen=True)
class Profile:
    """One optimization profile for the input: min/opt/max shapes (NCHW)."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def to_dict(self) -> dict:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}


def resolve_profile(inp: OnnxInput, options: BuildOptions, img_size: int | None = None,
                    source: object = None) -> Profile:
    """min/opt/max shapes from the batch options and the ONNX input.

    Dynamic batch: min defaults to 1, opt to min, max to opt; they must satisfy
    1 <= min <= opt <= max. Static batch B: every batch option given must equal B (a static
    graph cannot run any other batch), else the file is refused with the way out.
    Spatial dims come from the file; dynamic ones need --img-size.
    """
    c, h, w = inp.shape[1:]
    if c is None:
        raise VnexportError(f"input {inp.name!r} has a dynamic channel dimension", source)
    if h is None or w is None:
        if img_size is None:
            raise VnexportError(f"input {inp.name!r} has dynamic height/width; pass --img-size",
                                source)
        h, w = h or img_size, w or img_size
    elif img_size is not None and (h, w) != (img_size, img_size):
        raise VnexportError(f"--img-size {img_size} does not match the file's input "
                            f"{h}x{w}", source)
    asked = {"--min-batch": options.min_batch, "--opt-batch": options.opt_batch,
             "--max-batch": options.max_batch}
    if inp.batch is not None:
        b = inp.batch
        bad = [f"{k} {v}" for k, v in asked.items() if v is not None and v != b]
        if bad:
            raise VnexportError(
                f"the ONNX file has a static batch of {b}, which does not fit {', '.join(bad)}; "
                f"export it with a dynamic batch (vnexport onnx --dynamic-batch --max-batch N) "
                f"or drop the batch options", source)
        mn = op = mx = b
    else:
        mn = options.min_batch or 1
        op = options.opt_batch or mn
        mx = options.max_batch or max(op, mn)
        if not mn <= op <= mx:
            raise VnexportError(f"batch sizes must satisfy min <= opt <= max, got "
                                f"min {mn}, opt {op}, max {mx}", source)
    return Profile(inp.name, (mn, c, h, w), (op, c, h, w), (mx, c, h, w))


# ------------------------------------------------------------------------------------------
# provenance (CPU)


def provenance_path(engine_path: str | os.PathLike) -> Path:
    """``model.engine`` -> ``model.engine.json``: beside the plan, never inside it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def make_provenance(*, engine_path: Path, engine_sha256: str | None, onnx_path: Path,
                    onnx_sha256: str, precision: str, profile: Profile, options: BuildOptions,
                    runtime: dict, build_seconds: float | None,
                    comparison: Comparison | None, reference: str | None,
                    verification_inputs: dict | None = None, **extra: Any) -> dict:
    """The JSON written beside the engine (trtexec and Triton still read the plan as is)."""
    meta = {
        "engine": Path(engine_path).name,
        "engine_sha256": engine_sha256,
        "tool": "vnexport",
        "tool_version": __version__,
        "tensorrt_version": runtime.get("tensorrt"),
        "polygraphy_version": runtime.get("polygraphy"),
        "gpu": runtime.get("gpu"),
        "precision": precision,
        "strongly_typed": options.strongly_typed,
        "tf32": False,
        "profile": profile.to_dict(),
        "source_onnx": Path(onnx_path).name,
        "source_onnx_sha256": onnx_sha256,
        "hardware_compat": options.hardware_compat,
        "builder_optimization_level": options.builder_opt_level,
        "workspace_gib": options.workspace_gib,
        "timing_cache": None if options.timing_cache is None else str(options.timing_cache),
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": None if build_seconds is None else round(build_seconds, 3),
        "verification_reference": reference,
        "verification_inputs": verification_inputs,
        "verification": None if comparison is None else comparison.to_dict(),
    }
    meta.update(extra)
    return meta


# ------------------------------------------------------------------------------------------
# the runtime: TensorRT, Polygraphy and a CUDA GPU


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_trt_version(version: str) -> None:
    """Strongly typed engines from Q/DQ and FP16 ONNX files need TensorRT 10.12 or newer."""
    if parse_version(version)[:2] < MIN_TRT:
        raise MissingRuntimeError(
            f"TensorRT {version} is installed; vnexport trt needs TensorRT "
            f"{MIN_TRT[0]}.{MIN_TRT[1]} or newer (strongly typed networks): "
            f"pip install -U 'tensorrt>={MIN_TRT[0]}.{MIN_TRT[1]}', or use the image from "
            "docker/Dockerfile")


def _load_libcuda():
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def gpu_info(ordinal: int = 0) -> dict:
    """Name and compute capability of CUDA device ``ordinal``, from the CUDA driver [CUDA-DRV].

    Uses the driver library directly, so it works whichever torch build is installed.
    """
    import ctypes

    lib = _load_libcuda()
    if lib is None:
        raise MissingRuntimeError("no CUDA GPU: the NVIDIA driver (libcuda.so.1) is not present; "
                                  "run on a machine with an NVIDIA GPU (docker run --gpus all "
                                  "with the image from docker/Dockerfile)")
    rc = lib.cuInit(0)
    if rc != 0:
        raise MissingRuntimeError(f"no usable CUDA GPU (cuInit failed with CUDA error {rc}); "
                                  "check the driver and CUDA_VISIBLE_DEVICES, or run the image "
                                  "from docker/Dockerfile with --gpus all")
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        raise MissingRuntimeError("no CUDA GPU visible (cuDeviceGetCount found none); check "
                                  "CUDA_VISIBLE_DEVICES or docker run --gpus all")
    dev = ctypes.c_int(0)
    lib.cuDeviceGet(ctypes.byref(dev), ordinal)
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, 256, dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # ..._COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # ..._COMPUTE_CAPABILITY_MINOR
    return {"name": name.value.decode(errors="replace"),
            "compute_capability": f"{major.value}.{minor.value}", "devices": count.value}


def require_runtime(hardware_compat: str = "none") -> dict:
    """Import TensorRT and Polygraphy and find a CUDA GPU, or raise MissingRuntimeError (exit 3).

    Returns {"tensorrt": version, "polygraphy": version, "gpu": {...}}.
    """
    try:
        import tensorrt as trt
    except (ImportError, OSError) as e:
        missing = "TensorRT is not installed" if "No module named 'tensorrt'" in str(e) else \
            f"TensorRT does not load ({(str(e).splitlines() or ['?'])[0]})"
        raise MissingRuntimeError(f"{missing}: {INSTALL_HINT}") from None
    check_trt_version(trt.__version__)
    try:
        import polygraphy
    except ImportError:
        raise MissingRuntimeError(f"Polygraphy is not installed: {INSTALL_HINT}") from None
    gpu = gpu_info()
    if hardware_compat == "ampere+" and parse_version(gpu["compute_capability"]) < (8, 0):
        raise VnexportError(f"--hardware-compat ampere+ must be built on an Ampere or newer GPU "
                            f"(compute capability >= 8.0); this one is {gpu['name']} "
                            f"({gpu['compute_capability']})")
    return {"tensorrt": trt.__version__, "polygraphy": polygraphy.__version__, "gpu": gpu}


def runtime_missing_reason() -> str | None:
    """Why this machine cannot build engines (one line), or None when it can."""
    try:
        require_runtime()
    except VnexportError as e:
        return str(e)
    return None


def _quiet_polygraphy(verbose: bool) -> None:
    from polygraphy.logger import G_LOGGER

    G_LOGGER.module_severity = G_LOGGER.INFO if verbose else G_LOGGER.WARNING


# ------------------------------------------------------------------------------------------
# building (GPU)


def build_serialized(onnx_path: Path, profile: Profile, options: BuildOptions):
    """Parse ``onnx_path`` as a strongly typed network and build it; returns (plan, state).

    ``state["tf32"]``: the builder's TF32 flag as built (False; None where TensorRT has none).

    Polygraphy's loaders do the work [PG-LOADERS, PG-CONFIG, PG-PROFILE]: NetworkFromOnnxPath
    with strongly_typed=True sets NetworkDefinitionCreationFlag.STRONGLY_TYPED [TRT-BUILDER];
    CreateConfig sets the profile, the workspace pool limit (MemoryPoolType.WORKSPACE),
    builder_optimization_level, hardware_compatibility_level and loads the timing cache;
    tf32=False clears BuilderFlag.TF32 (on by default) so an fp32 engine computes in fp32;
    EngineBytesFromNetwork calls Builder.build_serialized_network and merges/saves the timing
    cache.
    """
    import tensorrt as trt
    from polygraphy.backend.trt import (CreateConfig, EngineBytesFromNetwork,
                                        NetworkFromOnnxPath)
    from polygraphy.backend.trt import Profile as PgProfile
    from polygraphy.exception import PolygraphyException

    _quiet_polygraphy(options.verbose)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    pools = None
    if options.workspace_bytes is not None:
        pools = {trt.MemoryPoolType.WORKSPACE: options.workspace_bytes}
    hw = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPAT[options.hardware_compat], None)
    if hw is None:
        raise VnexportError(f"--hardware-compat {options.hardware_compat}: TensorRT "
                            f"{trt.__version__} has no HardwareCompatibilityLevel."
                            f"{HARDWARE_COMPAT[options.hardware_compat]}")
    cache = None if options.timing_cache is None else str(options.timing_cache)
    create = CreateConfig(
        tf32=False,
        profiles=[PgProfile().add(profile.input, min=profile.min, opt=profile.opt,
                                  max=profile.max)],
        memory_pool_limits=pools,
        load_timing_cache=cache if cache and Path(cache).is_file() else None,
        builder_optimization_level=options.builder_opt_level,
        hardware_compatibility_level=None if options.hardware_compat == "none" else hw,
    )
    state: dict[str, Any] = {}

    def config(builder, network):
        # EngineBytesFromNetwork accepts a callable (builder, network) -> IBuilderConfig;
        # record what the config really says about TF32 (IBuilderConfig.get_flag) [TRT-CONFIG].
        cfg = create(builder, network)
        flag = getattr(trt.BuilderFlag, "TF32", None)
        state["tf32"] = None if flag is None else bool(cfg.get_flag(flag))
        return cfg

    try:
        plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=cache)()
        return plan, state
    except PolygraphyException as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "build failed")
        raise VnexportError(f"TensorRT could not build an engine from this file: {first}",
                            onnx_path) from None


def _engine_from_bytes(engine_bytes, path: object = None):
    """Deserialize a plan with Polygraphy's EngineFromBytes [PG-LOADERS]."""
    from polygraphy.backend.trt import EngineFromBytes
    from polygraphy.exception import PolygraphyException

    try:
        engine = EngineFromBytes(engine_bytes)()
    except PolygraphyException:
        engine = None
    if engine is None:
        raise VnexportError("TensorRT could not deserialize this engine (built by another "
                            "TensorRT version, or for another GPU without --hardware-compat?)",
                            path)
    return engine


def _infer(engine, x: np.ndarray) -> np.ndarray:
    """Run ``engine`` on ``x`` [N, C, H, W] in chunks that fit its profile [PG-RUNNER, TRT-ENGINE].

    A static-batch engine gets exactly its batch, a dynamic one at least its profile's min
    (a short last chunk is padded with zeros, the padding's outputs dropped).
    """
    import tensorrt as trt
    from polygraphy.backend.trt import TrtRunner
    from polygraphy.datatype import DataType
    from polygraphy.exception import PolygraphyException

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


def run_engine(engine_path: str | os.PathLike, x) -> np.ndarray:
    """Outputs of the serialized engine at ``engine_path`` on ``x`` (numpy or torch), float64.

    For other stages (vnexport verify, vnexport bench). Needs the runtime (call
    require_runtime() first for a clean exit-3 message).
    """
    from polygraphy.backend.common import BytesFromPath

    path = Path(engine_path)
    if not path.is_file():
        raise VnexportError("no such engine file", path)
    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return _infer(_engine_from_bytes(BytesFromPath(str(path))(), path), x)


@dataclass
class BuildResult:
    provenance: dict
    comparison: Comparison | None
    written: bool
    engine_bytes: int = 0


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike,
                 options: BuildOptions, *, img_size: int | None = None,
                 check: Callable[[Callable[[np.ndarray], np.ndarray]], Comparison] | None = None,
                 reference: str | None = None, verification_inputs: dict | None = None,
                 runtime: dict | None = None, **extra: Any) -> BuildResult:
    """Build a strongly typed engine from ``onnx_path``; verify; write it and its provenance.

    ``check`` gets a function running the new engine on a numpy batch and returns the
    Comparison; when it fails nothing is written (``written`` False). The engine and
    ``<engine>.json`` are written atomically. Needs the runtime.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    options.validate()
    model = load_onnx(onnx_path, external_data=False)
    precision = detect_precision(onnx_path, model)
    profile = resolve_profile(read_onnx_input(onnx_path, model), options, img_size, onnx_path)
    runtime = runtime or require_runtime(options.hardware_compat)
    t0 = time.perf_counter()
    plan, state = build_serialized(onnx_path, profile, options)
    build_seconds = time.perf_counter() - t0
    comparison = None
    if check is not None:
        engine = _engine_from_bytes(plan, onnx_path)
        comparison = check(lambda x: _infer(engine, x))
        del engine
    meta = make_provenance(
        engine_path=engine_path, engine_sha256=None, onnx_path=onnx_path,
        onnx_sha256=sha256_of(onnx_path), precision=precision, profile=profile,
        options=options, runtime=runtime, build_seconds=build_seconds, comparison=comparison,
        reference=reference, verification_inputs=verification_inputs, **extra)
    meta["tf32"] = state.get("tf32")
    if comparison is not None and not comparison.passed:
        return BuildResult(meta, comparison, written=False, engine_bytes=len(memoryview(plan)))
    data = memoryview(plan)
    meta["engine_sha256"] = hashlib.sha256(data).hexdigest()
    with atomic_output(engine_path) as tmp_engine, \
            atomic_output(provenance_path(engine_path)) as tmp_json:
        tmp_engine.write_bytes(data)
        tmp_json.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return BuildResult(meta, comparison, written=True, engine_bytes=data.nbytes)


# ------------------------------------------------------------------------------------------
# latency (GPU), for benchmarks/trt_latency.py and `vnexport bench`


def measure_latency(engine_path: str | os.PathLike, batch: int, iters: int = 200,
                    warmup: int = 20) -> dict:
    """Wall-clock latency of one execute_async_v3 + stream synchronize, at ``batch``.

    Raw TensorRT runtime [TRT-ENGINE, TRT-CONTEXT] with Polygraphy's CUDA wrapper for device
    buffers and the stream [PG-RUNNER]; inputs stay on the device (no copies timed). Times
    with time.perf_counter around enqueue + synchronize, so it includes the launch overhead.
    Returns ``bench.Latency.to_dict()`` (median, p90, p99, mean, min, images/s), or
    ``{"batch", "skipped": why}`` for a batch the engine cannot run.
    """
    import tensorrt as trt
    from polygraphy import cuda
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.datatype import DataType

    engine = _engine_from_bytes(BytesFromPath(str(engine_path))(), engine_path)
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
