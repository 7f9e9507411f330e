"""``vnexport verify``: artifacts against the training checkpoint; subtle defects must fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from artifacts import (CONFIG, IMG, STRIDES, deploy_nudge, deploy_with_bn_eps, make_small_run,
                       onnx_scale_channel, training_with_small_bn_var)
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.verify import FP16, FP32, INT8, Tolerance, tolerance_for

runner = CliRunner()


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def verify(reference: Path, *artifacts: Path, extra: tuple = ()):
    return cli("verify", reference, *artifacts, "--strides", STRIDES, "--img-size", IMG, *extra)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("small"))


def independent_figures(reference: Path, artifact_out: np.ndarray, n: int = 8, seed: int = 0):
    """Relative error, lowest cosine and top-1 agreement computed here with numpy, from the
    training-form network run directly (not through vnexport.verify)."""
    ckpt = load_checkpoint(reference, strides=CONFIG.strides)
    x = torch.randn(n, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = ckpt.build_model()(x).double().numpy()
    rel = np.abs(ref - artifact_out).max() / np.abs(ref).max()
    cos = (ref * artifact_out).sum(1) / (np.linalg.norm(ref, axis=1)
                                         * np.linalg.norm(artifact_out, axis=1))
    top1 = (ref.argmax(1) == artifact_out.argmax(1)).mean()
    return float(rel), float(cos.min()), float(top1), x


def run_artifact(path: Path, x: torch.Tensor) -> np.ndarray:
    if path.suffix == ".onnx":
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return s.run(None, {"input": x.numpy()})[0].astype(np.float64)
    ckpt = load_checkpoint(path, strides=CONFIG.strides)
    with torch.no_grad():
        return ckpt.build_model()(x).double().numpy()


# --------------------------------------------------------------------------------------------
# tolerance presets


def test_tolerance_presets_by_precision():
    assert tolerance_for("fp32") == FP32 == Tolerance(max_rel=1e-4, min_top1=1.0)
    assert tolerance_for("fp16") == FP16 == Tolerance(max_rel=None, min_top1=0.99,
                                                      min_cosine=0.9999)
    assert tolerance_for("int8") == INT8 == Tolerance(max_rel=None, min_top1=0.98)
    t = tolerance_for("fp16", max_rel=1e-2, min_top1=0.5)
    assert (t.max_rel, t.min_top1, t.min_cosine) == (1e-2, 0.5, 0.9999)
    with pytest.raises(Exception, match="unknown precision"):
        tolerance_for("bf16")


# --------------------------------------------------------------------------------------------
# clean artifacts pass


def test_clean_artifacts_pass(small, tmp_path):
    report = tmp_path / "report.json"
    r = verify(small.training, small.deploy, small.onnx, extra=("--json", report))
    assert r.exit_code == 0, r.output
    assert "verification passed: 2 artifact(s)" in r.output
    data = json.loads(report.read_text())
    assert data["passed"] is True
    kinds = {Path(a["artifact"]).name: (a["kind"], a["precision"]) for a in data["artifacts"]}
    assert kinds == {"deploy.pth": ("deploy", "fp32"), "model.onnx": ("onnx", "fp32")}
    for a in data["artifacts"]:
        assert a["passed"] and a["max_rel"] < 1e-5 and a["cosine"] > 0.9999999
        assert a["top1_agreement"] == 1.0
        assert {"max_abs", "max_rel", "cosine", "top1_agreement", "tolerance"} <= set(a)


def test_json_to_stdout_is_pure_json(small):
    r = runner.invoke(app, ["verify", str(small.training), str(small.onnx), "--strides", STRIDES,
                            "--img-size", str(IMG), "--json", "-"])
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    assert data["artifacts"][0]["kind"] == "onnx"


# --------------------------------------------------------------------------------------------
# subtle defects: ~1e-3 relative, cosine > 0.99999, top-1 unchanged -> must fail


def defect_onnx_channel(small, tmp):
    """(a) one output channel of the stages.1 1x1 conv scaled by 3% in the ONNX file."""
    return small.training, onnx_scale_channel(small.onnx, tmp / "scaled.onnx",
                                              "stages.1.conv.weight", 3, 1.03)


def defect_deploy_bias(small, tmp):
    """(b) one bias entry of the stages.1 conv nudged in the deploy checkpoint."""
    return small.training, deploy_nudge(small.deploy, tmp / "nudged.pth",
                                        "stages.1.conv.bias", 3, 0.03)


def defect_bn_eps(small, tmp):
    """(c) fused with nn.BatchNorm2d's default eps 1e-5 instead of VanillaNet's 1e-6, on a
    network whose stages.1 BN normalises a small variance (where eps matters)."""
    reference = training_with_small_bn_var(small.training, tmp / "smallvar.pth",
                                           "stages.1.conv2", 0.03)
    return reference, deploy_with_bn_eps(reference, tmp / "eps.pth", 1e-5)


DEFECTS = [defect_onnx_channel, defect_deploy_bias, defect_bn_eps]


@pytest.mark.parametrize("plant", DEFECTS, ids=lambda f: f.__name__)
def test_subtle_defect_fails(small, tmp_path, plant):
    reference, bad = plant(small, tmp_path)
    # the defect is subtle: measured independently of vnexport.verify
    x = torch.randn(8, 3, IMG, IMG, generator=torch.Generator().manual_seed(0))
    rel, cos, top1, _ = independent_figures(reference, run_artifact(bad, x))
    assert 3e-4 < rel < 1e-2, rel
    assert cos > 0.99999, cos
    assert top1 == 1.0
    # ... and verification catches it, naming the artifact
    report = tmp_path / "r.json"
    r = verify(reference, bad, extra=("--json", report))
    assert r.exit_code == 1, r.output
    assert f"verification FAILED: {bad.name}" in r.output
    assert "max rel err" in r.output
    a = json.loads(report.read_text())["artifacts"][0]
    assert a["passed"] is False and a["precision"] == "fp32"
    assert a["max_rel"] == pytest.approx(rel, rel=0.05)
    assert a["cosine"] > 0.99999 and a["top1_agreement"] == 1.0


def test_one_failing_artifact_among_good_ones(small, tmp_path):
    _, bad = defect_onnx_channel(small, tmp_path)
    report = tmp_path / "r.json"
    r = verify(small.training, small.deploy, bad, small.onnx, extra=("--json", report))
    assert r.exit_code == 1
    assert "verification FAILED: scaled.onnx" in r.output
    passed = {Path(a["artifact"]).name: a["passed"]
              for a in json.loads(report.read_text())["artifacts"]}
    assert passed == {"deploy.pth": True, "scaled.onnx": False, "model.onnx": True}


def test_flags_override_the_preset(small, tmp_path):
    _, bad = defect_onnx_channel(small, tmp_path)
    assert verify(small.training, bad, extra=("--max-rel-err", "1e-2")).exit_code == 0
    r = verify(small.training, small.onnx, extra=("--min-cosine", "1.0000001"))
    assert r.exit_code == 2  # out of range for a cosine
    r = verify(small.training, small.onnx, extra=("--min-agreement", "1.0"))
    assert r.exit_code == 0


# --------------------------------------------------------------------------------------------
# --locate


@pytest.mark.parametrize("initializer,stage", [("stem.0.weight", "stem"),
                                               ("stages.1.conv.weight", "stages.1"),
                                               ("stages.2.act.weight", "stages.2"),
                                               ("cls.2.weight", "head")])
def test_locate_onnx(small, tmp_path, initializer, stage):
    bad = onnx_scale_channel(small.onnx, tmp_path / "bad.onnx", initializer, 3, 1.03)
    report = tmp_path / "r.json"
    r = verify(small.training, bad, extra=("--locate", "--json", report))
    assert r.exit_code == 1
    assert f"bad.onnx: locate: first departs at {stage} " in r.output
    loc = json.loads(report.read_text())["artifacts"][0]["locate"]
    assert loc["first_departing_stage"] == stage
    names = [s["name"] for s in loc["stages"]]
    assert names == ["stem", "stages.0", "stages.1", "stages.2", "head"]
    before = names[:names.index(stage)]
    assert all(not s["departs"] and s["max_rel"] < 1e-5 for s in loc["stages"]
               if s["name"] in before)


def test_locate_deploy_checkpoint(small, tmp_path):
    _, bad = defect_deploy_bias(small, tmp_path)
    r = verify(small.training, bad, extra=("--locate",))
    assert r.exit_code == 1
    assert "nudged.pth: locate: first departs at stages.1 " in r.output


def test_locate_wrong_eps_at_the_sensitive_stage(small, tmp_path):
    reference, bad = defect_bn_eps(small, tmp_path)
    r = verify(reference, bad, extra=("--locate",))
    assert r.exit_code == 1
    assert "eps.pth: locate: first departs at stages.1 " in r.output


def test_locate_is_silent_for_passing_artifacts(small, tmp_path):
    report = tmp_path / "r.json"
    r = verify(small.training, small.onnx, extra=("--locate", "--json", report))
    assert r.exit_code == 0 and "locate" not in r.output
    assert json.loads(report.read_text())["artifacts"][0]["locate"] is None


# --------------------------------------------------------------------------------------------
# precision presets on a real fp16 file


def test_fp16_onnx_judged_by_fp16_preset(small, tmp_path):
    import onnx
    from onnxconverter_common import float16

    half = float16.convert_float_to_float16(onnx.load(str(small.onnx)), keep_io_types=True)
    path = tmp_path / "half.onnx"
    onnx.save(half, str(path))
    report = tmp_path / "r.json"
    r = verify(small.training, path, extra=("--json", report))
    assert r.exit_code == 0, r.output
    a = json.loads(report.read_text())["artifacts"][0]
    assert a["precision"] == "fp16"
    assert a["tolerance"] == {"max_rel": None, "min_top1": 0.99, "min_cosine": 0.9999}
    assert 1e-5 < a["max_rel"] < 1e-2  # it really is half precision
    # held to the fp32 limit, the same file fails
    assert verify(small.training, path, extra=("--max-rel-err", "1e-5")).exit_code == 1


# --------------------------------------------------------------------------------------------
# bad input (2) and missing runtime (3): one line, no report


def one_error_line(r) -> str:
    """The command's error: exactly one line (notes about the reference may precede it)."""
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and r.output.rstrip().endswith(lines[0]), r.output
    return lines[0]


def test_reference_must_be_training_form(small, tmp_path):
    report = tmp_path / "r.json"
    r = verify(small.deploy, small.onnx, extra=("--json", report))
    assert r.exit_code == 2
    assert "reference must be a training checkpoint" in one_error_line(r)
    assert not report.exists()


@pytest.mark.parametrize("name,content,message", [
    ("missing.onnx", None, "no such file"),
    ("empty.onnx", b"", "the file is empty"),
    ("junk.onnx", b"\x00not an onnx model" * 10, "ONNX"),
    ("weights.npz", b"PK", "unknown artifact type"),
    ("junk.pth", b"garbage", "not a PyTorch checkpoint"),
])
def test_bad_artifact(small, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    report = tmp_path / "r.json"
    r = verify(small.training, small.onnx, path, extra=("--json", report))
    assert r.exit_code == 2
    line = one_error_line(r)
    assert name in line and message in line
    assert not report.exists()


def test_wrong_input_size_for_a_fixed_size_onnx(small, tmp_path):
    r = cli("verify", small.training, small.onnx, "--strides", STRIDES, "--img-size", "64")
    assert r.exit_code == 2
    assert "not [8, 3, 64, 64]" in one_error_line(r)


def test_engine_without_tensorrt_exits_3(small, tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    r = verify(small.training, small.onnx, engine)
    assert r.exit_code == 3
    assert "TensorRT" in one_error_line(r)


def test_artifact_of_another_network(small, tmp_path):
    """A deploy file with another number of classes: one line naming it, exit 2."""
    from artifacts import CONFIG

    from vnexport.fuse import deploy_model, provenance, save_deploy
    from vnexport.synthetic import write_training_checkpoint

    other_cfg = CONFIG.replace(num_classes=10)
    src = write_training_checkpoint(tmp_path / "other.pth", other_cfg, with_ema=False)
    ckpt = load_checkpoint(src, strides=CONFIG.strides)
    other = tmp_path / "other_deploy.pth"
    save_deploy(other, deploy_model(ckpt), provenance(ckpt, None))
    r = verify(small.training, other)
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "other_deploy.pth" in line and "not the same network" in line
