"""The ``vnexport`` command line: each command reads its options, calls its stage
(``vnexport/stages/<command>.py``), prints the result and exits with its code.

Exit codes: 0 success; 1 an equivalence check failed; 2 bad input or usage;
3 a required runtime is missing (TensorRT, CUDA).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from typer import Abort, BadParameter
from typer.core import TyperGroup

try:  # newer typer carries its own copy of click
    from typer._click.exceptions import ClickException, MissingParameter
except ImportError:  # typer on the click package
    from click.exceptions import ClickException, MissingParameter
try:
    from typer._click.exceptions import NoArgsIsHelpError
except ImportError:
    try:
        from click.exceptions import NoArgsIsHelpError
    except ImportError:  # click < 8.2 prints the help itself
        class NoArgsIsHelpError(Exception):  # type: ignore[no-redef]
            pass

from . import __version__
from .errors import EXIT_BAD_INPUT, VnexportError
from .fileio import OutputPlan, command_outputs
from .limits import (MAX_BATCH, MAX_IMG_SIZE, MAX_INPUTS, MAX_RUNS, MAX_SEED, MAX_THREADS)


# ------------------------------------------------------------------------------------------
# one user-error path: usage errors, VnexportError and any exception that reaches the top


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    return f">= {lo}" if lo is not None else f"<= {hi}"


def usage_line(e: ClickException) -> str:
    """A usage error as one line: the option, and for a number out of range the allowed one."""
    param = getattr(e, "param", None)
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    cause = getattr(e.__cause__, "errors", None)
    detail = cause()[0] if callable(cause) else {}
    if (isinstance(e, BadParameter) and not isinstance(e, MissingParameter)
            and (lo is not None or hi is not None)
            and str(detail.get("type", "")).startswith(("greater_than", "less_than"))):
        name = param.opts[0] if getattr(param, "opts", None) else param.name
        return (f"{name}: {detail.get('input')} is outside the allowed range "
                f"{_range_text(lo, hi)}")
    return " ".join(e.format_message().split())


def _interrupt(signum, frame):  # SIGTERM: unwind like Ctrl-C, so temporary files are removed
    raise KeyboardInterrupt


_SAID: list[str] = []


def say_interrupted() -> None:
    """The one line of an interrupted command (Ctrl-C or SIGTERM, exit 130), said once
    wherever the interrupt landed (Typer turns one during option parsing into a silent 130)."""
    if not _SAID:
        _SAID.append("interrupted")
        typer.echo("interrupted", err=True)


class OneLineGroup(TyperGroup):
    """Typer's group, with every usage error (an option out of range, a missing option, an
    unknown one) printed as ``error: <one line>`` and exit 2 instead of a boxed message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        _SAID.clear()
        try:  # only the main thread may set handlers (a CliRunner in a thread cannot)
            old = signal.signal(signal.SIGTERM, _interrupt)
        except ValueError:
            old = None
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except NoArgsIsHelpError as e:
            e.show()
            code = e.exit_code
        except ClickException as e:
            typer.echo(f"error: {usage_line(e)}", err=True)
            code = e.exit_code
        except Abort:
            code = 130
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
        if code == 130:
            say_interrupted()
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    name="vnexport",
    cls=OneLineGroup,
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


INPUT_NAMES = ("ckpt", "onnx_file", "source", "artifact", "reference", "artifacts")


def _primary_input(kwargs: dict) -> Optional[Path]:
    for name in INPUT_NAMES:
        value = kwargs.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, Path):
            return value
    return None


def _unexpected(e: BaseException, kwargs: dict) -> str:
    """An exception no check anticipated, as one line naming the input it came from."""
    text = (str(e).strip().splitlines() or [""])[0][:300]
    what = "out of memory" if isinstance(e, MemoryError) else f"{type(e).__name__}: {text}"
    where = _primary_input(kwargs)
    return f"{where}: {what}" if where else what


def handle_errors(fn: Callable) -> Callable:
    """One line on stderr and an exit code for everything a command can raise: a
    VnexportError (its code), an interrupt (130), any other exception (2, naming the input;
    VNEXPORT_DEBUG=1 shows the traceback instead). Library warnings are not shown."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with command_outputs(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn(*args, **kwargs)
        except (typer.Exit, ClickException):
            raise
        except VnexportError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            say_interrupted()
            raise typer.Exit(130) from None
        except Exception as e:  # noqa: BLE001 - the contract: never a traceback
            if os.environ.get("VNEXPORT_DEBUG"):
                raise
            typer.echo(f"error: {' '.join(_unexpected(e, kwargs).split())}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

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


# ------------------------------------------------------------------------------------------
# Each option is declared once, as an ``Annotated`` alias (its names, range and help); the
# command's signature gives its default: ``img_size: ImgSizeOpt = 224``.
#
# options shared by every command that reads a checkpoint

KeyOpt = Annotated[Key, typer.Option("--key", help="Which weights to take from a training-script "
    "checkpoint. auto prefers model_ema (what the authors evaluate), then model, then state_dict, "
    "and says which it used.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Variant name (e.g. "
    "vanillanet_13). Needed only when the weights fit several variants (strides are not stored in "
    "weights).")]
StridesOpt = Annotated[Optional[str], typer.Option("--strides", help="Stage strides of a custom "
    "VanillaNet, comma-separated (e.g. 2,2,2). Overrides --model.")]
AdaPoolOpt = Annotated[Optional[str], typer.Option("--ada-pool", help="Adaptive max-pool sizes "
    "per stage of a custom ada_pool VanillaNet, comma-separated, 0 for none (with --strides).")]
ActLearnOpt = Annotated[Optional[float], typer.Option("--act-learn", min=0.0, max=1.0,
    help="The leaky_relu slope between paired convs. Default: from the file's epoch and "
    "args.decay_epochs, or 1 for a file without a training schedule.")]
TrustOpt = Annotated[bool, typer.Option("--trust-remote-pickle", help="DANGEROUS: load with "
    "weights_only=False, which runs any code the file carries. Only for files whose origin you "
    "trust.")]
ImagesOpt = Annotated[Optional[Path], typer.Option("--images", help="Verify on the JPEG/PNG "
    "images in this folder (resize, centre crop, ImageNet mean/std; --n of them spread over the "
    "classes of an ImageFolder layout) instead of random inputs.")]
NOpt = Annotated[int, typer.Option("--n", min=1, max=MAX_INPUTS, help="How many verification "
    "inputs.")]
ImgSizeOpt = Annotated[int, typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the random "
    "verification inputs.")]
MaxRelOpt = Annotated[float, typer.Option("--max-rel-err", min=0.0, help="Tolerance: max abs "
    "error over the reference output's max magnitude.")]
MinTop1Opt = Annotated[float, typer.Option("--min-top1", min=0.0, max=1.0,
    help="Tolerance: fraction of inputs whose top-1 class must agree with the training form.")]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Replace existing output files "
    "(never an input of the command).")]
JsonForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Replace an existing --json "
    "file.")]
JsonOpt = Annotated[Optional[str], typer.Option("--json", help="Also write the report as JSON to "
    "this file ('-' for standard output).")]
# verify, bench
CpuThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS,
    help="CPU threads for PyTorch and ONNX Runtime (default: theirs).")]

# tolerances that default by the artifact's precision (onnx, trt, verify)
TolMaxRelOpt = Annotated[Optional[float], typer.Option("--max-rel-err", min=0.0,
    help="Limit on max abs error over the reference output's max magnitude. Default by precision: "
    "fp32 1e-4, fp16 and int8 not judged (still reported).")]
TolMinCosineOpt = Annotated[Optional[float], typer.Option("--min-cosine", min=-1.0, max=1.0,
    help="Limit on the lowest per-input cosine similarity. Default: fp16 0.9999; fp32 and int8 "
    "not judged (still reported).")]
TolMinTop1Opt = Annotated[Optional[float], typer.Option(
    "--min-top1", "--min-agreement", min=0.0, max=1.0, help="Limit on the fraction of inputs "
    "whose top-1 class agrees with the reference. Default: fp32 1.0, fp16 0.99, int8 0.98.")]

# reduced precision (onnx --precision, quantize)

class CalibMethod(str, Enum):
    minmax = "minmax"
    entropy = "entropy"
    percentile = "percentile"


CalibImagesOpt = Annotated[Optional[Path], typer.Option("--calib-images",
    help="Calibrate on the JPEG/PNG images in this folder (resize, centre crop, ImageNet "
    "mean/std). Without it int8 calibrates on seeded random inputs: fit for speed tests only.")]
CalibNOpt = Annotated[int, typer.Option("--calib-n", min=1, max=MAX_INPUTS,
    help="How many calibration images to use (spread over the classes of an ImageFolder layout, "
    "else the first N in sorted order), or random inputs without --calib-images.")]
MethodOpt = Annotated[CalibMethod, typer.Option("--method", help="INT8 calibration method: minmax "
    "(max |value| seen), entropy (KL divergence) or percentile (99.999th).")]
Fp16IoOpt = Annotated[bool, typer.Option("--fp16-io", help="FP16: make the input and output "
    "float16 too (default: float32, with casts inside the graph).")]
CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="INT8: JSON calibration cache. "
    "Ranges are stored under sha256(fp32 model, calibration inputs, method); a rebuild with the "
    "same ones skips calibration.")]
EvalImagesOpt = Annotated[Optional[Path], typer.Option("--eval-images", help="INT8: labelled "
    "images (one subfolder per class, class index = position in the sorted folder names) on "
    "which the int8 file's top-1 is measured against the fp32 reference's; with --max-drop, the "
    "budget it must keep to.")]
MaxDropOpt = Annotated[Optional[float], typer.Option("--max-drop", min=0.0, max=100.0,
    help="INT8 (with --eval-images): the most top-1 points the int8 file may lose. Tried in "
    "turn: plain int8, cross-layer equalized int8, then the most sensitive Convs kept float (at "
    "least half stay int8). Missed: exit 1, nothing written, the best top-1 reached is "
    "printed.")]
EqualizeOpt = Annotated[Optional[bool], typer.Option("--equalize/--no-equalize", help="INT8: "
    "cross-layer range equalization before quantizing (fp32 outputs checked unchanged). "
    "Default: only when plain int8 misses --max-drop.")]
Int8StemOpt = Annotated[bool, typer.Option("--int8-stem", help="INT8: quantize the stem conv too "
    "(default: it stays float; its fan-in of 48 makes it the layer most hurt by int8, for ~1.5% "
    "of the multiply-adds).")]

class HardwareCompat(str, Enum):
    none = "none"
    ampere_plus = "ampere+"
    same_cc = "same-cc"


class Builder(str, Enum):
    auto = "auto"
    tensorrt = "tensorrt"
    tensorrt_rtx = "tensorrt-rtx"


# --fp32/--fp16/--int8: aliases of --precision (trt, onnx, quantize), as trtexec and
# Polygraphy spell them
Fp32Opt = Annotated[bool, typer.Option("--fp32", help="Same as --precision fp32.")]
Fp16Opt = Annotated[bool, typer.Option("--fp16", help="Same as --precision fp16.")]
Int8Opt = Annotated[bool, typer.Option("--int8", help="Same as --precision int8.")]


class Exporter(str, Enum):
    auto = "auto"
    dynamo = "dynamo"
    torchscript = "torchscript"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


# ------------------------------------------------------------------------------------------
# options of one command each

InfoCkptArg = Annotated[Path, typer.Argument(metavar="FILE", help="Any file vnexport reads or "
    "writes: a training or deploy checkpoint (.pth, .safetensors), an ONNX file (.onnx), a "
    "TensorRT engine (.engine, .plan, .trt), a JSON file it wrote (a --json report, an engine's "
    "provenance, a calibration cache), a Triton model repository, model folder or "
    "config.pbtxt.")]
InfoAsJsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
FuseCkptArg = Annotated[Path, typer.Argument(help="Training checkpoint (.pth, .safetensors).")]
FuseOutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o",
    help="Deploy checkpoint to write. Default: <input>_deploy.pth beside the input.")]
FuseAllowInexactOpt = Annotated[bool, typer.Option("--allow-inexact", help="Fuse even when "
    "act_learn < 1 (the merge is then approximate; verification still judges it).")]
FuseNoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the verification.")]
OnnxCkptArg = Annotated[Path, typer.Argument(help="Training checkpoint (fused on the way) or "
    "deploy checkpoint (.pth, .safetensors).")]
OnnxOutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o",
    help="ONNX file to write (one self-contained file). Default: <input>.onnx beside the input.")]
OnnxOpsetOpt = Annotated[int, typer.Option("--opset", min=13, max=21,
    help="ONNX opset, 13 to 21.")]
ExporterOpt = Annotated[Exporter, typer.Option("--exporter", help="Which torch exporter writes "
    "the graph: dynamo (torch.export + onnxscript; opset 18 and up), torchscript (the "
    "deprecated TorchScript exporter; opsets 13 to 21), or auto: dynamo at opset >= 18 where "
    "torch has it and onnxscript is installed, else torchscript. Both give the same "
    "operators; the file's metadata 'exporter' says which ran.")]
OnnxDynamicBatchOpt = Annotated[bool, typer.Option("--dynamic-batch", help="Make the batch axis "
    "dynamic ('batch'); verified at batch 1 and at larger batches. Default: a static batch of "
    "--batch.")]
OnnxMaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch", min=1, max=MAX_BATCH,
    help="With --dynamic-batch: the largest batch you will run (stored in the metadata for "
    "TensorRT profiles; verification runs batches of up to this size).")]
OnnxBatchOpt = Annotated[int, typer.Option("--batch", min=1, max=MAX_BATCH,
    help="The static batch size (with --dynamic-batch: the example batch used while exporting).")]
OnnxImgSizeOpt = Annotated[int, typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width of the exported graph and of the verification inputs (a multiple "
    "of the variant's total stride, 32 for the published stride variants; at least 32 for the "
    "ada_pool variant).")]
OnnxSimplifyOpt = Annotated[bool, typer.Option("--simplify/--no-simplify",
    help="Run onnxslim on the cleaned graph (verification always runs on the final graph).")]
OnnxPrecisionOpt = Annotated[Optional[Precision], typer.Option("--precision",
    help="fp32 (default); fp16 (float16 weights and compute, nodes whose values do not fit kept "
    "float32, float32 input/output unless --fp16-io); int8 (explicit Q/DQ: symmetric per-channel "
    "weights, symmetric activations, calibrated).")]
OnnxAllowInexactOpt = Annotated[bool, typer.Option("--allow-inexact", help="Fuse a training "
    "checkpoint even when act_learn < 1 (approximate merge; verification still judges it).")]
OnnxThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, max=MAX_THREADS,
    help="ONNX Runtime intra-op threads for verification (default: its own).")]
OnnxNoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the ONNX Runtime "
    "verification (the file then carries no figures).")]
QuantizeOnnxFileArg = Annotated[Path, typer.Argument(help="The fp32 ONNX file (one input "
    "[N,3,H,W], one output), e.g. from vnexport onnx.")]
QuantizePrecisionOpt = Annotated[Optional[Precision], typer.Option("--precision",
    help="Required (or --fp16 / --int8). fp16: float16 weights and compute, nodes that do not fit "
    "kept float32. int8: explicit QuantizeLinear/DequantizeLinear (Q/DQ).")]
QuantizeOutputOpt = Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")]
QuantizeReferenceOpt = Annotated[Optional[Path], typer.Option("--reference",
    help="Verify against the fp32 training form of this checkpoint (the loading options below "
    "apply to it). Without it, against the fp32 ONNX file on ONNX Runtime.")]
QuantizeImgSizeOpt = Annotated[Optional[int], typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input size, needed only when the ONNX input's height/width are symbolic.")]
TrtSourceArg = Annotated[Path, typer.Argument(help="An ONNX file (fp32, fp16 graph, or Q/DQ "
    "int8), or a training/deploy checkpoint (the ONNX stage runs on the way).")]
TrtOutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o",
    help="Engine (plan) to write. Default: <source>.engine beside the source "
    "(<checkpoint>_<precision>.engine for a checkpoint). Provenance goes to <engine>.json beside "
    "it.")]
TrtPrecisionOpt = Annotated[Optional[Precision], typer.Option("--precision",
    help="With a checkpoint: the precision of the ONNX file to export (default fp32). With an "
    "ONNX file the precision is read from the file; if given it must match.")]
TrtMinBatchOpt = Annotated[Optional[int], typer.Option("--min-batch", min=1, max=MAX_BATCH,
    help="Smallest batch of the optimization profile (default 1, or the file's static batch).")]
TrtOptBatchOpt = Annotated[Optional[int], typer.Option("--opt-batch", min=1, max=MAX_BATCH,
    help="Batch TensorRT tunes for (default: --min-batch).")]
TrtMaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch", min=1, max=MAX_BATCH,
    help="Largest batch of the profile (default: --opt-batch). An ONNX file with a static batch "
    "that does not fit is refused.")]
TrtWorkspaceOpt = Annotated[Optional[float], typer.Option("--workspace",
    help="Builder workspace pool limit in GiB (default: TensorRT's, the GPU's memory).")]
TrtTimingCacheOpt = Annotated[Optional[Path], typer.Option("--timing-cache",
    help="Datacenter TensorRT: tactic timing cache, loaded if it exists, updated and saved after "
    "the build (speeds up later builds).")]
TrtBuilderOpt = Annotated[Builder, typer.Option("--builder", help="tensorrt: datacenter TensorRT, "
    "builds on the GPU it targets. tensorrt-rtx: TensorRT for RTX, builds on the CPU (no GPU "
    "needed) for --compute-capability targets; its engines need the TensorRT-RTX runtime. auto: "
    "what the options call for, else TensorRT where installed, else TensorRT-RTX.")]
TrtComputeCapabilityOpt = Annotated[Optional[str], typer.Option("--compute-capability",
    help="TensorRT-RTX: the GPUs to build for, e.g. 8.0 (A100) or 8.0,8.6,8.9 (default: "
    "TensorRT-RTX's portable set, 8.0, 8.6, 8.9, 12.0 and later).")]
TrtHardwareCompatOpt = Annotated[HardwareCompat, typer.Option("--hardware-compat",
    help="Datacenter TensorRT. none: this GPU's architecture only; ampere+: one engine for A100 "
    "and newer (built on Ampere or newer; may be slower); same-cc: GPUs of this compute "
    "capability.")]
TrtVersionCompatibleOpt = Annotated[bool, typer.Option("--version-compatible",
    help="Datacenter TensorRT: a version-compatible engine (BuilderFlag.VERSION_COMPATIBLE), "
    "which later TensorRT versions of the same major version load too; Triton loads it with "
    "tritonserver --backend-config=tensorrt,version-compatible=true. Recorded in the "
    "provenance.")]
TrtExcludeLeanRuntimeOpt = Annotated[bool, typer.Option("--exclude-lean-runtime",
    help="With --version-compatible: leave TensorRT's lean runtime out of the plan "
    "(BuilderFlag.EXCLUDE_LEAN_RUNTIME; smaller; the loading side supplies it).")]
TrtBuilderOptLevelOpt = Annotated[Optional[int], typer.Option("--builder-opt-level", min=0, max=5,
    help="Builder optimization level 0..5 (TensorRT default 3; higher builds longer, may run "
    "faster).")]
TrtReferenceOpt = Annotated[Optional[Path], typer.Option("--reference",
    help="With an ONNX source: the training checkpoint to verify against. Without it the engine "
    "is verified against ONNX Runtime on the same ONNX file.")]
TrtAllowInexactOpt = Annotated[bool, typer.Option("--allow-inexact", help="With a checkpoint "
    "whose act_learn < 1: export anyway (verification judges it).")]
TrtOpsetOpt = Annotated[int, typer.Option("--opset", min=13, max=21, help="ONNX opset when "
    "exporting a checkpoint, 13 to 21.")]
TrtKeepOnnxOpt = Annotated[Optional[Path], typer.Option("--keep-onnx",
    help="With a checkpoint: also keep the exported ONNX file here (default: a temporary file, "
    "removed).")]
TrtImgSizeOpt = Annotated[Optional[int], typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input size: for a checkpoint (default 224), or for an ONNX file with dynamic "
    "height/width (must match a static one).")]
TrtNoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Build without running the "
    "engine (needed on a machine without a CUDA GPU); the provenance says it was not verified.")]
TrtVerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show Polygraphy's and "
    "TensorRT's build log.")]
VerifyReferenceArg = Annotated[Path, typer.Argument(help="The training checkpoint: the "
    "independent reference every artifact is compared with.")]
VerifyArtifactsArg = Annotated[list[Path], typer.Argument(help="Deploy checkpoints (.pth, "
    ".safetensors), ONNX files (.onnx) and TensorRT engines (.engine, .plan) to verify.")]
VerifyLocateStageOpt = Annotated[bool, typer.Option("--locate", help="For a failing deploy "
    "checkpoint or ONNX file, report the first stage (stem, stages.i, head) whose output departs "
    "from the reference.")]
VerifyImgSizeOpt = Annotated[Optional[int], typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width. Default: the input size of the ONNX artifacts (read from the "
    "file), else 224.")]
EvalArtifactsArg = Annotated[list[Path], typer.Argument(help="Checkpoints (training or deploy "
    "form), ONNX files (fp32, fp16, int8) and TensorRT engines (.engine, .plan, .trt). The first "
    "is the reference and must be a checkpoint; every other is paired with it image by image.")]
EvalLabelledImagesOpt = Annotated[Path, typer.Option("--images", help="Labelled images in ImageFolder "
    "layout: one subfolder per class, class index = position of its name in sorted order "
    "(ImageNet val in synset folders gives the standard indices).")]
EvalLimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate on N "
    "images only, spread evenly over the classes (default: all).")]
EvalCropPctOpt = Annotated[float, typer.Option("--crop-pct", min=0.05, max=1.0, help="Sizes 33 "
    "to 383: the shorter side is resized to int(size / crop_pct) before the centre crop (the "
    "authors' evaluation; 0.875 = 224/256).")]
EvalBatchOpt = Annotated[int, typer.Option("--batch", min=1, max=MAX_BATCH,
    help="Images per batch.")]
EvalMaxDropOpt = Annotated[Optional[float], typer.Option("--max-drop", min=0.0, max=100.0,
    help="Exit 1 naming every artifact whose top-1 is more than this many points below the "
    "reference's.")]
BenchArtifactArg = Annotated[Path, typer.Argument(help="Training or deploy checkpoint, ONNX file "
    "or TensorRT engine.")]
BenchBatchOpt = Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")]
BenchRunsOpt = Annotated[int, typer.Option("--runs", min=1, max=MAX_RUNS,
    help="Timed runs per batch size.")]
BenchWarmupOpt = Annotated[int, typer.Option("--warmup", min=0, max=MAX_RUNS,
    help="Untimed runs before timing.")]
BenchDeviceOpt = Annotated[Device, typer.Option("--device", help="Where checkpoints and ONNX "
    "files run (cuda: PyTorch on the GPU, ONNX Runtime's CUDA provider). Engines always run on "
    "the GPU.")]
BenchCudaGraphsOpt = Annotated[bool, typer.Option("--cuda-graphs", help="PyTorch on CUDA: capture "
    "the forward pass once as a CUDA graph and replay it.")]
BenchImgSizeOpt = Annotated[Optional[int], typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width. Default: the ONNX file's fixed size, else 224.")]
DemoWorkdirOpt = Annotated[Path, typer.Option("--workdir", help="Folder for the demo's files "
    "(created; its earlier demo files are replaced).")]
DemoVariantOpt = Annotated[str, typer.Option("--variant", help="Which variant to build.")]
DemoImgSizeOpt = Annotated[int, typer.Option("--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input size for verification.")]


# ------------------------------------------------------------------------------------------
# from options to a stage and back


def plain(value: Any) -> Any:
    """An option's value as the stages take it: an Enum member as its value."""
    return value.value if isinstance(value, Enum) else value


def precision_of(values: dict, default: Optional[str] = None) -> Optional[str]:
    """--precision and its aliases --fp32/--fp16/--int8 as one value (``default`` when none
    is given); two different ones are exit 2."""
    given = [f"--{name}" for name in ("fp32", "fp16", "int8") if values.get(name)]
    names = {g[2:] for g in given}
    if values.get("precision") is not None:
        given.append(f"--precision {plain(values['precision'])}")
        names.add(plain(values["precision"]))
    if len(names) > 1:
        raise VnexportError(f"{' and '.join(given)} conflict: give one precision")
    return names.pop() if names else default


def pick(cls, values: dict, **given):
    """``cls`` (an options dataclass) from the command's ``values`` (its locals), field by
    field name; ``given`` supplies the fields that are built otherwise."""
    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    return cls(**{k: plain(v) for k, v in values.items() if k in names}, **given)


def _quiet(msg: str) -> None:
    pass


def log(json_out: Optional[str] = None):
    """Where a stage's lines go: stdout, or stderr when the JSON report takes stdout; progress
    lines (long steps, with elapsed time) to stderr on a terminal only."""
    from .stages.common import Log

    return Log(echo=note if json_out == "-" else echo, note=note,
               progress=note if sys.stderr.isatty() else _quiet, status=note)


OUTPUT_NAMES = ("output", "keep_onnx", "workdir", "json_out")


def plan_json(values: dict) -> None:
    """--json is checked, with the command's other outputs (planned by its stage), before any
    work: never one of the command's input files (cache files included), never an existing
    file without --force, in a folder that exists and takes new files."""
    inputs = [p for k, v in values.items() if k not in OUTPUT_NAMES
              for p in (v if isinstance(v, list) else [v]) if isinstance(p, Path)]
    OutputPlan(inputs, bool(values.get("force"))).add(values.get("json_out"), "--json")


def write_json(target: Optional[str], data: Any) -> None:
    from .fileio import write_json_atomic

    if target == "-":
        echo(json.dumps(data, indent=2, default=str))
    elif target is not None:
        write_json_atomic(target, data)


def run_stage(values: dict, call: Callable) -> None:
    """Check --json, run ``call(log)`` (the stage), then ``finish``. With ``--json -``
    anything printed to stdout while the stage runs goes to stderr, so stdout is the JSON."""
    json_out = values.get("json_out")
    plan_json(values)
    lines = log(json_out)
    with (contextlib.redirect_stdout(sys.stderr) if json_out == "-"
          else contextlib.nullcontext()):
        result = call(lines)
    finish(result, json_out, lines)


def finish(result, json_out: Optional[str], lines) -> None:
    """Write the stage's report (``--json``), print its closing lines, then the notes held
    back while it ran, and exit with its code."""
    if result.to_dict() is not None:
        write_json(json_out, result.to_dict())
    for line in result.lines():
        lines.echo(line)
    lines.flush_notes()
    if result.exit_code:
        raise typer.Exit(result.exit_code)


# ------------------------------------------------------------------------------------------
# the commands


@app.command()
@handle_errors
def info(
    ckpt: InfoCkptArg,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    img_size: ImgSizeOpt = 224,
    as_json: InfoAsJsonOpt = False,
    trust: TrustOpt = False,
) -> None:
    """What is this file? A checkpoint: form, variant, config, weights used, epoch, act_learn,
    size, cost. An ONNX file: input shape, precision, opset, op inventory, vnexport metadata.
    A TensorRT engine (.engine, .plan, .trt): its provenance, TensorRT-RTX's header check, and
    its own tensors and profile (those need its runtime and a CUDA GPU: without them the
    output says they were not read). A report, provenance or calibration-cache JSON: its kind
    and main facts. A Triton repository or model folder: each config parsed and summarized.
    Anything else: one line, exit 2."""
    from .stages import info as stage

    v = locals()
    lines = log("-" if as_json else None)
    engine = stage.is_engine(ckpt)
    result = stage.run_engine(ckpt) if engine else \
        stage.run(pick(stage.InfoOptions, v, source=pick(stage.Source, v)), lines)
    if as_json:
        echo(json.dumps(result.to_dict(), indent=2, default=str))
        lines.flush_notes()
    else:
        finish(result, None, lines)


@app.command()
@handle_errors
def fuse(
    ckpt: FuseCkptArg,
    output: FuseOutputOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    allow_inexact: FuseAllowInexactOpt = False,
    images: ImagesOpt = None,
    n: NOpt = 8,
    img_size: ImgSizeOpt = 224,
    seed: SeedOpt = 0,
    max_rel_err: MaxRelOpt = 1e-4,
    min_top1: MinTop1Opt = 1.0,
    no_verify: FuseNoVerifyOpt = False,
    force: ForceOpt = False,
    json_out: JsonOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Fold every BatchNorm, merge each pair of 1x1 convs, write the deploy checkpoint, verify it.

    The output is {"model": deploy_state_dict, "vnexport": provenance}, loadable with
    strict=True by the authors' deploy-form VanillaNet. A failed verification exits 1 and
    writes nothing.
    """
    from .stages import fuse as stage

    v = locals()
    opts = pick(stage.FuseOptions, v, source=pick(stage.Source, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command("onnx")
@handle_errors
def onnx_command(
    ckpt: OnnxCkptArg,
    output: OnnxOutputOpt = None,
    opset: OnnxOpsetOpt = 17,
    exporter: ExporterOpt = Exporter.auto,
    dynamic_batch: OnnxDynamicBatchOpt = False,
    max_batch: OnnxMaxBatchOpt = None,
    batch: OnnxBatchOpt = 1,
    img_size: OnnxImgSizeOpt = 224,
    simplify: OnnxSimplifyOpt = True,
    precision: OnnxPrecisionOpt = None,
    fp32: Fp32Opt = False,
    fp16: Fp16Opt = False,
    int8: Int8Opt = False,
    calib_images: CalibImagesOpt = None,
    calib_n: CalibNOpt = 64,
    method: MethodOpt = CalibMethod.minmax,
    fp16_io: Fp16IoOpt = False,
    cache: CacheOpt = None,
    int8_stem: Int8StemOpt = False,
    eval_images: EvalImagesOpt = None,
    max_drop: MaxDropOpt = None,
    equalize: EqualizeOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    allow_inexact: OnnxAllowInexactOpt = False,
    images: ImagesOpt = None,
    n: NOpt = 8,
    seed: SeedOpt = 0,
    max_rel_err: TolMaxRelOpt = None,
    min_cosine: TolMinCosineOpt = None,
    min_top1: TolMinTop1Opt = None,
    threads: OnnxThreadsOpt = None,
    no_verify: OnnxNoVerifyOpt = False,
    force: ForceOpt = False,
    json_out: JsonOpt = None,
    trust: TrustOpt = False,
) -> None:
    """Export the deploy-form network as one clean ONNX file, verified on ONNX Runtime.

    A training checkpoint is fused on the way (same rules and refusals as fuse). The graph holds
    only Conv, Relu, MaxPool, GlobalAveragePool and one Flatten (the ada_pool variant's adaptive
    max pools are written as exact plain max pools). The file is verified on ONNX Runtime (CPU,
    and CUDA where present) against the training-form network, then written with its metadata
    (variant, config, input size, mean/std, source sha256, opset, verification figures). A
    failed verification exits 1 and writes nothing.
    """
    from .stages import onnx as stage
    from .stages.quantize import Conversion

    v = dict(locals(), precision=precision_of(locals(), "fp32"))
    opts = pick(stage.OnnxOptions, v, export=pick(stage.Export, v), source=pick(stage.Source, v),
                conversion=pick(Conversion, v), check=pick(stage.Check, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def quantize(
    onnx_file: QuantizeOnnxFileArg,
    precision: QuantizePrecisionOpt = None,
    fp32: Fp32Opt = False,
    fp16: Fp16Opt = False,
    int8: Int8Opt = False,
    output: QuantizeOutputOpt = ...,
    calib_images: CalibImagesOpt = None,
    calib_n: CalibNOpt = 64,
    method: MethodOpt = CalibMethod.minmax,
    fp16_io: Fp16IoOpt = False,
    cache: CacheOpt = None,
    int8_stem: Int8StemOpt = False,
    eval_images: EvalImagesOpt = None,
    max_drop: MaxDropOpt = None,
    equalize: EqualizeOpt = None,
    reference: QuantizeReferenceOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    trust: TrustOpt = False,
    images: ImagesOpt = None,
    n: NOpt = 8,
    seed: SeedOpt = 0,
    img_size: QuantizeImgSizeOpt = None,
    max_rel_err: TolMaxRelOpt = None,
    min_cosine: TolMinCosineOpt = None,
    min_top1: TolMinTop1Opt = None,
    force: ForceOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """Write an FP16 or INT8 (Q/DQ) ONNX file from an fp32 one and verify it on ONNX Runtime.

    Tolerances as for onnx, trt and verify, by precision: fp16 cosine >= 0.9999 and top-1
    agreement >= 99%; int8 top-1 agreement >= 98% (--min-top1 / --min-agreement,
    --min-cosine, --max-rel-err override them). A failed verification exits 1 and writes
    nothing.
    """
    from .stages import quantize as stage

    v = dict(locals(), precision=precision_of(locals()))
    if v["precision"] is None:
        raise VnexportError("give the precision to write: --precision fp16|int8 (or --fp16, "
                            "--int8)")
    opts = pick(stage.QuantizeOptions, v, conversion=pick(stage.Conversion, v),
                source=pick(stage.Source, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def trt(
    source: TrtSourceArg,
    output: TrtOutputOpt = None,
    precision: TrtPrecisionOpt = None,
    fp32: Fp32Opt = False,
    fp16: Fp16Opt = False,
    int8: Int8Opt = False,
    builder: TrtBuilderOpt = Builder.auto,
    compute_capability: TrtComputeCapabilityOpt = None,
    min_batch: TrtMinBatchOpt = None,
    opt_batch: TrtOptBatchOpt = None,
    max_batch: TrtMaxBatchOpt = None,
    workspace: TrtWorkspaceOpt = None,
    timing_cache: TrtTimingCacheOpt = None,
    hardware_compat: TrtHardwareCompatOpt = HardwareCompat.none,
    version_compatible: TrtVersionCompatibleOpt = False,
    exclude_lean_runtime: TrtExcludeLeanRuntimeOpt = False,
    builder_opt_level: TrtBuilderOptLevelOpt = None,
    reference: TrtReferenceOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    allow_inexact: TrtAllowInexactOpt = False,
    opset: TrtOpsetOpt = 17,
    exporter: ExporterOpt = Exporter.auto,
    keep_onnx: TrtKeepOnnxOpt = None,
    images: ImagesOpt = None,
    n: NOpt = 8,
    img_size: TrtImgSizeOpt = None,
    seed: SeedOpt = 0,
    max_rel_err: TolMaxRelOpt = None,
    min_cosine: TolMinCosineOpt = None,
    min_top1: TolMinTop1Opt = None,
    no_verify: TrtNoVerifyOpt = False,
    force: ForceOpt = False,
    json_out: JsonOpt = None,
    verbose: TrtVerboseOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Build a strongly typed TensorRT engine, verify it, write it with its provenance.

    Builders: datacenter TensorRT 10.12+ / 11.x (on the GPU it targets) or TensorRT for RTX
    (on the CPU, for --compute-capability targets; --builder). The precision comes from the
    ONNX file (an FP16 graph, or Q/DQ INT8), not from builder flags. Verified against the fp32
    training form when a checkpoint is at hand (the source, or --reference), else against ONNX
    Runtime on the same file. Tolerances by precision: fp32 max rel err 1e-4 and 100% top-1
    (TF32 off); fp16 cosine >= 0.9999 and top-1 >= 99%; int8 top-1 >= 98%. A failed check
    exits 1 and writes nothing. No CUDA GPU to run the engine on: add --no-verify. Checks:
    options and inputs (exit 2), the runtime (builder; GPU unless --no-verify: 3), the build.
    """
    from .stages import trt as stage
    from .trt import BuildOptions, parse_compute_capabilities
    v = dict(locals(), precision=precision_of(locals()))
    spec = None if no_verify else pick(stage.VerifySpec, v, max_rel=max_rel_err)
    build = pick(BuildOptions, v, workspace_gib=workspace,
                 compute_capabilities=parse_compute_capabilities(compute_capability))
    opts = pick(stage.TrtOptions, v, build=build, ckpt_source=pick(stage.Source, v), verify=spec)
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def verify(
    reference: VerifyReferenceArg,
    artifacts: VerifyArtifactsArg,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    images: ImagesOpt = None,
    n: NOpt = 8,
    img_size: VerifyImgSizeOpt = None,
    seed: SeedOpt = 0,
    max_rel_err: TolMaxRelOpt = None,
    min_cosine: TolMinCosineOpt = None,
    min_top1: TolMinTop1Opt = None,
    locate_stage: VerifyLocateStageOpt = False,
    threads: CpuThreadsOpt = None,
    json_out: JsonOpt = None,
    force: JsonForceOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Compare artifacts with the training checkpoint on the same inputs, for CI.

    Reports max abs error, max relative error (to the reference output's scale), cosine
    similarity and top-1 agreement for every artifact, each judged against the tolerance of the
    artifact's precision (read from the file: fp32, fp16 or int8; the flags override the
    limits). Exits 1 if any artifact fails, naming it; 3 if an engine cannot be run here.
    """
    from .stages import verify as stage

    v = locals()
    opts = pick(stage.VerifyOptions, v, source=pick(stage.Source, v), locate=locate_stage)
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command(name="eval")
@handle_errors
def eval_(
    artifacts: EvalArtifactsArg,
    images: EvalLabelledImagesOpt,
    limit: EvalLimitOpt = None,
    img_size: VerifyImgSizeOpt = None,
    crop_pct: EvalCropPctOpt = 0.875,
    batch: EvalBatchOpt = 32,
    threads: CpuThreadsOpt = None,
    max_drop: EvalMaxDropOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    json_out: JsonOpt = None,
    force: JsonForceOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Accuracy on labelled images: top-1 and top-5 of every artifact with 95% confidence
    intervals (Wilson), and for each against the reference (the first artifact, a checkpoint)
    the paired difference in top-1 (images right in one only, both ways) and top-1 agreement.

    Preprocessing is the VanillaNet authors' evaluation: sizes 33 to 383 resize the shorter
    side to int(size / crop_pct) (bicubic) and centre-crop; 384 and above resize to size x size;
    32 and below use the images as they are; then ImageNet mean/std (an ONNX file's own, from
    its metadata). Exits 1 with --max-drop when an artifact's top-1 is more than that below the
    reference's; 3 if an engine cannot be run here.
    """
    from .stages import eval as stage

    v = locals()
    opts = pick(stage.EvalOptions, v, source=pick(stage.Source, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def bench(
    artifact: BenchArtifactArg,
    batch: BenchBatchOpt = "1,8,32",
    runs: BenchRunsOpt = 50,
    warmup: BenchWarmupOpt = 10,
    threads: CpuThreadsOpt = None,
    device: BenchDeviceOpt = Device.cpu,
    cuda_graphs: BenchCudaGraphsOpt = False,
    img_size: BenchImgSizeOpt = None,
    key: KeyOpt = Key.auto,
    model: ModelOpt = None,
    strides: StridesOpt = None,
    ada_pool: AdaPoolOpt = None,
    act_learn: ActLearnOpt = None,
    json_out: JsonOpt = None,
    force: JsonForceOpt = False,
    trust: TrustOpt = False,
) -> None:
    """Latency of one artifact at each batch size: warm-up, then median, p90, p99 and
    throughput (images/s at the median).

    Checkpoints run in their own form in PyTorch (a training checkpoint as the training form,
    a deploy checkpoint as the deploy form), ONNX files on ONNX Runtime, engines on TensorRT.
    Inputs are prepared on the device before timing; a sample is one forward pass plus a
    device synchronize.
    """
    from .stages import bench as stage

    v = locals()
    opts = pick(stage.BenchOptions, v, source=pick(stage.Source, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def demo(
    workdir: DemoWorkdirOpt = Path("vnexport-demo"),
    variant: DemoVariantOpt = "vanillanet_5",
    img_size: DemoImgSizeOpt = 224,
    n: NOpt = 8,
) -> None:
    """The whole pipeline on a built-in default: no files of yours needed.

    Writes a seeded training-form checkpoint in the training script's format (with model,
    model_ema, epoch, args; non-trivial BN statistics), then runs every stage on it and prints
    a summary.
    """
    from .stages import demo as stage

    run_stage(locals(), lambda lines: stage.run(stage.DemoOptions(workdir, variant, img_size, n),
                                                lines))


# ------------------------------------------------------------------------------------------
# triton, serve (Triton Inference Server)


class TritonBackend(str, Enum):
    platform = "platform"
    python = "python"


class Accelerator(str, Enum):
    tensorrt = "tensorrt"


class InstanceKind(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


TritonArtifactsArg = Annotated[list[Path], typer.Argument(help="ONNX files (.onnx) and/or "
    "TensorRT engines (with the <engine>.json vnexport trt writes).")]
TritonOutputOpt = Annotated[Path, typer.Option("--output", "-o", help="The model repository "
    "folder (created if missing; one model folder per artifact).")]
TritonNameOpt = Annotated[Optional[str], typer.Option("--name", help="Model name (one artifact "
    "only). Default: the file name before its first dot.")]
TritonVersionOpt = Annotated[int, typer.Option("--model-version", "--version", help="The "
    "model's version folder (--version: the old name, kept as a deprecated alias; vnexport "
    "--version prints the tool's version).")]
TritonBackendOpt = Annotated[TritonBackend, typer.Option("--backend", help="platform: "
    "tensorrt_plan / onnxruntime_onnx as the file is; python: a model.py running the ONNX file on "
    "onnxruntime (servers without the onnxruntime backend, such as vnexport serve's).")]
TritonMaxBatchOpt = Annotated[Optional[int], typer.Option("--max-batch",
    help="max_batch_size. Default: the engine's profile maximum, the ONNX file's max_batch "
    "metadata, else 16.")]
TritonPreferredOpt = Annotated[Optional[str], typer.Option("--preferred-batch",
    help="Dynamic batching's preferred batch sizes, e.g. 4,8.")]
TritonQueueDelayOpt = Annotated[int, typer.Option("--max-queue-delay-us",
    help="Dynamic batching: the longest wait to form a batch, in microseconds.")]
TritonInstancesOpt = Annotated[int, typer.Option("--instances", help="Model instances "
    "(instance_group).")]
TritonKindOpt = Annotated[InstanceKind, typer.Option("--kind", help="Instance kind; an engine is "
    "always KIND_GPU.")]
TritonLabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Class names, one per "
    "line (as many as classes): top-k labels through Triton's classification extension.")]
TritonPreprocessOpt = Annotated[bool, typer.Option("--preprocess", help="Add a Python-backend "
    "preprocessing model and <name>_ensemble: image bytes in, logits (labels) out.")]
TritonForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Replace existing model "
    "folders.")]
TritonAcceleratorOpt = Annotated[Optional[Accelerator], typer.Option("--accelerator",
    help="tensorrt: serve an ONNX file on a GPU in the onnxruntime backend with ONNX Runtime's "
    "TensorRT provider (TensorRT builds the engine on the serving GPU at load, for the file's "
    "precision, and caches it): no separate engine build.")]
TritonWorkspaceOpt = Annotated[Optional[float], typer.Option("--workspace", help="With "
    "--accelerator: the provider's workspace limit in GiB (max_workspace_size_bytes). "
    "Default 1.")]
TritonEngineCacheOpt = Annotated[Optional[str], typer.Option("--engine-cache", help="With "
    "--accelerator: the engine cache folder on the serving machine (trt_engine_cache_path). "
    "Default /tmp/vnexport-trt-cache/<name>.")]
ServeTargetArg = Annotated[Path, typer.Argument(help="A model repository folder, or one ONNX file "
    "(served from a temporary Python-backend repository).")]
ServeHostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
ServeHttpOpt = Annotated[int, typer.Option("--http-port")]
ServeGrpcOpt = Annotated[int, typer.Option("--grpc-port")]
ServeMetricsOpt = Annotated[int, typer.Option("--metrics-port")]
ServeJsonOpt = Annotated[Optional[str], typer.Option("--json", metavar="FILE|-",
    help="The ready report as JSON: to FILE (written once the server is ready; the text still "
    "printed), or - for one JSON line on stdout instead of the text.")]


@app.command()
@handle_errors
def triton(
    artifacts: TritonArtifactsArg,
    output: TritonOutputOpt,
    name: TritonNameOpt = None,
    version: TritonVersionOpt = 1,
    backend: TritonBackendOpt = TritonBackend.platform,
    max_batch: TritonMaxBatchOpt = None,
    preferred_batch: TritonPreferredOpt = None,
    max_queue_delay_us: TritonQueueDelayOpt = 100,
    instances: TritonInstancesOpt = 1,
    kind: TritonKindOpt = InstanceKind.auto,
    labels: TritonLabelsOpt = None,
    preprocess: TritonPreprocessOpt = False,
    force: TritonForceOpt = False,
    accelerator: TritonAcceleratorOpt = None,
    workspace: TritonWorkspaceOpt = None,
    engine_cache: TritonEngineCacheOpt = None,
    json_out: JsonOpt = None,
) -> None:
    """Write a Triton model repository: config.pbtxt (checked against the artifact), model
    file, labels; optionally a preprocessing ensemble."""
    from .stages import triton as stage

    v = locals()
    opts = pick(stage.TritonOptions, v, artifacts=tuple(artifacts))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def serve(
    target: ServeTargetArg,
    host: ServeHostOpt = "127.0.0.1",
    http_port: ServeHttpOpt = 8000,
    grpc_port: ServeGrpcOpt = 8001,
    metrics_port: ServeMetricsOpt = 8002,
    json_out: ServeJsonOpt = None,
) -> None:
    """Run Triton here (the nvidia-pytriton wheel's server, CPU) until Ctrl-C or SIGTERM."""
    from .stages import serve as stage

    plan_json(locals())

    def ready(result) -> None:
        if json_out not in (None, "-"):
            write_json(json_out, result.to_dict())
        for line in [json.dumps(result.to_dict())] if json_out == "-" else result.ready_lines():
            echo(line)

    lines = log()
    result = stage.run(pick(stage.ServeOptions, locals()), lines, ready)
    finish(result, None, dataclasses.replace(lines, echo=note))


VersionOpt = Annotated[bool, typer.Option("--version", help="Print the version and exit.")]


@app.callback(invoke_without_command=True)
def main(version: VersionOpt = False):
    if version:
        echo(f"vnexport {__version__}")
        raise typer.Exit(0)


def run() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    run()

