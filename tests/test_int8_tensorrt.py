"""Every int8 ONNX file vnexport writes is one TensorRT's ONNX parser accepts.

TensorRT's explicit quantization takes symmetric int8 Q/DQ (zero point 0) with per-channel
weight scales on the output-channel axis (axis 0 of a Conv weight) and per-tensor activation
scales; a DequantizeLinear must consume int8 (or fp8/int4/fp4/uint8), never int32, so Conv biases
stay float (NVIDIA TensorRT docs, "Explicit Quantization":
docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html;
onnx/onnx-tensorrt issue 850 for the int32 bias refusal).

The files come from the product's own writer (``onnx_export.export_onnx(precision="int8")``,
which ``vnexport onnx --precision int8`` and, through ``precision.apply_precision``,
``vnexport quantize`` use) for every shape of file it can write: static batch, dynamic batch,
``--int8-stem``, and the ada_pool structure at 224 (plain max pools) and 256 (Gathers). The
layout is checked on the graph; the parse is TensorRT-RTX's own parser (``tensorrt_rtx``, a
real TensorRT ONNX parser that runs without a GPU), building a strongly typed network. The
parse tests skip only where ``tensorrt_rtx`` cannot be imported.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from vnexport.checkpoint import load_checkpoint
from vnexport.model import VanillaNetConfig
from vnexport.onnx_export import export_onnx
from vnexport.synthetic import write_training_checkpoint

try:
    import tensorrt_rtx as trtx
    NO_TRTX = None
except ImportError as e:  # the optional extra is not installed: the parse tests skip
    trtx = None
    NO_TRTX = f"tensorrt_rtx cannot be imported ({e}): pip install 'vnexport[trt-rtx]'"

SMALL = VanillaNetConfig(dims=(16, 32, 64), strides=(2, 2), num_classes=10)
# the ada_pool variant's structure (stride-3 stem, adaptive max pools 75 -> 38 -> 19 -> 10 at
# 224) at a small width and depth
ADA = VanillaNetConfig(dims=(8, 16, 32, 32, 64), strides=(1, 2, 2, 2), ada_pool=(0, 38, 19, 10),
                       num_classes=10)

# name -> (config, export keyword arguments)
CASES = {
    "static": (SMALL, dict(img_size=64, batch=1)),
    "static_batch4": (SMALL, dict(img_size=64, batch=4)),
    "dynamic": (SMALL, dict(img_size=64, dynamic_batch=True, max_batch=32)),
    "int8_stem": (SMALL, dict(img_size=64, dynamic_batch=True, quantize_stem=True)),
    "ada_pool_224": (ADA, dict(img_size=224, dynamic_batch=True)),
    "ada_pool_256": (ADA, dict(img_size=256, batch=1)),
}


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("int8")
    files = {}
    for name, (cfg, kw) in CASES.items():
        ck = load_checkpoint(write_training_checkpoint(d / f"{name}.pth", cfg, seed=3,
                                                       with_ema=False), strides=cfg.strides,
                             ada_pool=cfg.ada_pool)
        path = d / f"{name}.onnx"
        export_onnx(ck, path, precision="int8", **kw)
        files[name] = path
    return files


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _dtype_of(model: onnx.ModelProto, name: str) -> int | None:
    """Element type of a constant tensor (initializer or Constant node output)."""
    for init in model.graph.initializer:
        if init.name == name:
            return init.data_type
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return n.attribute[0].t.data_type
    return None


def _array(model: onnx.ModelProto, name: str) -> np.ndarray:
    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise KeyError(name)


@pytest.mark.parametrize("name", list(CASES))
def test_dequantize_consumes_only_int8(int8_files, name):
    """No DequantizeLinear reads anything but int8: a constant int8 weight, or the int8 output
    of a QuantizeLinear with an int8 zero point (int32 bias DQ is what TensorRT refuses)."""
    model = onnx.load(str(int8_files[name]))
    prod = _producers(model)
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs, "no Q/DQ at all: not an int8 file"
    for dq in dqs:
        src = dq.input[0]
        if src in prod and prod[src].op_type == "QuantizeLinear":
            q = prod[src]
            assert len(q.input) > 2 and _dtype_of(model, q.input[2]) == TensorProto.INT8, q.name
        else:
            assert _dtype_of(model, src) == TensorProto.INT8, \
                f"{dq.name} consumes {src} of type " \
                f"{TensorProto.DataType.Name(_dtype_of(model, src) or 0)}"


@pytest.mark.parametrize("name", list(CASES))
def test_qdq_layout_is_tensorrts(int8_files, name):
    """Symmetric int8 (every zero point 0), per-channel weight scales on axis 0 (one per output
    channel), per-tensor activation scales, and float Conv biases."""
    model = onnx.load(str(int8_files[name]))
    prod = _producers(model)
    weights = {}
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = _array(model, n.input[2]) if len(n.input) > 2 else None
        assert zp is not None and zp.dtype == np.int8 and not zp.any(), n.name
        scale = _array(model, n.input[1])
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if n.op_type == "DequantizeLinear" and n.input[0] not in prod:  # a constant weight
            w = _array(model, n.input[0])
            weights[n.output[0]] = w
            assert w.ndim == 4 and axis == 0 and scale.shape == (w.shape[0],), n.name
        else:
            assert scale.size == 1, f"{n.name}: activation scale is not per tensor"
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized = [c for c in convs if c.input[1] in weights]
    assert quantized, "no Conv reads a quantized weight"
    for c in quantized:
        assert c.input[0] in prod and prod[c.input[0]].op_type == "DequantizeLinear", c.name
        if len(c.input) > 2:
            assert c.input[2] not in prod, f"{c.name}: its bias is computed (a DQ?), not float"
            assert _dtype_of(model, c.input[2]) == TensorProto.FLOAT, c.name


def test_stem_float_unless_asked(int8_files):
    """The stem conv reads the float image unless --int8-stem (then it reads a DQ too)."""
    def stem_input_op(path):
        model = onnx.load(str(path))
        prod = _producers(model)
        first = next(n for n in model.graph.node if n.op_type == "Conv")
        return prod[first.input[1]].op_type if first.input[1] in prod else "initializer"

    assert stem_input_op(int8_files["dynamic"]) == "initializer"
    assert stem_input_op(int8_files["int8_stem"]) == "DequantizeLinear"


def _parse_strongly_typed(path) -> tuple[bool, list[str], dict]:
    """TensorRT-RTX's ONNX parser on a strongly typed network: (ok, errors, network facts)."""
    logger = trtx.Logger(trtx.Logger.ERROR)
    builder = trtx.Builder(logger)
    flags = 1 << int(trtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trtx.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(path))
    errors = [parser.get_error(i).desc() for i in range(parser.num_errors)]
    types = [network.get_layer(i).type for i in range(network.num_layers)]
    facts = {"strongly_typed": network.get_flag(trtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
             "quantize": types.count(trtx.LayerType.QUANTIZE),
             "dequantize": types.count(trtx.LayerType.DEQUANTIZE),
             "inputs": [tuple(network.get_input(i).shape) for i in range(network.num_inputs)]}
    return ok, errors, facts


@pytest.mark.skipif(NO_TRTX is not None, reason=NO_TRTX or "")
@pytest.mark.parametrize("name", list(CASES))
def test_parses_strongly_typed_with_tensorrt_rtx(int8_files, name):
    ok, errors, facts = _parse_strongly_typed(int8_files[name])
    assert ok and not errors, errors
    model = onnx.load(str(int8_files[name]))
    n_dq = sum(n.op_type == "DequantizeLinear" for n in model.graph.node)
    assert facts["strongly_typed"] and facts["dequantize"] == n_dq > 0
    assert facts["inputs"][0][0] == (-1 if CASES[name][1].get("dynamic_batch") else
                                     CASES[name][1].get("batch", 1))
