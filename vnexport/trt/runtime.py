"""The runtime on this machine: TensorRT or TensorRT-RTX (imported inside the functions that
need them), Polygraphy loaded for the right one, and a CUDA GPU (read from the driver); what a
build or an engine needs, or MissingRuntimeError (exit 3) saying what is missing. References
[TAG]: ``vnexport/trt/__init__.py``.

Tests replace ``gpu_info`` and ``builder_installed`` on this module (not on the package):
every caller of either lives here."""

from __future__ import annotations

import os

from ..errors import MissingRuntimeError, VnexportError
from .options import (BUILDER_MODULES, INSTALL_HINT, MIN_TRT, NO_GPU_TO_VERIFY,
                      POLYGRAPHY_RTX_ENV, RTX_INSTALL_HINT, BuildOptions)
from .provenance import engine_builder


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
