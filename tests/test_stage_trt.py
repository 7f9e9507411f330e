"""The ``vnexport trt`` stage called directly (vnexport/stages/trt.py): the checks that need no
runtime come first (VnexportError, nothing written), then the runtime (MissingRuntimeError).
The build itself is tested in test_trt.py (on a GPU), test_trt_fakes.py (recording fakes of
tensorrt/polygraphy) and test_trt_rtx.py (real TensorRT-RTX engines)."""

from __future__ import annotations

import pytest

from stage_helpers import lines, small  # noqa: F401 (fixtures)
from vnexport.errors import MissingRuntimeError, VnexportError
from vnexport.stages import trt
from vnexport.trt import runtime_missing_reason


def test_trt_stage_checks_inputs_before_the_runtime(small, tmp_path, lines):
    with pytest.raises(VnexportError, match="apply to a checkpoint source only"):
        trt.run(trt.TrtOptions(small.onnx, keep_onnx=tmp_path / "k.onnx"), lines[1])
    with pytest.raises(VnexportError, match="the precision comes from the ONNX file"):
        trt.run(trt.TrtOptions(small.onnx, precision="fp16"), lines[1])
    with pytest.raises(VnexportError, match="--max-batch must be >= 1"):
        trt.run(trt.TrtOptions(small.onnx, build=trt.BuildOptions(max_batch=0)), lines[1])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(runtime_missing_reason() is None, reason="TensorRT and a GPU are here")
def test_trt_stage_without_runtime_raises_missing_runtime(small, tmp_path, lines):
    with pytest.raises(MissingRuntimeError):
        trt.run(trt.TrtOptions(small.onnx, tmp_path / "m.engine"), lines[1])
    assert list(tmp_path.iterdir()) == []


def test_trt_stage_builds_with_tensorrt_rtx_unverified(small, tmp_path, lines):
    """The stage with TensorRT-RTX on a machine without a GPU: --no-verify builds and says
    the engine was not run; with verification it stops at the runtime step, writing nothing."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed "
                        "(pip install 'vnexport[trt-rtx]')")
    from vnexport import trt as vt

    if vt._load_libcuda() is not None:
        pytest.skip("an NVIDIA driver is present: the engine could be verified")
    build = trt.BuildOptions(builder="tensorrt-rtx", compute_capabilities=("8.0",),
                             max_batch=4)
    with pytest.raises(MissingRuntimeError, match="built nothing: no CUDA GPU"):
        trt.run(trt.TrtOptions(small.onnx, tmp_path / "m.engine", build=build), lines[1])
    assert list(tmp_path.iterdir()) == []
    res = trt.run(trt.TrtOptions(small.onnx, tmp_path / "m.engine", build=build, verify=None),
                  lines[1])
    assert res.exit_code == 0 and res.report["written"] is True
    prov = res.report["provenance"]
    assert prov["builder"] == "tensorrt-rtx" and prov["compute_capabilities"] == ["8.0"]
    assert prov["profile"]["max"][0] == 4 and prov["verification"] is None
    assert any(line.startswith("NOT VERIFIED: the engine was not run") for line in lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json"]
