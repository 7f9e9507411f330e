"""``vnexport bench``: latency of one artifact at each batch size (warm-up, then median, p90,
p99 and images/s at the median), on PyTorch, ONNX Runtime or TensorRT."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from .. import bench as b
from .. import ort
from ..errors import VnexportError
from ..limits import MAX_BATCH, MAX_IMG_SIZE
from ..ort import check_input_shape
from ..runners import artifact_kind, load_runners
from .common import (Log, Result, Source, check_img_size, load, parse_ints,
                     torch_threads)


@dataclass(frozen=True)
class BenchOptions:
    artifact: Path
    batch: str = "1,8,32"
    runs: int = 50
    warmup: int = 10
    threads: Optional[int] = None
    device: str = "cpu"
    cuda_graphs: bool = False
    img_size: Optional[int] = None
    source: Source = field(default_factory=Source)


def _batches(opts: BenchOptions) -> tuple[int, ...]:
    batches = parse_ints(opts.batch, "--batch")
    if not batches or min(batches) < 1:
        raise VnexportError(f"--batch takes positive integers, got {opts.batch!r}")
    if max(batches) > MAX_BATCH:
        raise VnexportError(f"--batch: {max(batches)} is outside the allowed range "
                            f"1..{MAX_BATCH}")
    kind = artifact_kind(opts.artifact)
    if opts.cuda_graphs and (kind != "checkpoint" or opts.device != "cuda"):
        raise VnexportError("--cuda-graphs applies to checkpoints with --device cuda")
    return batches


def _geometry(runner, opts: BenchOptions, batches) -> tuple[int, int]:
    """(img_size, in_chans) to time at; an ONNX file's fixed sizes are checked."""
    img_size = opts.img_size
    if img_size is None:
        img_size = 224
        if runner.session is not None:
            shape = runner.session.get_inputs()[0].shape
            img_size = shape[-1] if isinstance(shape[-1], int) else 224
            if img_size > MAX_IMG_SIZE:
                raise VnexportError(f"its input is {shape[-2]}x{shape[-1]}, above the limit "
                                    f"of {MAX_IMG_SIZE}", opts.artifact)
    if runner.cfg is not None:
        check_img_size(runner.cfg, img_size)
    in_chans = runner.cfg.in_chans if runner.cfg is not None else 3
    if runner.session is not None:
        in_chans = runner.session.get_inputs()[0].shape[1]
        in_chans = in_chans if isinstance(in_chans, int) else 3
        check_input_shape(runner.session, (1, in_chans, img_size, img_size), opts.artifact)
        fixed = runner.session.get_inputs()[0].shape[0]
        if isinstance(fixed, int) and any(bs != fixed for bs in batches):
            raise VnexportError(f"the ONNX file has a fixed batch size of {fixed}; pass "
                                f"--batch {fixed}", opts.artifact)
    return img_size, in_chans


def _measure(runner, opts: BenchOptions, batches, img_size: int, in_chans: int,
             log: Log) -> list:
    def make_call(bs: int):
        x = b.random_batch(bs, img_size, in_chans)
        if runner.model is not None:
            return b.torch_call(runner.model, x, opts.device, opts.cuda_graphs)
        return b.ort_call(runner.session, x)

    results = []
    with tqdm(total=len(batches) * (opts.runs + opts.warmup), desc=opts.artifact.name,
              unit="run", disable=None, leave=False) as bar:
        if runner.kind != "engine":
            return b.bench_batches(make_call, batches, opts.runs, opts.warmup, tick=bar.update)
        for bs in batches:
            r = b.engine_latency(opts.artifact, bs, opts.runs, opts.warmup)
            bar.update(opts.runs + opts.warmup)
            if isinstance(r, str):
                log.echo(f"batch {bs}: skipped ({r})")
            else:
                results.append(r)
    return results


def run(opts: BenchOptions, log: Log = Log()) -> Result:
    """Measure; PyTorch's thread count is set to ``opts.threads`` meanwhile, then restored."""
    batches = _batches(opts)
    with torch_threads(opts.threads):
        return _run(opts, batches, log)


def _run(opts: BenchOptions, batches: tuple[int, ...], log: Log) -> Result:
    runner = load_runners([opts.artifact], lambda p: load(p, opts.source, log), opts.threads,
                          opts.device)[0]
    img_size, in_chans = _geometry(runner, opts, batches)
    threads = opts.threads or torch.get_num_threads()
    log.echo(f"{opts.artifact.name}: {runner.kind}, {runner.precision}, {runner.backend}, "
             f"threads {threads}, {img_size}x{img_size}, "
             f"{opts.warmup} warm-up + {opts.runs} timed runs per batch size")
    with ort.failures_named(opts.artifact):
        results = _measure(runner, opts, batches, img_size, in_chans, log)
    log.echo(f"{'batch':>5} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9}")
    for r in results:
        p99 = f"{r.p99_ms:>9.2f}" if r.p99_ms is not None else f"{'-':>9}"
        log.echo(f"{r.batch:>5} {r.median_ms:>10.2f} {r.p90_ms:>9.2f} {p99} "
                 f"{r.images_per_s:>9.1f}")
    return Result({**runner.describe(), "device": opts.device, "cuda_graphs": opts.cuda_graphs,
                   "threads": opts.threads or torch.get_num_threads(), "img_size": img_size,
                   "results": [r.to_dict() for r in results]})
