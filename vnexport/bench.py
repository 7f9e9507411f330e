"""Latency measurement: warm-up, then timed runs; median, p90, p99 and throughput.

Pure functions over a zero-argument ``call`` (one inference on a prepared batch) and a
``sync`` (waits for the device; a no-op on CPU), so they are testable with tiny models.
Each timed sample is ``perf_counter`` around ``call(); sync()``; inputs are prepared on the
device beforehand, so host-to-device copies are not timed.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from . import trt
from .ort import input_dtype
from .timing import Latency, latency_stats

Call = Callable[[], object]


def time_calls(call: Call, runs: int, warmup: int = 0, sync: Call | None = None,
               tick: Callable[[], None] | None = None) -> list[float]:
    """Run ``call`` ``warmup`` times untimed, then ``runs`` times timed; milliseconds each."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be >= 1 and warmup >= 0")
    sync = sync or (lambda: None)
    times = []
    for i in range(warmup + runs):
        t = time.perf_counter()
        call()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1e3)
        if tick is not None:
            tick()
    return times


def random_batch(batch: int, img_size: int, in_chans: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(
        (batch, in_chans, img_size, img_size)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# what one call is, per runtime


def torch_call(model: torch.nn.Module, x: np.ndarray, device: str = "cpu",
               cuda_graphs: bool = False) -> tuple[Call, Call]:
    """(call, sync) for a PyTorch model on ``device``; optionally replaying a CUDA graph."""
    xt = torch.from_numpy(x).to(device)
    model = model.to(device).eval()
    if cuda_graphs:
        return _cuda_graph_call(model, xt)

    def call():
        with torch.inference_mode():
            return model(xt)

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    return call, sync or (lambda: None)


def _cuda_graph_call(model: torch.nn.Module, xt: torch.Tensor) -> tuple[Call, Call]:
    """Capture one forward pass in a CUDA graph (after warm-up on a side stream, as the PyTorch
    CUDA-graphs notes ask) and replay it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(side):
            for _ in range(3):
                model(xt)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(xt)
    return graph.replay, torch.cuda.synchronize


def ort_call(session, x: np.ndarray) -> tuple[Call, Call]:
    """(call, sync) for an ONNX Runtime session (synchronous: sync is a no-op)."""
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(x, input_dtype(session))}
    out = [session.get_outputs()[0].name]
    return (lambda: session.run(out, feed)), (lambda: None)


def bench_batches(make_call: Callable[[int], tuple[Call, Call]], batches: list[int],
                  runs: int, warmup: int,
                  tick: Callable[[], None] | None = None) -> list[Latency]:
    """Latency at each batch size; ``make_call(batch) -> (call, sync)`` prepares the inputs."""
    out = []
    for b in batches:
        call, sync = make_call(b)
        out.append(latency_stats(time_calls(call, runs, warmup, sync, tick), b, warmup))
    return out


def engine_latency(engine_path, batch: int, runs: int, warmup: int) -> Latency | str:
    """A TensorRT engine's latency via ``vnexport.trt.measure_latency`` (device buffers,
    execute_async_v3 + synchronize), or why the batch was skipped."""
    d = trt.measure_latency(engine_path, batch, iters=runs, warmup=warmup)
    return d["skipped"] if "skipped" in d else Latency(**d)
