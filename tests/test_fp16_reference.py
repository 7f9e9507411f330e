"""FP16 checked against an independent float16 reference written here in torch.

What the product promises (``vnexport.precision``): the fp16 file computes every converted node
in float16 (weights, inputs and outputs float16; accumulation inside a node may be wider, as on
tensor cores), keeps float32 exactly the nodes whose measured values (or weights) would not fit
with a 2x margin (|v| > 32752), and ``fp16_emulation`` is an fp32 graph that rounds like the fp16
file would, so that it can be checked on a CPU.

ONNX Runtime's CPU provider computes float16 Conv in float32 (the activations are never rounded),
so running the fp16 file on it proves little. Here:

- ``fp16_reference`` runs the deploy-form torch network op by op in float64 and rounds what a
  float16 engine stores: the weights of each converted op, its inputs and its output; the kept
  ops compute in float32.
- ``run_per_node`` evaluates the converted ONNX *file* node by node, in float64 arithmetic, each
  node's output rounded to the dtype the file gives it (float16 or float32).

Both compute each op exactly and round once, so the file must equal the reference to 1e-6 of
the output scale, where float16's own rounding moves the output by ~6e-4 (measured on the
test network).
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, numpy_helper

from vnexport import precision as P
from vnexport.checkpoint import load_checkpoint
from vnexport.fuse import deploy_model
from vnexport.model import VanillaNetConfig
from vnexport.onnx_export import onnx_model_from_deploy
from vnexport.synthetic import write_training_checkpoint
from vnexport.verify import random_inputs, run_torch

TINY = VanillaNetConfig(dims=(32, 64, 128), strides=(2, 2), act_num=3, num_classes=100)
IMG = 64
TIGHT = 1e-6  # of the output scale: far below float16's own rounding (~5e-4 per op)
MARGIN = 32752.0  # the documented limit: half of float16's largest finite value 65504


def r16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float16).to(torch.float64)


def r32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).to(torch.float64)


ROUND = {TensorProto.FLOAT: r32, TensorProto.FLOAT16: r16}


# --------------------------------------------------------------------------------------------
# the independent reference: the deploy-form torch network, float16 at every converted op


def fp16_reference(model, x, kept: frozenset[str] = frozenset()) -> np.ndarray:
    """Outputs of the deploy-form ``model`` computed as a float16 engine would: each op not in
    ``kept`` reads float16 inputs and float16 weights, computes exactly (float64) and stores its
    output in float16; each op in ``kept`` does the same in float32. Op names: ``stem.0``,
    ``stem.1.relu``, ``stem.1``, ``stages.i.conv``, ``stages.i.pool``, ``stages.i.act.relu``,
    ``stages.i.act``, ``cls.0`` (global average pool), ``cls.2``."""
    v = torch.as_tensor(x).double()

    def conv(name, m, v, **kw):
        r = r32 if name in kept else r16
        return r(F.conv2d(r(v), r(m.weight.double()), r(m.bias.double()), **kw))

    def exact(name, f, v):
        r = r32 if name in kept else r16
        return r(f(r(v)))

    def series(name, act, v):
        v = exact(name + ".relu", F.relu, v)
        return conv(name, act, v, padding=act.act_num, groups=act.dim)

    with torch.no_grad():
        stem = model.stem[0]
        v = conv("stem.0", stem, v, stride=stem.stride, padding=stem.padding)
        v = series("stem.1", model.stem[1], v)
        for i, stage in enumerate(model.stages):
            v = conv(f"stages.{i}.conv", stage.conv, v)
            if not isinstance(stage.pool, torch.nn.Identity):
                v = exact(f"stages.{i}.pool", stage.pool, v)
            v = series(f"stages.{i}.act", stage.act, v)
        v = exact("cls.0", lambda t: t.mean((2, 3), keepdim=True), v)
        v = conv("cls.2", model.cls[2], v)
    return v.flatten(1).numpy()


# --------------------------------------------------------------------------------------------
# the converted file, evaluated node by node with each node's output in its own dtype


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict) -> tuple[int, int]:
    p = list(a.get("pads", [0, 0, 0, 0]))
    assert p[:2] == p[2:], f"asymmetric pads {p}"
    return tuple(p[:2])


def eval_op(node, inputs: list[torch.Tensor]) -> torch.Tensor:
    """One node's exact result (float64) on float64 inputs (for the ops of a VanillaNet graph)."""
    a, v = _attrs(node), inputs[0]
    if node.op_type in ("Cast", "Identity"):
        return v
    if node.op_type == "Conv":
        return F.conv2d(v, inputs[1], inputs[2] if len(inputs) > 2 else None,
                        stride=a.get("strides", 1), padding=_pads(a),
                        dilation=a.get("dilations", 1), groups=a.get("group", 1))
    if node.op_type == "Relu":
        return v.clamp_min(0)
    if node.op_type == "MaxPool":
        return F.max_pool2d(v, a["kernel_shape"], a.get("strides"), _pads(a),
                            ceil_mode=bool(a.get("ceil_mode", 0)))
    if node.op_type == "GlobalAveragePool":
        return v.mean((2, 3), keepdim=True)
    if node.op_type == "Flatten":
        return v.flatten(a.get("axis", 1))
    raise NotImplementedError(f"no evaluator for {node.op_type}")


def run_per_node(model: onnx.ModelProto, x) -> tuple[np.ndarray, list[tuple[onnx.NodeProto, int]]]:
    """(output, [(node, dtype it computes in)]) of the converted file, every node's output
    rounded to its dtype: a Cast's ``to``; else its first input's (a float16 node computes in
    float16, reads float16 weights, and stores float16)."""
    g = model.graph
    env = {t.name: (torch.from_numpy(numpy_helper.to_array(t).astype(np.float64)), t.data_type)
           for t in g.initializer}
    dt_in = g.input[0].type.tensor_type.elem_type
    env[g.input[0].name] = (ROUND[dt_in](torch.as_tensor(np.asarray(x)).double()), dt_in)
    dtypes = []
    for node in g.node:
        vals = [env[i] for i in node.input if i]
        dt = _attrs(node)["to"] if node.op_type == "Cast" else vals[0][1]
        assert all(d == dt for _, d in vals[1:]), f"{node.name}: mixed input dtypes"
        env[node.output[0]] = (ROUND[dt](eval_op(node, [v for v, _ in vals])), dt)
        dtypes.append((node, dt))
    return env[g.output[0].name][0].numpy(), dtypes


def rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


# --------------------------------------------------------------------------------------------
# fixtures


class Net:
    def __init__(self, deploy, calib: np.ndarray, x: np.ndarray):
        self.deploy = deploy.eval()
        self.onnx = onnx_model_from_deploy(self.deploy, img_size=IMG, dynamic_batch=True)
        self.calib, self.x = calib, x


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_training_checkpoint(tmp_path_factory.mktemp("fp16ref") / "ckpt.pth", TINY,
                                     seed=3)
    ckpt = load_checkpoint(path, strides=TINY.strides)
    net = Net(deploy_model(ckpt), random_inputs(TINY, n=16, img_size=IMG, seed=6).numpy(),
              random_inputs(TINY, n=8, img_size=IMG, seed=5).numpy())
    net.training = ckpt.build_model().eval()
    return net


def with_stem_peak(net: Net, target: float) -> Net:
    """A copy of ``net`` whose stem conv output peaks at exactly ``target`` on the calibration
    inputs: one output channel (one whose largest value is its largest magnitude) has its
    weights and bias scaled so that its largest value is ``target``; every other channel keeps
    |v| < 100. The stem's ReLU passes the peak on, its depthwise conv reads it."""
    deploy = copy.deepcopy(net.deploy)
    conv = deploy.stem[0]
    with torch.no_grad():
        y = F.conv2d(torch.from_numpy(net.calib).double(), conv.weight.double(),
                     conv.bias.double(), stride=conv.stride)
        hi, lo = y.amax((0, 2, 3)), y.amin((0, 2, 3))
        c = int(torch.where(hi >= lo.abs(), hi, torch.zeros_like(hi)).argmax())
        k = target / float(hi[c])
        conv.weight[c] *= k
        conv.bias[c] *= k
        y = F.conv2d(torch.from_numpy(net.calib).double(), conv.weight.double(),
                     conv.bias.double(), stride=conv.stride)
    assert float(y.max()) == pytest.approx(target, rel=1e-6)
    assert float(y.abs().max()) == pytest.approx(target, rel=1e-6)  # the peak is the largest |v|
    others = torch.cat([y[:, :c], y[:, c + 1:]], 1)
    assert float(others.abs().max()) < 100
    return Net(deploy, net.calib, net.x)


def float_initializers(model: onnx.ModelProto) -> dict[str, int]:
    return {t.name: t.data_type for t in model.graph.initializer}


def initializer_of(model: onnx.ModelProto, param: torch.Tensor) -> onnx.TensorProto:
    """The initializer holding ``param``'s values (found by value, not by name)."""
    want = param.detach().numpy()
    hits = [t for t in model.graph.initializer
            if tuple(t.dims) == want.shape
            and np.array_equal(numpy_helper.to_array(t).astype(np.float32), want)]
    assert len(hits) == 1, f"{len(hits)} initializers hold these values"
    return hits[0]


# --------------------------------------------------------------------------------------------
# an ordinary network: every node in float16


def test_fp16_file_computes_each_node_in_float16(tiny):
    """The converted file, node by node, equals the per-node float16 reference; float32
    arithmetic, or float16 weights with float32 activations, are ~6e-4 away and would fail."""
    m, rep = P.to_fp16(tiny.onnx, tiny.calib)
    assert rep.kept_fp32 == []
    out, dtypes = run_per_node(m, tiny.x)
    computing = [(n.op_type, dt) for n, dt in dtypes if n.op_type != "Cast"]
    assert computing and all(dt == TensorProto.FLOAT16 for _, dt in computing), computing
    ref = fp16_reference(tiny.deploy, tiny.x)
    assert rel(out, ref) <= TIGHT, rel(out, ref)

    # the tolerance tells float16 arithmetic from what a weaker conversion would compute
    fp32 = run_torch(tiny.deploy, torch.from_numpy(tiny.x))
    rounded_weights = copy.deepcopy(tiny.deploy)
    with torch.no_grad():
        for p in rounded_weights.parameters():
            p.copy_(p.half().float())
    weights_only = run_torch(rounded_weights, torch.from_numpy(tiny.x))
    assert rel(fp32, ref) > 100 * TIGHT and rel(weights_only, ref) > 100 * TIGHT
    # and float16 is still the same network: close to the training form
    training = run_torch(tiny.training, torch.from_numpy(tiny.x))
    cos = (ref * training).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(training, axis=1)
    assert cos.min() > 0.9999 and (ref.argmax(1) == training.argmax(1)).all()


def emulated_nodes(emu: onnx.ModelProto, x: np.ndarray):
    """Every value of the emulation graph on ``x`` (ONNX Runtime), and for each of its computing
    nodes (not the Casts it adds) the rounded value the graph passes on: the output of the
    Cast(float16) -> Cast(float32) pair after it, or None (a node left in float32)."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(emu)
    g = m.graph
    types = {o: _attrs(n)["to"] if n.op_type == "Cast" else TensorProto.FLOAT
             for n in g.node for o in n.output}
    names = list(types)
    del g.output[:]
    g.output.extend(onnx.helper.make_tensor_value_info(o, t, None) for o, t in types.items())
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip(names, sess.run(None, {g.input[0].name: x})))
    values[g.input[0].name] = x
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def rounded(name):
        to16 = [c for c in consumers.get(name, []) if c.op_type == "Cast"
                and _attrs(c)["to"] == TensorProto.FLOAT16]
        if not to16:
            return None
        back = [c for c in consumers[to16[0].output[0]] if c.op_type == "Cast"]
        return back[0].output[0]

    computing = [n for n in g.node if n.op_type not in ("Cast", "Identity")]
    return values, [(n, rounded(n.output[0])) for n in computing]


def check_emulation_node_by_node(base: onnx.ModelProto, emu: onnx.ModelProto, x: np.ndarray,
                                 kept_ops: set[str]) -> dict:
    """Each computing node of the emulation, fed the emulation's own values: a converted node's
    passed-on value is round16(exact op on round16(inputs) with round16(weights)); a kept
    node computes from float32 weights and its float32 result is not rounded (a converted
    reader rounds what it reads, as the file's Cast does). Allowed: 1-ulp differences in <1%
    of the values (the emulation accumulates in float32, the check in float64)."""
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).astype(np.float64))
               for t in base.graph.initializer}
    values, nodes = emulated_nodes(emu, x)
    base_names = [n.name for n in base.graph.node]
    assert [n.name for n, _ in nodes] == base_names  # every node of the graph, in order
    flips = {}
    for node, passed_on in nodes:
        ins = [weights[i] if i in weights else torch.from_numpy(values[i]).double()
               for i in node.input if i]
        if node.name in kept_ops:  # float32 weights and float32 values, not rounded
            got = values[node.output[0]].astype(np.float64)
            assert rel(got, r32(eval_op(node, ins)).numpy()) < 1e-6, node.name
            assert not np.array_equal(r16(torch.from_numpy(got)).numpy(), got), node.name
            continue
        assert passed_on is not None, f"{node.name}: its output is not rounded to float16"
        ins = [r16(t) for t in ins]  # float16 inputs and float16 weights
        expect = r16(eval_op(node, ins)).numpy()
        got = values[passed_on].astype(np.float64)
        assert np.array_equal(r16(torch.from_numpy(got)).numpy(), got), node.name  # fp16 values
        # one float16 ulp, plus float32 accumulation error where the sum cancels (its scale:
        # the same op on absolute values)
        ulp = np.spacing(np.maximum(np.abs(expect), np.abs(got)).astype(np.float16))
        scale = eval_op(node, [t.abs() for t in ins]).numpy()
        diff = np.abs(got - expect)
        assert (diff <= ulp.astype(np.float64) + 1e-6 * scale).all(), \
            f"{node.name}: off by more than one float16 ulp"
        flips[node.name] = float((diff > 0).mean())
        assert flips[node.name] < 0.01, (node.name, flips[node.name])
    return flips


def test_fp16_emulation_rounds_like_a_float16_engine(tiny):
    """``fp16_emulation`` promises every converted node reads, holds and stores float16: fed
    its own intermediate values, each node matches the float16 reference computation of that
    node (the graph input rounded too, as the fp16 file's input Cast does)."""
    emu = P.fp16_emulation(tiny.onnx)
    flips = check_emulation_node_by_node(tiny.onnx, emu, tiny.x, kept_ops=set())
    assert len(flips) == len(tiny.onnx.graph.node)


# --------------------------------------------------------------------------------------------
# the overflow margin: 40000 (> 32752) stays float32, 30000 (< 32752) does not


@pytest.fixture(scope="module")
def peak_40000(tiny):
    return with_stem_peak(tiny, 40000.0)


@pytest.fixture(scope="module")
def peak_30000(tiny):
    return with_stem_peak(tiny, 30000.0)


STEM_CHAIN = frozenset({"stem.0", "stem.1.relu", "stem.1"})  # the peak, its ReLU, their reader


def test_activation_of_40000_stays_float32(peak_40000):
    """The stem conv peaks at 40000 (> 32752): it, the ReLU passing 40000 on and the depthwise
    conv reading 40000 stay float32 (weights and compute); everything else is float16, and the
    file equals the float16 reference with exactly those three ops in float32."""
    net = peak_40000
    ranges = P.activation_ranges(net.onnx, net.calib)
    assert max(r.absmax for r in ranges.values()) == pytest.approx(40000, rel=1e-5)
    m, rep = P.to_fp16(net.onnx, net.calib)
    assert [k.op for k in rep.kept_fp32] == ["Conv", "Relu", "Conv"], rep.kept_fp32
    assert rep.largest_activation == pytest.approx(40000, rel=1e-5)
    # the file: the stem's weights float32, every other weight float16
    fp32_weights = {initializer_of(m, p).name for p in
                    (net.deploy.stem[0].weight, net.deploy.stem[0].bias,
                     net.deploy.stem[1].weight, net.deploy.stem[1].bias)}
    types = float_initializers(m)
    assert {n for n, t in types.items() if t == TensorProto.FLOAT} == fp32_weights
    assert all(t == TensorProto.FLOAT16 for n, t in types.items() if n not in fp32_weights)
    out, dtypes = run_per_node(m, net.x)
    computing = [(n.op_type, dt) for n, dt in dtypes if n.op_type != "Cast"]
    assert computing[:3] == [("Conv", TensorProto.FLOAT), ("Relu", TensorProto.FLOAT),
                             ("Conv", TensorProto.FLOAT)]
    assert all(dt == TensorProto.FLOAT16 for _, dt in computing[3:])
    ref = fp16_reference(net.deploy, net.x, kept=STEM_CHAIN)
    assert rel(out, ref) <= TIGHT, rel(out, ref)
    # converting the stem too (what an ignored block list gives) is measurably different
    assert rel(fp16_reference(net.deploy, net.x), ref) > 100 * TIGHT


def test_the_margin_absorbs_brighter_inputs(peak_40000):
    """The 2x margin's purpose: on inputs 1.8x brighter than the calibration images the stem
    peaks above 65504; the file (stem kept float32) stays finite and equals the reference,
    while the same network all in float16 overflows to inf."""
    net = peak_40000
    m, rep = P.to_fp16(net.onnx, net.calib)
    bright = (net.calib[:8] * 1.8).astype(np.float32)
    conv = net.deploy.stem[0]
    with torch.no_grad():
        peak = F.conv2d(torch.from_numpy(bright).double(), conv.weight.double(),
                        conv.bias.double(), stride=conv.stride).max()
    assert float(peak) > 65504  # past float16's largest finite value
    ref = fp16_reference(net.deploy, bright, kept=STEM_CHAIN)
    assert np.isfinite(ref).all()
    assert not np.isfinite(fp16_reference(net.deploy, bright)).all()
    out, _ = run_per_node(m, bright)
    assert np.isfinite(out).all()
    assert rel(out, ref) <= TIGHT, rel(out, ref)


def test_activation_of_30000_is_converted(peak_30000):
    """Just under the margin (30000 < 32752): nothing is kept float32, the file is float16 from
    end to end and equals the all-float16 reference."""
    net = peak_30000
    ranges = P.activation_ranges(net.onnx, net.calib)
    assert max(r.absmax for r in ranges.values()) == pytest.approx(30000, rel=1e-5)
    m, rep = P.to_fp16(net.onnx, net.calib)
    assert rep.kept_fp32 == [], rep.kept_fp32
    assert set(float_initializers(m).values()) == {TensorProto.FLOAT16}
    out, dtypes = run_per_node(m, net.x)
    assert all(dt == TensorProto.FLOAT16 for n, dt in dtypes if n.op_type != "Cast")
    ref = fp16_reference(net.deploy, net.x)
    assert np.isfinite(ref).all()
    assert rel(out, ref) <= TIGHT, rel(out, ref)


def test_fp16_emulation_keeps_the_kept_nodes_float32(peak_40000):
    """The emulation of the 40000 network with the report's kept nodes: those compute and pass
    on float32; their float16 readers round what they read, as the file's Casts do."""
    net = peak_40000
    _, rep = P.to_fp16(net.onnx, net.calib)
    kept = [k.node for k in rep.kept_fp32]
    emu = P.fp16_emulation(net.onnx, kept)
    check_emulation_node_by_node(net.onnx, emu, net.x, kept_ops=set(kept))
