"""``vnexport info``: what a checkpoint is (form, variant, config, weights, epoch, cost), what
an ONNX file is (input, precision, opset, op inventory, vnexport metadata), or what a TensorRT
engine is (its provenance, TensorRT-RTX's header check, and, with its runtime
and a CUDA GPU, its own tensors and profile)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import trt
from ..errors import MissingRuntimeError, VnexportError
from ..fileio import check_regular
from ..quiet import third_party_output
from ..model import multiply_adds, parameter_count
from ..onnx_file import detect_precision, get_metadata, load_onnx, op_inventory, read_onnx_input
from ..runners import ENGINE_SUFFIXES, ONNX_SUFFIXES
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
    """What a checkpoint or an ONNX file is (engines: ``run_engine``)."""
    if is_engine(opts.ckpt):  # the CLI sends engines to run_engine
        raise VnexportError("an engine: see run_engine", opts.ckpt)
    onnx = opts.ckpt.suffix.lower() in ONNX_SUFFIXES  # a checkpoint's format: from its content
    return (onnx_info if onnx else checkpoint_info)(opts, log)


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
    check_regular(path)
    missing = None
    with third_party_output(library="TensorRT"):  # its log: VNEXPORT_DEBUG=1
        facts = trt.engine_facts(path)
        try:
            facts["engine"] = trt.engine_io(path)
        except MissingRuntimeError as e:
            facts["engine"], missing = None, e
            facts["not_loaded"] = str(e)
    return EngineInfoResult(report=facts, text=_engine_text(facts), missing=missing)


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
    hc = f["header_check"]
    out.append("header      " + (f"TensorRT-RTX {hc['tensorrt_rtx']}: {hc['validity']} "
                                 f"{hc['diagnostics'] or ''}- {hc['meaning']}"
                                 if hc["checked"] else f"not checked: {hc['why']}"))
    for t in (f.get("engine") or {}).get("tensors", []):
        out.append(f"tensor      {t['mode']} {t['name']} {t['dtype']} {t['shape']}"
                   + (f" profile {t['profile']}" if "profile" in t else ""))
    return out
