"""Every tolerance and method option changes the verdict or the result.

Each limit is set just beyond the figure the artifact achieves (read from the command's own JSON
report on a first run at the defaults), so that the same artifact passes on one side of it and
fails on the other: an option the command ignored would leave both verdicts equal. Calibration
methods are compared on the scales written into the Q/DQ files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from artifacts import CONFIG, IMG, STRIDES, make_small_run
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.synthetic import random_training_model
from vnexport.verify import random_inputs

runner = CliRunner()
N_AGREE = 100  # verification inputs where int8 must disagree on a few top-1 classes
# int8 that keeps >= 98% top-1 agreement but not 100% on N_AGREE inputs (entropy clips ranges)
INT8_LOSSY = ("--method", "entropy", "--calib-n", "64")


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("overrides"))


def json_of(r, path: Path) -> dict:
    assert path.is_file(), r.output
    return json.loads(path.read_text())


def activation_scales(path: Path) -> dict[str, float]:
    """The scale of every QuantizeLinear in an int8 file, by the tensor it quantizes."""
    m = onnx.load(path)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and n.input[1] in inits
            and inits[n.input[1]].size == 1}


# --------------------------------------------------------------------------------------------
# --method: entropy and percentile calibrate other ranges than minmax


def int8_by_method(small, folder: Path, command: str, method: str) -> tuple[Path, dict]:
    out, report = folder / f"{command}_{method}.onnx", folder / f"{command}_{method}.json"
    if command == "quantize":
        r = cli("quantize", small.onnx, "--precision", "int8", "--method", method, "-o", out,
                "--calib-n", 32, "--json", report)
    else:
        r = cli("onnx", small.training, "--precision", "int8", "--method", method, "-o", out,
                "--calib-n", 32, "--strides", STRIDES, "--img-size", IMG, "--json", report)
    assert r.exit_code == 0, r.output
    assert f"calibrated ({method}) on 32 inputs" in r.output
    return out, json_of(r, report)


@pytest.mark.parametrize("command", ["quantize", "onnx"])
def test_method_changes_the_calibrated_scales(small, tmp_path, command):
    files, reports = {}, {}
    for method in ("minmax", "entropy", "percentile"):
        files[method], reports[method] = int8_by_method(small, tmp_path, command, method)
    conversion = {"quantize": lambda d: d["conversion"], "onnx": lambda d: d["precision"]}
    for method, data in reports.items():
        assert conversion[command](data)["int8"]["method"] == method
    scales = {m: activation_scales(p) for m, p in files.items()}
    assert len(scales["minmax"]) >= 10 and scales["entropy"].keys() == scales["minmax"].keys()
    assert scales["percentile"].keys() == scales["minmax"].keys()
    mm = scales["minmax"]
    for method in ("entropy", "percentile"):
        s = scales[method]
        # both clip the range minmax covers (the largest value seen): never a wider scale ...
        assert all(s[k] <= mm[k] * (1 + 1e-6) for k in mm), method
        # ... and a narrower one for some tensors: the method really ran
        narrower = [k for k in mm if s[k] < mm[k] * (1 - 1e-4)]
        assert narrower, f"{method}: every scale equals minmax's (--method ignored?)"
    # entropy (KL divergence) and percentile (99.999th) are different rules
    assert scales["entropy"] != scales["percentile"]


# --------------------------------------------------------------------------------------------
# --max-rel-err: a limit below the achieved error turns PASS into FAIL


def run_fuse(small, out: Path, *extra):
    report = out.with_suffix(".json")
    r = cli("fuse", small.training, "-o", out, "--strides", STRIDES, "--img-size", IMG,
            "--json", report, *extra)
    return r, json_of(r, report)


def run_onnx(small, out: Path, *extra):
    report = out.with_suffix(".json")
    r = cli("onnx", small.training, "-o", out, "--strides", STRIDES, "--img-size", IMG,
            "--json", report, *extra)
    return r, json_of(r, report)


def onnx_figures(data: dict) -> dict:
    """The CPU verification figures of an ``onnx`` report (fp32: per provider; fp16/int8: per
    precision)."""
    v = data["verification"]
    if "providers" in v:
        return v["providers"]["CPUExecutionProvider"]
    return v[data["precision"]["precision"]]


def run_verify(small, artifact: Path, report: Path, *extra):
    r = cli("verify", small.training, artifact, "--strides", STRIDES, "--img-size", IMG,
            "--json", report, *extra)
    return r, json_of(r, report)["artifacts"][0]


def independent_figures(artifact: Path, n: int = 8, seed: int = 0) -> dict:
    """max rel err, lowest per-input cosine and top-1 agreement of an ONNX file against the
    training form (the weights ``make_small_run`` wrote), computed here with ONNX Runtime on
    the inputs verify draws (``--n``, ``--seed``): the limits below are set from these, not
    from the figures the command under test reports."""
    import onnxruntime

    x = random_inputs(CONFIG, n, IMG, seed)
    with torch.no_grad():
        ref = random_training_model(CONFIG, 0)(x).double().numpy()
    sess = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = x.numpy().astype(np.float16 if inp.type == "tensor(float16)" else np.float32)
    out = np.concatenate([sess.run(None, {inp.name: feed[i:i + 1]})[0]
                          for i in range(n)]).astype(np.float64)
    cos = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    return {"max_rel": float(np.abs(out - ref).max() / np.abs(ref).max()),
            "cosine": float(cos.min()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean())}


def assert_refused(r, out: Path | None = None):
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output
    if out is not None:
        assert not out.exists(), "a failed verification left its output"


def test_fuse_max_rel_err_flips(small, tmp_path):
    r, data = run_fuse(small, tmp_path / "a.pth")
    assert r.exit_code == 0, r.output
    achieved = data["verification"]["max_rel"]
    assert 0 < achieved < 1e-4  # the default limit passes it
    r, _ = run_fuse(small, tmp_path / "b.pth", "--max-rel-err", achieved / 2)
    assert_refused(r, tmp_path / "b.pth")
    r, _ = run_fuse(small, tmp_path / "c.pth", "--max-rel-err", achieved * 2)
    assert r.exit_code == 0 and (tmp_path / "c.pth").is_file(), r.output


def test_onnx_max_rel_err_flips(small, tmp_path):
    r, data = run_onnx(small, tmp_path / "a.onnx")
    assert r.exit_code == 0, r.output
    achieved = independent_figures(tmp_path / "a.onnx")["max_rel"]
    # fp32 rounding noise (~1e-7) depends on batch shapes: the same figure within 2x
    assert achieved / 2 < onnx_figures(data)["max_rel"] < achieved * 2
    assert 0 < achieved < 1e-4
    r, _ = run_onnx(small, tmp_path / "b.onnx", "--max-rel-err", achieved / 4)
    assert_refused(r, tmp_path / "b.onnx")
    r, _ = run_onnx(small, tmp_path / "c.onnx", "--max-rel-err", achieved * 4)
    assert r.exit_code == 0 and (tmp_path / "c.onnx").is_file(), r.output


def test_verify_max_rel_err_flips(small, tmp_path):
    r, fig = run_verify(small, small.onnx, tmp_path / "a.json")
    assert r.exit_code == 0 and fig["passed"], r.output
    achieved = independent_figures(small.onnx)["max_rel"]
    # fp32 rounding noise (~1e-7) depends on batch shapes: the same figure within 2x
    assert achieved / 2 < fig["max_rel"] < achieved * 2
    assert 0 < achieved < 1e-4
    r, fig = run_verify(small, small.onnx, tmp_path / "b.json", "--max-rel-err", achieved / 4)
    assert_refused(r)
    assert not fig["passed"] and fig["tolerance"]["max_rel"] == pytest.approx(achieved / 4)
    r, fig = run_verify(small, small.onnx, tmp_path / "c.json", "--max-rel-err", achieved * 4)
    assert r.exit_code == 0 and fig["passed"], r.output


# --------------------------------------------------------------------------------------------
# --min-top1 / --min-agreement and --min-cosine: an int8 file that disagrees on a few inputs


@pytest.fixture(scope="module")
def int8_file(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "q.onnx"
    r = cli("quantize", small.onnx, "--precision", "int8", "-o", out, *INT8_LOSSY)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("flag", ["--min-agreement", "--min-top1"])
def test_verify_min_agreement_flips(small, int8_file, tmp_path, flag):
    r, fig = run_verify(small, int8_file, tmp_path / "a.json", "--n", N_AGREE)
    assert r.exit_code == 0, r.output
    achieved = independent_figures(int8_file, N_AGREE)["top1_agreement"]
    assert fig["top1_agreement"] == pytest.approx(achieved)
    assert 0.98 <= achieved < 1.0, achieved  # passes the int8 default (0.98), not 1.0
    r, fig = run_verify(small, int8_file, tmp_path / "b.json", "--n", N_AGREE, flag, 1.0)
    assert_refused(r)
    assert fig["tolerance"]["min_top1"] == 1.0 and not fig["passed"]
    r, fig = run_verify(small, int8_file, tmp_path / "c.json", "--n", N_AGREE, flag, achieved)
    assert r.exit_code == 0 and fig["passed"], r.output


def test_verify_min_cosine_flips(small, int8_file, tmp_path):
    r, fig = run_verify(small, int8_file, tmp_path / "a.json", "--n", 16)
    assert r.exit_code == 0, r.output
    cosine = independent_figures(int8_file, 16)["cosine"]
    assert fig["cosine"] == pytest.approx(cosine, abs=1e-7)
    assert fig["tolerance"]["min_cosine"] is None and cosine < 1.0  # int8: not judged
    above = (cosine + 1.0) / 2
    r, fig = run_verify(small, int8_file, tmp_path / "b.json", "--n", 16, "--min-cosine", above)
    assert_refused(r)
    assert any("cosine" in f for f in fig["failures"])
    r, fig = run_verify(small, int8_file, tmp_path / "c.json", "--n", 16, "--min-cosine",
                        cosine - 1e-6)
    assert r.exit_code == 0, r.output


def test_quantize_min_agreement_flips(small, tmp_path):
    common = ["quantize", small.onnx, "--precision", "int8", *INT8_LOSSY, "--n", N_AGREE,
              "--reference", small.training, "--strides", STRIDES]
    r = cli(*common, "-o", tmp_path / "a.onnx", "--json", tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    achieved = json_of(r, tmp_path / "a.json")["verification"]["top1_agreement"]
    assert 0.98 <= achieved < 1.0, achieved
    r = cli(*common, "-o", tmp_path / "b.onnx", "--min-agreement", 1.0)
    assert_refused(r, tmp_path / "b.onnx")


def test_onnx_min_agreement_and_min_cosine_flip(small, tmp_path):
    common = ["--precision", "int8", *INT8_LOSSY, "--n", N_AGREE]
    r, data = run_onnx(small, tmp_path / "a.onnx", *common)
    assert r.exit_code == 0, r.output
    fig = onnx_figures(data)
    assert 0.98 <= fig["top1_agreement"] < 1.0, fig
    r, _ = run_onnx(small, tmp_path / "b.onnx", *common, "--min-agreement", 1.0)
    assert_refused(r, tmp_path / "b.onnx")
    r, _ = run_onnx(small, tmp_path / "c.onnx", *common, "--min-cosine",
                    (fig["cosine"] + 1) / 2)
    assert_refused(r, tmp_path / "c.onnx")


def test_onnx_fp16_min_cosine_flips(small, tmp_path):
    r, data = run_onnx(small, tmp_path / "a.onnx", "--precision", "fp16")
    assert r.exit_code == 0, r.output
    cosine = independent_figures(tmp_path / "a.onnx")["cosine"]
    assert min(c["cosine"] for c in data["verification"].values()) == \
        pytest.approx(cosine, abs=1e-7)
    assert 0.9999 <= cosine < 1.0  # the fp16 default limit passes it
    r, _ = run_onnx(small, tmp_path / "b.onnx", "--precision", "fp16", "--min-cosine",
                    (cosine + 1) / 2)
    assert_refused(r, tmp_path / "b.onnx")


# --------------------------------------------------------------------------------------------
# fuse --min-top1 and --no-verify: an inexact merge (act_learn 0.9, --allow-inexact)


INEXACT = ("--act-learn", "0.9", "--allow-inexact", "--n", "64")


def independent_error(training: Path, deploy: Path) -> tuple[float, float]:
    """(max rel err, top-1 agreement) of a deploy file against the training form at act_learn
    0.9, computed here from the two networks."""
    ckpt = load_checkpoint(training, strides=CONFIG.strides, act_learn=0.9)
    dep = load_checkpoint(deploy, strides=CONFIG.strides)
    x = torch.randn(64, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = ckpt.build_model().eval()(x).double().numpy()
        out = dep.build_model().eval()(x).double().numpy()
    return (float(np.abs(out - ref).max() / np.abs(ref).max()),
            float((out.argmax(1) == ref.argmax(1)).mean()))


def test_fuse_min_top1_flips(small, tmp_path):
    r, data = run_fuse(small, tmp_path / "a.pth", *INEXACT, "--max-rel-err", 1)
    assert_refused(r, tmp_path / "a.pth")  # the default --min-top1 1.0 fails it
    achieved = data["verification"]["top1_agreement"]
    assert 0.5 < achieved < 1.0
    assert data["verification"]["failures"] == [
        f for f in data["verification"]["failures"] if "top-1" in f]  # only top-1 failed
    r, _ = run_fuse(small, tmp_path / "b.pth", *INEXACT, "--max-rel-err", 1, "--min-top1",
                    achieved)
    assert r.exit_code == 0 and (tmp_path / "b.pth").is_file(), r.output


def test_fuse_no_verify_skips_verification(small, tmp_path):
    """The inexact merge fails verification; with --no-verify the same file is written
    unjudged (and it really is wrong: checked here against the training form)."""
    r, data = run_fuse(small, tmp_path / "a.pth", *INEXACT)
    assert_refused(r, tmp_path / "a.pth")
    r, data = run_fuse(small, tmp_path / "b.pth", *INEXACT, "--no-verify")
    assert r.exit_code == 0, r.output
    assert "verification skipped" in r.output and "PASS" not in r.output
    assert data["verification"] is None and data["written"] is True
    rel, agreement = independent_error(small.training, tmp_path / "b.pth")
    assert rel > 1e-2 and agreement < 1.0  # a defect --no-verify let through
