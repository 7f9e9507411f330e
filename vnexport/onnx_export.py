"""The ONNX stage: the deploy-form network as one small, self-contained ONNX graph, verified.

Exporters. torch 2.x has two, and ``--exporter`` picks (``auto`` by default):

- ``dynamo``: torch.export + onnxscript (``torch.onnx.export(dynamo=True)``), torch's current
  exporter, for opsets 18 and up (its own opset is 18; 19..21 are converted up by onnxscript).
  It is called with ``dynamic_shapes`` (a ``torch.export.Dim`` batch, traced at batch 2:
  torch.export specialises sizes 0 and 1) rather than ``dynamic_axes``, ``external_data=False``
  (one file) and no file name (the model comes back in memory); the head's ReduceMean +
  Reshape are rewritten to the GlobalAveragePool + Flatten the TorchScript exporter writes
  (:func:`dynamo_head`), and its per-node provenance (stack traces, fx names) is dropped.
- ``torchscript``: the deprecated TorchScript exporter (``dynamo=False``), for opsets 13..21.
  Below opset 18 it is the only path: the dynamo exporter's down-conversion fails on ReduceMean.
- ``auto``: dynamo where it gives the same graph (opset >= 18, and a torch with the dynamo
  exporter and onnxscript installed), TorchScript otherwise. The metadata's ``exporter`` says
  which ran.

Either way the graph is cleaned of what export leaves behind (Identity nodes where tracing
de-duplicated equal initializers, Constant nodes, unused initializers), optionally run through
onnxslim, and re-checked; both exporters give the same operators (Conv, Relu, MaxPool,
GlobalAveragePool, Flatten). Their warnings and progress lines are captured, not shown.

Neither exporter takes AdaptiveMaxPool2d when the output size does not divide the input size
(the ada_pool variant, 75 -> 38 -> 19 -> 10); :mod:`vnexport.adapool` rewrites those pools with
plain max pools, exactly, for the exported input size.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch

from . import __version__, ort
from .adapool import exportable_adaptive_pools, pool_plan
from .checkpoint import Checkpoint
from .errors import MissingRuntimeError, VnexportError
from .fileio import check_new_output
from .fuse import deploy_model, provenance
from .model import (IMAGENET_MEAN, IMAGENET_STD, VanillaNet, VanillaNetConfig, check_img_size,
                    variant_name)
from .onnx_file import PROTOBUF_LIMIT, save_onnx, serialize, set_metadata
from .precision import apply_precision
from .verify import FP32, Comparison, Tolerance, calibration_inputs, compare, run_torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 21, 17
EXPORTERS = ("auto", "dynamo", "torchscript")
DYNAMO_MIN_OPSET = 18  # the dynamo exporter's own opset; below it, TorchScript
# what torch.onnx.export must take for the dynamo path as vnexport calls it (torch >= 2.6)
_DYNAMO_PARAMS = ("dynamo", "dynamic_shapes", "external_data", "optimize")
# What the graph of a stride variant may hold (the ada_pool variant may add Gather/Max at input
# sizes where one MaxPool cannot express its adaptive windows).
STRIDE_VARIANT_OPS = frozenset({"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten"})

# Batch sizes a dynamic-batch model is verified at, besides batch 1, when --max-batch is not given.
DEFAULT_VERIFY_BATCH = 8


# --------------------------------------------------------------------------------------------
# option checks


def dynamo_missing() -> str | None:
    """Why this installation cannot run the dynamo exporter as vnexport calls it (None: it can)."""
    params = inspect.signature(torch.onnx.export).parameters
    lacking = [p for p in _DYNAMO_PARAMS if p not in params]
    if lacking:
        return (f"torch {torch.__version__}'s torch.onnx.export takes no "
                f"{', '.join(lacking)} (torch >= 2.6 has the dynamo exporter)")
    if importlib.util.find_spec("onnxscript") is None:
        return "onnxscript is not installed (pip install onnxscript)"
    return None


def resolve_exporter(exporter: str, opset: int) -> str:
    """'dynamo' or 'torchscript': the exporter that runs for ``--exporter`` at ``opset``."""
    if exporter not in EXPORTERS:
        raise VnexportError(f"--exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if exporter == "torchscript":
        return exporter
    if exporter == "dynamo":
        if opset < DYNAMO_MIN_OPSET:
            raise VnexportError(f"--exporter dynamo writes opset {DYNAMO_MIN_OPSET} and later, "
                                f"not --opset {opset} (use --exporter torchscript or auto)")
        reason = dynamo_missing()
        if reason:
            raise MissingRuntimeError(f"--exporter dynamo: {reason}")
        return exporter
    return "dynamo" if opset >= DYNAMO_MIN_OPSET and dynamo_missing() is None else "torchscript"


def check_options(cfg: VanillaNetConfig, *, opset: int, img_size: int, batch: int,
                  dynamic_batch: bool, max_batch: int | None, exporter: str = "auto") -> None:
    """Refuse options the export cannot honour, with one line each (VnexportError, exit 2;
    exit 3 for ``--exporter dynamo`` without the dynamo exporter)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise VnexportError(f"--opset must be within {MIN_OPSET}..{MAX_OPSET}, got {opset}")
    resolve_exporter(exporter, opset)
    reason = check_img_size(cfg, img_size)
    if reason:
        raise VnexportError(f"--img-size: {reason}")
    if batch < 1:
        raise VnexportError(f"--batch must be >= 1, got {batch}")
    if max_batch is not None:
        if not dynamic_batch:
            raise VnexportError("--max-batch needs --dynamic-batch (a static model has one batch "
                                "size: --batch)")
        if max_batch < 1:
            raise VnexportError(f"--max-batch must be >= 1, got {max_batch}")
        if batch > max_batch:
            raise VnexportError(f"--batch {batch} is above --max-batch {max_batch}")
    weight_bytes = sum(p.numel() for p in _meta_params(cfg)) * 4
    if weight_bytes >= PROTOBUF_LIMIT:
        raise VnexportError(f"the weights take {weight_bytes / 2**30:.2f} GiB; a self-contained "
                            "ONNX file holds at most 2 GiB")


def _meta_params(cfg: VanillaNetConfig):
    with torch.device("meta"):
        return list(VanillaNet(cfg, deploy=True).parameters())


# --------------------------------------------------------------------------------------------
# export and clean-up


def onnx_model_from_deploy(model: VanillaNet, *, opset: int = DEFAULT_OPSET, img_size: int = 224,
                           batch: int = 1, dynamic_batch: bool = False, simplify: bool = True,
                           exporter: str = "auto") -> onnx.ModelProto:
    """The deploy-form ``model`` as a checked, cleaned ONNX model (in memory, no metadata),
    written by ``exporter`` (see :func:`resolve_exporter`)."""
    if not model.deploy:
        raise ValueError("onnx_model_from_deploy takes a deploy-form network (fuse it first)")
    check_options(model.cfg, opset=opset, img_size=img_size, batch=batch,
                  dynamic_batch=dynamic_batch, max_batch=None, exporter=exporter)
    export = (_dynamo_export if resolve_exporter(exporter, opset) == "dynamo"
              else _torchscript_export)
    proto = export(model, opset, img_size, batch, dynamic_batch)
    proto = relu_before_max_pool(clean_graph(proto))
    if simplify:
        proto = relu_before_max_pool(clean_graph(_slim(proto)))
    proto.producer_name = "vnexport"
    proto.producer_version = __version__
    proto.graph.name = _graph_name(model.cfg)
    return infer_and_check(proto)


def _graph_name(cfg: VanillaNetConfig) -> str:
    return variant_name(cfg) or "vanillanet_custom"


@contextlib.contextmanager
def quiet_export():
    """Capture what an exporter prints, warns and logs (the TorchScript exporter's deprecation
    notice; torch.export's progress lines, FutureWarnings and registry warnings). Yields the
    captured text; logging records below ERROR are dropped for the block."""
    text = io.StringIO()
    level = logging.root.manager.disable
    with warnings.catch_warnings(), contextlib.redirect_stdout(text), \
            contextlib.redirect_stderr(text):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield text
        finally:
            logging.disable(level)


def _torchscript_export(model: VanillaNet, opset: int, img_size: int, batch: int,
                        dynamic_batch: bool) -> onnx.ModelProto:
    x = torch.zeros(batch, model.cfg.in_chans, img_size, img_size)
    dynamic_axes = ({INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}}
                    if dynamic_batch else None)
    buf = io.BytesIO()
    model = model.eval()
    with quiet_export(), exportable_adaptive_pools(model), torch.no_grad():
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic_axes, do_constant_folding=True,
                          export_params=True, keep_initializers_as_inputs=False)
    proto = onnx.ModelProto()
    proto.ParseFromString(buf.getbuffer())  # no bytes copy of the weights beside the buffer
    return proto


def _dynamo_export(model: VanillaNet, opset: int, img_size: int, batch: int,
                   dynamic_batch: bool) -> onnx.ModelProto:
    """torch.export + onnxscript; the model comes back in memory (no file, no ``.data``) with
    the head in TorchScript's form (:func:`dynamo_head`) and no per-node provenance."""
    # torch.export specialises a size-1 dimension, so a dynamic batch is traced at batch 2
    x = torch.zeros(2 if dynamic_batch else batch, model.cfg.in_chans, img_size, img_size)
    shapes = ({0: torch.export.Dim(BATCH_DIM, min=1)},) if dynamic_batch else None
    model = model.eval()
    with quiet_export(), exportable_adaptive_pools(model), torch.no_grad():
        program = torch.onnx.export(model, (x,), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=shapes, external_data=False, optimize=True,
                                    verbose=False)
        proto = program.model_proto
    del program  # holds the exported graph module
    return dynamo_head(strip_provenance(proto))


def strip_provenance(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the dynamo exporter's provenance (in place): model, graph, value and node
    metadata_props (stack traces with file paths, fx node names) and unused opset imports."""
    g = model.graph
    del model.metadata_props[:]
    del g.metadata_props[:]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        del vi.metadata_props[:]
    for node in g.node:
        del node.metadata_props[:]
    used = {n.domain for n in g.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def _const_ints(model: onnx.ModelProto, name: str) -> list[int] | None:
    init = next((t for t in model.graph.initializer if t.name == name), None)
    if init is None or init.data_type != onnx.TensorProto.INT64:
        return None
    return [int(v) for v in onnx.numpy_helper.to_array(init).reshape(-1)]


def _batch_dim(model: onnx.ModelProto) -> int | None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") else None


def _flattens_batch(model: onnx.ModelProto, shape: str, producer: dict) -> bool:
    """Whether the Reshape target ``shape`` is [N, C] with N the batch of the graph input: a
    constant [-1 or the static batch, C > 0], or (older onnxscript, dynamic batch)
    Concat(Shape(input)[0:1], [C > 0]) along axis 0."""
    const = _const_ints(model, shape)
    if const is not None:
        return len(const) == 2 and const[0] in (-1, _batch_dim(model)) and const[1] > 0
    concat = producer.get(shape)
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2 \
            or {a.name: a.i for a in concat.attribute}.get("axis") != 0:
        return False
    head, tail = producer.get(concat.input[0]), _const_ints(model, concat.input[1])
    span = {a.name: a.i for a in head.attribute} if head is not None else {}
    return (head is not None and head.op_type == "Shape"
            and head.input[0] == model.graph.input[0].name
            and span.get("start", 0) == 0 and span.get("end") == 1
            and tail is not None and len(tail) == 1 and tail[0] > 0)


def _drop_dead_nodes(g: onnx.GraphProto) -> None:
    """Delete, in place, nodes none of whose outputs is used (until none is left)."""
    while True:
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [k for k, n in enumerate(g.node) if not any(o in used for o in n.output)]
        if not dead:
            return
        for k in reversed(dead):
            del g.node[k]


def dynamo_head(model: onnx.ModelProto) -> onnx.ModelProto:
    """The dynamo exporter's head in the TorchScript exporter's operators (in place):
    ReduceMean over axes (2, 3) keeping dims -> GlobalAveragePool (the same mean: the graph is
    NCHW throughout), and Reshape of [N, C, 1, 1] to [N, C] -> Flatten(axis=1) (the same
    result when the new first dimension is the batch: :func:`_flattens_batch`; the strict
    shape inference after it checks C against the declared output). Anything else is left as
    it is; nodes left without a use (the shape computation) are dropped."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        attrs = {a.name: a.i for a in node.attribute}
        if node.op_type == "ReduceMean" and len(node.input) == 2 \
                and attrs.get("keepdims", 1) == 1 and attrs.get("noop_with_empty_axes", 0) == 0 \
                and sorted(a % 4 for a in _const_ints(model, node.input[1]) or []) == [2, 3]:
            node.op_type = "GlobalAveragePool"
        elif node.op_type == "Reshape" and len(node.input) == 2 \
                and _flattens_batch(model, node.input[1], producer):
            node.op_type = "Flatten"
        else:
            continue
        del node.input[1:]
        del node.attribute[:]
        if node.op_type == "Flatten":
            node.attribute.append(onnx.helper.make_attribute("axis", 1))
    _drop_dead_nodes(model.graph)
    return model


def clean_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Remove tracing leftovers, in place: Identity nodes (rewired), Constant nodes (turned into
    initializers), initializers no node uses, stale value_info and doc strings."""
    g = model.graph
    outputs = {o.name for o in g.output}
    rename: dict[str, str] = {}
    keep = []
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
            continue
        if node.op_type == "Constant" and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            g.initializer.append(tensor)
            continue
        node.ClearField("doc_string")
        keep.append(node)
    if any(o.name in rename for o in g.output):  # never happens with our outputs; be safe
        raise RuntimeError("a graph output is an Identity of another value")
    del g.node[:]
    g.node.extend(keep)
    _drop_unused_initializers(g)
    del g.value_info[:]
    g.ClearField("doc_string")
    return model


def _drop_unused_initializers(g: onnx.GraphProto) -> None:
    """Delete, in place and in order, the initializers no node or output uses (deleted one by
    one: re-adding the kept ones would copy them, and protobuf frees nothing of a message's
    memory until the whole message goes)."""
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    for k in reversed(range(len(g.initializer))):
        if g.initializer[k].name not in used:
            del g.initializer[k]


def with_structure(model: onnx.ModelProto, light: onnx.ModelProto,
                   moved: set[str]) -> onnx.ModelProto:
    """``model`` (in place) with the nodes, small initializers, value_info and outputs of
    ``light``, a processed :func:`weightless_view` of it; the weights (``moved``) stay where
    they are (weights no node uses any more are dropped)."""
    g, lg = model.graph, light.graph
    inputs = [i.name for i in lg.input if i.name not in moved]
    if inputs != [i.name for i in g.input] or [o.name for o in lg.output] != \
            [o.name for o in g.output] or any(t.name in moved for t in lg.initializer):
        raise RuntimeError("the weightless graph's inputs, outputs or weights changed")
    del g.node[:]
    g.node.extend(lg.node)
    def small(inits):
        return sorted(t.SerializeToString(deterministic=True) for t in inits
                      if t.name not in moved)

    if small(g.initializer) != small(lg.initializer):  # else leave them, in their order
        for k in reversed(range(len(g.initializer))):
            if g.initializer[k].name not in moved:
                del g.initializer[k]
        g.initializer.extend(lg.initializer)
    del g.output[:]
    g.output.extend(lg.output)
    del g.value_info[:]
    g.value_info.extend(v for v in lg.value_info if v.name not in moved)
    _drop_unused_initializers(g)
    return model


def relu_before_max_pool(model: onnx.ModelProto) -> onnx.ModelProto:
    """MaxPool -> Relu becomes Relu -> MaxPool (in place). relu(max(window)) == max(relu(window))
    exactly (both are monotone; padded cells never count), and a Relu right after a Conv is fused
    into it by ONNX Runtime and TensorRT, where one after a MaxPool is a separate pass."""
    nodes = list(model.graph.node)
    consumers = Counter(i for n in nodes for i in n.input)
    outputs = {o.name for o in model.graph.output}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    for r, relu in enumerate(nodes):
        if relu.op_type != "Relu" or relu.input[0] not in producer:
            continue
        p = producer[relu.input[0]]
        pool = nodes[p]
        if pool.op_type != "MaxPool" or len(pool.output) != 1 \
                or consumers[pool.output[0]] != 1 or pool.output[0] in outputs:
            continue
        x, y, mid = pool.input[0], relu.output[0], relu.output[0] + "_before_pool"
        relu.input[0], relu.output[0] = x, mid
        pool.input[0], pool.output[0] = mid, y
        nodes[p], nodes[r] = relu, pool  # still topologically sorted
        producer[mid], producer[y] = p, r
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _slim(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim on the graph's structure (:func:`weightless_view`: the weights are typed inputs
    to it, so it neither copies nor folds them), its result put back into ``model``."""
    import onnxslim

    light, moved = weightless_view(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = onnxslim.slim(light)
    if slim is None:  # onnxslim could not process it: keep the graph as exported
        return model
    return with_structure(model, slim, moved)


def check(model: onnx.ModelProto) -> None:
    """``onnx.checker.check_model(full_check=True)``; a failure is a bug, not a user error."""
    onnx.checker.check_model(model, full_check=True)


# initializers above this many bytes are weights: typed graph inputs in the weightless view
_WEIGHT_BYTES = 4096


def weightless_view(model: onnx.ModelProto) -> tuple[onnx.ModelProto, set[str]]:
    """A new model with ``model``'s graph in which every initializer over 4 KiB (the weights)
    is a graph input of the same type and shape instead (small ones, such as Gather indices,
    stay), and the names moved. Shape inference and the checker see the same graph without a
    copy of the weights (both serialise the model they are given, the checker twice)."""
    g = model.graph
    big = [t for t in g.initializer if t.ByteSize() > _WEIGHT_BYTES]
    moved = {t.name for t in big}
    graph = onnx.helper.make_graph(
        list(g.node), g.name, list(g.input) + [
            onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big],
        list(g.output), [t for t in g.initializer if t.name not in moved],
        value_info=list(g.value_info))
    light = onnx.helper.make_model(graph, opset_imports=list(model.opset_import),
                                   ir_version=model.ir_version)
    return light, moved


def infer_and_check(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference (types checked, value_info and output shapes written into
    ``model``, in place) and the full checker, both on :func:`weightless_view`; returns
    ``model``. A failure is a bug, not a user error."""
    light, moved = weightless_view(model)
    light = onnx.shape_inference.infer_shapes(light, check_type=True, strict_mode=True,
                                              data_prop=True)
    check(light)
    return with_structure(model, light, moved)


def expected_conv_count(cfg: VanillaNetConfig) -> int:
    """stem conv + stem activation, a conv and an activation per stage, the head conv."""
    return 2 + 2 * cfg.num_stages + 1


def ada_pool_plans(cfg: VanillaNetConfig, img_size: int) -> list[str]:
    """How each adaptive pool is expressed at ``img_size``, e.g. 'stages.1: 75 -> 38: MaxPool
    k3 s2 p1'."""
    if not cfg.is_ada_pool:
        return []
    with torch.device("meta"):
        model = VanillaNet(cfg, deploy=True)
    sizes: list[int] = []
    hooks = [s.register_forward_pre_hook(lambda m, a: sizes.append(int(a[0].shape[-1])))
             for s in (st.pool for st in model.stages)]
    with torch.no_grad(), exportable_adaptive_pools(model):
        model(torch.empty(1, cfg.in_chans, img_size, img_size, device="meta"))
    for h in hooks:
        h.remove()
    return [f"stages.{i}: {L} -> {n}: {pool_plan(L, n)}"
            for i, (L, n) in enumerate(zip(sizes, cfg.ada_pool)) if n]


def exporter_description(exporter: str) -> str:
    """The ``exporter_versions`` metadata: what wrote the graph, with versions."""
    if exporter == "dynamo":
        import onnxscript

        return (f"torch {torch.__version__} dynamo exporter (torch.export), onnxscript "
                f"{onnxscript.__version__}; cleaned by vnexport")
    return f"torch {torch.__version__} TorchScript exporter; cleaned by vnexport"


def export_metadata(ckpt: Checkpoint, *, opset: int, img_size: int, batch: int,
                    dynamic_batch: bool, max_batch: int | None, simplify: bool,
                    exporter: str) -> dict:
    """What a user needs to run the file (input, normalisation) and where it came from;
    ``exporter`` is the one that ran ('dynamo' or 'torchscript')."""
    meta = provenance(ckpt, None)
    meta.pop("verification")
    meta.update({
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_shape": [BATCH_DIM if dynamic_batch else batch, ckpt.cfg.in_chans, img_size,
                        img_size],
        "img_size": img_size,
        "dynamic_batch": dynamic_batch,
        "max_batch": max_batch,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "color": "RGB, [0, 1] scaled, then (x - mean) / std, NCHW",
        "opset": opset,
        "simplified": simplify,
        "exporter": exporter,
        "exporter_versions": exporter_description(exporter),
    })
    return meta


def fp32_onnx_from_deploy(model, img_size: int, opset: int = 17,
                          exporter: str = "auto") -> onnx.ModelProto:
    """The fp32 ONNX graph (input ``input`` [N,3,H,W], output ``logits``) of a deploy model,
    with a dynamic batch: :func:`onnx_model_from_deploy`."""
    return onnx_model_from_deploy(model, opset=opset, img_size=img_size, batch=1,
                                  dynamic_batch=True, simplify=True, exporter=exporter)


def export_onnx(ckpt: Checkpoint, path: Path, *, opset: int = DEFAULT_OPSET, img_size: int = 224,
                batch: int = 1, dynamic_batch: bool = False, max_batch: int | None = None,
                simplify: bool = True, allow_inexact: bool = False,
                extra_metadata: dict | None = None, precision: str = "fp32",
                calib_x: np.ndarray | None = None, exporter: str = "auto",
                overwrite: bool = False,
                **precision_options) -> onnx.ModelProto:
    """Fuse (a training checkpoint) or take (a deploy checkpoint), export, write ONE file
    atomically, return the model written. No verification here: see :func:`verify_onnx`, and
    :func:`set_metadata` + :func:`save_onnx` to add its figures.

    ``precision`` fp16/int8 converts the graph with :func:`vnexport.precision.apply_precision`
    (``precision_options`` go to it), calibrated on ``calib_x``; without ``calib_x`` on seeded
    random inputs, which the report warns is fit for speed measurements only.

    An existing ``path`` is refused (VnexportError) unless ``overwrite=True``, checked before
    any work.
    """
    check_new_output(path, overwrite)
    check_options(ckpt.cfg, opset=opset, img_size=img_size, batch=batch,
                  dynamic_batch=dynamic_batch, max_batch=max_batch, exporter=exporter)
    exporter = resolve_exporter(exporter, opset)
    model = deploy_model(ckpt, allow_inexact)
    proto = onnx_model_from_deploy(model, opset=opset, img_size=img_size, batch=batch,
                                   dynamic_batch=dynamic_batch, simplify=simplify,
                                   exporter=exporter)
    del model
    meta = export_metadata(ckpt, opset=opset, img_size=img_size, batch=batch,
                           dynamic_batch=dynamic_batch, max_batch=max_batch, simplify=simplify,
                           exporter=exporter)
    set_metadata(proto, {**meta, **(extra_metadata or {})}, sort_keys=True)
    if precision != "fp32":
        random_calib = calib_x is None
        if random_calib:
            calib_x = calibration_inputs(ckpt.cfg, precision, 8 * batch if not dynamic_batch
                                         else 8, img_size)
        proto, _ = apply_precision(proto, precision, calib_x=calib_x,
                                   calib_is_random=random_calib, **precision_options)
    save_onnx(proto, path, overwrite=overwrite)
    return proto


# --------------------------------------------------------------------------------------------
# ONNX Runtime


def _run_both_batch_sizes(session, x: np.ndarray, max_batch: int | None = None) -> np.ndarray:
    """Run any number of inputs through a session. A static batch runs in chunks of it (see
    :func:`ort.run`); a dynamic batch runs the first input alone (batch 1) and the rest
    in chunks of up to ``max_batch``, so that both sizes are exercised."""
    if ort.fixed_batch(session) is not None or len(x) < 2:
        return ort.run(session, x)
    return np.concatenate([ort.run(session, x[:1]),
                           ort.run(session, x[1:], batch=max_batch or DEFAULT_VERIFY_BATCH)])


@dataclass
class OnnxVerification:
    comparisons: dict[str, Comparison]  # provider -> comparison
    reference: str  # what the ONNX outputs were compared with

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons.values())

    def to_dict(self) -> dict:
        return {"reference": self.reference, "passed": self.passed,
                "providers": {p: c.to_dict() for p, c in self.comparisons.items()}}


def reference_label(ckpt: Checkpoint) -> str:
    """What verification compares with: the independent path, the checkpoint's training-form
    network (a deploy checkpoint has only its deploy form)."""
    return ("training-form PyTorch network" if ckpt.form == "training"
            else "deploy-form PyTorch network (the file holds no training form)")


def verify_onnx(ckpt: Checkpoint, model_or_path, x: torch.Tensor, tol: Tolerance = FP32,
                reference: np.ndarray | None = None, *, max_batch: int | None = None,
                providers: Sequence[str] | None = None,
                threads: int | None = None) -> OnnxVerification:
    """Run the ONNX model on ONNX Runtime (each provider) and compare with the training form."""
    if reference is None:
        reference = run_torch(ckpt.build_model(), x)
    if isinstance(model_or_path, onnx.ModelProto):
        model_or_path = serialize(model_or_path)
    xs = x.numpy()
    comps = {}
    for provider in providers or ort.available_providers():
        session = ort.session(model_or_path, threads=threads, providers=[provider])
        comps[provider] = compare(reference, _run_both_batch_sizes(session, xs, max_batch), tol)
    return OnnxVerification(comps, reference_label(ckpt))


def verification_metadata(comparisons: dict[str, Comparison], reference: str,
                          inputs: dict) -> dict:
    """The figures stored in the file (one entry per provider, or per check of a reduced-
    precision file), rounded so that a rerun writes the same bytes."""
    figs = {}
    for p, c in comparisons.items():
        figs[p] = {"max_abs": float(f"{c.max_abs:.3e}"), "max_rel": float(f"{c.max_rel:.3e}"),
                   "cosine": round(c.cosine, 8), "top1_agreement": c.top1_agreement,
                   "n": c.n, "passed": c.passed}
    tol = next(iter(comparisons.values())).tolerance if comparisons else FP32
    return {"verification": {"reference": reference, "inputs": inputs, "providers": figs,
                             "tolerance": {"max_rel": tol.max_rel, "min_cosine": tol.min_cosine,
                                           "min_top1": tol.min_top1},
                             "passed": all(c.passed for c in comparisons.values())}}


