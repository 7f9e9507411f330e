"""What the Triton tests share: the small model's artifacts in each form `vnexport triton`
takes, and Triton's own ModelConfig parser (tritonclient's protobuf), used here independently
of vnexport's check.

The TensorRT engines are TEST DOUBLES: a few bytes standing in for a plan (no TensorRT on these
machines), with the provenance JSON made by ``vnexport.trt.make_provenance`` and their real
source ONNX file beside them; only their configs are checked, Triton's TensorRT backend never
reads them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from artifacts import CONFIG, IMG, export_onnx_file, make_small_run
from vnexport.trt import BuildOptions, Profile, make_provenance, provenance_path

CLASSES = CONFIG.num_classes
__all__ = ["CLASSES", "IMG", "make_files", "parse", "dtype"]


def _engine_double(path: Path, source: Path, profile: Profile, precision: str) -> Path:
    path.write_bytes(b"TEST DOUBLE: not a TensorRT plan\n")
    prov = make_provenance(engine_path=path, engine_sha256=None, onnx_path=source,
                           onnx_sha256="0" * 64, precision=precision, profile=profile,
                           options=BuildOptions(), runtime={}, build_seconds=None,
                           comparison=None, reference=None)
    provenance_path(path).write_text(json.dumps(prov))
    return path


def _profile(lo: int, opt: int, hi: int) -> Profile:
    return Profile("input", (lo, 3, IMG, IMG), (opt, 3, IMG, IMG), (hi, 3, IMG, IMG))


def make_files(d: Path) -> dict[str, Path]:
    """A dynamic-batch ONNX file, a static batch-1 one, engine doubles (profile 1..8 from the
    dynamic file, 2..8 from it, 1..1 from the static file) and a labels file."""
    run = make_small_run(d)
    static = export_onnx_file(run.training, d / "static.onnx", batch=1)
    shutil.copy(run.onnx, d / "small_src.onnx")
    labels = d / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(CLASSES)))
    return {
        "onnx": run.onnx, "static": static, "labels": labels, "dir": d,
        "training": run.training,
        "engine": _engine_double(d / "small.engine", d / "small_src.onnx", _profile(1, 4, 8),
                                 "fp16"),
        "engine_min2": _engine_double(d / "min2.engine", d / "small_src.onnx",
                                      _profile(2, 4, 8), "fp32"),
        "engine_static": _engine_double(d / "fixed.engine", static, _profile(1, 1, 1), "fp32"),
    }


def parse(path: Path):
    """config.pbtxt as Triton's ModelConfig, parsed here, not by the code under test."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())


def dtype(tensor) -> str:
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2.DataType.Name(tensor.data_type)


def free_ports(n: int = 3) -> list[int]:
    """``n`` TCP ports free on 127.0.0.1 right now (bound, read, released)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
