"""``vnexport bench``: latency of one artifact at each batch size (warm-up, then median, p90,
p99 and images/s at the median), on PyTorch, ONNX Runtime or TensorRT."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from .. import bench as b
from .. import ort
from ..errors import EXIT_INTERRUPTED, VnexportError
from ..limits import MAX_BATCH, MAX_IMG_SIZE
from ..ort import check_input_shape
from ..runners import artifact_kind, load_runners
from ..timing import latency_stats
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


HEADER = f"{'batch':>5} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9}"
PROGRESS_EVERY_S = 10.0  # progress lines where stderr is not a terminal: at most this often
ESTIMATE_ABOVE_S = 60.0  # say how long a run will take when it is expected to take longer


def row_text(r) -> str:
    p99 = f"{r.p99_ms:>9.2f}" if r.p99_ms is not None else f"{'-':>9}"
    return f"{r.batch:>5} {r.median_ms:>10.2f} {r.p90_ms:>9.2f} {p99} {r.images_per_s:>9.1f}"


class Progress:
    """A bar on a terminal (tqdm); elsewhere a line on ``log.status`` at most every 10 s."""

    def __init__(self, log: Log, total: int, name: str):
        self.log, self.total, self.name, self.done = log, total, name, 0
        self.start = self.last = time.monotonic()
        self.bar = tqdm(total=total, desc=name, unit="run", leave=False) \
            if sys.stderr.isatty() else None
        self.batch = None

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update()
            return
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.log.status(f"bench {self.name}: batch {self.batch}, {self.done}/{self.total} "
                            f"runs, {now - self.start:.0f} s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _estimate(call, sync, batches, bs: int, opts: BenchOptions, log: Log) -> None:
    """Two untimed calls at the first batch size, extrapolated per image to the whole run;
    said (on log.status) when it comes to more than a minute."""
    t = min(b.time_calls(call, runs=2, warmup=0, sync=sync)) / 1e3 / bs
    total = t * sum(batches) * (opts.runs + opts.warmup)
    if total > ESTIMATE_ABOVE_S:
        log.status(f"estimated time: about {total / 60:.0f} min ({t * 1e3:.1f} ms per image at "
                   f"batch {bs}; {len(batches)} batch sizes x {opts.runs + opts.warmup} runs; "
                   "Ctrl-C stops it and keeps the finished batch sizes)")


def _one_batch(runner, opts: BenchOptions, bs: int, geometry, progress: Progress,
               batches, log: Log):
    """One batch size's Latency (or why an engine skipped it)."""
    img_size, in_chans = geometry
    if runner.kind == "engine":
        r = b.engine_latency(opts.artifact, bs, opts.runs, opts.warmup)
        progress.done += opts.runs + opts.warmup
        return r
    x = b.random_batch(bs, img_size, in_chans)
    if runner.model is not None:
        call, sync = b.torch_call(runner.model, x, opts.device, opts.cuda_graphs)
    else:
        call, sync = b.ort_call(runner.session, x)
    if bs == batches[0]:
        _estimate(call, sync, batches, bs, opts, log)
    times = b.time_calls(call, opts.runs, opts.warmup, sync, tick=progress.tick)
    return latency_stats(times, bs, opts.warmup)


def _measure(runner, opts: BenchOptions, batches, geometry, log: Log) -> tuple[list, bool]:
    """Each batch size's row printed as soon as it is measured; (rows, interrupted): Ctrl-C or
    SIGTERM stops the run and keeps the rows finished before it."""
    results = []
    progress = Progress(log, len(batches) * (opts.runs + opts.warmup), opts.artifact.name)
    try:
        for bs in batches:
            progress.batch = bs
            r = _one_batch(runner, opts, bs, geometry, progress, batches, log)
            if isinstance(r, str):
                log.echo(f"batch {bs}: skipped ({r})")
            else:
                results.append(r)
                log.echo(row_text(r))
    except KeyboardInterrupt:
        return results, True
    finally:
        progress.close()
    return results, False


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
    log.echo(HEADER)
    with ort.failures_named(opts.artifact):
        results, interrupted = _measure(runner, opts, batches, (img_size, in_chans), log)
    report = {**runner.describe(), "device": opts.device, "cuda_graphs": opts.cuda_graphs,
              "threads": opts.threads or torch.get_num_threads(), "img_size": img_size,
              "results": [r.to_dict() for r in results]}
    if not interrupted:
        return Result(report)
    if not results:  # nothing finished: nothing to report, as any interrupted command
        raise KeyboardInterrupt
    log.defer("interrupted")
    done = ", ".join(str(r.batch) for r in results)
    report.update(interrupted=True, batches_asked=list(batches))
    return Result(report, closing=[f"interrupted: batch sizes finished: {done} (of "
                                   f"{', '.join(map(str, batches))})"],
                  exit_code=EXIT_INTERRUPTED)
