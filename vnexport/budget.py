"""int8 within an accuracy budget: the fewest changes that keep top-1 within ``max_drop``
points of the reference on labelled images.

In order, stopping at the first that is within the budget:

1. plain int8 (``precision.to_int8``: per-tensor symmetric activation scales);
2. the same after cross-layer range equalization (``equalize``), verified to leave the fp32
   outputs unchanged: it undoes per-channel range spreads such as the ones BN folding and
   1x1 merges produce, where one wide channel sets a tensor's int8 scale and the others round
   to zero;
3. per-layer sensitivity on the better of the two: each int8 Conv is tried alone in float
   (``quantize_static``'s ``nodes_to_exclude``), then the most sensitive are kept float one
   more at a time, never more than leave half of the Convs with int8 weights.

The calibration runs once per graph (the ranges are reused through the calibration cache).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import onnx

from . import ort
from .equalize import EqualizeReport, equalize_checked
from .precision import Int8Report, stem_nodes, to_int8


@dataclass(frozen=True)
class Budget:
    """What the int8 file must reach: top-1 (percent) on ``x``/``labels`` no more than
    ``max_drop`` points below ``reference_top1``. ``equalize``: None tries it only when plain
    int8 misses the budget, True always, False never."""

    x: np.ndarray
    labels: np.ndarray
    reference_top1: float
    max_drop: Optional[float] = None
    equalize: Optional[bool] = None

    def within(self, top1: float) -> bool:
        # 1e-9: the two percentages are computed over the same images; equal counts must pass
        return self.max_drop is None or self.reference_top1 - top1 <= self.max_drop + 1e-9


@dataclass
class KeptFloat:
    node: str
    reason: str


@dataclass
class Attempt:
    label: str
    top1: float
    equalized: bool
    kept_float: list[str] = field(default_factory=list)


@dataclass
class BudgetReport:
    reference_top1: float
    max_drop: Optional[float]
    n_eval: int
    n_convs: int = 0
    int8_convs: int = 0
    within: bool = False
    top1: float = 0.0
    equalization: Optional[EqualizeReport] = None
    kept_float: list[KeptFloat] = field(default_factory=list)
    stem_float: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def best(self) -> Attempt:
        return max(self.attempts, key=lambda a: a.top1)

    def lines(self) -> list[str]:
        budget = ("" if self.max_drop is None else
                  f" (budget: at most {self.max_drop:g} points below)")
        out = [f"int8 budget: reference top-1 {self.reference_top1:.2f}% on {self.n_eval} eval "
               f"images{budget}"]
        out += [f"int8 budget: tried {a.label}: top-1 {a.top1:.2f}% "
                f"(drop {self.reference_top1 - a.top1:.2f} points)" for a in self.attempts]
        if self.equalization is not None:
            out += self.equalization.lines()
        out += [f"int8: kept float: {k.node}: {k.reason}" for k in self.kept_float]
        if self.within:
            out.append(f"int8: {self.int8_convs} of {self.n_convs} Convs with int8 weights")
        return out

    def equalization_lines(self) -> list[str]:
        return [] if self.equalization is None else self.equalization.lines()

    def changes(self) -> dict:
        """What the int8 file changed, for its metadata."""
        eq = self.equalization
        return {"equalized_pairs": [] if eq is None else [
                    {"first": p.first, "second": p.second, "via": list(p.via),
                     "scales": [p.smallest_scale, p.largest_scale]} for p in eq.pairs],
                "equalization_max_rel_err": None if eq is None else eq.max_rel_err,
                "kept_float": [asdict(k) for k in self.kept_float] + [
                    {"node": n, "reason": "stem conv (fan-in 48), float unless --int8-stem"}
                    for n in self.stem_float],
                "int8_convs": self.int8_convs, "convs": self.n_convs,
                "eval": None if not self.n_eval else {
                    "images": self.n_eval, "reference_top1": self.reference_top1,
                    "top1": self.top1, "max_drop": self.max_drop},
                "attempts": [asdict(a) for a in self.attempts]}

    def failure(self) -> str:
        b = self.best
        return (f"int8 not within --max-drop {self.max_drop:g}: the best top-1 reached is "
                f"{b.top1:.2f}% ({b.label}) against the reference's {self.reference_top1:.2f}% "
                f"(drop {self.reference_top1 - b.top1:.2f} points) on {self.n_eval} images")


def top1(model: onnx.ModelProto, x: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy (percent) of ``model`` on ONNX Runtime's CPU provider (nan without
    images)."""
    if not len(x):
        return float("nan")
    out = ort.run(ort.session(model, device="cpu"), x, batch=8)
    return float((out.argmax(1) == np.asarray(labels)).mean() * 100.0)


def conv_nodes(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


@dataclass
class _Run:
    """One graph (plain or equalized) quantized with various Convs kept float, calibrated once
    (the ranges cached in ``cache``)."""

    graph: onnx.ModelProto
    calib_x: np.ndarray
    budget: Budget
    opts: dict
    cache: Path
    equalized: bool
    user_cache: bool = False
    report: Int8Report = field(default_factory=lambda: Int8Report("minmax", "int8"))

    def quantize(self, exclude: list[str]) -> onnx.ModelProto:
        rep = Int8Report(self.opts["method"], self.opts["activation_type"])
        q = to_int8(self.graph, self.calib_x, cache_path=self.cache, report=rep,
                    exclude=exclude, **self.opts)
        if not self.user_cache:  # a temporary file: the ranges are reused, not kept
            rep.cache = None
        if not exclude:
            self.report = rep
        return q

    def attempt(self, exclude: list[str], log: BudgetReport) -> tuple[onnx.ModelProto, Attempt]:
        q = self.quantize(exclude)
        label = ("equalized int8" if self.equalized else "plain int8") + (
            f" with {len(exclude)} more Conv(s) float" if exclude else "")
        a = Attempt(label, top1(q, self.budget.x, self.budget.labels), self.equalized,
                    list(exclude))
        log.attempts.append(a)
        return q, a


def _sensitivity(run: _Run, base: Attempt, log: BudgetReport,
                 always_float: list[str]) -> Optional[onnx.ModelProto]:
    """Keep the most sensitive Convs float, one more at a time, while at least half of all
    Convs keep int8 weights. The model within budget, or None."""
    candidates = [c for c in conv_nodes(run.graph) if c not in always_float]
    room = len(conv_nodes(run.graph)) // 2 - len(always_float)
    if room < 1 or not candidates:
        return None
    alone = {}
    for c in candidates:
        alone[c] = top1(run.quantize([c]), run.budget.x, run.budget.labels)
    ranked = sorted(candidates, key=lambda c: -alone[c])
    for k in range(1, min(room, len(ranked)) + 1):
        q, a = run.attempt(ranked[:k], log)
        if run.budget.within(a.top1):
            log.kept_float = [KeptFloat(c, f"sensitivity rank {i + 1} of {len(ranked)}: top-1 "
                                        f"{alone[c]:.2f}% with it alone in float, "
                                        f"{base.top1:.2f}% with it int8")
                              for i, c in enumerate(ranked[:k])]
            return q
    return None


def int8_weight_convs(model: onnx.ModelProto) -> list[str]:
    """The Convs whose weight is an int8 initializer through a DequantizeLinear."""
    inits = {t.name: t.data_type for t in model.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and len(n.input) > 1
            and inits.get(dq.get(n.input[1], ""), None) == onnx.TensorProto.INT8]


def quantize_within_budget(fp32: onnx.ModelProto, calib_x: np.ndarray, budget: Budget, *,
                           method: str = "minmax", cache_path: str | Path | None = None,
                           activation_type: str = "int8", quantize_stem: bool = False,
                           ) -> tuple[Optional[onnx.ModelProto], BudgetReport, Int8Report]:
    """The int8 graph with the fewest changes within ``budget`` (None when nothing reached it),
    what was tried and changed, and the int8 report of the graph chosen (or the last)."""
    log = BudgetReport(budget.reference_top1, budget.max_drop, len(budget.x))
    opts = dict(method=method, activation_type=activation_type, quantize_stem=quantize_stem)
    stem = [] if quantize_stem else stem_nodes(fp32)
    log.n_convs, log.stem_float = len(conv_nodes(fp32)), stem
    with tempfile.TemporaryDirectory(prefix="vnexport-budget-") as tmp:
        runs = []
        if budget.equalize is not True:
            runs.append(_Run(fp32, calib_x, budget, opts, Path(cache_path or Path(tmp) / "p.json"),
                             False, cache_path is not None))
        if budget.equalize is not False:
            eq, eq_report = equalize_checked(fp32, calib_x)
            runs.append(_Run(eq, calib_x, budget, opts,
                             Path(cache_path or Path(tmp) / "e.json"), True, cache_path is not None))
        chosen = None
        for run in runs:
            if run.equalized:
                log.equalization = eq_report
            q, a = run.attempt([], log)
            if budget.within(a.top1):
                chosen = (q, a, run)
                break
        if chosen is None and budget.max_drop is not None:
            run = max(runs, key=lambda r: next(a.top1 for a in log.attempts
                                                if a.equalized == r.equalized))
            base = next(a for a in log.attempts if a.equalized == run.equalized)
            if not run.equalized:
                log.equalization = None
            q = _sensitivity(run, base, log, stem)
            if q is not None:
                chosen = (q, log.attempts[-1], run)
        if chosen is None:
            return None, log, runs[-1].report
        q, a, run = chosen
        if not run.equalized:
            log.equalization = None
        log.within, log.top1 = True, a.top1
        log.int8_convs = len(int8_weight_convs(q))
        return q, log, run.report
