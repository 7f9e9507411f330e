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
import torch

from .. import imagesets, ort
from ..budget import Budget, BudgetReport, quantize_within_budget
from ..errors import EXIT_CHECK_FAILED, VnexportError
from ..fileio import OutputPlan
from ..onnx_file import (check_fp32_classifier, input_geometry, load_onnx, save_onnx,
                         set_metadata)
from ..precision import (RANDOM_CALIBRATION_WARNING, PrecisionReport,
                         apply_precision, save_pending_cache, verify_precision)
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
    eval_images: Optional[Path] = None  # int8: labelled images (ImageFolder) judging top-1
    max_drop: Optional[float] = None  # int8: top-1 points the file may lose on eval_images
    equalize: Optional[bool] = None  # int8: None only if plain int8 misses max_drop

    def check(self, precision: str) -> None:
        """Refuse the int8 accuracy options where they do not apply."""
        given = [name for name, v in (("--eval-images", self.eval_images),
                                      ("--max-drop", self.max_drop),
                                      ("--equalize/--no-equalize", self.equalize))
                 if v is not None]
        if given and precision != "int8":
            raise VnexportError(f"{given[0]}: only for int8 (--int8), not {precision}")
        if self.max_drop is not None and self.eval_images is None:
            raise VnexportError("--max-drop: needs --eval-images DIR (labelled images, one "
                                "subfolder per class) to measure top-1 on")


def _lines(rep: PrecisionReport, log: Log, extra: list[str] = ()) -> None:
    for line in rep.lines() + list(extra):
        (log.defer if line.startswith("warning") else log.echo)(line)


def convert(fp32: onnx.ModelProto, precision: str, calib: np.ndarray, conv: Conversion,
            log: Log, budget: Optional[Budget] = None,
            ) -> tuple[Optional[onnx.ModelProto], PrecisionReport, Optional[BudgetReport]]:
    """``precision.apply_precision`` with the shared options, or for int8 with a ``budget``
    ``budget.quantize_within_budget`` (model None: not within it); report lines to ``log``."""
    if conv.calib_images is not None and len(calib) < conv.calib_n:
        log.echo(f"calibrating on all {len(calib)} images of {conv.calib_images}: fewer than "
                 f"--calib-n {conv.calib_n} asks for")
    elif conv.calib_images is not None:
        log.echo("calibrating on " + describe_inputs(conv.calib_n, calib.shape[-1], 0,
                                                     conv.calib_images))
    if budget is None and not conv.equalize:
        out, rep = apply_precision(fp32, precision, calib_x=calib, method=conv.method,
                                   fp16_io=conv.fp16_io, cache_path=conv.cache,
                                   calib_is_random=conv.calib_images is None,
                                   quantize_stem=conv.int8_stem, save_cache=False)
        _lines(rep, log)
        return out, rep, None
    apply_precision(fp32, "fp32", calib_x=calib)  # its checks (calibration count, batch)
    if budget is None:  # --equalize without labelled images: equalize, judge nothing
        budget = Budget(calib[:0], np.zeros(0, int), 0.0, None, True)
    q, brep, irep = quantize_within_budget(fp32, calib, budget, method=conv.method,
                                           cache_path=conv.cache,
                                           quantize_stem=conv.int8_stem)
    rep = PrecisionReport("int8", int8=irep)
    if conv.calib_images is None:
        rep.warnings.append(RANDOM_CALIBRATION_WARNING)
    _lines(rep, log, brep.lines() if len(budget.x) else brep.equalization_lines())
    if q is not None:
        set_metadata(q, {"vnexport.precision": "int8",
                         "vnexport.precision_report": json.dumps(rep.to_dict()),
                         "vnexport.int8_changes": json.dumps(brep.changes())})
    return q, rep, brep


def eval_budget(conv: Conversion, img_size: int, reference, label: str,
                log: Log) -> Optional[Budget]:
    """The labelled eval images and the reference's top-1 on them (``reference``: inputs ->
    logits, ``label`` says what it is), or None without --eval-images."""
    if conv.eval_images is None:
        return None
    data = imagesets.labelled_inputs(conv.eval_images, img_size)
    ref = np.asarray(reference(data.x))
    top1 = float((ref.argmax(1) == data.labels).mean() * 100.0)
    log.echo(f"int8 eval: {data.description}; {label}: top-1 {top1:.2f}%")
    return Budget(data.x, data.labels, top1, conv.max_drop, conv.equalize)


def int8_split(conv: Conversion, precision: str, images: Optional[Path], n: int,
               img_size: int) -> Optional[imagesets.Split]:
    """int8 with --calib-images or --eval-images: the calibration images spread over the
    folder's classes, and unless --images is given the verification images too, real ones
    held out from calibration where the folder has enough (None otherwise)."""
    if precision != "int8" or (conv.calib_images is None and conv.eval_images is None):
        return None
    s = imagesets.split(conv.calib_images, conv.calib_n,
                        None if images is not None else conv.eval_images,
                        0 if images is not None else n, img_size)
    if images is not None:
        s.verify = None
    return s


def calibration(conv: Conversion, split: Optional[imagesets.Split], img_size: int,
                fallback) -> np.ndarray:
    """The calibration inputs: the split's images where it has some, else ``fallback()``."""
    if split is not None and split.calib:
        return imagesets.load(split.calib, img_size).numpy()
    return fallback()


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
    conv.check(opts.precision)
    plan = OutputPlan([opts.onnx_file, opts.reference, opts.images, conv.calib_images,
                       conv.eval_images], opts.force)
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
    if chans not in (None, 3) and (opts.images or opts.conversion.calib_images
                                   or opts.conversion.eval_images):
        raise VnexportError(f"images need a 3-channel model, this one takes {chans}",
                            opts.onnx_file)
    return chans, size


def run(opts: QuantizeOptions, log: Log = Log()) -> Result:
    output = _check(opts)
    with ort.failures_named(opts.onnx_file):
        return _run(opts, output, log)


def _inputs(opts: QuantizeOptions, shape, size: int, split):
    """The verification inputs and their description: the split's real images, --images, or
    seeded random inputs."""
    if split is not None and split.verify:
        return imagesets.load(split.verify, size), split.description
    x = (image_inputs(opts.images, size, opts.n) if opts.images
         else random_inputs(shape, opts.n, size, opts.seed))
    return x, describe_inputs(opts.n, size, opts.seed, opts.images)


def _reference(opts: QuantizeOptions, fp32, ckpt):
    """The reference as a function (inputs -> logits) and what it is, in words."""
    if ckpt is not None:
        model = ckpt.build_model()
        return (lambda xs: run_torch(model, torch.from_numpy(np.asarray(xs)))), \
            f"the fp32 training form of {opts.reference.name}"
    sess = ort.session(fp32, device="cpu", path=opts.onnx_file)
    return (lambda xs: ort.run(sess, np.asarray(xs), batch=8, path=opts.onnx_file)), \
        f"the fp32 ONNX file {opts.onnx_file.name} on ONNX Runtime (no --reference)"


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
    split = int8_split(conv, prec, opts.images, opts.n, size)
    x, source = _inputs(opts, shape, size, split)
    calib = calibration(conv, split, size, lambda: calibration_inputs(
        shape, prec, conv.calib_n, size, opts.seed, conv.calib_images, x))
    reference, against = _reference(opts, fp32, ckpt)
    budget = eval_budget(conv, size, reference, against, log)
    with log.step(f"{prec} conversion ({len(calib)} calibration inputs)"):
        out_model, rep, brep = convert(fp32, prec, calib, conv, log, budget)
    if out_model is None:
        return Result({"input": str(opts.onnx_file), "output": str(output), "precision": prec,
                       "conversion": rep.to_dict(), "int8_budget": brep.to_dict(),
                       "written": False}, [brep.failure(), f"not written: {output}"],
                      EXIT_CHECK_FAILED)
    ref = reference(x.numpy())
    log.echo(f"verifying {prec} on ONNX Runtime against {against}, on {source}")
    comps = verify_precision(fp32, out_model, rep, x.numpy(), ref,
                             tolerance_for(prec, max_rel=opts.max_rel_err,
                                           min_cosine=opts.min_cosine, min_top1=opts.min_top1))
    for line in precision_comparison_lines(comps):
        log.echo(line)
    return _write(opts, output, out_model, rep, comps, source, t0, brep)


def _write(opts: QuantizeOptions, output: Path, out_model, rep, comps, source: str,
           t0: float, brep: Optional[BudgetReport] = None) -> Result:
    comp = comps[opts.precision]
    report = {"input": str(opts.onnx_file), "output": str(output),
              "precision": opts.precision,
              "reference": str(opts.reference) if opts.reference else str(opts.onnx_file),
              "verification_inputs": source, "verification": comp.to_dict(),
              "conversion": rep.to_dict()}
    if brep is not None:
        report["int8_budget"] = brep.to_dict()
    if "fp16 emulated" in comps:
        report["verification_fp16_emulated"] = comps["fp16 emulated"].to_dict()
    if not all(c.passed for c in comps.values()):
        report["written"] = False
        return Result(report, [f"not written: {output}"], EXIT_CHECK_FAILED)
    set_metadata(out_model, {"vnexport.verification": json.dumps(comp.to_dict())})
    save_onnx(out_model, output)
    save_pending_cache(rep)  # the cache too only now, the run's verification passed
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    mib = output.stat().st_size / 2**20
    return Result(report, [f"wrote {output} ({mib:.1f} MiB, fp32 "
                           f"{opts.onnx_file.stat().st_size / 2**20:.1f} MiB) in "
                           f"{report['seconds']:.1f} s"])
