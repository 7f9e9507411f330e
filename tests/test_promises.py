"""README promises that a mutation run left unguarded (issue 18), each judged by a reference
outside the code under test: the ONNX file read back with the onnx library, the calibrated
ranges recomputed here from the calibration images, what TensorRT-RTX's own builder config and
optimisation profile received (read from TensorRT's objects during the build, not from what
vnexport wrote), the package versions from ``importlib.metadata``, Triton's ``config.pbtxt``
parsed with Triton's own ``ModelConfig``, the sha256 recomputed here, and per-input cosines
computed here from the training-form network and ONNX Runtime.

Skips: the TensorRT-RTX tests where ``tensorrt_rtx`` cannot be imported (the ``trt-rtx``
extra), the Triton test where tritonclient is missing (the ``triton`` extra).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import vnexport
from vnexport.cli import app
from vnexport.onnx_file import OnnxInput
from vnexport.trt import BuildOptions, resolve_profile
from vnexport.model import IMAGENET_MEAN, IMAGENET_STD, VanillaNetConfig
from vnexport.synthetic import random_training_model, write_training_checkpoint
from vnexport.verify import random_inputs

try:
    import tensorrt_rtx as trtx
except ImportError:
    trtx = None
needs_rtx = pytest.mark.skipif(trtx is None, reason="tensorrt_rtx cannot be imported: pip "
                               "install 'vnexport[trt-rtx]'")

SMALL = VanillaNetConfig(dims=(16, 32, 64), strides=(2, 2), num_classes=10)
IMG = 32
SEED = 11
ARGS = ("--strides", "2,2", "--img-size", str(IMG))
RTX = ("--builder", "tensorrt-rtx", "--compute-capability", "8.0", "--no-verify")


def invoke(*args) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_training_checkpoint(tmp_path_factory.mktemp("promises") / "ck.pth", SMALL,
                                     seed=SEED, with_ema=False)


def opset_of(path: Path) -> int:
    """The default-domain opset the file declares (the onnx library's reading)."""
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


def metadata_of(path: Path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.fixture
def tensorrt_profiles(monkeypatch):
    """Every optimisation profile TensorRT-RTX's builder config receives, as TensorRT's own
    ``IOptimizationProfile.get_shape`` reports it: [(min, opt, max) batch of ``input``]."""
    seen = []
    add = trtx.IBuilderConfig.add_optimization_profile

    def recording(cfg, profile):
        seen.append(tuple(tuple(s)[0] for s in profile.get_shape("input")))
        return add(cfg, profile)

    monkeypatch.setattr(trtx.IBuilderConfig, "add_optimization_profile", recording)
    return seen


# ------------------------------------------------------------------------------------------
# --opset: the file declares the opset asked for


@pytest.mark.parametrize("opset", [13, 18])
def test_onnx_opset_is_the_files_opset(ckpt, tmp_path, opset):
    out = tmp_path / "m.onnx"
    code, so, se = invoke("onnx", ckpt, *ARGS, "--opset", opset, "--no-verify", "-o", out)
    assert code == 0, so + se
    assert opset_of(out) == opset
    # info prints the opset onnx reads (text and JSON)
    code, so, se = invoke("info", out)
    assert code == 0 and f"ai.onnx {opset}" in so, so + se
    code, so, se = invoke("info", out, "--json")
    assert code == 0 and json.loads(so)["opsets"]["ai.onnx"] == opset_of(out)


# ------------------------------------------------------------------------------------------
# int8 calibration runs on the --calib-images files


def write_flat_images(folder: Path, colours) -> Path:
    """Images of one colour each: any resize or crop leaves their pixels as they are, so the
    normalised input range is known here exactly. IMG x IMG: at an input size of 32 or less
    images are used unresized (the authors' evaluation transform), so must be that size."""
    folder.mkdir()
    for i, c in enumerate(colours):
        Image.new("RGB", (IMG, IMG), tuple(c)).save(folder / f"im{i}.png")
    return folder


def test_int8_calibrates_on_the_calibration_images(ckpt, tmp_path):
    colours = [(250, 240, 230), (10, 20, 30), (128, 60, 200)]
    folder = write_flat_images(tmp_path / "calib", colours)
    out = tmp_path / "q.onnx"
    code, so, se = invoke("onnx", ckpt, *ARGS, "--int8", "--int8-stem", "--calib-images",
                          folder, "--calib-n", "3", "--no-verify", "-o", out)
    assert code == 0, so + se
    x = (np.asarray(colours, np.float64) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    absmax = float(np.abs(x).max())
    model = onnx.load(str(out))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    q = next(n for n in model.graph.node
             if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name)
    scale = float(inits[q.input[1]])
    # symmetric int8: the input's calibrated range is [-absmax, absmax] -> scale absmax / 127
    assert scale == pytest.approx(absmax / 127, rel=1e-4)


# ------------------------------------------------------------------------------------------
# verify reports the lowest per-input cosine


def test_verify_reports_the_lowest_per_input_cosine(ckpt, tmp_path):
    onnx_path = tmp_path / "h.onnx"  # int8: the inputs' cosines differ by ~1e-3
    code, so, se = invoke("onnx", ckpt, *ARGS, "--int8", "--dynamic-batch", "--no-verify",
                          "-o", onnx_path)
    assert code == 0, so + se
    report = tmp_path / "r.json"
    code, so, se = invoke("verify", ckpt, onnx_path, "--strides", "2,2", "--img-size", IMG,
                          "--n", "6", "--seed", "3", "--min-cosine", "0", "--min-agreement",
                          "0", "--json", report)
    assert code == 0, so + se
    data = json.loads(report.read_text())
    row = next(r for r in data["artifacts"] if Path(r["artifact"]).name == "h.onnx")
    # the reference computed here: the training form from the checkpoint, ORT on the file
    net = random_training_model(SMALL, SEED)  # the weights ck.pth holds
    x = random_inputs(SMALL, 6, IMG, 3)
    with torch.no_grad():
        ref = net(x).double().numpy()
    sess = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = x.numpy().astype(np.float16 if sess.get_inputs()[0].type == "tensor(float16)"
                            else np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: feed})[0].astype(np.float64)
    each = (ref * out).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert each.min() < each.mean() - 1e-5  # the inputs differ, so min and mean differ
    assert row["cosine"] == pytest.approx(each.min(), abs=1e-7)


# ------------------------------------------------------------------------------------------
# trt: the default profile is the one the ONNX file was exported for; options still override


@pytest.fixture(scope="module")
def dyn_onnx(ckpt, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dyn") / "d.onnx"
    code, so, se = invoke("onnx", ckpt, *ARGS, "--dynamic-batch", "--max-batch", "8",
                          "--no-verify", "-o", out)
    assert code == 0, so + se
    return out


@needs_rtx
def test_trt_default_profile_is_the_files_stored_max_batch(dyn_onnx, tmp_path,
                                                            tensorrt_profiles):
    stored = json.loads(metadata_of(dyn_onnx)["max_batch"])
    assert stored == 8
    code, so, se = invoke("trt", dyn_onnx, *RTX, "-o", tmp_path / "d.engine")
    assert code == 0, so + se
    assert tensorrt_profiles == [(1, 1, stored)]  # what TensorRT's builder config received
    assert f"max {stored} (the file's stored max_batch {stored})" in so


@needs_rtx
@pytest.mark.parametrize("args, batches", [
    (("--max-batch", "4"), (1, 1, 4)),
    (("--opt-batch", "2"), (1, 2, 8)),
    (("--min-batch", "2"), (2, 2, 8)),
    (("--min-batch", "2", "--opt-batch", "4", "--max-batch", "16"), (2, 4, 16)),
])
def test_trt_batch_options_override_the_stored_max_batch(dyn_onnx, tmp_path,
                                                          tensorrt_profiles, args, batches):
    code, so, se = invoke("trt", dyn_onnx, *RTX, *args, "-o", tmp_path / "d.engine")
    assert code == 0, so + se
    assert tensorrt_profiles == [batches]


# ------------------------------------------------------------------------------------------
# trt from a checkpoint: --opset, --workspace; the provenance's versions; info's sha256 check


@pytest.fixture(scope="module")
def rtx_engine(ckpt, tmp_path_factory):
    """``trt CKPT --opset 13 --workspace 0.25 --keep-onnx``, and what TensorRT-RTX's config
    reported for the workspace pool during that build."""
    if trtx is None:
        pytest.skip("tensorrt_rtx cannot be imported")
    d = tmp_path_factory.mktemp("rtx_promises")
    pools = []
    set_limit = trtx.IBuilderConfig.set_memory_pool_limit

    def recording(cfg, pool, size):  # what the builder config is told, and then reports
        set_limit(cfg, pool, size)
        if pool == trtx.MemoryPoolType.WORKSPACE:
            pools.append(int(cfg.get_memory_pool_limit(pool)))

    mp = pytest.MonkeyPatch()
    mp.setattr(trtx.IBuilderConfig, "set_memory_pool_limit", recording)
    try:
        code, so, se = invoke("trt", ckpt, *ARGS, *RTX, "--opset", "13", "--workspace", "0.25",
                              "--keep-onnx", d / "k.onnx", "-o", d / "e.engine")
    finally:
        mp.undo()
    assert code == 0, so + se
    return d / "e.engine", d / "k.onnx", pools


@needs_rtx
def test_trt_checkpoint_opset_and_workspace_reach_onnx_and_builder(rtx_engine):
    engine, kept, pools = rtx_engine
    assert opset_of(kept) == 13
    meta = json.loads(Path(str(engine) + ".json").read_text())
    # TensorRT-RTX's config, read during the build: both by the test's hook and by vnexport
    assert pools == [int(0.25 * 2**30)]
    assert meta["builder_config"]["workspace_bytes"] == int(0.25 * 2**30)


@needs_rtx
def test_provenance_versions_are_the_installed_ones(rtx_engine):
    engine, kept, _ = rtx_engine
    meta = json.loads(Path(str(engine) + ".json").read_text())
    assert meta["builder_version"] == importlib.metadata.version("tensorrt-rtx-cu12")
    assert meta["polygraphy_version"] == importlib.metadata.version("polygraphy")
    assert meta["tool_version"] == importlib.metadata.version("vnexport") == vnexport.__version__
    onnx_meta = metadata_of(kept)
    assert onnx_meta["torch_version"] == importlib.metadata.version("torch")
    assert meta["source_onnx_sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert meta["engine_sha256"] == hashlib.sha256(engine.read_bytes()).hexdigest()


@needs_rtx
def test_info_engine_sha256_check_sees_one_changed_byte(rtx_engine, tmp_path):
    engine, _, _ = rtx_engine
    copy = tmp_path / "e.engine"
    data = bytearray(engine.read_bytes())
    copy.write_bytes(bytes(data))
    (tmp_path / "e.engine.json").write_text(Path(str(engine) + ".json").read_text())
    recorded = json.loads((tmp_path / "e.engine.json").read_text())["engine_sha256"]
    code, so, se = invoke("info", copy)
    assert code in (0, 3) and "sha256 matches" in so, so + se  # 3: no CUDA GPU here
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(bytes(data))
    assert hashlib.sha256(bytes(data)).hexdigest() != recorded
    code, so, se = invoke("info", copy)
    assert "sha256 DOES NOT match" in so and "sha256 matches" not in so, so + se
    code, so, se = invoke("info", copy, "--json")
    assert json.loads(so)["sha256_matches_provenance"] is False


# ------------------------------------------------------------------------------------------
# triton: max_batch_size is the ONNX file's stored max batch, with dynamic batching


def test_triton_config_takes_the_files_max_batch(dyn_onnx, tmp_path):
    pytest.importorskip("tritonclient.grpc.model_config_pb2",
                        reason="tritonclient missing: pip install 'vnexport[triton]'")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    code, so, se = invoke("triton", dyn_onnx, "-o", repo, "--name", "m")
    assert code == 0, so + se
    cfg = text_format.Parse((repo / "m" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert cfg.max_batch_size == json.loads(metadata_of(dyn_onnx)["max_batch"]) == 8
    assert cfg.HasField("dynamic_batching")
    dims = onnx.load(str(dyn_onnx)).graph.input[0].type.tensor_type.shape.dim
    assert list(cfg.input[0].dims) == [d.dim_value for d in dims[1:]]


DYN_INPUT = OnnxInput("input", (None, 3, 224, 224), "float32")


@pytest.mark.parametrize("kw, stored, batches, said", [
    ({}, 32, (1, 1, 32), "max 32 (the file's stored max_batch 32)"),
    ({"opt_batch": 8}, 32, (1, 8, 32), "opt 8 (--opt-batch)"),
    ({"opt_batch": 64}, 32, (1, 64, 64), "above the file's stored max_batch 32"),
    ({"max_batch": 4}, 32, (1, 1, 4), "max 4 (--max-batch)"),
    ({"min_batch": 4}, 32, (4, 4, 32), "opt 4 (= min)"),
    ({}, None, (1, 1, 1), "the file stores no max_batch"),
])
def test_profile_defaults(kw, stored, batches, said):
    p = resolve_profile(DYN_INPUT, BuildOptions(**kw), stored_max=stored)
    assert (p.min[0], p.opt[0], p.max[0]) == batches
    assert said in p.origin


def test_demo_skips_trt_saying_no_builder_is_installed(monkeypatch, tmp_path):
    """The demo's skip reason where no builder is installed, in words written here."""
    from vnexport import trt as vt
    from vnexport.checkpoint import load_checkpoint
    from vnexport.stages import demo as demo_stages

    monkeypatch.setattr(vt.runtime, "builder_installed", lambda builder: False)
    ck = load_checkpoint(write_training_checkpoint(tmp_path / "c.pth", SMALL, seed=1),
                         strides=SMALL.strides)
    r = demo_stages.stage_trt(ck, random_inputs(SMALL, 2, IMG), None, tmp_path, print)
    assert r.stage == "trt" and r.passed is None and r.verdict == "skipped"
    assert r.detail.startswith("no TensorRT builder is installed: datacenter TensorRT (pip "
                               "install 'vnexport[trt]'")
    assert "TensorRT-RTX (pip install 'vnexport[trt-rtx]'" in r.detail
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pth"]


# ------------------------------------------------------------------------------------------
# the checkpoint-loading options reach the loader in every command that reads a checkpoint


SOURCE_ARGS = {
    "A": (("--key", "model", "--model", "vanillanet_5", "--act-learn", "0.5",
           "--trust-remote-pickle"),
          dict(key="model", model="vanillanet_5", strides=None, ada_pool=None, act_learn=0.5,
               trust=True)),
    "B": (("--key", "model_ema", "--strides", "2,1,2", "--ada-pool", "0,9,4"),
          dict(key="model_ema", model=None, strides=(2, 1, 2), ada_pool=(0, 9, 4),
               act_learn=None, trust=False)),
}


def source_commands(ckpt: Path, onnx_path: Path, tmp: Path) -> dict:
    return {
        "info": ["info", ckpt],
        "fuse": ["fuse", ckpt, "-o", tmp / "f.pth"],
        "onnx": ["onnx", ckpt, "-o", tmp / "o.onnx"],
        "quantize": ["quantize", onnx_path, "--fp16", "--reference", ckpt, "-o", tmp / "q.onnx"],
        "trt": ["trt", ckpt, "--builder", "tensorrt-rtx", "--no-verify", "-o", tmp / "t.engine"],
        "verify": ["verify", ckpt, onnx_path],
        "eval": ["eval", ckpt, onnx_path, "--images", tmp],
        "bench": ["bench", ckpt, "--runs", "1"],
    }


@pytest.mark.parametrize("variant", sorted(SOURCE_ARGS))
@pytest.mark.parametrize("command", ["info", "fuse", "onnx", "quantize", "trt", "verify",
                                     "eval", "bench"])
def test_source_options_reach_the_loader(command, variant, ckpt, dyn_onnx, tmp_path,
                                         monkeypatch):
    """A recording stand-in for the loader (named a fake: the loader itself is tested in
    test_checkpoint.py) gets exactly what the options asked, and nothing is written."""
    from vnexport.stages import common

    seen = []

    def fake_load_checkpoint(path, **kw):
        seen.append(kw)
        raise common.VnexportError("stopped by the test's fake loader", path)

    monkeypatch.setattr(common, "load_checkpoint", fake_load_checkpoint)
    args, expect = SOURCE_ARGS[variant]
    code, so, se = invoke(*source_commands(ckpt, dyn_onnx, tmp_path)[command], *args)
    assert code == 2 and "stopped by the test's fake loader" in se, so + se
    assert seen and seen[0] == expect
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# options the first map found unguarded


def test_quantize_images_are_the_verification_inputs(ckpt, dyn_onnx, tmp_path):
    colours = [(250, 240, 230), (10, 20, 30), (128, 60, 200)]
    folder = write_flat_images(tmp_path / "imgs", colours)
    report = tmp_path / "q.json"
    code, so, se = invoke("quantize", dyn_onnx, "--fp16", "--reference", ckpt, "--strides",
                          "2,2", "--images", folder, "--n", "3", "-o", tmp_path / "q.onnx",
                          "--json", report)
    assert code == 0, so + se
    fig = json.loads(report.read_text())["verification"]
    # the inputs computed here: one flat normalised colour per image
    x = ((np.asarray(colours, np.float32) / 255 - np.float32(IMAGENET_MEAN))
         / np.float32(IMAGENET_STD))[:, :, None, None] * np.ones((1, 1, IMG, IMG), np.float32)
    with torch.no_grad():
        ref = random_training_model(SMALL, SEED)(torch.from_numpy(x)).double().numpy()
    sess = onnxruntime.InferenceSession(str(tmp_path / "q.onnx"),
                                        providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    feed = x.astype(np.float16) if inp.type == "tensor(float16)" else x
    out = sess.run(None, {inp.name: feed})[0].astype(np.float64)
    assert fig["n"] == 3
    assert fig["max_abs"] == pytest.approx(float(np.abs(out - ref).max()), rel=0.05)


@needs_rtx
def test_trt_allow_inexact_from_a_checkpoint(tmp_path):
    early = write_training_checkpoint(tmp_path / "early.pth", SMALL, seed=2, with_ema=False,
                                      epoch=10)
    code, so, se = invoke("trt", early, *ARGS, *RTX, "-o", tmp_path / "a.engine")
    assert code == 2 and "act_learn" in se and "--allow-inexact" in se, so + se
    assert not (tmp_path / "a.engine").exists()
    code, so, se = invoke("trt", early, *ARGS, *RTX, "--allow-inexact", "-o",
                          tmp_path / "b.engine")
    assert code == 0, so + se
    assert (tmp_path / "b.engine").stat().st_size > 10_000


@needs_rtx
def test_trt_verbose_shows_the_build_log(dyn_onnx, tmp_path, capfd):
    code, so, se = invoke("trt", dyn_onnx, *RTX, "-o", tmp_path / "q.engine")
    assert code == 0, so + se
    quiet = so + se + "".join(capfd.readouterr())
    code, so, se = invoke("trt", dyn_onnx, *RTX, "--verbose", "-o", tmp_path / "v.engine")
    assert code == 0, so + se
    loud = so + se + "".join(capfd.readouterr())
    assert len(loud.splitlines()) > len(quiet.splitlines()) + 5, loud[-2000:]


def test_bench_json_needs_force_to_replace(dyn_onnx, tmp_path):
    report = tmp_path / "b.json"
    report.write_text("keep")
    args = ("bench", dyn_onnx, "--batch", "1", "--runs", "2", "--warmup", "0", "--json", report)
    code, so, se = invoke(*args)
    assert code == 2 and "--force" in se and report.read_text() == "keep", so + se
    code, so, se = invoke(*args, "--force")
    assert code == 0, so + se
    assert isinstance(json.loads(report.read_text()), dict)  # replaced by the report


def test_serve_host_reaches_the_server(dyn_onnx, monkeypatch):
    """A recording stand-in for TritonServer (a fake: the real server runs in test_serve.py)
    gets the --host and ports asked for."""
    from vnexport.stages import serve as serve_stage

    seen = []

    class FakeServer:
        def __init__(self, repo, **kw):
            seen.append(kw)
            raise serve_stage.VnexportError("stopped by the test's fake server")

    monkeypatch.setattr(serve_stage, "TritonServer", FakeServer)
    monkeypatch.setattr(serve_stage, "missing_reason", lambda: None, raising=False)
    code, so, se = invoke("serve", dyn_onnx, "--host", "localhost", "--http-port", "18000",
                          "--grpc-port", "18001", "--metrics-port", "18002")
    assert "stopped by the test's fake server" in se, so + se
    assert seen and seen[0]["host"] == "localhost" and seen[0]["http_port"] == 18000
    assert seen[0]["grpc_port"] == 18001 and seen[0]["metrics_port"] == 18002


def test_trt_images_are_what_the_engine_is_verified_on(ckpt, tmp_path, monkeypatch):
    """Verification runs only on a CUDA GPU, so here it runs on tests/fakes (a fake TensorRT
    whose engine is ONNX Runtime; a fake GPU): the batches the engine is given are recorded
    and checked against the images' inputs computed here."""
    from fakes import fake_polygraphy as fpg

    from vnexport import trt as vt

    fpg.install(monkeypatch)
    monkeypatch.setattr(vt.runtime, "gpu_info", lambda ordinal=0: {
        "name": "FAKE GPU (tests/fakes)", "compute_capability": "8.0", "devices": 1})
    fed = []
    infer = vt.build.infer  # build_engine runs the new engine through it

    def recording_infer(engine, x):
        fed.append(np.array(x))
        return infer(engine, x)

    monkeypatch.setattr(vt.build, "infer", recording_infer)
    colours = [(250, 240, 230), (10, 20, 30), (128, 60, 200)]
    folder = write_flat_images(tmp_path / "imgs", colours)
    code, so, se = invoke("trt", ckpt, *ARGS, "--builder", "tensorrt", "--images", folder,
                          "--n", "3", "-o", tmp_path / "e.engine")
    assert code == 0, so + se
    x = ((np.asarray(colours, np.float32) / 255 - np.float32(IMAGENET_MEAN))
         / np.float32(IMAGENET_STD))[:, :, None, None] * np.ones((1, 1, IMG, IMG), np.float32)
    assert len(fed) == 1 and np.allclose(fed[0], x, atol=1e-6)


# ------------------------------------------------------------------------------------------
# fusion: the BN fold uses each BN's own eps (synthetic BN statistics hide it: variances near
# 1 make eps 1e-6 invisible; here the variances are as small as eps)


def test_fold_bn_uses_the_bn_eps():
    from vnexport.model import fold_bn

    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4, eps=1e-6).eval()
    bn.running_mean.copy_(torch.randn(4))
    bn.running_var.copy_(torch.tensor([1e-6, 2e-6, 5e-7, 1e-5]))
    bn.weight.data.copy_(torch.randn(4))
    bn.bias.data.copy_(torch.randn(4))
    w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
    fw, fb = fold_bn(w, b, bn)
    std = np.sqrt(bn.running_var.double().numpy() + 1e-6)
    g = bn.weight.detach().double().numpy() / std
    want_w = w.double().numpy() * g[:, None, None, None]
    want_b = bn.bias.detach().double().numpy() + (b.double().numpy()
                                                  - bn.running_mean.double().numpy()) * g
    np.testing.assert_allclose(fw.double().numpy(), want_w, rtol=1e-5)
    np.testing.assert_allclose(fb.double().numpy(), want_b, rtol=1e-5)


@pytest.mark.parametrize("act_learn", ["0.9", "0.999"])
def test_fuse_refuses_any_act_learn_below_1(ckpt, tmp_path, act_learn):
    """Paired convs merge exactly only at act_learn 1 (the leaky_relu between them is then the
    identity): any value below 1, however close, is refused without --allow-inexact."""
    code, so, se = invoke("fuse", ckpt, "--strides", "2,2", "--act-learn", act_learn,
                          "-o", tmp_path / "f.pth")
    assert code == 2 and "act_learn" in se and "--allow-inexact" in se, so + se
    assert list(tmp_path.iterdir()) == []


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED_BY_ZIP_PICKLE",))


def test_zip_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    """torch.save's own (zip) format, the one loaded memory-mapped: a pickle that would run
    code on loading is refused, and the code never runs."""
    from vnexport.checkpoint import load_checkpoint
    from vnexport.errors import VnexportError

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    torch.save({"model": random_training_model(SMALL, 0).state_dict(), "x": _RunsCode()}, path)
    with pytest.raises(VnexportError, match="evil.pth"):
        load_checkpoint(path, strides=SMALL.strides)
    assert not (tmp_path / "PWNED_BY_ZIP_PICKLE").exists()
