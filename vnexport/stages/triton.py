"""``vnexport triton``: write a Triton model repository, one model per artifact, every config
checked against its artifact before anything is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ..errors import VnexportError
from ..triton import (DEFAULT_WORKSPACE_BYTES, ModelFolder, ServingOptions, batching_note,
                      default_name, model_folders, parse_config, read_facts, read_labels,
                      write_repository)
from ..trt import compat, read_provenance
from .common import Log, Result, parse_ints


@dataclass(frozen=True)
class TritonOptions:
    artifacts: tuple[Path, ...]
    output: Path
    name: Optional[str] = None
    version: int = 1
    backend: str = "platform"  # or "python"
    max_batch: Optional[int] = None
    preferred_batch: Union[str, tuple[int, ...], None] = None  # "4,8" as given, or a tuple
    max_queue_delay_us: int = 100
    instances: int = 1
    kind: str = "auto"
    labels: Optional[Path] = None
    preprocess: bool = False
    force: bool = False
    accelerator: Optional[str] = None  # "tensorrt": ONNX Runtime's TensorRT provider
    workspace: Optional[float] = None  # GiB, the provider's workspace limit (default 1)
    engine_cache: Optional[str] = None  # the provider's engine cache folder on the server


def _describe(folder: ModelFolder, source: Path) -> dict:
    cfg = parse_config(folder.config)
    d = {"name": folder.name, "platform": cfg.platform or None,
         "backend": cfg.backend or None, "max_batch_size": cfg.max_batch_size,
         "files": sorted(["config.pbtxt", *folder.files]), "source": str(source)}
    for a in cfg.optimization.execution_accelerators.gpu_execution_accelerator:
        d.update(accelerator=a.name, precision_mode=a.parameters.get("precision_mode"),
                 accelerator_parameters=dict(a.parameters))
    return d


def _line(repo: Path, m: dict) -> str:
    what = m["platform"] or f"backend {m['backend']}"
    if m.get("accelerator"):
        what += f" + {m['accelerator']} ({m['precision_mode']}, engine cache on the server)"
    return f"wrote {repo / m['name']}: {what}, max_batch_size {m['max_batch_size']} " \
           f"({m['source']})"


def serving_options(opts: TritonOptions, path: Path, classes: int) -> ServingOptions:
    preferred = opts.preferred_batch
    if isinstance(preferred, str) or preferred is None:
        preferred = parse_ints(preferred, "--preferred-batch") or ()
    return ServingOptions(
        name=opts.name or default_name(path), version=opts.version, backend=opts.backend,
        max_batch=opts.max_batch, preferred_batch=tuple(preferred),
        max_queue_delay_us=opts.max_queue_delay_us, instances=opts.instances, kind=opts.kind,
        labels=read_labels(opts.labels, classes) if opts.labels else None,
        preprocess=opts.preprocess, accelerator=opts.accelerator,
        workspace_bytes=_workspace_bytes(opts), engine_cache=opts.engine_cache)


def _workspace_bytes(opts: TritonOptions) -> int:
    if (opts.workspace is not None or opts.engine_cache is not None) and not opts.accelerator:
        raise VnexportError("--workspace and --engine-cache configure --accelerator tensorrt; "
                            "give it too")
    if opts.workspace is None:
        return DEFAULT_WORKSPACE_BYTES
    if not 0 < opts.workspace <= 1024:
        raise VnexportError(f"--workspace must be in (0, 1024] GiB, got {opts.workspace}")
    return int(opts.workspace * (1 << 30))


def run(opts: TritonOptions, log: Log = Log()) -> Result:
    """Read every artifact, build and check every folder, then write them all or none."""
    if not opts.artifacts:
        raise VnexportError("give at least one artifact (an ONNX file or an engine)")
    if opts.name is not None and len(opts.artifacts) > 1:
        raise VnexportError("--name names one model; give one artifact with it")
    folders: list[ModelFolder] = []
    models, notes = [], []
    for path in map(Path, opts.artifacts):
        facts = read_facts(path)
        new = model_folders(facts, serving_options(opts, path, facts.classes))
        described = [_describe(f, path) for f in new]
        described[0]["artifact"] = facts.to_dict()  # what the classifier's config states
        if facts.kind == "engine":
            prov = read_provenance(path) or {}
            described[0]["serving"] = compat.serving_facts(prov)
            notes += [f"{path.name}: {' '.join(line.split())}"
                      for line in compat.serving_lines(prov)]
        models += described
        folders += new
        if batching_note(facts):
            notes.append(batching_note(facts))
    write_repository(opts.output, folders, force=opts.force)
    for n in notes:
        log.note(f"note: {n}")
    repo = Path(opts.output)
    return Result(report={"repository": str(repo), "models": models, "notes": notes},
                  closing=[_line(repo, m) for m in models])
