"""Image files to network inputs: the one preprocessing of vnexport (evaluation, verification
on images, calibration), the VanillaNet authors' evaluation transform (``build_transform`` in
their datasets.py) written with PIL and numpy:

- input size > 32 and < 384: the shorter side resized to ``int(size / crop_pct)`` (bicubic;
  the longer side ``int(new_short * long / short)``, as torchvision's Resize), then a centre
  crop of size x size (offsets ``int(round((W - size) / 2))``, as torchvision's CenterCrop);
- input size >= 384: resized to size x size (bicubic, no crop);
- input size <= 32: no resize (the image must already be size x size);

then RGB scaled to [0, 1] (ToTensor) and normalised by mean/std (ImageNet's by default).

A file is opened lazily: its stored and resized sizes are checked from the header against
``limits.MAX_IMAGE_PIXELS`` before any pixel is decoded.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import VnexportError
from .limits import MAX_IMAGE_PIXELS
from .model import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_CROP_PCT = 0.875  # 224 / 256, the authors' default
NO_RESIZE_MAX = 32  # at or below this input size images are used as they are
WARP_MIN = 384  # at or above this input size images are resized to size x size


@dataclass(frozen=True)
class Transform:
    """The geometry of the preprocessing: the network's input size and the crop fraction."""

    img_size: int = 224
    crop_pct: float = DEFAULT_CROP_PCT

    def __post_init__(self):
        if not 0 < self.crop_pct <= 1:
            raise VnexportError(f"--crop-pct must be in (0, 1], got {self.crop_pct:g}")

    def resized(self, w: int, h: int) -> tuple[int, int]:
        """The (width, height) an image of w x h is resized to (itself: no resize)."""
        size = self.img_size
        if size <= NO_RESIZE_MAX:
            return w, h
        if size >= WARP_MIN:
            return size, size
        short = int(size / self.crop_pct)
        if w <= h:
            return short, int(short * h / w)
        return int(short * w / h), short

    def crop_box(self, w: int, h: int) -> tuple[int, int, int, int] | None:
        """The centre crop (left, top, right, bottom) of a resized w x h image, or None."""
        size = self.img_size
        if size <= NO_RESIZE_MAX or size >= WARP_MIN:
            return None
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        return left, top, left + size, top + size

    def describe(self) -> str:
        size = self.img_size
        if size <= NO_RESIZE_MAX:
            return f"no resize ({size}x{size} images)"
        if size >= WARP_MIN:
            return f"bicubic resize to {size}x{size}"
        return (f"bicubic resize of the shorter side to {int(size / self.crop_pct)}, "
                f"centre crop {size}x{size} (crop_pct {self.crop_pct:g})")


def _check_size(path: Path, w: int, h: int, t: Transform) -> tuple[int, int]:
    """The resized size; refuses an image whose stored or resized size is above the limit, or
    that has not the input size where no resize is done, before its pixels are decoded."""
    limit = f"{MAX_IMAGE_PIXELS / 1e6:.0f} M pixels"
    if w < 1 or h < 1 or w * h > MAX_IMAGE_PIXELS:
        raise VnexportError(f"image of {w}x{h} pixels is above the limit of {limit}", path)
    rw, rh = t.resized(w, h)
    if rw * rh > MAX_IMAGE_PIXELS:
        raise VnexportError(f"image of {w}x{h} pixels: resizing it to {rw}x{rh} would need "
                            f"more than {limit} (aspect ratio too large)", path)
    if (rw, rh) == (w, h) and t.img_size <= NO_RESIZE_MAX and (w, h) != (t.img_size,) * 2:
        raise VnexportError(f"image of {w}x{h} pixels: at an input size of {NO_RESIZE_MAX} or "
                            f"less images are used unresized (as in the authors' evaluation), "
                            f"so it must be {t.img_size}x{t.img_size}", path)
    return rw, rh


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def load_image(path: str | Path, t: Transform = Transform()) -> np.ndarray:
    """One image file as float32 [3, size, size] in [0, 1] (RGB, before normalisation)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                rw, rh = _check_size(path, *im.size, t)
                im = im.convert("RGB")
                if (rw, rh) != im.size:
                    im = im.resize((rw, rh), Image.BICUBIC)
                box = t.crop_box(rw, rh)
                if box is not None:
                    im = im.crop(box)
                arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise VnexportError(f"not a readable image ({_first_line(e)})", path) from None
    except MemoryError:
        raise VnexportError("not enough memory to decode this image", path) from None
    return arr.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


def normalize(x: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """(x - mean) / std per channel, in float32, of [C, H, W] or [N, C, H, W] in [0, 1]."""
    shape = (-1, 1, 1)
    return ((x - np.asarray(mean, np.float32).reshape(shape))
            / np.asarray(std, np.float32).reshape(shape)).astype(np.float32, copy=False)


def load_images(paths: Sequence[str | Path], t: Transform = Transform()) -> np.ndarray:
    """Image files as float32 [N, 3, size, size] in [0, 1] (before normalisation)."""
    if not paths:
        return np.zeros((0, 3, t.img_size, t.img_size), np.float32)
    return np.stack([load_image(p, t) for p in paths])


def preprocess(path: str | Path, img_size: int = 224, crop_pct: float = DEFAULT_CROP_PCT,
               mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """One image file as the network's normalised float32 [3, size, size] input."""
    return normalize(load_image(path, Transform(img_size, crop_pct)), mean, std)


def valid_mean_std(mean, std, channels: int = 3) -> bool:
    """Whether ``mean``/``std`` are ``channels`` finite numbers each, ``std`` positive."""
    try:
        m, s = [float(v) for v in mean], [float(v) for v in std]
    except (TypeError, ValueError):
        return False
    return (len(m) == len(s) == channels and all(math.isfinite(v) for v in m + s)
            and all(v > 0 for v in s))
