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
from typing import Any, Callable, Optional

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


class OneLineGroup(TyperGroup):
    """Typer's group, with every usage error (an option out of range, a missing option, an
    unknown one) printed as ``error: <one line>`` and exit 2 instead of a boxed message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
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
            typer.echo("interrupted", err=True)
            code = 130
        finally:
            if old is not None:
                signal.signal(signal.SIGTERM, old)
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
            typer.echo("interrupted", err=True)
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
                         "(resize, centre crop, ImageNet mean/std; --n of them spread over the "
                         "classes of an ImageFolder layout) instead of random inputs.")
NOpt = typer.Option(8, "--n", min=1, max=MAX_INPUTS, help="How many verification inputs.")
ImgSizeOpt = typer.Option(224, "--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width.")
SeedOpt = typer.Option(0, "--seed", min=0, max=MAX_SEED,
    help="Seed of the random verification inputs.")
MaxRelOpt = typer.Option(1e-4, "--max-rel-err", min=0.0, help="Tolerance: max abs error over "
                         "the reference output's max magnitude.")
MinTop1Opt = typer.Option(1.0, "--min-top1", min=0.0, max=1.0, help="Tolerance: fraction of "
                          "inputs whose top-1 class must agree with the training form.")
ForceOpt = typer.Option(False, "--force", "-f", help="Replace existing output files (never an "
                        "input of the command).")
JsonForceOpt = typer.Option(False, "--force", "-f", help="Replace an existing --json file.")
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
CalibNOpt = typer.Option(64, "--calib-n", min=1, max=MAX_INPUTS,
    help="How many calibration images to use (spread over the classes of an ImageFolder "
    "layout, else the first N in sorted order), or random inputs without --calib-images.")
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
PREC_FP32 = typer.Option(False, "--fp32", help="Same as --precision fp32.")
PREC_FP16 = typer.Option(False, "--fp16", help="Same as --precision fp16.")
PREC_INT8 = typer.Option(False, "--int8", help="Same as --precision int8.")


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


# ------------------------------------------------------------------------------------------
# options of one command each

INFO_CKPT = typer.Argument(..., help="A training or deploy checkpoint (.pth, .safetensors), an "
    "ONNX file (.onnx), or a TensorRT engine (.engine, .plan, .trt).")
INFO_AS_JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
FUSE_CKPT = typer.Argument(..., help="Training checkpoint (.pth, .safetensors).")
FUSE_OUTPUT = typer.Option(None, "--output", "-o", help="Deploy checkpoint to "
    "write. Default: <input>_deploy.pth beside the input.")
FUSE_ALLOW_INEXACT = typer.Option(False, "--allow-inexact", help="Fuse even when act_learn "
    "< 1 (the merge is then approximate; verification still "
    "judges it).")
FUSE_NO_VERIFY = typer.Option(False, "--no-verify", help="Skip the verification.")
ONNX_CKPT = typer.Argument(..., help="Training checkpoint (fused on the way) or deploy "
    "checkpoint (.pth, .safetensors).")
ONNX_OUTPUT = typer.Option(None, "--output", "-o", help="ONNX file to write (one "
    "self-contained file). Default: <input>.onnx beside "
    "the input.")
ONNX_OPSET = typer.Option(17, "--opset", min=13, max=21, help="ONNX opset, 13 to 21.")
ONNX_DYNAMIC_BATCH = typer.Option(False, "--dynamic-batch", help="Make the batch axis "
    "dynamic ('batch'); verified at batch 1 and at larger "
    "batches. Default: a static batch of --batch.")
ONNX_MAX_BATCH = typer.Option(None, "--max-batch", min=1, max=MAX_BATCH, help="With "
    "--dynamic-batch: the largest batch you will run "
    "(stored in the metadata for TensorRT profiles; "
    "verification runs batches of up to this size).")
ONNX_BATCH = typer.Option(1, "--batch", min=1, max=MAX_BATCH, help="The static batch size (with "
    "--dynamic-batch: the example batch used while exporting).")
ONNX_IMG_SIZE = typer.Option(224, "--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input height and width of the "
    "exported graph and of the verification inputs (a multiple "
    "of the variant's total stride, 32 for the published stride "
    "variants; at least 32 for the ada_pool variant).")
ONNX_SIMPLIFY = typer.Option(True, "--simplify/--no-simplify", help="Run onnxslim on the "
    "cleaned graph (verification always runs on the final "
    "graph).")
ONNX_PRECISION = typer.Option(None, "--precision", help="fp32 (default); fp16 (float16 "
    "weights and compute, nodes whose values do not fit "
    "kept float32, float32 input/output unless --fp16-io); "
    "int8 (explicit Q/DQ: symmetric per-channel weights, "
    "symmetric activations, calibrated).")
ONNX_ALLOW_INEXACT = typer.Option(False, "--allow-inexact", help="Fuse a training "
    "checkpoint even when act_learn < 1 (approximate merge; "
    "verification still judges it).")
ONNX_THREADS = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="ONNX Runtime intra-op "
    "threads for verification (default: its own).")
ONNX_NO_VERIFY = typer.Option(False, "--no-verify", help="Skip the ONNX Runtime "
    "verification (the file then carries no figures).")
QUANTIZE_ONNX_FILE = typer.Argument(..., help="The fp32 ONNX file (one input [N,3,H,W], one "
    "output), e.g. from vnexport onnx.")
QUANTIZE_PRECISION = typer.Option(None, "--precision", help="Required (or --fp16 / "
    "--int8). fp16: float16 weights and "
    "compute, nodes that do not fit kept float32. int8: "
    "explicit QuantizeLinear/DequantizeLinear (Q/DQ).")
QUANTIZE_OUTPUT = typer.Option(..., "--output", "-o", help="ONNX file to write.")
QUANTIZE_REFERENCE = typer.Option(None, "--reference", help="Verify against the "
    "fp32 training form of this checkpoint (the "
    "loading options below apply to it). Without it, "
    "against the fp32 ONNX file on ONNX Runtime.")
QUANTIZE_IMG_SIZE = typer.Option(None, "--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input size, needed "
    "only when the ONNX input's height/width are "
    "symbolic.")
TRT_SOURCE = typer.Argument(..., help="An ONNX file (fp32, fp16 graph, or Q/DQ int8), or a "
    "training/deploy checkpoint (the ONNX stage runs on the way).")
TRT_OUTPUT = typer.Option(None, "--output", "-o", help="Engine (plan) to write. "
    "Default: <source>.engine beside the source "
    "(<checkpoint>_<precision>.engine for a checkpoint). "
    "Provenance goes to <engine>.json beside it.")
TRT_PRECISION = typer.Option(None, "--precision", help="With a checkpoint: "
    "the precision of the ONNX file to export "
    "(default fp32). With an ONNX file the "
    "precision is read from the file; if given it "
    "must match.")
TRT_MIN_BATCH = typer.Option(None, "--min-batch", min=1, max=MAX_BATCH,
    help="Smallest batch of the "
    "optimization profile (default 1, or the file's "
    "static batch).")
TRT_OPT_BATCH = typer.Option(None, "--opt-batch", min=1, max=MAX_BATCH,
    help="Batch TensorRT tunes for "
    "(default: --min-batch).")
TRT_MAX_BATCH = typer.Option(None, "--max-batch", min=1, max=MAX_BATCH, help="Largest batch of the "
    "profile (default: --opt-batch). An ONNX file with a "
    "static batch that does not fit is refused.")
TRT_WORKSPACE = typer.Option(None, "--workspace", help="Builder workspace pool "
    "limit in GiB (default: TensorRT's, the GPU's "
    "memory).")
TRT_TIMING_CACHE = typer.Option(None, "--timing-cache", help="Datacenter TensorRT: tactic "
    "timing cache, loaded if it exists, updated and saved "
    "after the build (speeds up later builds).")
TRT_BUILDER = typer.Option(Builder.auto, "--builder", help="tensorrt: datacenter TensorRT, "
    "builds on the GPU it targets. tensorrt-rtx: TensorRT for RTX, builds on the CPU (no GPU "
    "needed) for --compute-capability targets; its engines need the TensorRT-RTX runtime. "
    "auto: what the options call for, else TensorRT where installed, else TensorRT-RTX.")
TRT_COMPUTE_CAPABILITY = typer.Option(None, "--compute-capability", help="TensorRT-RTX: the "
    "GPUs to build for, e.g. 8.0 (A100) or 8.0,8.6,8.9 (default: TensorRT-RTX's portable "
    "set, 8.0, 8.6, 8.9, 12.0 and later).")
TRT_HARDWARE_COMPAT = typer.Option(HardwareCompat.none, "--hardware-compat",
    help="Datacenter TensorRT. none: this GPU's architecture only; "
    "ampere+: one engine for A100 and newer "
    "(built on Ampere or newer; may be slower); "
    "same-cc: GPUs of this compute capability.")
TRT_BUILDER_OPT_LEVEL = typer.Option(None, "--builder-opt-level", min=0, max=5, help="Builder "
    "optimization level 0..5 (TensorRT default "
    "3; higher builds longer, may run faster).")
TRT_REFERENCE = typer.Option(None, "--reference", help="With an ONNX source: "
    "the training checkpoint to verify against. "
    "Without it the engine is verified against ONNX "
    "Runtime on the same ONNX file.")
TRT_ALLOW_INEXACT = typer.Option(False, "--allow-inexact", help="With a checkpoint whose "
    "act_learn < 1: export anyway (verification judges it).")
TRT_OPSET = typer.Option(17, "--opset", min=13, max=21, help="ONNX opset when exporting a "
    "checkpoint, 13 to 21.")
TRT_KEEP_ONNX = typer.Option(None, "--keep-onnx", help="With a checkpoint: also "
    "keep the exported ONNX file here (default: a "
    "temporary file, removed).")
TRT_IMG_SIZE = typer.Option(None, "--img-size", min=8, max=MAX_IMG_SIZE, help="Input size: for a "
    "checkpoint (default 224), or for an ONNX file with "
    "dynamic height/width (must match a static one).")
TRT_NO_VERIFY = typer.Option(False, "--no-verify", help="Build without running the engine "
    "(needed on a machine without a CUDA GPU); the provenance says it was not verified.")
TRT_VERBOSE = typer.Option(False, "--verbose", "-v", help="Show Polygraphy's and "
    "TensorRT's build log.")
VERIFY_REFERENCE = typer.Argument(..., help="The training checkpoint: the independent "
    "reference every artifact is compared with.")
VERIFY_ARTIFACTS = typer.Argument(..., help="Deploy checkpoints (.pth, .safetensors), "
    "ONNX files (.onnx) and TensorRT engines "
    "(.engine, .plan) to verify.")
VERIFY_LOCATE_STAGE = typer.Option(False, "--locate", help="For a failing deploy checkpoint "
    "or ONNX file, report the first stage (stem, stages.i, "
    "head) whose output departs from the reference.")
VERIFY_IMG_SIZE = typer.Option(None, "--img-size", min=8, max=MAX_IMG_SIZE, help="Input "
    "height and width. Default: the input size of the ONNX artifacts (read from the file), "
    "else 224.")
VERIFY_THREADS = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="CPU threads for "
    "PyTorch and ONNX Runtime (default: theirs).")
EVAL_ARTIFACTS = typer.Argument(..., help="Checkpoints (training or deploy form), ONNX files "
    "(fp32, fp16, int8) and TensorRT engines (.engine, .plan, .trt). The first is the "
    "reference and must be a checkpoint; every other is paired with it image by image.")
EVAL_IMAGES = typer.Option(..., "--images", help="Labelled images in ImageFolder layout: one "
    "subfolder per class, class index = position of its name in sorted order (ImageNet val in "
    "synset folders gives the standard indices).")
EVAL_LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate on N images only, spread "
    "evenly over the classes (default: all).")
EVAL_IMG_SIZE = typer.Option(None, "--img-size", min=8, max=MAX_IMG_SIZE, help="Input height "
    "and width. Default: the input size of the ONNX artifacts (read from the file), else 224.")
EVAL_CROP_PCT = typer.Option(0.875, "--crop-pct", min=0.05, max=1.0, help="Sizes 33 to 383: "
    "the shorter side is resized to int(size / crop_pct) before the centre crop (the authors' "
    "evaluation; 0.875 = 224/256).")
EVAL_BATCH = typer.Option(32, "--batch", min=1, max=MAX_BATCH, help="Images per batch.")
EVAL_THREADS = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="CPU threads for "
    "PyTorch and ONNX Runtime (default: theirs).")
EVAL_MAX_DROP = typer.Option(None, "--max-drop", min=0.0, max=100.0, help="Exit 1 naming every "
    "artifact whose top-1 is more than this many points below the reference's.")
BENCH_ARTIFACT = typer.Argument(..., help="Training or deploy checkpoint, ONNX file or "
    "TensorRT engine.")
BENCH_BATCH = typer.Option("1,8,32", "--batch", help="Batch sizes, comma-separated.")
BENCH_RUNS = typer.Option(50, "--runs", min=1, max=MAX_RUNS, help="Timed runs per batch size.")
BENCH_WARMUP = typer.Option(10, "--warmup", min=0, max=MAX_RUNS, help="Untimed runs before timing.")
BENCH_THREADS = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help="CPU threads for "
    "PyTorch and ONNX Runtime (default: theirs).")
BENCH_DEVICE = typer.Option(Device.cpu, "--device", help="Where checkpoints and ONNX "
    "files run (cuda: PyTorch on the GPU, ONNX Runtime's CUDA "
    "provider). Engines always run on the GPU.")
BENCH_CUDA_GRAPHS = typer.Option(False, "--cuda-graphs", help="PyTorch on CUDA: capture "
    "the forward pass once as a CUDA graph and replay it.")
BENCH_IMG_SIZE = typer.Option(None, "--img-size", min=8, max=MAX_IMG_SIZE, help="Input height and "
    "width. Default: the ONNX file's fixed size, else "
    "224.")
DEMO_WORKDIR = typer.Option(Path("vnexport-demo"), "--workdir", help="Folder for the demo's "
    "files (created; its earlier demo files are replaced).")
DEMO_VARIANT = typer.Option("vanillanet_5", "--variant", help="Which variant to build.")
DEMO_IMG_SIZE = typer.Option(224, "--img-size", min=8, max=MAX_IMG_SIZE,
    help="Input size for verification.")
DEMO_N = typer.Option(8, "--n", min=1, max=MAX_INPUTS, help="How many verification inputs.")


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
               progress=note if sys.stderr.isatty() else _quiet)


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
    ckpt: Path = INFO_CKPT,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    img_size: int = ImgSizeOpt,
    as_json: bool = INFO_AS_JSON,
    trust: bool = TrustOpt,
) -> None:
    """What is this file? A checkpoint: form, variant, config, weights used, epoch, act_learn,
    size, cost. An ONNX file: input shape, precision, opset, op inventory, vnexport metadata.
    A TensorRT engine (.engine, .plan, .trt): its provenance, TensorRT-RTX's header check, and
    its own tensors and profile (those need its runtime and a CUDA GPU: without them the facts
    are printed, then exit 3)."""
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
    if engine and result.missing is not None:
        raise result.missing


@app.command()
@handle_errors
def fuse(
    ckpt: Path = FUSE_CKPT,
    output: Optional[Path] = FUSE_OUTPUT,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    allow_inexact: bool = FUSE_ALLOW_INEXACT,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: int = ImgSizeOpt,
    seed: int = SeedOpt,
    max_rel_err: float = MaxRelOpt,
    min_top1: float = MinTop1Opt,
    no_verify: bool = FUSE_NO_VERIFY,
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
    trust: bool = TrustOpt,
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
    ckpt: Path = ONNX_CKPT,
    output: Optional[Path] = ONNX_OUTPUT,
    opset: int = ONNX_OPSET,
    dynamic_batch: bool = ONNX_DYNAMIC_BATCH,
    max_batch: Optional[int] = ONNX_MAX_BATCH,
    batch: int = ONNX_BATCH,
    img_size: int = ONNX_IMG_SIZE,
    simplify: bool = ONNX_SIMPLIFY,
    precision: Optional[Precision] = ONNX_PRECISION,
    fp32: bool = PREC_FP32,
    fp16: bool = PREC_FP16,
    int8: bool = PREC_INT8,
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
    allow_inexact: bool = ONNX_ALLOW_INEXACT,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    threads: Optional[int] = ONNX_THREADS,
    no_verify: bool = ONNX_NO_VERIFY,
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
    from .stages import onnx as stage
    from .stages.quantize import Conversion

    v = dict(locals(), precision=precision_of(locals(), "fp32"))
    opts = pick(stage.OnnxOptions, v, export=pick(stage.Export, v), source=pick(stage.Source, v),
                conversion=pick(Conversion, v), check=pick(stage.Check, v))
    run_stage(v, lambda lines: stage.run(opts, lines))


@app.command()
@handle_errors
def quantize(
    onnx_file: Path = QUANTIZE_ONNX_FILE,
    precision: Optional[Precision] = QUANTIZE_PRECISION,
    fp32: bool = PREC_FP32,
    fp16: bool = PREC_FP16,
    int8: bool = PREC_INT8,
    output: Path = QUANTIZE_OUTPUT,
    calib_images: Optional[Path] = CalibImagesOpt,
    calib_n: int = CalibNOpt,
    method: CalibMethod = MethodOpt,
    fp16_io: bool = Fp16IoOpt,
    cache: Optional[Path] = CacheOpt,
    int8_stem: bool = Int8StemOpt,
    reference: Optional[Path] = QUANTIZE_REFERENCE,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    trust: bool = TrustOpt,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    seed: int = SeedOpt,
    img_size: Optional[int] = QUANTIZE_IMG_SIZE,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
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
    source: Path = TRT_SOURCE,
    output: Optional[Path] = TRT_OUTPUT,
    precision: Optional[Precision] = TRT_PRECISION,
    fp32: bool = PREC_FP32,
    fp16: bool = PREC_FP16,
    int8: bool = PREC_INT8,
    builder: Builder = TRT_BUILDER,
    compute_capability: Optional[str] = TRT_COMPUTE_CAPABILITY,
    min_batch: Optional[int] = TRT_MIN_BATCH,
    opt_batch: Optional[int] = TRT_OPT_BATCH,
    max_batch: Optional[int] = TRT_MAX_BATCH,
    workspace: Optional[float] = TRT_WORKSPACE,
    timing_cache: Optional[Path] = TRT_TIMING_CACHE,
    hardware_compat: HardwareCompat = TRT_HARDWARE_COMPAT,
    builder_opt_level: Optional[int] = TRT_BUILDER_OPT_LEVEL,
    reference: Optional[Path] = TRT_REFERENCE,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    allow_inexact: bool = TRT_ALLOW_INEXACT,
    opset: int = TRT_OPSET,
    keep_onnx: Optional[Path] = TRT_KEEP_ONNX,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: Optional[int] = TRT_IMG_SIZE,
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    no_verify: bool = TRT_NO_VERIFY,
    force: bool = ForceOpt,
    json_out: Optional[str] = JsonOpt,
    verbose: bool = TRT_VERBOSE,
    trust: bool = TrustOpt,
) -> None:
    """Build a strongly typed TensorRT engine, verify it, write it with its provenance.

    Builders: datacenter TensorRT 10.12+ / 11.x (on the GPU it targets) or TensorRT for RTX
    (on the CPU, for --compute-capability targets; --builder). The precision comes from the
    ONNX file (an FP16 graph, or Q/DQ INT8), not from builder flags. Verified against the fp32
    training form when a checkpoint is at hand (the source, or --reference), else against ONNX
    Runtime on the same file. Tolerances by precision: fp32 max rel err 1e-4 and 100% top-1
    (TF32 off); fp16 cosine >= 0.9999 and top-1 >= 99%; int8 top-1 >= 98%. A failed check
    exits 1 and writes nothing. No CUDA GPU to run the engine on: add --no-verify.

    Order of checks: options and input files first (exit 2, also without TensorRT), then the
    runtime (the builder, and a GPU unless --no-verify: exit 3 with one line), then the build.
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
    reference: Path = VERIFY_REFERENCE,
    artifacts: list[Path] = VERIFY_ARTIFACTS,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    images: Optional[Path] = ImagesOpt,
    n: int = NOpt,
    img_size: Optional[int] = VERIFY_IMG_SIZE,
    seed: int = SeedOpt,
    max_rel_err: Optional[float] = TolMaxRelOpt,
    min_cosine: Optional[float] = TolMinCosineOpt,
    min_top1: Optional[float] = TolMinTop1Opt,
    locate_stage: bool = VERIFY_LOCATE_STAGE,
    threads: Optional[int] = VERIFY_THREADS,
    json_out: Optional[str] = JsonOpt,
    force: bool = JsonForceOpt,
    trust: bool = TrustOpt,
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
    artifacts: list[Path] = EVAL_ARTIFACTS,
    images: Path = EVAL_IMAGES,
    limit: Optional[int] = EVAL_LIMIT,
    img_size: Optional[int] = EVAL_IMG_SIZE,
    crop_pct: float = EVAL_CROP_PCT,
    batch: int = EVAL_BATCH,
    threads: Optional[int] = EVAL_THREADS,
    max_drop: Optional[float] = EVAL_MAX_DROP,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    json_out: Optional[str] = JsonOpt,
    force: bool = JsonForceOpt,
    trust: bool = TrustOpt,
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
    artifact: Path = BENCH_ARTIFACT,
    batch: str = BENCH_BATCH,
    runs: int = BENCH_RUNS,
    warmup: int = BENCH_WARMUP,
    threads: Optional[int] = BENCH_THREADS,
    device: Device = BENCH_DEVICE,
    cuda_graphs: bool = BENCH_CUDA_GRAPHS,
    img_size: Optional[int] = BENCH_IMG_SIZE,
    key: Key = KeyOpt,
    model: Optional[str] = ModelOpt,
    strides: Optional[str] = StridesOpt,
    ada_pool: Optional[str] = AdaPoolOpt,
    act_learn: Optional[float] = ActLearnOpt,
    json_out: Optional[str] = JsonOpt,
    force: bool = JsonForceOpt,
    trust: bool = TrustOpt,
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
    workdir: Path = DEMO_WORKDIR,
    variant: str = DEMO_VARIANT,
    img_size: int = DEMO_IMG_SIZE,
    n: int = DEMO_N,
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


class InstanceKind(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


TRITON_ARTIFACTS = typer.Argument(..., help="ONNX files (.onnx) and/or TensorRT engines (with "
    "the <engine>.json vnexport trt writes).")
TRITON_OUTPUT = typer.Option(..., "--output", "-o", help="The model repository folder (created "
    "if missing; one model folder per artifact).")
TRITON_NAME = typer.Option(None, "--name", help="Model name (one artifact only). Default: the "
    "file name before its first dot.")
TRITON_VERSION = typer.Option(1, "--version", help="Model version folder.")
TRITON_BACKEND = typer.Option(TritonBackend.platform, "--backend", help="platform: "
    "tensorrt_plan / onnxruntime_onnx as the file is; python: a model.py running the ONNX "
    "file on onnxruntime (servers without the onnxruntime backend, such as vnexport serve's).")
TRITON_MAX_BATCH = typer.Option(None, "--max-batch", help="max_batch_size. Default: the "
    "engine's profile maximum, the ONNX file's max_batch metadata, else 16.")
TRITON_PREFERRED = typer.Option(None, "--preferred-batch", help="Dynamic batching's preferred "
    "batch sizes, e.g. 4,8.")
TRITON_QUEUE_DELAY = typer.Option(100, "--max-queue-delay-us", help="Dynamic batching: the "
    "longest wait to form a batch, in microseconds.")
TRITON_INSTANCES = typer.Option(1, "--instances", help="Model instances (instance_group).")
TRITON_KIND = typer.Option(InstanceKind.auto, "--kind", help="Instance kind; an engine is "
    "always KIND_GPU.")
TRITON_LABELS = typer.Option(None, "--labels", help="Class names, one per line (as many as "
    "classes): top-k labels through Triton's classification extension.")
TRITON_PREPROCESS = typer.Option(False, "--preprocess", help="Add a Python-backend "
    "preprocessing model and <name>_ensemble: image bytes in, logits (labels) out.")
TRITON_FORCE = typer.Option(False, "--force", "-f", help="Replace existing model folders.")
SERVE_TARGET = typer.Argument(..., help="A model repository folder, or one ONNX file (served "
    "from a temporary Python-backend repository).")
SERVE_HOST = typer.Option("127.0.0.1", "--host", help="Address to listen on.")
SERVE_HTTP = typer.Option(8000, "--http-port")
SERVE_GRPC = typer.Option(8001, "--grpc-port")
SERVE_METRICS = typer.Option(8002, "--metrics-port")
SERVE_JSON = typer.Option(False, "--json", help="Print the ready report as one JSON line "
    "instead of text.")


@app.command()
@handle_errors
def triton(
    artifacts: list[Path] = TRITON_ARTIFACTS,
    output: Path = TRITON_OUTPUT,
    name: Optional[str] = TRITON_NAME,
    version: int = TRITON_VERSION,
    backend: TritonBackend = TRITON_BACKEND,
    max_batch: Optional[int] = TRITON_MAX_BATCH,
    preferred_batch: Optional[str] = TRITON_PREFERRED,
    max_queue_delay_us: int = TRITON_QUEUE_DELAY,
    instances: int = TRITON_INSTANCES,
    kind: InstanceKind = TRITON_KIND,
    labels: Optional[Path] = TRITON_LABELS,
    preprocess: bool = TRITON_PREPROCESS,
    force: bool = TRITON_FORCE,
    json_out: Optional[str] = JsonOpt,
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
    target: Path = SERVE_TARGET,
    host: str = SERVE_HOST,
    http_port: int = SERVE_HTTP,
    grpc_port: int = SERVE_GRPC,
    metrics_port: int = SERVE_METRICS,
    as_json: bool = SERVE_JSON,
) -> None:
    """Run Triton here (the nvidia-pytriton wheel's server, CPU) until Ctrl-C or SIGTERM."""
    from .stages import serve as stage

    def ready(result) -> None:
        for line in [json.dumps(result.to_dict())] if as_json else result.ready_lines():
            echo(line)

    lines = log()
    result = stage.run(pick(stage.ServeOptions, locals()), lines, ready)
    finish(result, None, dataclasses.replace(lines, echo=note))


@app.callback(invoke_without_command=True)
def main(version: bool = typer.Option(False, "--version", help="Print the version and exit.")):
    if version:
        echo(f"vnexport {__version__}")
        raise typer.Exit(0)


def run() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    run()

