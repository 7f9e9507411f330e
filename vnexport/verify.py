"""Numerical equivalence: inputs, metrics, tolerances and the pass/fail decision.

Every artifact is compared with the training-form network (an independent path) on the same
inputs: max abs error, max relative error (to the reference output's scale), cosine similarity
and top-1 agreement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from . import images
from .errors import VnexportError
from .images import DEFAULT_CROP_PCT, Transform
from .labels import IMAGE_SUFFIXES, image_files, pick_images  # noqa: F401 (IMAGE_SUFFIXES: API)
from .model import IMAGENET_MEAN, IMAGENET_STD, VanillaNetConfig


@dataclass(frozen=True)
class Tolerance:
    """Limits an artifact must keep to. ``None`` means the figure is reported but not judged."""

    max_rel: float | None = 1e-4
    min_top1: float | None = 1.0
    min_cosine: float | None = None

    def describe(self) -> str:
        parts = []
        if self.max_rel is not None:
            parts.append(f"max rel err <= {self.max_rel:g}")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_top1 is not None:
            parts.append(f"top-1 agreement >= {self.min_top1:.2%}")
        return ", ".join(parts)


FP32 = Tolerance(max_rel=1e-4, min_top1=1.0)
@dataclass
class Comparison:
    n: int
    max_abs: float
    max_rel: float
    cosine: float
    top1_agreement: float
    tolerance: Tolerance
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        d["tolerance"] = asdict(self.tolerance)
        return d

    def summary(self) -> str:
        return (f"max abs err {self.max_abs:.3e}, max rel err {self.max_rel:.3e}, "
                f"cosine {self.cosine:.8f}, top-1 agreement {self.top1_agreement:.2%} "
                f"({self.n} inputs)")


def compare(reference, output, tol: Tolerance = FP32) -> Comparison:
    """Compare ``output`` with ``reference`` (both [N, classes]) and judge by ``tol``."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(output, dtype=np.float64)
    if ref.shape != out.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference {ref.shape}")
    diff = np.abs(ref - out)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    a, b = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos_each = np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 1.0)
    cosine = float(cos_each.min()) if len(cos_each) else 1.0
    top1 = float((a.argmax(axis=1) == b.argmax(axis=1)).mean()) if len(a) else 1.0
    if not np.isfinite(out).all():
        max_abs = max_rel = math.inf
        cosine = 0.0
    failures = []
    if tol.max_rel is not None and not max_rel <= tol.max_rel:
        failures.append(f"max rel err {max_rel:.3e} > {tol.max_rel:g}")
    if tol.min_cosine is not None and not cosine >= tol.min_cosine:
        failures.append(f"cosine {cosine:.8f} < {tol.min_cosine:g}")
    if tol.min_top1 is not None and not top1 >= tol.min_top1:
        failures.append(f"top-1 agreement {top1:.2%} < {tol.min_top1:.2%}")
    return Comparison(n=len(ref), max_abs=max_abs, max_rel=max_rel, cosine=cosine,
                      top1_agreement=top1, tolerance=tol, failures=failures)


# --------------------------------------------------------------------------------------------
# inputs


def random_inputs(cfg: VanillaNetConfig, n: int = 8, img_size: int = 224,
                  seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal images (the scale of ImageNet-normalised pixels)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, cfg.in_chans, img_size, img_size, generator=g)


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` (recursively, by suffix), sorted; only regular files
    (``labels.image_files``)."""
    return image_files(folder)


def preprocess(path: Path, img_size: int = 224, crop_pct: float = DEFAULT_CROP_PCT,
               mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """One image file as the network's input (``images.preprocess``: the authors' evaluation
    transform), as a torch tensor [3, size, size]."""
    return torch.from_numpy(images.preprocess(path, img_size, crop_pct, mean, std))


def image_inputs(folder: str | Path, img_size: int = 224, n: int | None = None) -> torch.Tensor:
    """``n`` images of ``folder`` (spread over its classes in an ImageFolder layout, else the
    first in sorted order; None: all), preprocessed, normalised by ImageNet's mean/std."""
    files, _ = pick_images(folder, n)
    return torch.from_numpy(images.normalize(images.load_images(files, Transform(img_size))))


def describe_inputs(n: int, img_size: int, seed: int, images: str | Path | None) -> str:
    """What a verification or calibration ran on, in words: how many inputs, random (seed)
    or which folder, and how many image files it holds against how many were used."""
    if images is None:
        return f"{n} seeded random inputs (seed {seed}) at {img_size}x{img_size}"
    files, how = pick_images(images, n)
    return f"{len(files)} images from {images} at {img_size}x{img_size} ({how})"


def make_inputs(cfg: VanillaNetConfig, n: int = 8, img_size: int = 224, seed: int = 0,
                images: str | Path | None = None) -> torch.Tensor:
    if n < 1:
        raise VnexportError(f"the number of verification inputs must be >= 1, got {n}")
    if images is not None:
        if cfg.in_chans != 3:
            raise VnexportError(f"--images needs a 3-channel model, this one has {cfg.in_chans}")
        return image_inputs(images, img_size, n)
    return random_inputs(cfg, n, img_size, seed)


def calibration_inputs(cfg, precision: str, n: int, img_size: int, seed: int = 0,
                       images: str | Path | None = None,
                       verify_x: torch.Tensor | None = None) -> np.ndarray:
    """The inputs a reduced-precision conversion measures its ranges on (the one policy):
    ``n`` images of ``images`` (spread over its classes in an ImageFolder layout, else the
    first ``n`` in sorted order); else, for fp16, the verification inputs ``verify_x``;
    else ``n`` seeded random inputs (seed ``seed + 1``, apart from the verification inputs').
    ``cfg`` needs only ``in_chans``."""
    if images is not None:
        return image_inputs(images, img_size, n).numpy()
    if precision == "fp16" and verify_x is not None:
        return verify_x.numpy()
    return random_inputs(cfg, n, img_size, seed + 1).numpy()


@torch.no_grad()
def run_torch(model: torch.nn.Module, x: torch.Tensor, batch: int = 8) -> np.ndarray:
    """Outputs of a PyTorch model in batches, as float64 numpy (channels-last on the CPU, which
    oneDNN runs about 20% faster for these convolutions)."""
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    outs = [model(x[i:i + batch]).double().numpy() for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def run_batched(fn: Callable[[np.ndarray], np.ndarray], x: torch.Tensor,
                batch: int = 8) -> np.ndarray:
    xs: Iterable[np.ndarray] = (x[i:i + batch].numpy() for i in range(0, len(x), batch))
    return np.concatenate([np.asarray(fn(b), dtype=np.float64) for b in xs])


# --------------------------------------------------------------------------------------------
# tolerances by the artifact's precision (vnexport verify)

FP16 = Tolerance(max_rel=None, min_top1=0.99, min_cosine=0.9999)
INT8 = Tolerance(max_rel=None, min_top1=0.98, min_cosine=None)
PRESETS: dict[str, Tolerance] = {"fp32": FP32, "fp16": FP16, "int8": INT8}


def tolerance_for(precision: str, max_rel: float | None = None, min_cosine: float | None = None,
                  min_top1: float | None = None, min_agreement: float | None = None) -> Tolerance:
    """The default tolerance of an artifact of ``precision`` against the fp32 training form,
    with any limit given explicitly replacing the preset's.

    fp32: max rel err 1e-4 and 100% top-1 agreement; fp16: cosine >= 0.9999 and top-1 >= 99%;
    int8: top-1 agreement >= 98%. All four figures are always reported. ``min_agreement`` is
    another name for ``min_top1`` (the CLI's --min-agreement).
    """
    if min_top1 is None:
        min_top1 = min_agreement
    if precision not in PRESETS:
        raise VnexportError(f"unknown precision {precision!r} ({', '.join(PRESETS)})")
    base = PRESETS[precision]
    return Tolerance(max_rel=base.max_rel if max_rel is None else max_rel,
                     min_top1=base.min_top1 if min_top1 is None else min_top1,
                     min_cosine=base.min_cosine if min_cosine is None else min_cosine)
