"""What the stage tests (tests/test_stage_<command>.py) share: a small seeded run (training
checkpoint, deploy file, ONNX file), a Log that collects the lines, and the independent path
(the training form in PyTorch)."""

from __future__ import annotations

import pytest

from artifacts import CONFIG, IMG, STRIDES, make_small_run
from vnexport.checkpoint import load_checkpoint
from vnexport.stages.common import Log, Source
from vnexport.verify import run_torch

SRC = Source(strides=STRIDES)
__all__ = ["CONFIG", "IMG", "SRC", "small", "lines", "training_outputs"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("stages"))


@pytest.fixture
def lines():
    out: list[str] = []
    return out, Log(echo=out.append, note=out.append)


def training_outputs(small, x):
    """The independent path: the checkpoint's training form in PyTorch."""
    return run_torch(load_checkpoint(small.training, strides=CONFIG.strides).build_model(), x)
