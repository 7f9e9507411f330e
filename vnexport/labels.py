"""Labelled images in torchvision's ImageFolder layout, and subsets spread over the classes.

(Provisional copy on the i16q branch, with the API the eval work defines: one subfolder per
class, class index = position in the sorted folder names, as torchvision's ImageFolder.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from .errors import VnexportError
from .verify import IMAGE_SUFFIXES

T = TypeVar("T")


@dataclass(frozen=True)
class LabelledImages:
    root: Path
    classes: tuple[str, ...]  # sorted subfolder names; class index = position
    samples: tuple[tuple[Path, int], ...]  # (image file, class index), by class then name


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def read_image_folder(root: str | os.PathLike) -> LabelledImages:
    """The images under ``root``'s class subfolders (searched recursively), labelled by
    subfolder. VnexportError when ``root`` is not a folder, has no class subfolders, or none
    of them holds an image."""
    root = Path(root)
    if not root.is_dir():
        raise VnexportError("not a directory", root)
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not classes:
        raise VnexportError("not an ImageFolder layout (one subfolder of images per class): "
                            "no subfolders", root)
    samples = tuple((p, i) for i, c in enumerate(classes) for p in _images(root / c))
    if not samples:
        raise VnexportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in its class "
                            "subfolders", root)
    return LabelledImages(root, classes, samples)


def spread(items: Sequence[T], labels: Sequence[int], n: int) -> list[T]:
    """``n`` of ``items`` taken evenly over their classes (``labels``), in a fixed order:
    round by round, the next item of each class in turn (classes in label order, items in
    their given order), until ``n`` are taken or none is left. The result keeps ``items``'
    order."""
    if len(items) != len(labels):
        raise ValueError("items and labels differ in length")
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(int(lab), []).append(i)
    queues = [by_class[k] for k in sorted(by_class)]
    taken: list[int] = []
    depth = 0
    while len(taken) < n and any(depth < len(q) for q in queues):
        for q in queues:
            if depth < len(q) and len(taken) < n:
                taken.append(q[depth])
        depth += 1
    return [items[i] for i in sorted(taken)]
