"""Image folders: the image files of a folder, labelled image folders (torchvision's
ImageFolder layout: one subfolder per class, class index = position of the subfolder's name in
sorted order, which gives the standard ImageNet indices for synset folders) and subsets spread
evenly over the classes.

Only regular files are read: anything else under an image name (a FIFO, a device, a dangling
link) is refused by name, so that nothing blocks on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from .errors import VnexportError

# torchvision's IMG_EXTENSIONS (ImageFolder's), matched without regard to case
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

T = TypeVar("T")


@dataclass(frozen=True)
class LabelledImages:
    """An ImageFolder: ``classes`` (sorted subfolder names; class index = position) and
    ``samples`` ((image file, class index), by class index, then file order within a class)."""

    root: Path
    classes: tuple[str, ...]
    samples: tuple[tuple[Path, int], ...]

    @property
    def files(self) -> list[Path]:
        return [p for p, _ in self.samples]

    @property
    def labels(self) -> list[int]:
        return [c for _, c in self.samples]

    def per_class(self) -> list[int]:
        counts = [0] * len(self.classes)
        for _, c in self.samples:
            counts[c] += 1
        return counts


def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _regular(files: list[Path]) -> list[Path]:
    """``files`` without folders named like images; anything else that is not a regular file
    (after links) is refused by name."""
    for p in files:
        if not p.is_file() and not p.is_dir():
            raise VnexportError("not a regular file (a FIFO, device or broken link named like "
                                "an image)", p)
    return [p for p in files if p.is_file()]


def _walk_order(path: Path) -> tuple[str, str]:
    """torchvision's order: folders as ``sorted(os.walk(...))`` gives them, names sorted."""
    return str(path.parent), path.name


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (recursively, by suffix) in sorted order; refuses a
    folder without any."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VnexportError("not a directory of images", folder)
    files = _regular(sorted((p for p in folder.rglob("*") if _is_image_name(p)),
                            key=_walk_order))
    if not files:
        raise VnexportError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder", folder)
    return files


def is_image_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` looks like an ImageFolder: subfolders, and no image file directly
    in it (a flat folder of images is not one)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    entries = list(folder.iterdir())
    return (any(e.is_dir() for e in entries)
            and not any(_is_image_name(e) and not e.is_dir() for e in entries))


def read_image_folder(root: str | os.PathLike) -> LabelledImages:
    """The labelled images of an ImageFolder layout: each subfolder a class (sorted by name),
    its image files (recursively, sorted) that class's samples. Refuses a folder that is not in
    that layout, a class folder without images, and anything under an image name that is not a
    regular file."""
    root = Path(root)
    if not root.is_dir():
        raise VnexportError("not a directory", root)
    classes = tuple(sorted(e.name for e in os.scandir(root) if e.is_dir()))
    if not classes:
        raise VnexportError("not an ImageFolder layout: no class subfolders (one folder of "
                            "images per class is expected, e.g. ImageNet val in synset folders)",
                            root)
    stray = sorted(e.name for e in os.scandir(root) if _is_image_name(Path(e.name))
                   and not e.is_dir())
    if stray:
        raise VnexportError(f"not an ImageFolder layout: image file {stray[0]!r} outside the "
                            "class subfolders", root)
    samples: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        folder = root / name
        files = _regular(sorted((p for p in folder.rglob("*") if _is_image_name(p)),
                                key=_walk_order))
        if not files:
            raise VnexportError(f"class folder {name!r} holds no images "
                                f"({', '.join(IMAGE_SUFFIXES)})", root)
        samples += [(p, index) for p in files]
    return LabelledImages(root=root, classes=classes, samples=tuple(samples))


def spread(items: Sequence[T], labels: Sequence[int], n: int) -> list[T]:
    """``n`` of ``items`` spread evenly over the classes: round-robin over the classes in class
    order (the first item of each class, then the second of each, ...; a class that runs out is
    skipped), items in their given order within a class. Returned in the items' own order.
    Deterministic; ``n >= len(items)`` gives all."""
    if len(items) != len(labels):
        raise ValueError(f"{len(items)} items but {len(labels)} labels")
    if n >= len(items):
        return list(items)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    queues = [by_class[c] for c in sorted(by_class)]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for q in queues:
            if depth < len(q) and len(chosen) < n:
                chosen.append(q[depth])
        depth += 1
    return [items[i] for i in sorted(chosen)]


def pick_images(folder: str | os.PathLike, n: int | None) -> tuple[list[Path], str]:
    """Up to ``n`` image files of ``folder`` (None: all), and how they were chosen, in words:
    spread over the classes of an ImageFolder layout, else the first ``n`` in sorted order."""
    if is_image_folder(folder):
        labelled = read_image_folder(folder)
        files, k = labelled.files, len(labelled.classes)
        if n is None or n >= len(files):
            return files, f"{len(files)} found in {k} class folders, all used"
        return (spread(files, labelled.labels, n),
                f"{len(files)} found in {k} class folders, {n} used spread over the classes")
    files = image_files(folder)
    if n is None or n >= len(files):
        return files, f"{len(files)} found, all used"
    return files[:n], f"{len(files)} found, the first {n} used"
