"""``vnexport info``: what a checkpoint is (form, variant, config, weights, epoch, cost), what
an ONNX file is (input, precision, opset, op inventory, vnexport metadata), or what a TensorRT
engine is (its provenance, TensorRT-RTX's header check, and, with its runtime
and a CUDA GPU, its own tensors and profile)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import trt
from ..errors import MissingRuntimeError, VnexportError
from ..model import multiply_adds, parameter_count
from ..onnx_file import detect_precision, get_metadata, load_onnx, op_inventory, read_onnx_input
from ..runners import ENGINE_SUFFIXES, ONNX_SUFFIXES
from ..triton import parse_config
from .common import Log, Result, Source, check_img_size, load


@dataclass(frozen=True)
class InfoOptions:
    ckpt: Path
    source: Source = field(default_factory=Source)
    img_size: int = 224


@dataclass
class InfoResult(Result):
    text: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return list(self.text)


def run(opts: InfoOptions, log: Log = Log()) -> InfoResult:
    """What a file vnexport reads or writes is (engines: ``run_engine``): a checkpoint, an
    ONNX file, a JSON file it wrote, a Triton model folder, repository or config."""
    kind = kind_of(opts.ckpt)
    if kind == "engine":  # the CLI sends engines to run_engine
        raise VnexportError("an engine: see run_engine", opts.ckpt)
    if kind in ("triton", "pbtxt"):
        return triton_info(opts.ckpt)
    if kind == "json":
        return json_info(opts.ckpt)
    return (onnx_info if kind == "onnx" else checkpoint_info)(opts, log)


def onnx_info(opts: InfoOptions, log: Log = Log()) -> InfoResult:
    """An ONNX file: its input, precision, opset, op inventory and vnexport metadata."""
    path = opts.ckpt
    model = load_onnx(path, external_data=False)
    inp = read_onnx_input(path, model)
    meta = get_metadata(model)
    data = {
        "file": str(path), "kind": "onnx", "size_bytes": path.stat().st_size,
        "input": {"name": inp.name, "shape": [d if d else "dynamic" for d in inp.shape],
                  "dtype": inp.dtype},
        "outputs": [o.name for o in model.graph.output],
        "precision": detect_precision(model=model, strict=False),
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "op_inventory": op_inventory(model),
        "metadata": meta,
    }
    shape = ", ".join(str(d) for d in data["input"]["shape"])
    text = [f"file        {path}", "kind        onnx",
            f"input       {inp.name} [{shape}] {inp.dtype}",
            f"precision   {data['precision']}",
            "opset       " + ", ".join(f"{k} {v}" for k, v in data["opsets"].items()),
            "graph       " + ", ".join(f"{op} {k}" for op, k in data["op_inventory"].items())
            + f" ({sum(data['op_inventory'].values())} nodes)",
            f"size        {data['size_bytes'] / 2**20:.1f} MiB"]
    text += [f"metadata    {k} = {v[:100]}" for k, v in sorted(meta.items())]
    return InfoResult(report=data, text=text)


def checkpoint_info(opts: InfoOptions, log: Log = Log()) -> InfoResult:
    ckpt, img_size = opts.ckpt, opts.img_size
    c = load(ckpt, opts.source, log)
    check_img_size(c.cfg, img_size)
    data = {
        "file": str(ckpt), "sha256": c.sha256, "form": c.form, "variant": c.variant,
        "config": c.cfg.to_dict(), "key": c.key, "epoch": c.epoch, "act_learn": c.act_learn,
        "act_learn_source": c.act_learn_source,
        "params_training": parameter_count(c.cfg, deploy=False),
        "params_deploy": parameter_count(c.cfg, deploy=True),
        "img_size": img_size,
        "macs_deploy": multiply_adds(c.cfg, img_size, deploy=True),
        "macs_training": multiply_adds(c.cfg, img_size, deploy=False),
        "mergeable": c.act_learn >= 1.0,
    }
    if c.meta:
        data["vnexport"] = {k: v for k, v in c.meta.items() if k != "config"}
    return InfoResult(report=data, text=_text(c, data, ckpt, img_size))


def _text(c, data: dict, ckpt: Path, img_size: int) -> list[str]:
    cfg = c.cfg
    return [
        f"file        {ckpt}",
        f"form        {c.form}",
        f"variant     {c.variant}",
        f"config      dims {list(cfg.dims)}, strides {list(cfg.strides)}"
        + (f", ada_pool {list(cfg.ada_pool)}" if cfg.ada_pool else "")
        + f", act_num {cfg.act_num}, classes {cfg.num_classes}, in_chans {cfg.in_chans}",
        f"weights     {c.key or 'bare state dict'}",
        f"epoch       {c.epoch if c.epoch is not None else '-'}",
        f"act_learn   {c.act_learn:.4g} ({c.act_learn_source})"
        + ("" if c.act_learn >= 1 else "  -> the paired convs do NOT merge exactly yet"),
        f"params      {data['params_deploy'] / 1e6:.1f} M deploy"
        + (f", {data['params_training'] / 1e6:.1f} M training" if c.form == "training" else ""),
        f"mult-adds   {data['macs_deploy'] / 1e9:.2f} G deploy at {img_size}x{img_size}",
        f"sha256      {c.sha256}",
    ]


# ------------------------------------------------------------------------------------------
# an engine


def is_engine(path: Path) -> bool:
    return path.suffix.lower() in ENGINE_SUFFIXES


@dataclass
class EngineInfoResult(InfoResult):
    """``missing``: why the engine could not be loaded here (no CUDA GPU, no runtime); the
    command prints the facts, then exits 3 with it."""

    missing: MissingRuntimeError | None = None


def run_engine(path: Path) -> EngineInfoResult:
    """An engine's facts; its own tensors where its runtime and a CUDA GPU are here (else
    ``missing`` says why, and the text says they were not read). A file whose header the
    TensorRT-RTX runtime finds malformed is no engine: VnexportError (exit 2)."""
    facts = trt.engine_facts(path)
    hc = facts["header_check"]
    if hc.get("checked") and "MALFORMED_ENGINE" in hc.get("diagnostics", []) \
            and facts["provenance"] is None:
        raise VnexportError("not a TensorRT engine: TensorRT-RTX "
                            f"{hc['tensorrt_rtx']} reads its header as malformed, and no "
                            "provenance JSON is beside it", path)
    missing = None
    try:
        facts["engine"] = trt.engine_io(path)
    except MissingRuntimeError as e:
        facts["engine"], missing = None, e
        facts["not_loaded"] = str(e)
    facts["header_status"] = header_status(hc)
    if facts.get("provenance") and facts.get("builder", "tensorrt") == "tensorrt":
        facts["serving"] = trt.compat.serving_facts(facts)
    return EngineInfoResult(report=facts, text=_engine_text(facts), missing=missing)


def header_status(hc: dict) -> str:
    """One word for the header check: ok (loads here, or well-formed and only the GPU checks
    could not run), not-loadable (a diagnostic: another version, another GPU...), invalid,
    unchecked."""
    if not hc.get("checked"):
        return "unchecked"
    if hc["validity"] in ("VALID", "SUBOPTIMAL") or (
            not hc["diagnostics"] and hc["meaning"].startswith("header read, not malformed")):
        return "ok"
    return "not-loadable" if hc["diagnostics"] else "invalid"


def _header_line(hc: dict) -> str:
    status = header_status(hc)
    if status == "unchecked":
        return f"header      not checked: {hc['why']}"
    version = f"TensorRT-RTX {hc['tensorrt_rtx']}"
    if status == "ok" and hc["validity"] not in ("VALID", "SUBOPTIMAL"):
        return (f"header      OK - a well-formed {version} plan (no CUDA GPU here, so whether "
                "it fits a GPU's compute capability and driver is checked where it runs)")
    if status == "ok":
        return f"header      OK - {version} can load it on this GPU ({hc['validity']})"
    flags = f" ({', '.join(hc['diagnostics'])})" if hc["diagnostics"] else ""
    word = "NOT LOADABLE HERE" if status == "not-loadable" else "INVALID"
    return f"header      {word} - {version}: {hc['meaning']}{flags}"


def _engine_text(f: dict) -> list[str]:
    out = [f"file        {f['file']} ({f['bytes'] / 2**20:.1f} MiB)",
           f"sha256      {f['sha256']}"]
    if f["provenance"] is None:
        out.append("provenance  none (no <engine>.json beside it)")
    else:
        ver = f.get("verification")
        out += [f"provenance  {f['provenance']} (sha256 "
                f"{'matches' if f.get('sha256_matches_provenance') else 'DOES NOT match'})",
                f"builder     {f.get('builder')} {f.get('builder_version')}",
                f"targets     {f.get('targets')}",
                f"precision   {f.get('precision')}, strongly typed {f.get('strongly_typed')}, "
                f"tf32 {f.get('tf32')}",
                "profile     " + (" ".join(f"{k} {f['profile'][k]}" for k in ("min", "opt", "max"))
                                  if f.get("profile") else "-"),
                "verified    " + (("PASS" if ver.get("passed") else "FAIL") + f" ({ver})"
                                  if ver else f"no: {f.get('verification_skipped')}")]
    if f.get("serving"):
        out += trt.compat.serving_lines(f)
    out.append(_header_line(f["header_check"]))
    if f.get("not_loaded"):
        out.append(f"tensors     not read here: {f['not_loaded']}")
    for t in (f.get("engine") or {}).get("tensors", []):
        out.append(f"tensor      {t['mode']} {t['name']} {t['dtype']} {t['shape']}"
                   + (f" profile {t['profile']}" if "profile" in t else ""))
    return out


# ------------------------------------------------------------------------------------------
# every other file vnexport writes: JSON (provenance, reports, calibration caches) and Triton
# model folders / repositories


def kind_of(path: Path) -> str:
    """Which reader ``info`` takes for ``path``: triton (a folder), engine, onnx, json,
    pbtxt (a Triton config file) or checkpoint (anything else: the checkpoint reader refuses
    what is not one, with one line)."""
    if path.is_dir():
        return "triton"
    if not path.exists():
        raise VnexportError("no such file or folder", path)
    if is_engine(path):
        return "engine"
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    return {".json": "json", ".pbtxt": "pbtxt"}.get(suffix, "checkpoint")


# the top-level keys by which each JSON file vnexport writes is known (--json reports: the
# command's name; its provenance JSON beside an engine; quantize --cache's calibration cache)
JSON_KINDS = (
    ("engine provenance", {"engine", "engine_sha256", "profile", "source_onnx", "tool"}),
    ("verify report", {"reference", "inputs", "artifacts", "passed"}),
    ("bench report", {"path", "kind", "device", "results"}),
    ("triton report", {"repository", "models", "notes"}),
    ("trt report", {"source", "output", "provenance", "written"}),
    ("quantize report", {"conversion", "precision", "verification", "written"}),
    ("onnx report", {"opset", "op_inventory", "verification", "written"}),
    ("fuse report", {"form", "variant", "act_learn", "verification", "written"}),
)


def json_kind(path: Path, data) -> str:
    if isinstance(data, dict) and data.get("format") == "vnexport-calibration-cache":
        return "calibration cache"
    for kind, keys in JSON_KINDS:
        if isinstance(data, dict) and keys <= set(data):
            return kind
    raise VnexportError("a JSON file, but none that vnexport writes (a report, an engine's "
                        "provenance, a calibration cache)", path)


def json_info(path: Path) -> InfoResult:
    """What a JSON file vnexport wrote is, and its main facts."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise VnexportError(f"not a readable JSON file ({getattr(e, 'strerror', None) or e})",
                            path) from None
    kind = json_kind(path, data)
    text = [f"file        {path}", f"kind        {kind}"] + JSON_SUMMARIES[kind](data)
    return InfoResult(report={"file": str(path), "kind": kind, "content": data}, text=text)


def _verdict(v) -> str:
    if not isinstance(v, dict):
        return "not verified"
    return ("PASS" if v.get("passed") else "FAIL") + (
        f" (max rel err {v['max_rel']:.2e}, top-1 {v['top1_agreement']:.0%})"
        if isinstance(v.get("max_rel"), float) and v.get("top1_agreement") is not None else "")


def _provenance_lines(d: dict) -> list[str]:
    return [f"engine      {d.get('engine')} (from {d.get('source_onnx')})",
            f"builder     {d.get('builder')} {d.get('builder_version')}",
            f"precision   {d.get('precision')}",
            "profile     " + " ".join(f"{k} {d['profile'].get(k)}" for k in ("min", "opt", "max")
                                      if isinstance(d.get("profile"), dict)),
            "verified    " + (_verdict(d["verification"]) if d.get("verification")
                              else f"no: {d.get('verification_skipped')}"),
            f"built       {d.get('built_at')} by vnexport {d.get('tool_version')}"]


def _verify_lines(d: dict) -> list[str]:
    ref = d.get("reference") or {}
    out = [f"verdict     {'PASS' if d.get('passed') else 'FAIL'}",
           f"reference   {ref.get('path')} ({ref.get('variant')})",
           f"inputs      {(d.get('inputs') or {}).get('description')}"]
    for a in d.get("artifacts") or []:
        out.append(f"artifact    {a.get('artifact')} ({a.get('kind')}, {a.get('precision')}): "
                   + _verdict(a))
    return out


def _bench_lines(d: dict) -> list[str]:
    out = [f"artifact    {d.get('path')} ({d.get('kind')}, {d.get('precision')}, "
           f"{d.get('backend')}, {d.get('device')}, {d.get('img_size')}px)"]
    if d.get("interrupted"):
        out.append("interrupted yes: the batches below are those finished before the stop")
    for r in d.get("results") or []:
        out.append(f"batch {r.get('batch'):<5} median {r.get('median_ms', 0):.3f} ms, "
                   f"{r.get('images_per_s', 0):.1f} img/s ({r.get('runs')} runs)")
    return out


def _written_lines(d: dict) -> list[str]:
    prov = d.get("provenance") if isinstance(d.get("provenance"), dict) else {}
    verified = d.get("verification") or prov.get("verification")
    return [f"input       {d.get('input') or d.get('source')}",
            f"output      {d.get('output')} ({'written' if d.get('written') else 'NOT written'})",
            "verified    " + (_verdict(verified) if verified or not prov
                              else f"no: {prov.get('verification_skipped')}")]


def _triton_report_lines(d: dict) -> list[str]:
    return [f"repository  {d.get('repository')}"] + [
        f"model       {m.get('name')}: {m.get('platform') or 'backend ' + str(m.get('backend'))}"
        f", max_batch_size {m.get('max_batch_size')} ({m.get('source')})"
        for m in d.get("models") or []]


def _cache_lines(d: dict) -> list[str]:
    entries = d.get("entries") or {}
    return [f"format      {d.get('format')} version {d.get('version')}",
            f"entries     {len(entries)} (activation ranges per model + calibration inputs + "
            "method; quantize --cache reuses them)"]


JSON_SUMMARIES = {
    "engine provenance": _provenance_lines, "verify report": _verify_lines,
    "bench report": _bench_lines, "triton report": _triton_report_lines,
    "trt report": _written_lines, "quantize report": _written_lines,
    "onnx report": _written_lines, "fuse report": _written_lines,
    "calibration cache": _cache_lines,
}


def triton_info(path: Path) -> InfoResult:
    """A Triton model folder (config.pbtxt inside), a model repository (folders that have
    one) or a config.pbtxt: each config parsed as Triton's ModelConfig and summarized."""
    if path.is_file():
        folders, kind = [path.parent], "triton model config"
    elif (path / "config.pbtxt").is_file():
        folders, kind = [path], "triton model folder"
    else:
        folders = sorted(p for p in path.iterdir() if (p / "config.pbtxt").is_file())
        kind = "triton model repository"
        if not folders:
            raise VnexportError("a folder, but not a Triton model folder or repository (no "
                                "config.pbtxt in it or in its subfolders)", path)
    models = [_model_summary(f) for f in folders]
    text = [f"file        {path}", f"kind        {kind} ({len(models)} "
            f"model{'s' if len(models) != 1 else ''})"]
    for m in models:
        text += _model_lines(m)
    return InfoResult(report={"file": str(path), "kind": kind, "models": models}, text=text)


def _model_summary(folder: Path) -> dict:
    try:
        cfg = parse_config((folder / "config.pbtxt").read_text(encoding="utf-8"))
    except VnexportError as e:
        raise VnexportError(e.message.replace("the generated config", "config.pbtxt"),
                            folder / "config.pbtxt") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VnexportError(f"unreadable ({e})", folder / "config.pbtxt") from None
    versions = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    db = cfg.dynamic_batching if cfg.HasField("dynamic_batching") else None
    return {
        "folder": str(folder), "name": cfg.name or folder.name,
        "platform": cfg.platform or None, "backend": cfg.backend or None,
        "max_batch_size": cfg.max_batch_size,
        "inputs": [_tensor_dict(t) for t in cfg.input],
        "outputs": [_tensor_dict(t) for t in cfg.output],
        "instance_groups": [{"count": g.count or 1, "kind": type(g).Kind.Name(g.kind)}
                            for g in cfg.instance_group],
        "dynamic_batching": None if db is None else {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds},
        "accelerators": [{"name": a.name, "parameters": dict(a.parameters)} for a in
                         cfg.optimization.execution_accelerators.gpu_execution_accelerator],
        "ensemble_steps": [s.model_name for s in cfg.ensemble_scheduling.step],
        "versions": {v: sorted(f.name for f in (folder / v).iterdir()) for v in versions}}


def _tensor_dict(t) -> dict:
    from tritonclient.grpc import model_config_pb2

    return {"name": t.name, "data_type": model_config_pb2.DataType.Name(t.data_type),
            "dims": [int(d) for d in t.dims]}


def _tensors(ts: list[dict]) -> str:
    return ", ".join(f"{t['name']} {t['data_type']} {t['dims']}" for t in ts)


def _model_lines(m: dict) -> list[str]:
    what = m["platform"] or f"backend {m['backend']}"
    groups = ", ".join(f"{g['count']}x {g['kind']}" for g in m["instance_groups"]) or "default"
    out = [f"model       {m['name']}: {what}, max_batch_size {m['max_batch_size']}, "
           f"instances {groups}",
           f"  input     {_tensors(m['inputs'])}",
           f"  output    {_tensors(m['outputs'])}",
           "  versions  " + ("; ".join(f"{v}: {', '.join(fs) or 'empty'}"
                                       for v, fs in m["versions"].items()) or "none")]
    db = m["dynamic_batching"]
    if db is not None:
        out.append(f"  batching  dynamic, preferred {db['preferred_batch_size'] or '-'}, "
                   f"max queue delay {db['max_queue_delay_microseconds']} us")
    for a in m["accelerators"]:
        params = ", ".join(f"{k}={v}" for k, v in a["parameters"].items())
        out.append(f"  gpu accel {a['name']}: {params}")
    if m["ensemble_steps"]:
        out.append("  steps     " + " -> ".join(m["ensemble_steps"]))
    return out
