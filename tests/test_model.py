"""The model in both forms: structure against the paper's table and the authors' key layout,
and reparameterize() against the training form it came from."""

from __future__ import annotations

import copy

import pytest
import torch

from vnexport.model import (
    VARIANTS,
    VanillaNet,
    VanillaNetConfig,
    check_img_size,
    multiply_adds,
    parameter_count,
    variant_name,
)
from vnexport.synthetic import random_training_model

# From the paper / the authors' README (shared/vanillanet.md): deploy params (M), GMACs at 224.
PAPER = {
    "vanillanet_5": (15.5, 5.2),
    "vanillanet_6": (32.5, 6.0),
    "vanillanet_7": (32.8, 6.9),
    "vanillanet_8": (37.1, 7.7),
    "vanillanet_9": (41.4, 8.6),
    "vanillanet_10": (45.7, 9.4),
    "vanillanet_11": (50.0, 10.3),
    "vanillanet_12": (54.3, 11.1),
    "vanillanet_13": (58.6, 11.9),
    "vanillanet_13_x1_5": (127.8, 26.5),
    "vanillanet_13_x1_5_ada_pool": (127.8, 48.9),
}

ALL = list(VARIANTS)


def test_every_published_variant_is_covered():
    assert set(PAPER) == set(VARIANTS)


@pytest.mark.parametrize("name", ALL)
def test_params_and_macs_match_the_paper(name):
    params_m, gmacs = PAPER[name]
    cfg = VARIANTS[name]
    assert round(parameter_count(cfg, deploy=True) / 1e6, 1) == params_m
    assert abs(multiply_adds(cfg, 224) / 1e9 - gmacs) <= 0.11


def expected_training_keys(cfg: VanillaNetConfig) -> set[str]:
    """The authors' training-form layout, written out from shared/vanillanet.md."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"stem1.0.weight", "stem1.0.bias", "stem2.0.weight", "stem2.0.bias",
            "stem2.2.weight", "cls1.2.weight", "cls1.2.bias", "cls2.0.weight", "cls2.0.bias"}
    keys |= {f"stem1.1.{b}" for b in bn} | {f"stem2.1.{b}" for b in bn}
    keys |= {f"stem2.2.bn.{b}" for b in bn} | {f"cls1.3.{b}" for b in bn}
    for i in range(len(cfg.strides)):
        p = f"stages.{i}"
        keys |= {f"{p}.conv1.0.weight", f"{p}.conv1.0.bias", f"{p}.conv2.0.weight",
                 f"{p}.conv2.0.bias", f"{p}.act.weight"}
        keys |= {f"{p}.conv1.1.{b}" for b in bn} | {f"{p}.conv2.1.{b}" for b in bn}
        keys |= {f"{p}.act.bn.{b}" for b in bn}
    return keys


def expected_deploy_keys(cfg: VanillaNetConfig) -> set[str]:
    keys = {"stem.0.weight", "stem.0.bias", "stem.1.weight", "stem.1.bias", "cls.2.weight",
            "cls.2.bias"}
    for i in range(len(cfg.strides)):
        keys |= {f"stages.{i}.conv.weight", f"stages.{i}.conv.bias",
                 f"stages.{i}.act.weight", f"stages.{i}.act.bias"}
    return keys


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("deploy", [False, True])
def test_state_dict_keys_follow_the_authors_layout(name, deploy):
    cfg = VARIANTS[name]
    with torch.device("meta"):
        sd = VanillaNet(cfg, deploy=deploy).state_dict()
    expected = expected_deploy_keys(cfg) if deploy else expected_training_keys(cfg)
    assert set(sd) == expected
    k = 2 * cfg.act_num + 1
    assert tuple(sd["stages.0.act.weight"].shape) == (cfg.dims[1], 1, k, k)


@pytest.mark.parametrize("name", ALL)
def test_reparameterize_matches_the_training_form(name):
    """Full-width variants at a reduced input size: the deploy form must reproduce the
    training form (the independent path) to fp32 rounding."""
    cfg = VARIANTS[name]
    size = 64 if cfg.is_ada_pool else cfg.stride_total
    train = random_training_model(cfg, seed=1)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = train(x)
        deploy = copy.deepcopy(train).reparameterize()
        out = deploy(x)
    assert deploy.deploy and not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    rel = ((out - ref).abs().max() / ref.abs().max()).item()
    assert rel < 1e-5, rel
    assert torch.equal(out.argmax(1), ref.argmax(1))


@pytest.mark.parametrize("act_learn", [0.0, 0.5])
def test_reparameterize_is_not_exact_below_act_learn_one(act_learn):
    """The reason fuse refuses act_learn < 1: the leaky_relu between the convs is not linear."""
    cfg = VanillaNetConfig((8, 16, 32), (2, 2), num_classes=10)
    train = random_training_model(cfg, seed=2)
    train.set_act_learn(act_learn)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = train(x)
        out = copy.deepcopy(train).reparameterize()(x)
    assert ((out - ref).abs().max() / ref.abs().max()).item() > 1e-3


def test_forward_stages_names_and_final_output():
    cfg = VanillaNetConfig((8, 16, 32), (2, 1), num_classes=5)
    m = random_training_model(cfg, seed=3)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        outs = m.forward_stages(x)
        full = m(x)
    assert [n for n, _ in outs] == ["stem", "stages.0", "stages.1", "head"]
    assert torch.equal(outs[-1][1], full)


def test_custom_config_validation():
    with pytest.raises(ValueError, match="strides"):
        VanillaNetConfig((8, 16), (2, 2))
    with pytest.raises(ValueError, match="1 or 2"):
        VanillaNetConfig((8, 16), (3,))
    with pytest.raises(ValueError, match="ada_pool"):
        VanillaNetConfig((8, 16, 32), (2, 2), ada_pool=(0,))


@pytest.mark.parametrize("name", ALL)
def test_variant_name_round_trip(name):
    cfg = VARIANTS[name]
    assert variant_name(cfg) == name
    assert VanillaNetConfig.from_dict(cfg.to_dict()) == cfg
    assert variant_name(cfg.replace(dims=cfg.dims[:-1] + (8,))) is None


def test_img_size_rules():
    assert check_img_size(VARIANTS["vanillanet_5"], 224) is None
    assert "multiple of 32" in check_img_size(VARIANTS["vanillanet_5"], 100)
    assert check_img_size(VARIANTS["vanillanet_13_x1_5_ada_pool"], 224) is None
