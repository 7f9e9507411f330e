"""``vnexport demo``: every pipeline stage on a built-in, seeded training checkpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .checkpoint import load_checkpoint
from .errors import VnexportError
from .model import VARIANTS, check_img_size
from .synthetic import write_training_checkpoint
from .verify import FP32, make_inputs


@dataclass
class StageResult:
    stage: str
    artifact: str
    seconds: float
    passed: bool | None  # None: skipped
    detail: str
    extra: dict = field(default_factory=dict)


def run_demo(workdir: Path, variant: str, img_size: int, n: int,
             echo: Callable[[str], None]) -> bool:
    if variant not in VARIANTS:
        raise VnexportError(f"--variant: unknown variant {variant!r} ({', '.join(VARIANTS)})")
    cfg = VARIANTS[variant]
    reason = check_img_size(cfg, img_size)
    if reason:
        raise VnexportError(f"--img-size: {reason}")
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / f"checkpoint-{variant}.pth"
    t = time.perf_counter()
    write_training_checkpoint(ckpt_path, cfg, seed=0, epoch=299)
    echo(f"[demo] wrote {ckpt_path}: training-script format (model, model_ema, epoch 299, args), "
         f"{ckpt_path.stat().st_size / 2**20:.0f} MiB, in {time.perf_counter() - t:.1f} s")
    ckpt = load_checkpoint(ckpt_path)
    for line in ckpt.notes:
        echo(f"[demo] {line}")
    x = make_inputs(cfg, n=n, img_size=img_size, seed=0)
    from .verify import run_torch

    t = time.perf_counter()
    reference = run_torch(ckpt.build_model(), x)
    echo(f"[demo] training-form reference on {n} inputs at {img_size}: "
         f"{time.perf_counter() - t:.1f} s")
    results = [stage(ckpt, x, reference, workdir, echo) for stage in STAGES]
    echo("")
    echo(f"{'stage':<10} {'artifact':<44} {'time':>7}  result")
    for r in results:
        verdict = "skipped" if r.passed is None else ("PASS" if r.passed else "FAIL")
        echo(f"{r.stage:<10} {r.artifact:<44} {r.seconds:>6.1f}s  {verdict}: {r.detail}")
    return all(r.passed is not False for r in results)


def stage_fuse(ckpt, x, reference, workdir: Path, echo) -> StageResult:
    from .fuse import deploy_model, provenance, save_deploy, verify_against_training

    t = time.perf_counter()
    out = workdir / "deploy.pth"
    model = deploy_model(ckpt)
    comp = verify_against_training(ckpt, model, x, FP32, reference=reference)
    if comp.passed:
        save_deploy(out, model, provenance(ckpt, comp))
    return StageResult("fuse", str(out), time.perf_counter() - t, comp.passed, comp.summary(),
                       {"comparison": comp.to_dict()})


def _later_stages() -> list[Callable]:
    # Imported here: those modules import StageResult from this one.
    from .onnx_export import stage_onnx
    from .precision import stage_precision
    from .trt import demo_stage as stage_trt  # runs where TensorRT and a CUDA GPU exist

    return [stage_onnx, stage_precision, stage_trt]


# Every stage in pipeline order.
STAGES: list[Callable] = [stage_fuse, *_later_stages()]
