"""The ``vnexport`` command line: a thin layer over the pipeline modules.

Exit codes: 0 success; 1 an equivalence check failed; 2 bad input or usage;
3 a required runtime is missing (TensorRT, CUDA).
"""

from __future__ import annotations

import functools
import json
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from . import __version__
from .errors import EXIT_CHECK_FAILED, VnexportError

app = typer.Typer(
    name="vnexport",
    help="Deploy VanillaNet classifiers: fuse training checkpoints, export ONNX, build TensorRT "
    "engines, and prove at every step that the numbers did not change.\n\n"
    "Exit codes: 0 success, 1 an equivalence check failed, 2 bad input or usage, "
    "3 a required runtime (TensorRT, CUDA) is missing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def echo(msg: str = "") -> None:
    typer.echo(msg)


def note(msg: str) -> None:
    typer.echo(msg, err=True)


def handle_errors(fn: Callable) -> Callable:
    """Turn a VnexportError into one line on stderr and its exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VnexportError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


class Key(str, Enum):
    auto = "auto"
    model = "model"
    model_ema = "model_ema"
    state_dict = "state_dict"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def parse_ints(text: Optional[str], option: str) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise VnexportError(f"{option} takes comma-separated integers, got {text!r}") from None


# ------------------------------------------------------------------------------------------
# options shared by every command that reads a checkpoint

KeyOpt = typer.Option(Key.auto, "--key", help="Which weights to take from a training-script "
                      "checkpoint. auto prefers model_ema (what the authors evaluate), then "
                      "model, then state_dict, and says which it used.")
ModelOpt = typer.Option(None, "--model", help="Variant name (e.g. vanillanet_13). Needed only when "
                        "the weights fit several variants (strides are not stored in weights).")
StridesOpt = typer.Option(None, "--strides", help="Stage strides of a custom VanillaNet, comma-"
                          "separated (e.g. 2,2,2). Overrides --model.")
AdaPoolOpt = typer.Option(None, "--ada-pool", help="Adaptive max-pool sizes per stage of a custom "
                          "ada_pool VanillaNet, comma-separated, 0 for none (with --strides).")
ActLearnOpt = typer.Option(None, "--act-learn", min=0.0, max=1.0, help="The leaky_relu slope "
                           "between paired convs. Default: from the file's epoch and "
                           "args.decay_epochs, or 1 for a file without a training schedule.")
TrustOpt = typer.Option(False, "--trust-remote-pickle", help="DANGEROUS: load with "
                        "weights_only=False, which runs any code the file carries. Only for files "
                        "whose origin you trust.")
ImagesOpt = typer.Option(None, "--images", help="Verify on the JPEG/PNG images in this folder "
                         "(resize, centre crop, ImageNet mean/std) instead of random inputs.")
NOpt = typer.Option(8, "--n", min=1, help="How many verification inputs.")
ImgSizeOpt = typer.Option(224, "--img-size", min=8, help="Input height and width.")
SeedOpt = typer.Option(0, "--seed", help="Seed of the random verification inputs.")
MaxRelOpt = typer.Option(1e-4, "--max-rel-err", min=0.0, help="Tolerance: max abs error over "
                         "the reference output's max magnitude.")
MinTop1Opt = typer.Option(1.0, "--min-top1", min=0.0, max=1.0, help="Tolerance: fraction of "
                          "inputs whose top-1 class must agree with the training form.")
ForceOpt = typer.Option(False, "--force", "-f", help="Replace an existing output file.")
JsonOpt = typer.Option(None, "--json", help="Also write the report as JSON to this file "
                       "('-' for standard output).")

# tolerances that default by the artifact's precision (onnx, trt, verify)
TolMaxRelOpt = typer.Option(
    None, "--max-rel-err", min=0.0, help="Limit on max abs error over the reference "
    "output's max magnitude. Default by precision: fp32 1e-4, fp16 and int8 not judged (still "
    "reported).")
TolMinCosineOpt = typer.Option(
    None, "--min-cosine", min=-1.0, max=1.0, help="Limit on the lowest per-input cosine "
    "similarity. Default: fp16 0.9999; fp32 and int8 not judged (still reported).")
TolMinTop1Opt = typer.Option(
    None, "--min-top1", "--min-agreement", min=0.0, max=1.0, help="Limit on the fraction of "
    "inputs whose top-1 class agrees with the reference. Default: fp32 1.0, fp16 0.99, "
    "int8 0.98.")

# reduced precision (onnx --precision, quantize)

class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


CalibImagesOpt = typer.Option(None, "--calib-images", help="Calibrate on the JPEG/PNG images in "
                              "this folder (resize, centre crop, ImageNet mean/std). Without it "
                              "int8 calibrates on seeded random inputs: fit for speed tests only.")
CalibNOpt = typer.Option(64, "--calib-n", min=1, help="How many calibration images to use (the "
                         "first N in sorted order), or random inputs without --calib-images.")
MethodOpt = typer.Option(CalibMethod.minmax, "--method", help="INT8 calibration method: minmax "
                         "(max |value| seen), entropy (KL divergence) or percentile (99.999th).")
Fp16IoOpt = typer.Option(False, "--fp16-io", help="FP16: make the input and output float16 "
                         "too (default: float32, with casts inside the graph).")
CacheOpt = typer.Option(None, "--cache", help="INT8: JSON calibration cache. Ranges are stored "
                        "under sha256(fp32 model, calibration inputs, method); a rebuild with the "
                        "same ones skips calibration.")
Int8StemOpt = typer.Option(False, "--int8-stem", help="INT8: quantize the stem conv too "
                           "(default: it stays float; its fan-in of 48 makes it the layer most "
                           "hurt by int8, for ~1.5% of the multiply-adds).")
MinAgreementOpt = typer.Option(0.98, "--min-agreement", min=0.0, max=1.0, help="INT8: fraction "
                               "of inputs whose top-1 class must agree with the reference.")



def load(ckpt: Path, key: Key, model: Optional[str], strides: Optional[str],
         ada_pool: Optional[str], act_learn: Optional[float], trust: bool):
    from .checkpoint import load_checkpoint

    if trust:
        note("warning: --trust-remote-pickle: loading with weights_only=False runs code from "
             "the file")
    loaded = load_checkpoint(ckpt, key=key.value, model=model,
                             strides=parse_ints(strides, "--strides"),
                             ada_pool=parse_ints(ada_pool, "--ada-pool"),
                             act_learn=act_learn, trust=trust)
    for n in loaded.notes:
        note(f"{ckpt.name}: {n}")
    return loaded


def write_json(target: Optional[str], data: Any) -> None:
    if target is None:
        return
    text = json.dumps(data, indent=2, default=str)
    if target == "-":
        echo(text)
        return
    from .fileio import atomic_output

    path = Path(target)
    if not path.parent.is_dir():
        raise VnexportError("cannot write the JSON report: its folder does not exist", path)
    with atomic_output(path) as tmp:
        tmp.write_text(text + "\n")


def check_img_size(cfg, img_size: int) -> None:
    from .model import check_img_size as why

    reason = why(cfg, img_size)
    if reason:
        raise VnexportError(f"--img-size: {reason}")


# ------------------------------------------------------------------------------------------
# info


@app.command()
@handle_errors
def info(
    ckpt: Path = typer.Argument(..., help="Training or deploy checkpoint (.pth, .safetensors)."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    img_size: int = ImgSizeOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    trust: bool = TrustOpt,
) -> None:
    """What is this file? Form, variant, config, weights used, epoch, act_learn, size, cost."""
    from .model import multiply_adds, parameter_count

    c = load(ckpt, key, model, strides, ada_pool, act_learn, trust)
    check_img_size(c.cfg, img_size)
    data = {
        "file": str(ckpt),
        "sha256": c.sha256,
        "form": c.form,
        "variant": c.variant,
        "config": c.cfg.to_dict(),
        "key": c.key,
        "epoch": c.epoch,
        "act_learn": c.act_learn,
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
    if as_json:
        echo(json.dumps(data, indent=2, default=str))
        return
    cfg = c.cfg
    echo(f"file        {ckpt}")
    echo(f"form        {c.form}")
    echo(f"variant     {c.variant}")
    echo(f"config      dims {list(cfg.dims)}, strides {list(cfg.strides)}"
         + (f", ada_pool {list(cfg.ada_pool)}" if cfg.ada_pool else "")
         + f", act_num {cfg.act_num}, classes {cfg.num_classes}, in_chans {cfg.in_chans}")
    echo(f"weights     {c.key or 'bare state dict'}")
    echo(f"epoch       {c.epoch if c.epoch is not None else '-'}")
    echo(f"act_learn   {c.act_learn:.4g} ({c.act_learn_source})"
         + ("" if c.act_learn >= 1 else "  -> the paired convs do NOT merge exactly yet"))
    echo(f"params      {data['params_deploy'] / 1e6:.1f} M deploy"
         + (f", {data['params_training'] / 1e6:.1f} M training" if c.form == "training" else ""))
    echo(f"mult-adds   {data['macs_deploy'] / 1e9:.2f} G deploy at {img_size}x{img_size}")
    echo(f"sha256      {c.sha256}")


# ------------------------------------------------------------------------------------------
# fuse


def default_output(ckpt: Path, suffix: str) -> Path:
    stem = ckpt.name.split(".")[0]
    return ckpt.with_name(f"{stem}{suffix}")


def print_comparison(label: str, comp) -> None:
    verdict = "PASS" if comp.passed else "FAIL: " + "; ".join(comp.failures)
    echo(f"{label}: {comp.summary()}")
    echo(f"{label}: {verdict} (tolerance: {comp.tolerance.describe()})")


@app.command()
@handle_errors
def fuse(
    ckpt: Path = typer.Argument(..., help="Training checkpoint (.pth, .safetensors)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Deploy checkpoint to "
                                          "write. Default: <input>_deploy.pth beside the input."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    allow_inexact: bool = typer.Option(False, "--allow-inexact", help="Fuse even when act_learn "
                                       "< 1 (the merge is then approximate; verification still "
                                       "judges it)."),
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: int = ImgSizeOpt,
    seed: int = SeedOpt,
    max_rel_err: float = MaxRelOpt,
    min_top1: float = MinTop1Opt,
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the verification."),
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
    trust: bool = TrustOpt,
) -> None:
    """Fold every BatchNorm, merge each pair of 1x1 convs, write the deploy checkpoint, verify it.

    The output is {"model": deploy_state_dict, "vnexport": provenance}, loadable with
    strict=True by the authors' deploy-form VanillaNet. A failed verification exits 1 and
    writes nothing.
    """
    from .fileio import check_output
    from .fuse import fuse as run_fuse
    from .fuse import provenance, save_deploy
    from .verify import Tolerance, make_inputs

    output = check_output(output or default_output(ckpt, "_deploy.pth"), force)
    if output.resolve() == ckpt.resolve():
        raise VnexportError("output would overwrite the input checkpoint", output)
    t0 = time.perf_counter()
    c = load(ckpt, key, model, strides, ada_pool, act_learn, trust)
    check_img_size(c.cfg, img_size)
    echo(f"{ckpt.name}: {c.form} form, {c.variant}, act_learn {c.act_learn:.4g}")
    x = None if no_verify or c.form == "deploy" else make_inputs(c.cfg, n, img_size, seed, images)
    tol = Tolerance(max_rel=max_rel_err, min_top1=min_top1)
    res = run_fuse(c, x, tol, allow_inexact=allow_inexact)
    if res.passthrough:
        echo(f"{ckpt.name}: already in deploy form; passed through unchanged (with vnexport "
             "metadata). To verify it, run vnexport verify with the training checkpoint.")
    report = {"input": str(ckpt), "output": str(output), "form": c.form, "variant": c.variant,
              "act_learn": c.act_learn, "verification": None}
    if res.comparison is not None:
        print_comparison("verify deploy vs training", res.comparison)
        report["verification"] = res.comparison.to_dict()
        if not res.comparison.passed:
            report["written"] = False
            write_json(json_out, report)
            echo(f"not written: {output}")
            raise typer.Exit(EXIT_CHECK_FAILED)
    elif not res.passthrough:
        echo("verification skipped (--no-verify)")
    meta = provenance(c, res.comparison, verification_inputs=None if x is None else {
        "n": len(x), "img_size": img_size, "source": str(images) if images else f"seed {seed}"})
    save_deploy(output, res.model, meta)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(json_out, report)
    echo(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB) in {report['seconds']:.1f} s")


# ------------------------------------------------------------------------------------------
# ---- onnx


def print_inventory(inventory: dict[str, int]) -> None:
    echo("graph: " + ", ".join(f"{op} {k}" for op, k in inventory.items())
         + f" ({sum(inventory.values())} nodes)")


def reduce_precision(c, proto, precision: str, x, calib_images: Optional[Path], calib_n: int,
                     method: str, fp16_io: bool, cache: Optional[Path], int8_stem: bool,
                     img_size: int, seed: int):
    """fp16 or int8 from the fp32 graph. Calibration: --calib-images; else fp16 measures its
    ranges on the verification inputs and int8 on seeded random inputs (with a warning)."""
    from .precision import apply_precision
    from .verify import image_inputs, random_inputs

    if calib_images is not None:
        calib = image_inputs(calib_images, img_size, calib_n).numpy()
    elif precision == "fp16" and x is not None:
        calib = x.numpy()
    else:
        calib = random_inputs(c.cfg, calib_n, img_size, seed + 1).numpy()
    out, rep = apply_precision(proto, precision, calib_x=calib, method=method, fp16_io=fp16_io,
                               cache_path=cache, calib_is_random=calib_images is None,
                               quantize_stem=int8_stem)
    for line in rep.lines():
        (note if line.startswith("warning") else echo)(line)
    return out, rep


@app.command("onnx")
@handle_errors
def onnx_command(
    ckpt: Path = typer.Argument(..., help="Training checkpoint (fused on the way) or deploy "
                                "checkpoint (.pth, .safetensors)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="ONNX file to write (one "
                                          "self-contained file). Default: <input>.onnx beside "
                                          "the input."),
    opset: int = typer.Option(17, "--opset", min=13, max=21, help="ONNX opset, 13 to 21."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch axis "
                                       "dynamic ('batch'); verified at batch 1 and at larger "
                                       "batches. Default: a static batch of --batch."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="With "
                                            "--dynamic-batch: the largest batch you will run "
                                            "(stored in the metadata for TensorRT profiles; "
                                            "verification runs batches of up to this size)."),
    batch: int = typer.Option(1, "--batch", min=1, help="The static batch size (with "
                              "--dynamic-batch: the example batch used while exporting)."),
    img_size: int = typer.Option(224, "--img-size", min=8, help="Input height and width of the "
                                 "exported graph and of the verification inputs (a multiple "
                                 "of the variant's total stride, 32 for the published stride "
                                 "variants; at least 32 for the ada_pool variant)."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Run onnxslim on the "
                                  "cleaned graph (verification always runs on the final "
                                  "graph)."),
    precision: Precision = typer.Option(Precision.fp32, "--precision", help="fp32; fp16 (float16 "
                                        "weights and compute, nodes whose values do not fit "
                                        "kept float32, float32 input/output unless --fp16-io); "
                                        "int8 (explicit Q/DQ: symmetric per-channel weights, "
                                        "symmetric activations, calibrated)."),
    calib_images: Optional[Path] = CalibImagesOpt,
    calib_n: int = CalibNOpt,
    method: CalibMethod = MethodOpt,
    fp16_io: bool = Fp16IoOpt,
    cache: Optional[Path] = CacheOpt,
    int8_stem: bool = Int8StemOpt,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    allow_inexact: bool = typer.Option(False, "--allow-inexact", help="Fuse a training "
                                       "checkpoint even when act_learn < 1 (approximate merge; "
                                       "verification still judges it)."),
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op "
                                          "threads for verification (default: its own)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the ONNX Runtime "
                                   "verification (the file then carries no figures)."),
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
    trust: bool = TrustOpt,
) -> None:
    """Export the deploy-form network as one clean ONNX file, verified on ONNX Runtime.

    A training checkpoint is fused on the way (same rules and refusals as fuse). The graph holds
    only Conv, Relu, MaxPool, GlobalAveragePool and one Flatten (the ada_pool variant's adaptive
    max pools are written as exact plain max pools). The file is verified on ONNX Runtime (CPU,
    and CUDA where present) against the training-form network, then written with its metadata
    (variant, config, input size, mean/std, source sha256, opset, verification figures). A
    failed verification exits 1 and writes nothing.
    """
    from .fileio import check_output
    from .fuse import deploy_model
    from .onnx_export import (ada_pool_plans, check_options, expected_conv_count,
                              export_metadata, onnx_model_from_deploy, op_inventory,
                              reference_label, save_onnx, serialize, set_metadata,
                              verification_metadata, verify_onnx)
    from .verify import make_inputs, run_torch, tolerance_for

    output = check_output(output or default_output(ckpt, ".onnx"), force)
    if output.resolve() == ckpt.resolve():
        raise VnexportError("output would overwrite the input checkpoint", output)
    t0 = time.perf_counter()
    c = load(ckpt, key, model, strides, ada_pool, act_learn, trust)
    check_options(c.cfg, opset=opset, img_size=img_size, batch=batch,
                  dynamic_batch=dynamic_batch, max_batch=max_batch)
    x = None if no_verify else make_inputs(c.cfg, n, img_size, seed, images)
    echo(f"{ckpt.name}: {c.form} form, {c.variant}, act_learn {c.act_learn:.4g}")
    deploy = deploy_model(c, allow_inexact)
    proto = onnx_model_from_deploy(deploy, opset=opset, img_size=img_size, batch=batch,
                                   dynamic_batch=dynamic_batch, simplify=simplify)
    del deploy
    export_s = time.perf_counter() - t0
    inventory = op_inventory(proto)
    shape = ["batch" if dynamic_batch else batch, c.cfg.in_chans, img_size, img_size]
    echo(f"exported opset {opset}, input 'input' {shape} float32 -> 'logits' "
         f"[{shape[0]}, {c.cfg.num_classes}], in {export_s:.1f} s")
    print_inventory(inventory)
    for line in ada_pool_plans(c.cfg, img_size):
        echo(f"adaptive max pool {line}")
    report = {"input": str(ckpt), "output": str(output), "form": c.form, "variant": c.variant,
              "opset": opset, "img_size": img_size, "dynamic_batch": dynamic_batch,
              "batch": None if dynamic_batch else batch, "max_batch": max_batch,
              "simplified": simplify, "op_inventory": inventory,
              "conv_count_expected": expected_conv_count(c.cfg), "verification": None}
    set_metadata(proto, export_metadata(c, opset=opset, img_size=img_size, batch=batch,
                                        dynamic_batch=dynamic_batch, max_batch=max_batch,
                                        simplify=simplify))
    if precision is not Precision.fp32:
        fp32_proto = proto
        proto, rep = reduce_precision(c, proto, precision.value, x, calib_images, calib_n,
                                      method.value, fp16_io, cache, int8_stem, img_size, seed)
        report["precision"] = rep.to_dict()
    if x is not None:
        tol = tolerance_for(precision.value, max_rel=max_rel_err, min_cosine=min_cosine,
                            min_top1=min_top1)
        if precision is Precision.fp32:
            v = verify_onnx(c, serialize(proto), x, tol, max_batch=max_batch, threads=threads)
            reference, comps = v.reference, v.comparisons
            report["verification"] = v.to_dict()
        else:
            from .precision import verify_precision

            reference = reference_label(c)
            comps = verify_precision(fp32_proto, proto, rep, x.numpy(),
                                     run_torch(c.build_model(), x), tol)
            report["verification"] = {k: comp.to_dict() for k, comp in comps.items()}
        echo(f"reference: the {reference}")
        print_precision_comparisons(
            {f"onnx ({k.replace('ExecutionProvider', '')})" if k.endswith("Provider") else k:
             comp for k, comp in comps.items()})
        if not all(comp.passed for comp in comps.values()):
            report["written"] = False
            write_json(json_out, report)
            echo(f"not written: {output}")
            raise typer.Exit(EXIT_CHECK_FAILED)
        inputs = {"n": len(x), "img_size": img_size,
                  "source": str(images) if images else f"seed {seed}"}
        set_metadata(proto, verification_metadata(comps, reference, inputs))
    else:
        echo("verification skipped (--no-verify)")
    save_onnx(proto, output)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(json_out, report)
    echo(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, self-contained) in "
         f"{report['seconds']:.1f} s")


# ------------------------------------------------------------------------------------------
# quantize (fp16 / int8 ONNX from an fp32 ONNX file; `vnexport onnx --precision` uses the same)


def print_precision_comparisons(comps: dict) -> None:
    if "fp16 emulated" in comps:
        echo("ONNX Runtime's CPU provider runs float16 Conv in float32 (weights rounded only); "
             "also checking float16 activations, emulated (every converted node's output "
             "rounded to float16)")
    for label, comp in comps.items():
        print_comparison(f"verify {label}", comp)


@app.command()
@handle_errors
def quantize(
    onnx_file: Path = typer.Argument(..., help="The fp32 ONNX file (one input [N,3,H,W], one "
                                     "output), e.g. from vnexport onnx."),
    precision: Precision = typer.Option(..., "--precision", help="fp16: float16 weights and "
                                        "compute, nodes that do not fit kept float32. int8: "
                                        "explicit QuantizeLinear/DequantizeLinear (Q/DQ)."),
    output: Path = typer.Option(..., "--output", "-o", help="ONNX file to write."),
    calib_images: Optional[Path] = CalibImagesOpt,
    calib_n: int = CalibNOpt,
    method: CalibMethod = MethodOpt,
    fp16_io: bool = Fp16IoOpt,
    cache: Optional[Path] = CacheOpt,
    int8_stem: bool = Int8StemOpt,
    reference: Optional[Path] = typer.Option(None, "--reference", help="Verify against the "
                                             "fp32 training form of this checkpoint (the "
                                             "loading options below apply to it). Without it, "
                                             "against the fp32 ONNX file on ONNX Runtime."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    trust: bool = TrustOpt,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    seed: int = SeedOpt,
    img_size: Optional[int] = typer.Option(None, "--img-size", min=8, help="Input size, needed "
                                           "only when the ONNX input's height/width are "
                                           "symbolic."),
    min_agreement: float = MinAgreementOpt,
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
) -> None:
    """Write an FP16 or INT8 (Q/DQ) ONNX file from an fp32 one and verify it on ONNX Runtime.

    Defaults: fp16 must keep cosine >= 0.9999 and top-1 agreement >= 99%; int8 top-1
    agreement >= --min-agreement. A failed verification exits 1 and writes nothing.
    """
    from types import SimpleNamespace

    import onnx

    from .fileio import atomic_output, check_output
    from .precision import (apply_precision, input_geometry, load_fp32_onnx, run, session,
                            set_metadata, verify_precision)
    from .verify import image_inputs, random_inputs, run_torch, tolerance_for

    if precision is Precision.fp32:
        raise VnexportError("--precision: quantize writes fp16 or int8 (the input is fp32)")

    output = check_output(output, force)
    if output.resolve() == onnx_file.resolve():
        raise VnexportError("output would overwrite the input file", output)
    if cache is not None and cache.is_dir():
        raise VnexportError("--cache: is a directory, expected a JSON file", cache)
    t0 = time.perf_counter()
    fp32 = load_fp32_onnx(onnx_file)
    chans, size = input_geometry(fp32)
    if size is None:
        if img_size is None:
            raise VnexportError("the input's height/width are symbolic: pass --img-size",
                                onnx_file)
        size = img_size
    elif img_size is not None and img_size != size:
        raise VnexportError(f"--img-size {img_size} differs from the file's input size {size}",
                            onnx_file)
    if chans not in (None, 3) and (images or calib_images):
        raise VnexportError(f"images need a 3-channel model, this one takes {chans}", onnx_file)
    ckpt = None
    if reference is not None:
        ckpt = load(reference, key, model, strides, ada_pool, act_learn, trust)
        check_img_size(ckpt.cfg, size)
    shape = SimpleNamespace(in_chans=chans or (ckpt.cfg.in_chans if ckpt else 3))
    x = image_inputs(images, size, n) if images else random_inputs(shape, n, size, seed)
    source = str(images) if images else f"{n} seeded random inputs (seed {seed})"
    calib_random = calib_images is None
    if calib_images is not None:
        calib = image_inputs(calib_images, size, calib_n).numpy()
    elif precision is Precision.fp16:
        calib = x.numpy()  # fp16 ranges: measured on the verification inputs
    else:
        calib = random_inputs(shape, calib_n, size, seed + 1).numpy()
    out_model, rep = apply_precision(fp32, precision.value, calib_x=calib, method=method.value,
                                     fp16_io=fp16_io, cache_path=cache,
                                     calib_is_random=calib_random, quantize_stem=int8_stem)
    for line in rep.lines():
        (note if line.startswith("warning") else echo)(line)
    if ckpt is not None:
        ref = run_torch(ckpt.build_model(), x)
        against = f"the fp32 training form of {reference.name}"
    else:
        ref = run(session(fp32), x.numpy())
        against = f"the fp32 ONNX file {onnx_file.name} on ONNX Runtime (no --reference)"
    echo(f"verifying {precision.value} on ONNX Runtime against {against}, on {source}")
    tol = tolerance_for(precision.value, min_top1=min_agreement)
    comps = verify_precision(fp32, out_model, rep, x.numpy(), ref, tol)
    print_precision_comparisons(comps)
    comp = comps[precision.value]
    report = {"input": str(onnx_file), "output": str(output), "precision": precision.value,
              "reference": str(reference) if reference else str(onnx_file),
              "verification_inputs": source, "verification": comp.to_dict(),
              "conversion": rep.to_dict()}
    if "fp16 emulated" in comps:
        report["verification_fp16_emulated"] = comps["fp16 emulated"].to_dict()
    if not all(c.passed for c in comps.values()):
        report["written"] = False
        write_json(json_out, report)
        echo(f"not written: {output}")
        raise typer.Exit(EXIT_CHECK_FAILED)
    set_metadata(out_model, {"vnexport.verification": json.dumps(comp.to_dict())})
    with atomic_output(output) as tmp:
        onnx.save(out_model, tmp)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(json_out, report)
    mib = output.stat().st_size / 2**20
    echo(f"wrote {output} ({mib:.1f} MiB, fp32 {onnx_file.stat().st_size / 2**20:.1f} MiB) in "
         f"{report['seconds']:.1f} s")


# ------------------------------------------------------------------------------------------
# trt


class HardwareCompat(str, Enum):
    none = "none"
    ampere_plus = "ampere+"
    same_cc = "same-cc"


def _is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


@app.command()
@handle_errors
def trt(
    source: Path = typer.Argument(..., help="An ONNX file (fp32, fp16 graph, or Q/DQ int8), or a "
                                  "training/deploy checkpoint (the ONNX stage runs on the way)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Engine (plan) to write. "
                                          "Default: <source>.engine beside the source "
                                          "(<checkpoint>_<precision>.engine for a checkpoint). "
                                          "Provenance goes to <engine>.json beside it."),
    precision: Optional[Precision] = typer.Option(None, "--precision", help="With a checkpoint: "
                                                  "the precision of the ONNX file to export "
                                                  "(default fp32). With an ONNX file the "
                                                  "precision is read from the file; if given it "
                                                  "must match."),
    min_batch: Optional[int] = typer.Option(None, "--min-batch", help="Smallest batch of the "
                                            "optimization profile (default 1, or the file's "
                                            "static batch)."),
    opt_batch: Optional[int] = typer.Option(None, "--opt-batch", help="Batch TensorRT tunes for "
                                            "(default: --min-batch)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="Largest batch of the "
                                            "profile (default: --opt-batch). An ONNX file with a "
                                            "static batch that does not fit is refused."),
    workspace: Optional[float] = typer.Option(None, "--workspace", help="Builder workspace pool "
                                              "limit in GiB (default: TensorRT's, the GPU's "
                                              "memory)."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Tactic timing "
                                                "cache: loaded if it exists, updated and saved "
                                                "after the build (speeds up later builds)."),
    hardware_compat: HardwareCompat = typer.Option(HardwareCompat.none, "--hardware-compat",
                                                   help="none: this GPU's architecture only; "
                                                   "ampere+: one engine for A100 and newer "
                                                   "(built on Ampere or newer; may be slower); "
                                                   "same-cc: GPUs of this compute capability."),
    builder_opt_level: Optional[int] = typer.Option(None, "--builder-opt-level", help="Builder "
                                                    "optimization level 0..5 (TensorRT default "
                                                    "3; higher builds longer, may run faster)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="With an ONNX source: "
                                             "the training checkpoint to verify against. "
                                             "Without it the engine is verified against ONNX "
                                             "Runtime on the same ONNX file."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    allow_inexact: bool = typer.Option(False, "--allow-inexact", help="With a checkpoint whose "
                                       "act_learn < 1: export anyway (verification judges it)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset when exporting a checkpoint."),
    keep_onnx: Optional[Path] = typer.Option(None, "--keep-onnx", help="With a checkpoint: also "
                                             "keep the exported ONNX file here (default: a "
                                             "temporary file, removed)."),
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: Optional[int] = typer.Option(None, "--img-size", min=8, help="Input size: for a "
                                           "checkpoint (default 224), or for an ONNX file with "
                                           "dynamic height/width (must match a static one)."),
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the verification."),
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Polygraphy's and "
                                 "TensorRT's build log."),
    trust: bool = TrustOpt,
) -> None:
    """Build a strongly typed TensorRT engine (TensorRT 10.12+ / 11.x), verify it, write it.

    The precision comes from the ONNX file (an FP16 graph, or Q/DQ INT8), not from builder
    flags. Verified against the fp32 training form when a checkpoint is at hand (the source, or
    --reference), else against ONNX Runtime on the same file. Tolerances by precision: fp32 max
    rel err 1e-4 and 100% top-1 (TF32 off); fp16 cosine >= 0.9999 and top-1 >= 99%; int8 top-1
    >= 98%. A failed verification exits 1 and writes nothing.

    Order of checks: options and input files first (exit 2, also without TensorRT), then the
    runtime (TensorRT >= 10.12, Polygraphy, a CUDA GPU: exit 3 with one line), then the build.
    """
    from .fileio import check_output
    from .trt import (BuildOptions, VerifySpec, build_from_source, detect_precision,
                      provenance_path, read_onnx_input, require_runtime, resolve_profile)

    t0 = time.perf_counter()
    options = BuildOptions(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch,
                           workspace_gib=workspace, timing_cache=timing_cache,
                           hardware_compat=hardware_compat.value,
                           builder_opt_level=builder_opt_level, verbose=verbose).validate()
    if not source.is_file():
        raise VnexportError("no such file", source)
    from_onnx = _is_onnx(source)
    if from_onnx and (keep_onnx or allow_inexact):
        raise VnexportError("--keep-onnx and --allow-inexact apply to a checkpoint source only")
    if not from_onnx and reference is not None:
        raise VnexportError("--reference applies to an ONNX source; a checkpoint source is "
                            "itself the reference")
    # --- input checks that need no runtime (exit 2)
    ckpt = None
    if from_onnx:
        prec = detect_precision(source)
        if precision is not None and precision.value != prec:
            raise VnexportError(f"--precision {precision.value} given, but the file is {prec}; "
                                "the precision comes from the ONNX file", source)
        resolve_profile(read_onnx_input(source), options, img_size, source)
        if reference is not None:
            ckpt = load(reference, key, model, strides, ada_pool, act_learn, trust)
        default_out = source.with_suffix(".engine")
    else:
        prec = (precision or Precision.fp32).value
        ckpt = load(source, key, model, strides, ada_pool, act_learn, trust)
        check_img_size(ckpt.cfg, img_size or 224)
        if not allow_inexact:
            from .fuse import check_exact

            check_exact(ckpt)
        default_out = default_output(source, f"_{prec}.engine")
        if keep_onnx is not None:
            keep_onnx = check_output(keep_onnx, force)
    output = check_output(output or default_out, force)
    check_output(provenance_path(output), force)
    if output.resolve() == source.resolve():
        raise VnexportError("output would overwrite the source", output)
    # --- the runtime (exit 3)
    runtime = require_runtime(options.hardware_compat)
    echo(f"TensorRT {runtime['tensorrt']} on {runtime['gpu']['name']} "
         f"(compute capability {runtime['gpu']['compute_capability']})")
    verify_spec = None if no_verify else VerifySpec(n, seed, images, max_rel_err, min_cosine,
                                                    min_top1)
    res, ref_label = build_from_source(source, output, prec, options, ckpt=ckpt,
                                       from_onnx=from_onnx, runtime=runtime, verify=verify_spec,
                                       img_size=img_size, opset=opset, keep_onnx=keep_onnx,
                                       allow_inexact=allow_inexact, echo=echo, note=note)
    prov = res.provenance
    echo(f"built in {prov['build_seconds']:.1f} s; profile min {prov['profile']['min']} opt "
         f"{prov['profile']['opt']} max {prov['profile']['max']}")
    report = {"source": str(source), "output": str(output), "precision": prec,
              "written": res.written, "provenance": prov}
    if res.comparison is not None:
        print_comparison(f"verify engine vs {ref_label}", res.comparison)
    else:
        echo("verification skipped (--no-verify)")
    if not res.written:
        write_json(json_out, report)
        echo(f"not written: {output}")
        raise typer.Exit(EXIT_CHECK_FAILED)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(json_out, report)
    echo(f"wrote {output} ({res.engine_bytes / 2**20:.1f} MiB) and {provenance_path(output).name}"
         f" in {report['seconds']:.1f} s")


# ------------------------------------------------------------------------------------------
# ---- verify and bench


def load_runners(paths: list[Path], load_artifact, threads: Optional[int] = None,
                 device: str = "auto") -> list:
    """Every artifact loaded up front, so that bad input (2) or a missing runtime (3) stops the
    command before anything is run."""
    from .runners import runner_from_path

    return [runner_from_path(p, load=load_artifact, threads=threads, device=device)
            for p in paths]


@app.command()
@handle_errors
def verify(
    reference: Path = typer.Argument(..., help="The training checkpoint: the independent "
                                     "reference every artifact is compared with."),
    artifacts: list[Path] = typer.Argument(..., help="Deploy checkpoints (.pth, .safetensors), "
                                           "ONNX files (.onnx) and TensorRT engines "
                                           "(.engine, .plan) to verify."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: int = ImgSizeOpt,
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    locate_stage: bool = typer.Option(False, "--locate", help="For a failing deploy checkpoint "
                                      "or ONNX file, report the first stage (stem, stages.i, "
                                      "head) whose output departs from the reference."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for "
                                          "PyTorch and ONNX Runtime (default: theirs)."),
    json_out: Optional[str] = JsonOpt,
    trust: bool = TrustOpt,
) -> None:
    """Compare artifacts with the training checkpoint on the same inputs, for CI.

    Reports max abs error, max relative error (to the reference output's scale), cosine
    similarity and top-1 agreement for every artifact, each judged against the tolerance of the
    artifact's precision (read from the file: fp32, fp16 or int8; the flags override the
    limits). Exits 1 if any artifact fails, naming it; 3 if an engine cannot be run here.
    """
    import torch

    from .verify import make_inputs, results_table, verify_runners

    out = note if json_out == "-" else echo
    if threads:
        torch.set_num_threads(threads)
    ref = load(reference, key, model, strides, ada_pool, act_learn, trust)
    if ref.form != "training":
        raise VnexportError("the reference must be a training checkpoint (the independent path "
                            "every artifact is compared with); this is a deploy-form file",
                            reference)
    check_img_size(ref.cfg, img_size)

    def load_artifact(p: Path):
        return load(p, Key.auto, model, strides, ada_pool, None, trust)

    runners = load_runners(artifacts, load_artifact, threads=threads)
    x = make_inputs(ref.cfg, n, img_size, seed, images)
    source = str(images) if images else f"random, seed {seed}"
    out(f"reference {reference.name}: training form, {ref.variant}, act_learn "
        f"{ref.act_learn:.4g}; {len(x)} inputs at {img_size}x{img_size} ({source})")
    results = verify_runners(ref.build_model(), runners, x,
                             {"max_rel": max_rel_err, "min_cosine": min_cosine,
                              "min_top1": min_top1}, locate=locate_stage, threads=threads)
    for line in results_table(results):
        out(line)
    for r in results:
        name = Path(r.path).name
        for text in r.notes:
            out(f"{name}: note: {text}")
        if not r.passed:
            out(f"{name}: FAIL ({r.precision} tolerance: {r.comparison.tolerance.describe()}): "
                + "; ".join(r.comparison.failures))
        if r.location is not None:
            out(f"{name}: locate: {r.location.summary()}")
    failed = [Path(r.path).name for r in results if not r.passed]
    write_json(json_out, {
        "reference": {"path": str(reference), "sha256": ref.sha256, "variant": ref.variant,
                      "config": ref.cfg.to_dict(), "act_learn": ref.act_learn},
        "inputs": {"n": len(x), "img_size": img_size, "source": source},
        "artifacts": [r.to_dict() for r in results],
        "passed": not failed,
    })
    if failed:
        out(f"verification FAILED: {', '.join(failed)}")
        raise typer.Exit(EXIT_CHECK_FAILED)
    out(f"verification passed: {len(results)} artifact(s)")


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


@app.command()
@handle_errors
def bench(
    artifact: Path = typer.Argument(..., help="Training or deploy checkpoint, ONNX file or "
                                    "TensorRT engine."),
    batch: str = typer.Option("1,8,32", "--batch", help="Batch sizes, comma-separated."),
    runs: int = typer.Option(50, "--runs", min=1, help="Timed runs per batch size."),
    warmup: int = typer.Option(10, "--warmup", min=0, help="Untimed runs before timing."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for "
                                          "PyTorch and ONNX Runtime (default: theirs)."),
    device: Device = typer.Option(Device.cpu, "--device", help="Where checkpoints and ONNX "
                                  "files run (cuda: PyTorch on the GPU, ONNX Runtime's CUDA "
                                  "provider). Engines always run on the GPU."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="PyTorch on CUDA: capture "
                                     "the forward pass once as a CUDA graph and replay it."),
    img_size: Optional[int] = typer.Option(None, "--img-size", min=8, help="Input height and "
                                           "width. Default: the ONNX file's fixed size, else "
                                           "224."),
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    json_out: Optional[str] = JsonOpt,
    trust: bool = TrustOpt,
) -> None:
    """Latency of one artifact at each batch size: warm-up, then median, p90, p99 and
    throughput (images/s at the median).

    Checkpoints run in their own form in PyTorch (a training checkpoint as the training form,
    a deploy checkpoint as the deploy form), ONNX files on ONNX Runtime, engines on TensorRT.
    Inputs are prepared on the device before timing; a sample is one forward pass plus a
    device synchronize.
    """
    import torch
    from tqdm import tqdm

    from . import bench as b
    from .runners import artifact_kind

    batches = parse_ints(batch, "--batch")
    if not batches or min(batches) < 1:
        raise VnexportError(f"--batch takes positive integers, got {batch!r}")
    kind = artifact_kind(artifact)
    if cuda_graphs and (kind != "checkpoint" or device != Device.cuda):
        raise VnexportError("--cuda-graphs applies to checkpoints with --device cuda")
    if threads:
        torch.set_num_threads(threads)
    out = note if json_out == "-" else echo

    def load_artifact(p: Path):
        return load(p, key, model, strides, ada_pool, act_learn, trust)

    runner = load_runners([artifact], load_artifact, threads, device.value)[0]
    if img_size is None:
        img_size = 224
        if runner.session is not None:
            shape = runner.session.get_inputs()[0].shape
            img_size = shape[-1] if isinstance(shape[-1], int) else 224
    if runner.cfg is not None:
        check_img_size(runner.cfg, img_size)
    in_chans = runner.cfg.in_chans if runner.cfg is not None else 3
    if runner.session is not None:
        from .runners import check_input_shape

        in_chans = runner.session.get_inputs()[0].shape[1]
        in_chans = in_chans if isinstance(in_chans, int) else 3
        check_input_shape(runner.session, (1, in_chans, img_size, img_size), artifact)
        fixed = runner.session.get_inputs()[0].shape[0]
        if isinstance(fixed, int) and any(bs != fixed for bs in batches):
            raise VnexportError(f"the ONNX file has a fixed batch size of {fixed}; pass "
                                f"--batch {fixed}", artifact)

    def make_call(bs: int):
        x = b.random_batch(bs, img_size, in_chans)
        if runner.model is not None:
            return b.torch_call(runner.model, x, device.value, cuda_graphs)
        return b.ort_call(runner.session, x)

    out(f"{artifact.name}: {runner.kind}, {runner.precision}, {runner.backend}, "
        f"threads {threads or torch.get_num_threads()}, {img_size}x{img_size}, "
        f"{warmup} warm-up + {runs} timed runs per batch size")
    results = []
    with tqdm(total=len(batches) * (runs + warmup), desc=artifact.name, unit="run",
              disable=None, leave=False) as bar:
        if runner.kind == "engine":
            for bs in batches:
                r = b.engine_latency(artifact, bs, runs, warmup)
                bar.update(runs + warmup)
                if isinstance(r, str):
                    out(f"batch {bs}: skipped ({r})")
                else:
                    results.append(r)
        else:
            results = b.bench_batches(make_call, batches, runs, warmup, tick=bar.update)
    out(f"{'batch':>5} {'median ms':>10} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9}")
    for r in results:
        p99 = f"{r.p99_ms:>9.2f}" if r.p99_ms is not None else f"{'-':>9}"
        out(f"{r.batch:>5} {r.median_ms:>10.2f} {r.p90_ms:>9.2f} {p99} {r.images_per_s:>9.1f}")
    write_json(json_out, {**runner.describe(), "device": device.value,
                          "cuda_graphs": cuda_graphs,
                          "threads": threads or torch.get_num_threads(), "img_size": img_size,
                          "results": [r.to_dict() for r in results]})


# ------------------------------------------------------------------------------------------
# demo


@app.command()
@handle_errors
def demo(
    workdir: Path = typer.Option(Path("vnexport-demo"), "--workdir", help="Folder for the demo's "
                                 "files (created; its earlier demo files are replaced)."),
    variant: str = typer.Option("vanillanet_5", "--variant", help="Which variant to build."),
    img_size: int = typer.Option(224, "--img-size", min=8, help="Input size for verification."),
    n: int = typer.Option(8, "--n", min=1, help="How many verification inputs."),
) -> None:
    """The whole pipeline on a built-in default: no files of yours needed.

    Writes a seeded training-form checkpoint in the training script's format (with model,
    model_ema, epoch, args; non-trivial BN statistics), then runs every stage on it and prints
    a summary.
    """
    from .demo import run_demo

    ok = run_demo(workdir, variant, img_size, n, echo)
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        echo(f"vnexport {__version__}")
        raise typer.Exit(0)


def run() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    run()
