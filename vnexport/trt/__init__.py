"""The TensorRT runtime: strongly typed engines from ONNX files (builders, engines, provenance,
latency). The ``vnexport trt`` flow that uses them is ``vnexport/stages/trt.py``.

One module per concern; this package re-exports their names (``trt.build_engine``, ...):

- ``options``: BuildOptions, Profile, resolve_profile, the shared constants (CPU);
- ``provenance``: the ``<engine>.json`` beside each engine, written and read (CPU);
- ``runtime``: TensorRT / TensorRT-RTX, Polygraphy and the CUDA GPU, or exit 3 (``require_*``,
  ``gpu_info``, ``load_polygraphy``); tests replace ``runtime.gpu_info`` and
  ``runtime.builder_installed`` there, where all their callers are;
- ``build``: the builders' config, ``build_serialized``, ``build_engine`` (GPU, or CPU for
  TensorRT-RTX);
- ``engine``: loading, running and timing engines (GPU);
- ``header``: what can be said of an engine without running it (``engine_facts``).

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

from . import build, compat, engine, header, options, provenance, runtime
from .build import BuildResult, build_engine, build_serialized
from .engine import engine_io, infer, load_engine, measure_latency, run_engine
from .header import engine_facts, engine_header_check
from .options import (BUILDER_MODULES, BUILDERS, ENGINE_SUFFIXES, HARDWARE_COMPAT, INSTALL_HINT,
                      MIN_TRT, NO_GPU_TO_VERIFY, POLYGRAPHY_RTX_ENV, RTX_DEFAULT_TARGETS,
                      RTX_INSTALL_HINT, BuildOptions, Profile, parse_compute_capabilities,
                      resolve_profile)
from .provenance import engine_builder, make_provenance, provenance_path, read_provenance
from .runtime import (builder_installed, check_trt_version, gpu_info, load_polygraphy,
                      parse_version, require_builder, require_engine_runtime, require_runtime,
                      require_rtx_runtime, resolve_builder, rtx_compute_capabilities,
                      runtime_missing_reason)

# private names the tests reach for (their home modules are where to change them)
from .build import _config_loader  # noqa: E402,F401
from .runtime import _active_trt, _engine_from_bytes, _load_libcuda  # noqa: E402,F401
