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
# quantize (fp16 / int8 ONNX from an fp32 ONNX file; `vnexport onnx --precision` uses the same)


class Precision(str, Enum):
    fp16 = "fp16"
    int8 = "int8"


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
    from .precision import (apply_precision, fp16_emulation, input_geometry, load_fp32_onnx,
                            run, session, set_metadata)
    from .verify import compare, image_inputs, random_inputs, run_torch, tolerance_for

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
    tol = tolerance_for(precision.value, min_agreement)
    comp = compare(ref, run(session(out_model), x.numpy()), tol)
    echo(f"verifying {precision.value} on ONNX Runtime against {against}, on {source}")
    print_comparison(f"verify {precision.value}", comp)
    report = {"input": str(onnx_file), "output": str(output), "precision": precision.value,
              "reference": str(reference) if reference else str(onnx_file),
              "verification_inputs": source, "verification": comp.to_dict(),
              "conversion": rep.to_dict()}
    passed = comp.passed
    if precision is Precision.fp16:
        # ORT's CPU provider computes a float16 graph in float32: check float16 rounding too
        emu = fp16_emulation(fp32, [k.node for k in rep.fp16.kept_fp32])
        comp_emu = compare(ref, run(session(emu), x.numpy()), tol)
        echo("ONNX Runtime's CPU provider runs float16 Conv in float32 (weights rounded only); "
             "also checking float16 activations, emulated (every converted node's output "
             "rounded to float16):")
        print_comparison("verify fp16 emulated", comp_emu)
        report["verification_fp16_emulated"] = comp_emu.to_dict()
        passed = passed and comp_emu.passed
    if not passed:
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
