"""The ``vnexport trt`` stage called directly (vnexport/stages/trt.py): the checks that need no
runtime come first (VnexportError, nothing written), then the runtime (MissingRuntimeError).
The build itself is tested in test_trt.py (on a GPU, and with ONNX Runtime standing in)."""

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
