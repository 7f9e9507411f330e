"""The one preprocessing (vnexport/images.py) against the VanillaNet authors' evaluation
transform written here independently with PIL and numpy (torchvision's Resize / CenterCrop /
ToTensor / Normalize steps spelled out), and the labelled folders of vnexport/labels.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vnexport.errors import VnexportError
from vnexport.images import Transform, load_image, preprocess
from vnexport.labels import pick_images, read_image_folder, spread

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def authors_transform(path: Path, size: int, crop_pct: float = 0.875) -> np.ndarray:
    """build_transform(is_train=False): resize_im = size > 32; >= 384 warps to size x size;
    else Resize(int(size / crop_pct)) on the shorter side (the longer one truncated, as
    torchvision computes it) and CenterCrop(size) (offsets rounded); ToTensor; Normalize."""
    im = Image.open(path).convert("RGB")
    if size > 32:
        if size >= 384:
            im = im.resize((size, size), Image.BICUBIC)
        else:
            w, h = im.size
            s = int(size / crop_pct)
            new = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
            if new != (w, h):
                im = im.resize(new, Image.BICUBIC)
            w, h = im.size
            top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
            im = im.crop((left, top, left + size, top + size))
    arr = np.array(im, dtype=np.uint8)
    t = np.transpose(arr, (2, 0, 1)).astype(np.float32) / np.float32(255)
    return (t - MEAN[:, None, None]) / STD[:, None, None]


def photo(path: Path, w: int, h: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 6, 2), max(w // 6, 2), 3), dtype=np.uint8)
    noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))
    Image.fromarray(np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("size,shapes", [
    (32, [(32, 32)]),
    (224, [(500, 375), (375, 500), (256, 256), (300, 301), (229, 700)]),
    (384, [(500, 375), (384, 384), (200, 640)]),
])
def test_preprocessing_is_the_authors_evaluation_transform(tmp_path, size, shapes):
    for i, (w, h) in enumerate(shapes):
        p = photo(tmp_path / f"{i}.png", w, h, seed=i)
        ours = preprocess(p, size)
        assert ours.shape == (3, size, size) and ours.dtype == np.float32
        np.testing.assert_array_equal(ours, authors_transform(p, size))


def test_crop_pct_and_odd_offsets(tmp_path):
    # int(160 / 0.95) = 168: 168x(int(168*333/257)=217); offsets round((217-160)/2) = 28 (28.5
    # rounds to even), as torchvision's CenterCrop
    p = photo(tmp_path / "a.png", 257, 333, seed=7)
    np.testing.assert_array_equal(preprocess(p, 160, 0.95), authors_transform(p, 160, 0.95))
    assert Transform(160, 0.95).resized(257, 333) == (168, 217)


def test_size_32_takes_images_as_they_are(tmp_path):
    p = photo(tmp_path / "a.png", 32, 32, seed=1)
    raw = np.asarray(Image.open(p).convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    np.testing.assert_array_equal(load_image(p, Transform(32)), raw)
    wrong = photo(tmp_path / "b.png", 36, 36, seed=2)
    with pytest.raises(VnexportError, match="b.png.*must be 32x32"):
        load_image(wrong, Transform(32))


def test_crop_pct_out_of_range():
    with pytest.raises(VnexportError, match="--crop-pct"):
        Transform(224, 1.5)


# --------------------------------------------------------------------------------------------
# labelled folders


def class_folder(root: Path, counts: dict[str, int]) -> Path:
    for name, k in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(k):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / name / f"{i:03d}.png")
    return root


def test_read_image_folder_is_imagefolder_order(tmp_path):
    root = class_folder(tmp_path / "val", {"n02": 2, "n01": 3, "n10": 1})
    (root / "n01" / "notes.txt").write_text("not an image")
    (root / "n01" / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(root / "n01" / "sub" / "deep.JPEG")
    d = read_image_folder(root)
    assert d.classes == ("n01", "n02", "n10")
    assert [(p.relative_to(root).as_posix(), c) for p, c in d.samples] == [
        ("n01/000.png", 0), ("n01/001.png", 0), ("n01/002.png", 0), ("n01/sub/deep.JPEG", 0),
        ("n02/000.png", 1), ("n02/001.png", 1), ("n10/000.png", 2)]


@pytest.mark.parametrize("make,match", [
    (lambda r: Image.new("RGB", (8, 8)).save(r / "a.png"), "not an ImageFolder"),
    (lambda r: class_folder(r, {"a": 1, "b": 0}), "'b' holds no images"),
    (lambda r: (class_folder(r, {"a": 1}), os.mkfifo(r / "a" / "x.png")), "x.png: not a regular"),
])
def test_read_image_folder_refuses(tmp_path, make, match):
    root = tmp_path / "r"
    root.mkdir()
    make(root)
    with pytest.raises(VnexportError, match=match):
        read_image_folder(root)


def test_spread_round_robin_over_classes():
    labels = [0] * 5 + [1] * 2 + [2] * 4
    items = list(range(len(labels)))
    assert spread(items, labels, 4) == [0, 1, 5, 7]  # firsts of each class, then a second
    assert spread(items, labels, 7) == [0, 1, 2, 5, 6, 7, 8]
    assert spread(items, labels, 9) == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # class 1 ran out
    assert spread(items, labels, 99) == items
    assert spread(items, labels, 0) == []


def test_subsets_of_an_image_folder_are_spread(tmp_path):
    root = class_folder(tmp_path / "val", {"a": 6, "b": 6, "c": 6})
    files, how = pick_images(root, 6)
    assert sorted(p.parent.name for p in files) == ["a", "a", "b", "b", "c", "c"]
    assert how == "18 found in 3 class folders, 6 used spread over the classes"
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8)).save(flat / f"{i}.png")
    files, how = pick_images(flat, 2)
    assert [p.name for p in files] == ["0.png", "1.png"] and how == "5 found, the first 2 used"
