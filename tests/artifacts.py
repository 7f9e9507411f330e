"""Artifacts for the verify/bench tests: a small seeded network, its deploy file, its ONNX file,
and subtle defects planted in copies of them. The ONNX file comes from vnexport's own exporter
(``onnx_export.export_onnx``, dynamic batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vnexport.checkpoint import load_checkpoint
from vnexport.fuse import deploy_model, provenance, save_deploy
from vnexport.model import VanillaNetConfig
from vnexport.synthetic import write_training_checkpoint

# Four stages' worth of structure (stem, stages.0..2, head), 100 classes; runs in milliseconds
# at 32x32. Seeded, so the effect sizes below are fixed.
CONFIG = VanillaNetConfig(dims=(16, 32, 64, 128), strides=(2, 2, 1), act_num=1, num_classes=100)
STRIDES = "2,2,1"
IMG = 32


def export_onnx_file(ckpt_path: Path, path: Path, img_size: int = IMG,
                     strides=CONFIG.strides, batch: int | None = None) -> Path:
    """The checkpoint's deploy form as an ONNX file: input ``input`` [N, C, H, W], output
    ``logits``; a dynamic batch, or a fixed one of ``batch``."""
    from vnexport.onnx_export import export_onnx

    export_onnx(load_checkpoint(ckpt_path, strides=strides), path, img_size=img_size,
                batch=batch or 1, dynamic_batch=batch is None)
    return path


@dataclass
class SmallRun:
    training: Path  # training-script checkpoint (act_learn 1)
    deploy: Path  # vnexport fuse output
    onnx: Path


def make_small_run(folder: Path, seed: int = 0) -> SmallRun:
    training = write_training_checkpoint(folder / "checkpoint-best.pth", CONFIG, seed=seed,
                                         with_ema=False)
    ckpt = load_checkpoint(training, strides=CONFIG.strides)
    model = deploy_model(ckpt)
    deploy = folder / "deploy.pth"
    save_deploy(deploy, model, provenance(ckpt, None))
    return SmallRun(training, deploy, export_onnx_file(training, folder / "model.onnx"))


# --------------------------------------------------------------------------------------------
# defects (each moves the output by ~1e-3 relative; the tests check they stay subtle)


def onnx_scale_channel(src: Path, dst: Path, initializer: str, channel: int,
                       factor: float) -> Path:
    """(a) One output channel of one conv weight in the ONNX file scaled by ``factor``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    init = next(i for i in model.graph.initializer if i.name == initializer)
    w = numpy_helper.to_array(init).copy()
    w[channel] *= factor
    init.CopyFrom(numpy_helper.from_array(w, initializer))
    onnx.save(model, str(dst))
    return dst


def deploy_nudge(src: Path, dst: Path, key: str, index: int, delta: float) -> Path:
    """(b) One bias entry of one layer in a deploy checkpoint nudged by ``delta``."""
    obj = torch.load(src, weights_only=True)
    obj["model"][key][index] += delta
    torch.save(obj, dst)
    return dst


def training_with_small_bn_var(src: Path, dst: Path, layer: str, k: float) -> Path:
    """A training checkpoint whose BN after ``layer`` sees inputs ``k`` times smaller (conv
    weight, bias, running mean scaled by k, running var by k^2), as trained networks often
    have: the BN then normalises a small variance, where its eps matters."""
    obj = torch.load(src, weights_only=False)
    sd = obj["model"]
    sd[f"{layer}.0.weight"] *= k
    sd[f"{layer}.0.bias"] *= k
    sd[f"{layer}.1.running_mean"] *= k
    sd[f"{layer}.1.running_var"] *= k * k
    torch.save(obj, dst)
    return dst


def deploy_with_bn_eps(training: Path, dst: Path, eps: float) -> Path:
    """(c) A deploy checkpoint fused with the wrong BatchNorm eps (``eps`` instead of 1e-6,
    e.g. nn.BatchNorm2d's default 1e-5)."""
    ckpt = load_checkpoint(training, strides=CONFIG.strides)
    model = ckpt.build_model()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = eps
    model.reparameterize()
    save_deploy(dst, model, provenance(ckpt, None))
    return dst
