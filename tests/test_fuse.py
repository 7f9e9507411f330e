"""The fuse stage: the deploy file loads into the authors' deploy layout and reproduces the
training form; refusals and pass-through."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from typer.testing import CliRunner

from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.model import VanillaNet, VanillaNetConfig
from vnexport.synthetic import random_training_model, training_args, training_checkpoint

CONFIGS = {
    "stride": VanillaNetConfig((8, 16, 32, 32), (2, 2, 1), act_num=3, num_classes=10),
    "ada_pool": VanillaNetConfig((8, 16, 32), (2, 2), ada_pool=(7, 3), num_classes=7),
    "act_num_1_gray": VanillaNetConfig((8, 16), (1,), act_num=1, num_classes=3, in_chans=1),
}
STRIDES = {"stride": ("2,2,1", None), "ada_pool": ("2,2", "7,3"), "act_num_1_gray": ("1", None)}

runner = CliRunner()


def write(tmp_path, cfg, epoch=299, decay_epochs=100, seed=0, name="checkpoint-best.pth"):
    model = random_training_model(cfg, seed)
    ema = random_training_model(cfg, seed + 1)
    ckpt = training_checkpoint(model, epoch=epoch, ema=ema,
                               args=training_args(cfg, decay_epochs=decay_epochs))
    path = tmp_path / name
    torch.save(ckpt, path)
    return path, ema


def fuse_args(path, out, key, *extra):
    strides, ada = STRIDES[key]
    args = ["fuse", str(path), "-o", str(out), "--strides", strides, "--img-size", "32", *extra]
    return args + (["--ada-pool", ada] if ada else [])


@pytest.mark.parametrize("key", list(CONFIGS))
def test_fused_file_loads_strict_and_matches_training_form(tmp_path, key):
    cfg = CONFIGS[key]
    path, ema = write(tmp_path, cfg)
    out = tmp_path / "deploy.pth"
    r = runner.invoke(app, fuse_args(path, out, key, "--json", str(tmp_path / "r.json")))
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output and "max rel err" in r.output
    saved = torch.load(out, weights_only=True)
    # the authors' deploy-form layout, strict=True
    deploy = VanillaNet(cfg, deploy=True).eval()
    deploy.load_state_dict(saved["model"], strict=True)
    # the independent path: the training-form EMA weights (what auto picks), run here
    x = torch.randn(4, cfg.in_chans, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref, out_ = ema.eval()(x), deploy(x)
    assert ((out_ - ref).abs().max() / ref.abs().max()).item() < 1e-5
    assert torch.equal(out_.argmax(1), ref.argmax(1))
    meta = saved["vnexport"]
    assert meta["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["config"] == cfg.to_dict() and meta["act_learn"] == 1.0
    assert meta["source_key"] == "model_ema"
    v = meta["verification"]
    assert v["passed"] and v["max_rel"] <= 1e-4 and v["top1_agreement"] == 1.0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["written"] and report["verification"]["passed"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weights_stored_in_another_dtype(tmp_path, dtype):
    """A checkpoint saved with half / bfloat16 / double weights fuses; the deploy file is
    float32 and reproduces the training form of those same (rounded) weights."""
    cfg = CONFIGS["stride"]
    model = random_training_model(cfg, 0)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "checkpoint-half.pth"
    torch.save({"model": sd, "epoch": 299, "args": training_args(cfg)}, path)
    out = tmp_path / "deploy.pth"
    r = runner.invoke(app, fuse_args(path, out, "stride"))
    assert r.exit_code == 0, r.output
    saved = torch.load(out, weights_only=True)["model"]
    assert {v.dtype for v in saved.values()} == {torch.float32}
    # the independent path: the training form holding the file's weights, in float64
    ref_model = VanillaNet(cfg).double().eval()
    ref_model.load_state_dict({k: v.double() if v.is_floating_point() else v
                               for k, v in sd.items()})
    deploy = VanillaNet(cfg, deploy=True).eval()
    deploy.load_state_dict(saved, strict=True)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref, got = ref_model(x.double()), deploy(x).double()
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_fused_file_is_recognised_by_info_and_passes_through(tmp_path):
    cfg = CONFIGS["stride"]
    path, _ = write(tmp_path, cfg)
    out = tmp_path / "deploy.pth"
    assert runner.invoke(app, fuse_args(path, out, "stride")).exit_code == 0
    r = runner.invoke(app, ["info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["form"] == "deploy" and info["config"]["strides"] == [2, 2, 1]
    again = tmp_path / "again.pth"
    r = runner.invoke(app, ["fuse", str(out), "-o", str(again)])
    assert r.exit_code == 0, r.output
    assert "already in deploy form" in r.output
    a, b = torch.load(out, weights_only=True), torch.load(again, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_mid_schedule_checkpoint_is_refused(tmp_path):
    path, _ = write(tmp_path, CONFIGS["stride"], epoch=37)
    out = tmp_path / "deploy.pth"
    r = runner.invoke(app, fuse_args(path, out, "stride"))
    assert r.exit_code == 2
    assert "act_learn is 0.37" in r.stderr and "do not merge exactly" in r.stderr
    assert not out.exists()


def test_allow_inexact_is_still_judged(tmp_path):
    path, _ = write(tmp_path, CONFIGS["stride"], epoch=37)
    out = tmp_path / "deploy.pth"
    r = runner.invoke(app, fuse_args(path, out, "stride", "--allow-inexact"))
    assert r.exit_code == 1, r.output
    assert "FAIL" in r.output and "not written" in r.output
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind


def test_act_learn_override_allows_the_merge(tmp_path):
    path, _ = write(tmp_path, CONFIGS["stride"], epoch=37)
    out = tmp_path / "deploy.pth"
    r = runner.invoke(app, fuse_args(path, out, "stride", "--act-learn", "1"))
    assert r.exit_code == 0, r.output


def test_existing_output_needs_force(tmp_path):
    path, _ = write(tmp_path, CONFIGS["stride"])
    out = tmp_path / "deploy.pth"
    out.write_bytes(b"keep me")
    r = runner.invoke(app, fuse_args(path, out, "stride"))
    assert r.exit_code == 2 and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = runner.invoke(app, fuse_args(path, out, "stride", "--force"))
    assert r.exit_code == 0, r.output
    assert "model" in torch.load(out, weights_only=True)


def test_real_images_folder(tmp_path):
    from PIL import Image

    cfg = VanillaNetConfig((8, 16, 32), (2, 2), num_classes=10)
    path, _ = write(tmp_path, cfg)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        arr = (torch.rand(40 + i * 7, 50, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(imgs / f"{i}.png")
    out = tmp_path / "d.pth"
    r = runner.invoke(app, ["fuse", str(path), "-o", str(out), "--strides", "2,2",
                            "--img-size", "64", "--images", str(imgs)])
    assert r.exit_code == 0, r.output
    assert "(3 inputs)" in r.output


def test_digits_accuracy_is_identical_after_fuse(digits_run, tmp_path):
    from digits import STRIDES as DIGIT_STRIDES
    from digits import accuracy

    out = tmp_path / "digits_deploy.pth"
    r = runner.invoke(app, ["fuse", str(digits_run.final), "-o", str(out), "--strides",
                            DIGIT_STRIDES, "--img-size", "32"])
    assert r.exit_code == 0, r.output
    deploy = load_checkpoint(out).build_model()
    assert deploy.deploy
    assert accuracy(deploy, digits_run.x_test, digits_run.y_test) == digits_run.accuracy
    assert digits_run.accuracy > 0.9  # it really learned the digits


def test_digits_mid_schedule_is_refused(digits_run, tmp_path):
    from digits import STRIDES as DIGIT_STRIDES

    out = tmp_path / "mid_deploy.pth"
    r = runner.invoke(app, ["fuse", str(digits_run.mid), "-o", str(out), "--strides",
                            DIGIT_STRIDES, "--img-size", "32"])
    assert r.exit_code == 2 and "act_learn is 0.4" in r.stderr
    assert not out.exists()
