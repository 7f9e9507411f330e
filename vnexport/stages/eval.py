"""``vnexport eval``: top-1 and top-5 of every artifact on labelled images (an ImageFolder),
with 95% confidence intervals, each paired with the reference (the first artifact, a
checkpoint) image by image.

Loading follows ``verify``: the runners (``runners.py``) are loaded up front (bad input exits 2,
a missing runtime 3, before any image is read). Preprocessing is the authors' evaluation
transform (``images.py``); each ONNX file is normalised by the mean/std of its metadata, every
other artifact by ImageNet's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import EXIT_CHECK_FAILED, VnexportError
from ..evaluate import Accuracy, RateLimited, evaluate
from ..images import DEFAULT_CROP_PCT, Transform, valid_mean_std
from ..labels import read_image_folder, spread
from ..model import IMAGENET_MEAN, IMAGENET_STD
from ..runners import artifact_kind, load_runners, torch_from_checkpoint
from .common import Log, Result, Source, check_img_size, load, onnx_img_size, torch_threads


@dataclass(frozen=True)
class EvalOptions:
    artifacts: list[Path]
    images: Path
    source: Source = field(default_factory=Source)
    limit: Optional[int] = None  # None: every image
    img_size: Optional[int] = None  # None: an ONNX artifact's input size, else 224
    crop_pct: float = DEFAULT_CROP_PCT
    batch: int = 32
    threads: Optional[int] = None
    max_drop: Optional[float] = None  # points of top-1 below the reference


@dataclass
class Evaluated:
    runner: object
    mean: tuple
    std: tuple
    norm_source: str
    accuracy: Accuracy = field(default_factory=Accuracy)
    vs_reference: Optional[dict] = None

    def to_dict(self) -> dict:
        r = self.runner
        return {"path": str(r.path), "kind": r.kind, "precision": r.precision,
                "backend": r.backend, **self.accuracy.figures(),
                "vs_reference": self.vs_reference,
                "normalisation": {"mean": list(self.mean), "std": list(self.std),
                                  "from": self.norm_source},
                "seconds": round(self.accuracy.seconds, 3), "notes": list(r.notes)}


def normalisation(runner) -> tuple[tuple, tuple, str]:
    """The mean/std an artifact expects: an ONNX file's metadata's, else ImageNet's."""
    session = getattr(runner, "session", None)
    if session is not None:
        meta = session.get_modelmeta().custom_metadata_map
        try:
            mean, std = json.loads(meta["mean"]), json.loads(meta["std"])
        except (KeyError, ValueError, TypeError):
            pass
        else:
            if valid_mean_std(mean, std):
                return tuple(map(float, mean)), tuple(map(float, std)), "ONNX metadata"
    return IMAGENET_MEAN, IMAGENET_STD, "ImageNet"


def _load(opts: EvalOptions, log: Log):
    """The reference checkpoint and every runner (reference first), loaded up front."""
    first = opts.artifacts[0]
    if artifact_kind(first) != "checkpoint":
        raise VnexportError("the first artifact is the reference and must be a checkpoint "
                            "(training or deploy form)", first)
    src = opts.source
    ref = load(first, src, log)
    rest = Source(model=src.model, strides=src.strides, ada_pool=src.ada_pool, trust=src.trust)
    runners = [torch_from_checkpoint(ref)] + load_runners(
        opts.artifacts[1:], lambda p: load(p, rest, log), threads=opts.threads)
    return ref, runners


def _samples(opts: EvalOptions, num_classes: int):
    labelled = read_image_folder(opts.images)
    k = len(labelled.classes)
    if k > num_classes:
        raise VnexportError(f"{k} class folders, but the model has {num_classes} classes",
                            opts.images)
    samples = list(labelled.samples)
    if opts.limit is not None:
        samples = spread(samples, labelled.labels, opts.limit)
    how = (f"all {len(samples)}" if len(samples) == len(labelled.samples) else
           f"{len(samples)} of {len(labelled.samples)}, spread over the classes (--limit)")
    return labelled, samples, how


def run(opts: EvalOptions, log: Log = Log()) -> Result:
    """Evaluate; PyTorch's thread count is set to ``opts.threads`` meanwhile, then restored."""
    with torch_threads(opts.threads):
        return _run(opts, log)


def _run(opts: EvalOptions, log: Log) -> Result:
    if not opts.artifacts:
        raise VnexportError("give at least one artifact (the first, a checkpoint, is the "
                            "reference)")
    ref, runners = _load(opts, log)
    if ref.cfg.in_chans != 3:
        raise VnexportError(f"eval reads RGB images: this model takes {ref.cfg.in_chans} "
                            "channels", opts.artifacts[0])
    img_size = opts.img_size or onnx_img_size(runners) or 224
    check_img_size(ref.cfg, img_size)
    t = Transform(img_size, opts.crop_pct)
    labelled, samples, how = _samples(opts, ref.cfg.num_classes)
    log.echo(f"evaluating on {how} images of {len(labelled.classes)} classes in "
             f"{opts.images} at {img_size}x{img_size}: {t.describe()}")
    items = [Evaluated(r, *normalisation(r)) for r in runners]
    accs = evaluate([r.fn for r in runners], [(e.mean, e.std) for e in items],
                    [p for p, _ in samples], [c for _, c in samples], t, opts.batch,
                    progress=RateLimited(log.progress), names=[str(r.path) for r in runners])
    for e, acc in zip(items, accs):
        e.accuracy = acc
        if e is not items[0]:
            e.vs_reference = acc.paired(accs[0])
    per_class = [0] * len(labelled.classes)
    for _, c in samples:
        per_class[c] += 1
    return _result(opts, items, labelled, per_class, t, log)


def table(items: list[Evaluated]) -> list[str]:
    """The terminal table: one row per artifact (the reference first)."""
    width = max([len("artifact")] + [len(Path(e.runner.path).name) for e in items])
    lines = [f"{'artifact':<{width}}  {'kind':<8} {'prec':<5} {'n':>6}  "
             f"{'top-1 % (95% CI)':<22} {'top-5 % (95% CI)':<22} {'d top-1':>7} "
             f"{'ref only':>8} {'here only':>9} {'agree %':>8}"]
    for e in items:
        f, v = e.accuracy.figures(), e.vs_reference
        ci1, ci5 = f["top1_ci95"], f["top5_ci95"]
        paired = (f"{v['top1_diff']:>+7.2f} {v['right_in_reference_only']:>8} "
                  f"{v['right_here_only']:>9} {v['top1_agreement']:>8.2f}" if v else
                  f"{'(reference)':>35}")
        lines.append(f"{Path(e.runner.path).name:<{width}}  {e.runner.kind:<8} "
                     f"{e.runner.precision:<5} {f['n']:>6}  "
                     f"{f['top1']:6.2f} ({ci1[0]:5.2f}-{ci1[1]:6.2f})  "
                     f"{f['top5']:6.2f} ({ci5[0]:5.2f}-{ci5[1]:6.2f})  {paired}")
    return lines


def _result(opts: EvalOptions, items: list[Evaluated], labelled, per_class: list[int],
            t: Transform, log: Log) -> Result:
    for line in table(items):
        log.echo(line)
    for e in items:
        for text in e.runner.notes:
            log.echo(f"{Path(e.runner.path).name}: note: {text}")
    ref_top1 = items[0].accuracy.figures()["top1"]
    failed = [] if opts.max_drop is None else [
        e for e in items[1:] if ref_top1 - e.accuracy.figures()["top1"] > opts.max_drop]
    report = {
        "images": {"root": str(opts.images), "classes": len(labelled.classes),
                   "found": len(labelled.samples), "n": sum(per_class), "limit": opts.limit,
                   "per_class": dict(zip(labelled.classes, per_class)),
                   "img_size": t.img_size, "crop_pct": t.crop_pct, "transform": t.describe()},
        "reference": str(opts.artifacts[0]),
        "artifacts": [e.to_dict() for e in items],
        "max_drop": opts.max_drop,
        "passed": not failed,
    }
    closing = []
    if failed:
        closing += [f"{Path(e.runner.path).name}: top-1 {e.accuracy.figures()['top1']:.2f}% is "
                    f"{ref_top1 - e.accuracy.figures()['top1']:.2f} points below the "
                    f"reference's {ref_top1:.2f}% (--max-drop {opts.max_drop:g})"
                    for e in failed]
        closing.append("eval FAILED: " + ", ".join(Path(e.runner.path).name for e in failed))
        return Result(report, closing, EXIT_CHECK_FAILED)
    closing.append(f"evaluated {len(items)} artifact(s) on {sum(per_class)} images"
                   + ("" if opts.max_drop is None else
                      f": every top-1 within {opts.max_drop:g} points of the reference"))
    return Result(report, closing)
