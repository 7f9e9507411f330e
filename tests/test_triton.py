"""``vnexport triton``: the model repositories it writes, every kind of config parsed as Triton's
own ``ModelConfig`` (tritonclient's protobuf, independently of vnexport's check), and the
refusals (one line, exit 2, nothing written).

No server here (see test_serve.py). The TensorRT engine below is a TEST DOUBLE: a few bytes
standing in for a plan (no TensorRT on these machines), with the provenance JSON made by
``vnexport.trt.make_provenance`` and its real source ONNX file beside it; only its config is
checked, Triton's TensorRT backend never reads it.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from artifacts import CONFIG, IMG, export_onnx_file, make_small_run
from vnexport import triton as T
from vnexport import triton_server as S
from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.onnx_export import export_onnx
from vnexport.errors import VnexportError
from vnexport.trt import BuildOptions, Profile, make_provenance, provenance_path

text_format = pytest.importorskip("google.protobuf.text_format",
                                  reason="protobuf (tritonclient's dependency) not installed")
model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient not installed (the serve extra)")

runner = CliRunner()
CLASSES = CONFIG.num_classes


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The small model as a dynamic-batch ONNX file, a static batch-1 one, and an engine
    test double (plan bytes + real provenance + source ONNX)."""
    d = tmp_path_factory.mktemp("triton")
    run = make_small_run(d)
    static = export_onnx_file(run.training, d / "static.onnx", batch=1)
    engine = d / "small.engine"
    engine.write_bytes(b"TEST DOUBLE: not a TensorRT plan\n")
    shutil.copy(run.onnx, d / "small_src.onnx")
    profile = Profile("input", (1, 3, IMG, IMG), (4, 3, IMG, IMG), (8, 3, IMG, IMG))
    prov = make_provenance(engine_path=engine, engine_sha256=None,
                           onnx_path=d / "small_src.onnx", onnx_sha256="0" * 64,
                           precision="fp16", profile=profile, options=BuildOptions(),
                           runtime={}, build_seconds=None, comparison=None, reference=None)
    provenance_path(engine).write_text(json.dumps(prov))
    for name, src, prof in [
            ("min2", d / "small_src.onnx", Profile("input", (2, 3, IMG, IMG), (4, 3, IMG, IMG),
                                                   (8, 3, IMG, IMG))),
            ("static", static, Profile("input", (1, 3, IMG, IMG), (1, 3, IMG, IMG),
                                       (1, 3, IMG, IMG)))]:
        other = d / f"{name}.engine"
        other.write_bytes(b"TEST DOUBLE: not a TensorRT plan\n")
        provenance_path(other).write_text(json.dumps(make_provenance(
            engine_path=other, engine_sha256=None, onnx_path=src, onnx_sha256="0" * 64,
            precision="fp32", profile=prof, options=BuildOptions(), runtime={},
            build_seconds=None, comparison=None, reference=None)))
    labels = d / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(CLASSES)))
    return {"onnx": run.onnx, "static": static, "engine": engine, "labels": labels, "dir": d}


def parse(path: Path):
    """config.pbtxt as Triton's ModelConfig, parsed here, not by the code under test."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def dtype(t) -> str:
    return model_config_pb2.DataType.Name(t.data_type)


def cli(*args: str):
    return runner.invoke(app, ["triton", *map(str, args)])


def assert_one_line_error(r, *fragments: str) -> None:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


def test_onnxruntime_config(files, tmp_path):
    repo = tmp_path / "repo"
    r = cli(files["onnx"], "-o", repo, "--name", "small", "--preferred-batch", "4,8",
            "--max-queue-delay-us", "250", "--instances", "2", "--kind", "cpu",
            "--labels", files["labels"])
    assert r.exit_code == 0, r.output
    cfg = parse(repo / "small" / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("small", "onnxruntime_onnx", 16)
    (i,), (o,) = cfg.input, cfg.output
    assert (i.name, dtype(i), list(i.dims)) == ("input", "TYPE_FP32", [3, IMG, IMG])
    assert (o.name, dtype(o), list(o.dims)) == ("logits", "TYPE_FP32", [CLASSES])
    assert o.label_filename == "labels.txt"
    assert list(cfg.dynamic_batching.preferred_batch_size) == [4, 8]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 250
    (g,) = cfg.instance_group
    assert g.count == 2 and g.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (repo / "small" / "1" / "model.onnx").read_bytes() == files["onnx"].read_bytes()
    labels = (repo / "small" / "labels.txt").read_text().splitlines()
    assert labels == [f"class {k}" for k in range(CLASSES)]
    assert sorted(p.name for p in repo.iterdir()) == ["small"]  # no staging left behind


def test_static_batch_file_gets_no_batching(files, tmp_path):
    r = cli(files["static"], "-o", tmp_path / "repo")
    assert r.exit_code == 0, r.output
    assert "static batch of 1" in r.output and "--dynamic-batch" in r.output
    cfg = parse(tmp_path / "repo" / "static" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [1, 3, IMG, IMG]
    assert list(cfg.output[0].dims) == [1, CLASSES]


def test_tensorrt_plan_config(files, tmp_path):
    """The engine (a test double) gets tensorrt_plan, KIND_GPU, and max_batch_size from its
    provenance's profile (8), not the ONNX default (16)."""
    repo = tmp_path / "repo"
    r = cli(files["engine"], "-o", repo, "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    cfg = parse(repo / "small" / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 8)
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(cfg.input[0].dims) == [3, IMG, IMG] and list(cfg.output[0].dims) == [CLASSES]
    assert (repo / "small" / "1" / "model.plan").read_bytes() == files["engine"].read_bytes()
    r = cli(files["dir"] / "static.engine", "-o", repo)
    assert r.exit_code == 0, r.output
    cfg = parse(repo / "static" / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 0)
    assert list(cfg.input[0].dims) == [1, 3, IMG, IMG]
    assert_one_line_error(cli(files["dir"] / "min2.engine", "-o", repo), "min2.engine",
                          "profile starts at batch 2", "--min-batch 1")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["models"][0]["platform"] == "tensorrt_plan"
    assert T.read_facts(files["engine"]).precision == "fp16"


def test_python_backend_preprocess_and_ensemble_configs(files, tmp_path):
    repo = tmp_path / "repo"
    r = cli(files["onnx"], "-o", repo, "--name", "small", "--backend", "python",
            "--preprocess", "--labels", files["labels"], "--max-batch", "8")
    assert r.exit_code == 0, r.output
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
    export_onnx(load_checkpoint(files["dir"] / "checkpoint-best.pth", strides=CONFIG.strides),
                path, img_size=IMG, dynamic_batch=True, precision="fp16", fp16_io=True)
    facts = T.read_facts(path)
    assert facts.precision == "fp16"
    assert (facts.input_dtype, facts.output_dtype) == ("TYPE_FP16", "TYPE_FP16")
    r = cli(path, "-o", tmp_path / "repo", "--backend", "python")
    assert r.exit_code == 0, r.output
    cfg = parse(tmp_path / "repo" / "fp16" / "config.pbtxt")
    assert dtype(cfg.input[0]) == "TYPE_FP16" and dtype(cfg.output[0]) == "TYPE_FP16"
    assert cfg.parameters["precision"].string_value == "fp16"


@pytest.mark.parametrize("change", ["dims", "max_batch", "dtype", "name", "output", "ensemble"])
def test_check_config_refuses_a_config_that_disagrees(files, change):
    """check_config is not a rubber stamp: each edit of a correct config is caught."""
    facts = T.read_facts(files["onnx"])
    opts = T.ServingOptions(name="small", preprocess=True)
    role = "ensemble" if change == "ensemble" else "classifier"
    good = T.ensemble_config(facts, opts) if role == "ensemble" else T.model_config(facts, opts)
    T.check_config(good, facts, opts, role)
    edits = {"dims": ("dims: [ 3, 32, 32 ]", "dims: [ 3, 32, 31 ]"),
             "max_batch": ("max_batch_size: 16", "max_batch_size: 32"),
             "dtype": ("data_type: TYPE_FP32", "data_type: TYPE_FP16"),
             "name": ('name: "small"', 'name: "other"'),
             "output": ('name: "logits"', 'name: "probs"'),
             "ensemble": ('model_name: "small_preprocess"', 'model_name: "other"')}
    old, new = edits[change]
    assert old in good
    with pytest.raises(VnexportError, match="disagrees with the artifact"):
        T.check_config(good.replace(old, new, 1), facts, opts, role)
    with pytest.raises(VnexportError, match="does not parse"):
        T.check_config(good.replace("input [", "input {", 1), facts, opts, role)


def test_labels_count_must_match(files, tmp_path):
    bad = tmp_path / "labels.txt"
    bad.write_text("".join(f"c{i}\n" for i in range(CLASSES - 1)))
    r = cli(files["onnx"], "-o", tmp_path / "repo", "--labels", bad)
    assert_one_line_error(r, "labels.txt", f"{CLASSES - 1} labels", f"{CLASSES} classes")
    assert not (tmp_path / "repo").exists()
    bad.write_text("a\n\nb\n")
    assert_one_line_error(cli(files["onnx"], "-o", tmp_path / "repo", "--labels", bad),
                          "line 2 is empty")


@pytest.mark.parametrize("args, fragment", [
    (["--preferred-batch", "4,32"], "--preferred-batch 32 is outside 1..16"),
    (["--preferred-batch", "four"], "comma-separated integers"),
    (["--instances", "0"], "--instances must be >= 1"),
    (["--version", "0"], "--version must be >= 1"),
    (["--max-queue-delay-us", "-1"], "--max-queue-delay-us must be >= 0"),
    (["--name", "../escape"], "--name '../escape'"),
    (["--max-batch", "0"], "--max-batch 0 is outside"),
])
def test_bad_options(files, tmp_path, args, fragment):
    r = cli(files["onnx"], "-o", tmp_path / "repo", *args)
    assert_one_line_error(r, fragment)
    assert not (tmp_path / "repo").exists()


def test_refusals_naming_the_file(files, tmp_path):
    repo = tmp_path / "repo"
    assert_one_line_error(cli(files["static"], "-o", repo, "--max-batch", "4"),
                          "static.onnx", "static batch of 1")
    assert_one_line_error(cli(files["static"], "-o", repo, "--preferred-batch", "2"),
                          "static.onnx", "needs batching")
    assert_one_line_error(cli(files["engine"], "-o", repo, "--kind", "cpu"),
                          "small.engine", "runs on a GPU")
    assert_one_line_error(cli(files["engine"], "-o", repo, "--max-batch", "9"),
                          "--max-batch 9 is outside 1..8")
    assert_one_line_error(cli(files["onnx"], files["static"], "-o", repo, "--name", "x"),
                          "--name names one model")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not protobuf at all" * 10)
    assert_one_line_error(cli(junk, "-o", repo), "junk.onnx", "not a readable ONNX file")
    assert_one_line_error(cli(tmp_path / "missing.onnx", "-o", repo), "missing.onnx",
                          "no such file")
    lone = tmp_path / "lone.engine"
    lone.write_bytes(b"plan")
    assert_one_line_error(cli(lone, "-o", repo), "lone.engine", "no provenance file")
    assert not repo.exists()


def test_preprocess_needs_mean_std_metadata(files, tmp_path):
    model = onnx.load(str(files["onnx"]))
    kept = [p for p in model.metadata_props if p.key not in ("mean", "std")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    assert_one_line_error(cli(path, "-o", tmp_path / "repo", "--preprocess"), "bare.onnx",
                          "mean/std")


def test_existing_folder_needs_force_and_nothing_partial(files, tmp_path):
    repo = tmp_path / "repo"
    assert cli(files["onnx"], "-o", repo, "--name", "small").exit_code == 0
    config = (repo / "small" / "config.pbtxt").read_text()
    assert cli(files["static"], "-o", repo).exit_code == 0
    # two models, the second of which exists: refused before anything is written
    fresh = tmp_path / "fresh.onnx"
    shutil.copy(files["onnx"], fresh)
    r = cli(fresh, files["static"], "-o", repo)
    assert_one_line_error(r, "static", "exists; pass --force")
    assert not (repo / "fresh").exists()
    r = cli(files["onnx"], "-o", repo, "--name", "small", "--max-batch", "4")
    assert_one_line_error(r, "small", "exists; pass --force")
    assert (repo / "small" / "config.pbtxt").read_text() == config
    r = cli(files["onnx"], "-o", repo, "--name", "small", "--max-batch", "4", "--force")
    assert r.exit_code == 0, r.output
    assert parse(repo / "small" / "config.pbtxt").max_batch_size == 4
    assert sorted(p.name for p in repo.iterdir()) == ["small", "static"]


def test_a_bad_artifact_among_good_ones_writes_nothing(files, tmp_path):
    """All or nothing: the second artifact is refused, so the first one's folder is not
    written either, and no staging folder is left."""
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    repo = tmp_path / "repo"
    assert_one_line_error(cli(files["onnx"], bad, "-o", repo), "bad.onnx")
    assert not repo.exists()
    repo.mkdir()
    assert_one_line_error(cli(files["onnx"], files["onnx"], "-o", repo), "share the folder")
    assert list(repo.iterdir()) == []


def test_write_failure_leaves_nothing(files, tmp_path, monkeypatch):
    """A failure while copying (disk full, say) leaves the repository as it was."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "other").mkdir()
    facts = T.read_facts(files["onnx"])
    folders = T.model_folders(facts, T.ServingOptions(name="small", preprocess=True))

    def fail(src, dst, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(T.shutil, "copyfile", fail)
    with pytest.raises(VnexportError, match="No space left on device"):
        T.write_repository(repo, folders)
    assert sorted(p.name for p in repo.iterdir()) == ["other"]


# --------------------------------------------------------------------------------------------
# where the wheel's server cannot run: exit 3, one line saying what is missing


@pytest.mark.parametrize("what, patch, fragment", [
    ("arch", lambda m: m.setattr(S.platform, "machine", lambda: "aarch64"), "x86_64"),
    ("glibc", lambda m: m.setattr(S.platform, "libc_ver", lambda: ("glibc", "2.31")),
     "glibc >= 2.35; this system has glibc 2.31"),
    ("libpython", lambda m: m.setattr(S, "_libpython", lambda: None), "shared libpython"),
    ("wheel", lambda m: m.setattr(S, "_wheel_root", lambda: None),
     "nvidia-pytriton is not installed"),
])
@pytest.mark.skipif(S.missing_reason() is not None, reason="the checks run in order; on this "
                    f"machine an earlier one already fails: {S.missing_reason()}")
def test_serve_says_what_is_missing(files, monkeypatch, what, patch, fragment):
    patch(monkeypatch)
    assert fragment in S.missing_reason()
    r = runner.invoke(app, ["serve", str(files["onnx"])])
    assert r.exit_code == 3, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]


def test_serve_option_refusals(files):
    r = runner.invoke(app, ["serve", str(files["onnx"]), "--http-port", "9000",
                            "--grpc-port", "9000"])
    assert r.exit_code == 2 and "must differ" in r.stderr
    r = runner.invoke(app, ["serve", str(files["onnx"]), "--http-port", "70000"])
    assert r.exit_code == 2 and "port 70000 is outside 1..65535" in r.stderr


def test_repository_parent_must_exist(files, tmp_path):
    r = cli(files["onnx"], "-o", tmp_path / "no" / "repo")
    assert_one_line_error(r, "cannot create the repository folder")
    assert not (tmp_path / "no").exists()


def test_without_tritonclient_exit_3(files, tmp_path, monkeypatch):
    """The configs are checked with tritonclient's protobuf; without it, exit 3 saying so."""
    monkeypatch.setitem(sys.modules, "tritonclient.grpc.model_config_pb2", None)
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    r = cli(files["onnx"], "-o", tmp_path / "repo")
    assert r.exit_code == 3 and "tritonclient is not installed" in r.stderr
    assert not (tmp_path / "repo").exists()
