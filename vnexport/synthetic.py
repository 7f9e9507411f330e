"""Seeded training-form checkpoints in the training script's format, for the demo and tests.

The weights are random but scaled like a trained network's (fan-in normalised convs) and every
BatchNorm has non-trivial statistics, so that folding them is really exercised.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from .fileio import atomic_output
from .model import VanillaNet, VanillaNetConfig, build, variant_name


@torch.no_grad()
def randomize_(model: VanillaNet, seed: int = 0) -> VanillaNet:
    """Fill every parameter and BN buffer of ``model`` in place, reproducibly."""
    g = torch.Generator().manual_seed(seed)
    for name, t in sorted(model.state_dict().items()):
        if not t.is_floating_point():
            t.fill_(1000)  # num_batches_tracked
            continue
        leaf = name.rsplit(".", 1)[-1]
        if t.dim() == 4:
            fan_in = t.shape[1] * t.shape[2] * t.shape[3]
            t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(fan_in))
        elif leaf == "running_var":
            t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
        elif leaf == "running_mean":
            t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        elif leaf == "weight":  # BN gamma
            t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
        else:  # BN beta and conv biases
            t.copy_(torch.randn(t.shape, generator=g) * 0.05)
    return model


def random_training_model(cfg: VanillaNetConfig, seed: int = 0) -> VanillaNet:
    return randomize_(build(cfg, deploy=False, init=False), seed).eval()


def training_args(cfg: VanillaNetConfig, decay_epochs: int = 100, decay_linear: bool = True,
                  epochs: int = 300, input_size: int = 224) -> argparse.Namespace:
    """An argparse.Namespace like the authors' training script saves."""
    return argparse.Namespace(
        model=variant_name(cfg) or "custom", epochs=epochs, decay_epochs=decay_epochs,
        decay_linear=decay_linear, act_num=cfg.act_num, nb_classes=cfg.num_classes,
        input_size=input_size, batch_size=128, lr=3.5e-3, drop=cfg.drop_rate,
        model_ema=True, data_set="IMNET",
    )


def training_checkpoint(model: VanillaNet, epoch: int = 299, ema: VanillaNet | None = None,
                        args: argparse.Namespace | None = None, module_prefix: bool = False,
                        ) -> dict:
    """The dict the training script writes (``checkpoint-N.pth``)."""
    def sd(m: VanillaNet) -> dict:
        p = "module." if module_prefix else ""
        return {p + k: v.detach().clone() for k, v in m.state_dict().items()}

    ckpt = {
        "model": sd(model),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "weight_decay": 0.35,
                                                    "params": []}]},
        "epoch": epoch,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                   "growth_interval": 2000, "_growth_tracker": 0},
        "args": args if args is not None else training_args(model.cfg),
    }
    if ema is not None:
        ckpt["model_ema"] = sd(ema)
    return ckpt


def write_training_checkpoint(path: str | Path, cfg: VanillaNetConfig, seed: int = 0,
                              epoch: int = 299, with_ema: bool = True, overwrite: bool = False,
                              **kw) -> Path:
    """A training-script checkpoint with ``model`` and (a different) ``model_ema``; an
    existing file is replaced only with ``overwrite``."""
    path = Path(path)
    model = random_training_model(cfg, seed)
    ema = random_training_model(cfg, seed + 1) if with_ema else None
    with atomic_output(path, replace=True if overwrite else None) as tmp:
        torch.save(training_checkpoint(model, epoch=epoch, ema=ema, **kw), tmp)
    return path
