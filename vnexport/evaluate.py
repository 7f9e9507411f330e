"""Accuracy on labelled images: top-1 and top-5 of several artifacts on the same images, with
95% confidence intervals (Wilson score) and the paired comparison of each with a reference.

The images are decoded once per batch (``images.load_images``) and every artifact runs on that
batch, each normalised by its own mean/std, so that memory stays bounded on ImageNet val and
the comparison is paired image by image.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import VnexportError
from .images import Transform, load_images, normalize

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
TOP_K = 5


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``k / n`` (fractions; (0, 1) for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Accuracy:
    """One artifact's answers on the evaluated images: the predicted class and whether the
    label was its top-1 / among its top-5, image by image."""

    pred: list[np.ndarray] = field(default_factory=list)
    hit1: list[np.ndarray] = field(default_factory=list)
    hit5: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, logits: np.ndarray, labels: np.ndarray) -> None:
        k = min(TOP_K, logits.shape[1])
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        self.pred.append(logits.argmax(axis=1))
        self.hit1.append(self.pred[-1] == labels)
        self.hit5.append((top == labels[:, None]).any(axis=1))

    def _cat(self, parts: list[np.ndarray], dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype)

    @property
    def predictions(self) -> np.ndarray:
        return self._cat(self.pred, np.int64)

    @property
    def top1_hits(self) -> np.ndarray:
        return self._cat(self.hit1, bool)

    @property
    def top5_hits(self) -> np.ndarray:
        return self._cat(self.hit5, bool)

    @property
    def n(self) -> int:
        return int(sum(len(p) for p in self.pred))

    def figures(self) -> dict:
        """n, top-1 and top-5 in percent with their 95% intervals, and the hit counts."""
        n, k1, k5 = self.n, int(self.top1_hits.sum()), int(self.top5_hits.sum())
        pct = (lambda k: 100.0 * k / n) if n else (lambda k: 0.0)
        ci = (lambda k: [round(100 * v, 6) for v in wilson(k, n)])
        return {"n": n, "top1": pct(k1), "top1_ci95": ci(k1),
                "top5": pct(k5), "top5_ci95": ci(k5),
                "top1_correct": k1, "top5_correct": k5}

    def paired(self, ref: "Accuracy") -> dict:
        """Against ``ref`` on the same images: the difference in top-1 (points), the images
        right in the reference only and right here only, and the top-1 agreement (percent)."""
        a, b = ref.top1_hits, self.top1_hits
        n = len(a)
        agree = float((ref.predictions == self.predictions).mean()) * 100 if n else 100.0
        return {"top1_diff": (float(b.sum()) - float(a.sum())) * 100 / n if n else 0.0,
                "right_in_reference_only": int((a & ~b).sum()),
                "right_here_only": int((b & ~a).sum()), "top1_agreement": agree}


Norm = tuple[Sequence[float], Sequence[float]]


def evaluate(fns: Sequence[Callable[[np.ndarray], np.ndarray]], norms: Sequence[Norm],
             files: Sequence[Path], labels: Sequence[int], t: Transform, batch: int = 32,
             progress: Callable[[int, int], None] | None = None,
             names: Sequence[str] | None = None) -> list[Accuracy]:
    """Run every ``fns[i]`` (float32 NCHW -> logits) on ``files``, normalised by
    ``norms[i]`` (mean, std), and tally its answers against ``labels``. ``progress(done,
    total)`` is called after each batch."""
    names = names or [str(i) for i in range(len(fns))]
    tallies = [Accuracy() for _ in fns]
    y_all = np.asarray(labels, np.int64)
    for start in range(0, len(files), batch):
        x = load_images(files[start:start + batch], t)
        y = y_all[start:start + batch]
        for fn, (mean, std), tally, name in zip(fns, norms, tallies, names):
            t0 = time.perf_counter()
            logits = np.asarray(fn(normalize(x, mean, std)))
            tally.seconds += time.perf_counter() - t0
            if logits.ndim != 2 or len(logits) != len(y):
                raise VnexportError(f"its output has shape {list(logits.shape)} for a batch of "
                                    f"{len(y)}: not a classifier's [N, classes]", name)
            tally.add(logits, y)
        if progress is not None:
            progress(min(start + batch, len(files)), len(files))
    return tallies


class RateLimited:
    """A progress callback that passes on at most one line every ``every`` seconds (and none
    for runs shorter than that): ``done/total images, images/s, time left``."""

    def __init__(self, emit: Callable[[str], None], every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.emit, self.every, self.clock = emit, every, clock
        self.start = self.last = clock()

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every or done >= total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (total - done) / rate if rate > 0 else math.inf
        self.emit(f"eval: {done}/{total} images ({100 * done / total:.1f}%), "
                  f"{rate:.1f} images/s, about {left / 60:.1f} min left")
