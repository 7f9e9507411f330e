"""Real data end to end: a VanillaNet trained on sklearn's digits (deep-training schedule),
fused and exported by the CLI path, verified, with the held-out accuracy unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from artifacts import export_onnx_file
from digits import CONFIG, IMG, STRIDES
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.runners import runner_from_path

runner = CliRunner()


@pytest.fixture(scope="module")
def fused(digits_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits_out")
    deploy = folder / "digits_deploy.pth"
    r = runner.invoke(app, ["fuse", str(digits_run.final), "-o", str(deploy), "--strides", STRIDES,
                            "--img-size", str(IMG)])
    assert r.exit_code == 0, r.output
    onnx_path = export_onnx_file(deploy, folder / "digits.onnx", img_size=IMG,
                                 strides=CONFIG.strides)
    return deploy, onnx_path


def predictions(path, x) -> np.ndarray:
    r = runner_from_path(path, load=lambda p: load_checkpoint(p, strides=CONFIG.strides),
                         device="cpu")
    return r(x.numpy()).argmax(1)


def test_the_network_really_learned(digits_run):
    assert digits_run.accuracy > 0.8  # 10 classes: chance is 0.1


def test_held_out_accuracy_identical_after_fuse_and_export(digits_run, fused):
    deploy, onnx_path = fused
    x, y = digits_run.x_test, digits_run.y_test
    trained = predictions(digits_run.final, x)
    assert (trained == y).mean() == pytest.approx(digits_run.accuracy, abs=0)
    for artifact in (deploy, onnx_path):
        pred = predictions(artifact, x)
        assert (pred == y).mean() == (trained == y).mean()
        np.testing.assert_array_equal(pred, trained)  # every prediction, not just the count


def test_verify_passes_on_random_and_on_digit_images(digits_run, fused, tmp_path):
    from PIL import Image

    deploy, onnx_path = fused
    report = tmp_path / "r.json"
    r = runner.invoke(app, ["verify", str(digits_run.final), str(deploy), str(onnx_path),
                            "--strides", STRIDES, "--img-size", str(IMG), "--json", str(report)])
    assert r.exit_code == 0, r.output
    assert all(a["passed"] for a in json.loads(report.read_text())["artifacts"])
    # real images through --images: the held-out digits as PNG files
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(digits_run.x_test[:12]):
        arr = ((img[0].numpy() * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).convert("RGB").save(folder / f"digit_{i:02d}.png")
    r = runner.invoke(app, ["verify", str(digits_run.final), str(deploy), str(onnx_path),
                            "--strides", STRIDES, "--img-size", str(IMG), "--images", str(folder),
                            "--n", "12", "--json", str(report), "--force"])
    assert r.exit_code == 0, r.output
    inputs = json.loads(report.read_text())["inputs"]
    assert (inputs["n"], inputs["img_size"], inputs["random"], inputs["images"]) == (
        12, IMG, False, str(folder))
    assert "12 found, all used" in inputs["description"]


def test_mid_schedule_checkpoint_is_refused_by_fuse(digits_run, tmp_path):
    out = tmp_path / "mid_deploy.pth"
    r = runner.invoke(app, ["fuse", str(digits_run.mid), "-o", str(out), "--strides", STRIDES,
                            "--img-size", str(IMG)])
    assert r.exit_code == 2
    assert "act_learn is 0.4" in r.output and "below 1" in r.output
    assert not out.exists()
