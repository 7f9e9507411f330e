"""``vnexport demo``: every stage runs, says its verdict and leaves its file; files checked here
against the training-form network; the TensorRT stage says exactly why it was skipped (or
built its engine where TensorRT and a GPU exist)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app

IMG, N = 64, 2
STAGES = ["fuse", "onnx", "precision", "trt"]
ROW = re.compile(r"^(?P<stage>\S+)\s+(?P<artifact>\S+)\s+(?P<seconds>[\d.]+)s  "
                 r"(?P<verdict>PASS|FAIL|skipped|NOT RUN): (?P<detail>.*)$")


class Demo:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.result = CliRunner().invoke(app, ["demo", "--workdir", str(workdir), "--img-size",
                                               str(IMG), "--n", str(N)])
        out = self.result.stdout.splitlines()
        header = [i for i, line in enumerate(out) if line.split()[:2] == ["stage", "artifact"]]
        assert len(header) == 1, self.result.output
        self.rows = [ROW.match(line).groupdict() for line in out[header[0] + 1:] if line.strip()]
        self.by_stage = {r["stage"]: r for r in self.rows}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return Demo(tmp_path_factory.mktemp("demo") / "work")


@pytest.fixture(scope="module")
def training(demo):
    """The demo's training checkpoint, its training-form network and outputs on seeded inputs
    (other than the demo's own)."""
    ckpt = load_checkpoint(demo.workdir / "checkpoint-vanillanet_5.pth")
    x = torch.randn(N, 3, IMG, IMG, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ref = ckpt.build_model().eval()(x).double().numpy()
    return ckpt, x, ref


def rel(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / np.abs(ref).max())


def cosine(out: np.ndarray, ref: np.ndarray) -> float:
    return float(((out * ref).sum(1) / np.linalg.norm(out, axis=1)
                  / np.linalg.norm(ref, axis=1)).min())


def ort_outputs(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0].astype(np.float64)


def test_every_stage_reports_in_order(demo):
    assert demo.result.exit_code == 0, demo.result.output
    assert [r["stage"] for r in demo.rows] == STAGES
    for stage in ("fuse", "onnx", "precision"):  # never skipped: they need nothing extra
        assert demo.by_stage[stage]["verdict"] == "PASS", demo.by_stage[stage]
    assert "FAIL" not in demo.result.stdout


def test_fuse_stage_wrote_a_deploy_file_equal_to_the_training_form(demo, training):
    row = demo.by_stage["fuse"]
    assert row["artifact"] == str(demo.workdir / "deploy.pth")
    assert "max rel err" in row["detail"] and f"({N} inputs)" in row["detail"]
    ckpt, x, ref = training
    deploy = load_checkpoint(demo.workdir / "deploy.pth")
    assert deploy.form == "deploy"
    with torch.no_grad():
        out = deploy.build_model().eval()(x).double().numpy()
    assert rel(out, ref) < 1e-4


def test_onnx_stage_wrote_a_verified_file(demo, training):
    row = demo.by_stage["onnx"]
    path = demo.workdir / "model.onnx"
    assert row["artifact"] == str(path) and row["detail"].startswith("ONNX Runtime CPU:")
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    assert any("verification" in k for k in meta), sorted(meta)
    _, x, ref = training
    assert rel(ort_outputs(path, x), ref) < 1e-4


def test_precision_stage_wrote_fp32_fp16_and_int8_files(demo, training):
    _, x, ref = training
    files = {p: demo.workdir / f"model_{p}.onnx" for p in ("fp32", "fp16", "int8")}
    assert all(f.is_file() for f in files.values())
    types = {p: {t.data_type for t in onnx.load(f).graph.initializer} for p, f in files.items()}
    assert types["fp32"] == {onnx.TensorProto.FLOAT}
    assert onnx.TensorProto.FLOAT16 in types["fp16"]
    assert onnx.TensorProto.INT8 in types["int8"]
    int8_ops = {n.op_type for n in onnx.load(files["int8"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= int8_ops
    assert rel(ort_outputs(files["fp32"], x), ref) < 1e-4
    assert cosine(ort_outputs(files["fp16"], x), ref) > 0.9999
    assert cosine(ort_outputs(files["int8"], x), ref) > 0.99
    assert (demo.workdir / "calibration-cache.json").is_file()
    sizes = {p: f.stat().st_size for p, f in files.items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert re.search(r"fp16 \d+ MiB, int8 \d+ MiB", demo.by_stage["precision"]["detail"])


def test_trt_stage_says_why_it_was_skipped_or_built(demo):
    """No builder: skipped, with the reason word for word. A builder but no CUDA GPU
    (TensorRT-RTX builds ahead of time): the engine is written and the row says it was NOT run.
    A GPU: the engine is built and verified (PASS)."""
    from vnexport import trt
    from vnexport.stages import demo as stage

    row = demo.by_stage["trt"]
    engine = demo.workdir / "model_fp32.engine"
    _, why = stage._demo_builder(trt.BuildOptions(min_batch=1, opt_batch=1, max_batch=N))
    if why is not None:
        assert (row["verdict"], row["artifact"], row["detail"]) == ("skipped", "-", why)
        assert not engine.exists()
        return
    assert row["artifact"] == str(engine) and engine.stat().st_size > 0
    assert trt.provenance_path(engine).is_file()
    if torch.cuda.is_available():
        assert row["verdict"] == "PASS", row
    else:  # built, and the row says exactly why it was not run
        assert row["verdict"] == "NOT RUN", row
        assert row["detail"].startswith("built with ")
        assert row["detail"].endswith("NOT run: no CUDA GPU here to verify it on")

def test_a_skipped_stage_fails_the_demo_unless_it_may_be_skipped():
    """Only a stage marked optional (TensorRT without a runtime or GPU) may be skipped; any
    other skipped stage fails the demo (exit 1) and its row says so."""
    from vnexport.stages import demo as stage

    ok = stage.StageResult("fuse", "deploy.pth", 1.0, True, "fine")
    trt_skipped = stage.StageResult("trt", "-", 0.0, None, "no GPU", optional=True)
    onnx_skipped = stage.StageResult("onnx", "-", 0.0, None, "not run")
    assert stage.demo_passed([ok, trt_skipped])
    assert not stage.demo_passed([ok, onnx_skipped, trt_skipped])
    assert not stage.demo_passed([ok, stage.StageResult("trt", "-", 0, False, "bad",
                                                        optional=True)])
    rows = stage.DemoResult(stages=[ok, onnx_skipped, trt_skipped]).lines()
    verdicts = {m["stage"]: m["verdict"] for m in (ROW.match(r) for r in rows) if m}
    assert verdicts == {"fuse": "PASS", "onnx": "FAIL", "trt": "skipped"}

