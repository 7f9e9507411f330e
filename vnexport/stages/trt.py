"""``vnexport trt``: a strongly typed TensorRT engine from an ONNX file or a checkpoint (the onnx
stage's export on the way), verified, written with its provenance or refused.

Order of checks: options and input files first (exit 2, also without TensorRT), then the
runtime (exit 3 with one line: the builder, datacenter TensorRT >= 10.12 with a CUDA GPU or
TensorRT-RTX, Polygraphy; and a CUDA GPU to run the engine on unless --no-verify), then the
build.
The TensorRT mechanisms (builders, engines, provenance) are in ``vnexport/trt.py``; they are
called through the module (``trt.build_engine``) so that tests can stand in for the GPU.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import numpy as np

from .. import ort, trt
from ..errors import EXIT_CHECK_FAILED, VnexportError
from ..fileio import OutputPlan
from ..fuse import check_exact
from ..onnx_export import export_onnx
from ..onnx_file import (OnnxInput, detect_precision, load_onnx, read_onnx_input,
                         stored_max_batch)
from ..trt import BuildOptions, provenance_path, resolve_profile
from ..verify import compare, make_inputs, run_torch, tolerance_for
from .common import Log, Result, Source, check_img_size, comparison_lines, default_output, load


# ------------------------------------------------------------------------------------------
# from a checkpoint: the ONNX stage on the way


def export_for_engine(ckpt, onnx_path: Path, precision: str, options: BuildOptions,
                      img_size: int, opset: int = 17, allow_inexact: bool = False) -> Path:
    """Write the ONNX file an engine of ``options``' batch range is built from."""
    dynamic = any(v is not None and v != 1 for v in
                  (options.min_batch, options.opt_batch, options.max_batch))
    kw: dict[str, Any] = dict(opset=opset, img_size=img_size, batch=options.min_batch or 1,
                              dynamic_batch=dynamic, allow_inexact=allow_inexact)
    if dynamic:
        kw["batch"] = 1
        kw["max_batch"] = options.max_batch or options.opt_batch or options.min_batch
    export_onnx(ckpt, onnx_path, precision=precision, **kw)
    return onnx_path


# ------------------------------------------------------------------------------------------
# the whole stage, as `vnexport trt` runs it once the runtime is known to be there


@dataclass(frozen=True)
class VerifySpec:
    """What the engine is checked on: ``n`` inputs (seeded, or ``images``) and the tolerance
    overrides (None: the precision's defaults)."""

    n: int = 8
    seed: int = 0
    images: Path | None = None
    max_rel: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None


def _inputs_for_onnx(inp: OnnxInput, spec: VerifySpec, size: int):
    """Verification inputs shaped for an ONNX file's input (no checkpoint at hand)."""
    # make_inputs reads only the channel count of the config
    return make_inputs(SimpleNamespace(in_chans=inp.shape[1]), spec.n, size, spec.seed,
                       spec.images)


def _checker(ref: np.ndarray, x, tol, onnx_path: Path):
    """``check`` for build_engine: run the engine on ``x`` and compare with ``ref``."""
    def check(run):
        out = run(x.numpy())
        if out.shape != ref.shape:
            raise VnexportError(f"the engine's output shape {out.shape[1:]} differs from the "
                                f"reference's {ref.shape[1:]}: was this file exported from "
                                "that checkpoint?", onnx_path)
        return compare(ref, out, tol)

    return check


def build_from_source(source: Path, output: Path, precision: str, options: BuildOptions, *,
                      ckpt=None, from_onnx: bool, runtime: dict,
                      verify: VerifySpec | None = VerifySpec(), img_size: int | None = None,
                      opset: int = 17, keep_onnx: Path | None = None,
                      allow_inexact: bool = False, echo: Callable[[str], None] = print,
                      note: Callable[[str], None] = print) -> tuple[trt.BuildResult, str | None]:
    """Export (a checkpoint source) or take (an ONNX source) the ONNX file, build the engine,
    verify it and write it. ``ckpt`` is the source checkpoint, or with an ONNX source the
    ``--reference`` checkpoint (None: verify against ONNX Runtime on the same file).
    Returns the build result and what the engine was compared with."""
    with tempfile.TemporaryDirectory() as tmp:
        if from_onnx:
            onnx_path = source
        else:
            onnx_path = keep_onnx or Path(tmp) / f"{source.name.split('.')[0]}_{precision}.onnx"
            echo(f"{source.name}: {ckpt.form} form, {ckpt.variant}; exporting {precision} ONNX")
            export_for_engine(ckpt, onnx_path, precision, options, img_size or 224, opset,
                              allow_inexact)
        model = load_onnx(onnx_path, external_data=False)
        inp = read_onnx_input(onnx_path, model)
        echo("profile: " + resolve_profile(inp, options, img_size, onnx_path,
                                           stored_max_batch(model)).origin)
        del model
        size = img_size or inp.shape[2]
        check = label = vin = None
        if verify is not None:
            if ckpt is not None:
                x = make_inputs(ckpt.cfg, verify.n, size, verify.seed, verify.images)
                ref = run_torch(ckpt.build_model(), x)
                label = f"{ckpt.form} form of {ckpt.path.name} (PyTorch fp32)"
            else:
                x = _inputs_for_onnx(inp, verify, size)
                ref = ort.run(ort.session(onnx_path, device="cpu"), x.numpy(), batch=8,
                              path=onnx_path)
                label = f"ONNX Runtime (CPU) on {onnx_path.name}"
                note("note: no checkpoint given (--reference): verifying against ONNX Runtime "
                     "on the same file, not against the training form")
            tol = tolerance_for(precision, max_rel=verify.max_rel, min_cosine=verify.min_cosine,
                                min_top1=verify.min_top1)
            vin = {"n": len(x), "img_size": size,
                   "source": str(verify.images) if verify.images else f"seed {verify.seed}"}
            check = _checker(ref, x, tol, onnx_path)

        echo(f"building a strongly typed {precision} engine from {onnx_path.name} ...")
        res = trt.build_engine(onnx_path, output, options, img_size=img_size, check=check,
                           reference=label, verification_inputs=vin, runtime=runtime,
                           source_checkpoint=None if ckpt is None else {
                               "file": ckpt.path.name, "sha256": ckpt.sha256,
                               "variant": ckpt.variant, "form": ckpt.form})
    return res, label


# ------------------------------------------------------------------------------------------
# the command


@dataclass(frozen=True)
class TrtOptions:
    source: Path
    output: Optional[Path] = None
    precision: Optional[str] = None  # with a checkpoint; with an ONNX file it must match
    build: BuildOptions = field(default_factory=BuildOptions)
    reference: Optional[Path] = None
    ckpt_source: Source = field(default_factory=Source)
    allow_inexact: bool = False
    opset: int = 17
    keep_onnx: Optional[Path] = None
    img_size: Optional[int] = None
    verify: Optional[VerifySpec] = field(default_factory=VerifySpec)  # None: --no-verify
    force: bool = False


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def _check_onnx_source(opts: TrtOptions, log: Log):
    """(precision, reference checkpoint or None, default output) of an ONNX source."""
    source = opts.source
    model = load_onnx(source, external_data=False)  # parsed once for both checks below
    prec = detect_precision(source, model)
    if opts.precision is not None and opts.precision != prec:
        raise VnexportError(f"--precision {opts.precision} given, but the file is {prec}; "
                            "the precision comes from the ONNX file", source)
    resolve_profile(read_onnx_input(source, model), opts.build, opts.img_size, source,
                    stored_max_batch(model))
    ckpt = None
    if opts.reference is not None:
        ckpt = load(opts.reference, opts.ckpt_source, log)
    return prec, ckpt, source.with_suffix(".engine")


def _check_inputs(opts: TrtOptions, log: Log):
    """Every check that needs no runtime (exit 2): (precision, checkpoint, output, keep_onnx)."""
    source, keep_onnx = opts.source, opts.keep_onnx
    if not source.is_file():
        raise VnexportError("no such file", source)
    from_onnx = _is_onnx(source)
    if from_onnx and (keep_onnx or opts.allow_inexact):
        raise VnexportError("--keep-onnx and --allow-inexact apply to a checkpoint source only")
    if not from_onnx and opts.reference is not None:
        raise VnexportError("--reference applies to an ONNX source; a checkpoint source is "
                            "itself the reference")
    if from_onnx:
        prec, ckpt, default_out = _check_onnx_source(opts, log)
    else:
        prec = opts.precision or "fp32"
        ckpt = load(source, opts.ckpt_source, log)
        check_img_size(ckpt.cfg, opts.img_size or 224)
        if not opts.allow_inexact:
            check_exact(ckpt)
        default_out = default_output(source, f"_{prec}.engine")
    plan = OutputPlan([source, opts.reference, opts.verify and opts.verify.images], opts.force)
    keep_onnx = plan.add(keep_onnx, "--keep-onnx")
    output = plan.add(opts.output or default_out, "--output")
    plan.add(provenance_path(output), "--output (its provenance JSON)")
    plan.add(opts.build.timing_cache, "--timing-cache", update=True)
    return prec, ckpt, output, keep_onnx


def runtime_line(runtime: dict) -> str:
    """Which builder builds, on what, for which GPUs."""
    gpu = runtime.get("gpu")
    if runtime.get("builder") == "tensorrt-rtx":
        targets = runtime.get("compute_capabilities")
        return (f"TensorRT-RTX {runtime['builder_version']} (builds on the CPU) for "
                + (f"compute capability {', '.join(targets)}" if targets else
                   "its default targets (8.0, 8.6, 8.9, 12.0 and later)")
                + (f"; GPU here: {gpu['name']}" if gpu else "; no CUDA GPU here"))
    return (f"TensorRT {runtime['tensorrt']} on {gpu['name']} "
            f"(compute capability {gpu['compute_capability']})")


def run(opts: TrtOptions, log: Log = Log()) -> Result:
    t0 = time.perf_counter()
    opts.build.validate()
    prec, ckpt, output, keep_onnx = _check_inputs(opts, log)
    # the runtime (exit 3): the builder, and a GPU to run the engine on unless --no-verify
    runtime = trt.require_builder(opts.build, need_gpu=opts.verify is not None)
    log.echo(runtime_line(runtime))
    res, ref_label = build_from_source(
        opts.source, output, prec, opts.build, ckpt=ckpt, from_onnx=_is_onnx(opts.source),
        runtime=runtime, verify=opts.verify, img_size=opts.img_size, opset=opts.opset,
        keep_onnx=keep_onnx, allow_inexact=opts.allow_inexact, echo=log.echo, note=log.note)
    prov = res.provenance
    log.echo(f"built in {prov['build_seconds']:.1f} s; profile min {prov['profile']['min']} opt "
             f"{prov['profile']['opt']} max {prov['profile']['max']}")
    report = {"source": str(opts.source), "output": str(output), "precision": prec,
              "written": res.written, "provenance": prov}
    if res.comparison is not None:
        for line in comparison_lines(f"verify engine vs {ref_label}", res.comparison):
            log.echo(line)
    else:
        log.echo("NOT VERIFIED: the engine was not run (--no-verify"
                 + ("" if runtime.get("gpu") else "; no CUDA GPU here") + ")")
    if not res.written:
        return Result(report, [f"not written: {output}"], EXIT_CHECK_FAILED)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return Result(report, [f"wrote {output} ({res.engine_bytes / 2**20:.1f} MiB) and "
                           f"{provenance_path(output).name} in {report['seconds']:.1f} s"])
