"""Latency statistics over timed runs (median, p90, p99, mean, min, images/s).

Ground level: used by ``bench`` (any runtime) and by ``trt.measure_latency``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Latency:
    batch: int
    runs: int
    warmup: int
    median_ms: float
    p90_ms: float
    p99_ms: float | None
    mean_ms: float
    min_ms: float
    images_per_s: float  # batch / median

    def to_dict(self) -> dict:
        return asdict(self)


def latency_stats(times_ms: list[float], batch: int, warmup: int = 0) -> Latency:
    """Median, p90 and p99 (linear interpolation, numpy's default), mean, min, and images/s
    at the median."""
    if not times_ms:
        raise ValueError("no timed runs")
    t = np.asarray(times_ms, dtype=np.float64)
    median, p90, p99 = (float(v) for v in np.percentile(t, [50, 90, 99]))
    return Latency(batch=batch, runs=len(t), warmup=warmup, median_ms=median, p90_ms=p90,
                   p99_ms=p99, mean_ms=float(t.mean()), min_ms=float(t.min()),
                   images_per_s=batch / (median / 1e3) if median > 0 else float("inf"))
