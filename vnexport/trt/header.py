"""What can be said about an engine without running it (``vnexport info``): its file, its
provenance, and TensorRT-RTX's header check. References [TAG]: ``vnexport/trt/__init__.py``."""

from __future__ import annotations

import os
from pathlib import Path

from ..checkpoint import sha256_of
from ..errors import MissingRuntimeError, VnexportError
from .provenance import provenance_path, read_provenance
from .runtime import _import_builder_module


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
            "tf32", "source_onnx", "built_at", "verification", "verification_skipped",
            "version_compatible", "exclude_lean_runtime")
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
