"""The ``vnexport triton`` stage called directly (vnexport/stages/triton.py): the model
repositories it writes, every kind of config parsed as Triton's own ``ModelConfig``
(independently of vnexport's check), and its refusals (nothing written).

No server here (tests/test_serve.py serves the Python-backend and ensemble configs for real;
the tensorrt_plan and onnxruntime_onnx configs are only parsed: the pytriton wheel's server has
neither backend). The engines are test doubles: see tests/triton_helpers.py.
"""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from triton_helpers import CLASSES, IMG, dtype, make_files, parse
from vnexport import triton as T
from vnexport.checkpoint import load_checkpoint
from vnexport.errors import VnexportError
from vnexport.onnx_export import export_onnx
from vnexport.stages import triton as stage
from vnexport.stages.common import Log

pytest.importorskip("tritonclient.grpc.model_config_pb2",
                    reason="tritonclient not installed (the serve extra)")
KIND_CPU, KIND_GPU = 2, 1  # ModelInstanceGroup.Kind


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("triton"))


def run(*artifacts, log=None, **options):
    return stage.run(stage.TritonOptions(artifacts=tuple(artifacts), **options),
                     log or Log(echo=lambda s: None, note=lambda s: None))


def test_onnxruntime_config(files, tmp_path):
    repo = tmp_path / "repo"
    r = run(files["onnx"], output=repo, name="small", preferred_batch="4,8",
            max_queue_delay_us=250, instances=2, kind="cpu", labels=files["labels"])
    cfg = parse(repo / "small" / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("small", "onnxruntime_onnx", 16)
    (i,), (o,) = cfg.input, cfg.output
    assert (i.name, dtype(i), list(i.dims)) == ("input", "TYPE_FP32", [3, IMG, IMG])
    assert (o.name, dtype(o), list(o.dims)) == ("logits", "TYPE_FP32", [CLASSES])
    assert o.label_filename == "labels.txt"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    (g,) = cfg.instance_group
    assert (g.count, g.kind) == (2, KIND_CPU)
    assert (repo / "small" / "1" / "model.onnx").read_bytes() == files["onnx"].read_bytes()
    labels = (repo / "small" / "labels.txt").read_text().splitlines()
    assert labels == [f"class {k}" for k in range(CLASSES)]
    assert sorted(p.name for p in repo.iterdir()) == ["small"]  # no staging left behind
    (m,) = r.to_dict()["models"]
    assert (m["platform"], m["max_batch_size"], m["artifact"]["classes"]) == \
        ("onnxruntime_onnx", 16, CLASSES)
    assert r.exit_code == 0 and r.lines() == [f"wrote {repo / 'small'}: onnxruntime_onnx, "
                                              f"max_batch_size 16 ({files['onnx']})"]


def test_static_batch_file_gets_no_batching(files, tmp_path):
    out: list[str] = []
    run(files["static"], output=tmp_path / "repo", log=Log(echo=out.append, note=out.append))
    assert any("static batch of 1" in line and "--dynamic-batch" in line for line in out)
    cfg = parse(tmp_path / "repo" / "static" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, 3, IMG, IMG]
    assert list(cfg.output[0].dims) == [1, CLASSES]


def test_tensorrt_plan_config(files, tmp_path):
    """An engine (a test double) gets tensorrt_plan, KIND_GPU and max_batch_size from its
    provenance's profile (8), not the ONNX default (16); one from a static file gets 0."""
    repo = tmp_path / "repo"
    r = run(files["engine"], files["engine_static"], output=repo)
    cfg = parse(repo / "small" / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 8)
    assert cfg.instance_group[0].kind == KIND_GPU
    assert list(cfg.input[0].dims) == [3, IMG, IMG] and list(cfg.output[0].dims) == [CLASSES]
    assert (repo / "small" / "1" / "model.plan").read_bytes() == files["engine"].read_bytes()
    fixed = parse(repo / "fixed" / "config.pbtxt")
    assert (fixed.platform, fixed.max_batch_size) == ("tensorrt_plan", 0)
    assert list(fixed.input[0].dims) == [1, 3, IMG, IMG]
    assert r.to_dict()["models"][0]["artifact"]["precision"] == "fp16"  # from the provenance
    with pytest.raises(VnexportError, match="profile starts at batch 2.*--min-batch 1") as e:
        run(files["engine_min2"], output=tmp_path / "other")
    assert "min2.engine" in str(e.value)


def test_python_backend_preprocess_and_ensemble_configs(files, tmp_path):
    repo = tmp_path / "repo"
    run(files["onnx"], output=repo, name="small", backend="python", preprocess=True,
        labels=files["labels"], max_batch=8)
    assert sorted(p.name for p in repo.iterdir()) == ["small", "small_ensemble",
                                                      "small_preprocess"]
    cls = parse(repo / "small" / "config.pbtxt")
    assert (cls.backend, cls.platform, cls.max_batch_size) == ("python", "", 8)
    assert cls.parameters["onnx_file"].string_value == "model.onnx"
    assert (repo / "small" / "1" / "model.py").read_text().startswith('"""Triton Python-backend')
    pre = parse(repo / "small_preprocess" / "config.pbtxt")
    assert (pre.backend, pre.max_batch_size) == ("python", 8)
    assert (pre.input[0].name, dtype(pre.input[0]), list(pre.input[0].dims)) == \
        ("IMAGE", "TYPE_STRING", [1])
    assert (pre.output[0].name, list(pre.output[0].dims)) == ("input", [3, IMG, IMG])
    meta = {p.key: p.value for p in onnx.load(str(files["onnx"])).metadata_props}
    assert json.loads(pre.parameters["mean"].string_value) == json.loads(meta["mean"])
    assert json.loads(pre.parameters["std"].string_value) == json.loads(meta["std"])
    assert pre.parameters["img_size"].string_value == str(IMG)
    ens = parse(repo / "small_ensemble" / "config.pbtxt")
    assert (ens.platform, ens.max_batch_size) == ("ensemble", 8)
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["small_preprocess", "small"]
    assert dict(steps[0].output_map) == {"input": "preprocessed"}
    assert dict(steps[1].input_map) == {"input": "preprocessed"}
    assert dict(steps[1].output_map) == {"logits": "logits"}
    assert ens.output[0].label_filename == "labels.txt"
    assert (repo / "small_ensemble" / "1").is_dir()


def test_fp16_file_precision_and_dtypes(files, tmp_path):
    path = tmp_path / "fp16.onnx"
    export_onnx(load_checkpoint(files["training"], strides=(2, 2, 1)), path, img_size=IMG,
                dynamic_batch=True, precision="fp16", fp16_io=True)
    facts = T.read_facts(path)
    assert facts.precision == "fp16"
    assert (facts.input_dtype, facts.output_dtype) == ("TYPE_FP16", "TYPE_FP16")
    run(path, output=tmp_path / "repo", backend="python")
    cfg = parse(tmp_path / "repo" / "fp16" / "config.pbtxt")
    assert dtype(cfg.input[0]) == "TYPE_FP16" and dtype(cfg.output[0]) == "TYPE_FP16"
    assert cfg.parameters["precision"].string_value == "fp16"


def test_labels_count_must_match(files, tmp_path):
    bad = tmp_path / "labels.txt"
    bad.write_text("".join(f"c{i}\n" for i in range(CLASSES - 1)))
    with pytest.raises(VnexportError, match=f"{CLASSES - 1} labels, the model has "
                                            f"{CLASSES} classes") as e:
        run(files["onnx"], output=tmp_path / "repo", labels=bad)
    assert e.value.path == str(bad)
    bad.write_text("a\n\nb\n")
    with pytest.raises(VnexportError, match="line 2 is empty"):
        run(files["onnx"], output=tmp_path / "repo", labels=bad)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("options, message", [
    ({"preferred_batch": "4,32"}, "--preferred-batch 32 is outside 1..16"),
    ({"preferred_batch": "four"}, "comma-separated integers"),
    ({"instances": 0}, "--instances must be >= 1"),
    ({"version": 0}, "--version must be >= 1"),
    ({"max_queue_delay_us": -1}, "--max-queue-delay-us must be >= 0"),
    ({"name": "../escape"}, "--name '../escape'"),
    ({"max_batch": 0}, "--max-batch 0 is outside"),
    ({"kind": "tpu"}, "--kind must be one of auto, cpu, gpu"),
])
def test_bad_options(files, tmp_path, options, message):
    with pytest.raises(VnexportError, match=message.replace(".", r"\.")):
        run(files["onnx"], output=tmp_path / "repo", **options)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("artifact, options, fragments", [
    ("static", {"max_batch": 4}, ("static.onnx", "static batch of 1")),
    ("static", {"preferred_batch": "2"}, ("static.onnx", "needs batching")),
    ("engine", {"kind": "cpu"}, ("small.engine", "runs on a GPU")),
    ("engine", {"backend": "python"}, ("small.engine", "runs on a GPU")),
    ("engine", {"max_batch": 9}, ("small.engine", "--max-batch 9 is outside 1..8")),
])
def test_refusals_naming_the_file(files, tmp_path, artifact, options, fragments):
    with pytest.raises(VnexportError) as e:
        run(files[artifact], output=tmp_path / "repo", **options)
    for f in fragments:
        assert f in str(e.value)
    assert not (tmp_path / "repo").exists()


def test_unreadable_artifacts(files, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not protobuf at all" * 10)
    lone = tmp_path / "lone.engine"
    lone.write_bytes(b"plan")
    for path, message in [(junk, "not a readable ONNX file"),
                          (tmp_path / "missing.onnx", "no such file"),
                          (lone, "no provenance file lone.engine.json")]:
        with pytest.raises(VnexportError, match=message) as e:
            run(path, output=tmp_path / "repo")
        assert e.value.path == str(path)
    with pytest.raises(VnexportError, match="--name names one model"):
        run(files["onnx"], files["static"], output=tmp_path / "repo", name="x")
    assert not (tmp_path / "repo").exists()


def test_preprocess_needs_mean_std_metadata(files, tmp_path):
    model = onnx.load(str(files["onnx"]))
    kept = [p for p in model.metadata_props if p.key not in ("mean", "std")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    with pytest.raises(VnexportError, match="mean/std") as e:
        run(path, output=tmp_path / "repo", preprocess=True)
    assert "bare.onnx" in str(e.value)


def test_existing_folder_needs_force_and_nothing_partial(files, tmp_path):
    repo = tmp_path / "repo"
    run(files["onnx"], output=repo, name="small")
    run(files["static"], output=repo)
    config = (repo / "small" / "config.pbtxt").read_text()
    # two models, the second of which exists: refused before anything is written
    fresh = tmp_path / "fresh.onnx"
    shutil.copy(files["onnx"], fresh)
    with pytest.raises(VnexportError, match="'static' exists; pass --force"):
        run(fresh, files["static"], output=repo)
    assert not (repo / "fresh").exists()
    with pytest.raises(VnexportError, match="'small' exists; pass --force"):
        run(files["onnx"], output=repo, name="small", max_batch=4)
    assert (repo / "small" / "config.pbtxt").read_text() == config
    run(files["onnx"], output=repo, name="small", max_batch=4, force=True)
    assert parse(repo / "small" / "config.pbtxt").max_batch_size == 4
    assert sorted(p.name for p in repo.iterdir()) == ["small", "static"]


def test_a_bad_artifact_among_good_ones_writes_nothing(files, tmp_path):
    """All or nothing: the second artifact is refused, so the first one's folder is not
    written either, and no staging folder is left."""
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    repo = tmp_path / "repo"
    with pytest.raises(VnexportError, match="bad.onnx"):
        run(files["onnx"], bad, output=repo)
    assert not repo.exists()
    repo.mkdir()
    with pytest.raises(VnexportError, match="share the folder"):
        run(files["onnx"], files["onnx"], output=repo)
    assert list(repo.iterdir()) == []


def _accelerator(cfg):
    (a,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    return a.name, dict(a.parameters)


def _nodes(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


@pytest.mark.parametrize("precision, mode", [("fp32", "FP32"), ("fp16", "FP16"),
                                             ("int8", "INT8")])
def test_tensorrt_accelerator_config(files, tmp_path, precision, mode):
    """--accelerator tensorrt: onnxruntime_onnx on KIND_GPU with ONNX Runtime's TensorRT
    provider for the file's precision (read here from the graph itself: Q/DQ nodes for int8,
    float16 initializers for fp16), engine cache on, a workspace limit and one profile
    1..max_batch on the file's own input (read with the onnx library)."""
    path = tmp_path / f"{precision}.onnx"
    export_onnx(load_checkpoint(files["training"], strides=(2, 2, 1)), path, img_size=IMG,
                dynamic_batch=True, max_batch=8, precision=precision)
    proto = onnx.load(str(path))
    if precision == "int8":
        assert {"QuantizeLinear", "DequantizeLinear"} <= _nodes(path)
    elif precision == "fp16":
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    else:
        assert not _nodes(path) & {"QuantizeLinear", "DequantizeLinear"}
        assert all(t.data_type == onnx.TensorProto.FLOAT for t in proto.graph.initializer)
    inp = proto.graph.input[0]
    c, h, w = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
    repo = tmp_path / "repo"
    r = run(path, output=repo, accelerator="tensorrt", workspace=0.5, preferred_batch="4")
    cfg = parse(repo / precision / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("onnxruntime_onnx", 8)
    out = proto.graph.output[0]
    (i,), (o,) = cfg.input, cfg.output
    assert (i.name, list(i.dims)) == (inp.name, [c, h, w])
    assert (o.name, list(o.dims)) == (out.name, [out.type.tensor_type.shape.dim[1].dim_value])
    np_in = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type).name
    assert dtype(i) == {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}[np_in]
    assert [g.kind for g in cfg.instance_group] == [KIND_GPU]
    name, params = _accelerator(cfg)
    shape = f"{c}x{h}x{w}"
    assert name == "tensorrt" and params == {
        "precision_mode": mode, "max_workspace_size_bytes": str(1 << 29),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": f"/tmp/vnexport-trt-cache/{precision}",
        "trt_profile_min_shapes": f"{inp.name}:1x{shape}",
        "trt_profile_opt_shapes": f"{inp.name}:4x{shape}",
        "trt_profile_max_shapes": f"{inp.name}:8x{shape}"}
    assert "int8_calibration_table_name" not in params  # Q/DQ scales are in the graph
    (m,) = r.to_dict()["models"]
    assert (m["accelerator"], m["precision_mode"]) == ("tensorrt", mode)
    assert f"onnxruntime_onnx + tensorrt ({mode}" in r.lines()[0]


def test_tensorrt_accelerator_static_file_and_cache_path(files, tmp_path):
    repo = tmp_path / "repo"
    run(files["static"], output=repo, accelerator="tensorrt", engine_cache="/var/cache/trt")
    cfg = parse(repo / "static" / "config.pbtxt")
    name, params = _accelerator(cfg)
    assert cfg.max_batch_size == 0 and params["trt_engine_cache_path"] == "/var/cache/trt"
    assert params["max_workspace_size_bytes"] == str(1 << 30)
    assert not any(k.startswith("trt_profile") for k in params)  # a static input: no profile


@pytest.mark.parametrize("artifact, options, message", [
    ("engine", {"accelerator": "tensorrt"}, "not an engine"),
    ("onnx", {"accelerator": "tensorrt", "kind": "cpu"}, "--kind cpu"),
    ("onnx", {"accelerator": "tensorrt", "backend": "python"}, "--backend python"),
    ("onnx", {"workspace": 2.0}, "give it too"),
    ("onnx", {"accelerator": "tensorrt", "workspace": 0.0}, "--workspace"),
])
def test_tensorrt_accelerator_refusals(files, tmp_path, artifact, options, message):
    with pytest.raises(VnexportError, match=message):
        run(files[artifact], output=tmp_path / "repo", **options)
    assert not (tmp_path / "repo").exists()


def test_check_config_catches_a_wrong_accelerator(files):
    facts = T.read_facts(files["onnx"])
    opts = T.ServingOptions(name="m", accelerator="tensorrt")
    good = T.model_config(facts, opts)
    T.check_config(good, facts, opts)
    for old, new in [('"FP32"', '"FP16"'), ('"trt_engine_cache_enable" value: "1"',
                                           '"trt_engine_cache_enable" value: "0"'),
                     ("KIND_GPU", "KIND_CPU"), ('name: "tensorrt"', 'name: "cuda"')]:
        assert old in good
        with pytest.raises(VnexportError, match="disagrees"):
            T.check_config(good.replace(old, new, 1), facts, opts)
    with pytest.raises(VnexportError, match="unasked"):
        T.check_config(good, facts, T.ServingOptions(name="m", kind="gpu"))
