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
[PG-RTX]       Polygraphy 0.53 polygraphy/config.py (USE_TENSORRT_RTX from the environment variable
               POLYGRAPHY_USE_TENSORRT_RTX, read at import), polygraphy/mod/trt_importer.py
               (lazy_import_trt: "tensorrt_rtx>=1.0" or "tensorrt>=8.5", bound when each backend
               module is imported) and polygraphy/backend/tensorrt_rtx/config.py
               (CreateConfigRTX(use_gpu=None, compute_capabilities=[(major, minor)], **common);
               no tf32 argument: TF32 is cleared here on the IBuilderConfig)
[RTX-AOT]      TensorRT-RTX "CPU-Only AOT and TensorRT-RTX Engines" (IBuilderConfig
               num_compute_capabilities / set_compute_capability(ComputeCapability.SM80, i);
               default targets 8.0, 8.6, 8.9, 12.0 and later):
               docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/cpu-engines.html;
               tensorrt_rtx 1.7.1: ComputeCapability NONE, CURRENT, SM75, SM80, SM86, SM89, SM120,
               SM121; Runtime.get_engine_validity(buffer) -> (EngineValidity, diagnostics bit
               mask of EngineInvalidityDiagnostics); setHardwareCompatibilityLevel "is
               unsupported in TensorRT-RTX" (its log), and "Timing cache operations are no-ops
               in TensorRT-RTX" (its DeprecationWarning, since 1.2)
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
from .limits import split_list
from .onnx_file import OnnxInput, detect_precision, load_onnx, read_onnx_input
from .timing import latency_stats

if TYPE_CHECKING:  # annotations only: a runtime does not import the checks
    from .verify import Comparison

MIN_TRT = (10, 12)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what vnexport takes as an engine file
INSTALL_HINT = ("pip install 'vnexport[trt]' on a machine with an NVIDIA GPU, or use the image "
                "from docker/Dockerfile (see README, 'vnexport trt')")

# --hardware-compat value -> trt.HardwareCompatibilityLevel member name [TRT-HWCOMPAT]
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}

# builders: datacenter TensorRT (module ``tensorrt``, builds on the GPU it targets) and TensorRT
# for RTX (module ``tensorrt_rtx``, builds ahead of time on the CPU for listed compute
# capabilities) [RTX-AOT]. "auto": what the options call for, else TensorRT where installed,
# else TensorRT-RTX.
BUILDERS = ("auto", "tensorrt", "tensorrt-rtx")
BUILDER_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
RTX_INSTALL_HINT = ("pip install 'vnexport[trt-rtx]' (TensorRT for RTX: builds engines without "
                    "a GPU, for --compute-capability targets)")
# Polygraphy reads this once, when polygraphy.config is first imported [PG-RTX]
POLYGRAPHY_RTX_ENV = "POLYGRAPHY_USE_TENSORRT_RTX"
RTX_DEFAULT_TARGETS = ("TensorRT-RTX's default portable set (its documentation: compute "
                       "capability 8.0, 8.6, 8.9, 12.0 and later; 7.5 only when asked for)")
NO_GPU_TO_VERIFY = ("built nothing: no CUDA GPU to verify the engine on; add --no-verify to "
                    "build it unverified")



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
    builder: str = "auto"
    compute_capabilities: tuple[str, ...] | None = None  # "8.0", ...: TensorRT-RTX targets

    def validate(self) -> "BuildOptions":
        self._validate_builder()
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

    def _validate_builder(self) -> None:
        if self.builder not in BUILDERS:
            raise VnexportError(f"--builder must be one of {', '.join(BUILDERS)}, "
                                f"got {self.builder!r}")
        if self.compute_capabilities is not None:
            parse_compute_capabilities(",".join(self.compute_capabilities))
        wanted = self.builder_wanted
        if wanted == "tensorrt" and self.compute_capabilities:
            raise VnexportError("--compute-capability applies to --builder tensorrt-rtx; "
                                "datacenter TensorRT builds for the GPU it runs on (see "
                                "--hardware-compat)")
        if wanted == "tensorrt-rtx":
            lacking = self.rtx_lacks()
            if lacking:
                raise VnexportError(f"{lacking[0]}: TensorRT-RTX has no such setting, so the "
                                    "option would be ignored; drop it, or use --builder "
                                    "tensorrt")

    @property
    def builder_wanted(self) -> str:
        """The builder the options call for: --builder, else tensorrt-rtx when compute
        capabilities are given, tensorrt when --hardware-compat or --timing-cache is (options
        only one of them has), else "auto". Options of both: exit 2."""
        if self.builder != "auto":
            return self.builder
        rtx = bool(self.compute_capabilities)
        dc = self.rtx_lacks()
        if rtx and dc:
            raise VnexportError(f"--compute-capability (TensorRT-RTX only) and {dc[0]} "
                                "(datacenter TensorRT only) cannot be combined")
        return "tensorrt-rtx" if rtx else "tensorrt" if dc else "auto"

    def rtx_lacks(self) -> list[str]:
        """Options given that TensorRT-RTX does not have [RTX-AOT]: it logs a hardware
        compatibility level as unsupported, and its timing cache operations are no-ops."""
        out = []
        if self.hardware_compat != "none":
            out.append(f"--hardware-compat {self.hardware_compat}")
        if self.timing_cache is not None:
            out.append("--timing-cache")
        return out

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * 2**30)


def parse_compute_capabilities(text: str | None) -> tuple[str, ...] | None:
    """ "8.0,8.6" -> ("8.0", "8.6"); each must be MAJOR.MINOR (exit 2 otherwise). Whether
    TensorRT-RTX has a target for it is checked against its ComputeCapability enum
    (``rtx_compute_capabilities``)."""
    if text is None:
        return None
    out = []
    for part in split_list(text, "--compute-capability"):
        major, dot, minor = part.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            raise VnexportError(f"--compute-capability takes MAJOR.MINOR values separated by "
                                f"commas (e.g. 8.0,8.6), got {part!r}")
        out.append(f"{int(major)}.{int(minor)}")
    if not out:
        raise VnexportError("--compute-capability: no value given")
    return tuple(dict.fromkeys(out))


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
                    verification_inputs: dict | None = None, facts: dict | None = None,
                    **extra: Any) -> dict:
    """The JSON written beside the engine (trtexec and Triton still read the plan as is).

    ``facts``: what TensorRT's network and builder config said (``build_serialized``); strong
    typing and TF32 come from there when given. ``verification`` is null when the engine was
    not run, with ``verification_skipped`` saying why."""
    facts = facts or {}
    builder = runtime.get("builder", "tensorrt")
    meta = {
        "engine": Path(engine_path).name,
        "engine_sha256": engine_sha256,
        "tool": "vnexport",
        "tool_version": __version__,
        "builder": builder,
        "builder_version": runtime.get("builder_version", runtime.get("tensorrt")),
        "tensorrt_version": runtime.get("tensorrt"),
        "polygraphy_version": runtime.get("polygraphy"),
        "gpu": runtime.get("gpu"),
        "precision": precision,
        "strongly_typed": facts.get("strongly_typed", options.strongly_typed),
        "tf32": facts.get("tf32"),
        "profile": profile.to_dict(),
        "source_onnx": Path(onnx_path).name,
        "source_onnx_sha256": onnx_sha256,
        **_targets(builder, runtime, options, facts),
        "builder_optimization_level": options.builder_opt_level,
        "workspace_gib": options.workspace_gib,
        "timing_cache": None if options.timing_cache is None else str(options.timing_cache),
        "builder_config": facts or None,
        "built_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": None if build_seconds is None else round(build_seconds, 3),
        "verification_reference": reference,
        "verification_inputs": verification_inputs,
        "verification": None if comparison is None else comparison.to_dict(),
    }
    if comparison is None:
        meta["verification_skipped"] = (
            "the engine was not run: verification was not asked for (--no-verify)"
            + ("" if runtime.get("gpu") else "; the build machine has no CUDA GPU"))
    meta.update(extra)
    return meta


def _targets(builder: str, runtime: dict, options: BuildOptions, facts: dict) -> dict:
    """Which GPUs the engine is for: TensorRT-RTX's compute capabilities (as its config
    reports them; empty: its default set), or datacenter TensorRT's build GPU and hardware
    compatibility level."""
    if builder == "tensorrt-rtx":
        ccs = facts.get("compute_capabilities") or runtime.get("compute_capabilities")
        return {"compute_capabilities": ccs or None,
                "targets": (f"compute capability {', '.join(ccs)}" if ccs else
                            RTX_DEFAULT_TARGETS) + "; needs the TensorRT-RTX runtime "
                           f"{runtime.get('builder_version')} on the target",
                "hardware_compat": None}
    gpu = runtime.get("gpu") or {}
    where = {"none": f"the build GPU's architecture ({gpu.get('name', '?')}, compute "
                     f"capability {gpu.get('compute_capability', '?')})",
             "ampere+": "Ampere and newer GPUs (hardware compatibility AMPERE_PLUS)",
             "same-cc": f"GPUs of compute capability {gpu.get('compute_capability', '?')}"}
    return {"compute_capabilities": None,
            "targets": where[options.hardware_compat] + f"; needs TensorRT "
                       f"{runtime.get('tensorrt')} on the target",
            "hardware_compat": options.hardware_compat}


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


def _import_builder_module(builder: str):
    """``tensorrt`` or ``tensorrt_rtx``, or MissingRuntimeError (exit 3) saying what is wrong:
    not installed, not loading, or an empty package (the ``tensorrt-stubs`` wheel installs a
    bare ``tensorrt`` namespace package: no libraries, no __version__)."""
    import importlib

    name = BUILDER_MODULES[builder]
    hint = INSTALL_HINT if builder == "tensorrt" else RTX_INSTALL_HINT
    label = "TensorRT" if builder == "tensorrt" else "TensorRT-RTX"
    try:
        module = importlib.import_module(name)
    except (ImportError, OSError) as e:
        missing = f"{label} is not installed" if f"No module named '{name}'" in str(e) else \
            f"{label} does not load ({(str(e).splitlines() or ['?'])[0]})"
        raise MissingRuntimeError(f"{missing}: {hint}") from None
    if not isinstance(getattr(module, "__version__", None), str):
        where = list(getattr(module, "__path__", []))[:1] or [getattr(module, "__file__", "?")]
        raise MissingRuntimeError(f"the installed '{name}' is an empty package without "
                                  f"{label}'s libraries ({where[0]}; e.g. the tensorrt-stubs "
                                  f"wheel): {hint}")
    return module


def builder_installed(builder: str) -> bool:
    """Whether ``builder``'s module imports as a real TensorRT (not an empty package)."""
    try:
        _import_builder_module(builder)
    except MissingRuntimeError:
        return False
    return True


def resolve_builder(options: BuildOptions) -> str:
    """"tensorrt" or "tensorrt-rtx" for ``options`` (see BuildOptions.builder_wanted); "auto"
    takes datacenter TensorRT where installed, else TensorRT-RTX, else exit 3 naming both."""
    wanted = options.builder_wanted
    if wanted != "auto":
        return wanted
    for builder in ("tensorrt", "tensorrt-rtx"):
        if builder_installed(builder):
            return builder
    raise MissingRuntimeError("no TensorRT builder is installed: datacenter TensorRT "
                              f"({INSTALL_HINT}) or TensorRT-RTX ({RTX_INSTALL_HINT})")


def load_polygraphy(builder: str):
    """Polygraphy, imported for ``builder``'s TensorRT module; returns the ``polygraphy``
    package.

    Polygraphy chooses between ``tensorrt`` and ``tensorrt_rtx`` once per import: the variable
    POLYGRAPHY_USE_TENSORRT_RTX is read when ``polygraphy.config`` is first imported, and each
    backend module binds its lazy TensorRT import then [PG-RTX]. So the variable is set only
    around that first import (the caller's environment is restored). When Polygraphy is
    already loaded for the other builder, its modules are dropped from ``sys.modules`` and
    imported again (import isolation): vnexport imports Polygraphy's names inside each
    function, so its own calls see the current backend; Polygraphy objects made before the
    switch (loaders, runners, exception classes) stay bound to the earlier one.
    """
    import importlib
    import sys

    want = builder == "tensorrt-rtx"
    loaded = sys.modules.get("polygraphy.config")
    if loaded is not None and bool(getattr(loaded, "USE_TENSORRT_RTX", False)) == want:
        return importlib.import_module("polygraphy")
    for name in [m for m in sys.modules if m == "polygraphy" or m.startswith("polygraphy.")]:
        del sys.modules[name]
    before = os.environ.get(POLYGRAPHY_RTX_ENV)
    os.environ[POLYGRAPHY_RTX_ENV] = "1" if want else "0"
    try:
        polygraphy = importlib.import_module("polygraphy")
        importlib.import_module("polygraphy.config")
    except ImportError:
        hint = RTX_INSTALL_HINT if want else INSTALL_HINT
        raise MissingRuntimeError(f"Polygraphy is not installed: {hint}") from None
    finally:
        if before is None:
            os.environ.pop(POLYGRAPHY_RTX_ENV, None)
        else:
            os.environ[POLYGRAPHY_RTX_ENV] = before
    return polygraphy


def _active_trt():
    """The TensorRT module Polygraphy is loaded for (``tensorrt`` or ``tensorrt_rtx``)."""
    import importlib

    import polygraphy.config

    return importlib.import_module("tensorrt_rtx" if polygraphy.config.USE_TENSORRT_RTX
                                   else "tensorrt")


def require_runtime(hardware_compat: str = "none") -> dict:
    """Datacenter TensorRT (>= 10.12), Polygraphy and a CUDA GPU, or MissingRuntimeError
    (exit 3). Returns {"builder", "builder_version", "tensorrt", "polygraphy", "gpu"}."""
    trt = _import_builder_module("tensorrt")
    check_trt_version(trt.__version__)
    polygraphy = load_polygraphy("tensorrt")
    gpu = gpu_info()
    if hardware_compat == "ampere+" and parse_version(gpu["compute_capability"]) < (8, 0):
        raise VnexportError(f"--hardware-compat ampere+ must be built on an Ampere or newer GPU "
                            f"(compute capability >= 8.0); this one is {gpu['name']} "
                            f"({gpu['compute_capability']})")
    return {"builder": "tensorrt", "builder_version": trt.__version__,
            "tensorrt": trt.__version__, "polygraphy": polygraphy.__version__, "gpu": gpu}


def rtx_compute_capabilities(trtx, wanted: tuple[str, ...] | None) -> list[tuple[int, int]]:
    """``wanted`` ("8.0", ...) as (major, minor) pairs that this TensorRT-RTX has a
    ComputeCapability.SM<major><minor> member for, else exit 2 listing the ones it has."""
    have = {n for n in trtx.ComputeCapability.__members__ if n.startswith("SM")}
    out = []
    for cc in wanted or ():
        major, minor = (int(v) for v in cc.split("."))
        if f"SM{major}{minor}" not in have:
            known = sorted((int(n[2:-1]), int(n[-1])) for n in have)
            raise VnexportError(f"--compute-capability {cc}: TensorRT-RTX {trtx.__version__} "
                                f"has no such target (it has "
                                f"{', '.join(f'{a}.{b}' for a, b in known)})")
        out.append((major, minor))
    return out


def require_rtx_runtime(options: BuildOptions, need_gpu: bool = False) -> dict:
    """TensorRT-RTX and Polygraphy (no GPU needed to build); the GPU where one is present.
    ``need_gpu`` (the engine is to be verified): no CUDA GPU is exit 3 with NO_GPU_TO_VERIFY."""
    trtx = _import_builder_module("tensorrt-rtx")
    targets = rtx_compute_capabilities(trtx, options.compute_capabilities)
    polygraphy = load_polygraphy("tensorrt-rtx")
    try:
        gpu, no_gpu = gpu_info(), None
    except MissingRuntimeError as e:
        gpu, no_gpu = None, e.message
    if need_gpu and gpu is None:
        raise MissingRuntimeError(NO_GPU_TO_VERIFY)
    return {"builder": "tensorrt-rtx", "builder_version": trtx.__version__,
            "tensorrt_rtx": trtx.__version__, "polygraphy": polygraphy.__version__,
            "gpu": gpu, "no_gpu": no_gpu,
            "compute_capabilities": [f"{a}.{b}" for a, b in targets] or None}


def require_builder(options: BuildOptions, need_gpu: bool = True) -> dict:
    """The runtime for ``options``' builder (resolve_builder), or exit 3 with one line.
    Datacenter TensorRT always needs a GPU (it builds on it); TensorRT-RTX only to verify."""
    builder = resolve_builder(options)
    if builder == "tensorrt":
        return require_runtime(options.hardware_compat)
    return require_rtx_runtime(options, need_gpu=need_gpu)


def runtime_missing_reason() -> str | None:
    """Why this machine cannot build and run engines with datacenter TensorRT (one line), or
    None when it can."""
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


def _config_loader(builder: str, trt, profile: Profile, options: BuildOptions):
    """Polygraphy's config loader for ``builder`` [PG-CONFIG, PG-PROFILE, PG-RTX]: the profile,
    the workspace pool limit (MemoryPoolType.WORKSPACE) and builder_optimization_level for
    both; datacenter TensorRT also tf32=False (clears BuilderFlag.TF32, on by default), the
    timing cache and hardware_compatibility_level; TensorRT-RTX the compute capabilities
    (CreateConfigRTX has no tf32 argument: build_serialized clears the flag itself)."""
    common = dict(
        profiles=[_pg_profile(profile)],
        memory_pool_limits=None if options.workspace_bytes is None else
        {trt.MemoryPoolType.WORKSPACE: options.workspace_bytes},
        builder_optimization_level=options.builder_opt_level)
    if builder == "tensorrt-rtx":
        from polygraphy.backend.tensorrt_rtx import CreateConfigRTX

        targets = rtx_compute_capabilities(trt, options.compute_capabilities)
        return CreateConfigRTX(compute_capabilities=targets or None, **common)
    from polygraphy.backend.trt import CreateConfig

    level = HARDWARE_COMPAT[options.hardware_compat]
    hw = getattr(trt.HardwareCompatibilityLevel, level, None)
    if hw is None:
        raise VnexportError(f"--hardware-compat {options.hardware_compat}: TensorRT "
                            f"{trt.__version__} has no HardwareCompatibilityLevel.{level}")
    cache = None if options.timing_cache is None else str(options.timing_cache)
    return CreateConfig(
        tf32=False,
        load_timing_cache=cache if cache and Path(cache).is_file() else None,
        hardware_compatibility_level=None if options.hardware_compat == "none" else hw,
        **common)


def _pg_profile(profile: Profile):
    from polygraphy.backend.trt import Profile as PgProfile

    return PgProfile().add(profile.input, min=profile.min, opt=profile.opt, max=profile.max)


def _config_facts(builder: str, trt, network, cfg) -> dict:
    """What TensorRT's own network and IBuilderConfig say (read back, not our options)."""
    flag = getattr(getattr(trt, "NetworkDefinitionCreationFlag", None), "STRONGLY_TYPED", None)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    facts = {
        "strongly_typed": None if flag is None else bool(network.get_flag(flag)),
        "tf32": None if tf32 is None else bool(cfg.get_flag(tf32)),
        "workspace_bytes": int(cfg.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)),
        "builder_optimization_level": int(cfg.builder_optimization_level),
        "optimization_profiles": int(cfg.num_optimization_profiles),
    }
    if builder == "tensorrt-rtx":
        facts["compute_capabilities"] = [
            _cc_text(cfg.get_compute_capability(i)) for i in range(cfg.num_compute_capabilities)]
    else:
        facts["hardware_compatibility_level"] = cfg.hardware_compatibility_level.name
    return facts


def _cc_text(member) -> str:
    """ComputeCapability.SM86 -> "8.6" (SM120 -> "12.0")."""
    digits = member.name[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def build_serialized(onnx_path: Path, profile: Profile, options: BuildOptions,
                     builder: str = "tensorrt"):
    """Parse ``onnx_path`` as a strongly typed network and build it; returns (plan, facts).

    ``facts`` (``_config_facts``): strong typing, TF32, workspace, optimisation level, profiles
    and the compute capabilities / hardware level, as TensorRT's network and config report
    them. Polygraphy's loaders do the work [PG-LOADERS]: NetworkFromOnnxPath with
    strongly_typed=True sets NetworkDefinitionCreationFlag.STRONGLY_TYPED [TRT-BUILDER];
    EngineBytesFromNetwork calls Builder.build_serialized_network and merges/saves the
    timing cache (datacenter TensorRT only). TF32 is off for every engine: an fp32 engine
    computes in fp32.
    """
    load_polygraphy(builder)
    from polygraphy.backend.trt import EngineBytesFromNetwork, NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    trt = _active_trt()
    _quiet_polygraphy(options.verbose)
    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    create = _config_loader(builder, trt, profile, options)
    facts: dict[str, Any] = {}

    def config(trt_builder, trt_network):
        # EngineBytesFromNetwork accepts a callable (builder, network) -> IBuilderConfig
        cfg = create(trt_builder, trt_network)
        flag = getattr(trt.BuilderFlag, "TF32", None)
        if flag is not None and cfg.get_flag(flag):
            cfg.clear_flag(flag)  # TensorRT-RTX: CreateConfigRTX leaves TF32 on
        facts.update(_config_facts(builder, trt, trt_network, cfg))
        return cfg

    cache = None if options.timing_cache is None or builder != "tensorrt" else \
        str(options.timing_cache)
    try:
        plan = EngineBytesFromNetwork(network, config=config, save_timing_cache=cache)()
    except PolygraphyException as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "build failed")
        raise VnexportError(f"TensorRT could not build an engine from this file: {first}",
                            onnx_path) from None
    return plan, facts


def _engine_from_bytes(engine_bytes, path: object = None):
    """Deserialize a plan with Polygraphy's EngineFromBytes [PG-LOADERS]."""
    from polygraphy.backend.trt import EngineFromBytes
    from polygraphy.exception import PolygraphyException

    try:
        engine = EngineFromBytes(engine_bytes)()
    except PolygraphyException:
        engine = None
    if engine is None:
        try:
            gpu_info()
        except MissingRuntimeError as e:  # no GPU: not a version or target mismatch
            raise MissingRuntimeError(f"no CUDA GPU to load the TensorRT engine on "
                                      f"({e.message})", path) from None
        raise VnexportError("TensorRT could not deserialize this engine (built by another "
                            "TensorRT version, or for another GPU without --hardware-compat?)",
                            path)
    return engine


# ------------------------------------------------------------------------------------------
# an engine on this machine: which runtime it needs, and what can be said without a GPU


def read_provenance(engine_path: str | os.PathLike) -> dict | None:
    """``<engine>.json`` as written by build_engine, or None (absent, unreadable, or not a
    regular file: a FIFO there must not block)."""
    if not provenance_path(engine_path).is_file():
        return None
    try:
        data = json.loads(provenance_path(engine_path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def engine_builder(engine_path: str | os.PathLike) -> str:
    """The builder named in the engine's provenance; "tensorrt" without one (engines written
    before TensorRT-RTX support, or built elsewhere)."""
    builder = (read_provenance(engine_path) or {}).get("builder")
    return builder if builder in ("tensorrt", "tensorrt-rtx") else "tensorrt"


def require_engine_runtime(engine_path: str | os.PathLike) -> dict:
    """What running an engine needs, or MissingRuntimeError (exit 3): a CUDA GPU first (so a
    machine without one says "no CUDA GPU", not that the engine does not fit), then the
    runtime of the builder that made it (TensorRT-RTX engines need tensorrt_rtx)."""
    try:
        gpu = gpu_info()
    except MissingRuntimeError as e:
        detail = e.message.removeprefix("no CUDA GPU: ")
        raise MissingRuntimeError(f"no CUDA GPU to run the TensorRT engine on ({detail})",
                                  engine_path) from None
    builder = engine_builder(engine_path)
    module = _import_builder_module(builder)
    if builder == "tensorrt":
        check_trt_version(module.__version__)
    polygraphy = load_polygraphy(builder)
    return {"builder": builder, "builder_version": module.__version__,
            "polygraphy": polygraphy.__version__, "gpu": gpu}


_VALIDITY_MEANING = {
    "MALFORMED_ENGINE": "not a TensorRT-RTX engine, or a damaged one",
    "VERSION_MISMATCH": "built by another TensorRT-RTX version",
    "UNSUPPORTED_CC": "not built for this GPU's compute capability",
    "OLD_CUDA_DRIVER": "the CUDA driver is too old for it",
    "OLD_CUDA_RUNTIME": "the CUDA runtime is too old for it",
    "INSUFFICIENT_GPU_MEMORY": "this GPU has too little memory for it",
    "CUDA_ERROR": "a CUDA error stopped the check",
}


def engine_header_check(engine_path: str | os.PathLike) -> dict:
    """TensorRT-RTX's ``Runtime.get_engine_validity(buffer) -> (EngineValidity, diagnostics)``
    on the plan [RTX-AOT]; it needs no GPU to read the header. Without a GPU a well-formed
    plan comes back INVALID with no diagnostic bit (the runtime logs that it could not read
    the GPU's properties): said as such, not as a defect of the engine."""
    try:
        trtx = _import_builder_module("tensorrt-rtx")
    except MissingRuntimeError as e:
        return {"checked": False, "why": e.message}
    logged: list[str] = []

    class Collect(trtx.ILogger):  # keep TensorRT's messages out of the terminal, report them
        def __init__(self):
            trtx.ILogger.__init__(self)

        def log(self, severity, msg):
            logged.append(" ".join(str(msg).split()))

    validity, bits = trtx.Runtime(Collect()).get_engine_validity(
        Path(engine_path).read_bytes())
    flags = [n for n, m in trtx.EngineInvalidityDiagnostics.__members__.items()
             if int(bits) & int(m)]
    if validity.name in ("VALID", "SUBOPTIMAL"):
        meaning = "this TensorRT-RTX runtime can load it on this GPU"
    elif flags:
        meaning = "; ".join(_VALIDITY_MEANING.get(f, f) for f in flags)
    elif any("GPU" in m or "CUDA" in m for m in logged):
        meaning = ("header read, not malformed; the checks against a GPU did not run (no "
                   "usable CUDA GPU here)")
    else:
        meaning = "invalid (no diagnostic given)"
    return {"checked": True, "tensorrt_rtx": trtx.__version__, "validity": validity.name,
            "diagnostics": flags, "meaning": meaning, "log": logged[:3]}


def engine_facts(engine_path: str | os.PathLike) -> dict:
    """What can be said about an engine without running it: size and sha256, the provenance
    JSON's facts (and whether its sha256 matches the file), and TensorRT-RTX's header check
    where tensorrt_rtx is installed and the engine is not a datacenter TensorRT one."""
    path = Path(engine_path)
    if not path.is_file():
        raise VnexportError("no such file", path)
    if path.stat().st_size == 0:
        raise VnexportError("the file is empty", path)
    prov = read_provenance(path)
    digest = sha256_of(path)
    keys = ("builder", "builder_version", "tensorrt_version", "precision", "profile",
            "compute_capabilities", "targets", "hardware_compat", "gpu", "strongly_typed",
            "tf32", "source_onnx", "built_at", "verification", "verification_skipped")
    facts = {"file": str(path), "bytes": path.stat().st_size, "sha256": digest,
             "provenance": None if prov is None else provenance_path(path).name}
    if prov is not None:
        facts.update({k: prov.get(k) for k in keys if k in prov})
        facts["sha256_matches_provenance"] = prov.get("engine_sha256") == digest
    if prov is not None and prov.get("builder", "tensorrt") == "tensorrt":
        facts["header_check"] = {"checked": False, "why": "a datacenter TensorRT engine "
                                 "(TensorRT-RTX's header check does not apply)"}
    else:
        facts["header_check"] = engine_header_check(path)
    return facts


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
    Comparison; when it fails nothing is written (``written`` False). Without ``check`` the
    engine is not run (``verification`` null, ``verification_skipped`` says so). The engine
    and ``<engine>.json`` are written atomically. ``runtime``: ``require_builder``'s answer
    (asked here when None); a check with no GPU to run on is exit 3 before anything is built.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    options.validate()
    model = load_onnx(onnx_path, external_data=False)
    precision = detect_precision(onnx_path, model)
    profile = resolve_profile(read_onnx_input(onnx_path, model), options, img_size, onnx_path)
    runtime = runtime or require_builder(options, need_gpu=check is not None)
    if check is not None and not runtime.get("gpu"):
        raise MissingRuntimeError(NO_GPU_TO_VERIFY)
    t0 = time.perf_counter()
    plan, facts = build_serialized(onnx_path, profile, options,
                                   runtime.get("builder", "tensorrt"))
    build_seconds = time.perf_counter() - t0
    comparison = None
    if check is not None:
        engine = _engine_from_bytes(plan, onnx_path)
        comparison = check(lambda x: infer(engine, x))
        del engine
    meta = make_provenance(
        engine_path=engine_path, engine_sha256=None, onnx_path=onnx_path,
        onnx_sha256=sha256_of(onnx_path), precision=precision, profile=profile,
        options=options, runtime=runtime, build_seconds=build_seconds, comparison=comparison,
        reference=reference, verification_inputs=verification_inputs, facts=facts, **extra)
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
