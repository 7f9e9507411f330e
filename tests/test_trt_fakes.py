"""The datacenter-TensorRT path that needs a GPU (build, deserialize, run, time), run for real
on the CPU against FAKE ``tensorrt`` and ``polygraphy`` modules (tests/fakes) that record what
vnexport passes them. The tests assert those arguments (strongly typed network, TF32 off,
profile shapes, workspace bytes, hardware level, optimisation level, timing cache load/save,
chunks and padding, execution-context shapes), and bind every recorded Polygraphy call
against the installed Polygraphy's signatures, so an API drift fails here.

The fakes' engine is the ONNX file run by ONNX Runtime; outputs are compared with the
training-form network (the independent path), never with a value a fake supplied.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import fake_polygraphy as fpg
from vnexport import trt as vt
from vnexport.errors import MissingRuntimeError, VnexportError
from vnexport.model import VanillaNetConfig
from vnexport.onnx_export import onnx_model_from_deploy, save_onnx
from vnexport.synthetic import random_training_model
from vnexport.verify import FP32, compare, random_inputs, run_torch

ROOT = Path(__file__).resolve().parents[1]
SMALL = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), num_classes=10)
IMG = 64
FAKE_GPU = {"name": "FAKE GPU (tests/fakes)", "compute_capability": "8.0", "devices": 1}


@pytest.fixture(scope="module")
def model():
    return random_training_model(SMALL, 0)


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    import copy

    d = tmp_path_factory.mktemp("fake_onnx")
    deploy = copy.deepcopy(model).reparameterize().eval()
    return {"static": save_onnx(onnx_model_from_deploy(deploy, img_size=IMG), d / "s.onnx"),
            "dynamic": save_onnx(onnx_model_from_deploy(deploy, img_size=IMG,
                                                        dynamic_batch=True), d / "d.onnx")}


@pytest.fixture
def fake(monkeypatch):
    """Fake tensorrt + polygraphy in sys.modules, and a fake GPU for the driver query."""
    fpg.install(monkeypatch)
    monkeypatch.setattr(vt.runtime, "gpu_info", lambda ordinal=0: dict(FAKE_GPU))
    return fpg


def only(name: str) -> tuple[tuple, dict]:
    got = fpg.calls(name)
    assert len(got) == 1, (name, got)
    return got[0]


# ------------------------------------------------------------------------------------------
# what the build hands Polygraphy / TensorRT


def test_build_arguments(fake, files, tmp_path):
    options = vt.BuildOptions(min_batch=1, opt_batch=4, max_batch=8, workspace_gib=1.5,
                              hardware_compat="ampere+", builder_opt_level=2,
                              timing_cache=tmp_path / "t.cache", builder="tensorrt")
    res = vt.build_engine(files["dynamic"], tmp_path / "m.engine", options)
    trt = sys.modules["tensorrt"]
    args, kw = only("NetworkFromOnnxPath")
    assert args == (str(files["dynamic"]),) and kw == {"strongly_typed": True}
    _, cfg = only("CreateConfig")
    assert cfg["tf32"] is False
    assert cfg["memory_pool_limits"] == {trt.MemoryPoolType.WORKSPACE: int(1.5 * 2**30)}
    assert cfg["builder_optimization_level"] == 2
    assert cfg["hardware_compatibility_level"] is trt.HardwareCompatibilityLevel.AMPERE_PLUS
    assert cfg["load_timing_cache"] is None  # no cache file yet: nothing to load
    assert len(cfg["profiles"]) == 1
    args, kw = only("Profile.add")
    assert args == ("input",)
    assert kw == {"min": (1, 3, IMG, IMG), "opt": (4, 3, IMG, IMG), "max": (8, 3, IMG, IMG)}
    _, kw = only("EngineBytesFromNetwork")
    assert kw["save_timing_cache"] == str(tmp_path / "t.cache") and callable(kw["config"])
    # the provenance reports TensorRT's config as built from those arguments
    meta = json.loads((tmp_path / "m.engine.json").read_text())
    assert meta == res.provenance
    assert meta["tf32"] is False and meta["strongly_typed"] is True
    assert meta["builder_config"]["workspace_bytes"] == int(1.5 * 2**30)
    assert meta["builder_config"]["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert meta["builder"] == "tensorrt" and meta["builder_version"] == "10.12.0.36"
    assert meta["verification"] is None and "not run" in meta["verification_skipped"]


def test_defaults_leave_tensorrt_its_own(fake, files, tmp_path):
    """Without the options: no pool limit, no level, hardware NONE, no timing cache."""
    vt.build_engine(files["static"], tmp_path / "m.engine", vt.BuildOptions())
    _, cfg = only("CreateConfig")
    assert cfg["tf32"] is False
    assert cfg["memory_pool_limits"] is None and cfg["builder_optimization_level"] is None
    assert cfg["hardware_compatibility_level"] is None and cfg["load_timing_cache"] is None
    assert only("Profile.add")[1]["max"] == (1, 3, IMG, IMG)
    assert only("EngineBytesFromNetwork")[1]["save_timing_cache"] is None


def test_version_compatible_engine_recorded_and_named_for_triton(fake, files, tmp_path):
    """--version-compatible / --exclude-lean-runtime reach Polygraphy's CreateConfig
    (version_compatible, exclude_lean_runtime), TensorRT's config flags are read back into the
    provenance, and info/triton name what serves the engine: its TensorRT (10.12.0.36, the
    fake's) or later, the table's containers that carry one (only 10.13.x here: 25.11, 25.12)
    and the tritonserver flag. Without the options: neither flag, exact version, no flag."""
    from vnexport.stages import info
    from vnexport.stages import triton as triton_stage
    from vnexport.stages.common import Log

    options = vt.BuildOptions(min_batch=1, opt_batch=2, max_batch=4, builder="tensorrt",
                              version_compatible=True, exclude_lean_runtime=True)
    src = shutil.copy(files["dynamic"], tmp_path / "d.onnx")  # triton reads it beside the engine
    res = vt.build_engine(src, tmp_path / "vc.engine", options)
    _, cfg = only("CreateConfig")
    assert cfg["version_compatible"] is True and cfg["exclude_lean_runtime"] is True
    meta = json.loads((tmp_path / "vc.engine.json").read_text())
    assert meta["version_compatible"] is True and meta["exclude_lean_runtime"] is True
    assert meta["builder_config"]["version_compatible"] is True
    assert "or a later one (version-compatible)" in meta["targets"]
    text = info.run_engine(tmp_path / "vc.engine").lines()
    assert "needs       TensorRT 10.12.0.36 or a later TensorRT 10.x (version-compatible)" in text
    assert any(ln.startswith("triton      containers 25.11, 25.12 ") for ln in text), text
    assert any("--backend-config=tensorrt,version-compatible=true" in ln for ln in text)
    notes: list[str] = []
    r = triton_stage.run(triton_stage.TritonOptions((tmp_path / "vc.engine",),
                                                    tmp_path / "repo"),
                         Log(echo=lambda s: None, note=notes.append))
    serving = r.to_dict()["models"][0]["serving"]
    assert serving["triton_releases"] == ["25.11", "25.12"] and serving["version_compatible"]
    assert any("version-compatible=true" in n for n in notes)
    shutil.copy(files["static"], tmp_path / "s2.onnx")
    vt.build_engine(tmp_path / "s2.onnx", tmp_path / "plain.engine", vt.BuildOptions())
    plain = json.loads((tmp_path / "plain.engine.json").read_text())
    assert plain["version_compatible"] is False and plain["exclude_lean_runtime"] is False
    text = info.run_engine(tmp_path / "plain.engine").lines()
    assert "needs       TensorRT 10.12.0.36 exactly (not version-compatible)" in text
    assert not any("version-compatible=true" in ln for ln in text)
    assert any("no container in vnexport's table carries it" in ln for ln in text)
    assert res.provenance == meta


def test_timing_cache_loaded_on_the_second_build(fake, files, tmp_path):
    cache = tmp_path / "t.cache"
    options = vt.BuildOptions(timing_cache=cache)
    vt.build_engine(files["static"], tmp_path / "a.engine", options)
    assert cache.is_file()  # written by the (fake) EngineBytesFromNetwork it was handed to
    vt.build_engine(files["static"], tmp_path / "b.engine", options)
    loads = [kw["load_timing_cache"] for _, kw in fpg.calls("CreateConfig")]
    assert loads == [None, str(cache)]


# ------------------------------------------------------------------------------------------
# running: chunks, padding, deserialize failures, latency


def test_run_engine_chunks_and_pads(fake, files, model, tmp_path):
    x = random_inputs(SMALL, 5, IMG, seed=2)
    ref = run_torch(model, x)  # the training form: the independent path
    vt.build_engine(files["dynamic"], tmp_path / "d.engine",
                    vt.BuildOptions(min_batch=2, opt_batch=2, max_batch=4))
    out = vt.run_engine(tmp_path / "d.engine", x)
    assert [b for b, _ in fpg.STATE["infer_batches"]] == [4, 2]  # 4, then 1 padded to min 2
    assert out.shape == (5, 10) and compare(ref, out, FP32).passed
    fpg.STATE["infer_batches"].clear()
    vt.build_engine(files["static"], tmp_path / "s.engine", vt.BuildOptions())
    out = vt.run_engine(tmp_path / "s.engine", x[:3])
    assert [b for b, _ in fpg.STATE["infer_batches"]] == [1, 1, 1]
    assert compare(ref[:3], out, FP32).passed
    assert {d for _, d in fpg.STATE["infer_batches"]} == {"float32"}


def test_deserialize_failure_says_why(fake, tmp_path, monkeypatch):
    bad = tmp_path / "other.engine"
    bad.write_bytes(b"a plan from another TensorRT")
    with pytest.raises(VnexportError, match="another TensorRT version") as e:
        vt.run_engine(bad, np.zeros((1, 3, IMG, IMG), np.float32))
    assert e.value.exit_code == 2

    def no_gpu(ordinal=0):
        raise MissingRuntimeError("no CUDA GPU: the NVIDIA driver (libcuda.so.1) is not present")

    monkeypatch.setattr(vt.runtime, "gpu_info", no_gpu)
    with pytest.raises(MissingRuntimeError) as e:
        vt.run_engine(bad, np.zeros((1, 3, IMG, IMG), np.float32))
    assert "no CUDA GPU" in str(e.value) and "another" not in str(e.value)
    with pytest.raises(MissingRuntimeError, match="no CUDA GPU"):
        vt._engine_from_bytes(bad.read_bytes(), bad)


def test_measure_latency_shapes_and_iterations(fake, files, tmp_path):
    vt.build_engine(files["dynamic"], tmp_path / "d.engine",
                    vt.BuildOptions(min_batch=1, opt_batch=4, max_batch=8))
    fpg.CALLS.clear()
    r = vt.measure_latency(tmp_path / "d.engine", 4, iters=6, warmup=3)
    assert fpg.STATE["executions"] == 9 and r["batch"] == 4
    assert [a for a, _ in fpg.calls("IExecutionContext.set_input_shape")] == \
        [("input", (4, 3, IMG, IMG))]
    assert [a[0] for a, _ in fpg.calls("IExecutionContext.set_tensor_address")] == \
        ["input", "logits"]
    shapes = [kw["shape"] for _, kw in fpg.calls("cuda.DeviceArray")]
    assert shapes == [(4, 3, IMG, IMG), (4, 10)]
    assert vt.measure_latency(tmp_path / "d.engine", 16, iters=1, warmup=0) == \
        {"batch": 16, "skipped": "profile allows batch 1..8"}


# ------------------------------------------------------------------------------------------
# API drift: every Polygraphy call vnexport.trt makes binds the installed Polygraphy


def _real_polygraphy() -> dict:
    """The installed Polygraphy's callables under the fakes' names (loaded for TensorRT-RTX
    where tensorrt_rtx is installed, else for TensorRT: the signatures are the same)."""
    builder = "tensorrt-rtx" if vt.builder_installed("tensorrt-rtx") else "tensorrt"
    vt.load_polygraphy(builder)
    trt_be = importlib.import_module("polygraphy.backend.trt")
    common = importlib.import_module("polygraphy.backend.common")
    cuda = importlib.import_module("polygraphy.cuda")
    dtype = importlib.import_module("polygraphy.datatype").DataType
    return {
        "NetworkFromOnnxPath": trt_be.NetworkFromOnnxPath, "CreateConfig": trt_be.CreateConfig,
        "Profile": trt_be.Profile, "Profile.add": trt_be.Profile.add,
        "EngineBytesFromNetwork": trt_be.EngineBytesFromNetwork,
        "EngineFromBytes": trt_be.EngineFromBytes, "TrtRunner": trt_be.TrtRunner,
        "TrtRunner.get_input_metadata": trt_be.TrtRunner.get_input_metadata,
        "TrtRunner.infer": trt_be.TrtRunner.infer, "BytesFromPath": common.BytesFromPath,
        "DataType.to_dtype": dtype.to_dtype, "DataType.from_dtype": dtype.from_dtype,
        "cuda.Stream": cuda.Stream, "cuda.DeviceArray": cuda.DeviceArray,
        "DeviceArray.copy_from": cuda.DeviceArray.copy_from,
    }


METHODS = {"Profile.add", "TrtRunner.get_input_metadata", "TrtRunner.infer",
           "DeviceArray.copy_from"}
NOT_CALLS = {"PolygraphyException", "G_LOGGER", "cuda"}  # names used, not called


def _bind(real: dict, name: str, args: tuple, kwargs: dict) -> None:
    """Bind a recorded call; keyword arguments a **kwargs would swallow are bound against the
    base class they are handed to (CreateConfig -> _CreateConfigCommon.__init__)."""
    target = real[name]
    sig = inspect.signature(target)
    swallowed = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    own = {k: v for k, v in kwargs.items() if k in sig.parameters or not swallowed}
    sig.bind(*((None, *args) if name in METHODS else args), **own)
    rest = {k: v for k, v in kwargs.items() if k not in own}
    if rest:  # only where the signature has **kwargs
        assert isinstance(target, type), (name, rest)
        base = target.__mro__[1].__init__
        assert base is not object.__init__, (name, rest)
        inspect.signature(base).bind(None, **rest)


def test_every_polygraphy_call_binds_the_installed_signature(monkeypatch, model, files,
                                                             tmp_path):
    pytest.importorskip("polygraphy", reason="Polygraphy is not installed (vnexport[trt-rtx])")
    real = _real_polygraphy()
    fpg.install(monkeypatch)
    monkeypatch.setattr(vt.runtime, "gpu_info", lambda ordinal=0: dict(FAKE_GPU))
    options = vt.BuildOptions(min_batch=1, opt_batch=2, max_batch=4, workspace_gib=1,
                              builder_opt_level=1, hardware_compat="same-cc",
                              timing_cache=tmp_path / "t.cache", version_compatible=True,
                              exclude_lean_runtime=True)
    x = random_inputs(model.cfg, 3, IMG, seed=5)
    ref = run_torch(model, x)  # the training form: the engine is judged against it
    for _ in range(2):  # the second build loads the timing cache
        res = vt.build_engine(files["dynamic"], tmp_path / "m.engine", options,
                              check=lambda run: compare(ref, run(x.numpy()), FP32))
        assert res.comparison.passed and res.comparison.n == 3, res.comparison.failures
        (tmp_path / "m.engine").unlink(missing_ok=True)
        vt.provenance_path(tmp_path / "m.engine").unlink(missing_ok=True)
    vt.build_engine(files["dynamic"], tmp_path / "m.engine", options)
    vt.run_engine(tmp_path / "m.engine", np.zeros((5, 3, IMG, IMG), np.float32))
    vt.measure_latency(tmp_path / "m.engine", 2, iters=1, warmup=0)
    seen = set()
    for name, args, kwargs in fpg.CALLS:
        if name not in real:
            continue  # TensorRT's own objects (IBuilderConfig, IExecutionContext)
        _bind(real, name, args, kwargs)  # TypeError on drift
        seen.add(name)
    assert seen == set(real), set(real) - seen
    # and nothing imported from polygraphy in the trt package escapes this list
    trees = [ast.parse(p.read_text()) for p in (ROOT / "vnexport" / "trt").glob("*.py")]
    imported = {a.name for tree in trees for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("polygraphy") for a in node.names}
    covered = {n.split(".")[0] for n in seen} | NOT_CALLS | {"CreateConfigRTX"}
    assert imported <= covered, imported - covered


def test_create_config_rtx_arguments_bind(monkeypatch):
    """The TensorRT-RTX config call: its own arguments against CreateConfigRTX, the rest
    against the common config it passes them on to (its **kwargs would accept anything)."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt_rtx is not installed "
                        "(pip install 'vnexport[trt-rtx]')")
    vt.load_polygraphy("tensorrt-rtx")
    from polygraphy.backend.tensorrt_rtx import config as rtx_config

    trtx = importlib.import_module("tensorrt_rtx")
    profile = vt.Profile("input", (1, 3, 8, 8), (2, 3, 8, 8), (4, 3, 8, 8))
    options = vt.BuildOptions(compute_capabilities=("8.0",), workspace_gib=1,
                              builder_opt_level=2, builder="tensorrt-rtx")
    loader = vt._config_loader("tensorrt-rtx", trtx, profile, options)
    assert isinstance(loader, rtx_config.CreateConfigRTX)
    assert loader.compute_capabilities == [(8, 0)] and loader.builder_optimization_level == 2
    common = inspect.signature(rtx_config._CreateConfigCommon.__init__)
    assert {"profiles", "memory_pool_limits", "builder_optimization_level"} <= \
        set(common.parameters)
    assert "compute_capabilities" in inspect.signature(rtx_config.CreateConfigRTX).parameters


# ------------------------------------------------------------------------------------------
# the other stages' entry points for engines (verify's runner, bench's latency)


def test_engine_runner_and_bench_latency(fake, files, model, tmp_path):
    from vnexport.bench import Latency, engine_latency
    from vnexport.runners import runner_from_path

    engine = tmp_path / "m.engine"
    vt.build_engine(files["dynamic"], engine, vt.BuildOptions(max_batch=4))
    runner = runner_from_path(engine)
    assert runner.kind == "engine" and runner.precision == "fp32" and not runner.notes
    assert runner.backend == "TensorRT 10.12.0.36"
    x = random_inputs(SMALL, 6, IMG, seed=9)
    assert compare(run_torch(model, x), runner(x.numpy()), FP32).passed
    lat = engine_latency(engine, 2, runs=4, warmup=1)
    assert isinstance(lat, Latency) and lat.batch == 2 and fpg.STATE["executions"] == 5
    assert engine_latency(engine, 8, runs=1, warmup=0) == "profile allows batch 1..4"
    vt.provenance_path(engine).unlink()  # without provenance: judged fp32, and said so
    runner = runner_from_path(engine)
    assert runner.precision == "fp32" and "no provenance file" in runner.notes[0]


def test_engine_io_read_from_the_engine(fake, files, tmp_path):
    engine = tmp_path / "m.engine"
    vt.build_engine(files["dynamic"], engine, vt.BuildOptions(min_batch=1, opt_batch=2,
                                                              max_batch=4))
    io = vt.engine_io(engine)["tensors"]
    assert [(t["name"], t["mode"], t["shape"]) for t in io] == \
        [("input", "input", [-1, 3, IMG, IMG]), ("logits", "output", [-1, 10])]
    # the profile the build handed Polygraphy, as the (fake) engine kept it
    assert io[0]["profile"] == {"min": [1, 3, IMG, IMG], "opt": [2, 3, IMG, IMG],
                                "max": [4, 3, IMG, IMG]}
