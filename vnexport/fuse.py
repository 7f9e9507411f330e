"""The fuse stage: training form -> deploy form, verified, written as the authors' deploy file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .checkpoint import Checkpoint
from .errors import VnexportError
from .fileio import atomic_output
from .model import VanillaNet
from .verify import FP32, Comparison, Tolerance, compare, run_torch


def check_exact(ckpt: Checkpoint) -> None:
    """Refuse a checkpoint whose paired convs do not merge exactly (act_learn < 1)."""
    if ckpt.form == "training" and ckpt.act_learn < 1.0:
        raise VnexportError(
            f"act_learn is {ckpt.act_learn:.4g} ({ckpt.act_learn_source}), below 1: the "
            "leaky_relu between each pair of 1x1 convs is not the identity yet, so they do not "
            "merge exactly and the deploy model would differ from the trained one. Fuse a "
            "checkpoint saved at or after decay_epochs, or pass --allow-inexact (the result "
            "is then judged by the verification tolerances)", ckpt.path)


def deploy_model(ckpt: Checkpoint, allow_inexact: bool = False) -> VanillaNet:
    """The deploy-form network of ``ckpt`` (folded and merged in
    ``model.FUSE_DTYPE``, float32, stored in the checkpoint's dtype)."""
    if ckpt.form == "deploy":
        return ckpt.build_model()
    if not allow_inexact:
        check_exact(ckpt)
    return ckpt.build_model().reparameterize()


def deploy_state_dict(model: VanillaNet) -> dict[str, torch.Tensor]:
    """The deploy state dict in the key order of a freshly built deploy-form network."""
    sd = model.state_dict()
    with torch.device("meta"):
        order = VanillaNet(model.cfg, deploy=True).state_dict().keys()
    return {k: sd[k].detach().contiguous().clone() for k in order}


@dataclass
class FuseResult:
    model: VanillaNet
    comparison: Comparison | None
    passthrough: bool


def verify_against_training(ckpt: Checkpoint, model: torch.nn.Module, x: torch.Tensor,
                            tol: Tolerance = FP32, reference=None) -> Comparison:
    """Run the training form (the independent path) and ``model`` on ``x`` and compare."""
    if reference is None:
        reference = run_torch(ckpt.build_model(), x)
    return compare(reference, run_torch(model, x), tol)


def provenance(ckpt: Checkpoint, comparison: Comparison | None, **extra) -> dict:
    meta = {
        "variant": ckpt.variant,
        "config": ckpt.cfg.to_dict(),
        "source": str(ckpt.path.name),
        "source_sha256": ckpt.sha256,
        "source_key": ckpt.key,
        "source_epoch": ckpt.epoch,
        "act_learn": ckpt.act_learn,
        "tool": "vnexport",
        "tool_version": __version__,
        "torch_version": str(torch.__version__),  # TorchVersion would not load weights_only
        "verification": None if comparison is None else comparison.to_dict(),
    }
    if ckpt.form == "deploy" and ckpt.meta:
        meta["upstream"] = {k: v for k, v in ckpt.meta.items() if k != "config"}
    meta.update(extra)
    return meta


def save_deploy(path: Path, model: VanillaNet, meta: dict, overwrite: bool = False) -> None:
    """The deploy checkpoint; an existing file only as planned (--force) or with
    ``overwrite``."""
    with atomic_output(path, replace=True if overwrite else None) as tmp:
        torch.save({"model": deploy_state_dict(model), "vnexport": meta}, tmp)


def fuse(ckpt: Checkpoint, x: torch.Tensor | None, tol: Tolerance = FP32,
         allow_inexact: bool = False) -> FuseResult:
    """Fuse and (when ``x`` is given and the file is a training checkpoint) verify."""
    model = deploy_model(ckpt, allow_inexact)
    if ckpt.form == "deploy":
        return FuseResult(model, None, passthrough=True)
    comparison = None if x is None else verify_against_training(ckpt, model, x, tol)
    return FuseResult(model, comparison, passthrough=False)
