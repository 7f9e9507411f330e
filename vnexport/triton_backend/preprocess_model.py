"""Triton Python-backend preprocessing model written by vnexport: encoded images in, the
classifier's input out.

Each image (JPEG, PNG, ... bytes) is decoded to RGB, resized and cropped as the VanillaNet
authors' evaluation (see ``image``), scaled to [0, 1] and normalised with
the mean/std from the ONNX file's metadata: the steps of ``vnexport.images.preprocess``. The
parameters come from config.pbtxt. Needs numpy and Pillow where the server runs.
"""

import io
import json

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
        """The authors' evaluation transform (``vnexport.images``): sizes 33..383 resize the
        shorter side to int(size / crop_pct) and centre-crop; 384+ resize to size x size; 32
        and below use the image as it is."""
        size = self.img_size
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            w, h = im.size
            if size >= 384:
                new = (size, size)
            elif size > 32:
                short = int(size / self.crop_pct)
                new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
            else:
                new = (w, h)
            if new != (w, h):
                im = im.resize(new, Image.BICUBIC)
            if 32 < size < 384:
                left = int(round((new[0] - size) / 2.0))
                top = int(round((new[1] - size) / 2.0))
                im = im.crop((left, top, left + size, top + size))
            if im.size != (size, size):
                raise ValueError(f"image of {w}x{h}: at size {size} it must be {size}x{size}")
            arr = np.asarray(im, dtype=np.uint8).astype(np.float32) / np.float32(255.0)
        arr = (arr - self.mean) / self.std
        return arr.transpose(2, 0, 1)
