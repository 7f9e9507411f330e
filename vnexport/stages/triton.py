"""``vnexport triton``: write a Triton model repository, one model per artifact, every config
checked against its artifact before anything is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..errors import VnexportError
from ..triton import (ModelFolder, ServingOptions, batching_note, default_name, model_folders,
                      parse_config, read_facts, read_labels, write_repository)


@dataclass(frozen=True)
class TritonOptions:
    artifacts: tuple[Path, ...]
    output: Path
    name: Optional[str] = None
    version: int = 1
    backend: str = "platform"
    max_batch: Optional[int] = None
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "auto"
    labels: Optional[Path] = None
    preprocess: bool = False
    force: bool = False


@dataclass
class TritonResult:
    repo: Path
    models: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    exit_code: int = 0

    def to_dict(self) -> dict:
        return {"repository": str(self.repo), "models": self.models, "notes": self.notes}

    def lines(self) -> list[str]:
        out = [f"note: {n}" for n in self.notes]
        for m in self.models:
            what = m.get("platform") or f"backend {m.get('backend')}"
            out.append(f"wrote {self.repo / m['name']}: {what}, max_batch_size "
                       f"{m['max_batch_size']} ({m['source']})")
        return out


def _describe(folder: ModelFolder, source: Path) -> dict:
    cfg = parse_config(folder.config)
    return {"name": folder.name, "platform": cfg.platform or None,
            "backend": cfg.backend or None, "max_batch_size": cfg.max_batch_size,
            "files": sorted(["config.pbtxt", *folder.files]), "source": str(source)}


def run(opts: TritonOptions) -> TritonResult:
    if not opts.artifacts:
        raise VnexportError("give at least one artifact (an ONNX file or an engine)")
    if opts.name is not None and len(opts.artifacts) > 1:
        raise VnexportError("--name names one model; give one artifact with it")
    folders: list[ModelFolder] = []
    result = TritonResult(repo=Path(opts.output))
    for path in opts.artifacts:
        facts = read_facts(path)
        labels = read_labels(opts.labels, facts.classes) if opts.labels else None
        serving = ServingOptions(
            name=opts.name or default_name(Path(path)), version=opts.version,
            backend=opts.backend, max_batch=opts.max_batch,
            preferred_batch=tuple(opts.preferred_batch),
            max_queue_delay_us=opts.max_queue_delay_us, instances=opts.instances,
            kind=opts.kind, labels=labels, preprocess=opts.preprocess)
        new = model_folders(facts, serving)
        note = batching_note(facts)
        if note:
            result.notes.append(note)
        folders += new
        described = [_describe(f, Path(path)) for f in new]
        described[0]["artifact"] = facts.to_dict()  # what the classifier's config states
        result.models += described
    write_repository(opts.output, folders, force=opts.force)
    return result
