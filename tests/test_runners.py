"""runners.py: every artifact kind as one callable, checked against the training form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from artifacts import CONFIG, IMG, export_onnx_file, make_small_run

from vnexport.checkpoint import load_checkpoint
from vnexport.errors import MissingRuntimeError, VnexportError
from vnexport.runners import (artifact_kind, ort_from_onnx, runner_from_path,
                              torch_from_checkpoint, trt_from_engine)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def x():
    return torch.randn(5, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def reference(small, x):
    """The training-form network run directly: the independent path."""
    with torch.no_grad():
        return load_checkpoint(small.training, strides=CONFIG.strides).build_model()(x).numpy()


def load(path):
    return load_checkpoint(path, strides=CONFIG.strides)


@pytest.mark.parametrize("name,kind", [("training", "training"), ("deploy", "deploy"),
                                       ("onnx", "onnx")])
def test_each_kind_runs_like_the_training_form(small, x, reference, name, kind):
    r = runner_from_path(getattr(small, name), load=load, device="cpu")
    assert (r.kind, r.precision) == (kind, "fp32")
    out = r(x.numpy())
    assert out.shape == (5, CONFIG.num_classes) and out.dtype == np.float64
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    assert r.describe()["path"] == str(getattr(small, name))


def test_kind_from_suffix(tmp_path):
    assert artifact_kind("a.onnx") == "onnx"
    assert artifact_kind("a.engine") == artifact_kind("a.PLAN") == "engine"
    assert artifact_kind("a.pth") == artifact_kind("a.safetensors") == "checkpoint"
    with pytest.raises(VnexportError, match="unknown artifact type"):
        artifact_kind("a.h5")


def test_training_and_deploy_told_apart_by_content(small, tmp_path):
    renamed = tmp_path / "model.pt"  # the suffix says nothing about the form
    renamed.write_bytes(small.deploy.read_bytes())
    assert torch_from_checkpoint(load(renamed)).kind == "deploy"
    renamed.write_bytes(small.training.read_bytes())
    assert torch_from_checkpoint(load(renamed)).kind == "training"


def test_fixed_batch_onnx_runs_in_chunks(small, tmp_path, x, reference):
    path = export_onnx_file(small.training, tmp_path / "b2.onnx", batch=2)
    r = ort_from_onnx(path)
    out = r(x.numpy())  # 5 inputs through a batch-2 graph: 2 + 2 + 1 (padded)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-5 * np.abs(reference).max())


def test_precision_read_from_the_graph(small, tmp_path):
    import onnx
    from onnxconverter_common import float16
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    assert ort_from_onnx(small.onnx).precision == "fp32"
    half = tmp_path / "half.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(small.onnx)), keep_io_types=True),
              str(half))
    assert ort_from_onnx(half).precision == "fp16"

    class Reader(CalibrationDataReader):
        def __init__(self):
            g = np.random.default_rng(0)
            self.data = iter([{"input": g.standard_normal((1, 3, IMG, IMG), np.float32)}
                              for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    q = tmp_path / "q.onnx"
    quantize_static(str(small.onnx), str(q), Reader(), quant_format=QuantFormat.QDQ)
    r = ort_from_onnx(q)
    assert r.precision == "int8"
    assert r(np.zeros((2, 3, IMG, IMG), np.float32)).shape == (2, CONFIG.num_classes)


def test_engine_needs_tensorrt(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00" * 16)
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(MissingRuntimeError):
        trt_from_engine(engine)
    with pytest.raises(VnexportError, match="no such file"):
        trt_from_engine(tmp_path / "missing.engine")


def test_onnx_with_the_wrong_input_size(small):
    r = ort_from_onnx(small.onnx)
    with pytest.raises(VnexportError, match="see --img-size"):
        r(np.zeros((1, 3, 2 * IMG, 2 * IMG), np.float32))


def test_cuda_requested_without_cuda(small):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(MissingRuntimeError, match="no CUDA GPU"):
        torch_from_checkpoint(load(small.deploy), device="cuda")
    with pytest.raises(MissingRuntimeError, match="CUDAExecutionProvider"):
        ort_from_onnx(small.onnx, device="cuda")


def test_run_ort_chunks_and_extra_outputs(small, x, reference):
    """The one batched runner: any chunk size gives the same logits, and extra graph outputs
    (as locate and fp16 calibration fetch them) come back for every input."""
    import onnx

    from vnexport.onnx_file import with_extra_outputs
    from vnexport.ort import run as run_ort
    from vnexport.ort import run_outputs as run_ort_outputs
    from vnexport.ort import session as ort_session

    model = onnx.load(str(small.onnx))
    session = ort_session(model, device="cpu")
    whole, in_twos = run_ort(session, x.numpy()), run_ort(session, x.numpy(), batch=2)
    assert whole.dtype == np.float64 and whole.shape == (5, CONFIG.num_classes)
    np.testing.assert_allclose(in_twos, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
    np.testing.assert_allclose(whole, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv").output[0]
    fetch = [first_conv, session.get_outputs()[0].name]
    conv, logits = run_ort_outputs(ort_session(with_extra_outputs(model, [first_conv]),
                                               device="cpu"), x.numpy(), fetch, batch=3)
    assert conv.shape[0] == 5 and conv.ndim == 4
    np.testing.assert_allclose(logits, whole, rtol=0, atol=1e-6 * np.abs(whole).max())
