"""Triton Python-backend preprocessing model written by vnexport: encoded images in, the
classifier's input out.

Each image (JPEG, PNG, ... bytes) is decoded to RGB, its shorter side resized to
img_size / crop_pct (bicubic), centre-cropped to img_size, scaled to [0, 1] and normalised with
the mean/std from the ONNX file's metadata: the steps of ``vnexport.verify.preprocess``. The
parameters come from config.pbtxt. Needs numpy and Pillow where the server runs.
"""

import io
import json
import math

import numpy as np
import triton_python_backend_utils as pb_utils
from PIL import Image


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.img_size = int(params["img_size"])
        self.crop_pct = float(params["crop_pct"])
        self.mean = np.asarray(json.loads(params["mean"]), np.float32)
        self.std = np.asarray(json.loads(params["std"]), np.float32)
        self.dtype = np.dtype(params.get("dtype", "float32"))
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]

    def execute(self, requests):
        responses = []
        for request in requests:
            blobs = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            try:
                x = np.stack([self.image(bytes(b)) for b in blobs.reshape(-1)])
            except (OSError, ValueError) as e:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"not a readable image: {e}")))
                continue
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.output_name, x.astype(self.dtype))]))
        return responses

    def image(self, data):
        size = self.img_size
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            short = int(math.floor(size / self.crop_pct))
            w, h = im.size
            scale = short / min(w, h)
            im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                           Image.BICUBIC)
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.float32) / 255.0
        arr = (arr - self.mean) / self.std
        return arr.transpose(2, 0, 1)
