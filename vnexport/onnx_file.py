"""ONNX files: the one loader, metadata, precision detection, input geometry, op inventory.

A format module: it reads and writes ONNX files and answers questions about a graph; it runs
nothing (ONNX Runtime lives in ``ort.py``, TensorRT in the ``trt`` package).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from .errors import VnexportError
from .fileio import atomic_output

PRECISIONS = ("fp32", "fp16", "int8")
PROTOBUF_LIMIT = 2**31 - 1
_QDQ = {"QuantizeLinear", "DequantizeLinear"}


# --------------------------------------------------------------------------------------------
# loading and saving


def load_onnx(path: str | os.PathLike, external_data: bool = True) -> onnx.ModelProto:
    """``onnx.load`` with a one-line error for a missing, empty or unreadable file.
    ``external_data=False`` reads the graph without a ``.onnx.data`` weights file."""
    path = Path(path)
    if not path.is_file():
        raise VnexportError("no such file", path)
    if path.stat().st_size == 0:
        raise VnexportError("the file is empty", path)
    try:
        return onnx.load(str(path), load_external_data=external_data)
    except Exception as e:  # onnx raises DecodeError, ValueError, OSError ...
        first = (str(e).splitlines() or [type(e).__name__])[0][:200] or "parse error"
        raise VnexportError(f"not a readable ONNX file ({type(e).__name__}: {first})",
                            path) from None


def _graph(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """``model`` itself, or the graph of the file it names (weights not needed)."""
    if isinstance(model, onnx.ModelProto):
        return model
    return load_onnx(model, external_data=False)


def serialize(model: onnx.ModelProto) -> bytes:
    data = model.SerializeToString(deterministic=True)
    if len(data) >= PROTOBUF_LIMIT:
        raise VnexportError("the model is over 2 GiB; a self-contained ONNX file cannot hold it")
    return data


def save_onnx(model: onnx.ModelProto, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``model`` as one self-contained file (weights inside), atomically; an existing
    file only as planned (--force) or with ``overwrite``."""
    path = Path(path)
    data = serialize(model)
    with atomic_output(path, replace=True if overwrite else None) as tmp:
        tmp.write_bytes(data)
    return path


# --------------------------------------------------------------------------------------------
# metadata


def set_metadata(model: onnx.ModelProto, data: dict, sort_keys: bool = False) -> onnx.ModelProto:
    """Merge ``data`` into ``metadata_props`` (in place): strings kept, anything else as JSON.
    With ``sort_keys`` the keys end up sorted, so equal metadata serialises to equal bytes;
    without it existing keys keep their place and new ones are appended."""
    props = {p.key: p.value for p in model.metadata_props}
    for k, v in data.items():
        props[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
    del model.metadata_props[:]
    helper.set_model_props(model, dict(sorted(props.items())) if sort_keys else props)
    return model


def get_metadata(model: onnx.ModelProto | str | os.PathLike) -> dict[str, str]:
    return {p.key: p.value for p in _graph(model).metadata_props}


def stored_max_batch(model: onnx.ModelProto | str | os.PathLike) -> int | None:
    """The ``max_batch`` metadata ``onnx --dynamic-batch --max-batch N`` stores (a positive
    integer), else None."""
    try:
        value = json.loads(get_metadata(model)["max_batch"])
    except (KeyError, ValueError):
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if ok else None


# --------------------------------------------------------------------------------------------
# what the graph is


def op_inventory(model: onnx.ModelProto | str | os.PathLike) -> dict[str, int]:
    """Operator type -> how many nodes, most frequent first (ties by name)."""
    counts = Counter(n.op_type for n in _graph(model).graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass(frozen=True)
class OnnxInput:
    """The single image input of an ONNX classifier: name, shape (None = dynamic), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str  # numpy name, e.g. "float32"

    @property
    def batch(self) -> int | None:
        return self.shape[0]


def read_onnx_input(path: str | os.PathLike, model=None) -> OnnxInput:
    """The one graph input (initializers excluded) with its static dims; None where dynamic."""
    model = model if model is not None else _graph(Path(path))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise VnexportError(f"expected one image input, the graph has {len(inputs)} "
                            f"({', '.join(i.name for i in inputs) or 'none'})", path)
    inp = inputs[0]
    tt = inp.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in tt.shape.dim)
    if len(dims) != 4:
        raise VnexportError(f"input {inp.name!r} has rank {len(dims)}; an NCHW image input "
                            "(rank 4) is needed", path)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    return OnnxInput(inp.name, dims, dtype)


def input_geometry(model: onnx.ModelProto) -> tuple[int | None, int | None]:
    """(channels, image size) of the model's input; None where the dimension is symbolic."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    c = dims[1].dim_value or None
    h, w = dims[2].dim_value or None, dims[3].dim_value or None
    return c, (h if h == w else None)


def with_extra_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the tensors ``names``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(copy)
        types = {vi.name: vi.type.tensor_type.elem_type for vi in inferred.graph.value_info}
    except Exception:  # shape inference is best effort here; float is the usual type
        types = {}
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(
                name, types.get(name, onnx.TensorProto.FLOAT), None))
    return copy


def check_fp32_classifier(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """Refuse anything but an fp32 classifier (one [N,C,H,W] float input, one float output)."""
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise VnexportError(f"expected one input and one output, found {len(g.input)} and "
                            f"{len(g.output)}", path)
    for vi in (g.input[0], g.output[0]):
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise VnexportError(f"{vi.name} is not float32: this file is not an fp32 model "
                                "(already converted?)", path)
    if len(g.input[0].type.tensor_type.shape.dim) != 4:
        raise VnexportError(f"input {g.input[0].name} is not [N,C,H,W]", path)
    quant = {n.op_type for n in g.node} & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}
    if quant or any(t.data_type == onnx.TensorProto.FLOAT16 for t in g.initializer):
        raise VnexportError("already has reduced precision (float16 weights or Q/DQ nodes); "
                            "start from the fp32 file", path)
    return model


def detect_precision(path: str | os.PathLike | None = None, model=None,
                     strict: bool = True) -> str:
    """'int8' (Q/DQ nodes with int8 zero points), 'fp16' (float16 weights or tensors) or 'fp32'.

    ``strict`` (for TensorRT) refuses Q/DQ of another type (uint8, fp8, int4); without it any
    Q/DQ graph is judged 'int8' (ONNX Runtime runs them all).
    """
    model = model if model is not None else _graph(Path(path))
    g = model.graph
    qdq = [n for n in g.node if n.op_type in _QDQ]
    if qdq:
        inits = {i.name: i for i in g.initializer}
        consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
        types = set()
        for n in qdq:
            zp = n.input[2] if len(n.input) > 2 and n.input[2] else None
            if zp is None:
                attr = {a.name: a for a in n.attribute}
                if "output_dtype" in attr:
                    types.add(attr["output_dtype"].i)
                else:
                    types.add(onnx.TensorProto.UINT8)  # the ONNX default without zero point
            elif zp in inits:
                types.add(inits[zp].data_type)
            elif zp in consts:
                types.add(consts[zp].attribute[0].t.data_type)
        # int32 Q/DQ is bias quantization (scale = input scale x weight scale), not a
        # precision of its own; TensorRT's parser judges whether it takes it.
        names = {onnx.TensorProto.DataType.Name(t) for t in types} - {"INT32"}
        if strict and names != {"INT8"}:
            raise VnexportError(f"Q/DQ quantization of type {', '.join(sorted(names))}: "
                                "TensorRT INT8 needs symmetric int8 Q/DQ (zero point 0, int8)",
                                path)
        return "int8"
    fp16 = onnx.TensorProto.FLOAT16
    if any(i.data_type == fp16 for i in g.initializer):
        return "fp16"
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == fp16:
            return "fp16"
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == fp16:
                return "fp16"
            if n.op_type == "Constant" and a.name == "value" and a.t.data_type == fp16:
                return "fp16"
    return "fp32"
