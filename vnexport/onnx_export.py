"""The ONNX stage: the deploy-form network as one small, self-contained ONNX graph, verified.

Exporter choice. torch 2.x has two exporters. The dynamo exporter specialises a batch-1 example
(a dynamic batch fails there), writes weights to a side ``.data`` file by default, always emits
opset >= 18 (its down-conversion to 13..17 fails on ReduceMean) and emits ReduceMean + Reshape for
the head. The TorchScript exporter (``dynamo=False``) takes opsets 13..22, a batch-1 example with a
dynamic batch axis, keeps everything in one file and emits GlobalAveragePool + Flatten. We use the
TorchScript exporter, then clean what tracing leaves behind (Identity nodes where it de-duplicated
equal initializers, Constant nodes, unused initializers), optionally run onnxslim, and re-check.

Neither exporter takes AdaptiveMaxPool2d when the output size does not divide the input size
(the ada_pool variant, 75 -> 38 -> 19 -> 10); :mod:`vnexport.adapool` rewrites those pools with
plain max pools, exactly, for the exported input size.
"""

from __future__ import annotations

import io
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
from .errors import VnexportError
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
# What the graph of a stride variant may hold (the ada_pool variant may add Gather/Max at input
# sizes where one MaxPool cannot express its adaptive windows).
STRIDE_VARIANT_OPS = frozenset({"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten"})

# Batch sizes a dynamic-batch model is verified at, besides batch 1, when --max-batch is not given.
DEFAULT_VERIFY_BATCH = 8


# --------------------------------------------------------------------------------------------
# option checks


def check_options(cfg: VanillaNetConfig, *, opset: int, img_size: int, batch: int,
                  dynamic_batch: bool, max_batch: int | None) -> None:
    """Refuse options the export cannot honour, with one line each (VnexportError, exit 2)."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise VnexportError(f"--opset must be within {MIN_OPSET}..{MAX_OPSET}, got {opset}")
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
                           batch: int = 1, dynamic_batch: bool = False,
                           simplify: bool = True) -> onnx.ModelProto:
    """The deploy-form ``model`` as a checked, cleaned ONNX model (in memory, no metadata)."""
    if not model.deploy:
        raise ValueError("onnx_model_from_deploy takes a deploy-form network (fuse it first)")
    check_options(model.cfg, opset=opset, img_size=img_size, batch=batch,
                  dynamic_batch=dynamic_batch, max_batch=None)
    proto = _torchscript_export(model, opset, img_size, batch, dynamic_batch)
    proto = relu_before_max_pool(clean_graph(proto))
    if simplify:
        proto = relu_before_max_pool(clean_graph(_slim(proto)))
    proto.producer_name = "vnexport"
    proto.producer_version = __version__
    proto.graph.name = _graph_name(model.cfg)
    proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True,
                                              data_prop=True)
    check(proto)
    return proto


def _graph_name(cfg: VanillaNetConfig) -> str:
    return variant_name(cfg) or "vanillanet_custom"


def _torchscript_export(model: VanillaNet, opset: int, img_size: int, batch: int,
                        dynamic_batch: bool) -> onnx.ModelProto:
    x = torch.zeros(batch, model.cfg.in_chans, img_size, img_size)
    dynamic_axes = ({INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}}
                    if dynamic_batch else None)
    buf = io.BytesIO()
    model = model.eval()
    with warnings.catch_warnings(), exportable_adaptive_pools(model), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes=dynamic_axes, do_constant_folding=True,
                          export_params=True, keep_initializers_as_inputs=False)
    return onnx.load_model_from_string(buf.getvalue())


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
    used = {i for n in g.node for i in n.input} | outputs
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    del g.value_info[:]
    g.ClearField("doc_string")
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
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = onnxslim.slim(model)
    if slim is None:  # onnxslim could not process it: keep the graph as exported
        return model
    del slim.metadata_props[:]
    return slim


def check(model: onnx.ModelProto) -> None:
    """``onnx.checker.check_model(full_check=True)``; a failure is a bug, not a user error."""
    onnx.checker.check_model(model, full_check=True)


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


def export_metadata(ckpt: Checkpoint, *, opset: int, img_size: int, batch: int,
                    dynamic_batch: bool, max_batch: int | None, simplify: bool) -> dict:
    """What a user needs to run the file (input, normalisation) and where it came from."""
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
        "exporter": f"torch {torch.__version__} TorchScript exporter, cleaned by vnexport",
    })
    return meta


def fp32_onnx_from_deploy(model, img_size: int, opset: int = 17) -> onnx.ModelProto:
    """The fp32 ONNX graph (input ``input`` [N,3,H,W], output ``logits``) of a deploy model,
    with a dynamic batch: :func:`onnx_model_from_deploy`."""
    return onnx_model_from_deploy(model, opset=opset, img_size=img_size, batch=1,
                                  dynamic_batch=True, simplify=True)


def export_onnx(ckpt: Checkpoint, path: Path, *, opset: int = DEFAULT_OPSET, img_size: int = 224,
                batch: int = 1, dynamic_batch: bool = False, max_batch: int | None = None,
                simplify: bool = True, allow_inexact: bool = False,
                extra_metadata: dict | None = None, precision: str = "fp32",
                calib_x: np.ndarray | None = None, overwrite: bool = False,
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
                  dynamic_batch=dynamic_batch, max_batch=max_batch)
    model = deploy_model(ckpt, allow_inexact)
    proto = onnx_model_from_deploy(model, opset=opset, img_size=img_size, batch=batch,
                                   dynamic_batch=dynamic_batch, simplify=simplify)
    meta = export_metadata(ckpt, opset=opset, img_size=img_size, batch=batch,
                           dynamic_batch=dynamic_batch, max_batch=max_batch, simplify=simplify)
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


