"""``vnexport eval`` on real labelled images: the VanillaNet trained on scikit-learn's digits
(tests/digits.py), its held-out digits written as an ImageFolder of PNGs. Every figure is
checked against a computation written here: its own image reading (PIL + numpy), its own
ONNX Runtime session or the training-form network, its own argmax and top-5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from digits import load_image_folder
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.onnx_export import export_onnx

runner = CliRunner()
BATCH = 32


@pytest.fixture(scope="module")
def digits(digits_run, tmp_path_factory):
    """The held-out digits as an ImageFolder, and every artifact of the trained model: the
    training checkpoint, its deploy checkpoint, fp32 / fp16 / int8 ONNX files."""
    from digits import CONFIG, IMG, STRIDES, load_digits_tensors, write_image_folder

    d = tmp_path_factory.mktemp("eval")
    val = write_image_folder(digits_run.x_test, digits_run.y_test, d / "val")
    deploy = d / "deploy.pth"
    r = runner.invoke(app, ["fuse", str(digits_run.final), "-o", str(deploy), "--strides",
                            STRIDES, "--img-size", str(IMG)])
    assert r.exit_code == 0, r.output
    calib = load_digits_tensors()[0][:96].numpy()
    ckpt = load_checkpoint(deploy, strides=CONFIG.strides)
    onnx_files = {}
    for prec in ("fp32", "fp16", "int8"):
        onnx_files[prec] = d / f"digits_{prec}.onnx"
        export_onnx(ckpt, onnx_files[prec], img_size=IMG, dynamic_batch=True, precision=prec,
                    calib_x=None if prec == "fp32" else calib)
    return {"val": val, "training": digits_run.final, "deploy": deploy, **onnx_files}


def logits_of(path: Path, x: np.ndarray) -> np.ndarray:
    from digits import CONFIG

    if path.suffix == ".onnx":
        sess = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fn = lambda b: sess.run(None, {sess.get_inputs()[0].name: b})[0]  # noqa: E731
    else:
        model = load_checkpoint(path, strides=CONFIG.strides).build_model().eval()
        fn = lambda b: model(torch.from_numpy(b)).detach().numpy()  # noqa: E731
    return np.concatenate([fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def accuracy(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    top5 = np.argsort(-logits, axis=1)[:, :5]
    return (100 * float(np.mean(logits.argmax(1) == y)),
            100 * float(np.mean((top5 == y[:, None]).any(1))))


def run_eval(*args) -> tuple[int, str, dict | None]:
    r = runner.invoke(app, ["eval", *map(str, args), "--strides", "2,2", "--json", "-"])
    try:
        return r.exit_code, r.stderr, json.loads(r.stdout)
    except ValueError:
        return r.exit_code, r.output, None


def test_eval_equals_an_independent_computation(digits):
    names = ["training", "deploy", "fp32", "fp16", "int8"]
    code, err, report = run_eval(*[digits[k] for k in names], "--images", digits["val"],
                                 "--batch", BATCH)
    assert code == 0, err
    x, y = load_image_folder(digits["val"])
    assert report["images"]["n"] == len(y) == 540 and report["images"]["classes"] == 10
    assert report["images"]["img_size"] == 32  # the ONNX files' input size
    arts = report["artifacts"]
    assert [a["path"] for a in arts] == [str(digits[k]) for k in names]
    assert [a["precision"] for a in arts] == ["fp32", "fp32", "fp32", "fp16", "int8"]
    preds = {}
    for name, a in zip(names, arts):
        logits = logits_of(digits[name], x)
        preds[name] = logits.argmax(1)
        top1, top5 = accuracy(logits, y)
        assert (a["n"], a["top1"], a["top5"]) == (540, top1, top5), name
        lo, hi = a["top1_ci95"]
        assert lo < a["top1"] <= hi
    train = arts[0]
    assert train["top1"] > 90  # it really classifies digits
    for a in arts[1:3]:  # deploy and fp32 ONNX: exactly the training form's answers
        assert a["top1"] == train["top1"] and a["top5"] == train["top5"]
        assert a["vs_reference"] == {"top1_diff": 0.0, "right_in_reference_only": 0,
                                     "right_here_only": 0, "top1_agreement": 100.0}
    ref_hit = preds["training"] == y
    for name, a in zip(names[3:], arts[3:]):  # the paired figures, counted here
        hit = preds[name] == y
        v = a["vs_reference"]
        assert v["right_in_reference_only"] == int((ref_hit & ~hit).sum())
        assert v["right_here_only"] == int((hit & ~ref_hit).sum())
        assert v["top1_agreement"] == pytest.approx(
            100 * float(np.mean(preds[name] == preds["training"])))
        assert v["top1_diff"] == pytest.approx(a["top1"] - train["top1"])


def wilson_here(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * (c - h), 100 * (c + h)


def test_confidence_interval_is_wilsons(digits):
    code, err, report = run_eval(digits["training"], "--images", digits["val"], "--limit", 50,
                                 "--img-size", 32)
    assert code == 0, err
    assert report["images"]["img_size"] == 32  # no ONNX file to read it from: the option's
    a = report["artifacts"][0]
    assert a["top1_ci95"] == pytest.approx(wilson_here(a["top1_correct"], 50))


def test_limit_is_spread_over_the_classes(digits):
    code, err, report = run_eval(digits["training"], digits["fp32"], "--images", digits["val"],
                                 "--limit", 25, "--threads", 1)  # (conftest: threads restored)
    assert code == 0, err
    assert report["images"]["n"] == 25 and report["images"]["found"] == 540
    # round-robin over 10 classes: 3 from the first five, 2 from the others
    assert report["images"]["per_class"] == {str(c): 3 if c < 5 else 2 for c in range(10)}
    assert all(a["n"] == 25 for a in report["artifacts"])


def test_max_drop_names_the_artifact_that_lost_accuracy(digits, tmp_path):
    from artifacts import onnx_scale_channel

    model = onnx.load(str(digits["fp32"]))
    head = [i.name for i in model.graph.initializer if len(i.dims) == 4 and i.dims[0] == 10][-1]
    bad = onnx_scale_channel(digits["fp32"], tmp_path / "bad.onnx", head, 3, -1.0)
    args = [digits["training"], digits["fp32"], bad, "--images", digits["val"]]
    r = runner.invoke(app, ["eval", *map(str, args), "--strides", "2,2", "--max-drop", "1"])
    assert r.exit_code == 1, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last == "eval FAILED: bad.onnx"
    assert "bad.onnx: top-1" in r.stdout and "points below the reference" in r.stdout
    code, err, report = run_eval(*args, "--max-drop", 100)
    assert code == 0 and report["passed"] is True
    drop = report["artifacts"][0]["top1"] - report["artifacts"][2]["top1"]
    assert drop > 5  # class 3's logit negated: its images are now wrong
    assert report["artifacts"][2]["vs_reference"]["right_in_reference_only"] >= 40


def test_reference_must_be_a_checkpoint(digits):
    r = runner.invoke(app, ["eval", str(digits["fp32"]), str(digits["training"]), "--images",
                            str(digits["val"]), "--strides", "2,2"])
    assert r.exit_code == 2
    assert "must be a checkpoint" in r.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_engine_without_tensorrt_exits_3(digits, tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00" * 16)
    r = runner.invoke(app, ["eval", str(digits["training"]), str(engine), "--images",
                            str(digits["val"]), "--strides", "2,2"])
    assert r.exit_code == 3, r.output
    assert r.output.strip().startswith("error: ")


def test_progress_lines_are_rate_limited():
    from vnexport.evaluate import RateLimited

    now, out = [0.0], []
    progress = RateLimited(out.append, every=10.0, clock=lambda: now[0])
    for done in range(1, 101):  # a batch every 0.5 s for 50 s
        now[0] = done * 0.5
        progress(done, 100)
    assert len(out) == 4  # at 10, 20, 30 and 40 s; none at the end
    assert out[0] == "eval: 20/100 images (20.0%), 2.0 images/s, about 0.7 min left"


def test_verify_and_calibration_subsets_are_spread_over_the_classes(digits, tmp_path):
    r = runner.invoke(app, ["verify", str(digits["training"]), str(digits["fp32"]),
                            "--strides", "2,2", "--images", str(digits["val"]), "--n", "20",
                            "--json", str(tmp_path / "v.json")])
    assert r.exit_code == 0, r.output
    said = "540 found in 10 class folders, 20 used spread over the classes"
    assert said in json.loads((tmp_path / "v.json").read_text())["inputs"]["description"]
    assert said in r.stdout
    r = runner.invoke(app, ["quantize", str(digits["fp32"]), "--precision", "int8", "-o",
                            str(tmp_path / "q.onnx"), "--calib-images", str(digits["val"]),
                            "--calib-n", "30", "--n", "4", "--min-agreement", "0"])
    assert r.exit_code == 0, r.output
    assert ("calibrating on 30 images from " + str(digits["val"]) + " at 32x32 (540 found in "
            "10 class folders, 30 used spread over the classes)") in r.stdout
