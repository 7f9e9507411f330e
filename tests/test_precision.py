"""FP16 and INT8 (Q/DQ) ONNX files: conversion, calibration cache, verification, CLI, evidence.

Every numerical check compares ONNX Runtime outputs with the training-form PyTorch network built
from the checkpoint (or with held-out labels of a really trained model), never with the code
under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from vnexport import ort
from vnexport import precision as P
from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.errors import VnexportError
from vnexport.fuse import deploy_model
from vnexport.model import VanillaNetConfig
from vnexport.synthetic import write_training_checkpoint
from vnexport.verify import FP32, compare, random_inputs, run_torch, tolerance_for

TINY = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), act_num=3, num_classes=100)
TINY_STRIDES = "2,2"
IMG = 64


def export_fp32(deploy, path: Path, img_size: int) -> Path:
    """The ONNX stage's fp32 graph of a deploy model (dynamic batch), written to ``path``."""
    from vnexport.onnx_export import onnx_model_from_deploy, save_onnx

    return save_onnx(onnx_model_from_deploy(deploy, img_size=img_size, dynamic_batch=True), path)


class Tiny:
    def __init__(self, folder: Path):
        self.ckpt_path = write_training_checkpoint(folder / "checkpoint-best.pth", TINY, seed=3)
        self.ckpt = load_checkpoint(self.ckpt_path, strides=TINY.strides)
        self.onnx_path = export_fp32(deploy_model(self.ckpt), folder / "tiny_fp32.onnx", IMG)
        self.model = onnx.load(self.onnx_path)
        self.x = random_inputs(TINY, n=16, img_size=IMG, seed=5)
        self.calib = random_inputs(TINY, n=16, img_size=IMG, seed=6).numpy()
        self.reference = run_torch(self.ckpt.build_model(), self.x)  # the training form


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return Tiny(tmp_path_factory.mktemp("tiny"))


def ort_out(model, x) -> np.ndarray:
    return ort.run(ort.session(model, device="cpu"), np.asarray(x), batch=8)


def initializer_types(model) -> set[int]:
    return {t.data_type for t in model.graph.initializer}


# --------------------------------------------------------------------------------------------
# tolerances


def test_tolerance_presets():
    assert tolerance_for("fp32") == FP32
    fp16 = tolerance_for("fp16")
    assert (fp16.max_rel, fp16.min_cosine, fp16.min_top1) == (None, 0.9999, 0.99)
    int8 = tolerance_for("int8", min_agreement=0.9)
    assert (int8.max_rel, int8.min_cosine, int8.min_top1) == (None, None, 0.9)
    assert tolerance_for("int8").min_top1 == 0.98
    with pytest.raises(VnexportError):
        tolerance_for("int4")


# --------------------------------------------------------------------------------------------
# activation ranges


def test_activation_ranges_match_the_training_form(tiny):
    ranges = P.activation_ranges(tiny.model, tiny.x.numpy(), batch=5)  # uneven last batch
    lo, hi, absmax = ranges["logits"]
    ref = tiny.reference
    assert lo == pytest.approx(ref.min(), rel=1e-4, abs=1e-5)
    assert hi == pytest.approx(ref.max(), rel=1e-4, abs=1e-5)
    assert absmax == pytest.approx(np.abs(ref).max(), rel=1e-4)
    # one entry per float tensor a node produces, the stage outputs among them
    produced = [o for n in tiny.model.graph.node for o in n.output]
    assert set(ranges) <= set(produced) and len(ranges) >= len(tiny.model.graph.node) - 2
    with torch.no_grad():
        stages = dict(deploy_model(tiny.ckpt).forward_stages(tiny.x))
    for name, t in stages.items():  # each stage's output range is among the measured ones
        lo, hi = float(t.min()), float(t.max())
        assert any(abs(r.min - lo) <= 1e-4 * abs(lo) + 1e-6 and abs(r.max - hi) <= 1e-4 * abs(hi)
                   + 1e-6 for r in ranges.values()), name


# --------------------------------------------------------------------------------------------
# fp16


def test_fp16_weights_and_compute_in_float16_io_float32(tiny):
    m, rep = P.to_fp16(tiny.model, tiny.calib)
    assert rep.kept_fp32 == []
    assert onnx.TensorProto.FLOAT16 in initializer_types(m)
    assert onnx.TensorProto.FLOAT not in initializer_types(m)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    onnx.checker.check_model(m)
    comp = compare(tiny.reference, ort_out(m, tiny.x), tolerance_for("fp16"))
    assert comp.passed, comp.failures
    # the float16 weights show in the output (not a float32 pass-through). ONNX Runtime's CPU
    # provider computes float16 Conv in float32, so this is not float16 arithmetic: that is
    # checked node by node in tests/test_fp16_reference.py
    assert comp.max_rel > 1e-6


def test_fp16_io(tiny):
    m, rep = P.to_fp16(tiny.model, tiny.calib, keep_io_fp32=False)
    assert not rep.keep_io_fp32
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert m.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    sess = ort.session(m, device="cpu")
    assert sess.get_inputs()[0].type == "tensor(float16)"
    comp = compare(tiny.reference, ort.run(sess, tiny.x.numpy(), batch=8), tolerance_for("fp16"))
    assert comp.passed, comp.failures


def test_fp16_keeps_overflowing_nodes_float32(tiny):
    """Inputs 2e4 times larger push activations past float16's 65504: those nodes stay fp32."""
    big = tiny.x.numpy()[:8] * 2e4
    m, rep = P.to_fp16(tiny.model, big)
    assert rep.kept_fp32, "nothing kept float32 although activations overflow float16"
    assert rep.largest_activation > P.FP16_MAX
    assert any("overflows" in k.reason for k in rep.kept_fp32)
    assert len(rep.kept_fp32) < rep.n_nodes  # the rest is float16
    assert onnx.TensorProto.FLOAT16 in initializer_types(m)
    ref = run_torch(tiny.ckpt.build_model(), torch.from_numpy(big))
    out = ort_out(m, big)
    assert np.isfinite(out).all()
    assert compare(ref, out, tolerance_for("fp16")).passed
    # with float16 arithmetic (emulated: ORT's CPU provider computes float16 Conv in float32)
    # the kept nodes are what keeps it finite: without them it overflows
    emulated = P.fp16_emulation(tiny.model, [k.node for k in rep.kept_fp32])
    assert compare(ref, ort_out(emulated, big), tolerance_for("fp16")).passed
    assert not np.isfinite(ort_out(P.fp16_emulation(tiny.model), big)).all()


def test_fp16_emulation_rounds_like_float16(tiny):
    """The emulated graph differs from the float32 graph by float16-sized amounts and passes the
    fp16 limits. (Equality with an independent per-node float16 reference, node by node, is
    tests/test_fp16_reference.py's.)"""
    em = P.fp16_emulation(tiny.model)
    onnx.checker.check_model(em)
    casts = [n for n in em.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2 * (len(tiny.model.graph.node) + 1)  # each output, and the input
    out = ort_out(em, tiny.x)
    exact = ort_out(tiny.model, tiny.x)
    err = np.abs(out - exact).max() / np.abs(exact).max()
    assert 1e-5 < err < 1e-2  # float16-sized differences, not zero, not garbage
    comp = compare(tiny.reference, out, tolerance_for("fp16"))
    assert comp.passed, comp.failures


def test_fp16_keeps_nodes_with_underflowing_weights_float32(tiny):
    m32 = onnx.ModelProto()
    m32.CopyFrom(tiny.model)
    conv_weights = [n.input[1] for n in m32.graph.node if n.op_type == "Conv"]
    target = conv_weights[2]
    for init in m32.graph.initializer:
        if init.name == target:  # below float16's subnormal range
            init.CopyFrom(onnx.numpy_helper.from_array(
                onnx.numpy_helper.to_array(init) * 1e-6, init.name))
    m, rep = P.to_fp16(m32, tiny.calib)
    kept = [k for k in rep.kept_fp32 if target in k.reason]
    assert kept and "weight" in kept[0].reason and "loses" in kept[0].reason
    assert any(t.name == target and t.data_type == onnx.TensorProto.FLOAT
               for t in m.graph.initializer)
    assert any(target in line and "kept float32" in line for line in rep.lines())
    assert P.PrecisionReport("fp16", fp16=rep).to_dict()["fp16"]["kept_fp32"]


# --------------------------------------------------------------------------------------------
# int8


def zero_points(model) -> dict[str, np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    return {n.input[2]: onnx.numpy_helper.to_array(inits[n.input[2]])
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2}


def test_int8_qdq_symmetric_per_channel(tiny):
    m = P.to_int8(tiny.model, tiny.calib)
    ops = [n.op_type for n in m.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    # every Conv weight but the stem's stored as int8, with one scale per output channel
    stem = P.stem_nodes(tiny.model)
    assert len(stem) == 1
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in m.graph.node for o in n.output}
    assert [c.name for c in convs if c.input[1] in inits] == stem  # float weights: stem only
    for conv in convs:
        if conv.name in stem:
            continue
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear"
        w = inits[dq.input[0]]
        assert w.dtype == np.int8
        assert inits[dq.input[1]].shape == (w.shape[0],)
        assert any(a.name == "axis" and a.i == 0 for a in dq.attribute)
    # symmetric everywhere (TensorRT's requirement): all zero points int8 zeros
    zps = zero_points(m)
    int8_zps = [z for z in zps.values() if z.dtype == np.int8]
    assert int8_zps and all(not z.any() for z in zps.values())
    assert all(z.dtype == np.int8 for z in zps.values())  # no int32 bias DQ: TensorRT refuses it
    onnx.checker.check_model(m)
    comp = compare(tiny.reference, ort_out(m, tiny.x), tolerance_for("int8"))
    assert comp.passed, comp.failures
    assert comp.max_rel > 1e-4  # really quantized


def test_int8_stem_quantized_on_request(tiny):
    m = P.to_int8(tiny.model, tiny.calib, quantize_stem=True)
    inits = {t.name for t in m.graph.initializer}
    assert all(n.input[1] not in inits for n in m.graph.node if n.op_type == "Conv")
    comp = compare(tiny.reference, ort_out(m, tiny.x), tolerance_for("int8"))
    assert comp.passed, comp.failures


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_int8_methods(tiny, method):
    m = P.to_int8(tiny.model, tiny.calib, method=method)
    comp = compare(tiny.reference, ort_out(m, tiny.x), tolerance_for("int8"))
    assert comp.passed, comp.failures


def test_int8_unknown_method(tiny):
    with pytest.raises(VnexportError, match="calibration method"):
        P.to_int8(tiny.model, tiny.calib, method="mse")


def test_int8_calibration_cache(tiny, tmp_path, monkeypatch):
    cache = tmp_path / "calib.json"
    r1 = P.Int8Report("minmax", "int8")
    m1 = P.to_int8(tiny.model, tiny.calib, cache_path=cache, report=r1)
    assert not r1.cache_hit and cache.is_file()
    entries = json.loads(cache.read_text())["entries"]
    key = P.calibration_key(tiny.model, tiny.calib, P.Int8Settings("minmax"))
    assert list(entries) == [key]

    import importlib

    ortq = importlib.import_module("onnxruntime.quantization.quantize")

    def no_calibration(*a, **k):
        raise AssertionError("calibration ran although the cache holds the ranges")

    monkeypatch.setattr(ortq, "create_calibrator", no_calibration)
    # vnexport creates the calibrator itself (to give the entropy method its histogram bins)
    monkeypatch.setattr(importlib.import_module("onnxruntime.quantization.calibrate"),
                        "create_calibrator", no_calibration)
    r2 = P.Int8Report("minmax", "int8")
    m2 = P.to_int8(tiny.model, tiny.calib, cache_path=cache, report=r2)
    assert r2.cache_hit and r2.calibration_seconds == 0
    assert m2.SerializeToString() == m1.SerializeToString()
    # other inputs or another method: a different key, so calibration runs again
    with pytest.raises(AssertionError, match="calibration ran"):
        P.to_int8(tiny.model, tiny.calib[:8], cache_path=cache)
    with pytest.raises(AssertionError, match="calibration ran"):
        P.to_int8(tiny.model, tiny.calib, method="percentile", cache_path=cache)


def test_int8_cache_that_is_not_a_cache(tiny, tmp_path):
    bad = tmp_path / "other.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(VnexportError, match="not a vnexport calibration cache"):
        P.to_int8(tiny.model, tiny.calib, cache_path=bad)


def test_apply_precision(tiny):
    same, rep = P.apply_precision(tiny.model, "fp32", calib_x=tiny.calib)
    assert same is tiny.model and rep.precision == "fp32"
    m, rep = P.apply_precision(tiny.model, "int8", calib_x=tiny.calib, calib_is_random=True)
    assert any("RANDOM" in w for w in rep.warnings)
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["vnexport.precision"] == "int8"
    assert json.loads(meta["vnexport.precision_report"])["int8"]["method"] == "minmax"
    with pytest.raises(VnexportError, match="unknown precision"):
        P.apply_precision(tiny.model, "bf16", calib_x=tiny.calib)


# --------------------------------------------------------------------------------------------
# real images: a VanillaNet trained on sklearn digits keeps its held-out accuracy


def test_digits_accuracy_in_all_precisions(digits_run, tmp_path):
    from digits import CONFIG, IMG as DIGITS_IMG, load_digits_tensors

    ckpt = load_checkpoint(digits_run.final, strides=CONFIG.strides)
    fp32 = onnx.load(export_fp32(deploy_model(ckpt), tmp_path / "digits.onnx", DIGITS_IMG))
    x_train = load_digits_tensors(0)[0]
    calib = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:128]]
    acc = {}
    for precision in P.PRECISIONS:
        m, _ = P.apply_precision(fp32, precision, calib_x=calib.numpy())
        logits = ort_out(m, digits_run.x_test)
        acc[precision] = float((logits.argmax(1) == digits_run.y_test).mean())
    assert digits_run.accuracy > 0.9  # it really learned
    assert acc["fp32"] == digits_run.accuracy
    assert acc["fp16"] == digits_run.accuracy
    assert abs(acc["int8"] - digits_run.accuracy) <= 0.01, acc


# --------------------------------------------------------------------------------------------
# CLI: vnexport quantize


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_pngs(folder: Path, n: int, size: int, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        # smooth random images (not white noise), like photos at low resolution
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size + 10, size), Image.BILINEAR).save(folder / f"{i}.png")
    return folder


def test_cli_fp16_against_training_form(tiny, tmp_path):
    out = tmp_path / "tiny_fp16.onnx"
    report = tmp_path / "r.json"
    r = invoke("quantize", tiny.onnx_path, "--precision", "fp16", "-o", out, "--reference",
               tiny.ckpt_path, "--strides", TINY_STRIDES, "--json", report)
    assert r.exit_code == 0, r.output
    assert "against the fp32 training form" in r.output
    assert "verify fp16: PASS" in r.output and "verify fp16 emulated: PASS" in r.output
    m = onnx.load(out)
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    data = json.loads(report.read_text())
    assert data["written"] and data["verification"]["cosine"] >= 0.9999
    # independent check of the written file
    assert compare(tiny.reference, ort_out(m, tiny.x), tolerance_for("fp16")).passed


def test_cli_int8_calib_images_and_cache(tiny, tmp_path):
    calib = write_pngs(tmp_path / "calib", 12, IMG)
    cache = tmp_path / "cache.json"
    args = ["quantize", tiny.onnx_path, "--precision", "int8", "--calib-images", calib,
            "--calib-n", 10, "--cache", cache, "--reference", tiny.ckpt_path, "--strides",
            TINY_STRIDES, "--json", "-"]
    r = invoke(*args, "-o", tmp_path / "a.onnx")
    assert r.exit_code == 0, r.output
    assert "RANDOM" not in r.output
    assert "calibrated (minmax) on 10 inputs" in r.output
    r2 = invoke(*args, "-o", tmp_path / "b.onnx")
    assert r2.exit_code == 0, r2.output
    assert "ranges from the cache" in r2.output
    a, b = onnx.load(tmp_path / "a.onnx"), onnx.load(tmp_path / "b.onnx")
    assert a.graph.SerializeToString() == b.graph.SerializeToString()  # same model
    assert a.metadata_props != b.metadata_props  # whose reports say where the ranges came from


def test_cli_int8_random_calibration_warns(tiny, tmp_path):
    r = invoke("quantize", tiny.onnx_path, "--precision", "int8", "-o", tmp_path / "q.onnx",
               "--calib-n", 16)
    assert "RANDOM" in r.output and "--calib-images" in r.output
    assert "against the fp32 ONNX file" in r.output
    assert r.exit_code == 0, r.output


def test_cli_failed_verification_writes_nothing(tiny, tmp_path):
    other = write_training_checkpoint(tmp_path / "other.pth", TINY, seed=11)
    out = tmp_path / "q.onnx"
    r = invoke("quantize", tiny.onnx_path, "--precision", "fp16", "-o", out, "--reference",
               other, "--strides", TINY_STRIDES)
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and not out.exists()


def test_cli_bad_inputs(tiny, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all \x00\xff")
    r = invoke("quantize", junk, "--precision", "int8", "-o", tmp_path / "o.onnx")
    assert r.exit_code == 2 and "junk.onnx" in r.output and "Traceback" not in r.output
    fp16 = tmp_path / "already_fp16.onnx"
    onnx.save(P.to_fp16(tiny.model, tiny.calib)[0], fp16)
    r = invoke("quantize", fp16, "--precision", "int8", "-o", tmp_path / "o.onnx")
    assert r.exit_code == 2 and "fp32" in r.output
    exists = tmp_path / "exists.onnx"
    exists.write_bytes(b"x")
    r = invoke("quantize", tiny.onnx_path, "--precision", "fp16", "-o", exists)
    assert r.exit_code == 2 and "--force" in r.output and exists.read_bytes() == b"x"
    r = invoke("quantize", tiny.onnx_path, "--precision", "int8", "-o", tmp_path / "o.onnx",
               "--calib-images", tmp_path / "nope")
    assert r.exit_code == 2 and "nope" in r.output
    assert not (tmp_path / "o.onnx").exists()


def test_cli_help_documents_every_option():
    r = invoke("quantize", "--help")
    assert r.exit_code == 0
    for opt in ["--precision", "--calib-images", "--calib-n", "--method", "--fp16-io", "--cache",
                "--reference", "--min-agreement", "--force", "--json"]:
        assert opt in r.output


# --------------------------------------------------------------------------------------------
# demo stage


def test_demo_stage_precision(tiny, tmp_path):
    from vnexport.stages import demo

    assert demo.stage_precision in demo.STAGES
    lines = []
    res = demo.stage_precision(tiny.ckpt, tiny.x, tiny.reference, tmp_path, lines.append)
    assert res.passed, res.extra
    sizes = {p: res.extra[p]["mib"] for p in P.PRECISIONS}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert all(res.extra[p]["ms"] > 0 for p in P.PRECISIONS)
    assert any("int8" in line and "top-1" in line for line in lines)
    for p in P.PRECISIONS:
        assert Path(res.extra[p]["file"]).is_file()
