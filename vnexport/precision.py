"""Reduced precision written into the ONNX graph: a mixed FP16 graph, or explicit INT8 Q/DQ.

TensorRT 10.x deprecated (and 11 removed) the FP16/INT8 builder flags and calibrators: the
precision of a network is now part of the ONNX file and the engine is built strongly typed. The
same files run on ONNX Runtime, so they are built and verified here on any machine.

- FP16: onnxconverter-common's ``convert_float_to_float16`` (a maintained converter; NVIDIA
  ModelOpt AutoCast needs the modelopt package with its CUDA-oriented dependency tree, which this
  project does not install). Before converting, the value range of every tensor is measured on
  the calibration/verification inputs; a node whose output would overflow float16 (with a 2x
  margin) or lose more than float16's own rounding (relative RMS error of the cast, which grows
  when values fall in the subnormal range), or whose weights would, stays float32, and the report
  says which and why.
- INT8: onnxruntime.quantization ``quantize_static`` in QDQ format, int8 weights with symmetric
  per-output-channel scales (axis 0 of a Conv weight) and int8 activations with symmetric
  per-tensor scales (zero points 0), float Conv biases (``QuantizeBias`` False): the layout of
  TensorRT's explicit quantization (docs.nvidia.com/deeplearning/tensorrt/latest/
  inference-library/quantized-types-explicit-quantization.html), whose parser refuses a
  DequantizeLinear of int32; calibrated with MinMax, Entropy or Percentile. The calibrated ranges
  are cached in a JSON file keyed by sha256(fp32 model, calibration inputs, method, settings), so
  a rebuild skips calibration.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx

from . import ort
from .errors import VnexportError
from .fileio import atomic_output
from .onnx_file import PRECISIONS, set_metadata, with_extra_outputs
from .verify import Comparison, compare

METHODS = ("minmax", "entropy", "percentile")
FP16_MAX = 65504.0
# Keep a node in float32 when a value it produces (or weights it holds) exceed this: half of
# float16's largest finite value, because calibration images bound the ranges only for the images
# seen; a 2x margin absorbs brighter/odder inputs before anything becomes inf.
FP16_OVERFLOW_LIMIT = 0.5 * FP16_MAX
# Keep a node in float32 when casting its values to float16 has a relative RMS error above this.
# Float16 rounding alone gives ~2.8e-4 (unit roundoff 2^-11 / sqrt(3)) for values in the normal
# range; values in the subnormal range (|v| < 6.1e-5) or flushed to zero push it up. 1e-3 allows
# ordinary rounding (~3.5x) but catches tensors whose small values would be lost.
FP16_MAX_CAST_ERROR = 1e-3
CALIB_CACHE_VERSION = 2  # 2: entropy ranges from a 512-bin histogram (1: degenerate, = minmax)


class TensorRange(NamedTuple):
    min: float
    max: float
    absmax: float


@dataclass
class _Stats:
    min: float = np.inf
    max: float = -np.inf
    sumsq: float = 0.0
    errsq: float = 0.0
    SAMPLE = 1 << 18

    def update(self, v: np.ndarray) -> None:
        if not v.size:
            return
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        flat = v.ravel()
        if flat.size > self.SAMPLE:  # the cast error from an evenly strided sample (speed)
            flat = flat[::flat.size // self.SAMPLE]
        v64 = flat.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            err = flat.astype(np.float16).astype(np.float64) - v64
        self.sumsq += float((v64 * v64).sum())
        self.errsq += float((err * err).sum())

    @property
    def absmax(self) -> float:
        return max(abs(self.min), abs(self.max))

    @property
    def fp16_cast_error(self) -> float:
        """Relative RMS error of casting these values to float16 (inf on overflow)."""
        if not np.isfinite(self.errsq):
            return float("inf")
        return float(np.sqrt(self.errsq / self.sumsq)) if self.sumsq > 0 else 0.0


# --------------------------------------------------------------------------------------------
# ONNX Runtime helpers


def model_batch(model: onnx.ModelProto, default: int = 8) -> int:
    """The batch to feed a model: its fixed batch dimension, else ``default``."""
    return model.graph.input[0].type.tensor_type.shape.dim[0].dim_value or default


def _exposing_all_outputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` whose every float node output is also a graph output."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(inferred.graph.value_info) + list(inferred.graph.output)}
    names = [out for node in model.graph.node for out in node.output
             if out and types.get(out) == onnx.TensorProto.FLOAT]
    return with_extra_outputs(model, names), names


def _tensor_stats(model: onnx.ModelProto, x: np.ndarray, batch: int = 8) -> dict[str, _Stats]:
    batch = model_batch(model, batch)
    augmented, names = _exposing_all_outputs(model)
    sess = ort.session(augmented, device="cpu")
    in_name = sess.get_inputs()[0].name
    stats = {n: _Stats() for n in names}
    x = np.asarray(x, dtype=np.float32)
    for i in range(0, len(x), batch):
        outs = sess.run(names, {in_name: x[i:i + batch]})
        for n, v in zip(names, outs):
            stats[n].update(v)
    return stats


def activation_ranges(model: onnx.ModelProto, x: np.ndarray,
                      batch: int = 8) -> dict[str, TensorRange]:
    """(min, max, absmax) of every float tensor a node produces, over the inputs ``x``."""
    return {n: TensorRange(s.min, s.max, s.absmax)
            for n, s in _tensor_stats(model, x, batch).items()}


# --------------------------------------------------------------------------------------------
# FP16


@dataclass
class KeptNode:
    node: str
    op: str
    reason: str


@dataclass
class Fp16Report:
    converter: str
    keep_io_fp32: bool
    n_nodes: int
    kept_fp32: list[KeptNode] = field(default_factory=list)
    overflow_limit: float = FP16_OVERFLOW_LIMIT
    max_cast_error: float = FP16_MAX_CAST_ERROR
    largest_activation: float = 0.0
    calibration_inputs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        head = (f"fp16: {self.n_nodes - len(self.kept_fp32)} of {self.n_nodes} nodes in float16 "
                f"({self.converter}); largest |activation| {self.largest_activation:.4g} on "
                f"{self.calibration_inputs} inputs (limit {self.overflow_limit:g}); input/output "
                + ("float32" if self.keep_io_fp32 else "float16"))
        return [head] + [f"fp16: kept float32: {k.node} ({k.op}): {k.reason}"
                         for k in self.kept_fp32]


def _initializer_stats(model: onnx.ModelProto) -> dict[str, _Stats]:
    out = {}
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            s = _Stats()
            s.update(onnx.numpy_helper.to_array(init))
            out[init.name] = s
    return out


def fp16_block_list(model: onnx.ModelProto, stats: dict[str, _Stats]) -> list[KeptNode]:
    """Nodes to keep in float32, with the reason, from measured tensor and weight statistics.

    A node is kept when a weight it reads, a value it produces, or a value it reads would
    overflow float16 (|v| > FP16_OVERFLOW_LIMIT) or lose more than FP16_MAX_CAST_ERROR
    (relative RMS) when cast. Readers of such a value are kept too: converting them would cast
    the value to float16 at their input.
    """
    weights = _initializer_stats(model)

    def problem(name: str, s: _Stats, what: str) -> str | None:
        if s.absmax > FP16_OVERFLOW_LIMIT:
            return (f"{what} {name} reaches |{s.absmax:.4g}| > {FP16_OVERFLOW_LIMIT:g} "
                    "(float16 overflows at 65504)")
        if s.fp16_cast_error > FP16_MAX_CAST_ERROR:
            return (f"{what} {name} loses {s.fp16_cast_error:.2e} (relative RMS) in float16 "
                    f"> {FP16_MAX_CAST_ERROR:g} (values below float16's normal range)")
        return None

    kept = []
    for i, node in enumerate(model.graph.node):
        reason = None
        for out in node.output:
            if out in stats:
                reason = problem(out, stats[out], "output")
                if reason:
                    break
        if reason is None:
            for inp in node.input:
                if inp in weights:
                    reason = problem(inp, weights[inp], "weight")
                elif inp in stats:
                    reason = problem(inp, stats[inp], "input")
                if reason:
                    break
        if reason:
            kept.append(KeptNode(node.name or f"#{i}", node.op_type, reason))
    return kept


def _named(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every node named (the float16 converter blocks nodes by name)."""
    if all(n.name for n in model.graph.node):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    used = {n.name for n in m.graph.node if n.name}
    for i, n in enumerate(m.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)
    return m


def _round_through_fp16(nodes: list, name: str, tag: str) -> str:
    """Append Cast(float16) -> Cast(float32) of ``name`` to ``nodes``; the rounded value's name."""
    half, back = f"{name}__fp16", f"{name}__fp16_back"
    nodes.append(onnx.helper.make_node("Cast", [name], [half], to=onnx.TensorProto.FLOAT16,
                                       name=f"{tag}__to_fp16"))
    nodes.append(onnx.helper.make_node("Cast", [half], [back], to=onnx.TensorProto.FLOAT,
                                       name=f"{tag}__to_fp32"))
    return back


def fp16_emulation(model: onnx.ModelProto, kept: list[str] | tuple[str, ...] = (),
                   ) -> onnx.ModelProto:
    """An fp32 graph that rounds like the fp16 one would, for checking it on any CPU.

    ONNX Runtime's x86 CPU provider has no float16 Conv kernel: it runs a float16 graph by
    casting the weights up and dropping the activation casts, so activations never meet
    float16's range or precision there. This graph rounds every float weight of the converted
    nodes to float16 and every value they produce through Cast(float16) -> Cast(float32),
    like a float16 engine storing its activations (accumulation inside a node stays float32,
    as on tensor cores). Nodes in ``kept`` stay float32, as in the converted file. A float32
    value a converted node reads (the graph input, a kept node's output) is rounded to float16
    first, as the converted file's Cast at that node's input does.
    """
    m = onnx.ModelProto()
    m.CopyFrom(_named(model))
    g = m.graph
    kept = set(kept)
    rounded_weights: set[str] = set()
    inits = {t.name: t for t in g.initializer}
    inferred = onnx.shape_inference.infer_shapes(m)
    floats = {vi.name for vi in [*inferred.graph.input, *inferred.graph.value_info,
                                 *inferred.graph.output]
              if vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    nodes = []
    renames: dict[str, str] = {}  # a converted node's output -> its rounded value
    rounded_in: dict[str, str] = {}  # a float32 value -> its rounded copy for converted readers
    for node in g.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        if node.name not in kept:  # float32 inputs of a float16 node: rounded on the way in
            for k, i in enumerate(node.input):
                if i in floats and i not in inits:
                    if i not in rounded_in:
                        rounded_in[i] = _round_through_fp16(nodes, i, f"{node.name}__in{k}")
                    node.input[k] = rounded_in[i]
        nodes.append(node)
        if node.name in kept:
            continue
        for i in node.input:
            t = inits.get(i)
            if t is not None and t.data_type == onnx.TensorProto.FLOAT and i not in rounded_weights:
                w = onnx.numpy_helper.to_array(t).astype(np.float16).astype(np.float32)
                t.CopyFrom(onnx.numpy_helper.from_array(w, t.name))
                rounded_weights.add(i)
        for j, out in enumerate(node.output):
            renames[out] = _round_through_fp16(nodes, out, f"{node.name}_{j}")
    for o in g.output:  # graph outputs read the rounded values
        if o.name in renames:
            nodes.append(onnx.helper.make_node("Identity", [renames[o.name]], [o.name + "__out"]))
            o.name = o.name + "__out"
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return m


def to_fp16(model: onnx.ModelProto, calib_x: np.ndarray,
            keep_io_fp32: bool = True) -> tuple[onnx.ModelProto, Fp16Report]:
    """Weights and compute in float16, except the nodes whose measured values would not fit."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise VnexportError("fp16 needs the onnxconverter-common package: "
                            "pip install 'vnexport[precision]'") from None

    model = _named(model)
    stats = _tensor_stats(model, calib_x)
    kept = fp16_block_list(model, stats)
    with warnings.catch_warnings():
        # it warns for each weight value below float16's range; fp16_block_list judged each
        # weight tensor as a whole (relative error), which is what matters for the output
        warnings.simplefilter("ignore", UserWarning)
        # no clamping of small weights to 1e-7 nor of large ones to 1e4 (the converter's
        # defaults): weights that do not fit float16 are kept float32 by the block list instead
        converted = float16.convert_float_to_float16(
            model,
            min_positive_val=float(np.finfo(np.float16).smallest_subnormal),
            max_finite_val=FP16_MAX,
            keep_io_types=keep_io_fp32,
            node_block_list=[k.node for k in kept],
        )
    report = Fp16Report(
        converter="onnxconverter-common float16.convert_float_to_float16",
        keep_io_fp32=keep_io_fp32, n_nodes=len(model.graph.node), kept_fp32=kept,
        largest_activation=max((s.absmax for s in stats.values()), default=0.0),
        calibration_inputs=len(calib_x))
    return converted, report


# --------------------------------------------------------------------------------------------
# INT8


def even_batch(n: int, batch: int) -> int:
    """The largest batch <= ``batch`` that divides ``n``: ONNX Runtime's entropy and percentile
    calibrators stack the outputs of every batch, so all batches must have one shape."""
    return next(b for b in range(min(batch, max(n, 1)), 0, -1) if n % b == 0)


class ArrayDataReader:
    """An onnxruntime.quantization CalibrationDataReader over an [N,3,H,W] array, in batches."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int = 8):
        self.input_name, self.x, self.batch = input_name, np.asarray(x, np.float32), batch
        self.start, self.end = 0, len(self.x)

    def get_next(self):
        if self.start >= self.end:
            return None
        b = self.x[self.start:min(self.start + self.batch, self.end)]
        self.start += self.batch
        return {self.input_name: b}

    def __iter__(self):
        return iter(self.get_next, None)

    def __len__(self):
        return len(self.x)

    def set_range(self, start_index: int, end_index: int):
        self.start, self.end = start_index, end_index

    def rewind(self):
        self.start, self.end = 0, len(self.x)


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if method not in table:
        raise VnexportError(f"--method: unknown calibration method {method!r} "
                            f"({', '.join(METHODS)})")
    return table[method]


@dataclass
class Int8Settings:
    """What decides the calibrated ranges and the quantized graph (part of the cache key)."""

    method: str = "minmax"
    activation_type: str = "int8"  # int8 (symmetric, what TensorRT needs) or uint8 (ORT x86)
    percentile: float = 99.999
    # Entropy: histogram bins, and the bins of the quantized distribution it is compared with.
    # ORT's defaults are 128 and 128: then the only candidate threshold is the whole histogram
    # and entropy gives exactly the minmax ranges. quantize_static cannot pass these, so the
    # calibrator is created here (``calibrate``).
    entropy_bins: int = 512
    entropy_quantized_bins: int = 128

    def extra_options(self) -> dict:
        # QuantizeBias False: Conv biases stay float. ONNX Runtime's default quantizes them to
        # int32 (scale = input scale x weight scale), which TensorRT's parser refuses ("input
        # has type Int32 but must have type FP8, FP4, Int4, Int8, or UInt8"); TensorRT fuses a
        # float bias into the int8 conv itself.
        return {"ActivationSymmetric": self.activation_type == "int8", "WeightSymmetric": True,
                "QuantizeBias": False}

    def calibrator_options(self) -> dict:
        """``create_calibrator``'s extra_options for this method."""
        if self.method == "percentile":
            return {"percentile": self.percentile}
        if self.method == "entropy":
            return {"num_bins": self.entropy_bins,
                    "num_quantized_bins": self.entropy_quantized_bins}
        return {}

    def quant_types(self):
        from onnxruntime.quantization import QuantType

        act = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[self.activation_type]
        return act, QuantType.QInt8


def calibration_key(model: onnx.ModelProto, calib_x: np.ndarray, settings: Int8Settings) -> str:
    import onnxruntime

    h = hashlib.sha256()
    h.update(model.SerializeToString())
    x = np.ascontiguousarray(calib_x, dtype=np.float32)
    h.update(repr(x.shape).encode())
    h.update(x.tobytes())
    # the ranges depend on the method and its settings, and on the runtime that computed them;
    # the activation type matters only through symmetry, which is applied to cached ranges later
    h.update(json.dumps({"method": settings.method, "percentile": settings.percentile,
                         "entropy_bins": [settings.entropy_bins, settings.entropy_quantized_bins],
                         "ort": onnxruntime.__version__, "v": CALIB_CACHE_VERSION}).encode())
    return h.hexdigest()


def _read_cache(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VnexportError(f"not a readable calibration cache ({e})", path) from None
    if not isinstance(data, dict) or data.get("format") != "vnexport-calibration-cache":
        raise VnexportError("not a vnexport calibration cache (no 'format' marker); pass another "
                            "--cache path", path)
    return data.get("entries", {})


def _write_cache(path: Path, entries: dict) -> None:
    with atomic_output(path, replace=True) as tmp:  # read and extended: an update
        tmp.write_text(json.dumps({"format": "vnexport-calibration-cache",
                                   "version": CALIB_CACHE_VERSION, "entries": entries}))


@dataclass
class Int8Report:
    method: str
    activation_type: str
    weight_type: str = "int8, symmetric, per output channel"
    calibration_inputs: int = 0
    cache: str | None = None
    cache_hit: bool = False
    calibration_seconds: float = 0.0
    quantized_nodes: int = 0
    n_nodes: int = 0
    float_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        sym = "symmetric" if self.activation_type == "int8" else "asymmetric"
        cal = ("ranges from the cache " + str(self.cache) if self.cache_hit else
               f"calibrated ({self.method}) on {self.calibration_inputs} inputs in "
               f"{self.calibration_seconds:.1f} s" + (f", cached in {self.cache}"
                                                       if self.cache else ""))
        return [f"int8: Q/DQ, weights {self.weight_type}, activations {self.activation_type} "
                f"{sym} per tensor; {self.quantized_nodes} QuantizeLinear nodes; {cal}"] + (
            [f"int8: kept float (stem conv, fan-in 48; --int8-stem to quantize it): "
             f"{', '.join(self.float_nodes)}"] if self.float_nodes else [])


def stem_nodes(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes that read the graph input (VanillaNet's 4x4 stride-4 stem conv)."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[0] in inputs]


def calibrate(model_path: Path, reader: ArrayDataReader, cal_method, settings: Int8Settings,
              tmp: Path):
    """The activation ranges (onnxruntime ``TensorsData``) of every tensor of the model at
    ``model_path`` over ``reader``'s inputs, by ``cal_method`` with ``settings``."""
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrator = create_calibrator(model_path, None, augmented_model_path=tmp / "augmented.onnx",
                                   calibrate_method=cal_method,
                                   extra_options=settings.calibrator_options())
    with contextlib.redirect_stdout(io.StringIO()):  # the entropy calibrator prints counts
        calibrator.collect_data(reader)
        return calibrator.compute_data()


def to_int8(model: onnx.ModelProto, calib_x: np.ndarray, method: str = "minmax",
            cache_path: str | Path | None = None, activation_type: str = "int8",
            report: Int8Report | None = None, quantize_stem: bool = False,
            exclude: tuple[str, ...] | list[str] = ()) -> onnx.ModelProto:
    """Explicit Q/DQ int8 graph calibrated on ``calib_x`` (see the module docstring). The
    nodes named in ``exclude`` stay float as well (``budget`` chooses them).

    The stem conv (reading the image) stays float unless ``quantize_stem``: with a fan-in of
    only 4*4*3 = 48 its rounding errors do not average out, and on the digits test model
    quantizing it costs 3 points of held-out accuracy against 0.2 without it, for ~1.5% of the
    network's multiply-adds (keeping the first layer in float is common int8 practice).
    """
    from onnxruntime.quantization import QuantFormat, TensorsData, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    cal_method = _calibration_method(method)
    settings = Int8Settings(method=method, activation_type=activation_type)
    act_type, weight_type = settings.quant_types()
    cache_path = Path(cache_path) if cache_path is not None else None
    key = calibration_key(model, calib_x, settings)
    entries = _read_cache(cache_path) if cache_path is not None else {}
    report = report if report is not None else Int8Report(method, activation_type)
    report.method, report.activation_type = method, activation_type
    report.calibration_inputs, report.cache = len(calib_x), str(cache_path) if cache_path else None
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vnexport-int8-") as tmp:
        ranges_file = Path(tmp) / "ranges.json"
        src, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, src)  # a path: quantize_static rewrites a ModelProto given to it
        if key in entries:
            save_tensors_data(TensorsData.from_dict(entries[key]), ranges_file)
            report.cache_hit = True
        else:
            reader = ArrayDataReader(model.graph.input[0].name, calib_x,
                                     even_batch(len(calib_x), model_batch(model)))
            save_tensors_data(calibrate(src, reader, cal_method, settings, Path(tmp)), ranges_file)
        quiet = logging.getLogger()
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice (see README)
        try:
            quantize_static(  # the ranges come from ranges_file
                src, out, calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                nodes_to_exclude=([] if quantize_stem else stem_nodes(model)) + list(exclude),
                per_channel=True, reduce_range=False, activation_type=act_type,
                weight_type=weight_type, calibrate_method=cal_method,
                extra_options=settings.extra_options(), calibration_cache_path=ranges_file)
        finally:
            quiet.setLevel(level)
        if not report.cache_hit:
            report.calibration_seconds = time.perf_counter() - t
            if cache_path is not None:
                entries[key] = json.loads(ranges_file.read_text())
                _write_cache(cache_path, entries)
        q = onnx.load(out)
    report.float_nodes = [] if quantize_stem else stem_nodes(model)
    report.n_nodes = len(q.graph.node)
    report.quantized_nodes = sum(n.op_type == "QuantizeLinear" for n in q.graph.node)
    return q


# --------------------------------------------------------------------------------------------
# one entry point, used by the onnx and quantize stages


@dataclass
class PrecisionReport:
    precision: str
    fp16: Fp16Report | None = None
    int8: Int8Report | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"precision": self.precision,
                "fp16": None if self.fp16 is None else self.fp16.to_dict(),
                "int8": None if self.int8 is None else self.int8.to_dict(),
                "warnings": list(self.warnings)}

    def lines(self) -> list[str]:
        out = [f"warning: {w}" for w in self.warnings]
        if self.fp16 is not None:
            out += self.fp16.lines()
        if self.int8 is not None:
            out += self.int8.lines()
        return out


RANDOM_CALIBRATION_WARNING = (
    "int8 calibrated on seeded RANDOM inputs, not images: the activation ranges do not match "
    "real data, so this int8 model is fit for speed measurements only. Pass --calib-images DIR "
    "(a few hundred images like those the model will see) for a meaningful int8 model.")


def apply_precision(fp32_model: onnx.ModelProto, precision: str, *, calib_x: np.ndarray,
                    method: str = "minmax", fp16_io: bool = False,
                    cache_path: str | Path | None = None, calib_is_random: bool = False,
                    activation_type: str = "int8", quantize_stem: bool = False,
                    ) -> tuple[onnx.ModelProto, PrecisionReport]:
    """Turn an fp32 ONNX model into ``precision`` (fp32 returns it unchanged)."""
    if precision not in PRECISIONS:
        raise VnexportError(f"--precision: unknown precision {precision!r} "
                            f"({', '.join(PRECISIONS)})")
    report = PrecisionReport(precision)
    fixed = model_batch(fp32_model, 1)
    if len(calib_x) % fixed:
        raise VnexportError(f"the model's batch is fixed at {fixed}: give a multiple of it as the "
                            f"number of calibration inputs, not {len(calib_x)} (--calib-n; fp16 "
                            "without --calib-images calibrates on the verification inputs: --n)")
    if precision == "fp32":
        return fp32_model, report
    if precision == "fp16":
        model, report.fp16 = to_fp16(fp32_model, calib_x, keep_io_fp32=not fp16_io)
    else:
        if calib_is_random:
            report.warnings.append(RANDOM_CALIBRATION_WARNING)
        report.int8 = Int8Report(method, activation_type)
        model = to_int8(fp32_model, calib_x, method=method, cache_path=cache_path,
                        activation_type=activation_type, report=report.int8,
                        quantize_stem=quantize_stem)
    set_metadata(model, {"vnexport.precision": precision,
                         "vnexport.precision_report": json.dumps(report.to_dict())})
    return model, report


def latencies_ms(sessions: dict, x1: np.ndarray, runs: int = 20,
                 warmup: int = 3) -> dict[str, list[float]]:
    """Wall times (ms) of single-batch runs of several sessions on ``x1``, interleaved.

    After ``warmup`` runs each, the sessions run in rounds (a, b, c, a, b, c, ...) so that
    load from other processes falls on all of them alike; take the median of each list.
    """
    feeds = {}
    for k, sess in sessions.items():
        feeds[k] = {sess.get_inputs()[0].name: np.ascontiguousarray(x1, ort.input_dtype(sess))}
        for _ in range(warmup):
            sess.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, feeds[k])
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def _run_cpu(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """Outputs (float64) of ``model`` on ONNX Runtime's CPU provider, in batches of 8."""
    return ort.run(ort.session(model, device="cpu"), x, batch=8)


def verify_precision(fp32_model: onnx.ModelProto, model: onnx.ModelProto,
                     report: PrecisionReport, x: np.ndarray, reference: np.ndarray,
                     tol) -> dict[str, Comparison]:
    """Compare ``model`` (fp16 or int8) on ONNX Runtime with ``reference`` (the fp32 training
    form's outputs on ``x``). For fp16 also an emulation that rounds every converted node's
    output to float16, because ORT's CPU provider computes float16 Conv in float32."""
    comps = {report.precision: compare(reference, _run_cpu(model, x), tol)}
    if report.fp16 is not None:
        emu = fp16_emulation(fp32_model, [k.node for k in report.fp16.kept_fp32])
        comps["fp16 emulated"] = compare(reference, _run_cpu(emu, x), tol)
    return comps
