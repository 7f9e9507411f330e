"""Real engines, built in CI: the TensorRT-RTX builder (module ``tensorrt_rtx``), which builds
ahead of time on the CPU, through the product's own build function from small synthetic
checkpoints: fp32 static, fp32 dynamic 1/8/32, fp16, int8, ada_pool at 224 and 256.

What is asserted comes from outside the code under test where it can: the engine bytes are
judged by TensorRT-RTX's own header check (``Runtime.get_engine_validity``: a plan it did not
write is MALFORMED_ENGINE), and the strong typing, TF32, compute capabilities and profile count
in the provenance are what TensorRT's network and IBuilderConfig reported during the build.
Reading the profile back out of the engine needs a deserialized engine, which needs a CUDA GPU
(``deserialize_cuda_engine`` fails with cudaError 35 here): that check is a ``gpu`` test.

Skips: only where ``tensorrt_rtx`` cannot be imported (the ``trt-rtx`` extra), or, for the gpu
tests, where there is no CUDA GPU.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vnexport import trt as vt
from vnexport.onnx_file import detect_precision
from vnexport.stages import trt as trt_stage
from vnexport.checkpoint import load_checkpoint
from vnexport.errors import MissingRuntimeError, VnexportError
from vnexport.model import VanillaNetConfig
from vnexport.synthetic import write_training_checkpoint
from vnexport.verify import compare, random_inputs, run_torch, tolerance_for

try:
    import tensorrt_rtx as trtx
    NO_TRTX = None
except ImportError as e:
    trtx = None
    NO_TRTX = f"tensorrt_rtx cannot be imported ({e}): pip install 'vnexport[trt-rtx]'"

needs_rtx = pytest.mark.skipif(NO_TRTX is not None, reason=NO_TRTX or "")

SMALL = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), num_classes=10)
ADA = VanillaNetConfig(dims=(8, 16, 32, 32, 64), strides=(1, 2, 2, 2), ada_pool=(0, 38, 19, 10),
                       num_classes=10)
RTX = dict(builder="tensorrt-rtx")
DYN = dict(min_batch=1, opt_batch=8, max_batch=32)


def _no_gpu() -> str | None:
    try:
        vt.gpu_info()
    except MissingRuntimeError as e:
        return str(e)
    return None


NO_GPU = _no_gpu()


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtx_ckpt")
    out = {}
    for name, cfg in (("small", SMALL), ("ada", ADA)):
        path = write_training_checkpoint(d / f"{name}.pth", cfg, seed=4, with_ema=False)
        out[name] = load_checkpoint(path, strides=cfg.strides, ada_pool=cfg.ada_pool)
    return out


@pytest.fixture(scope="module")
def timings():
    t = {}
    yield t
    print("\nTensorRT-RTX build seconds:", {k: round(v, 2) for k, v in t.items()})


def build(ckpt, tmp_path: Path, precision: str, options: vt.BuildOptions, img: int,
          timings: dict | None = None, label: str = ""):
    """The product's path from a checkpoint: build_from_source (export on the way, build,
    write), unverified (no GPU here to run the engine on)."""
    out = tmp_path / f"{label or precision}.engine"
    runtime = vt.require_builder(options, need_gpu=False)
    t = time.perf_counter()
    res, _ = trt_stage.build_from_source(ckpt.path, out, precision, options, ckpt=ckpt,
                                  from_onnx=False, runtime=runtime, verify=None, img_size=img,
                                  echo=lambda s: None, note=lambda s: None)
    if timings is not None:
        timings[label or precision] = time.perf_counter() - t
    return res, out


def header(engine: Path) -> tuple[str, int]:
    """TensorRT-RTX's own verdict on the plan bytes (independent of vnexport)."""
    runtime = trtx.Runtime(trtx.Logger(trtx.Logger.INTERNAL_ERROR))
    validity, bits = runtime.get_engine_validity(engine.read_bytes())
    return validity.name, int(bits)


def assert_well_formed(engine: Path) -> None:
    validity, bits = header(engine)
    malformed = int(trtx.EngineInvalidityDiagnostics.MALFORMED_ENGINE)
    version = int(trtx.EngineInvalidityDiagnostics.VERSION_MISMATCH)
    assert not bits & (malformed | version), (validity, bits)
    if NO_GPU is None:
        assert validity in ("VALID", "SUBOPTIMAL"), (validity, bits)


CASES = [  # label, ckpt, precision, options, img, expected profile batches
    ("fp32_static", "small", "fp32", {}, 64, (1, 1, 1)),
    ("fp32_dynamic", "small", "fp32", DYN, 64, (1, 8, 32)),
    ("fp16", "small", "fp16", DYN, 64, (1, 8, 32)),
    ("int8", "small", "int8", DYN, 64, (1, 8, 32)),
    ("ada_pool_224", "ada", "fp32", {}, 224, (1, 1, 1)),
    ("ada_pool_256", "ada", "fp32", dict(min_batch=1, opt_batch=2, max_batch=4), 256,
     (1, 2, 4)),
]


@needs_rtx
@pytest.mark.parametrize("label, which, precision, kw, img, batches", CASES,
                         ids=[c[0] for c in CASES])
def test_build_engine_from_checkpoint(ckpts, tmp_path, timings, label, which, precision, kw,
                                      img, batches):
    options = vt.BuildOptions(compute_capabilities=("8.0",), **RTX, **kw).validate()
    res, out = build(ckpts[which], tmp_path, precision, options, img, timings, label)
    assert res.written and res.comparison is None
    data = out.read_bytes()
    assert len(data) > 10_000 and res.engine_bytes == len(data)
    assert_well_formed(out)
    meta = json.loads(vt.provenance_path(out).read_text())
    assert meta == res.provenance
    assert meta["builder"] == "tensorrt-rtx" and meta["builder_version"] == trtx.__version__
    assert meta["precision"] == precision
    shape = [3, img, img]
    assert meta["profile"] == {"input": "input", "min": [batches[0], *shape],
                               "opt": [batches[1], *shape], "max": [batches[2], *shape]}
    # read back from TensorRT's network and IBuilderConfig during the build
    cfg = meta["builder_config"]
    assert cfg["compute_capabilities"] == ["8.0"] == meta["compute_capabilities"]
    assert cfg["strongly_typed"] is True and meta["strongly_typed"] is True
    assert cfg["tf32"] is False and meta["tf32"] is False
    assert cfg["optimization_profiles"] == 1
    assert meta["verification"] is None and "not run" in meta["verification_skipped"]
    import hashlib

    assert meta["engine_sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["source_checkpoint"]["variant"] == ckpts[which].variant


@needs_rtx
def test_default_targets_and_several_capabilities(ckpts, tmp_path):
    """No --compute-capability: TensorRT-RTX's default set (its config lists none), said so;
    two capabilities: both set on the config, in order."""
    res, out = build(ckpts["small"], tmp_path, "fp32", vt.BuildOptions(**RTX), 64,
                     label="default")
    meta = res.provenance
    assert meta["builder_config"]["compute_capabilities"] == []
    assert meta["compute_capabilities"] is None and "default portable set" in meta["targets"]
    assert_well_formed(out)
    res, out = build(ckpts["small"], tmp_path, "fp32",
                     vt.BuildOptions(compute_capabilities=("8.6", "8.0"), **RTX), 64,
                     label="two")
    assert res.provenance["builder_config"]["compute_capabilities"] == ["8.6", "8.0"]
    assert res.provenance["targets"].startswith("compute capability 8.6, 8.0")


@needs_rtx
def test_workspace_and_optimisation_level_reach_the_config(ckpts, tmp_path):
    options = vt.BuildOptions(workspace_gib=0.5, builder_opt_level=1, **RTX)
    res, _ = build(ckpts["small"], tmp_path, "fp32", options, 64, label="ws")
    cfg = res.provenance["builder_config"]
    assert cfg["workspace_bytes"] == 2**29 and cfg["builder_optimization_level"] == 1


@needs_rtx
def test_int8_engine_from_an_onnx_file(ckpts, tmp_path):
    """build_engine on an int8 file written by the ONNX stage (the `vnexport trt m.onnx` path)."""
    onnx_path = trt_stage.export_for_engine(ckpts["small"], tmp_path / "m_int8.onnx", "int8",
                                     vt.BuildOptions(**DYN), img_size=64)
    assert detect_precision(onnx_path) == "int8"
    options = vt.BuildOptions(compute_capabilities=("8.0", "8.6"), **RTX, **DYN)
    res = vt.build_engine(onnx_path, tmp_path / "m.engine", options)
    assert res.written and res.provenance["precision"] == "int8"
    assert res.provenance["builder_config"]["compute_capabilities"] == ["8.0", "8.6"]
    assert_well_formed(tmp_path / "m.engine")


# ------------------------------------------------------------------------------------------
# options TensorRT-RTX lacks, and the runtime decisions


@pytest.mark.parametrize("kw, msg", [
    (dict(hardware_compat="ampere+", **RTX), "--hardware-compat ampere+: TensorRT-RTX has no"),
    (dict(hardware_compat="same-cc", **RTX), "--hardware-compat same-cc"),
    (dict(timing_cache=Path("t.cache"), **RTX), "--timing-cache: TensorRT-RTX has no"),
    (dict(compute_capabilities=("8.0",), builder="tensorrt"), "applies to --builder tensorrt-rtx"),
    (dict(compute_capabilities=("8.0",), hardware_compat="ampere+"), "cannot be combined"),
    (dict(compute_capabilities=("8",), **RTX), "MAJOR.MINOR"),
    (dict(builder="tensorrt-llm"), "--builder must be one of"),
])
def test_options_refused_exit2(kw, msg):
    with pytest.raises(VnexportError) as e:
        vt.BuildOptions(**kw).validate()
    assert msg in str(e.value) and e.value.exit_code == 2 and "\n" not in str(e.value)


@needs_rtx
def test_unknown_compute_capability_names_the_known(ckpts, tmp_path):
    options = vt.BuildOptions(compute_capabilities=("9.0",), **RTX).validate()
    with pytest.raises(VnexportError) as e:
        vt.require_builder(options, need_gpu=False)
    assert e.value.exit_code == 2
    assert "9.0" in str(e.value) and "8.0" in str(e.value) and "12.0" in str(e.value)


def test_auto_prefers_what_the_options_call_for():
    assert vt.BuildOptions(compute_capabilities=("8.0",)).builder_wanted == "tensorrt-rtx"
    assert vt.BuildOptions(hardware_compat="ampere+").builder_wanted == "tensorrt"
    assert vt.BuildOptions().builder_wanted == "auto"
    expect = "tensorrt" if vt.builder_installed("tensorrt") else "tensorrt-rtx"
    assert vt.resolve_builder(vt.BuildOptions()) == expect


def test_auto_without_any_builder_names_both(monkeypatch):
    monkeypatch.setattr(vt.runtime, "builder_installed", lambda builder: False)
    with pytest.raises(MissingRuntimeError) as e:
        vt.resolve_builder(vt.BuildOptions())
    text = str(e.value)
    assert "vnexport[trt]" in text and "vnexport[trt-rtx]" in text and "\n" not in text


@needs_rtx
@pytest.mark.skipif(NO_GPU is None, reason="a CUDA GPU is present: the engine can be verified")
def test_verification_without_gpu_builds_nothing(ckpts, tmp_path):
    options = vt.BuildOptions(**RTX)
    onnx_path = trt_stage.export_for_engine(ckpts["small"], tmp_path / "m.onnx", "fp32", options, 64)
    with pytest.raises(MissingRuntimeError) as e:
        vt.require_builder(options, need_gpu=True)
    assert str(e.value) == vt.NO_GPU_TO_VERIFY
    with pytest.raises(MissingRuntimeError, match="built nothing: no CUDA GPU"):
        vt.build_engine(onnx_path, tmp_path / "m.engine", options, check=lambda run: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@needs_rtx
@pytest.mark.skipif(NO_GPU is None, reason="a CUDA GPU is present")
def test_engine_without_gpu_says_no_cuda_gpu(ckpts, tmp_path):
    """verify/bench/info of an engine here: exit 3 'no CUDA GPU', not 'another version'; the
    facts and the header check still come."""
    from vnexport.runners import runner_from_path

    _, out = build(ckpts["small"], tmp_path, "fp32", vt.BuildOptions(**RTX), 64)
    for call in (lambda: vt.run_engine(out, np.zeros((1, 3, 64, 64), np.float32)),
                 lambda: runner_from_path(out), lambda: vt.measure_latency(out, 1)):
        with pytest.raises(MissingRuntimeError) as e:
            call()
        assert "no CUDA GPU" in str(e.value) and "another" not in str(e.value)
    facts = vt.engine_facts(out)
    assert facts["builder"] == "tensorrt-rtx" and facts["sha256_matches_provenance"] is True
    hc = facts["header_check"]
    assert hc["checked"] and hc["diagnostics"] == [] and "no usable CUDA GPU" in hc["meaning"]
    junk = tmp_path / "junk.engine"
    junk.write_bytes(b"\x00" * 4096)
    hc = vt.engine_facts(junk)["header_check"]
    assert hc["diagnostics"] == ["MALFORMED_ENGINE"] and "damaged" in hc["meaning"]


@needs_rtx
def test_polygraphy_backend_switch_is_isolated(monkeypatch):
    """load_polygraphy re-imports Polygraphy for the other TensorRT module and leaves the
    environment variable as it found it."""
    monkeypatch.delenv(vt.POLYGRAPHY_RTX_ENV, raising=False)
    try:
        pg = vt.load_polygraphy("tensorrt")
        assert sys.modules["polygraphy.config"].USE_TENSORRT_RTX is False
        assert vt.POLYGRAPHY_RTX_ENV not in os.environ
        from polygraphy.backend.trt import CreateConfig  # noqa: F401  (imports in this mode)
        monkeypatch.setenv(vt.POLYGRAPHY_RTX_ENV, "0")
        pg2 = vt.load_polygraphy("tensorrt-rtx")
        assert sys.modules["polygraphy.config"].USE_TENSORRT_RTX is True and pg2 is not pg
        assert os.environ[vt.POLYGRAPHY_RTX_ENV] == "0"
        assert vt.load_polygraphy("tensorrt-rtx") is pg2  # already right: no re-import
        assert vt._active_trt() is trtx
    finally:
        vt.load_polygraphy("tensorrt-rtx")


# ------------------------------------------------------------------------------------------
# GPU: the engine itself (deserialize needs a CUDA GPU)


@pytest.mark.gpu
@needs_rtx
@pytest.mark.skipif(NO_GPU is not None, reason=f"needs a CUDA GPU to deserialize: {NO_GPU}")
def test_gpu_profile_from_the_engine_and_verified_outputs(ckpts, tmp_path):
    ckpt = ckpts["small"]
    options = vt.BuildOptions(**RTX, **DYN)
    res, out = build(ckpt, tmp_path, "fp32", options, 64)
    runtime = trtx.Runtime(trtx.Logger(trtx.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(out.read_bytes())
    assert engine is not None
    lo, opt, hi = engine.get_tensor_profile_shape("input", 0)
    assert (tuple(lo), tuple(opt), tuple(hi)) == ((1, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64))
    x = random_inputs(SMALL, 11, 64, seed=3)
    comp = compare(run_torch(ckpt.build_model(), x), vt.run_engine(out, x),
                   tolerance_for("fp32"))
    assert comp.passed, comp.failures


# ------------------------------------------------------------------------------------------
# through the CLI, as the "done when" reads (in process: CliRunner)


def invoke(*args: str):
    from typer.testing import CliRunner

    from vnexport.cli import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def cli_ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("rtx_cli")
    return write_training_checkpoint(d / "ck.pth", SMALL, seed=6, with_ema=False)


SMALL_ARGS = ("--strides", "2,2", "--img-size", "64")


def write_pngs(folder: Path, n: int = 8, size: int = 80) -> Path:
    """Small RGB PNGs (smooth gradients with noise, seeded) for --calib-images."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = np.stack([xx, yy, (xx + yy) / 2], -1) * rng.uniform(0.3, 1.0, 3)
        img = np.clip(base + rng.normal(0, 0.08, base.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def assert_engine_and_json(engine: Path, precision: str, caps: list[str],
                           batches: tuple[int, int, int]) -> dict:
    assert engine.stat().st_size > 10_000
    assert_well_formed(engine)
    meta = json.loads(vt.provenance_path(engine).read_text())
    assert meta["builder"] == "tensorrt-rtx" and meta["builder_version"] == trtx.__version__
    assert meta["compute_capabilities"] == caps == meta["builder_config"]["compute_capabilities"]
    assert meta["precision"] == precision
    assert [meta["profile"][k][0] for k in ("min", "opt", "max")] == list(batches)
    assert meta["verification"] is None and "not run" in meta["verification_skipped"]
    return meta


@needs_rtx
def test_cli_int8_from_calibration_images(cli_ckpt, tmp_path):
    calib = write_pngs(tmp_path / "calib")
    code, out, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "--precision", "int8",
                            "--calib-images", calib, "-o", tmp_path / "m.onnx")
    assert code == 0, out + err
    code, out, err = invoke("trt", tmp_path / "m.onnx", "--builder", "tensorrt-rtx",
                            "--compute-capability", "8.0", "--no-verify",
                            "-o", tmp_path / "m.engine")
    assert code == 0, out + err
    assert "NOT VERIFIED: the engine was not run" in out
    assert_engine_and_json(tmp_path / "m.engine", "int8", ["8.0"], (1, 1, 1))


@needs_rtx
def test_cli_fp32_dynamic_1_8_32(cli_ckpt, tmp_path):
    code, out, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "--dynamic-batch", "--max-batch",
                            "32", "-o", tmp_path / "m.onnx")
    assert code == 0, out + err
    code, out, err = invoke("trt", tmp_path / "m.onnx", "--builder", "tensorrt-rtx",
                            "--compute-capability", "8.0,8.6", "--min-batch", "1",
                            "--opt-batch", "8", "--max-batch", "32", "--no-verify",
                            "-o", tmp_path / "m.engine")
    assert code == 0, out + err
    assert_engine_and_json(tmp_path / "m.engine", "fp32", ["8.0", "8.6"], (1, 8, 32))


@needs_rtx
def test_cli_fp16_alias_from_a_checkpoint(cli_ckpt, tmp_path):
    code, out, err = invoke("trt", cli_ckpt, *SMALL_ARGS, "--fp16", "--builder", "tensorrt-rtx",
                            "--compute-capability", "8.0", "--no-verify",
                            "-o", tmp_path / "f.engine")
    assert code == 0, out + err
    meta = assert_engine_and_json(tmp_path / "f.engine", "fp16", ["8.0"], (1, 1, 1))
    assert meta["source_checkpoint"]["file"] == "ck.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.engine", "f.engine.json"]


@needs_rtx
@pytest.mark.skipif(NO_GPU is None, reason="a CUDA GPU is present: the engine is verified")
def test_cli_without_no_verify_exit3_one_line_nothing_written(cli_ckpt, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    code, out, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "-o", src / "m.onnx")
    assert code == 0, out + err
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = invoke("trt", src / "m.onnx", "-o", out_dir / "m.engine")  # auto
    assert code == 3 and err.splitlines() == [f"error: {vt.NO_GPU_TO_VERIFY}"]
    assert "Traceback" not in out + err
    code, out, err = invoke("trt", cli_ckpt, *SMALL_ARGS, "--builder", "tensorrt-rtx",
                            "--keep-onnx", out_dir / "k.onnx", "-o", out_dir / "c.engine")
    assert code == 3  # the checkpoint's loading note, then the one error line
    assert [ln for ln in err.splitlines() if ln.startswith("error")] == \
        [f"error: {vt.NO_GPU_TO_VERIFY}"] == err.splitlines()[-1:]
    assert list(out_dir.iterdir()) == []  # no engine, no JSON, no kept ONNX file


@pytest.mark.parametrize("args, msg", [
    (["--fp16", "--precision", "int8"], "--fp16 and --precision int8 conflict"),
    (["--fp16", "--int8"], "--fp16 and --int8 conflict"),
    (["--builder", "tensorrt-rtx", "--hardware-compat", "ampere+"],
     "--hardware-compat ampere+: TensorRT-RTX has no such setting"),
    (["--builder", "tensorrt-rtx", "--timing-cache", "t.cache"], "--timing-cache: TensorRT-RTX"),
    (["--builder", "tensorrt", "--compute-capability", "8.0"], "applies to --builder tensorrt-rtx"),
    (["--compute-capability", "sm80"], "MAJOR.MINOR"),
    (["--builder", "tensorrt-rtx", "--version-compatible"],
     "--version-compatible: TensorRT-RTX has no such setting"),
    (["--builder", "tensorrt-rtx", "--version-compatible", "--exclude-lean-runtime"],
     "--version-compatible: TensorRT-RTX has no such setting"),
    (["--compute-capability", "8.0", "--version-compatible"], "cannot be combined"),
    (["--exclude-lean-runtime"], "add --version-compatible"),
])
def test_cli_option_conflicts_exit2_before_any_runtime(cli_ckpt, tmp_path, args, msg):
    code, out, err = invoke("trt", cli_ckpt, *SMALL_ARGS, *args, "-o", tmp_path / "m.engine")
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1 and msg in err
    assert list(tmp_path.iterdir()) == []


def test_cli_precision_aliases_in_onnx_and_quantize(cli_ckpt, tmp_path):
    code, _, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "--int8", "--precision", "fp16",
                          "-o", tmp_path / "m.onnx")
    assert code == 2 and "--int8 and --precision fp16 conflict" in err
    code, out, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "--fp16", "-o", tmp_path / "m.onnx")
    assert code == 0, out + err
    assert detect_precision(tmp_path / "m.onnx") == "fp16"
    code, out, err = invoke("onnx", cli_ckpt, *SMALL_ARGS, "-o", tmp_path / "f32.onnx")
    assert code == 0 and detect_precision(tmp_path / "f32.onnx") == "fp32"
    code, _, err = invoke("quantize", tmp_path / "f32.onnx", "-o", tmp_path / "q.onnx")
    assert code == 2 and "--precision fp16|int8" in err
    code, out, err = invoke("quantize", tmp_path / "f32.onnx", "--int8", "-o",
                            tmp_path / "q.onnx")
    assert code == 0, out + err
    assert detect_precision(tmp_path / "q.onnx") == "int8"


@pytest.mark.parametrize("command, options", [
    ("trt", ["--fp32", "--fp16", "--int8", "--precision", "--builder", "--compute-capability",
             "--no-verify", "--hardware-compat"]),
    ("onnx", ["--fp32", "--fp16", "--int8", "--precision"]),
    ("quantize", ["--fp32", "--fp16", "--int8", "--precision"]),
])
def test_help_shows_the_aliases(command, options):
    from typer.testing import CliRunner

    from vnexport.cli import app

    r = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for opt in options:
        assert opt in r.stdout, (command, opt)


@needs_rtx
@pytest.mark.skipif(NO_GPU is None, reason="a CUDA GPU is present")
def test_cli_info_verify_bench_of_an_engine_without_gpu(ckpts, cli_ckpt, tmp_path):
    _, engine = build(ckpts["small"], tmp_path, "fp32", vt.BuildOptions(**RTX), 64)
    code, out, err = invoke("info", engine)  # info describes: exit 0, tensors not read
    assert code == 0 and "tensors     not read here: " in out and "no CUDA GPU" in out
    assert "builder     tensorrt-rtx" in out and "sha256 matches" in out
    assert "header      OK - a well-formed TensorRT-RTX" in out and "INVALID" not in out
    code, out, err = invoke("info", engine, "--json")
    assert code == 0 and json.loads(out)["builder"] == "tensorrt-rtx"
    assert json.loads(out)["header_status"] == "ok"
    for args in (["verify", cli_ckpt, engine, "--strides", "2,2"], ["bench", engine]):
        code, out, err = invoke(*args)
        assert code == 3 and "no CUDA GPU" in err and "another" not in err, (args, err)
    junk = tmp_path / "junk.plan"
    junk.write_bytes(b"\x08\x07" * 100)
    code, out, err = invoke("info", junk)  # malformed and no provenance: not an engine
    assert code == 2 and out == "" and "reads its header as malformed" in err


# ------------------------------------------------------------------------------------------
# the README's TensorRT example chain, as written (a small checkpoint for checkpoint-best.pth)


def readme_trt_lines() -> list[list[str]]:
    import shlex

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("### `vnexport trt`"):]
    block = section[section.index("```bash") + 7:]
    block = block[:block.index("```")].replace("\\\n", " ")
    return [shlex.split(ln.split("#")[0])[1:] for ln in block.splitlines()
            if ln.startswith("vnexport ")]


@needs_rtx
def test_readme_trt_chain_runs_as_written(cli_ckpt, tmp_path, monkeypatch):
    """Every line of the README's `vnexport trt` block passes the option and input checks: it
    exits 0, or 3 for a runtime this machine lacks (a GPU, datacenter TensorRT), never 2 (as
    the old chain did: an fp16 file with a static batch of 1, then --opt-batch 8)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(cli_ckpt, tmp_path / "checkpoint-best.pth")
    small = {"onnx": list(SMALL_ARGS), "trt": list(SMALL_ARGS)}
    code, out, err = invoke("onnx", "checkpoint-best.pth", *SMALL_ARGS, "--int8",
                            "-o", "vanillanet_13_int8.onnx")  # the Commands block's int8 file
    assert code == 0, out + err
    shutil.copy(tmp_path / "vanillanet_13_int8.onnx", tmp_path / "model.onnx")
    lines = readme_trt_lines()
    assert len(lines) >= 6 and lines[0][0] == "onnx" and "--dynamic-batch" in lines[0]
    outcomes = []
    for args in lines:
        extra = list(small.get(args[0], []))
        if "checkpoint-best.pth" not in args[1:2] and args[0] == "trt":
            extra = ["--strides", "2,2"] if "--reference" in args else []
        code, out, err = invoke(*args, *extra)
        outcomes.append((args[:2], code))
        assert code in (0, 3), (args, out, err)
        if code == 3:
            assert "no CUDA GPU" in err or "TensorRT is not installed" in err, (args, err)
    assert ("vanillanet_13_fp16_rtx.engine" in {p.name for p in tmp_path.iterdir()}), outcomes


@needs_rtx
def test_triton_refuses_a_tensorrt_rtx_engine(ckpts, tmp_path):
    """Triton's TensorRT backend runs datacenter TensorRT plans: a TensorRT-RTX engine is
    refused by name (exit 2), nothing written."""
    pytest.importorskip("tritonclient", reason="tritonclient is not installed "
                        "(pip install 'vnexport[serve]')")
    from vnexport.stages import triton as triton_stage
    from vnexport.stages.common import Log

    options = vt.BuildOptions(**RTX, **DYN)
    onnx_path = trt_stage.export_for_engine(ckpts["small"], tmp_path / "m.onnx", "fp32",
                                            options, 64)
    vt.build_engine(onnx_path, tmp_path / "m.engine", options)
    with pytest.raises(VnexportError, match="a TensorRT-RTX engine: Triton's TensorRT") as e:
        triton_stage.run(triton_stage.TritonOptions(artifacts=(tmp_path / "m.engine",),
                                                    output=tmp_path / "repo"),
                         Log(echo=lambda s: None, note=lambda s: None))
    assert e.value.exit_code == 2 and e.value.path == str(tmp_path / "m.engine")
    assert not (tmp_path / "repo").exists()
