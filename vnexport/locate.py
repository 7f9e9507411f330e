"""``vnexport verify --locate``: the first stage (stem, stages.i, head) whose output departs
from the training form's.

Both networks are run stage by stage on the same inputs: PyTorch models through
``VanillaNet.forward_stages``; an ONNX file through a copy of its graph in which the output of
each stage's last node (the series activation's depthwise Conv, found in graph order as the
Conv nodes with group > 1) is also a graph output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import ort
from .onnx_file import load_onnx, with_extra_outputs
from .verify import Tolerance, compare

# For an artifact judged on top-1 only (int8), a stage departs below this cosine similarity.
FALLBACK_MIN_COSINE = 0.999


@dataclass
class StageDiff:
    name: str
    max_abs: float
    max_rel: float
    cosine: float
    departs: bool


@dataclass
class Location:
    first: str | None  # the first stage that departs; None: none does (or cannot tell)
    stages: list[StageDiff] = field(default_factory=list)
    tolerance: Tolerance | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {"first_departing_stage": self.first, "note": self.note,
                "tolerance": None if self.tolerance is None else asdict(self.tolerance),
                "stages": [asdict(s) for s in self.stages]}

    def summary(self) -> str:
        if self.first is None:
            return self.note or "no stage departs from the reference"
        s = next(s for s in self.stages if s.name == self.first)
        return (f"first departs at {self.first} (max rel err {s.max_rel:.3e}, "
                f"cosine {s.cosine:.8f})")


def stage_tolerance(tol: Tolerance) -> Tolerance:
    """The artifact's limits on relative error and cosine, applied to each stage's output."""
    cosine = tol.min_cosine
    if tol.max_rel is None and cosine is None:
        cosine = FALLBACK_MIN_COSINE
    return Tolerance(max_rel=tol.max_rel, min_top1=None, min_cosine=cosine)


@torch.no_grad()
def torch_stage_outputs(model: torch.nn.Module, x: torch.Tensor,
                        batch: int = 8) -> list[tuple[str, np.ndarray]]:
    """``forward_stages`` over ``x`` in batches: [(name, float64 array)]."""
    parts: list[list[tuple[str, torch.Tensor]]] = [
        model.forward_stages(x[i:i + batch]) for i in range(0, len(x), batch)]
    return [(name, np.concatenate([p[k][1].double().numpy() for p in parts]))
            for k, (name, _) in enumerate(parts[0])]


def onnx_stage_tensors(model) -> list[str]:
    """Names of the tensors that end the stem and each stage, in graph order: the output of
    each depthwise Conv (group > 1), or of the BatchNormalization right after it if any."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group <= 1:
            continue
        out = node.output[0]
        after = consumers.get(out, [])
        if len(after) == 1 and after[0].op_type == "BatchNormalization":
            out = after[0].output[0]
        names.append(out)
    return names


def onnx_stage_outputs(model, x: torch.Tensor, num_stages: int,
                       threads: int | None = None) -> list[tuple[str, np.ndarray]] | str:
    """[(name, float64 array)] for stem, stages.i and head, or the reason it cannot tell."""
    names = onnx_stage_tensors(model)
    if len(names) != num_stages + 1:
        return (f"cannot map the graph to stages: found {len(names)} depthwise Conv nodes, "
                f"expected {num_stages + 1} (stem and {num_stages} stages)")
    session = ort.session(with_extra_outputs(model, names), threads=threads, device="cpu")
    fetch = names + [session.get_outputs()[0].name]
    outs = ort.run_outputs(session, x.numpy(), fetch, batch=8)
    labels = ["stem"] + [f"stages.{i}" for i in range(num_stages)] + ["head"]
    return list(zip(labels, outs))


def compare_stages(reference: list[tuple[str, np.ndarray]],
                   outputs: list[tuple[str, np.ndarray]], tol: Tolerance) -> Location:
    st = stage_tolerance(tol)
    diffs = []
    for (name, ref), (_, out) in zip(reference, outputs):
        if ref.shape != out.shape:
            diffs.append(StageDiff(name, float("inf"), float("inf"), 0.0, True))
            continue
        c = compare(ref.reshape(len(ref), -1), out.reshape(len(out), -1), st)
        diffs.append(StageDiff(name, c.max_abs, c.max_rel, c.cosine, not c.passed))
    first = next((d.name for d in diffs if d.departs), None)
    note = "" if first else "every stage is within the tolerance"
    return Location(first=first, stages=diffs, tolerance=st, note=note)


def locate(reference_model: torch.nn.Module, runner, x: torch.Tensor,
           tol: Tolerance, threads: int | None = None) -> Location:
    """Where ``runner`` (a deploy checkpoint or an ONNX file) first departs from the training
    form ``reference_model`` on ``x``."""
    reference = torch_stage_outputs(reference_model, x)
    if runner.kind in ("deploy", "training") and runner.model is not None:
        return compare_stages(reference, torch_stage_outputs(runner.model.cpu(), x), tol)
    if runner.kind == "onnx":
        outputs = onnx_stage_outputs(load_onnx(runner.path), x,
                                     len(reference) - 2, threads=threads)
        if isinstance(outputs, str):
            return Location(first=None, tolerance=stage_tolerance(tol), note=outputs)
        return compare_stages(reference, outputs, tol)
    return Location(first=None, note=f"--locate does not look inside a {runner.kind} artifact")
