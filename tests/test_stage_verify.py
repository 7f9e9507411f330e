"""The ``vnexport verify`` stage called directly (vnexport/stages/verify.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

import onnx

from stage_helpers import IMG, SRC, lines, small  # noqa: F401 (fixtures)
from vnexport.errors import EXIT_CHECK_FAILED
from vnexport.stages import verify


def test_verify_stage_judges_each_artifact(small, lines):
    out, log = lines
    r = verify.run(verify.VerifyOptions(small.training, [small.deploy, small.onnx], SRC, n=4,
                                        img_size=IMG), log)
    d = r.to_dict()
    assert r.exit_code == 0 and d["passed"] is True
    assert [a["kind"] for a in d["artifacts"]] == ["deploy", "onnx"]
    assert all(a["max_rel"] <= 1e-4 for a in d["artifacts"])
    assert r.lines() == ["verification passed: 2 artifact(s)"]


def test_verify_stage_fails_on_a_scaled_channel(small, tmp_path, lines):
    from artifacts import onnx_scale_channel

    model = onnx.load(str(small.onnx))
    conv_w = next(i.name for i in model.graph.initializer if len(i.dims) == 4)
    bad = onnx_scale_channel(small.onnx, tmp_path / "bad.onnx", conv_w, 0, 1.5)
    r = verify.run(verify.VerifyOptions(small.training, [bad], SRC, n=4, img_size=IMG),
                   lines[1])
    assert r.exit_code == EXIT_CHECK_FAILED and r.to_dict()["passed"] is False
    assert r.lines() == ["verification FAILED: bad.onnx"]
