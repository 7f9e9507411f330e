"""Loading VanillaNet checkpoints as users have them, without running code from them.

Takes: the training script's dict (``model``, ``model_ema``, ``epoch``, ``args`` as
argparse.Namespace, ``optimizer``, ...), a ``{"model": ...}`` deploy file, a bare state dict, a
``state_dict`` wrapper, ``module.`` prefixes, and ``.safetensors`` files. Works out the form
(training or deploy), the variant (from ``args.model`` or from tensor shapes) and ``act_learn``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import pickle
import re
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .errors import VnexportError
from .fileio import check_regular
from .model import VARIANTS, VanillaNet, VanillaNetConfig, build, variant_name

# The only non-plain class a training-script checkpoint holds.
SAFE_GLOBALS = [argparse.Namespace]
STATE_DICT_KEYS = ("model_ema", "model", "state_dict")
KEY_CHOICES = ("auto",) + STATE_DICT_KEYS
_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Checkpoint:
    """A loaded checkpoint, everything a pipeline stage needs to know about it."""

    path: Path
    sha256: str
    form: str  # "training" or "deploy"
    cfg: VanillaNetConfig
    state_dict: dict[str, torch.Tensor]
    key: str | None  # which entry of the file held the weights (None: a bare state dict)
    epoch: int | None = None
    act_learn: float = 1.0
    act_learn_source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # a vnexport deploy file's provenance
    notes: list[str] = field(default_factory=list)

    @property
    def variant(self) -> str:
        return variant_name(self.cfg) or "custom"

    def build_model(self, dtype: torch.dtype = torch.float32) -> VanillaNet:
        """The network of this checkpoint's form with its weights loaded (strict), in eval mode."""
        model = build(self.cfg, deploy=self.form == "deploy", init=False)
        load_weights(model, self.state_dict, self.path)
        model.set_act_learn(self.act_learn)
        return model.to(dtype).eval().requires_grad_(False)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _few(names, n: int = 4) -> str:
    names = list(names)
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def check_fits(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor],
               path: Path | str) -> None:
    """The key set and every shape must match (``expected`` may live on the meta device)."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        raise VnexportError("; ".join(parts), path)
    bad = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})"
           for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise VnexportError(f"shape mismatch: {_few(bad, 3)}", path)


def load_weights(model: VanillaNet, sd: Mapping[str, torch.Tensor], path: Path | str) -> None:
    """``load_state_dict(strict=True)``, with a one-line error that names what does not fit."""
    check_fits(model.state_dict(), sd, path)
    model.load_state_dict(sd, strict=True, assign=True)


# --------------------------------------------------------------------------------------------
# reading the file


def _torch_load(path: Path, trust: bool) -> Any:
    with warnings.catch_warnings():  # torch's pickle-protocol and legacy-format warnings
        warnings.simplefilter("ignore")
        return _torch_load_quiet(path, trust)


def _torch_load_quiet(path: Path, trust: bool) -> Any:
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:  # legacy (non-zip) files cannot be memory-mapped
                if "mmap" not in str(e) and "zip" not in str(e).lower():
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        # torch's wordings: "Unsupported global: GLOBAL a.B was not an allowed global",
        # "unsupported GLOBAL posix.system whose module posix is blocked"
        m = re.search(r"unsupported global\S*\s+(?:GLOBAL\s+)?([\w.]+)", text, re.I)
        if m:
            raise VnexportError(
                f"refused to load: the file needs the class {m.group(1)}, which a training "
                "checkpoint does not; loading it would run code from the file "
                "(pass --trust-remote-pickle only for a file whose origin you trust)", path
            ) from None
        raise VnexportError(f"not a PyTorch checkpoint ({_unpickler_reason(text)})",
                            path) from None


def _unpickler_reason(text: str) -> str:
    """The weights-only unpickler's own reason, without torch's advice to turn the safety off."""
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if m:
        return "its pickle does not parse: " + _first_line(m.group(1))
    return _first_line(text)


def _is_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then the JSON header."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= size - 8


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:200]
    return "unreadable"


def read_file(path: str | os.PathLike, trust: bool = False) -> Any:
    """The raw object in a checkpoint file, with every failure turned into a VnexportError."""
    path = Path(path)
    if not path.exists():
        raise VnexportError("no such file", path)
    if path.is_dir():
        raise VnexportError("is a directory, not a checkpoint file", path)
    if path.suffix.lower() in (".onnx", ".engine", ".plan", ".trt"):
        raise VnexportError(f"a {path.suffix} file, not a checkpoint: this takes a training or "
                            "deploy checkpoint (.pth, .pt, .safetensors)", path)
    check_regular(path)  # a FIFO or device must not block the open below
    size = path.stat().st_size
    if size == 0:
        raise VnexportError("the file is empty", path)
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or _is_safetensors(head, size):
        try:
            from safetensors.torch import load_file
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError and others
            raise VnexportError(f"not a readable safetensors file ({_first_line(e)})", path) from None
    if head[:4] == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        raise VnexportError("the file is truncated or corrupt (its zip archive has no end)", path)
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":
        # torch.save writes a zip archive (PyTorch >= 1.6) or, legacy, a protocol >= 2 pickle
        raise VnexportError("not a PyTorch checkpoint: neither a zip archive nor a pickle (it "
                            f"starts with {head[:8]!r})", path)
    try:
        return _torch_load(path, trust)
    except VnexportError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError, AttributeError, ImportError, TypeError, KeyError) as e:
        text = _first_line(e)
        if "central directory" in text or isinstance(e, EOFError) or "truncated" in text.lower():
            raise VnexportError(f"the file is truncated or corrupt ({text})", path) from None
        raise VnexportError(f"not a PyTorch checkpoint ({text})", path) from None
    except Exception as e:  # noqa: BLE001 - a damaged pickle can fail the unpickler anywhere
        raise VnexportError(f"not a PyTorch checkpoint (unreadable: {type(e).__name__}: "
                            f"{_first_line(e)})", path) from None


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def select_state_dict(obj: Any, key: str, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """Pick the state dict out of the file's top-level object, by ``--key``."""
    if key not in KEY_CHOICES:
        raise VnexportError(f"--key must be one of {', '.join(KEY_CHOICES)}, not {key!r}")
    if _is_state_dict(obj):
        if key != "auto":
            raise VnexportError(f"--key {key}: the file is a bare state dict, it has no entries", path)
        return dict(obj), None
    if not isinstance(obj, Mapping):
        raise VnexportError(f"not a checkpoint: it holds a {type(obj).__name__}, not a dict", path)
    if key == "auto":
        for k in STATE_DICT_KEYS:
            if k in obj and _is_state_dict(obj[k]):
                return dict(obj[k]), k
        raise VnexportError(
            f"no state dict found: the file has entries {_few(map(str, obj.keys()), 8)}, "
            f"none of {', '.join(STATE_DICT_KEYS)} holds tensors", path)
    if key not in obj:
        raise VnexportError(
            f"--key {key}: no such entry; the file has {_few(map(str, obj.keys()), 8)}", path)
    if not _is_state_dict(obj[key]):
        raise VnexportError(f"--key {key}: that entry is not a state dict", path)
    return dict(obj[key]), key


def strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


# weights of these dtypes are folded (in float32/float64); others are refused by name
FOLDABLE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_dtypes(expected: Mapping[str, torch.Tensor], sd: Mapping[str, torch.Tensor],
                 path: Path) -> None:
    """Every weight must be a float the tool can fold; integer counters must be integers."""
    for k, like in expected.items():
        dtype = sd[k].dtype
        if like.is_floating_point():
            ok = dtype in FOLDABLE_DTYPES
            wanted = "float16, bfloat16, float32 or float64"
        else:  # BatchNorm's num_batches_tracked
            ok = not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
            wanted = "an integer"
        if not ok:
            raise VnexportError(f"{k} holds {str(dtype).replace('torch.', '')} values; vnexport "
                                f"folds {wanted} there", path)


def check_values(sd: Mapping[str, torch.Tensor], path: Path) -> None:
    """NaN or Inf anywhere, or a negative BN running_var, is refused. Call it after the key,
    shape and dtype checks: it reads every value."""
    for k, v in sd.items():
        if not v.is_floating_point():
            continue
        if not bool(torch.isfinite(v).all()):
            kind = "NaN" if bool(torch.isnan(v).any()) else "Inf"
            raise VnexportError(f"{kind} in the weights ({k})", path)
        if k.endswith("running_var") and bool((v < 0).any()):
            raise VnexportError(f"negative BatchNorm running_var ({k})", path)


# --------------------------------------------------------------------------------------------
# what network is it


def detect_form(sd: Mapping[str, torch.Tensor], path: Path) -> str:
    if "stem1.0.weight" in sd:
        return "training"
    if "stem.0.weight" in sd:
        return "deploy"
    raise VnexportError(
        "not a VanillaNet state dict (no stem1.0.weight or stem.0.weight; it has "
        f"{_few(sd.keys())})", path)


def shape_config(sd: Mapping[str, torch.Tensor], form: str, path: Path) -> dict[str, Any]:
    """dims, act_num, num_classes and in_chans as the tensor shapes give them."""
    stem, act, head = (("stem1.0.weight", "stem2.2.weight", "cls2.0.weight") if form == "training"
                       else ("stem.0.weight", "stem.1.weight", "cls.2.weight"))
    conv = "conv2.0.weight" if form == "training" else "conv.weight"
    try:
        c0, in_chans = sd[stem].shape[:2]
        k = sd[act].shape[-1]
        dims = [int(c0)]
        i = 0
        while f"stages.{i}.{conv}" in sd:
            dims.append(int(sd[f"stages.{i}.{conv}"].shape[0]))
            i += 1
        num_classes = int(sd[head].shape[0])
    except (KeyError, IndexError, ValueError) as e:
        raise VnexportError(f"not a complete VanillaNet state dict (missing {e})", path) from None
    if i == 0:
        raise VnexportError(f"no stages found (no stages.0.{conv})", path)
    if k % 2 != 1:
        raise VnexportError(f"series-activation kernel {k}x{k} is not odd", path)
    return dict(dims=tuple(dims), act_num=(k - 1) // 2, num_classes=num_classes,
                in_chans=int(in_chans))


def resolve_config(shapes: dict[str, Any], path: Path, model: str | None,
                   strides: tuple[int, ...] | None, ada_pool: tuple[int, ...] | None,
                   hint: str | None, notes: list[str]) -> VanillaNetConfig:
    """The full config: shapes give dims etc.; strides come from a name, the user, or a unique
    match among the published variants."""
    def with_shapes(base: VanillaNetConfig, origin: str) -> VanillaNetConfig:
        if base.dims != shapes["dims"]:
            raise VnexportError(
                f"{origin} has dims {list(base.dims)}, but the weights have {list(shapes['dims'])}",
                path)
        return base.replace(act_num=shapes["act_num"], num_classes=shapes["num_classes"],
                            in_chans=shapes["in_chans"])

    if strides is not None:
        try:
            return VanillaNetConfig(dims=shapes["dims"], strides=strides, ada_pool=ada_pool,
                                    act_num=shapes["act_num"], num_classes=shapes["num_classes"],
                                    in_chans=shapes["in_chans"])
        except ValueError as e:
            raise VnexportError(f"--strides/--ada-pool: {e}", path) from None
    if model is not None:
        if model not in VARIANTS:
            raise VnexportError(f"--model {model!r} is not a known variant "
                                f"({', '.join(VARIANTS)})")
        return with_shapes(VARIANTS[model], f"--model {model}")
    if hint in VARIANTS:
        notes.append(f"variant {hint} from the checkpoint's args.model")
        return with_shapes(VARIANTS[hint], f"args.model ({hint})")
    candidates = [n for n, c in VARIANTS.items() if c.dims == shapes["dims"]]
    if len(candidates) == 1:
        notes.append(f"variant {candidates[0]} detected from the tensor shapes")
        return with_shapes(VARIANTS[candidates[0]], candidates[0])
    if len(candidates) > 1:
        raise VnexportError(
            "the weights fit more than one variant (strides are not stored in the weights): "
            f"{', '.join(candidates)}; pass --model NAME", path)
    raise VnexportError(
        f"a custom VanillaNet (dims {list(shapes['dims'])}) that matches no published variant; "
        "strides are not stored in the weights: pass --strides (and --ada-pool if it has one)",
        path)


def schedule_act_learn(epoch: int, decay_epochs: int, linear: bool) -> float:
    """The training script's act_learn for the epoch a checkpoint was saved at."""
    if decay_epochs <= 0:
        return 1.0
    e = min(max(epoch, 0), decay_epochs)
    if linear:
        return e / decay_epochs
    return 0.5 * (1.0 - math.cos(math.pi * e / decay_epochs))


def _args_get(args: Any, name: str) -> Any:
    if isinstance(args, argparse.Namespace):
        return getattr(args, name, None)
    if isinstance(args, Mapping):
        return args.get(name)
    return None


def load_checkpoint(path: str | os.PathLike, key: str = "auto", model: str | None = None,
                    strides: tuple[int, ...] | None = None,
                    ada_pool: tuple[int, ...] | None = None,
                    act_learn: float | None = None, trust: bool = False) -> Checkpoint:
    """Read, select, clean, check and identify a checkpoint. Raises VnexportError on bad input."""
    path = Path(path)
    obj = read_file(path, trust=trust)
    with ThreadPoolExecutor(1) as pool:  # hashing releases the GIL: overlap it with the checks
        digest = pool.submit(sha256_of, path)
        ckpt = _identify(obj, path, key, model, strides, ada_pool, act_learn)
        ckpt.sha256 = digest.result()
    return ckpt


def _identify(obj: Any, path: Path, key: str, model: str | None,
              strides: tuple[int, ...] | None, ada_pool: tuple[int, ...] | None,
              act_learn: float | None) -> Checkpoint:
    sd, used = select_state_dict(obj, key, path)
    sd = strip_prefixes(sd)
    form = detect_form(sd, path)
    notes: list[str] = []
    top = obj if isinstance(obj, Mapping) and not _is_state_dict(obj) else {}
    args = top.get("args")
    meta = top.get("vnexport") if isinstance(top.get("vnexport"), Mapping) else {}
    if used is not None:
        others = [k for k in STATE_DICT_KEYS if k != used and k in top]
        extra = f" (the file also has {', '.join(others)})" if others else ""
        notes.append(f"weights from '{used}'{extra}")
    cfg = _config(sd, form, path, meta, model, strides, ada_pool, args, notes)
    # keys, shapes and dtypes before any value is read (a huge stride-0 tensor under an extra
    # key is refused by name, never allocated)
    with torch.device("meta"):
        expected = VanillaNet(cfg, deploy=form == "deploy").state_dict()
    check_fits(expected, sd, path)
    check_dtypes(expected, sd, path)
    check_values(sd, path)
    epoch = _whole_number(top.get("epoch"), "epoch", path)
    value, source = _act_learn(form, act_learn, epoch, args, path)
    return Checkpoint(path=path, sha256="", form=form, cfg=cfg, state_dict=sd,
                      key=used, epoch=epoch, act_learn=value, act_learn_source=source,
                      meta=dict(meta), notes=notes)


def _config(sd: Mapping[str, torch.Tensor], form: str, path: Path, meta: Mapping,
            model: str | None, strides: tuple[int, ...] | None,
            ada_pool: tuple[int, ...] | None, args: Any, notes: list[str]) -> VanillaNetConfig:
    if strides is None and model is None and meta.get("config"):
        try:
            cfg = VanillaNetConfig.from_dict(dict(meta["config"]))
            shapes = shape_config(sd, form, path)
            if cfg.dims != shapes["dims"]:
                raise ValueError("config does not match the weights")
        except (ValueError, TypeError, KeyError, OverflowError) as e:
            raise VnexportError(f"vnexport metadata is inconsistent: {e}", path) from None
        notes.append("config from the file's vnexport metadata")
        return cfg
    hint = _args_get(args, "model")
    if hint is not None and not isinstance(hint, str):
        raise VnexportError(f"args.model is a {type(hint).__name__}, not a variant name "
                            "(pass --model or --strides)", path)
    return resolve_config(shape_config(sd, form, path), path, model, strides, ada_pool, hint,
                          notes)


def _whole_number(value: Any, name: str, path: Path) -> int | None:
    """A whole number from the file (int, or a finite float without a fraction), else refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VnexportError(f"{name} is a {type(value).__name__}, not a whole number", path)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise VnexportError(f"{name} is {value}, not a whole number", path)
    if abs(value) > 2 ** 31:
        raise VnexportError(f"{name} is {value}, out of range", path)
    return int(value)


def _act_learn(form: str, act_learn: float | None, epoch: int | None, args: Any,
               path: Path) -> tuple[float, str]:
    if form == "deploy":
        return 1.0, "deploy form (already merged)"
    if act_learn is not None:
        if not 0.0 <= act_learn <= 1.0:
            raise VnexportError(f"--act-learn must be within [0, 1], got {act_learn}")
        return float(act_learn), "--act-learn"
    decay = _whole_number(_args_get(args, "decay_epochs"), "args.decay_epochs", path)
    if epoch is None or decay is None:
        return 1.0, "no training schedule in the file (published weights): taken as 1"
    linear = _args_get(args, "decay_linear")
    if linear is not None and not (isinstance(linear, int) and linear in (0, 1)):
        raise VnexportError(f"args.decay_linear is {type(linear).__name__} {linear!r:.40}, "
                            "not true or false", path)
    linear = True if linear is None else bool(linear)
    value = schedule_act_learn(epoch, decay, linear)
    return value, (f"training schedule: epoch {epoch}, decay_epochs {decay}, "
                   f"{'linear' if linear else 'cosine'}")
