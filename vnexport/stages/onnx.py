"""``vnexport onnx``: a checkpoint's deploy form as one ONNX file (fp32, fp16 or int8), verified
on ONNX Runtime against the training form, written with its metadata or refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import torch

from .. import imagesets
from ..checkpoint import Checkpoint
from ..errors import EXIT_CHECK_FAILED
from ..fileio import OutputPlan
from ..fuse import deploy_model
from ..onnx_export import (DEFAULT_OPSET, ada_pool_plans, check_options, expected_conv_count,
                           export_metadata, onnx_model_from_deploy, reference_label,
                           verification_metadata, verify_onnx)
from ..onnx_file import op_inventory, save_onnx, serialize, set_metadata
from ..precision import verify_precision
from ..verify import (calibration_inputs, describe_inputs, make_inputs, run_torch,
                      tolerance_for)
from .common import Log, Result, Source, default_output, load, precision_comparison_lines
from .quantize import Conversion, calibration, convert, eval_budget, int8_split


@dataclass(frozen=True)
class Export:
    """The graph to export: opset, input size, batch, simplification."""

    opset: int = DEFAULT_OPSET
    img_size: int = 224
    batch: int = 1
    dynamic_batch: bool = False
    max_batch: Optional[int] = None
    simplify: bool = True


@dataclass(frozen=True)
class Check:
    """What the file is verified on and how strictly (None: the precision's default)."""

    images: Optional[Path] = None
    n: int = 8
    seed: int = 0
    max_rel_err: Optional[float] = None
    min_cosine: Optional[float] = None
    min_top1: Optional[float] = None
    threads: Optional[int] = None
    no_verify: bool = False


@dataclass(frozen=True)
class OnnxOptions:
    ckpt: Path
    output: Optional[Path] = None
    export: Export = field(default_factory=Export)
    precision: str = "fp32"
    conversion: Conversion = field(default_factory=Conversion)
    source: Source = field(default_factory=Source)
    allow_inexact: bool = False
    check: Check = field(default_factory=Check)
    force: bool = False


@dataclass
class Verified:
    """What verification compared (``reference``) and its comparisons, by provider or check."""

    reference: str
    comparisons: dict

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons.values())

    def to_dict(self, fp32: bool) -> dict:
        if fp32:
            return {"reference": self.reference, "passed": self.passed, "providers": {
                p: c.to_dict() for p, c in self.comparisons.items()}}
        return {k: c.to_dict() for k, c in self.comparisons.items()}


def export_graph(c: Checkpoint, ex: Export, allow_inexact: bool = False) -> onnx.ModelProto:
    """The fp32 graph of ``c``'s deploy form (a training checkpoint fused on the way) with the
    export metadata."""
    proto = onnx_model_from_deploy(deploy_model(c, allow_inexact), opset=ex.opset,
                                   img_size=ex.img_size, batch=ex.batch,
                                   dynamic_batch=ex.dynamic_batch, simplify=ex.simplify)
    return set_metadata(proto, export_metadata(c, opset=ex.opset, img_size=ex.img_size,
                                               batch=ex.batch, dynamic_batch=ex.dynamic_batch,
                                               max_batch=ex.max_batch, simplify=ex.simplify),
                        sort_keys=True)


def _announce(c: Checkpoint, ex: Export, proto, export_s: float, log: Log) -> dict:
    inventory = op_inventory(proto)
    shape = ["batch" if ex.dynamic_batch else ex.batch, c.cfg.in_chans, ex.img_size,
             ex.img_size]
    log.echo(f"exported opset {ex.opset}, input 'input' {shape} float32 -> 'logits' "
             f"[{shape[0]}, {c.cfg.num_classes}], in {export_s:.1f} s")
    log.echo("graph: " + ", ".join(f"{op} {k}" for op, k in inventory.items())
             + f" ({sum(inventory.values())} nodes)")
    for line in ada_pool_plans(c.cfg, ex.img_size):
        log.echo(f"adaptive max pool {line}")
    return inventory


def verify(c: Checkpoint, fp32, proto, rep, precision: str, x: torch.Tensor, chk: Check,
           max_batch: Optional[int], reference: Optional[np.ndarray] = None) -> Verified:
    """The file on ONNX Runtime against the training form (``reference``: its outputs on
    ``x``, computed here when None): fp32 on every provider, fp16/int8 as ``quantize`` does."""
    tol = tolerance_for(precision, max_rel=chk.max_rel_err, min_cosine=chk.min_cosine,
                        min_top1=chk.min_top1)
    if precision == "fp32":
        v = verify_onnx(c, serialize(proto), x, tol, reference, max_batch=max_batch,
                        threads=chk.threads)
        return Verified(v.reference, v.comparisons)
    if reference is None:
        reference = run_torch(c.build_model(), x)
    return Verified(reference_label(c),
                    verify_precision(fp32, proto, rep, x.numpy(), reference, tol))


def _print_verified(v: Verified, log: Log) -> None:
    log.echo(f"reference: the {v.reference}")
    labels = {f"onnx ({k.replace('ExecutionProvider', '')})" if k.endswith("Provider") else k:
              comp for k, comp in v.comparisons.items()}
    for line in precision_comparison_lines(labels):
        log.echo(line)


def _start(opts: OnnxOptions, log: Log):
    conv = opts.conversion
    conv.check(opts.precision)
    plan = OutputPlan([opts.ckpt, opts.check.images, conv.calib_images, conv.eval_images],
                      opts.force)
    output = plan.add(opts.output or default_output(opts.ckpt, ".onnx"), "--output")
    plan.add(conv.cache, "--cache", update=True)
    c = load(opts.ckpt, opts.source, log)
    ex, chk = opts.export, opts.check
    check_options(c.cfg, opset=ex.opset, img_size=ex.img_size, batch=ex.batch,
                  dynamic_batch=ex.dynamic_batch, max_batch=ex.max_batch)
    split = int8_split(conv, opts.precision, chk.images, chk.n, ex.img_size)
    log.echo(f"{opts.ckpt.name}: {c.form} form, {c.variant}, act_learn {c.act_learn:.4g}")
    x = None
    if chk.no_verify:
        pass
    elif split is not None and split.verify:
        x = imagesets.load(split.verify, ex.img_size)
        log.echo(f"verifying on {split.description}")
    else:
        x = make_inputs(c.cfg, chk.n, ex.img_size, chk.seed, chk.images)
        log.echo(f"verifying on {describe_inputs(chk.n, ex.img_size, chk.seed, chk.images)}")
    return output, c, x, split


def _convert(opts: OnnxOptions, c: Checkpoint, fp32, x, split, log: Log):
    """The reduced-precision graph (None: int8 missed --max-drop), its report, the budget's."""
    ex, conv, prec = opts.export, opts.conversion, opts.precision
    calib = calibration(conv, split, ex.img_size, lambda: calibration_inputs(
        c.cfg, prec, conv.calib_n, ex.img_size, opts.check.seed, conv.calib_images, x))
    budget = eval_budget(conv, ex.img_size,
                         lambda xs: run_torch(c.build_model(), torch.from_numpy(xs)),
                         f"the fp32 {reference_label(c)}", log)
    with log.step(f"{prec} conversion ({len(calib)} calibration inputs)"):
        return convert(fp32, prec, calib, conv, log, budget)


def run(opts: OnnxOptions, log: Log = Log()) -> Result:
    t0 = time.perf_counter()
    output, c, x, split = _start(opts, log)
    ex, chk, prec = opts.export, opts.check, opts.precision
    proto = export_graph(c, ex, opts.allow_inexact)
    inventory = _announce(c, ex, proto, time.perf_counter() - t0, log)
    report = {"input": str(opts.ckpt), "output": str(output), "form": c.form,
              "variant": c.variant, "opset": ex.opset, "img_size": ex.img_size,
              "dynamic_batch": ex.dynamic_batch, "batch": None if ex.dynamic_batch else ex.batch,
              "max_batch": ex.max_batch, "simplified": ex.simplify, "op_inventory": inventory,
              "conv_count_expected": expected_conv_count(c.cfg), "verification": None}
    fp32, rep = proto, None
    if prec != "fp32":
        proto, rep, brep = _convert(opts, c, fp32, x, split, log)
        report["precision"] = rep.to_dict()
        if brep is not None:
            report["int8_budget"] = brep.to_dict()
        if proto is None:
            report["written"] = False
            return Result(report, [brep.failure(), f"not written: {output}"],
                          EXIT_CHECK_FAILED)
    if x is None:
        log.echo("verification skipped (--no-verify)")
    else:
        v = verify(c, fp32, proto, rep, prec, x, chk, ex.max_batch)
        report["verification"] = v.to_dict(prec == "fp32")
        _print_verified(v, log)
        if not v.passed:
            report["written"] = False
            return Result(report, [f"not written: {output}"], EXIT_CHECK_FAILED)
        inputs = {"n": len(x), "img_size": ex.img_size,
                  "source": str(chk.images) if chk.images else f"seed {chk.seed}"}
        set_metadata(proto, verification_metadata(v.comparisons, v.reference, inputs),
                     sort_keys=True)
    save_onnx(proto, output)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return Result(report, [f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, "
                           f"self-contained) in {report['seconds']:.1f} s"])
