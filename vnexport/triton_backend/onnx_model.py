"""Triton Python-backend model written by vnexport: runs ``model.onnx`` on onnxruntime.

For servers without Triton's onnxruntime backend (such as the one the nvidia-pytriton wheel
ships). The CUDA provider is used where onnxruntime has it and the instance is a GPU one, else
the CPU provider. Requests that arrive together (dynamic batching) run as one batch.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, params.get("onnx_file", "model.onnx"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" \
                and "CUDAExecutionProvider" in ort.get_available_providers():
            device = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(path, providers=providers)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy()
                  for r in requests]
        if self.batching and len(arrays) > 1:
            outputs = self._run(np.concatenate(arrays))
            bounds = np.cumsum([len(a) for a in arrays])[:-1]
            results = np.split(outputs, bounds)
        else:
            results = [self._run(a) for a in arrays]
        return [pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor(self.output_name, np.ascontiguousarray(out))]) for out in results]

    def _run(self, x):
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def finalize(self):
        self.session = None
