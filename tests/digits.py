"""A small VanillaNet really trained, for a few seconds, on scikit-learn's 8x8 handwritten digits.

Trained with the authors' deep-training schedule (act_learn = epoch / decay_epochs, from 0 to 1)
and saved in the training script's checkpoint format, once mid-schedule (act_learn < 1, which
``fuse`` must refuse) and once after it (act_learn == 1).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vnexport.model import VanillaNet, VanillaNetConfig
from vnexport.synthetic import training_checkpoint

CONFIG = VanillaNetConfig(dims=(16, 32, 64), strides=(2, 2), act_num=1, num_classes=10)
STRIDES = "2,2"
IMG = 32
EPOCHS = 8
DECAY_EPOCHS = 5
MID_EPOCH = 2


@dataclass
class DigitsRun:
    final: Path  # checkpoint after the schedule (act_learn == 1)
    mid: Path  # checkpoint mid-schedule (act_learn < 1)
    x_test: torch.Tensor
    y_test: np.ndarray
    accuracy: float  # held-out accuracy of the final training-form model


def load_digits_tensors(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(IMG, IMG), mode="bilinear", align_corners=False)
    x = ((x - 0.5) / 0.5).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target)
    idx_tr, idx_te = train_test_split(np.arange(len(y)), test_size=0.3, random_state=seed,
                                      stratify=d.target)
    return x[idx_tr], y[idx_tr], x[idx_te], y[idx_te]


def accuracy(model: VanillaNet, x: torch.Tensor, y) -> float:
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    return float((pred.numpy() == np.asarray(y)).mean())


def train_digits(folder: Path, seed: int = 0) -> DigitsRun:
    torch.manual_seed(seed)
    x_tr, y_tr, x_te, y_te = load_digits_tensors(seed)
    model = VanillaNet(CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=1e-4)
    args = argparse.Namespace(model="vanillanet_digits", epochs=EPOCHS, decay_epochs=DECAY_EPOCHS,
                              decay_linear=True, act_num=CONFIG.act_num, nb_classes=10,
                              input_size=IMG)
    g = torch.Generator().manual_seed(seed)
    mid = folder / f"checkpoint-{MID_EPOCH}.pth"
    final = folder / "checkpoint-best.pth"
    for epoch in range(EPOCHS):
        if epoch <= DECAY_EPOCHS:  # the training script's schedule, set at each epoch's start
            model.set_act_learn(epoch / DECAY_EPOCHS)
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            loss = F.cross_entropy(model(x_tr[b]), y_tr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        if epoch in (MID_EPOCH, EPOCHS - 1):
            ckpt = training_checkpoint(model, epoch=epoch, args=args)
            ckpt["optimizer"] = opt.state_dict()
            torch.save(ckpt, mid if epoch == MID_EPOCH else final)
    return DigitsRun(final=final, mid=mid, x_test=x_te, y_test=y_te.numpy(),
                     accuracy=accuracy(model, x_te, y_te))


def write_image_folder(x: torch.Tensor, y, folder: Path, per_class: int | None = None) -> Path:
    """Digits as an ImageFolder of 32x32 RGB PNGs (class folders ``0`` .. ``9``; at most
    ``per_class`` images each) that ImageNet normalisation turns back into the tensors the model
    was trained on: channel c encodes t as 255 * (mean_c + std_c * t)."""
    from PIL import Image

    from vnexport.model import IMAGENET_MEAN, IMAGENET_STD

    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(x, np.asarray(y))):
        label = int(label)
        counts[label] = counts.get(label, 0) + 1
        if per_class is not None and counts[label] > per_class:
            continue
        rgb = 255 * (mean + std * img[0].numpy()[..., None])
        sub = folder / str(label)
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(rgb).clip(0, 255).astype(np.uint8)).save(sub / f"{i:04d}.png")
    return folder


def load_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The tests' own preprocessing, independent of vnexport's: RGB / 255, ImageNet mean/std,
    NCHW float32; labels from the sorted subfolder names."""
    from PIL import Image

    from vnexport.model import IMAGENET_MEAN, IMAGENET_STD

    mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    xs, ys = [], []
    for i, c in enumerate(classes):
        for f in sorted((folder / c).glob("*.png")):
            arr = np.asarray(Image.open(f).convert("RGB"), np.float32) / 255.0
            xs.append(((arr - mean) / std).transpose(2, 0, 1))
            ys.append(i)
    return np.stack(xs), np.asarray(ys)


def plant_wide_channel(sd: dict, stage: int = 0, c: int = 3, k: float = 1000.0) -> dict:
    """The same network with one wide-range channel: channel ``c`` of stage ``stage``'s output
    x k (its BN's gamma and beta), through max pool and ReLU, the activation's depthwise kernel
    / k and its BN's gamma and beta x k (so the activation's output channel is x k), the next
    stage's first conv's input channel / k."""
    sd = {name: t.clone() for name, t in sd.items()}
    p = f"stages.{stage}"
    for name in (f"{p}.conv2.1.weight", f"{p}.conv2.1.bias", f"{p}.act.bn.weight",
                 f"{p}.act.bn.bias"):
        sd[name][c] *= k
    sd[f"{p}.act.weight"][c] /= k
    sd[f"stages.{stage + 1}.conv1.0.weight"][:, c] /= k
    return sd
