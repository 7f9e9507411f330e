"""PyTorch's AdaptiveMaxPool2d, rewritten with plain max pools so that every exporter takes it.

For an input length L and output length n, PyTorch's window of output index i is
``[floor(i * L / n), ceil((i + 1) * L / n))``. Both torch.onnx exporters refuse the module when n
does not divide L (the ada_pool variant pools 75 -> 38 -> 19 -> 10 at 224). At a fixed input size
the windows are known, so they can be written with standard operators, exactly (a max only
selects, it never rounds):

1. one MaxPool (kernel k, stride s, symmetric padding p; padded cells never win) when its windows,
   clipped to the input, are the adaptive windows. That holds at 224 for all three pools:
   75 -> 38 is kernel 3, stride 2, padding 1; 38 -> 19 is kernel 2, stride 2; 19 -> 10 is kernel
   3, stride 2, padding 1;
2. otherwise, per axis: a stride-1 max pool of the smallest window size kmin, then a Gather of the
   window starts and (for the windows one cell longer) a Gather of ``end - kmin`` and a Max.
   Adaptive windows differ in size by at most one, and kmin + 1 <= 2 * kmin, so the two stride-1
   windows cover each long window exactly.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def adaptive_windows(length: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows ``[start, end)`` along one axis."""
    return [((i * length) // out, -((-(i + 1) * length) // out)) for i in range(out)]


@dataclass(frozen=True)
class Pool1d:
    """One axis of a max pool: kernel, stride, symmetric padding."""

    kernel: int
    stride: int
    padding: int


def _pool_windows(length: int, p: Pool1d) -> list[tuple[int, int]]:
    n = (length + 2 * p.padding - p.kernel) // p.stride + 1
    return [(max(0, i * p.stride - p.padding), min(length, i * p.stride - p.padding + p.kernel))
            for i in range(max(n, 0))]


@functools.lru_cache(maxsize=None)
def single_pool(length: int, out: int) -> Pool1d | None:
    """A max pool (floor mode, padding <= kernel / 2 as torch requires) whose windows clipped to
    the input are exactly the adaptive windows, or None."""
    target = adaptive_windows(length, out)
    kmax = max(e - s for s, e in target)
    for k in range(1, kmax + 1):
        for s in range(1, length + 1):
            for p in range(0, k // 2 + 1):
                if (length + 2 * p - k) // s + 1 != out:
                    continue
                cand = Pool1d(k, s, p)
                if _pool_windows(length, cand) == target:
                    return cand
    return None


def _kmin(length: int, out: int) -> int:
    return min(e - s for s, e in adaptive_windows(length, out))


def _gather_windows(y: torch.Tensor, dim: int, length: int, out: int) -> torch.Tensor:
    """``y`` holds stride-1 maxima of windows of size kmin along ``dim``: pick each adaptive
    window's start and, for windows one longer, the max with the one ending at its end."""
    wins = adaptive_windows(length, out)
    kmin = _kmin(length, out)
    starts = torch.tensor([s for s, _ in wins], dtype=torch.int64)
    z = y.index_select(dim, starts)
    if any(e - s != kmin for s, e in wins):
        tails = torch.tensor([e - kmin for _, e in wins], dtype=torch.int64)
        z = torch.maximum(z, y.index_select(dim, tails))
    return z


def _max_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    if kernel == (1, 1) and stride == (1, 1):
        return x
    return F.max_pool2d(x, kernel, stride=stride, padding=padding)


def exact_adaptive_max_pool2d(x: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_max_pool2d(x, output_size)`` for the static spatial size of ``x``, built from
    max_pool2d / index_select / maximum, bit for bit the same."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    oh, ow = output_size
    ph, pw = single_pool(h, oh), single_pool(w, ow)
    if ph is not None and pw is not None:
        return _max_pool(x, (ph.kernel, pw.kernel), (ph.stride, pw.stride),
                         (ph.padding, pw.padding))
    # The axis one MaxPool expresses first, then one stride-1 pool for the gathered axes.
    if ph is not None:
        x = _max_pool(x, (ph.kernel, 1), (ph.stride, 1), (ph.padding, 0))
    if pw is not None:
        x = _max_pool(x, (1, pw.kernel), (1, pw.stride), (0, pw.padding))
    kh = 1 if ph is not None else _kmin(h, oh)
    kw = 1 if pw is not None else _kmin(w, ow)
    x = _max_pool(x, (kh, kw), (1, 1))
    if ph is None:
        x = _gather_windows(x, 2, h, oh)
    if pw is None:
        x = _gather_windows(x, 3, w, ow)
    return x


def _output_size(m: nn.AdaptiveMaxPool2d, x: torch.Tensor) -> tuple[int, int]:
    size = m.output_size
    if isinstance(size, int):
        size = (size, size)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return (h if size[0] is None else int(size[0]), w if size[1] is None else int(size[1]))


@contextlib.contextmanager
def exportable_adaptive_pools(model: nn.Module) -> Iterator[int]:
    """Within the block, every AdaptiveMaxPool2d of ``model`` runs ``exact_adaptive_max_pool2d``
    (so that an exporter sees plain max pools). Yields how many modules were patched."""
    patched = [m for m in model.modules() if isinstance(m, nn.AdaptiveMaxPool2d)]
    for m in patched:
        if m.return_indices:
            raise ValueError("AdaptiveMaxPool2d with return_indices is not supported")
        m.forward = (lambda mod: lambda x: exact_adaptive_max_pool2d(x, _output_size(mod, x)))(m)
    try:
        yield len(patched)
    finally:
        for m in patched:
            del m.forward  # back to the class's forward


def pool_plan(length: int, out: int) -> str:
    """How one axis is expressed (for reports): 'MaxPool k3 s2 p1' or 'MaxPool k2 s1 + Gather'."""
    p = single_pool(length, out)
    if p is not None:
        return f"MaxPool k{p.kernel} s{p.stride} p{p.padding}"
    wins = adaptive_windows(length, out)
    kmin = _kmin(length, out)
    two = any(e - s != kmin for s, e in wins)
    return (f"MaxPool k{kmin} s1 + " if kmin > 1 else "") + ("2 Gather + Max" if two else "Gather")

