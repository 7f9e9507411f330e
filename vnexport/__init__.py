"""vnexport: deploy VanillaNet image classifiers (fused checkpoints, ONNX, TensorRT), verified."""

__version__ = "0.1.0"
