"""Triton model repositories: from an artifact's facts to a model folder that Triton loads.

One folder per model: ``config.pbtxt``, ``<version>/model.plan`` (a TensorRT engine,
``platform: "tensorrt_plan"``), ``<version>/model.onnx`` (``platform: "onnxruntime_onnx"``) or,
for servers without the onnxruntime backend, ``<version>/model.py`` + ``model.onnx`` (the Python
backend running the file on onnxruntime). Optionally ``labels.txt`` (Triton's classification
extension), a Python-backend preprocessing model (image bytes -> the network's input) and an
ensemble ``<name>_ensemble`` chaining the two.

The config text is generated from :class:`ModelFacts` and :class:`ServingOptions`, then parsed
back with Triton's own ``ModelConfig`` protobuf (``tritonclient``) and checked against the
artifact before anything is written (:func:`check_config`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from .errors import MissingRuntimeError, VnexportError
from .fileio import check_regular
from .onnx_file import (check_image_input, detect_precision, external_data_files, get_metadata,
                        load_onnx, read_onnx_input)
from .trt import ENGINE_SUFFIXES, provenance_path

# numpy dtype names (as onnx_file.read_onnx_input gives them) -> Triton data types
NUMPY_TO_TRITON = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64",
                   "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32",
                   "int64": "TYPE_INT64", "bool": "TYPE_BOOL"}
TRITON_TO_NUMPY = {v: k for k, v in NUMPY_TO_TRITON.items()}
DEFAULT_MAX_BATCH = 16  # for a dynamic-batch ONNX file whose metadata names no maximum
KINDS = ("auto", "cpu", "gpu")
BACKENDS = ("platform", "python")
ACCELERATORS = ("tensorrt",)
# ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime backend: the keys of
# its gpu_execution_accelerator "tensorrt" (triton-inference-server/onnxruntime_backend README,
# "ONNX Runtime with TensorRT optimization"). precision_mode takes FP32, FP16 or INT8; an int8
# file here is Q/DQ, for which the README says to give no calibration table (session creation
# fails with one): INT8 alone, the scales come from the Q/DQ nodes.
TRT_PRECISION_MODE = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}
DEFAULT_WORKSPACE_BYTES = 1 << 30  # the provider's default, stated so the config shows it
DEFAULT_ENGINE_CACHE = "/tmp/vnexport-trt-cache"  # + /<model name>, on the serving machine
CROP_PCT = 0.875  # as vnexport.images.DEFAULT_CROP_PCT
IMAGE_INPUT = "IMAGE"
PREPROCESSED = "preprocessed"
LABELS_FILE = "labels.txt"
TEMPLATES = Path(__file__).parent / "triton_backend"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ModelFacts:
    """What a model folder must agree with, read from the artifact (never from options)."""

    source: Path
    kind: str  # "onnx" or "engine"
    input_name: str
    output_name: str
    input_dtype: str  # Triton data type, e.g. TYPE_FP32
    output_dtype: str
    item_dims: tuple[int, ...]  # one input without its batch axis (C, H, W)
    classes: int
    max_batch: int  # largest batch the artifact takes (dynamic axis or engine profile)
    dynamic_batch: bool
    fixed_batch: int | None = None  # a static file's batch size
    precision: str = "fp32"
    img_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    onnx_path: Path | None = None  # the ONNX file (the source ONNX file of an engine)
    external: tuple[Path, ...] = ()  # the ONNX file's external data files (in its folder)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


@dataclass(frozen=True)
class ServingOptions:
    """How the model is served: what the user chooses, checked against the facts."""

    name: str
    version: int = 1
    backend: str = "platform"  # the artifact's own platform, or "python" (ONNX on onnxruntime)
    max_batch: int | None = None  # None: as large as the artifact takes (capped for ONNX)
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "auto"
    labels: tuple[str, ...] | None = None
    preprocess: bool = False
    accelerator: str | None = None  # "tensorrt": ONNX Runtime's TensorRT provider (ONNX only)
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    engine_cache: str | None = None  # None: DEFAULT_ENGINE_CACHE/<name>

    def cache_path(self) -> str:
        return self.engine_cache or f"{DEFAULT_ENGINE_CACHE}/{self.name}"


@dataclass
class ModelFolder:
    """A model folder ready to be written: its name, config text and files (name -> source)."""

    name: str
    config: str
    files: dict[str, Path | str | bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# facts from artifacts


def _floats(meta: dict, key: str) -> tuple[float, ...] | None:
    try:
        value = json.loads(meta[key])
        return tuple(float(v) for v in value)
    except (KeyError, ValueError, TypeError):
        return None


def _int_or_none(meta: dict, key: str) -> int | None:
    try:
        value = json.loads(meta[key])
    except (KeyError, ValueError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def onnx_precision(model, meta: dict, path: Path) -> str:
    """fp32, fp16 or int8 as the file is: its metadata, else its contents."""
    if meta.get("vnexport.precision") in ("fp32", "fp16", "int8"):
        return meta["vnexport.precision"]
    return detect_precision(path, model=model, strict=False)


def _triton_type(name: str, dtype: str, path: Path) -> str:
    if dtype not in NUMPY_TO_TRITON:
        raise VnexportError(f"{name!r} is {dtype}, which vnexport does not serve", path)
    return NUMPY_TO_TRITON[dtype]


def _output(model, path: Path) -> tuple[str, str, list[int | None]]:
    """The one graph output: name, numpy dtype name, dims (None where dynamic)."""
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        raise VnexportError(f"expected one output, the graph has {len(outputs)}", path)
    tt = outputs[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tt.shape.dim]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
    if len(dims) != 2 or dims[1] is None:
        raise VnexportError(f"output {outputs[0].name!r} is not [batch, classes] (dims {dims})",
                            path)
    return outputs[0].name, dtype, dims


def facts_from_onnx(path: str | os.PathLike) -> ModelFacts:
    """Input/output names, dtypes, dims, batch axis, precision and normalisation of a file."""
    path = Path(path)
    model = load_onnx(path, external_data=False)
    meta = get_metadata(model)
    inp = check_image_input(read_onnx_input(path, model), path)
    if any(d is None for d in inp.shape[1:]):
        raise VnexportError(f"input {inp.name!r} has dynamic C, H or W {list(inp.shape)}", path)
    out_name, out_dtype, out_dims = _output(model, path)
    dynamic = inp.batch is None
    if dynamic:
        declared = _int_or_none(meta, "max_batch")
        max_batch = declared if declared and declared > 0 else DEFAULT_MAX_BATCH
    else:
        max_batch = inp.batch
    return ModelFacts(
        source=path, kind="onnx", input_name=inp.name, output_name=out_name,
        input_dtype=_triton_type(inp.name, inp.dtype, path),
        output_dtype=_triton_type(out_name, out_dtype, path), item_dims=tuple(inp.shape[1:]),
        classes=int(out_dims[1]), max_batch=max_batch, dynamic_batch=dynamic,
        fixed_batch=None if dynamic else inp.batch, precision=onnx_precision(model, meta, path),
        img_size=_int_or_none(meta, "img_size") or inp.shape[-1],
        mean=_floats(meta, "mean"), std=_floats(meta, "std"), onnx_path=path,
        external=tuple(external_data_files(model, path)))


def facts_from_engine(path: str | os.PathLike) -> ModelFacts:
    """An engine's facts: batch profile and precision from its provenance ``<engine>.json``,
    names, dtypes and classes from the source ONNX file it names (beside the engine)."""
    path = check_regular(path)
    prov_path = provenance_path(path)
    try:
        if os.path.lexists(prov_path):
            check_regular(prov_path)  # a FIFO there must not block
        prov = json.loads(prov_path.read_text())
        profile = prov["profile"]
        max_shape = [int(d) for d in profile["max"]]
        source = path.parent / prov["source_onnx"]
    except FileNotFoundError:
        raise VnexportError(f"no provenance file {prov_path.name} beside the engine (vnexport "
                            "trt writes it): the batch profile is unknown", path) from None
    except (ValueError, KeyError, TypeError, OSError):
        raise VnexportError("not a vnexport engine provenance file (needs profile.max and "
                            "source_onnx)", prov_path) from None
    if prov.get("builder") == "tensorrt-rtx":
        raise VnexportError("a TensorRT-RTX engine: Triton's TensorRT backend loads datacenter "
                            "TensorRT plans only; build it with vnexport trt --builder "
                            "tensorrt on the serving GPU, or serve the ONNX file", path)
    if not source.is_file():
        raise VnexportError(f"the engine's source ONNX file {source.name} (named in "
                            f"{prov_path.name}) is not beside it", path)
    onnx_facts = facts_from_onnx(source)
    if profile.get("input", onnx_facts.input_name) != onnx_facts.input_name \
            or tuple(max_shape[1:]) != onnx_facts.item_dims:
        raise VnexportError(f"the profile {profile} does not match {source.name}'s input "
                            f"{onnx_facts.input_name} {list(onnx_facts.item_dims)}", prov_path)
    facts = replace(onnx_facts, source=path, kind="engine",
                    precision=str(prov.get("precision", onnx_facts.precision)))
    if not onnx_facts.dynamic_batch:  # a static engine: max_batch_size 0, full dims
        return facts
    min_batch = int(profile.get("min", [1])[0])
    if min_batch != 1:
        raise VnexportError(f"the engine's profile starts at batch {min_batch}; Triton's "
                            "batcher sends batches from 1 (rebuild with vnexport trt "
                            "--min-batch 1)", path)
    return replace(facts, max_batch=max_shape[0])


def read_facts(path: str | os.PathLike) -> ModelFacts:
    """Facts of an ONNX file (``.onnx``) or an engine (anything with ``<file>.json`` beside)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return facts_from_onnx(path)
    if provenance_path(path).exists() or path.suffix.lower() in ENGINE_SUFFIXES:
        return facts_from_engine(path)
    raise VnexportError("not an ONNX file (.onnx) or an engine with its provenance "
                        "(<engine>.json)", path)


def input_files(facts: ModelFacts) -> list[Path]:
    """Every file the model folder is made from (none may be replaced by the repository)."""
    files = [facts.source, *facts.external]
    if facts.kind == "engine":
        files += [provenance_path(facts.source), facts.onnx_path]
    return [f for f in files if f is not None]


def default_name(path: Path) -> str:
    """``vanillanet_5.onnx`` -> ``vanillanet_5``: the file name before its first dot, with
    characters a model folder should not have replaced by '_'."""
    stem = path.name.split(".")[0] or "model"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip(".-_") or "model"


def read_labels(path: str | os.PathLike, classes: int) -> tuple[str, ...]:
    """One class name per line; the count must equal the model's classes."""
    path = check_regular(path, "--labels")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise VnexportError(f"not a readable UTF-8 text file ({getattr(e, 'strerror', e)})",
                            path) from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = tuple(line.strip() for line in lines)
    empty = [k + 1 for k, label in enumerate(labels) if not label]
    if empty:
        raise VnexportError(f"line {empty[0]} is empty; one class name per line", path)
    if len(labels) != classes:
        raise VnexportError(f"{len(labels)} labels, the model has {classes} classes", path)
    return labels


# --------------------------------------------------------------------------------------------
# config text


def batching(facts: ModelFacts, opts: ServingOptions) -> int:
    """The config's ``max_batch_size``: 0 (no batching) for a static file."""
    if not facts.dynamic_batch:
        return 0
    return opts.max_batch if opts.max_batch is not None else facts.max_batch


def _dims_text(dims) -> str:
    return "[ " + ", ".join(str(int(d)) for d in dims) + " ]"


def _tensor(name: str, dtype: str, dims, extra: str = "") -> str:
    return (f"  {{\n    name: \"{name}\"\n    data_type: {dtype}\n    dims: {_dims_text(dims)}\n"
            f"{extra}  }}")


def _io_dims(facts: ModelFacts, max_batch: int):
    """The input and output dims a config states (with the batch axis only for a static file)."""
    if max_batch:
        return facts.item_dims, (facts.classes,)
    return (facts.fixed_batch, *facts.item_dims), (facts.fixed_batch, facts.classes)


def _scheduling(max_batch: int, opts: ServingOptions, kind: str) -> str:
    text = f"instance_group [\n  {{\n    count: {opts.instances}\n"
    text += f"    kind: {kind}\n  }}\n]\n" if kind != "KIND_AUTO" else "  }\n]\n"
    if max_batch:
        text += "dynamic_batching {\n"
        if opts.preferred_batch:
            text += f"  preferred_batch_size: {_dims_text(opts.preferred_batch)}\n"
        text += f"  max_queue_delay_microseconds: {opts.max_queue_delay_us}\n}}\n"
    return text


def instance_kind(facts: ModelFacts, opts: ServingOptions) -> str:
    if facts.kind == "engine" or opts.accelerator:
        return "KIND_GPU"
    return {"auto": "KIND_AUTO", "cpu": "KIND_CPU", "gpu": "KIND_GPU"}[opts.kind]


def model_config(facts: ModelFacts, opts: ServingOptions) -> str:
    """The classifier's ``config.pbtxt``."""
    max_batch = batching(facts, opts)
    in_dims, out_dims = _io_dims(facts, max_batch)
    if opts.backend == "python":
        head = 'backend: "python"\n'
    elif facts.kind == "engine":
        head = 'platform: "tensorrt_plan"\n'
    else:
        head = 'platform: "onnxruntime_onnx"\n'
    label = f'    label_filename: "{LABELS_FILE}"\n' if opts.labels else ""
    text = (f'name: "{opts.name}"\n{head}max_batch_size: {max_batch}\n'
            f"input [\n{_tensor(facts.input_name, facts.input_dtype, in_dims)}\n]\n"
            f"output [\n{_tensor(facts.output_name, facts.output_dtype, out_dims, label)}\n]\n"
            f"version_policy: {{ specific: {{ versions: [ {opts.version} ] }} }}\n")
    text += _scheduling(max_batch, opts, instance_kind(facts, opts))
    if opts.backend == "python":
        text += _parameters({"onnx_file": "model.onnx", "precision": facts.precision})
    if opts.accelerator:
        text += accelerator_block(facts, opts, max_batch)
    return text


def accelerator_parameters(facts: ModelFacts, opts: ServingOptions,
                           max_batch: int) -> dict[str, str]:
    """The TensorRT provider's parameters: the file's precision, a workspace limit, the engine
    cache (TensorRT builds on the serving GPU at the first load, later loads reuse it) and, for
    a dynamic batch, one profile 1..max_batch (one engine, not one per new batch size)."""
    params = {"precision_mode": TRT_PRECISION_MODE[facts.precision],
              "max_workspace_size_bytes": str(opts.workspace_bytes),
              "trt_engine_cache_enable": "1", "trt_engine_cache_path": opts.cache_path()}
    if max_batch:
        item = "x".join(str(int(d)) for d in facts.item_dims)
        opt = (opts.preferred_batch or (max_batch,))[-1]
        params.update({"trt_profile_min_shapes": f"{facts.input_name}:1x{item}",
                       "trt_profile_opt_shapes": f"{facts.input_name}:{opt}x{item}",
                       "trt_profile_max_shapes": f"{facts.input_name}:{max_batch}x{item}"})
    return params


def accelerator_block(facts: ModelFacts, opts: ServingOptions, max_batch: int) -> str:
    params = "".join(f'      parameters {{ key: "{k}" value: {json.dumps(v)} }}\n'
                     for k, v in accelerator_parameters(facts, opts, max_batch).items())
    return ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator [\n"
            f'      {{\n      name: "{opts.accelerator}"\n{params}      }}\n    ]\n  }}\n}}\n')


def _parameters(values: dict[str, str]) -> str:
    return "".join(f'parameters {{\n  key: "{k}"\n  value: {{ string_value: {json.dumps(v)} }}\n'
                   "}\n" for k, v in values.items())


def preprocess_name(opts: ServingOptions) -> str:
    return f"{opts.name}_preprocess"


def ensemble_name(opts: ServingOptions) -> str:
    return f"{opts.name}_ensemble"


def preprocess_config(facts: ModelFacts, opts: ServingOptions) -> str:
    """A Python-backend model: encoded image bytes in, the classifier's input out."""
    max_batch = batching(facts, opts)
    in_dims, _ = _io_dims(facts, max_batch)
    bytes_dims = (1,) if max_batch else (facts.fixed_batch,)
    kind = "KIND_CPU" if opts.kind != "gpu" else "KIND_GPU"
    text = (f'name: "{preprocess_name(opts)}"\nbackend: "python"\nmax_batch_size: {max_batch}\n'
            f"input [\n{_tensor(IMAGE_INPUT, 'TYPE_STRING', bytes_dims)}\n]\n"
            f"output [\n{_tensor(facts.input_name, facts.input_dtype, in_dims)}\n]\n"
            f"version_policy: {{ specific: {{ versions: [ {opts.version} ] }} }}\n")
    text += _scheduling(max_batch, replace(opts, preferred_batch=()), kind)
    return text + _parameters({
        "img_size": str(facts.item_dims[-1]), "crop_pct": str(CROP_PCT),
        "mean": json.dumps(list(facts.mean)), "std": json.dumps(list(facts.std)),
        "dtype": TRITON_TO_NUMPY.get(facts.input_dtype, "float32")})


def ensemble_config(facts: ModelFacts, opts: ServingOptions) -> str:
    """``<name>_ensemble``: image bytes -> preprocessing -> classifier -> logits (labels)."""
    max_batch = batching(facts, opts)
    in_dims, out_dims = _io_dims(facts, max_batch)
    bytes_dims = (1,) if max_batch else (facts.fixed_batch,)
    label = f'    label_filename: "{LABELS_FILE}"\n' if opts.labels else ""
    steps = [(preprocess_name(opts), {IMAGE_INPUT: IMAGE_INPUT}, {facts.input_name: PREPROCESSED}),
             (opts.name, {facts.input_name: PREPROCESSED},
              {facts.output_name: facts.output_name})]
    text = (f'name: "{ensemble_name(opts)}"\nplatform: "ensemble"\nmax_batch_size: {max_batch}\n'
            f"input [\n{_tensor(IMAGE_INPUT, 'TYPE_STRING', bytes_dims)}\n]\n"
            f"output [\n{_tensor(facts.output_name, facts.output_dtype, out_dims, label)}\n]\n"
            "ensemble_scheduling {\n  step [\n")
    text += ",\n".join(
        f'    {{\n      model_name: "{model}"\n      model_version: {opts.version}\n'
        + "".join(f'      input_map {{ key: "{k}" value: "{v}" }}\n' for k, v in ins.items())
        + "".join(f'      output_map {{ key: "{k}" value: "{v}" }}\n' for k, v in outs.items())
        + "    }" for model, ins, outs in steps)
    return text + "\n  ]\n}\n"


# --------------------------------------------------------------------------------------------
# checking a config against the artifact


def parse_config(text: str, source: Path | None = None):
    """``config.pbtxt`` text -> Triton's ``ModelConfig`` (tritonclient's protobuf);
    ``source``: the user's file it was read from (None: a config vnexport generated)."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingRuntimeError("tritonclient is not installed; it checks every config "
                                  "(pip install 'vnexport[serve]')") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        what = "does not parse" if source else "the generated config does not parse"
        raise VnexportError(f"{what} as a Triton ModelConfig ({e})", source) from None


def _tensor_problems(what: str, tensors, name: str, dtype: str, dims) -> list[str]:
    from tritonclient.grpc import model_config_pb2

    if len(tensors) != 1:
        return [f"{len(tensors)} {what}s, expected 1"]
    t = tensors[0]
    got = (t.name, model_config_pb2.DataType.Name(t.data_type), tuple(t.dims))
    want = (name, dtype, tuple(int(d) for d in dims))
    return [] if got == want else [f"{what} {got} differs from the artifact's {want}"]


def check_config(text: str, facts: ModelFacts, opts: ServingOptions,
                 role: str = "classifier"):
    """Parse ``text`` as a ``ModelConfig`` and check it states what the artifact is: names,
    dtypes, dims and max batch (``role``: classifier, preprocess or ensemble). Returns the
    parsed config; a disagreement is a VnexportError naming the model."""
    cfg = parse_config(text)
    max_batch = batching(facts, opts)
    in_dims, out_dims = _io_dims(facts, max_batch)
    bytes_dims = (1,) if max_batch else (facts.fixed_batch,)
    expect = {"classifier": (opts.name, (facts.input_name, facts.input_dtype, in_dims)),
              "preprocess": (preprocess_name(opts), (IMAGE_INPUT, "TYPE_STRING", bytes_dims)),
              "ensemble": (ensemble_name(opts), (IMAGE_INPUT, "TYPE_STRING", bytes_dims))}
    name, inp = expect[role]
    out = ((facts.input_name, facts.input_dtype, in_dims) if role == "preprocess"
           else (facts.output_name, facts.output_dtype, out_dims))
    problems = [] if cfg.name == name else [f"name {cfg.name!r}, expected {name!r}"]
    if cfg.max_batch_size != max_batch:
        problems.append(f"max_batch_size {cfg.max_batch_size}, the artifact takes {max_batch}")
    problems += _tensor_problems("input", cfg.input, *inp)
    problems += _tensor_problems("output", cfg.output, *out)
    if role == "classifier" and facts.kind == "engine" and cfg.platform != "tensorrt_plan" \
            and cfg.backend != "tensorrt":
        problems.append(f"platform {cfg.platform!r} cannot run a TensorRT engine")
    if role == "classifier":
        problems += _accelerator_problems(cfg, facts, opts, max_batch)
    if role == "ensemble":
        steps = [s.model_name for s in cfg.ensemble_scheduling.step]
        if steps != [preprocess_name(opts), opts.name]:
            problems.append(f"ensemble steps {steps}")
    if problems:
        raise VnexportError(f"config of model {name!r} disagrees with the artifact: "
                            + "; ".join(problems), facts.source)
    return cfg


def _accelerator_problems(cfg, facts: ModelFacts, opts: ServingOptions,
                          max_batch: int) -> list[str]:
    accels = list(cfg.optimization.execution_accelerators.gpu_execution_accelerator)
    if not opts.accelerator:
        return [f"unasked GPU accelerators {[a.name for a in accels]}"] if accels else []
    problems = []
    if cfg.platform != "onnxruntime_onnx":
        problems.append(f"platform {cfg.platform!r}: the TensorRT provider runs in the "
                        "onnxruntime backend")
    if [g.kind for g in cfg.instance_group] != [1]:  # ModelInstanceGroup.KIND_GPU
        problems.append("the TensorRT provider needs a KIND_GPU instance group")
    got = [(a.name, dict(a.parameters)) for a in accels]
    want = [(opts.accelerator, accelerator_parameters(facts, opts, max_batch))]
    if got != want:
        problems.append(f"accelerators {got}, expected {want}")
    return problems


# --------------------------------------------------------------------------------------------
# model folders


def check_options(facts: ModelFacts, opts: ServingOptions) -> None:
    """Refuse options the artifact cannot honour (VnexportError, exit 2)."""
    if not _NAME.fullmatch(opts.name):
        raise VnexportError(f"--name {opts.name!r}: use letters, digits, '_', '-', '.'")
    if opts.version < 1:
        raise VnexportError(f"--version must be >= 1, got {opts.version}")
    if opts.instances < 1:
        raise VnexportError(f"--instances must be >= 1, got {opts.instances}")
    if opts.kind not in KINDS or opts.backend not in BACKENDS:
        raise VnexportError(f"--kind must be one of {', '.join(KINDS)}; --backend one of "
                            f"{', '.join(BACKENDS)}")
    if opts.max_queue_delay_us < 0:
        raise VnexportError(f"--max-queue-delay-us must be >= 0, got {opts.max_queue_delay_us}")
    _check_accelerator(facts, opts)
    if facts.kind == "engine" and (opts.backend == "python" or opts.kind == "cpu"):
        raise VnexportError("a TensorRT engine runs on a GPU with the tensorrt_plan platform "
                            "(--backend python and --kind cpu take ONNX files)", facts.source)
    _check_batches(facts, opts)
    if opts.preprocess and (facts.mean is None or facts.std is None):
        raise VnexportError("--preprocess needs the mean/std that vnexport onnx writes into "
                            "the file's metadata; this file has none", facts.onnx_path)


def _check_accelerator(facts: ModelFacts, opts: ServingOptions) -> None:
    if not opts.accelerator:
        return
    if opts.accelerator not in ACCELERATORS:
        raise VnexportError(f"--accelerator must be one of {', '.join(ACCELERATORS)}")
    if facts.kind != "onnx" or opts.backend != "platform" or opts.kind == "cpu":
        raise VnexportError("--accelerator tensorrt serves an ONNX file on a GPU in the "
                            "onnxruntime backend (not an engine, --backend python or --kind "
                            "cpu)", facts.source)
    if facts.precision not in TRT_PRECISION_MODE:
        raise VnexportError(f"precision {facts.precision!r} has no TensorRT precision_mode",
                            facts.source)
    if opts.workspace_bytes < 1 << 20:
        raise VnexportError(f"--workspace must be at least 1 MiB, got {opts.workspace_bytes} "
                            "bytes")
    if not opts.cache_path().strip() or '"' in opts.cache_path() or "\n" in opts.cache_path():
        raise VnexportError(f"--engine-cache {opts.cache_path()!r}: give a folder path")


def _check_batches(facts: ModelFacts, opts: ServingOptions) -> None:
    if opts.max_batch is not None:
        if not facts.dynamic_batch:
            raise VnexportError(f"--max-batch: the file has a static batch of "
                                f"{facts.fixed_batch} (re-export with vnexport onnx "
                                "--dynamic-batch)", facts.source)
        limit = facts.max_batch if facts.kind == "engine" else None
        if opts.max_batch < 1 or (limit is not None and opts.max_batch > limit):
            raise VnexportError(f"--max-batch {opts.max_batch} is outside 1..{limit or 'n'} "
                                "(the engine's profile)", facts.source)
    max_batch = batching(facts, opts)
    if opts.preferred_batch:
        if not max_batch:
            raise VnexportError("--preferred-batch needs batching; the file has a static batch "
                                "(re-export with vnexport onnx --dynamic-batch)", facts.source)
        bad = [b for b in opts.preferred_batch if not 1 <= b <= max_batch]
        if bad:
            raise VnexportError(f"--preferred-batch {bad[0]} is outside 1..{max_batch} "
                                "(max_batch_size)", facts.source)


def batching_note(facts: ModelFacts) -> str | None:
    """Why a model is served without batching, and how to get it."""
    if facts.dynamic_batch:
        return None
    return (f"{facts.source.name} has a static batch of {facts.fixed_batch}: max_batch_size 0, "
            "no dynamic batching; re-export with `vnexport onnx --dynamic-batch` to batch")


def model_folders(facts: ModelFacts, opts: ServingOptions) -> list[ModelFolder]:
    """The classifier's folder (and with ``preprocess`` the preprocessing and ensemble
    folders), every config checked against the artifact."""
    check_options(facts, opts)
    v = str(opts.version)
    text = model_config(facts, opts)
    check_config(text, facts, opts, "classifier")
    files: dict[str, Path | str | bytes] = {}
    if facts.kind == "engine":
        files[f"{v}/model.plan"] = facts.source
    else:
        files[f"{v}/model.onnx"] = facts.source
        for data in facts.external:  # beside it, as the file names them
            files[f"{v}/{data.relative_to(facts.source.parent).as_posix()}"] = data
        if opts.backend == "python":
            files[f"{v}/model.py"] = TEMPLATES / "onnx_model.py"
    if opts.labels:
        files[LABELS_FILE] = "\n".join(opts.labels) + "\n"
    folders = [ModelFolder(opts.name, text, files)]
    if opts.preprocess:
        pre, ens = preprocess_config(facts, opts), ensemble_config(facts, opts)
        check_config(pre, facts, opts, "preprocess")
        check_config(ens, facts, opts, "ensemble")
        folders.append(ModelFolder(preprocess_name(opts), pre,
                                   {f"{v}/model.py": TEMPLATES / "preprocess_model.py"}))
        ens_files = {f"{v}/.keep": ""}  # an ensemble's version folder exists but stays empty
        if opts.labels:
            ens_files[LABELS_FILE] = files[LABELS_FILE]
        folders.append(ModelFolder(ensemble_name(opts), ens, ens_files))
    return folders


def _write_folder(folder: ModelFolder, root: Path) -> None:
    target = root / folder.name
    target.mkdir()
    (target / "config.pbtxt").write_text(folder.config)
    for rel, src in folder.files.items():
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, Path):
            shutil.copyfile(src, dst)
        elif isinstance(src, bytes):
            dst.write_bytes(src)
        else:
            dst.write_text(src)


def check_unique(repo: Path, folders: list[ModelFolder]) -> list[str]:
    """The folders' names, each once (two models in one folder: VnexportError)."""
    names = [f.name for f in folders]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise VnexportError(f"two models would share the folder {dupes[0]!r}; give --name", repo)
    return names


def write_repository(repo: str | os.PathLike, folders: list[ModelFolder],
                     force: bool = False) -> list[Path]:
    """Write every folder into ``repo`` all or nothing: built in a staging folder inside the
    repository, then renamed into place; existing folders are refused without ``force``."""
    repo = Path(repo)
    names = check_unique(repo, folders)
    if repo.exists() and not repo.is_dir():
        raise VnexportError("the repository path exists and is not a folder", repo)
    existing = [n for n in names if (repo / n).exists()]
    if existing and not force:
        raise VnexportError(f"model folder {existing[0]!r} exists; pass --force to replace it",
                            repo / existing[0])
    created = not repo.exists()
    try:
        repo.mkdir(parents=False, exist_ok=True)
    except OSError as e:
        raise VnexportError(f"cannot create the repository folder ({e.strerror})", repo) from None
    try:
        _stage_and_move(repo, folders)
    except BaseException:
        if created and repo.is_dir() and not any(repo.iterdir()):
            repo.rmdir()
        raise
    return [repo / n for n in names]


def _stage_and_move(repo: Path, folders: list[ModelFolder]) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".vnexport-staging-", dir=repo))
    old = staging / ".replaced"
    try:
        for folder in folders:
            _write_folder(folder, staging)
        old.mkdir()
        for folder in folders:
            if (repo / folder.name).exists():
                os.replace(repo / folder.name, old / folder.name)
            os.replace(staging / folder.name, repo / folder.name)
    except OSError as e:
        raise VnexportError(f"could not write the repository ({e.strerror or e})", repo) \
            from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
