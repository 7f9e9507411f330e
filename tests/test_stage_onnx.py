"""The ``vnexport onnx`` stage called directly (vnexport/stages/onnx.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

import json

import onnx

from stage_helpers import CONFIG, IMG, SRC, lines, small, training_outputs  # noqa: F401 (fixtures)
from vnexport import ort
from vnexport.onnx_file import detect_precision, get_metadata, op_inventory
from vnexport.stages import quantize
from vnexport.stages import onnx as onnx_stage
from vnexport.verify import compare, random_inputs


def test_onnx_stage_file_matches_the_training_form(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "m.onnx"
    opts = onnx_stage.OnnxOptions(small.training, dst, onnx_stage.Export(
        img_size=IMG, dynamic_batch=True, max_batch=4), source=SRC,
        check=onnx_stage.Check(n=5))
    r = onnx_stage.run(opts, log)
    assert r.exit_code == 0 and r.to_dict()["written"] is True
    assert r.to_dict()["verification"]["passed"] is True
    x = random_inputs(CONFIG, 6, IMG, seed=9)
    got = ort.run(ort.session(dst, device="cpu"), x.numpy())
    assert compare(training_outputs(small, x), got).passed
    meta = get_metadata(dst)
    assert json.loads(meta["dynamic_batch"]) is True
    assert json.loads(meta["verification"])["passed"] is True
    assert op_inventory(onnx.load(str(dst)))["Conv"] == r.to_dict()["conv_count_expected"]


def test_onnx_stage_same_options_same_bytes(small, tmp_path, lines):
    opts = [onnx_stage.OnnxOptions(small.training, tmp_path / f"{k}.onnx",
                                   onnx_stage.Export(img_size=IMG), source=SRC,
                                   check=onnx_stage.Check(n=2)) for k in "ab"]
    for o in opts:
        assert onnx_stage.run(o, lines[1]).exit_code == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_onnx_stage_int8_warns_of_random_calibration(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "m8.onnx"
    r = onnx_stage.run(onnx_stage.OnnxOptions(
        small.training, dst, onnx_stage.Export(img_size=IMG), precision="int8",
        conversion=quantize.Conversion(calib_n=8), source=SRC,
        check=onnx_stage.Check(n=8)), log)
    # warnings are held back until the result is printed (the CLI flushes them after it)
    assert not any("RANDOM" in line for line in out)
    assert any(line.startswith("warning") and "RANDOM" in line for line in log.deferred)
    assert r.to_dict()["precision"]["precision"] == "int8"
    assert r.exit_code == 0 and detect_precision(dst) == "int8"
