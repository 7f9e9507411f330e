"""``vnexport fuse``: training checkpoint -> deploy checkpoint, verified, written or refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import EXIT_CHECK_FAILED
from ..fileio import OutputPlan
from ..fuse import fuse, provenance, save_deploy
from ..verify import Tolerance, describe_inputs, make_inputs
from .common import (Log, Result, Source, check_img_size, comparison_lines, default_output,
                     load)


@dataclass(frozen=True)
class FuseOptions:
    ckpt: Path
    output: Optional[Path] = None
    source: Source = field(default_factory=Source)
    allow_inexact: bool = False
    images: Optional[Path] = None
    n: int = 8
    img_size: int = 224
    seed: int = 0
    max_rel_err: float = 1e-4
    min_top1: float = 1.0
    no_verify: bool = False
    force: bool = False


def run(opts: FuseOptions, log: Log = Log()) -> Result:
    ckpt = opts.ckpt
    output = OutputPlan([ckpt, opts.images], opts.force).add(
        opts.output or default_output(ckpt, "_deploy.pth"), "--output")
    t0 = time.perf_counter()
    c = load(ckpt, opts.source, log)
    check_img_size(c.cfg, opts.img_size)
    log.echo(f"{ckpt.name}: {c.form} form, {c.variant}, act_learn {c.act_learn:.4g}")
    x = None if opts.no_verify or c.form == "deploy" else make_inputs(
        c.cfg, opts.n, opts.img_size, opts.seed, opts.images)
    if x is not None:
        inputs = describe_inputs(opts.n, opts.img_size, opts.seed, opts.images)
        log.echo(f"verifying on {inputs}")
    tol = Tolerance(max_rel=opts.max_rel_err, min_top1=opts.min_top1)
    res = fuse(c, x, tol, allow_inexact=opts.allow_inexact)
    if res.passthrough:
        log.echo(f"{ckpt.name}: already in deploy form; passed through unchanged (with vnexport "
                 "metadata). To verify it, run vnexport verify with the training checkpoint.")
    report = {"input": str(ckpt), "output": str(output), "form": c.form, "variant": c.variant,
              "act_learn": c.act_learn, "verification": None}
    if res.comparison is not None:
        for line in comparison_lines("verify deploy vs training", res.comparison):
            log.echo(line)
        report["verification"] = res.comparison.to_dict()
        if not res.comparison.passed:
            report["written"] = False
            return Result(report, [f"not written: {output}"], EXIT_CHECK_FAILED)
    elif not res.passthrough:
        log.echo("verification skipped (--no-verify)")
    meta = provenance(c, res.comparison, verification_inputs=None if x is None else {
        "n": len(x), "img_size": opts.img_size,
        "source": str(opts.images) if opts.images else f"seed {opts.seed}"})
    save_deploy(output, res.model, meta)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return Result(report, [f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB) in "
                           f"{report['seconds']:.1f} s"])
