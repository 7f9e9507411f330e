"""Which Triton containers can load an engine: the one table of TensorRT versions per Triton
NGC container release, and what an engine's provenance needs of it (CPU, no TensorRT).

The pairs are NVIDIA's, copied from the Triton Inference Server user guide's "Release
Compatibility Matrix" (docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/
introduction/compatibility.html, and its archived 2.53/2.54 copies), which lists the
``nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3`` containers; only the rows found
there are here. The plain ``-py3`` containers of a release are listed in NVIDIA's Frameworks
Support Matrix; check it for those (not copied here).

Version compatibility [TRT-VERCOMPAT]: a plan built with BuilderFlag.VERSION_COMPATIBLE (TensorRT
>= 8.6) loads on the same or a later TensorRT runtime (NVIDIA: "engines built with version
compatibility enabled using TensorRT 11.0 will be compatible with TensorRT 11.1 and later 11.x
versions"); Triton's TensorRT backend loads such plans with
``--backend-config=tensorrt,version-compatible=true`` (Triton 23.09 release notes: across the
same major version). Without the flag a plan needs exactly the TensorRT that built it.
"""

from __future__ import annotations

MATRIX_SOURCE = ("NVIDIA Triton Release Compatibility Matrix (docs.nvidia.com/deeplearning/"
                 "triton-inference-server/user-guide/docs/introduction/compatibility.html), "
                 "container tritonserver:<yy.mm>-trtllm-python-py3")
CONTAINER = "nvcr.io/nvidia/tritonserver:{release}-trtllm-python-py3"
TRITON_VERSION_COMPATIBLE_FLAG = "--backend-config=tensorrt,version-compatible=true"

# Triton container release -> the TensorRT it carries (as the matrix writes it)
TRITON_TENSORRT = {
    "24.05": "10.0.1.6", "24.06": "10.0.1", "24.07": "10.1.0", "24.08": "10.3.0",
    "24.09": "10.4.0", "24.10": "10.4.0", "24.11": "10.6.0", "24.12": "10.7.0",
    "25.01": "10.8.0.43", "25.06": "10.10.0.31", "25.07": "10.10.0.31",
    "25.08": "10.11.0.33", "25.09": "10.11.0.33", "25.10": "10.11.0.33",
    "25.11": "10.13.3.9", "25.12": "10.13.3.9",
}


def _parts(version: str) -> tuple[int, ...]:
    out = []
    for p in str(version).split("."):
        if not p.isdigit():
            break
        out.append(int(p))
    return tuple(out)


def carries(container_trt: str, engine_trt: str, version_compatible: bool) -> bool:
    """Whether a container with TensorRT ``container_trt`` loads a plan built by ``engine_trt``:
    the same version (compared on the parts both name), or, for a version-compatible plan, the
    same major version and not older."""
    have, need = _parts(container_trt), _parts(engine_trt)
    if not have or not need:
        return False
    n = min(len(have), len(need))
    if not version_compatible:
        return have[:n] == need[:n]
    return have[0] == need[0] and have[:n] >= need[:n]


def containers_for(engine_trt: str | None, version_compatible: bool = False) -> list[str]:
    """The Triton releases of the table whose TensorRT loads the engine (oldest first)."""
    if not engine_trt:
        return []
    return [r for r, v in sorted(TRITON_TENSORRT.items())
            if carries(v, engine_trt, version_compatible)]


def serving_facts(prov: dict) -> dict:
    """What a datacenter TensorRT engine needs to be served, from its provenance: the TensorRT
    version, whether later ones load it, the table's containers that do, and the server flag."""
    trt_version = prov.get("tensorrt_version") or prov.get("builder_version")
    vc = bool(prov.get("version_compatible"))
    releases = containers_for(trt_version, vc)
    major = (_parts(trt_version) or ("?",))[0] if trt_version else "?"
    needs = (f"TensorRT {trt_version}" + (f" or a later TensorRT {major}.x (version-compatible)"
                                          if vc else " exactly (not version-compatible)")
             if trt_version else "unknown (no tensorrt_version in the provenance)")
    return {"tensorrt_version": trt_version, "version_compatible": vc,
            "exclude_lean_runtime": bool(prov.get("exclude_lean_runtime")),
            "needs": needs,
            "triton_releases": releases,
            "containers": [CONTAINER.format(release=r) for r in releases],
            "tritonserver_flag": TRITON_VERSION_COMPATIBLE_FLAG if vc else None,
            "source": MATRIX_SOURCE}


def serving_lines(prov: dict) -> list[str]:
    """The facts as lines (``info ENGINE``, ``triton ENGINE``)."""
    f = serving_facts(prov)
    lines = [f"needs       {f['needs']}"]
    if f["triton_releases"]:
        lines.append(f"triton      containers {', '.join(f['triton_releases'])} "
                     "(tritonserver:<yy.mm>-trtllm-python-py3; NVIDIA's Triton compatibility "
                     "matrix; its -py3 containers: the Frameworks Support Matrix)")
    elif f["tensorrt_version"]:
        lines.append("triton      no container in vnexport's table carries it (see NVIDIA's "
                     "Triton compatibility matrix and Frameworks Support Matrix)")
    if f["tritonserver_flag"]:
        lines.append(f"serve with  tritonserver {f['tritonserver_flag']} (a version-compatible "
                     "plan runs host code it carries: serve only plans you trust)")
    if f["exclude_lean_runtime"]:
        lines.append("lean        runtime excluded from the plan (--exclude-lean-runtime): the "
                     "loading side must supply the lean runtime of the build's TensorRT")
    return lines
