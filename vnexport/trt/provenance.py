"""The provenance JSON written beside an engine (``<engine>.json``): what made it, for which
GPUs, how it was verified; and reading it back. Plain Python (CPU)."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .options import RTX_DEFAULT_TARGETS, BuildOptions, Profile

if TYPE_CHECKING:  # annotations only: a runtime does not import the checks
    from ..verify import Comparison


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
        "profile_origin": profile.origin,
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
                       f"{runtime.get('tensorrt')}"
                       + (" or a later one (version-compatible)" if options.version_compatible
                          else "") + " on the target",
            "hardware_compat": options.hardware_compat,
        "version_compatible": facts.get("version_compatible", options.version_compatible),
        "exclude_lean_runtime": facts.get("exclude_lean_runtime", options.exclude_lean_runtime)}


def read_provenance(engine_path: str | os.PathLike) -> dict | None:
    """``<engine>.json`` as written by build_engine, or None (absent or unreadable)."""
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
