"""``vnexport verify``: every artifact against the training checkpoint on the same inputs.

Like Polygraphy's ``Comparator.run``: the runners (``runners.py``) are loaded up front (bad
input exits 2, a missing runtime 3, before anything runs), run side by side on the same
inputs, and each is judged by the tolerance of its precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..errors import EXIT_CHECK_FAILED, VnexportError
from ..locate import locate as find_stage
from ..runners import load_runners
from ..verify import (Comparison, compare, describe_inputs, make_inputs, run_batched,
                      run_torch, tolerance_for)
from .common import Log, Result, Source, check_img_size, load, onnx_img_size, torch_threads


@dataclass
class ArtifactResult:
    path: str
    kind: str
    precision: str
    backend: str
    comparison: Comparison
    seconds: float
    location: object | None = None  # locate.Location, with --locate on a failing artifact
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.comparison.passed

    def to_dict(self) -> dict:
        return {"artifact": self.path, "kind": self.kind, "precision": self.precision,
                "backend": self.backend, "passed": self.passed,
                "seconds": round(self.seconds, 3), **{k: v for k, v in
                                                      self.comparison.to_dict().items()
                                                      if k != "passed"},
                "locate": None if self.location is None else self.location.to_dict(),
                "notes": self.notes}


def verify_runners(reference_model: torch.nn.Module, runners: list, x: torch.Tensor,
                   limits: dict | None = None, locate: bool = False,
                   threads: int | None = None) -> list[ArtifactResult]:
    """Run the training form and every runner (see ``runners.py``) on ``x`` and judge each by
    the tolerance of its precision (``limits``: max_rel / min_cosine / min_top1 overrides).
    With ``locate``, a failing deploy checkpoint or ONNX file is also searched stage by stage
    for the first stage that departs."""
    reference = run_torch(reference_model, x)
    results = []
    for runner in runners:
        tol = tolerance_for(runner.precision, **(limits or {}))
        t = time.perf_counter()
        out = run_batched(runner.fn, x)
        if out.shape != reference.shape:
            raise VnexportError(f"its output has shape {list(out.shape)}, the training "
                                f"checkpoint's {list(reference.shape)}: not the same network",
                                runner.path)
        comp = compare(reference, out, tol)
        res = ArtifactResult(path=str(runner.path), kind=runner.kind, precision=runner.precision,
                             backend=runner.backend, comparison=comp,
                             seconds=time.perf_counter() - t, notes=list(runner.notes))
        if locate and not comp.passed:
            res.location = find_stage(reference_model, runner, x, tol, threads=threads)
        results.append(res)
    return results


def results_table(results: list[ArtifactResult]) -> list[str]:
    """The terminal table: one row per artifact, every figure, and the verdict."""
    width = max([len("artifact")] + [len(Path(r.path).name) for r in results])
    lines = [f"{'artifact':<{width}}  {'kind':<8} {'prec':<5} {'max abs':>10} {'max rel':>10} "
             f"{'cosine':>12} {'top-1':>8}  result"]
    for r in results:
        c = r.comparison
        lines.append(f"{Path(r.path).name:<{width}}  {r.kind:<8} {r.precision:<5} "
                     f"{c.max_abs:>10.3e} {c.max_rel:>10.3e} {c.cosine:>12.8f} "
                     f"{c.top1_agreement:>8.2%}  {'PASS' if c.passed else 'FAIL'}")
    return lines


# --------------------------------------------------------------------------------------------
# the command


@dataclass(frozen=True)
class VerifyOptions:
    reference: Path
    artifacts: list[Path]
    source: Source = field(default_factory=Source)
    images: Optional[Path] = None
    n: int = 8
    img_size: Optional[int] = None  # None: an ONNX artifact's input size, else 224
    seed: int = 0
    max_rel_err: Optional[float] = None
    min_cosine: Optional[float] = None
    min_top1: Optional[float] = None
    locate: bool = False
    threads: Optional[int] = None


def _artifact_lines(results: list[ArtifactResult]) -> list[str]:
    lines = results_table(results)
    for r in results:
        name = Path(r.path).name
        lines += [f"{name}: note: {text}" for text in r.notes]
        if not r.passed:
            lines.append(f"{name}: FAIL ({r.precision} tolerance: "
                         f"{r.comparison.tolerance.describe()}): "
                         + "; ".join(r.comparison.failures))
        if r.location is not None:
            lines.append(f"{name}: locate: {r.location.summary()}")
    return lines


def run(opts: VerifyOptions, log: Log = Log()) -> Result:
    """Verify; PyTorch's thread count is set to ``opts.threads`` meanwhile, then restored."""
    with torch_threads(opts.threads):
        return _run(opts, log)


def _run(opts: VerifyOptions, log: Log) -> Result:
    src = opts.source
    ref = load(opts.reference, src, log)
    if ref.form != "training":
        raise VnexportError("the reference must be a training checkpoint (the independent path "
                            "every artifact is compared with); this is a deploy-form file",
                            opts.reference)
    artifact_source = Source(model=src.model, strides=src.strides, ada_pool=src.ada_pool,
                             trust=src.trust)
    runners = load_runners(opts.artifacts, lambda p: load(p, artifact_source, log),
                           threads=opts.threads)
    img_size = opts.img_size or onnx_img_size(runners) or 224
    check_img_size(ref.cfg, img_size)
    x = make_inputs(ref.cfg, opts.n, img_size, opts.seed, opts.images)
    source = describe_inputs(opts.n, img_size, opts.seed, opts.images)
    log.echo(f"reference {opts.reference.name}: training form, {ref.variant}, act_learn "
             f"{ref.act_learn:.4g}; verifying on {source}")
    results = verify_runners(ref.build_model(), runners, x,
                             {"max_rel": opts.max_rel_err, "min_cosine": opts.min_cosine,
                              "min_top1": opts.min_top1}, locate=opts.locate,
                             threads=opts.threads)
    for line in _artifact_lines(results):
        log.echo(line)
    failed = [Path(r.path).name for r in results if not r.passed]
    report = {
        "reference": {"path": str(opts.reference), "sha256": ref.sha256, "variant": ref.variant,
                      "config": ref.cfg.to_dict(), "act_learn": ref.act_learn},
        "inputs": {"n": len(x), "img_size": img_size, "random": opts.images is None,
                   "seed": None if opts.images else opts.seed,
                   "images": None if opts.images is None else str(opts.images),
                   "description": source},
        "artifacts": [r.to_dict() for r in results],
        "passed": not failed,
    }
    if failed:
        return Result(report, [f"verification FAILED: {', '.join(failed)}"], EXIT_CHECK_FAILED)
    return Result(report, [f"verification passed: {len(results)} artifact(s)"])
