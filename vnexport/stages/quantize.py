"""``vnexport quantize``: an fp16 or int8 (Q/DQ) ONNX file from an fp32 one, verified on ONNX
Runtime, written or refused. ``convert`` is also the reduced-precision step of the onnx stage."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import onnx

from .. import ort
from ..errors import EXIT_CHECK_FAILED, VnexportError
from ..fileio import OutputPlan
from ..onnx_file import (check_fp32_classifier, input_geometry, load_onnx, save_onnx,
                         set_metadata)
from ..precision import PrecisionReport, apply_precision, verify_precision
from ..limits import MAX_IMG_SIZE
from ..verify import (calibration_inputs, describe_inputs, image_inputs, random_inputs,
                      run_torch, tolerance_for)
from .common import (Log, Result, Source, check_img_size, load,
                     precision_comparison_lines)


@dataclass(frozen=True)
class Conversion:
    """How to reduce precision (``onnx --precision`` and ``quantize`` share these options)."""

    calib_images: Optional[Path] = None
    calib_n: int = 64
    method: str = "minmax"
    fp16_io: bool = False
    cache: Optional[Path] = None
    int8_stem: bool = False


def convert(fp32: onnx.ModelProto, precision: str, calib: np.ndarray, conv: Conversion,
            log: Log) -> tuple[onnx.ModelProto, PrecisionReport]:
    """``precision.apply_precision`` with the shared options; its report lines to ``log``."""
    out, rep = apply_precision(fp32, precision, calib_x=calib, method=conv.method,
                               fp16_io=conv.fp16_io, cache_path=conv.cache,
                               calib_is_random=conv.calib_images is None,
                               quantize_stem=conv.int8_stem)
    for line in rep.lines():
        (log.defer if line.startswith("warning") else log.echo)(line)
    return out, rep


@dataclass(frozen=True)
class QuantizeOptions:
    onnx_file: Path
    precision: str
    output: Path
    conversion: Conversion = field(default_factory=Conversion)
    reference: Optional[Path] = None
    source: Source = field(default_factory=Source)
    images: Optional[Path] = None
    n: int = 8
    seed: int = 0
    img_size: Optional[int] = None
    max_rel_err: Optional[float] = None  # None: the precision's default (as onnx, trt, verify)
    min_cosine: Optional[float] = None
    min_top1: Optional[float] = None
    force: bool = False


def _check(opts: QuantizeOptions) -> Path:
    if opts.precision == "fp32":
        raise VnexportError("--precision: quantize writes fp16 or int8 (the input is fp32)")
    conv = opts.conversion
    plan = OutputPlan([opts.onnx_file, opts.reference, opts.images, conv.calib_images],
                      opts.force)
    output = plan.add(opts.output, "--output")
    plan.add(conv.cache, "--cache", update=True)
    return output


def _geometry(fp32: onnx.ModelProto, opts: QuantizeOptions) -> tuple[Optional[int], int]:
    chans, size = input_geometry(fp32)
    if size is not None and size > MAX_IMG_SIZE:
        raise VnexportError(f"its input is {size}x{size}, above the limit of {MAX_IMG_SIZE}",
                            opts.onnx_file)
    if size is None:
        if opts.img_size is None:
            raise VnexportError("the input's height/width are symbolic: pass --img-size",
                                opts.onnx_file)
        size = opts.img_size
    elif opts.img_size is not None and opts.img_size != size:
        raise VnexportError(f"--img-size {opts.img_size} differs from the file's input size "
                            f"{size}", opts.onnx_file)
    if chans not in (None, 3) and (opts.images or opts.conversion.calib_images):
        raise VnexportError(f"images need a 3-channel model, this one takes {chans}",
                            opts.onnx_file)
    return chans, size


def run(opts: QuantizeOptions, log: Log = Log()) -> Result:
    output = _check(opts)
    with ort.failures_named(opts.onnx_file):
        return _run(opts, output, log)


def _run(opts: QuantizeOptions, output: Path, log: Log) -> Result:
    prec, conv = opts.precision, opts.conversion
    t0 = time.perf_counter()
    fp32 = check_fp32_classifier(load_onnx(opts.onnx_file), opts.onnx_file)
    chans, size = _geometry(fp32, opts)
    ckpt = None
    if opts.reference is not None:
        ckpt = load(opts.reference, opts.source, log)
        check_img_size(ckpt.cfg, size)
    shape = SimpleNamespace(in_chans=chans or (ckpt.cfg.in_chans if ckpt else 3))
    x = (image_inputs(opts.images, size, opts.n) if opts.images
         else random_inputs(shape, opts.n, size, opts.seed))
    source = describe_inputs(opts.n, size, opts.seed, opts.images)
    calib = calibration_inputs(shape, prec, conv.calib_n, size, opts.seed, conv.calib_images, x)
    if conv.calib_images is not None:
        log.echo(f"calibrating on {describe_inputs(conv.calib_n, size, 0, conv.calib_images)}")
    with log.step(f"{prec} conversion ({len(calib)} calibration inputs)"):
        out_model, rep = convert(fp32, prec, calib, conv, log)
    if ckpt is not None:
        ref = run_torch(ckpt.build_model(), x)
        against = f"the fp32 training form of {opts.reference.name}"
    else:
        ref = ort.run(ort.session(fp32, device="cpu", path=opts.onnx_file), x.numpy(), batch=8,
                      path=opts.onnx_file)
        against = (f"the fp32 ONNX file {opts.onnx_file.name} on ONNX Runtime "
                   "(no --reference)")
    log.echo(f"verifying {prec} on ONNX Runtime against {against}, on {source}")
    comps = verify_precision(fp32, out_model, rep, x.numpy(), ref,
                             tolerance_for(prec, max_rel=opts.max_rel_err,
                                           min_cosine=opts.min_cosine, min_top1=opts.min_top1))
    for line in precision_comparison_lines(comps):
        log.echo(line)
    return _write(opts, output, out_model, rep, comps, source, t0)


def _write(opts: QuantizeOptions, output: Path, out_model, rep, comps, source: str,
           t0: float) -> Result:
    comp = comps[opts.precision]
    report = {"input": str(opts.onnx_file), "output": str(output),
              "precision": opts.precision,
              "reference": str(opts.reference) if opts.reference else str(opts.onnx_file),
              "verification_inputs": source, "verification": comp.to_dict(),
              "conversion": rep.to_dict()}
    if "fp16 emulated" in comps:
        report["verification_fp16_emulated"] = comps["fp16 emulated"].to_dict()
    if not all(c.passed for c in comps.values()):
        report["written"] = False
        return Result(report, [f"not written: {output}"], EXIT_CHECK_FAILED)
    set_metadata(out_model, {"vnexport.verification": json.dumps(comp.to_dict())})
    save_onnx(out_model, output)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    mib = output.stat().st_size / 2**20
    return Result(report, [f"wrote {output} ({mib:.1f} MiB, fp32 "
                           f"{opts.onnx_file.stat().st_size / 2**20:.1f} MiB) in "
                           f"{report['seconds']:.1f} s"])
