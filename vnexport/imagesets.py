"""Which images of a folder calibrate, verify and evaluate an int8 file.

A subset of a folder is taken spread over its classes (``labels.spread``; a class is the
top-level subfolder an image sits in, so a flat folder is one class and keeps its sorted
order), not the first files in sorted order, which in a class-per-folder layout would all be
of the first class. Verification images are held out from calibration where the folder has
enough images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .labels import read_image_folder, spread
from .limits import MAX_INPUTS
from .verify import list_images, preprocess


def _classes(root: Path, files: list[Path]) -> list[int]:
    """The index of each file's top-level subfolder under ``root`` (0 for files at the top)."""
    tops = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else ""
            for p in files]
    names = sorted(set(tops))
    return [names.index(t) for t in tops]


def spread_files(root: Path, n: int) -> tuple[list[Path], int]:
    """``n`` image files of ``root`` spread over its subfolders, and how many it holds."""
    files = list_images(root)
    return spread(files, _classes(root, files), n), len(files)


def load(files: list[Path], img_size: int) -> torch.Tensor:
    return torch.stack([preprocess(p, img_size) for p in files])


@dataclass
class Split:
    """The calibration files, and the verification files with a sentence saying where they
    come from (None when verification is not on these folders' images)."""

    calib: list[Path]
    verify: Optional[list[Path]] = None
    description: str = ""


def split(calib_dir: Optional[Path], calib_n: int, eval_dir: Optional[Path], n: int,
          img_size: int) -> Split:
    """Calibration images (``calib_n`` of ``calib_dir``, spread) and ``n`` verification images
    from ``eval_dir`` (else ``calib_dir``), spread and, where the folder holds enough, none of
    them used for calibration."""
    calib, _ = spread_files(calib_dir, calib_n) if calib_dir is not None else ([], 0)
    source = eval_dir if eval_dir is not None else calib_dir
    if source is None:
        return Split(calib)
    files = list_images(source)
    used = set(calib)
    rest = [p for p in files if p not in used]
    where = f"at {img_size}x{img_size}"
    if len(rest) >= n:
        chosen = spread(rest, _classes(source, rest), n)
        held = ("none of them used for calibration" if used & set(files) else
                "a folder apart from the calibration images")
        text = (f"{len(chosen)} real images from {source} {where}, spread over its classes, "
                f"{held} ({len(files)} found)")
    else:
        chosen = spread(files, _classes(source, files), n)
        text = (f"{len(chosen)} real images from {source} {where}, spread over its classes, "
                f"also used for calibration ({len(files)} found, {len(calib)} of them "
                f"calibrating: too few to hold {n} out)")
    return Split(calib, chosen, text)


@dataclass
class Labelled:
    x: np.ndarray
    labels: np.ndarray
    description: str


def labelled_inputs(root: Path, img_size: int, limit: int = MAX_INPUTS) -> Labelled:
    """Up to ``limit`` images of an ImageFolder ``root`` (spread over its classes),
    preprocessed, with their class indices."""
    folder = read_image_folder(root)
    samples = spread(list(folder.samples), [c for _, c in folder.samples], limit)
    x = load([p for p, _ in samples], img_size).numpy()
    y = np.asarray([c for _, c in samples])
    used = ("all used" if len(samples) == len(folder.samples)
            else f"{len(samples)} used, spread over the classes")
    return Labelled(x, y, f"{len(samples)} labelled images of {len(folder.classes)} classes "
                          f"from {root} ({len(folder.samples)} found, {used})")
