"""A FAKE ``tensorrt`` module: the enums and version vnexport.trt reads, nothing that builds
or runs. Members carry their names the way the real pybind11 enums do (``.name``)."""

from __future__ import annotations

import enum
import types


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.Enum):
    TF32 = 7
    VERSION_COMPATIBLE = 18
    EXCLUDE_LEAN_RUNTIME = 19
    STRONGLY_TYPED = 24


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.Enum):
    NONE = 0
    AMPERE_PLUS = 1
    SAME_COMPUTE_CAPABILITY = 2


class NetworkDefinitionCreationFlag(enum.Enum):
    STRONGLY_TYPED = 1


def make(version: str = "10.12.0.36") -> types.ModuleType:
    """A fresh fake ``tensorrt`` module of ``version``."""
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.__fake__ = True
    for cls in (TensorIOMode, BuilderFlag, MemoryPoolType, HardwareCompatibilityLevel,
                NetworkDefinitionCreationFlag):
        setattr(mod, cls.__name__, cls)
    mod.Builder = type("Builder", (), {})
    return mod
