"""``vnexport info`` on every kind of file vnexport writes (issue 20): each is written here by
the command that writes it (the small test network at 32x32, through the CLI), then ``info``
must name its kind, exit 0 and state facts that are checked against the file as read here
independently (json, onnx, Triton's ModelConfig parser). Anything else: one line, exit 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from artifacts import IMG, STRIDES, make_small_run
from vnexport.cli import app

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """One file of each kind, each written by its own command."""
    d = tmp_path_factory.mktemp("info_files")
    run = make_small_run(d)
    common = ["--strides", STRIDES, "--img-size", IMG]
    calls = {
        "fuse.json": ["fuse", run.training, "-o", d / "f.pth", *common],
        "onnx.json": ["onnx", run.training, "-o", d / "o.onnx", *common],
        "quantize.json": ["quantize", run.onnx, "--precision", "int8", "-o", d / "q.onnx",
                          "--cache", d / "calib.json", "--img-size", IMG],
        "verify.json": ["verify", run.training, run.onnx, *common],
        "bench.json": ["bench", run.onnx, "--batch", "1,2", "--runs", 3, "--warmup", 1,
                       "--img-size", IMG],
        "triton.json": ["triton", run.onnx, "-o", d / "repo", "--preprocess",
                        "--backend", "python", "--name", "small"],
    }
    for name, args in calls.items():
        if name == "triton.json":  # one model per call (--name); the accelerated one next
            r = cli(*args, "--json", d / name)
            assert r.exit_code == 0, r.output
            r = cli("triton", d / "q.onnx", "-o", d / "repo", "--accelerator", "tensorrt")
        else:
            r = cli(*args, "--json", d / name)
        assert r.exit_code == 0, (name, r.output)
    return d, run


def info(*args):
    r = cli("info", *args)
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("name, kind", [
    ("fuse.json", "fuse report"), ("onnx.json", "onnx report"),
    ("quantize.json", "quantize report"), ("verify.json", "verify report"),
    ("bench.json", "bench report"), ("triton.json", "triton report"),
    ("calib.json", "calibration cache")])
def test_info_names_each_json_file(made, name, kind):
    d, _ = made
    code, out, err = info(d / name)
    assert code == 0, err
    assert out.splitlines()[1] == f"kind        {kind}"
    data = json.loads((d / name).read_text())
    code, js, _ = info(d / name, "--json")
    assert code == 0 and json.loads(js)["kind"] == kind and json.loads(js)["content"] == data
    if kind == "verify report":
        (a,) = data["artifacts"]
        assert "verdict     PASS" in out and a["passed"] is True
        assert f"{a['max_rel']:.2e}" in out and a["artifact"] in out
    if kind == "bench report":
        for row in data["results"]:
            assert f"batch {row['batch']:<5} median {row['median_ms']:.3f} ms" in out
    if kind == "calibration cache":
        assert f"entries     {len(data['entries'])} " in out and len(data["entries"]) == 1
    if kind in ("fuse report", "onnx report", "quantize report"):
        assert f"output      {data['output']} (written)" in out
        assert "verified    PASS" in out and data["verification"]["passed"] is True


def test_info_on_a_triton_repository_folder_and_config(made):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    d, run = made
    repo = d / "repo"
    code, out, err = info(repo)
    folders = sorted(p.name for p in repo.iterdir())
    assert code == 0, err
    assert f"kind        triton model repository ({len(folders)} models)" in out
    for name in folders:  # each config as Triton parses it, read here
        cfg = text_format.Parse((repo / name / "config.pbtxt").read_text(),
                                model_config_pb2.ModelConfig())
        what = cfg.platform or f"backend {cfg.backend}"
        assert f"model       {cfg.name}: {what}, max_batch_size {cfg.max_batch_size}" in out
    assert "  steps     small_preprocess -> small" in out
    assert "  gpu accel tensorrt: " in out and "precision_mode=INT8" in out
    code, js, _ = info(repo / "q", "--json")
    (m,) = json.loads(js)["models"]
    assert code == 0 and json.loads(js)["kind"] == "triton model folder"
    import onnx

    graph = onnx.load(str(d / "q.onnx")).graph
    assert m["inputs"][0]["name"] == graph.input[0].name
    assert m["inputs"][0]["dims"] == [d.dim_value for d in
                                      graph.input[0].type.tensor_type.shape.dim][1:]
    assert m["versions"] == {"1": ["model.onnx"]}
    assert m["accelerators"][0]["parameters"]["precision_mode"] == "INT8"
    code, out, _ = info(repo / "small_ensemble" / "config.pbtxt")
    assert code == 0 and "kind        triton model config (1 model)" in out


def test_info_on_an_engine_and_its_provenance(made, tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed (trt-rtx extra)")
    d, run = made
    engine = tmp_path / "m.engine"
    r = cli("trt", run.onnx, "--builder", "tensorrt-rtx", "--no-verify", "-o", engine,
            "--img-size", IMG, "--json", tmp_path / "trt.json")
    assert r.exit_code == 0, r.output
    prov = json.loads((tmp_path / "m.engine.json").read_text())
    code, out, err = info(engine)
    assert code == 0, err
    assert "INVALID" not in out and "header      OK - " in out
    assert f"builder     tensorrt-rtx {prov['builder_version']}" in out
    code, out, _ = info(tmp_path / "m.engine.json")
    assert code == 0 and "kind        engine provenance" in out
    assert f"engine      m.engine (from {run.onnx.name})" in out
    assert f"profile     min {prov['profile']['min']}" in out
    code, out, _ = info(tmp_path / "trt.json")
    assert code == 0 and "kind        trt report" in out and "verified    no: " in out


def test_info_refuses_anything_else_in_one_line(made, tmp_path):
    cases = {tmp_path / "x.txt": b"not a checkpoint\n",
             tmp_path / "other.json": b'{"some": "json"}',
             tmp_path / "bad.json": b"{not json",
             tmp_path / "junk.plan": b"\x00" * 4096}
    for path, data in cases.items():
        path.write_bytes(data)
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    shutil.copytree(made[0] / "repo" / "q", broken)
    (broken / "config.pbtxt").write_text("name: 'q'\nmax_batch_size: [\n")
    expect = {"x.txt": "not a PyTorch checkpoint", "other.json": "none that vnexport writes",
              "bad.json": "not a readable JSON file", "empty": "not a Triton model folder",
              "broken": "config.pbtxt", "missing.onnx": "no such file"}
    if _has_rtx():
        expect["junk.plan"] = "not a TensorRT engine"
    for name, frag in expect.items():
        code, out, err = info(tmp_path / name)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (name, out, err)
        assert lines[0].startswith(f"error: {tmp_path / name}") or name == "broken", lines
        assert frag in lines[0], (name, lines[0])


def _has_rtx() -> bool:
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        return False
    return True
