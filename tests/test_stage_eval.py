"""The ``vnexport eval`` stage called directly (vnexport/stages/eval.py) on the digits model
(tests/digits.py): its Result against the held-out labels counted here with the training-form
network, a planted defect judged by --max-drop, and its refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from vnexport.checkpoint import load_checkpoint
from vnexport.errors import EXIT_CHECK_FAILED, VnexportError
from vnexport.stages import eval as stage
from vnexport.stages.common import Log, Source

SRC = Source(strides="2,2")
N = 120


@pytest.fixture(scope="module")
def run(digits_run, tmp_path_factory):
    from digits import CONFIG, IMG, write_image_folder

    from vnexport.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("stage_eval")
    val = write_image_folder(digits_run.x_test[:N], digits_run.y_test[:N], d / "val")
    onnx_path = d / "digits.onnx"
    export_onnx(load_checkpoint(digits_run.final, strides=CONFIG.strides), onnx_path,
                img_size=IMG, dynamic_batch=True)
    return digits_run, val, onnx_path


@pytest.fixture
def lines():
    out: list[str] = []
    return out, Log(echo=out.append, note=out.append)


def test_eval_stage_reports_every_artifact(run, lines):
    digits_run, val, onnx_path = run
    out, log = lines
    r = stage.run(stage.EvalOptions([digits_run.final, onnx_path], val, SRC, batch=7), log)
    d = r.to_dict()
    assert r.exit_code == 0 and d["passed"] is True
    # the independent count: the training form on the tensors the PNGs were written from
    # (the PNGs store them rounded to 8 bits, so a near-tie may differ: allow one image)
    model = load_checkpoint(digits_run.final, strides=(2, 2)).build_model().eval()
    with torch.no_grad():
        pred = model(digits_run.x_test[:N]).argmax(1).numpy()
    right = int((pred == digits_run.y_test[:N]).sum())
    ref, art = d["artifacts"]
    assert ref["kind"] == "training" and art["kind"] == "onnx"
    assert ref["n"] == art["n"] == N
    assert abs(ref["top1_correct"] - right) <= 1
    assert art["top1_correct"] == ref["top1_correct"]
    assert art["vs_reference"]["top1_agreement"] == 100.0
    assert art["normalisation"]["from"] == "ONNX metadata"
    assert r.lines() == [f"evaluated 2 artifact(s) on {N} images"]
    assert out[0].startswith(f"evaluating on all {N} images of 10 classes")
    assert any(line.startswith("artifact ") for line in out)  # the table


def test_eval_stage_max_drop_fails_a_broken_file(run, tmp_path, lines):
    from artifacts import onnx_scale_channel

    digits_run, val, onnx_path = run
    model = onnx.load(str(onnx_path))
    head = [i.name for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 10][-1]
    bad = onnx_scale_channel(onnx_path, tmp_path / "bad.onnx", head, 7, -1.0)
    r = stage.run(stage.EvalOptions([digits_run.final, onnx_path, bad], val, SRC,
                                    max_drop=1.0), lines[1])
    d = r.to_dict()
    assert r.exit_code == EXIT_CHECK_FAILED and d["passed"] is False
    assert r.lines()[-1] == "eval FAILED: bad.onnx"
    assert d["artifacts"][2]["top1"] < d["artifacts"][0]["top1"] - 1.0


def test_eval_stage_refuses_more_classes_than_the_model_has(run, tmp_path, lines):
    digits_run, _, _ = run
    for c in range(11):
        (tmp_path / f"c{c:02d}").mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / f"c{c:02d}" / "a.png")
    with pytest.raises(VnexportError, match="11 class folders, but the model has 10"):
        stage.run(stage.EvalOptions([digits_run.final], tmp_path, SRC), lines[1])
