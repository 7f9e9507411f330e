"""Building engines: Polygraphy's config for either builder, the build itself
(``build_serialized``), and ``build_engine`` (build, verify, write the engine and its
provenance atomically). References [TAG]: ``vnexport/trt/__init__.py``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..checkpoint import sha256_of
from ..errors import MissingRuntimeError, VnexportError
from ..fileio import atomic_output
from ..onnx_file import detect_precision, load_onnx, read_onnx_input, stored_max_batch
from .engine import infer
from .options import HARDWARE_COMPAT, NO_GPU_TO_VERIFY, BuildOptions, Profile, resolve_profile
from .provenance import make_provenance, provenance_path
from .runtime import (_active_trt, _engine_from_bytes, _quiet_polygraphy, load_polygraphy,
                      require_builder, rtx_compute_capabilities)

if TYPE_CHECKING:  # annotations only: a runtime does not import the checks
    from ..verify import Comparison


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
        version_compatible=options.version_compatible or None,
        exclude_lean_runtime=options.exclude_lean_runtime or None,
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
        for name in ("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"):
            flag = getattr(trt.BuilderFlag, name, None)
            facts[name.lower()] = None if flag is None else bool(cfg.get_flag(flag))
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
    profile = resolve_profile(read_onnx_input(onnx_path, model), options, img_size, onnx_path,
                              stored_max_batch(model))
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
