"""``vnexport demo``: every stage on a built-in, seeded training checkpoint, in pipeline order.

Each step calls the same code as its command (``stages.onnx.export_graph`` / ``verify``,
``stages.trt.export_for_engine`` with ``trt.build_engine``, ``fuse``'s mechanisms), on one
shared set of inputs and one training-form reference.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from .. import ort, trt
from ..checkpoint import load_checkpoint
from ..errors import EXIT_CHECK_FAILED, EXIT_OK, MissingRuntimeError, VnexportError
from ..fileio import OutputPlan
from ..fuse import deploy_model, provenance, save_deploy, verify_against_training
from ..model import VARIANTS, check_img_size
from ..onnx_export import fp32_onnx_from_deploy, verification_metadata
from ..onnx_file import PRECISIONS, op_inventory, save_onnx, set_metadata
from ..precision import apply_precision, latencies_ms, verify_precision
from ..synthetic import write_training_checkpoint
from ..verify import FP32, compare, make_inputs, random_inputs, run_torch, tolerance_for
from . import onnx as onnx_stage
from .common import Log, Result
from .trt import export_for_engine


@dataclass
class StageResult:
    stage: str
    artifact: str
    seconds: float
    passed: bool | None  # None: skipped, or built but not run (``built``)
    detail: str
    extra: dict = field(default_factory=dict)
    built: bool = False  # an artifact was written (with passed None: not verified)
    # a stage that may be skipped or left unverified (TensorRT: no runtime, or no GPU to run the
    # engine on); any other stage that is not PASS fails the demo
    optional: bool = False

    @property
    def verdict(self) -> str:
        if self.passed is None:
            if self.built:
                return "NOT RUN"
            return "skipped" if self.optional else "FAIL"
        return "PASS" if self.passed else "FAIL"


def stage_fuse(ckpt, x, reference, workdir: Path, echo) -> StageResult:
    t = time.perf_counter()
    out = workdir / "deploy.pth"
    model = deploy_model(ckpt)
    comp = verify_against_training(ckpt, model, x, FP32, reference=reference)
    if comp.passed:
        save_deploy(out, model, provenance(ckpt, comp), overwrite=True)  # the demo's own
    return StageResult("fuse", str(out), time.perf_counter() - t, comp.passed, comp.summary(),
                       {"comparison": comp.to_dict()})


def stage_onnx(ckpt, x, reference: np.ndarray, workdir: Path, echo) -> StageResult:
    """Export with a dynamic batch, verify on ONNX Runtime, write model.onnx."""
    t = time.perf_counter()
    out = Path(workdir) / "model.onnx"
    img_size = int(x.shape[-1])
    proto = onnx_stage.export_graph(ckpt, onnx_stage.Export(img_size=img_size,
                                                             dynamic_batch=True))
    inventory = op_inventory(proto)
    echo("[demo] onnx graph: " + ", ".join(f"{op} {k}" for op, k in inventory.items()))
    v = onnx_stage.verify(ckpt, proto, proto, None, "fp32", x, onnx_stage.Check(), None,
                          reference=reference)
    if v.passed:
        set_metadata(proto, verification_metadata(v.comparisons, v.reference, {
            "n": len(x), "img_size": img_size, "source": "seed 0"}), sort_keys=True)
        save_onnx(proto, out, overwrite=True)
    comp = v.comparisons["CPUExecutionProvider"]
    return StageResult("onnx", str(out), time.perf_counter() - t, v.passed,
                       f"ONNX Runtime CPU: {comp.summary()}",
                       {"verification": v.to_dict(True), "op_inventory": inventory})


def stage_precision(ckpt, x, reference, workdir: Path, echo: Callable[[str], None]):
    """Demo stage: fp32, fp16 and int8 ONNX side by side (size, latency, agreement)."""
    t0 = time.perf_counter()
    img_size = int(x.shape[-1])
    fp32 = fp32_onnx_from_deploy(deploy_model(ckpt), img_size)
    calib = random_inputs(ckpt.cfg, n=16, img_size=img_size, seed=1).numpy()
    ok, extra, sessions = True, {}, {}
    for precision in PRECISIONS:
        model, rep = apply_precision(fp32, precision, calib_x=calib, calib_is_random=True,
                                     cache_path=workdir / "calibration-cache.json")
        path = workdir / f"model_{precision}.onnx"
        onnx.save(model, path)
        sessions[precision] = ort.session(path, threads=2, device="cpu")
        comps = verify_precision(fp32, model, rep, x.numpy(), reference, tolerance_for(precision))
        ok &= all(c.passed for c in comps.values())
        extra[precision] = {"file": str(path), "mib": path.stat().st_size / 2**20,
                            "comparison": comps[precision].to_dict(), "report": rep.to_dict()}
        if "fp16 emulated" in comps:  # float16 activations (ORT CPU computes in float32)
            extra[precision]["comparison_emulated"] = comps["fp16 emulated"].to_dict()
    times = latencies_ms(sessions, x[:1].numpy())
    echo("[demo] precision: ONNX Runtime CPU, 2 threads, batch 1, median of 20 interleaved runs; "
         "agreement vs the training form (int8 calibrated on random inputs: a speed demo, not "
         "an accuracy one; fp16 also checked with float16 activations emulated)")
    for precision in PRECISIONS:
        e = extra[precision]
        e["ms"] = float(np.median(times[precision]))
        comps = [e["comparison"]] + ([e["comparison_emulated"]] if precision == "fp16" else [])
        passed = all(c["passed"] for c in comps)
        echo(f"[demo]   {precision:<5} {e['mib']:>8.1f} MiB {e['ms']:>9.2f} ms  cosine "
             f"{min(c['cosine'] for c in comps):.6f}  top-1 "
             f"{min(c['top1_agreement'] for c in comps):>7.2%}  {'PASS' if passed else 'FAIL'}")
    speedup = extra["fp32"]["ms"] / extra["int8"]["ms"]
    detail = (f"fp16 {extra['fp16']['mib']:.0f} MiB, int8 {extra['int8']['mib']:.0f} MiB "
              f"{speedup:.2f}x fp32 speed")
    return StageResult("precision", str(workdir / "model_{fp32,fp16,int8}.onnx"),
                       time.perf_counter() - t0, ok, detail, extra)


def _demo_builder(options) -> tuple[dict | None, str | None]:
    """The runtime the demo's engine is built with: the auto choice (datacenter TensorRT with
    its GPU, or TensorRT-RTX), else TensorRT-RTX where installed (it needs no GPU); else None
    and exactly why."""
    try:
        return trt.require_builder(options, need_gpu=False), None
    except MissingRuntimeError as e:
        first = str(e)
    # trt.runtime.builder_installed: looked up where tests replace it (with resolve_builder)
    if options.builder == "auto" and trt.runtime.builder_installed("tensorrt-rtx"):
        try:
            return trt.require_builder(replace(options, builder="tensorrt-rtx"),
                                       need_gpu=False), None
        except MissingRuntimeError as e:
            first = f"{first}; TensorRT-RTX: {e}"
    return None, first


def stage_trt(ckpt, x, reference, workdir: Path, echo):
    """An fp32 engine of the demo checkpoint: built and verified against the training form
    where a builder and a CUDA GPU exist; built unverified (TensorRT-RTX, no GPU to run it on)
    where only a builder does; skipped, saying why, where none does."""
    t = time.perf_counter()
    out = workdir / "model_fp32.engine"
    options = trt.BuildOptions(min_batch=1, opt_batch=1, max_batch=len(x))
    runtime, why = _demo_builder(options)
    if runtime is None:
        return StageResult("trt", "-", 0.0, None, why,  # the table prints "skipped: <why>"
                           optional=True)
    for p in (out, trt.provenance_path(out)):
        p.unlink(missing_ok=True)
    tol = tolerance_for("fp32")
    check = None if runtime.get("gpu") is None else \
        (lambda run: compare(reference, run(x.numpy()), tol))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        onnx_path = export_for_engine(ckpt, Path(tmp) / "model.onnx", "fp32", options,
                                      img_size=x.shape[-1])
        res = trt.build_engine(onnx_path, out, options, check=check, runtime=runtime,
                               reference=f"training form of {ckpt.path.name}",
                               verification_inputs={"n": len(x), "img_size": x.shape[-1]})
    prov, comp, seconds = res.provenance, res.comparison, time.perf_counter() - t
    builder = f"{prov['builder']} {prov['builder_version']}"
    if comp is None:
        return StageResult("trt", str(out), seconds, None,
                           f"built with {builder}, NOT run: no CUDA GPU here to verify it on",
                           {"provenance": prov}, built=True, optional=True)
    gpu = prov.get("gpu") or {}
    return StageResult("trt", str(out), seconds, comp.passed,
                       f"{comp.summary()} on {gpu.get('name', '?')} ({builder})",
                       {"comparison": comp.to_dict(), "provenance": prov}, built=True)


def demo_passed(results: list[StageResult]) -> bool:
    """Every stage passed, or was skipped where skipping is allowed (``optional``)."""
    return all(r.passed is True or (r.passed is None and r.optional) for r in results)


# Every stage in pipeline order.
STAGES: list[Callable] = [stage_fuse, stage_onnx, stage_precision, stage_trt]


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path("vnexport-demo")
    variant: str = "vanillanet_5"
    img_size: int = 224
    n: int = 8


@dataclass
class DemoResult(Result):
    stages: list[StageResult] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = ["", f"{'stage':<10} {'artifact':<44} {'time':>7}  result"]
        for r in self.stages:
            detail = r.detail
            if r.passed is None and not r.optional:
                detail = f"skipped, which this stage may not be: {detail}"
            lines.append(f"{r.stage:<10} {r.artifact:<44} {r.seconds:>6.1f}s  {r.verdict}: "
                         f"{detail}")
        return lines


def run(opts: DemoOptions, log: Log = Log()) -> DemoResult:
    if opts.variant not in VARIANTS:
        raise VnexportError(f"--variant: unknown variant {opts.variant!r} "
                            f"({', '.join(VARIANTS)})")
    cfg, n, img_size, workdir = VARIANTS[opts.variant], opts.n, opts.img_size, opts.workdir
    reason = check_img_size(cfg, img_size)
    if reason:
        raise VnexportError(f"--img-size: {reason}")
    OutputPlan().add_folder(workdir, "--workdir")
    workdir.mkdir(parents=True, exist_ok=True)
    ckpt_path = workdir / f"checkpoint-{opts.variant}.pth"
    t = time.perf_counter()
    write_training_checkpoint(ckpt_path, cfg, seed=0, epoch=299, overwrite=True)
    log.echo(f"[demo] wrote {ckpt_path}: training-script format (model, model_ema, epoch 299, "
             f"args), {ckpt_path.stat().st_size / 2**20:.0f} MiB, in "
             f"{time.perf_counter() - t:.1f} s")
    ckpt = load_checkpoint(ckpt_path)
    for line in ckpt.notes:
        log.echo(f"[demo] {line}")
    x = make_inputs(cfg, n=n, img_size=img_size, seed=0)
    t = time.perf_counter()
    reference = run_torch(ckpt.build_model(), x)
    log.echo(f"[demo] training-form reference on {n} inputs at {img_size}: "
             f"{time.perf_counter() - t:.1f} s")
    results = []
    for stage in STAGES:
        with log.step(f"[demo] {stage.__name__.removeprefix('stage_')}"):
            results.append(stage(ckpt, x, reference, workdir, log.echo))
    ok = demo_passed(results)
    return DemoResult(exit_code=EXIT_OK if ok else EXIT_CHECK_FAILED, stages=results)
