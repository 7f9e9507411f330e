"""The Triton mechanism (vnexport/triton.py: config checks, all-or-nothing writes), where the
wheel's server cannot run (vnexport/triton_server.missing_reason), and the CLI contract of
``vnexport triton`` / ``vnexport serve``: exit codes, one-line errors naming the file, no
partial output, the JSON report. The stage's repositories: tests/test_stage_triton.py; the
real server: tests/test_serve.py."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from triton_helpers import CLASSES, make_files, parse
from vnexport import triton as T
from vnexport import triton_server as S
from vnexport.cli import app
from vnexport.errors import VnexportError

pytest.importorskip("tritonclient.grpc.model_config_pb2",
                    reason="tritonclient not installed (the serve extra)")
runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("triton"))


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(r, code: int, *fragments: str) -> None:
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


# --------------------------------------------------------------------------------------------
# the mechanism


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
# vnexport triton: the CLI contract


def test_cli_writes_and_reports(files, tmp_path):
    repo = tmp_path / "repo"
    r = cli("triton", files["onnx"], files["static"], "-o", repo, "--backend", "python",
            "--json", tmp_path / "report.json")
    assert r.exit_code == 0, r.output
    assert f"wrote {repo / 'model'}: backend python, max_batch_size 16" in r.stdout
    assert "note: static.onnx has a static batch of 1" in r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["model", "static"]
    assert parse(repo / "model" / "config.pbtxt").max_batch_size == 16
    r = cli("triton", files["onnx"], "-o", tmp_path / "r2", "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["models"][0]["platform"] == \
        "onnxruntime_onnx"


def test_cli_accelerator_and_model_version(files, tmp_path):
    """--accelerator tensorrt with --workspace/--engine-cache; --model-version names the
    version folder (--version still works, as a deprecated alias)."""
    repo = tmp_path / "repo"
    r = cli("triton", files["onnx"], "-o", repo, "--accelerator", "tensorrt", "--workspace",
            "2", "--engine-cache", "/data/cache", "--model-version", "3")
    assert r.exit_code == 0, r.output
    cfg = parse(repo / "model" / "config.pbtxt")
    (a,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert a.parameters["max_workspace_size_bytes"] == str(2 << 30)
    assert a.parameters["trt_engine_cache_path"] == "/data/cache"
    assert list(cfg.version_policy.specific.versions) == [3] and (repo / "model" / "3").is_dir()
    r = cli("triton", files["onnx"], "-o", tmp_path / "r2", "--version", "2")
    assert r.exit_code == 0 and (tmp_path / "r2" / "model" / "2" / "model.onnx").is_file()
    assert_one_line_error(cli("triton", files["engine"], "-o", tmp_path / "r3",
                              "--accelerator", "tensorrt"), 2, "small.engine", "not an engine")
    assert not (tmp_path / "r3").exists()


def test_cli_one_line_errors_and_nothing_written(files, tmp_path):
    repo = tmp_path / "repo"
    bad_labels = tmp_path / "labels.txt"
    bad_labels.write_text("a\nb\n")
    junk = tmp_path / "junk.onnx"
    junk.write_text("not onnx")
    cases = [
        (["--labels", bad_labels], "labels.txt", f"2 labels, the model has {CLASSES} classes"),
        (["--preferred-batch", "four"], "comma-separated integers"),
        (["--instances", "0"], "--instances must be >= 1"),
        (["--kind", "tpu"], "'tpu' is not one of"),
    ]
    for extra, *fragments in cases:
        r = cli("triton", files["onnx"], "-o", repo, *extra)
        if "is not one of" in fragments[0]:  # Typer's own usage error: exit 2 as well
            assert r.exit_code == 2 and fragments[0] in r.output
        else:
            assert_one_line_error(r, 2, *fragments)
        assert not repo.exists()
    assert_one_line_error(cli("triton", junk, "-o", repo), 2, "junk.onnx",
                          "not a readable ONNX file")
    assert_one_line_error(cli("triton", tmp_path / "no.onnx", "-o", repo), 2, "no.onnx",
                          "no such file")
    assert_one_line_error(cli("triton", files["onnx"], "-o", tmp_path / "a" / "b"), 2,
                          "cannot create the repository folder")
    assert not repo.exists() and not (tmp_path / "a").exists()
    assert cli("triton", files["onnx"], "-o", repo).exit_code == 0
    assert_one_line_error(cli("triton", files["onnx"], "-o", repo), 2, "model",
                          "exists; pass --force")


def test_without_tritonclient_exit_3(files, tmp_path, monkeypatch):
    """The configs are checked with tritonclient's protobuf; without it, exit 3 saying so."""
    monkeypatch.setitem(sys.modules, "tritonclient.grpc.model_config_pb2", None)
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    r = cli("triton", files["onnx"], "-o", tmp_path / "repo")
    assert_one_line_error(r, 3, "tritonclient is not installed")
    assert not (tmp_path / "repo").exists()


# --------------------------------------------------------------------------------------------
# vnexport serve where the wheel's server cannot run: exit 3, one line saying what is missing


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
    assert_one_line_error(cli("serve", files["onnx"]), 3, fragment)


def test_serve_option_refusals(files, tmp_path):
    assert_one_line_error(cli("serve", files["onnx"], "--http-port", "9000", "--grpc-port",
                              "9000"), 2, "must differ")
    assert_one_line_error(cli("serve", files["onnx"], "--http-port", "70000"), 2,
                          "port 70000 is outside 1..65535")
    assert_one_line_error(cli("serve", tmp_path / "missing"), 2, "missing", "no such file")
    assert_one_line_error(cli("serve", files["engine"]), 3, "small.engine",
                          "TensorRT backend")


def test_container_table_semantics():
    """trt/compat.py: an exact plan needs its own TensorRT (compared on the parts the matrix
    names); a version-compatible one also loads on later ones of the same major version."""
    from vnexport.trt import compat

    assert compat.carries("10.3.0", "10.3.0.26", False)
    assert not compat.carries("10.4.0", "10.3.0.26", False)
    assert compat.carries("10.4.0", "10.3.0.26", True)
    assert not compat.carries("10.0.1", "10.3.0.26", True)  # older: never
    assert not compat.carries("11.0.0", "10.3.0.26", True)  # another major version
    assert compat.containers_for("10.4.0.1") == ["24.09", "24.10"]
    assert compat.containers_for(None) == [] and compat.containers_for("10.99") == []
    facts = compat.serving_facts({"tensorrt_version": "10.13.3.9", "version_compatible": False})
    assert facts["triton_releases"] == ["25.11", "25.12"] and facts["tritonserver_flag"] is None
    assert facts["containers"][0] == "nvcr.io/nvidia/tritonserver:25.11-trtllm-python-py3"
