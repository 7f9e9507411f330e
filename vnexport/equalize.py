"""Cross-layer range equalization of an fp32 ONNX graph before int8 quantization.

Data-free quantization (Nagel et al., ICCV 2019; Qualcomm AIMET's "cross-layer equalization"):
for two convs joined only by operations that commute with a positive per-channel scale,
``conv_b(f(conv_a(x)))``, dividing output channel i of ``conv_a`` (weights and bias) by ``s_i``
and multiplying input channel i of ``conv_b`` by ``s_i`` gives the same function. With
``s_i = sqrt(r_a_i / r_b_i)`` (``r``: the channel's largest |weight|) both ranges become
``sqrt(r_a_i * r_b_i)``: a channel whose range was made much wider than the others (BN folding
and 1x1 merging do that) is brought back to its neighbours', and so is the activation between
the two convs, whose per-tensor int8 scale that one channel would otherwise set.

What commutes with a positive per-channel scale ``D`` (checked op by op, nothing else joins a
pair): ReLU (``relu(Dx) = D relu(x)``), MaxPool (padding is -inf, and max is monotone per
channel), GlobalAveragePool (linear, per channel). In VanillaNet's deploy graph the series
activation is ReLU then a depthwise conv with bias: as ``conv_b`` its input channel i is its
own kernel i (scaled by ``s_i``, its bias untouched); as ``conv_a`` its kernel and bias i are
divided by ``s_i``. Its zero padding commutes (``0 * s = 0``). So the pairs are stem conv ->
activation conv, activation conv -> next stage's conv, stage conv -> (ReLU, MaxPool) ->
activation conv, last activation conv -> GlobalAveragePool -> head conv; a depthwise conv sits
in two pairs, and the pairs are balanced in turns until the scales settle.

The equalized graph is checked against the original on given inputs (``check``): equalization
must not change an fp32 output beyond rounding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from . import ort
from .errors import EXIT_CHECK_FAILED, VnexportError

COMMUTING = ("Relu", "MaxPool", "GlobalAveragePool")
MAX_ROUNDS = 100
SETTLED = 1e-4  # stop when no scale of a round moves by more than this (relative)
MAX_REL_ERR = 1e-5  # the equalized fp32 graph against the original: rounding only


class NotEquivalentError(VnexportError):
    """The equalized graph's fp32 outputs differ from the original's beyond rounding."""

    exit_code = EXIT_CHECK_FAILED


@dataclass
class Pair:
    first: str  # node names
    second: str
    via: tuple[str, ...]  # op types between them
    depthwise_second: bool
    largest_scale: float = 1.0  # the product of all rounds' scales, largest and smallest
    smallest_scale: float = 1.0

    def describe(self) -> str:
        via = "".join(f" -> {op}" for op in self.via)
        return (f"{self.first}{via} -> {self.second} (scales {self.smallest_scale:.3g} .. "
                f"{self.largest_scale:.3g})")


@dataclass
class EqualizeReport:
    pairs: list[Pair] = field(default_factory=list)
    rounds: int = 0
    checked_inputs: int = 0
    max_rel_err: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        head = (f"equalized {len(self.pairs)} conv pairs (cross-layer range equalization, "
                f"{self.rounds} rounds)")
        if self.max_rel_err is not None:
            head += (f"; fp32 outputs unchanged: max rel err {self.max_rel_err:.2e} "
                     f"<= {MAX_REL_ERR:g} on {self.checked_inputs} inputs")
        return [head] + [f"equalized: {p.describe()}" for p in self.pairs]


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _group(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def _conv_params(node, inits, uses) -> bool:
    """A Conv whose weight (and bias, if any) are initializers it alone reads."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
        return False
    params = [i for i in node.input[1:] if i]
    return all(p in inits and uses.get(p, 0) == 1 for p in params)


def find_pairs(model: onnx.ModelProto) -> list[Pair]:
    """Every ``conv_a -> (ops in COMMUTING)* -> conv_b`` where each tensor on the way has one
    reader and is no graph output, and ``conv_b`` is an ordinary (group 1) or depthwise conv."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(model)
    uses = {name: len(nodes) for name, nodes in consumers.items()}
    outputs = {o.name for o in g.output}
    pairs = []
    for a in g.node:
        if not _conv_params(a, inits, uses):
            continue
        via, t = [], a.output[0]
        while True:
            readers = consumers.get(t, [])
            if len(readers) != 1 or t in outputs:
                break
            nxt = readers[0]
            if nxt.op_type in COMMUTING and nxt.input[0] == t:
                via.append(nxt.op_type)
                t = nxt.output[0]
                continue
            if nxt.op_type == "Conv" and nxt.input[0] == t and _conv_params(nxt, inits, uses):
                w_b = inits[nxt.input[1]]
                cin = w_b.dims[1] * _group(nxt)
                dw = _group(nxt) > 1
                if dw and not (_group(nxt) == cin == w_b.dims[0] and w_b.dims[1] == 1):
                    break  # a grouped conv that is not depthwise: channels do not map one to one
                if cin == inits[a.input[1]].dims[0]:
                    pairs.append(Pair(a.name, nxt.name, tuple(via), dw))
            break
    return pairs


def _ranges_out(w: np.ndarray) -> np.ndarray:
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def _ranges_in(w: np.ndarray, depthwise: bool) -> np.ndarray:
    if depthwise:
        return _ranges_out(w)
    return np.abs(w).transpose(1, 0, 2, 3).reshape(w.shape[1], -1).max(axis=1)


def _balance(p: Pair, params: dict, nodes: dict) -> float:
    """One equalization of pair ``p`` in ``params`` (float64 arrays); the largest relative
    change of a scale."""
    a, b = nodes[p.first], nodes[p.second]
    wa, wb = params[a.input[1]], params[b.input[1]]
    ra, rb = _ranges_out(wa), _ranges_in(wb, p.depthwise_second)
    ok = (ra > 0) & (rb > 0)
    s = np.ones_like(ra)
    s[ok] = np.sqrt(ra[ok] / rb[ok])
    wa /= s.reshape(-1, 1, 1, 1)
    if len(a.input) > 2 and a.input[2]:
        params[a.input[2]] /= s
    wb *= s.reshape(-1, 1, 1, 1) if p.depthwise_second else s.reshape(1, -1, 1, 1)
    return float(np.abs(s - 1).max()) if s.size else 0.0


def equalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, EqualizeReport]:
    """A copy of ``model`` with every pair of ``find_pairs`` equalized (float64 arithmetic,
    rounded to float32 once at the end), and what was done. Pairs sharing a conv (the
    depthwise activation conv is the second of one pair and the first of the next) are
    balanced in turns until no scale moves by more than ``SETTLED``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    pairs = find_pairs(out)
    report = EqualizeReport(pairs)
    if not pairs:
        return out, report
    nodes = {n.name: n for n in out.graph.node}
    inits = {t.name: t for t in out.graph.initializer}
    names = {i for p in pairs for n in (nodes[p.first], nodes[p.second]) for i in n.input[1:]
             if i}
    params = {k: numpy_helper.to_array(inits[k]).astype(np.float64) for k in names}
    before = {p.first: params[nodes[p.first].input[1]].copy() for p in pairs}
    for report.rounds in range(1, MAX_ROUNDS + 1):
        if max(_balance(p, params, nodes) for p in pairs) <= SETTLED:
            break
    for p in pairs:  # the total scale of each pair: old range of conv_a over its new range
        old, new = _ranges_out(before[p.first]), _ranges_out(params[nodes[p.first].input[1]])
        ok = new > 0
        total = old[ok] / new[ok] if ok.any() else np.ones(1)
        p.largest_scale, p.smallest_scale = float(total.max()), float(total.min())
    for k, v in params.items():
        inits[k].CopyFrom(numpy_helper.from_array(v.astype(np.float32), k))
    return out, report


def max_rel_err(original: onnx.ModelProto, equalized: onnx.ModelProto, x: np.ndarray) -> float:
    """Max |difference| of the two graphs' outputs on ``x`` (ONNX Runtime, CPU) over the
    original's largest |output|."""
    a = ort.run(ort.session(original, device="cpu"), x, batch=8)
    b = ort.run(ort.session(equalized, device="cpu"), x, batch=8)
    scale = float(np.abs(a).max())
    diff = float(np.abs(a - b).max())
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def equalize_checked(model: onnx.ModelProto, x: np.ndarray,
                     ) -> tuple[onnx.ModelProto, EqualizeReport]:
    """``equalize``, then the equalized fp32 graph against the original on ``x``: refused
    (VnexportError) when any output moved by more than ``MAX_REL_ERR`` (relative)."""
    out, report = equalize(model)
    if not report.pairs:
        return out, report
    report.checked_inputs = len(x)
    report.max_rel_err = max_rel_err(model, out, x)
    if not report.max_rel_err <= MAX_REL_ERR:
        raise NotEquivalentError(f"cross-layer equalization changed the fp32 outputs by "
                            f"{report.max_rel_err:.2e} (relative) > {MAX_REL_ERR:g} on "
                            f"{len(x)} inputs: refused (pass --no-equalize)")
    return out, report
