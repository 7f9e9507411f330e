"""Checkpoint loading: every layout users have, variant detection, act_learn, and refusals."""

from __future__ import annotations

import argparse
import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from vnexport.checkpoint import load_checkpoint, resolve_config, schedule_act_learn
from vnexport.errors import VnexportError
from vnexport.model import VARIANTS, VanillaNetConfig, build
from vnexport.synthetic import random_training_model, training_args, training_checkpoint

SMALL = VanillaNetConfig((8, 16, 32), (2, 2), act_num=1, num_classes=10)


@pytest.fixture(scope="module")
def small_models():
    return random_training_model(SMALL, seed=0), random_training_model(SMALL, seed=1)


@pytest.fixture(scope="module")
def v5_training_file(tmp_path_factory):
    """A vanillanet_5 training-script checkpoint with zero weights (only shapes matter here)."""
    path = tmp_path_factory.mktemp("v5") / "checkpoint-299.pth"
    model = build("vanillanet_5", init=False)
    for t in model.state_dict().values():
        t.zero_()
    ckpt = training_checkpoint(model, epoch=299)
    del ckpt["args"].model  # no name: detection from shapes
    torch.save(ckpt, path)
    return path


def save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def same_weights(sd, model) -> bool:
    ref = model.state_dict()
    return set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)


# ------------------------------------------------------------------------------------------
# layouts


def test_training_script_dict_prefers_model_ema(tmp_path, small_models):
    model, ema = small_models
    path = save(training_checkpoint(model, ema=ema, epoch=299), tmp_path / "c.pth")
    c = load_checkpoint(path, strides=(2, 2))
    assert c.key == "model_ema" and c.form == "training"
    assert same_weights(c.state_dict, ema)
    assert any("model_ema" in n and "also has model" in n for n in c.notes)
    c = load_checkpoint(path, key="model", strides=(2, 2))
    assert c.key == "model" and same_weights(c.state_dict, model)


@pytest.mark.parametrize("layout", ["bare", "model", "state_dict", "module_prefix", "safetensors",
                                    "safetensors_named_pth"])
def test_layouts_load_the_same_weights(tmp_path, small_models, layout):
    model = small_models[0]
    sd = model.state_dict()
    if layout == "bare":
        path = save(sd, tmp_path / "w.pth")
    elif layout == "model":
        path = save({"model": sd}, tmp_path / "w.pth")
    elif layout == "state_dict":
        path = save({"state_dict": sd, "meta": {"x": 1}}, tmp_path / "w.pth")
    elif layout == "module_prefix":
        path = save(training_checkpoint(model, module_prefix=True), tmp_path / "w.pth")
    else:
        from safetensors.torch import save_file

        # recognised by its content, whatever the file is called
        path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    c = load_checkpoint(path, strides=(2, 2))
    assert same_weights(c.state_dict, model)
    assert c.cfg == SMALL


def test_deploy_file_is_recognised(tmp_path, small_models):
    deploy = random_training_model(SMALL, seed=0).reparameterize()
    path = save({"model": deploy.state_dict()}, tmp_path / "d.pth")
    c = load_checkpoint(path, strides=(2, 2))
    assert c.form == "deploy" and c.act_learn == 1.0
    assert same_weights(c.state_dict, deploy)


def test_key_that_is_absent_is_named(tmp_path, small_models):
    path = save(training_checkpoint(small_models[0]), tmp_path / "c.pth")
    with pytest.raises(VnexportError, match="--key model_ema: no such entry") as e:
        load_checkpoint(path, key="model_ema", strides=(2, 2))
    assert "c.pth" in str(e.value)


# ------------------------------------------------------------------------------------------
# variant detection


def test_variant_from_shapes(v5_training_file):
    c = load_checkpoint(v5_training_file)
    assert c.variant == "vanillanet_5" and c.cfg == VARIANTS["vanillanet_5"]
    assert any("tensor shapes" in n for n in c.notes)


def test_args_model_that_contradicts_the_weights_is_refused(tmp_path, small_models):
    args = training_args(SMALL)
    args.model = "vanillanet_5"
    path = save(training_checkpoint(small_models[0], args=args), tmp_path / "c.pth")
    with pytest.raises(VnexportError, match="vanillanet_5.*dims"):
        load_checkpoint(path)


def test_custom_network_asks_for_strides(tmp_path, small_models):
    path = save(training_checkpoint(small_models[0]), tmp_path / "c.pth")
    with pytest.raises(VnexportError, match="--strides"):
        load_checkpoint(path)


def test_ambiguous_shapes_ask_for_model():
    cfg = VARIANTS["vanillanet_13_x1_5"]
    shapes = dict(dims=cfg.dims, act_num=3, num_classes=1000, in_chans=3)
    with pytest.raises(VnexportError) as e:
        resolve_config(shapes, Path("w.pth"), None, None, None, None, [])
    msg = str(e.value)
    assert "--model" in msg and "vanillanet_13_x1_5," in msg
    assert "vanillanet_13_x1_5_ada_pool" in msg
    cfg2 = resolve_config(shapes, Path("w.pth"), "vanillanet_13_x1_5_ada_pool", None, None,
                          None, [])
    assert cfg2.ada_pool == (0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0)


def test_fine_tuned_class_count_is_kept():
    cfg = VARIANTS["vanillanet_5"]
    shapes = dict(dims=cfg.dims, act_num=3, num_classes=37, in_chans=3)
    notes = []
    got = resolve_config(shapes, Path("w.pth"), None, None, None, "vanillanet_5", notes)
    assert got.num_classes == 37 and got.strides == cfg.strides
    assert "args.model" in notes[0]


# ------------------------------------------------------------------------------------------
# act_learn


@pytest.mark.parametrize("epoch,decay,linear,expected", [
    (0, 100, True, 0.0), (37, 100, True, 0.37), (100, 100, True, 1.0), (299, 100, True, 1.0),
    (50, 100, False, 0.5), (25, 100, False, 0.5 * (1 - math.cos(math.pi / 4))),
    (10, 0, True, 1.0),
])
def test_schedule(epoch, decay, linear, expected):
    assert schedule_act_learn(epoch, decay, linear) == pytest.approx(expected)


def test_act_learn_from_file_and_override(tmp_path, small_models):
    args = training_args(SMALL, decay_epochs=100, decay_linear=False)
    path = save(training_checkpoint(small_models[0], epoch=50, args=args), tmp_path / "c.pth")
    c = load_checkpoint(path, strides=(2, 2))
    assert c.act_learn == pytest.approx(0.5) and "cosine" in c.act_learn_source
    assert c.epoch == 50
    c = load_checkpoint(path, strides=(2, 2), act_learn=1.0)
    assert c.act_learn == 1.0 and c.act_learn_source == "--act-learn"


def test_published_weights_without_schedule_are_taken_as_one(tmp_path, small_models):
    path = save({"model": small_models[0].state_dict()}, tmp_path / "c.pth")
    c = load_checkpoint(path, strides=(2, 2))
    assert c.act_learn == 1.0 and "no training schedule" in c.act_learn_source


# ------------------------------------------------------------------------------------------
# refusals


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


class Custom:
    pass


def test_pickle_that_would_run_code_is_refused(tmp_path, small_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": small_models[0].state_dict(), "x": Payload()}, f)
    with pytest.raises(VnexportError, match="evil.pth"):
        load_checkpoint(path, strides=(2, 2))
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_unknown_class_is_named(tmp_path, small_models):
    ckpt = training_checkpoint(small_models[0])
    ckpt["extra"] = Custom()
    path = save(ckpt, tmp_path / "c.pth")
    with pytest.raises(VnexportError, match=r"class .*Custom.*--trust-remote-pickle"):
        load_checkpoint(path, strides=(2, 2))
    c = load_checkpoint(path, strides=(2, 2), trust=True)
    assert c.form == "training"


def test_namespace_args_are_allowed(tmp_path, small_models):
    path = save(training_checkpoint(small_models[0]), tmp_path / "c.pth")
    obj = torch.load(path, weights_only=False)
    assert isinstance(obj["args"], argparse.Namespace)
    assert load_checkpoint(path, strides=(2, 2)).form == "training"


def broken(tmp_path: Path, small_models, kind: str) -> Path:
    sd = {k: v.clone() for k, v in small_models[0].state_dict().items()}
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        save({"model": sd}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":
        path.write_text("hello, this is not a checkpoint\n")
    elif kind == "other_network":
        save({"model": {"fc.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(3)}}, path)
    elif kind == "nan":
        sd["stages.0.conv1.0.weight"][0, 0] = float("nan")
        save({"model": sd}, path)
    elif kind == "inf":
        sd["cls2.0.bias"][1] = float("inf")
        save({"model": sd}, path)
    elif kind == "negative_var":
        sd["stem1.1.running_var"][2] = -1.0
        save({"model": sd}, path)
    elif kind == "list":
        save([1, 2, 3], path)
    return path


@pytest.mark.parametrize("kind,pattern", [
    ("empty", "empty"),
    ("truncated", "truncated or corrupt"),
    ("text", "not a PyTorch checkpoint"),
    ("other_network", "not a VanillaNet state dict"),
    ("nan", r"NaN in the weights \(stages.0.conv1.0.weight\)"),
    ("inf", r"Inf in the weights \(cls2.0.bias\)"),
    ("negative_var", r"negative BatchNorm running_var \(stem1.1.running_var\)"),
    ("list", "not a checkpoint"),
])
def test_bad_files_are_refused_with_the_file_named(tmp_path, small_models, kind, pattern):
    path = broken(tmp_path, small_models, kind)
    with pytest.raises(VnexportError, match=pattern) as e:
        load_checkpoint(path, strides=(2, 2))
    assert e.value.path == str(path)
    assert "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(VnexportError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pth")


@pytest.mark.parametrize("change,pattern", [
    ("drop", r"missing keys: stages.1.act.bn.running_mean"),
    ("add", r"unexpected keys: stages.0.extra.weight"),
    ("shape", r"shape mismatch: stages.0.act.weight \(16, 1, 5, 5\) \(expected \(16, 1, 3, 3\)\)"),
])
def test_keys_and_shapes_that_do_not_fit_are_named(tmp_path, small_models, change, pattern):
    sd = dict(small_models[0].state_dict())
    if change == "drop":
        del sd["stages.1.act.bn.running_mean"]
    elif change == "add":
        sd["stages.0.extra.weight"] = torch.zeros(2)
    else:
        sd["stages.0.act.weight"] = torch.zeros(16, 1, 5, 5)
    path = save({"model": sd}, tmp_path / "c.pth")
    with pytest.raises(VnexportError, match=pattern):
        load_checkpoint(path, strides=(2, 2))
