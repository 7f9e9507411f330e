"""The ``vnexport quantize`` stage called directly (vnexport/stages/quantize.py): its Result
and files, compared with the training form where numbers are involved."""

from __future__ import annotations

import json

import pytest

from stage_helpers import CONFIG, IMG, SRC, lines, small, training_outputs  # noqa: F401 (fixtures)
from vnexport import ort
from vnexport.errors import VnexportError
from vnexport.onnx_file import detect_precision, get_metadata
from vnexport.stages import quantize
from vnexport.stages import onnx as onnx_stage
from vnexport.verify import compare, random_inputs, tolerance_for


def test_quantize_stage_fp16_against_the_training_form(small, tmp_path, lines):
    out, log = lines
    fixed = tmp_path / "fixed.onnx"
    assert onnx_stage.run(onnx_stage.OnnxOptions(
        small.training, fixed, onnx_stage.Export(img_size=IMG), source=SRC,
        check=onnx_stage.Check(no_verify=True)), log).exit_code == 0
    dst = tmp_path / "m16.onnx"
    r = quantize.run(quantize.QuantizeOptions(fixed, "fp16", dst, reference=small.training,
                                              source=SRC, n=4), log)
    assert r.exit_code == 0 and detect_precision(dst) == "fp16"
    assert r.to_dict()["reference"] == str(small.training)
    x = random_inputs(CONFIG, 4, IMG, seed=2)
    comp = compare(training_outputs(small, x),
                   ort.run(ort.session(dst, device="cpu"), x.numpy()), tolerance_for("fp16"))
    assert comp.passed, comp.summary()
    assert json.loads(get_metadata(dst)["vnexport.verification"])["passed"] is True


def test_quantize_stage_refuses_fp32_and_an_fp16_input(small, tmp_path, lines):
    with pytest.raises(VnexportError, match="quantize writes fp16 or int8"):
        quantize.run(quantize.QuantizeOptions(small.onnx, "fp32", tmp_path / "o.onnx"),
                     lines[1])
    f16 = tmp_path / "h.onnx"
    quantize.run(quantize.QuantizeOptions(small.onnx, "fp16", f16, img_size=IMG, n=2),
                 lines[1])
    with pytest.raises(VnexportError, match="already has reduced precision|not float32"):
        quantize.run(quantize.QuantizeOptions(f16, "int8", tmp_path / "q.onnx"), lines[1])
    assert not (tmp_path / "q.onnx").exists()


def test_fewer_calibration_images_than_calib_n_is_said(small, tmp_path, lines):
    """--calib-n 256 with a folder of 3 images calibrates on the 3 and says so."""
    from PIL import Image

    out, log = lines
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (IMG, IMG), (60 * i, 90, 200)).save(folder / f"{i}.png")
    conv = quantize.Conversion(calib_images=folder, calib_n=256)
    r = quantize.run(quantize.QuantizeOptions(small.onnx, "int8", tmp_path / "q.onnx",
                                              conversion=conv, img_size=IMG, n=2), log)
    assert r.exit_code == 0
    said = [line for line in out if "calibrating on all 3 images" in line]
    assert len(said) == 1 and "--calib-n 256" in said[0] and str(folder) in said[0]
