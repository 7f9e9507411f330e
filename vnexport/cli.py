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
# ---- onnx


def print_inventory(inventory: dict[str, int]) -> None:
    echo("graph: " + ", ".join(f"{op} {k}" for op, k in inventory.items())
         + f" ({sum(inventory.values())} nodes)")


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
    max_rel_err: float = MaxRelOpt,
    min_top1: float = MinTop1Opt,
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
                              export_metadata, onnx_model_from_deploy, op_inventory, save_onnx,
                              serialize, set_metadata, verification_metadata, verify_onnx)
    from .verify import Tolerance, make_inputs

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
    if x is not None:
        tol = Tolerance(max_rel=max_rel_err, min_top1=min_top1)
        v = verify_onnx(c, serialize(proto), x, tol, max_batch=max_batch, threads=threads)
        echo(f"reference: the {v.reference}")
        for provider, comp in v.comparisons.items():
            print_comparison(f"verify onnx ({provider.replace('ExecutionProvider', '')})", comp)
        report["verification"] = v.to_dict()
        if not v.passed:
            report["written"] = False
            write_json(json_out, report)
            echo(f"not written: {output}")
            raise typer.Exit(EXIT_CHECK_FAILED)
        inputs = {"n": len(x), "img_size": img_size,
                  "source": str(images) if images else f"seed {seed}"}
        set_metadata(proto, verification_metadata(v, inputs))
    else:
        echo("verification skipped (--no-verify)")
    save_onnx(proto, output)
    report["written"] = True
    report["seconds"] = round(time.perf_counter() - t0, 3)
    write_json(json_out, report)
    echo(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB, self-contained) in "
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
