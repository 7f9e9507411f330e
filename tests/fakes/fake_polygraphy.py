"""A FAKE ``polygraphy`` (with a fake ``tensorrt``) for the GPU-only side of vnexport.trt.

Every Polygraphy entry point vnexport calls is here under its real name; each records the
arguments it was given in ``CALLS`` as ``(name, args, kwargs)``, exactly as passed, so tests
assert them and bind them against the installed Polygraphy's signatures. What the fake builder
config reports is derived from those arguments with TensorRT's documented defaults (TF32 on,
cleared by Polygraphy's ``tf32=False`` default; builder optimisation level 3; hardware
compatibility NONE; a network is weakly typed unless ``strongly_typed=True``), never chosen to
make a test pass.

The "engine" is the ONNX file itself (the plan bytes are a marker, the profile and the ONNX
bytes), run by ONNX Runtime on the CPU. Like TensorRT, the fake runner refuses a batch outside
the engine's profile (or other than its static batch), so chunking and padding are checked.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np

from . import fake_tensorrt

CALLS: list[tuple[str, tuple, dict]] = []
STATE: dict = {"perturb": 0.0, "infer_batches": [], "executions": 0}
MAGIC = b"FAKE-PLAN\n"
FAKE_DEFAULT_WORKSPACE = 80 * 2**30  # "the GPU's memory": a fake device's size


def _record(name: str, args: tuple, kwargs: dict) -> None:
    CALLS.append((name, tuple(args), dict(kwargs)))


def calls(name: str) -> list[tuple[tuple, dict]]:
    return [(a, k) for n, a, k in CALLS if n == name]


def _trt():
    return sys.modules["tensorrt"]


class PolygraphyException(Exception):
    pass


class _Logger:
    INFO, WARNING = 20, 30
    module_severity = None


G_LOGGER = _Logger()


# ------------------------------------------------------------------------------------------
# polygraphy.backend.trt: loaders


class Profile:
    def __init__(self, *args, **kwargs):
        _record("Profile", args, kwargs)
        self.shapes: dict[str, tuple] = {}

    def add(self, *args, **kwargs):
        _record("Profile.add", args, kwargs)
        name = args[0] if args else kwargs["name"]
        self.shapes[name] = tuple(tuple(kwargs[k]) for k in ("min", "opt", "max"))
        return self


class _Network:
    def __init__(self, path: str, strongly_typed: bool):
        self.path, self.strongly_typed = path, strongly_typed

    def get_flag(self, flag) -> bool:
        return flag is _trt().NetworkDefinitionCreationFlag.STRONGLY_TYPED and \
            self.strongly_typed


class NetworkFromOnnxPath:
    def __init__(self, *args, **kwargs):
        _record("NetworkFromOnnxPath", args, kwargs)
        self.path = args[0] if args else kwargs["path"]
        self.strongly_typed = bool(kwargs.get("strongly_typed") or False)  # Polygraphy: False

    def __call__(self):
        return object(), _Network(self.path, self.strongly_typed), object()


class _BuilderConfig:
    """An IBuilderConfig as CreateConfig would leave it, from the arguments it was given."""

    def __init__(self, kwargs: dict):
        trt = _trt()
        self.kwargs = kwargs
        self._flags = {trt.BuilderFlag.TF32}  # TensorRT: TF32 on by default
        if not kwargs.get("tf32", False):  # Polygraphy's CreateConfig: tf32 defaults to False
            self._flags.discard(trt.BuilderFlag.TF32)
        self._pools = dict(kwargs.get("memory_pool_limits") or {})
        level = kwargs.get("builder_optimization_level")
        self.builder_optimization_level = 3 if level is None else level
        hw = kwargs.get("hardware_compatibility_level")
        self.hardware_compatibility_level = hw if hw is not None else \
            trt.HardwareCompatibilityLevel.NONE
        self.num_optimization_profiles = len(kwargs.get("profiles") or [])
        for name in ("version_compatible", "exclude_lean_runtime"):  # as CreateConfig sets them
            if kwargs.get(name):
                self._flags.add(getattr(trt.BuilderFlag, name.upper()))

    def get_flag(self, flag) -> bool:
        return flag in self._flags

    def clear_flag(self, flag) -> None:
        _record("IBuilderConfig.clear_flag", (flag,), {})
        self._flags.discard(flag)

    def set_flag(self, flag) -> None:
        _record("IBuilderConfig.set_flag", (flag,), {})
        self._flags.add(flag)

    def get_memory_pool_limit(self, pool) -> int:
        return self._pools.get(pool, FAKE_DEFAULT_WORKSPACE)


class CreateConfig:
    def __init__(self, *args, **kwargs):
        _record("CreateConfig", args, kwargs)
        self.kwargs = kwargs

    def __call__(self, builder, network):
        return _BuilderConfig(self.kwargs)


class EngineBytesFromNetwork:
    def __init__(self, *args, **kwargs):
        _record("EngineBytesFromNetwork", args, kwargs)
        self.network = args[0] if args else kwargs["network"]
        self.config = kwargs.get("config")
        self.save = kwargs.get("save_timing_cache")

    def __call__(self):
        builder, network, _ = self.network()
        cfg = self.config(builder, network) if callable(self.config) else self.config
        if self.save:
            Path(self.save).write_bytes(b"FAKE timing cache")
        shapes = {}
        for p in cfg.kwargs.get("profiles") or []:
            shapes.update(p.shapes)
        header = json.dumps({"profile": shapes, "strongly_typed": network.strongly_typed})
        return MAGIC + header.encode() + b"\n" + Path(network.path).read_bytes()


class EngineFromBytes:
    def __init__(self, *args, **kwargs):
        _record("EngineFromBytes", args, kwargs)
        self.data = bytes(args[0] if args else kwargs["serialized_engine"])

    def __call__(self):
        if not self.data.startswith(MAGIC):
            return None  # as Polygraphy does when deserialize_cuda_engine fails
        head, onnx_bytes = self.data[len(MAGIC):].split(b"\n", 1)
        return _Engine(json.loads(head)["profile"], onnx_bytes)


class _Engine:
    def __init__(self, profile: dict, onnx_bytes: bytes):
        import onnxruntime as ort

        self.session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        self.inp, self.out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.profile = {k: [tuple(s) for s in v] for k, v in profile.items()}
        self.num_io_tensors = 2

    def get_tensor_name(self, i: int) -> str:
        return [self.inp.name, self.out.name][i]

    def get_tensor_mode(self, name: str):
        mode = _trt().TensorIOMode
        return mode.INPUT if name == self.inp.name else mode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple:
        t = self.inp if name == self.inp.name else self.out
        return tuple(d if isinstance(d, int) else -1 for d in t.shape)

    def get_tensor_profile_shape(self, name: str, index: int):
        assert index == 0
        return self.profile[name]

    def get_tensor_dtype(self, name: str) -> str:
        t = self.inp if name == self.inp.name else self.out
        return "float16" if "float16" in t.type else "float32"

    def allowed_batches(self) -> tuple[int, int]:
        static = self.get_tensor_shape(self.inp.name)[0]
        if static != -1:
            return static, static
        lo, _, hi = self.profile[self.inp.name]
        return lo[0], hi[0]

    def create_execution_context(self):
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine):
        self.engine, self.shapes = engine, {}

    def set_input_shape(self, name: str, shape) -> bool:
        _record("IExecutionContext.set_input_shape", (name, tuple(shape)), {})
        lo, hi = self.engine.allowed_batches()
        assert lo <= shape[0] <= hi, f"batch {shape[0]} outside the engine's {lo}..{hi}"
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple:
        if name in self.shapes:
            return self.shapes[name]
        batch = next(iter(self.shapes.values()))[0]
        return (batch,) + self.engine.get_tensor_shape(name)[1:]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        _record("IExecutionContext.set_tensor_address", (name, ptr), {})
        return True

    def execute_async_v3(self, stream_ptr: int) -> bool:
        STATE["executions"] += 1
        return True


class TrtRunner:
    def __init__(self, *args, **kwargs):
        _record("TrtRunner", args, kwargs)
        self.engine = args[0] if args else kwargs["engine"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_input_metadata(self, *args, **kwargs):
        _record("TrtRunner.get_input_metadata", args, kwargs)
        name = self.engine.inp.name
        return {name: types.SimpleNamespace(dtype=self.engine.get_tensor_dtype(name))}

    def infer(self, *args, **kwargs):
        _record("TrtRunner.infer", args, {k: v for k, v in kwargs.items()})
        feed = args[0] if args else kwargs["feed_dict"]
        x = feed[self.engine.inp.name]
        lo, hi = self.engine.allowed_batches()
        STATE["infer_batches"].append((len(x), str(x.dtype)))
        if not lo <= len(x) <= hi:
            raise PolygraphyException(f"batch {len(x)} is outside the profile {lo}..{hi}\n"
                                      "(a real TensorRT refuses it too)")
        out = self.engine.session.run(None, {self.engine.inp.name: x})[0]
        out = out + STATE["perturb"] * np.abs(out).max()
        return {self.engine.out.name: out}


# ------------------------------------------------------------------------------------------
# polygraphy.backend.common, polygraphy.datatype, polygraphy.cuda


class BytesFromPath:
    def __init__(self, *args, **kwargs):
        _record("BytesFromPath", args, kwargs)
        self.path = args[0] if args else kwargs["path"]

    def __call__(self):
        return Path(self.path).read_bytes()


class DataType:
    @staticmethod
    def to_dtype(*args, **kwargs):
        _record("DataType.to_dtype", args, kwargs)
        return np.dtype(args[0])

    @staticmethod
    def from_dtype(*args, **kwargs):
        _record("DataType.from_dtype", args, kwargs)
        return args[0]


class Stream:
    def __init__(self, *args, **kwargs):
        _record("cuda.Stream", args, kwargs)
        self.ptr = 1

    def synchronize(self):
        pass

    def free(self):
        pass


class DeviceArray:
    def __init__(self, *args, **kwargs):
        _record("cuda.DeviceArray", args, kwargs)
        self.ptr = 2 + len(CALLS)

    def copy_from(self, *args, **kwargs):
        _record("DeviceArray.copy_from", args, kwargs)
        return self

    def free(self):
        pass


# ------------------------------------------------------------------------------------------


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__fake__ = True
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def install(monkeypatch, trt_version: str = "10.12.0.36") -> types.ModuleType:
    """Put fake ``tensorrt`` and ``polygraphy`` modules in ``sys.modules`` (undone by
    ``monkeypatch``); resets the record. Returns the fake tensorrt module."""
    CALLS.clear()
    STATE.update(perturb=0.0, infer_batches=[], executions=0)
    trt = fake_tensorrt.make(trt_version)
    config = _module("polygraphy.config", USE_TENSORRT_RTX=False)
    backend_trt = _module("polygraphy.backend.trt", Profile=Profile, CreateConfig=CreateConfig,
                          NetworkFromOnnxPath=NetworkFromOnnxPath, TrtRunner=TrtRunner,
                          EngineBytesFromNetwork=EngineBytesFromNetwork,
                          EngineFromBytes=EngineFromBytes)
    common = _module("polygraphy.backend.common", BytesFromPath=BytesFromPath)
    backend = _module("polygraphy.backend", trt=backend_trt, common=common)
    cuda = _module("polygraphy.cuda", Stream=Stream, DeviceArray=DeviceArray)
    mods = {
        "polygraphy.config": config, "polygraphy.backend": backend,
        "polygraphy.backend.trt": backend_trt, "polygraphy.backend.common": common,
        "polygraphy.exception": _module("polygraphy.exception",
                                        PolygraphyException=PolygraphyException),
        "polygraphy.logger": _module("polygraphy.logger", G_LOGGER=G_LOGGER),
        "polygraphy.datatype": _module("polygraphy.datatype", DataType=DataType),
        "polygraphy.cuda": cuda,
    }
    top = _module("polygraphy", __version__="0.53.6+fake", config=config, backend=backend,
                  cuda=cuda, exception=mods["polygraphy.exception"],
                  logger=mods["polygraphy.logger"], datatype=mods["polygraphy.datatype"])
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "polygraphy", top)
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return trt
