"""The ``vnexport demo`` stage called directly (vnexport/stages/demo.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stage_helpers import CONFIG, IMG, lines, small, training_outputs  # noqa: F401 (fixtures)
from vnexport import ort
from vnexport.checkpoint import load_checkpoint
from vnexport.stages import demo
from vnexport.verify import random_inputs


def test_demo_result_prints_its_table():
    r = demo.DemoResult(stages=[demo.StageResult("fuse", "a.pth", 1.25, True, "ok"),
                                demo.StageResult("trt", "-", 0.0, None, "no GPU",
                                                 optional=True)])
    lines = r.lines()
    assert lines[0] == "" and lines[1].split() == ["stage", "artifact", "time", "result"]
    assert lines[2].split()[:4] == ["fuse", "a.pth", "1.2s", "PASS:"]
    assert lines[3].endswith("skipped: no GPU")
    assert demo.STAGES == [demo.stage_fuse, demo.stage_onnx, demo.stage_precision,
                           demo.stage_trt]


def test_demo_onnx_step_uses_the_onnx_stage_and_matches_training(small, tmp_path):
    ckpt = load_checkpoint(small.training, strides=CONFIG.strides)
    x = random_inputs(CONFIG, 3, IMG, seed=4)
    ref = training_outputs(small, x)
    r = demo.stage_onnx(ckpt, x, ref, tmp_path, lambda m: None)
    assert r.passed is True and Path(r.artifact).is_file()
    got = ort.run(ort.session(r.artifact, device="cpu"), x.numpy())
    assert np.abs(got - ref).max() / np.abs(ref).max() <= 1e-4
