"""The stages (``vnexport/stages/<command>.py``) called directly, without the CLI: each returns
a Result (report, closing lines, exit code) and writes or refuses its file. Numerical checks
compare with the training-form network (``verify.run_torch`` on the checkpoint's own training
form), never with the stage's own figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from artifacts import CONFIG, IMG, STRIDES, make_small_run
from vnexport import ort
from vnexport.checkpoint import load_checkpoint
from vnexport.errors import EXIT_CHECK_FAILED, MissingRuntimeError, VnexportError
from vnexport.onnx_file import detect_precision, get_metadata, op_inventory
from vnexport.stages import bench, demo, fuse, info, quantize, trt, verify
from vnexport.stages import onnx as onnx_stage
from vnexport.stages.common import Log, Source
from vnexport.trt import runtime_missing_reason
from vnexport.verify import compare, random_inputs, run_torch, tolerance_for

SRC = Source(strides=STRIDES)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("stages"))


@pytest.fixture
def lines():
    out: list[str] = []
    return out, Log(echo=out.append, note=out.append)


def training_outputs(small, x):
    """The independent path: the checkpoint's training form in PyTorch."""
    return run_torch(load_checkpoint(small.training, strides=CONFIG.strides).build_model(), x)


def test_info_reports_form_and_cost(small, lines):
    out, log = lines
    r = info.run(info.InfoOptions(small.training, SRC, img_size=IMG), log)
    d = r.to_dict()
    assert d["form"] == "training" and d["config"]["strides"] == list(CONFIG.strides)
    assert d["params_deploy"] < d["params_training"] and d["mergeable"] is True
    assert r.exit_code == 0 and r.lines()[1] == "form        training"


def test_fuse_writes_a_deploy_file_that_matches_the_training_form(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "d.pth"
    r = fuse.run(fuse.FuseOptions(small.training, dst, SRC, n=4, img_size=IMG), log)
    assert r.exit_code == 0 and r.to_dict()["written"] is True
    assert r.lines()[0].startswith(f"wrote {dst}")
    x = random_inputs(CONFIG, 4, IMG, seed=5)
    deployed = load_checkpoint(dst, strides=CONFIG.strides)
    assert deployed.form == "deploy"
    comp = compare(training_outputs(small, x), run_torch(deployed.build_model(), x))
    assert comp.passed, comp.summary()
    assert any(line.startswith("verify deploy vs training: PASS") for line in out)


def test_fuse_refuses_and_writes_nothing_when_the_check_fails(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "d.pth"
    # a tolerance no float32 merge meets: the check fails, exit 1, nothing written
    r = fuse.run(fuse.FuseOptions(small.training, dst, SRC, n=4, img_size=IMG,
                                  max_rel_err=0.0), log)
    assert r.exit_code == EXIT_CHECK_FAILED and r.to_dict()["written"] is False
    assert r.lines() == [f"not written: {dst}"] and not dst.exists()


def test_fuse_bad_input_is_an_error_before_any_output(small, tmp_path, lines):
    with pytest.raises(VnexportError, match="overwrite the input"):
        fuse.run(fuse.FuseOptions(small.training, small.training, SRC, force=True), lines[1])
    with pytest.raises(VnexportError, match="--strides takes comma-separated integers"):
        fuse.run(fuse.FuseOptions(small.training, tmp_path / "o.pth",
                                  Source(strides="2,x")), lines[1])
    assert list(tmp_path.iterdir()) == []


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
    assert any(line.startswith("warning") and "RANDOM" in line for line in out)
    assert r.to_dict()["precision"]["precision"] == "int8"
    assert r.exit_code == 0 and detect_precision(dst) == "int8"


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


def test_bench_stage_reports_each_batch(small, lines):
    out, log = lines
    r = bench.run(bench.BenchOptions(small.onnx, batch="1,2", runs=3, warmup=1), log)
    d = r.to_dict()
    assert d["kind"] == "onnx" and d["img_size"] == IMG
    assert [x["batch"] for x in d["results"]] == [1, 2]
    assert all(x["runs"] == 3 and x["median_ms"] > 0 for x in d["results"])


def test_bench_stage_option_rules(small, lines):
    with pytest.raises(VnexportError, match="--batch takes positive integers"):
        bench.run(bench.BenchOptions(small.onnx, batch="0"), lines[1])
    with pytest.raises(VnexportError, match="--cuda-graphs applies to checkpoints"):
        bench.run(bench.BenchOptions(small.onnx, cuda_graphs=True), lines[1])


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


def test_demo_result_prints_its_table():
    r = demo.DemoResult(stages=[demo.StageResult("fuse", "a.pth", 1.25, True, "ok"),
                                demo.StageResult("trt", "-", 0.0, None, "no GPU")])
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
