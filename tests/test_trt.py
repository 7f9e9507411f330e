"""The TensorRT stage.

CPU tests cover everything before the builder call: option checks, profile decisions (static
batch refusal included), precision detection from real ONNX files, tolerances, provenance, the
exit-3 path without TensorRT, and that no module but the TensorRT stage imports tensorrt.

GPU tests (marker ``gpu``) build and verify real engines; they skip, with the reason, where
TensorRT (>= 10.12), Polygraphy or a CUDA GPU is missing. Run them with ``pytest -m gpu`` or
``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from vnexport import ort
from vnexport import trt as vt
from vnexport.fileio import write_json_atomic
from vnexport import onnx_file
from vnexport.onnx_file import PRECISIONS
from vnexport.stages import demo as demo_stages
from vnexport.stages import trt as trt_stage
from vnexport.errors import EXIT_MISSING_RUNTIME, MissingRuntimeError, VnexportError
from vnexport.model import VanillaNetConfig
from vnexport.synthetic import random_training_model, write_training_checkpoint
from vnexport.verify import FP32, compare, random_inputs, run_torch, tolerance_for

ROOT = Path(__file__).resolve().parents[1]
SMALL = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), num_classes=10)
SMALL_IMG = 64


def _runtime_reason() -> str | None:
    return vt.runtime_missing_reason()


NO_RUNTIME = _runtime_reason()


def invoke(*args: str):
    """In-process CLI call (fast); returns (exit code, stdout, stderr)."""
    from typer.testing import CliRunner

    from vnexport.cli import app

    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vnexport", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


# ------------------------------------------------------------------------------------------
# ONNX files made here: vnexport's exporter on a deploy model, and a whole-float16 file


def deploy_model(cfg: VanillaNetConfig = SMALL, seed: int = 0, dtype=torch.float32):
    return random_training_model(cfg, seed).reparameterize().to(dtype).eval()


def export(model, path: Path, img: int = SMALL_IMG, dynamic: bool = False) -> Path:
    """vnexport's ONNX stage (``onnx_export.onnx_model_from_deploy``) on a deploy model."""
    from vnexport.onnx_export import onnx_model_from_deploy, save_onnx

    return save_onnx(onnx_model_from_deploy(model, img_size=img, dynamic_batch=dynamic), path)


def export_half(model, path: Path, img: int = SMALL_IMG) -> Path:
    """A float16 model through ``torch.onnx.export`` by hand: float16 weights, input and output
    throughout (vnexport's precision stage writes a mixed graph with float32 I/O; this is the
    other kind of fp16 file users bring)."""
    x = torch.randn(1, model.cfg.in_chans, img, img, dtype=torch.float16)
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return path


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    m = deploy_model()
    files = {
        "fp32_static": export(m, d / "fp32_static.onnx"),
        "fp32_dynamic": export(m, d / "fp32_dynamic.onnx", dynamic=True),
        "fp16": export_half(deploy_model(dtype=torch.float16), d / "fp16.onnx"),
    }
    files["int8"] = _quantize(files["fp32_dynamic"], d / "int8.onnx", symmetric=True)
    files["uint8"] = _quantize(files["fp32_dynamic"], d / "uint8.onnx", symmetric=False)
    return files


def _quantize(src: Path, dst: Path, symmetric: bool) -> Path:
    """Q/DQ with ONNX Runtime's static quantizer (int8 symmetric, or its uint8 default)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.batches = iter([{"input": torch.randn(2, 3, SMALL_IMG, SMALL_IMG,
                                                       generator=g).numpy()} for _ in range(2)])

        def get_next(self):
            return next(self.batches, None)

    act = QuantType.QInt8 if symmetric else QuantType.QUInt8
    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=act, weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                   "QuantizeBias": False})
    return dst


# ------------------------------------------------------------------------------------------
# options and profiles


@pytest.mark.parametrize("kw, msg", [
    ({"min_batch": 0}, "--min-batch must be >= 1"),
    ({"max_batch": -2}, "--max-batch must be >= 1"),
    ({"workspace_gib": 0}, "--workspace must be > 0"),
    ({"hardware_compat": "hopper+"}, "--hardware-compat must be one of"),
    ({"builder_opt_level": 6}, "--builder-opt-level must be 0..5"),
    ({"strongly_typed": False}, "only strongly typed"),
    ({"timing_cache": Path("/nonexistent-dir/trt.cache")}, "its folder does not exist"),
])
def test_build_options_refused(kw, msg):
    with pytest.raises(VnexportError, match=msg):
        vt.BuildOptions(**kw).validate()


def test_build_options_ok(tmp_path):
    o = vt.BuildOptions(min_batch=1, opt_batch=8, max_batch=32, workspace_gib=2.5,
                        timing_cache=tmp_path / "trt.cache", hardware_compat="ampere+",
                        builder_opt_level=5).validate()
    assert o.workspace_bytes == int(2.5 * 2**30)


def test_read_onnx_input(onnx_files):
    static = onnx_file.read_onnx_input(onnx_files["fp32_static"])
    assert static == onnx_file.OnnxInput("input", (1, 3, SMALL_IMG, SMALL_IMG), "float32")
    dyn = onnx_file.read_onnx_input(onnx_files["fp32_dynamic"])
    assert dyn.batch is None and dyn.shape[1:] == (3, SMALL_IMG, SMALL_IMG)
    assert onnx_file.read_onnx_input(onnx_files["fp16"]).dtype == "float16"


def test_read_onnx_input_refuses_garbage(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx file at all\xff" * 10)
    with pytest.raises(VnexportError, match="not a readable ONNX file"):
        onnx_file.read_onnx_input(bad)
    with pytest.raises(VnexportError, match="no such file"):
        onnx_file.read_onnx_input(tmp_path / "missing.onnx")


DYN = onnx_file.OnnxInput("input", (None, 3, 224, 224), "float32")
STATIC4 = onnx_file.OnnxInput("input", (4, 3, 224, 224), "float32")


@pytest.mark.parametrize("kw, expect", [
    ({}, (1, 1, 1)),
    ({"max_batch": 32}, (1, 1, 32)),
    ({"opt_batch": 8}, (1, 8, 8)),
    ({"min_batch": 1, "opt_batch": 8, "max_batch": 32}, (1, 8, 32)),
    ({"min_batch": 4}, (4, 4, 4)),
])
def test_profile_dynamic_batch(kw, expect):
    p = vt.resolve_profile(DYN, vt.BuildOptions(**kw))
    assert (p.min[0], p.opt[0], p.max[0]) == expect
    assert p.min[1:] == p.opt[1:] == p.max[1:] == (3, 224, 224)
    assert p.to_dict()["max"] == [expect[2], 3, 224, 224]


def test_profile_order_refused():
    with pytest.raises(VnexportError, match="min <= opt <= max"):
        vt.resolve_profile(DYN, vt.BuildOptions(min_batch=8, opt_batch=4, max_batch=32))
    with pytest.raises(VnexportError, match="min <= opt <= max"):
        vt.resolve_profile(DYN, vt.BuildOptions(opt_batch=16, max_batch=8))


def test_profile_static_batch_fits():
    p = vt.resolve_profile(STATIC4, vt.BuildOptions())
    assert p.min == p.opt == p.max == (4, 3, 224, 224)
    p = vt.resolve_profile(STATIC4, vt.BuildOptions(min_batch=4, max_batch=4))
    assert p.max_batch == 4


def test_profile_static_batch_refused():
    with pytest.raises(VnexportError) as e:
        vt.resolve_profile(STATIC4, vt.BuildOptions(min_batch=1, opt_batch=8, max_batch=32),
                           source="m.onnx")
    text = str(e.value)
    assert "static batch of 4" in text and "--min-batch 1" in text and "--max-batch 32" in text
    assert "dynamic batch" in text and "\n" not in text


def test_profile_spatial_dims():
    hw = onnx_file.OnnxInput("input", (None, 3, None, None), "float32")
    with pytest.raises(VnexportError, match="dynamic height/width; pass --img-size"):
        vt.resolve_profile(hw, vt.BuildOptions())
    assert vt.resolve_profile(hw, vt.BuildOptions(), img_size=160).max == (1, 3, 160, 160)
    with pytest.raises(VnexportError, match="--img-size 160 does not match"):
        vt.resolve_profile(DYN, vt.BuildOptions(), img_size=160)


# ------------------------------------------------------------------------------------------
# precision and tolerances


@pytest.mark.parametrize("name, expect", [("fp32_static", "fp32"), ("fp32_dynamic", "fp32"),
                                          ("fp16", "fp16"), ("int8", "int8")])
def test_detect_precision(onnx_files, name, expect):
    assert onnx_file.detect_precision(onnx_files[name]) == expect


def test_detect_precision_fp16_with_fp32_io(onnx_files, tmp_path):
    """An fp16 graph that keeps fp32 inputs/outputs (Cast at the ends) is still fp16."""
    m = onnx.load(str(onnx_files["fp32_static"]))
    from onnx import TensorProto, helper, numpy_helper

    for init in m.graph.initializer:
        arr = numpy_helper.to_array(init).astype(np.float16)
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
    first = m.graph.node[0].name
    cast = helper.make_node("Cast", ["input"], ["input_fp16"], to=TensorProto.FLOAT16)
    for n in m.graph.node:
        n.input[:] = ["input_fp16" if i == "input" else i for i in n.input]
    m.graph.node.insert(0, cast)
    # the rewiring did what the test means: only the Cast reads the float32 input, and the
    # former first node now reads its float16 output
    assert [n.op_type for n in m.graph.node if "input" in n.input] == ["Cast"]
    assert m.graph.node[1].name == first and m.graph.node[1].input[0] == "input_fp16"
    path = tmp_path / "mixed.onnx"
    onnx.save(m, str(path))
    assert onnx_file.read_onnx_input(path).dtype == "float32"
    assert onnx_file.detect_precision(path) == "fp16"


def test_detect_precision_refuses_uint8_qdq(onnx_files):
    with pytest.raises(VnexportError, match="UINT8.*symmetric int8"):
        onnx_file.detect_precision(onnx_files["uint8"])


def test_tolerances_by_precision():
    assert tolerance_for("fp32") == FP32
    fp16 = tolerance_for("fp16")
    assert (fp16.min_cosine, fp16.min_top1, fp16.max_rel) == (0.9999, 0.99, None)
    int8 = tolerance_for("int8")
    assert (int8.min_top1, int8.min_cosine, int8.max_rel) == (0.98, None, None)
    assert tolerance_for("int8", min_agreement=0.9).min_top1 == 0.9
    assert tolerance_for("fp32", max_rel=1e-3).max_rel == 1e-3
    with pytest.raises(VnexportError, match="unknown precision"):
        tolerance_for("bf16")


# ------------------------------------------------------------------------------------------
# provenance


def test_provenance_content(onnx_files, tmp_path):
    from vnexport.checkpoint import sha256_of

    src = onnx_files["fp16"]
    options = vt.BuildOptions(min_batch=1, opt_batch=8, max_batch=32, hardware_compat="ampere+",
                              builder_opt_level=4, workspace_gib=2.0,
                              timing_cache=tmp_path / "trt.cache")
    profile = vt.resolve_profile(onnx_file.OnnxInput("input", (None, 3, 64, 64), "float16"), options)
    x = np.random.default_rng(0).standard_normal((4, 10))
    comp = compare(x, x + 1e-7, tolerance_for("fp16"))
    runtime = {"tensorrt": "11.4.0.106", "polygraphy": "0.53.6",
               "gpu": {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}}
    engine = tmp_path / "m.engine"
    meta = vt.make_provenance(
        engine_path=engine, engine_sha256="ab" * 32, onnx_path=src,
        onnx_sha256=sha256_of(src), precision=onnx_file.detect_precision(src), profile=profile,
        options=options, runtime=runtime, build_seconds=12.3456, comparison=comp,
        reference="training form of ckpt.pth", verification_inputs={"n": 4, "img_size": 64})
    assert meta["tensorrt_version"] == "11.4.0.106"
    assert meta["gpu"] == {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    assert meta["precision"] == "fp16" and meta["strongly_typed"] is True
    assert meta["profile"] == {"input": "input", "min": [1, 3, 64, 64], "opt": [8, 3, 64, 64],
                               "max": [32, 3, 64, 64]}
    assert meta["source_onnx_sha256"] == sha256_of(src) and len(meta["source_onnx_sha256"]) == 64
    assert meta["hardware_compat"] == "ampere+" and meta["builder_optimization_level"] == 4
    assert meta["build_seconds"] == 12.346 and meta["built_at"].endswith("+00:00")
    assert meta["verification"]["passed"] is True
    assert meta["verification"]["tolerance"]["min_cosine"] == 0.9999
    path = vt.provenance_path(engine)
    assert path.name == "m.engine.json"
    write_json_atomic(path, meta)
    assert json.loads(path.read_text()) == json.loads(json.dumps(meta, default=str))
    assert [p.name for p in tmp_path.iterdir()] == ["m.engine.json"]  # no temp file left


# ------------------------------------------------------------------------------------------
# the runtime gate (exit 3) and the tensorrt import boundary


@pytest.mark.parametrize("version, ok", [("10.11.0.33", False), ("10.8.0.43", False),
                                         ("9.3.0", False), ("10.12.0.36", True),
                                         ("10.14.1.48", True), ("11.4.0.106", True)])
def test_trt_version_gate(version, ok):
    if ok:
        vt.check_trt_version(version)
        return
    with pytest.raises(MissingRuntimeError) as e:
        vt.check_trt_version(version)
    assert e.value.exit_code == EXIT_MISSING_RUNTIME
    assert f"TensorRT {version} is installed" in str(e.value) and "10.12" in str(e.value)


def test_require_runtime_old_tensorrt(monkeypatch):
    """An importable TensorRT older than 10.12 is refused before anything else is tried."""
    old = types.ModuleType("tensorrt")
    old.__version__ = "10.8.0.43"
    monkeypatch.setitem(sys.modules, "tensorrt", old)
    with pytest.raises(MissingRuntimeError, match="TensorRT 10.8.0.43 is installed.*10.12"):
        vt.require_runtime()


def test_require_runtime_empty_tensorrt_package(tmp_path, monkeypatch, onnx_files):
    """A ``tensorrt`` that is an empty namespace package (what the tensorrt-stubs wheel leaves)
    is exit 3 with one line, in process and through the CLI, never a traceback."""
    (tmp_path / "site" / "tensorrt").mkdir(parents=True)  # a directory, no __init__.py
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    before = sys.modules.pop("tensorrt", None)
    try:
        with pytest.raises(MissingRuntimeError) as e:
            vt.require_runtime()
        assert "empty package" in str(e.value) and "tensorrt-stubs" in str(e.value)
        assert vt.builder_installed("tensorrt") is False
    finally:  # leave sys.modules as it was (the empty package must not outlive this test)
        sys.modules.pop("tensorrt", None)
        if before is not None:
            sys.modules["tensorrt"] = before
    env = dict(os.environ, PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")
    r = subprocess.run([sys.executable, "-m", "vnexport", "trt", str(onnx_files["fp32_static"]),
                        "--builder", "tensorrt", "-o", str(tmp_path / "m.engine")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "empty package" in r.stderr and not (tmp_path / "m.engine").exists()


@pytest.mark.skipif(NO_RUNTIME is None, reason="TensorRT and a GPU are present here")
def test_require_runtime_says_what_is_missing():
    with pytest.raises(MissingRuntimeError) as e:
        vt.require_runtime()
    text = str(e.value)
    assert "\n" not in text and e.value.exit_code == 3
    assert "pip install 'vnexport[trt]'" in text or "docker" in text


@pytest.mark.skipif(vt._load_libcuda() is not None, reason="an NVIDIA driver is present here")
def test_gpu_info_without_driver():
    with pytest.raises(MissingRuntimeError, match="no CUDA GPU"):
        vt.gpu_info()


@pytest.mark.skipif(NO_RUNTIME is None, reason="TensorRT and a GPU are present here")
def test_cli_exit3_one_line_no_file(onnx_files, tmp_path):
    out = tmp_path / "m.engine"
    r = run_cli("trt", str(onnx_files["fp32_dynamic"]), "-o", str(out), "--max-batch", "8",
                "--timing-cache", str(tmp_path / "trt.cache"))
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in r.stderr + r.stdout
    assert "pip install 'vnexport[trt]'" in lines[0] or "docker" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no engine, no JSON, no timing cache


@pytest.mark.parametrize("extra, msg", [
    (["--max-batch", "8"], "static batch of 1, which does not fit --max-batch 8"),
    (["--precision", "fp16"], "--precision fp16 given, but the file is fp32"),
    (["--min-batch", "4", "--opt-batch", "2"], None),  # static misfit too
    (["--builder-opt-level", "9"], "--builder-opt-level: 9 is outside the allowed range 0..5"),
    (["--keep-onnx", "x.onnx"], "apply to a checkpoint source only"),
])
def test_cli_bad_input_exit2_before_runtime(onnx_files, tmp_path, extra, msg):
    """Input errors are reported (exit 2) whether or not TensorRT is installed."""
    out = tmp_path / "m.engine"
    code, _, err = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(out), *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    if msg:
        assert msg in err
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_source_and_existing_output(onnx_files, tmp_path):
    code, _, err = invoke("trt", str(tmp_path / "nope.onnx"))
    assert code == 2 and "no such file" in err
    out = tmp_path / "m.engine"
    out.write_bytes(b"old")
    code, _, err = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(out))
    assert code == 2 and "output exists; pass --force" in err
    assert out.read_bytes() == b"old"
    out.unlink()
    (tmp_path / "m.engine.json").write_text("{}")
    code, _, err = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(out))
    assert code == 2 and "m.engine.json" in err


def test_cli_help_lists_every_option():
    from typer.testing import CliRunner

    from vnexport.cli import app

    r = CliRunner().invoke(app, ["trt", "--help"], env={"COLUMNS": "200"})
    code, out = r.exit_code, r.stdout
    assert code == 0
    for opt in ("--output", "--precision", "--min-batch", "--opt-batch", "--max-batch",
                "--workspace", "--timing-cache", "--hardware-compat", "--builder-opt-level",
                "--reference", "--min-agreement", "--min-cosine", "--max-rel-err",
                "--no-verify", "--keep-onnx", "--force", "--json"):
        assert opt in out, opt


def test_no_module_but_trt_stage_imports_tensorrt():
    """Importing every vnexport module (the TensorRT stage included) imports no tensorrt."""
    code = (
        "import importlib, pkgutil, sys, vnexport\n"
        "names = [m.name for m in pkgutil.walk_packages(vnexport.__path__, 'vnexport.')\n"
        "         if m.name != 'vnexport.__main__']  # __main__ would run the CLI\n"
        "for n in names: importlib.import_module(n)\n"
        "assert 'vnexport.trt' in names and 'vnexport.cli' in names, names\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'polygraphy'))\n"
        "print(len(names), bad)\n"
        "sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_only_trt_module_mentions_tensorrt_imports():
    """A source-level check of the same boundary: no other module has a tensorrt import."""
    for path in (ROOT / "vnexport").rglob("*.py"):
        if path.parent == ROOT / "vnexport" / "trt":
            continue
        text = path.read_text()
        assert "import tensorrt" not in text and "from tensorrt" not in text, path


# ------------------------------------------------------------------------------------------
# references used for verification (CPU)


def ort_reference(onnx_path, x):
    """What the trt stage compares with when no checkpoint is given: ONNX Runtime (CPU) on the
    same file, in chunks of 8 (a static batch padded to it)."""
    return ort.run(ort.session(onnx_path, device="cpu"), x, batch=8, path=onnx_path)


def test_onnxruntime_reference_matches_training_form(onnx_files):
    """The ONNX Runtime reference (used without --reference) agrees with the training form."""
    x = random_inputs(SMALL, 5, SMALL_IMG, seed=3)
    ref = run_torch(random_training_model(SMALL, 0), x)
    for name in ("fp32_static", "fp32_dynamic"):  # static: 5 inputs run one by one
        out = ort_reference(onnx_files[name], x.numpy())
        assert compare(ref, out, FP32).passed
    out16 = ort_reference(onnx_files["fp16"], x.numpy())
    c16 = compare(ref, out16, tolerance_for("fp16"))  # the product's limits: cosine 0.9999
    assert c16.passed and c16.tolerance.min_cosine == 0.9999, c16.failures


def test_demo_stage_without_gpu(tmp_path):
    """No CUDA GPU: with TensorRT-RTX the demo builds the engine and says plainly it was not
    run; with no builder at all it skips, saying exactly why (test_trt_rtx.py has no GPU)."""
    from vnexport.checkpoint import load_checkpoint

    if NO_RUNTIME is None:
        pytest.skip("TensorRT and a GPU are present: the stage runs (see the gpu tests)")
    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL),
                           strides=SMALL.strides)
    x = random_inputs(SMALL, 2, SMALL_IMG)
    r = demo_stages.stage_trt(ckpt, x, None, tmp_path, print)
    assert r.stage == "trt" and r.passed is None
    assert demo_stages.STAGES[-1] is demo_stages.stage_trt
    if vt.builder_installed("tensorrt-rtx") and vt._load_libcuda() is None:
        assert r.built and r.verdict == "NOT RUN"
        assert r.detail.startswith("built with tensorrt-rtx ") and "NOT run" in r.detail
        meta = json.loads(vt.provenance_path(r.artifact).read_text())
        assert meta["verification"] is None and Path(r.artifact).stat().st_size > 0
        assert sorted(p.name for p in tmp_path.iterdir()) == \
            ["c.pth", "model_fp32.engine", "model_fp32.engine.json"]
    else:
        # the reason in words written here, not recomputed by the code under test
        # (test_promises.py forces the no-builder case on every machine)
        assert r.verdict == "skipped" and "TensorRT" in r.detail and "\n" not in r.detail


def test_demo_stage_without_any_builder_says_why(tmp_path, monkeypatch):
    from vnexport.checkpoint import load_checkpoint

    monkeypatch.setattr(vt.runtime, "builder_installed", lambda builder: False)
    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL),
                           strides=SMALL.strides)
    r = demo_stages.stage_trt(ckpt, random_inputs(SMALL, 2, SMALL_IMG), None, tmp_path, print)
    assert r.passed is None and not r.built and r.verdict == "skipped" and r.artifact == "-"
    assert r.detail.startswith("no TensorRT builder is installed")
    assert "vnexport[trt]" in r.detail and "vnexport[trt-rtx]" in r.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_checkpoint_source_without_runtime_exits_3(tmp_path):
    """A checkpoint source is checked (exit 2 for bad input) before the runtime (exit 3):
    without a GPU to verify on (TensorRT-RTX here) or without any builder, nothing is
    written, not even the exported ONNX file."""
    if NO_RUNTIME is None:
        pytest.skip("TensorRT and a GPU are present: this would build an engine")
    ckpt = write_training_checkpoint(tmp_path / "c.pth", SMALL)
    r = run_cli("trt", str(ckpt), "--precision", "int8", "--img-size", str(SMALL_IMG),
                "--strides", "2,2")
    assert r.returncode == 3, r.stderr
    why = vt.NO_GPU_TO_VERIFY if vt.builder_installed("tensorrt-rtx") else NO_RUNTIME
    assert r.stderr.strip().splitlines()[-1] == f"error: {why}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


# ------------------------------------------------------------------------------------------
# GPU: real engines (skipped with the reason where TensorRT or a CUDA GPU is absent)


@pytest.fixture(scope="module")
def runtime():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed "
                        "(pip install 'vnexport[trt]', or docker/Dockerfile)")
    if NO_RUNTIME is not None:
        pytest.skip(NO_RUNTIME)
    return vt.require_runtime()


def _onnx_for(ckpt, precision: str, path: Path, img: int, max_batch: int) -> Path:
    """The ONNX stage's file for an engine of batch 1..``max_batch``."""
    options = vt.BuildOptions(min_batch=1, opt_batch=1, max_batch=max_batch)
    return trt_stage.export_for_engine(ckpt, path, precision, options, img_size=img)


GPU_CASES = [("custom", SMALL, SMALL_IMG, p) for p in PRECISIONS] + \
            [("vanillanet_5", "vanillanet_5", 224, p) for p in PRECISIONS]


@pytest.mark.gpu
@pytest.mark.parametrize("label, cfg, img, precision", GPU_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in GPU_CASES])
def test_gpu_build_and_verify(runtime, tmp_path, label, cfg, img, precision):
    from vnexport.checkpoint import load_checkpoint
    from vnexport.model import VARIANTS

    cfg = VARIANTS[cfg] if isinstance(cfg, str) else cfg
    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", cfg, seed=1),
                           strides=cfg.strides)
    onnx_path = _onnx_for(ckpt, precision, tmp_path / f"m_{precision}.onnx", img, max_batch=8)
    assert onnx_file.detect_precision(onnx_path) == precision
    x = random_inputs(cfg, 8, img, seed=5)
    ref = run_torch(ckpt.build_model(), x)  # the fp32 training form: the independent path
    tol = tolerance_for(precision)
    engine = tmp_path / f"m_{precision}.engine"
    options = vt.BuildOptions(min_batch=1, opt_batch=4, max_batch=8,
                              timing_cache=tmp_path / "trt.cache")
    res = vt.build_engine(onnx_path, engine, options, runtime=runtime,
                          check=lambda run: compare(ref, run(x.numpy()), tol),
                          reference="training form")
    print(f"{label} {precision}: {res.comparison.summary()}")
    assert res.comparison.passed, res.comparison.failures
    assert res.written and engine.is_file() and (tmp_path / "trt.cache").is_file()
    meta = json.loads(vt.provenance_path(engine).read_text())
    assert meta["precision"] == precision and meta["profile"]["max"] == [8, 3, img, img]
    assert meta["gpu"]["compute_capability"] == runtime["gpu"]["compute_capability"]
    assert meta["verification"]["passed"] is True
    assert meta["tf32"] is False and meta["builder_config"]["tf32"] is False
    # the written plan, through the public entry point other stages use; 11 > max batch 8
    x11 = random_inputs(cfg, 11, img, seed=6)
    out = vt.run_engine(engine, x11)
    assert compare(run_torch(ckpt.build_model(), x11), out, tol).passed


@pytest.mark.gpu
def test_gpu_cli_end_to_end(runtime, tmp_path):
    """`vnexport trt` on an ONNX file with a reference checkpoint, timing cache, ampere+."""
    from vnexport.checkpoint import load_checkpoint

    ckpt_path = write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=2)
    onnx_path = _onnx_for(load_checkpoint(ckpt_path, strides=SMALL.strides), "fp32",
                          tmp_path / "m.onnx", SMALL_IMG, 8)
    hw = "ampere+" if vt.parse_version(runtime["gpu"]["compute_capability"]) >= (8, 0) \
        else "none"
    args = ["trt", str(onnx_path), "-o", str(tmp_path / "m.engine"), "--min-batch", "1",
            "--opt-batch", "4", "--max-batch", "8", "--timing-cache", str(tmp_path / "t.cache"),
            "--hardware-compat", hw, "--builder-opt-level", "2", "--workspace", "1",
            "--reference", str(ckpt_path), "--strides", "2,2",
            "--json", str(tmp_path / "report.json")]
    r = run_cli(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    assert meta["hardware_compat"] == hw and meta["builder_optimization_level"] == 2
    assert meta["verification_reference"].startswith("training form of c.pth")
    assert (tmp_path / "t.cache").stat().st_size > 0
    # second build: the cache is loaded and saved again; without --force the output is refused
    r = run_cli(*args)
    assert r.returncode == 2 and "output exists" in r.stderr
    r = run_cli(*args, "--force")
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.gpu
def test_gpu_latency(runtime, tmp_path):
    from vnexport.checkpoint import load_checkpoint

    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL),
                           strides=SMALL.strides)
    onnx_path = _onnx_for(ckpt, "fp32", tmp_path / "m.onnx", SMALL_IMG, 8)
    engine = tmp_path / "m.engine"
    vt.build_engine(onnx_path, engine, vt.BuildOptions(max_batch=8), runtime=runtime)
    r1 = vt.measure_latency(engine, 1, iters=20, warmup=5)
    r8 = vt.measure_latency(engine, 8, iters=20, warmup=5)
    assert 0 < r1["median_ms"] <= r1["p90_ms"] and r8["images_per_s"] > 0
    assert "skipped" in vt.measure_latency(engine, 16, iters=2, warmup=0)


# ------------------------------------------------------------------------------------------
# the orchestration after the runtime check, on CPU: vnexport.trt runs for real (runtime
# check, build, deserialize, chunked inference) against the FAKE tensorrt/polygraphy of
# tests/fakes, whose "engine" is the ONNX file on ONNX Runtime; everything else is real (CLI,
# verification against the training form, atomic writes, provenance, exit codes)


@pytest.fixture
def ort_as_engine(monkeypatch):
    from fakes import fake_polygraphy

    fake_polygraphy.install(monkeypatch)
    monkeypatch.setattr(vt.runtime, "gpu_info", lambda ordinal=0: {
        "name": "FAKE GPU (tests/fakes)", "compute_capability": "9.0", "devices": 1})
    return fake_polygraphy.STATE


def test_cli_flow_pass_writes_engine_and_provenance(ort_as_engine, onnx_files, tmp_path):
    ckpt = write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=0)
    out = tmp_path / "m.engine"
    code, stdout, err = invoke("trt", str(onnx_files["fp32_dynamic"]), "-o", str(out),
                               "--max-batch", "4", "--reference", str(ckpt), "--key", "model",
                               "--strides", "2,2",
                               "--n", "6", "--hardware-compat", "ampere+",
                               "--json", str(tmp_path / "r.json"))
    assert code == 0, stdout + err
    assert "PASS" in stdout and out.stat().st_size > 0
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    assert meta["precision"] == "fp32" and meta["tf32"] is False  # from CreateConfig(tf32=...)
    assert meta["strongly_typed"] is True  # from NetworkFromOnnxPath(strongly_typed=...)
    assert meta["profile"]["max"] == [4, 3, SMALL_IMG, SMALL_IMG]
    assert meta["verification"]["passed"] and meta["verification"]["n"] == 6
    assert meta["verification_reference"].startswith("training form of c.pth")
    assert meta["source_checkpoint"]["file"] == "c.pth" and meta["hardware_compat"] == "ampere+"
    import hashlib

    assert meta["engine_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert json.loads((tmp_path / "r.json").read_text())["written"] is True


def test_cli_flow_failed_verification_exit1_nothing_written(ort_as_engine, onnx_files,
                                                            tmp_path):
    ort_as_engine["perturb"] = 1e-3  # 10x the fp32 tolerance (the weights are the same)
    ckpt = write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=0)
    out = tmp_path / "m.engine"
    code, stdout, _ = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(out),
                             "--reference", str(ckpt), "--key", "model", "--strides", "2,2")
    assert code == 1
    assert "FAIL: max rel err" in stdout and "not written" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


def test_cli_flow_without_reference_uses_onnxruntime(ort_as_engine, onnx_files, tmp_path):
    out = tmp_path / "m.engine"
    code, stdout, err = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(out))
    assert code == 0, stdout + err
    assert "not against the training form" in err
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    assert meta["verification_reference"].startswith("ONNX Runtime")


def test_cli_flow_reference_of_another_model(ort_as_engine, onnx_files, tmp_path):
    other = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), num_classes=7)
    ckpt = write_training_checkpoint(tmp_path / "c.pth", other)
    code, _, err = invoke("trt", str(onnx_files["fp32_static"]), "-o", str(tmp_path / "m.engine"),
                          "--reference", str(ckpt), "--strides", "2,2")
    assert code == 2 and "differs from the reference" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


@pytest.mark.gpu
def test_gpu_static_batch_and_min_batch_padding(runtime, tmp_path):
    """A static-batch engine and a min-batch-2 profile both run any number of inputs."""
    from vnexport.checkpoint import load_checkpoint

    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=3),
                           strides=SMALL.strides)
    x = random_inputs(SMALL, 5, SMALL_IMG, seed=7)
    ref = run_torch(ckpt.build_model(), x)
    from vnexport.fuse import deploy_model as fused

    static = export(fused(ckpt), tmp_path / "static.onnx")
    vt.build_engine(static, tmp_path / "static.engine", vt.BuildOptions(), runtime=runtime)
    assert compare(ref, vt.run_engine(tmp_path / "static.engine", x), FP32).passed
    dynamic = export(fused(ckpt), tmp_path / "dynamic.onnx", dynamic=True)
    vt.build_engine(dynamic, tmp_path / "min2.engine",
                    vt.BuildOptions(min_batch=2, max_batch=4), runtime=runtime)
    assert compare(ref, vt.run_engine(tmp_path / "min2.engine", x), FP32).passed  # 4 + 1 (pad)


@pytest.mark.gpu
def test_gpu_demo_stage(runtime, tmp_path):
    from vnexport.checkpoint import load_checkpoint

    ckpt = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=4),
                           strides=SMALL.strides)
    x = random_inputs(SMALL, 4, SMALL_IMG, seed=8)
    r = demo_stages.stage_trt(ckpt, x, run_torch(ckpt.build_model(), x), tmp_path, print)
    assert r.passed is True, r.detail
    assert Path(r.artifact).is_file() and vt.provenance_path(r.artifact).is_file()
