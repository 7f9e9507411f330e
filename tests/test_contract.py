"""The CLI contract on hostile input (issue 11), every case run as a real process.

For every bad input: the exit code, exactly one stderr line (``error: ...``) naming the file or
option, no traceback, nothing created or changed in the case's folder (names, sizes, mtimes;
hidden temporary files included) and no code run from a pickle. Plus: two concurrent writers
of one output, kill -9 / SIGTERM in the middle of a write, and ``--json -`` as pure JSON on
stdout for every command that has it. Every input is generated here, from a small network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from artifacts import CONFIG, IMG, STRIDES, make_small_run
from triton_helpers import free_ports

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 12 << 30  # an absurd allocation fails fast instead of swapping a shared machine


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _limit_file_size(size: int) -> Callable[[], None]:
    """A full disk, as a file size limit: writes past ``size`` bytes fail with EFBIG (SIGXFSZ
    ignored, so the write returns the error instead of killing the process)."""
    def limit() -> None:
        _limit_memory()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return limit


def vnexport(args, cwd: Path, timeout: float = 120, fsize: int | None = None,
             **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("VNEXPORT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "vnexport", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_memory if fsize is None else _limit_file_size(fsize),
                          **kw)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``folder`` (hidden ones too): name -> (size, mtime)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root, name)
            st = p.lstat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{r.stderr}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------
# inputs


@dataclass
class Arts:
    folder: Path
    training: Path
    deploy: Path
    onnx: Path
    obj: dict  # the training checkpoint's content
    png: Path
    runtime_fail_onnx: Path
    huge_input_onnx: Path


def _png(path: Path, width: int, height: int, bit_depth: int = 8) -> Path:
    """A valid grey PNG of any size, written without holding its pixels (zlib of zero rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" * (1 + (width * bit_depth + 7) // 8)
    z = zlib.compressobj(9)
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


def _runtime_fail_onnx(src: Path, dst: Path) -> Path:
    """Loads and passes the checker, fails when run: logits [N, 100] reshaped to [-1, 7]."""
    import onnx
    from onnx import helper, numpy_helper
    import numpy as np

    m = onnx.load(str(src))
    g = m.graph
    out = g.output[0]
    g.initializer.append(numpy_helper.from_array(np.array([-1, 7], np.int64), "bad_shape"))
    g.node.append(helper.make_node("Reshape", [out.name, "bad_shape"], ["bad_out"]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("bad_out", onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(dst))
    return dst


def _huge_input_onnx(src: Path, dst: Path, size: int = 99968) -> Path:
    import onnx

    m = onnx.load(str(src))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = size
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    onnx.save(m, str(dst))
    return dst


@pytest.fixture(scope="module")
def arts(tmp_path_factory) -> Arts:
    from PIL import Image

    folder = tmp_path_factory.mktemp("contract-arts")
    run = make_small_run(folder)
    png = folder / "cat.png"
    Image.new("RGB", (IMG, IMG), (120, 30, 200)).save(png)  # at 32: used unresized
    return Arts(folder, run.training, run.deploy, run.onnx,
                torch.load(run.training, weights_only=False), png,
                _runtime_fail_onnx(run.onnx, folder / "runtime_fail.onnx"),
                _huge_input_onnx(run.onnx, folder / "huge_input.onnx"))


def put(src: Path, d: Path, name: str | None = None) -> Path:
    dst = d / (name or src.name)
    dst.write_bytes(src.read_bytes())
    return dst


def ckpt_with(d: Path, a: Arts, name: str = "ck.pth", **top) -> Path:
    """The training checkpoint with some top-level entries replaced (``args`` merged)."""
    obj = dict(a.obj)
    obj["model"] = dict(obj["model"])
    for k, v in top.items():
        obj[k] = v
    torch.save(obj, d / name)
    return d / name


def ckpt_weights(d: Path, a: Arts, change: Callable[[dict], None], name: str = "ck.pth") -> Path:
    obj = dict(a.obj)
    sd = {k: v.clone() for k, v in obj["model"].items()}
    change(sd)
    obj["model"] = sd
    torch.save(obj, d / name)
    return d / name


def args_with(a: Arts, **changes) -> argparse.Namespace:
    ns = argparse.Namespace(**vars(a.obj["args"]))
    for k, v in changes.items():
        setattr(ns, k, v)
    return ns


def image_folder(d: Path, a: Arts, bad: Callable[[Path], object] | None = None,
                 name: str = "imgs") -> Path:
    folder = d / name
    folder.mkdir()
    put(a.png, folder)
    if bad is not None:
        bad(folder)
    return folder


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


# --------------------------------------------------------------------------------------------
# the corpus: each builder makes its inputs in ``d`` and returns the case


@dataclass
class Case:
    args: list
    names: tuple[str, ...]  # each must appear in the one error line (exit 1: in the output)
    code: int = 2
    timeout: float = 120
    absent: tuple[str, ...] = ()  # none may appear on stderr
    fsize: int | None = None  # a file size limit (bytes): every larger write fails (EFBIG)
    json_dash: bool = False  # --json -: the text report is on stderr too, before the error


CASES: dict[str, Callable[[Path, Arts], Case]] = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


FUSE = ("--strides", STRIDES, "--img-size", str(IMG))
CK = ("--strides", STRIDES)


# ---- data loss: outputs onto inputs or existing files


@case
def fuse_json_onto_input(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "out.pth", "--json", ck, *FUSE], ("ck.pth",))


@case
def fuse_json_onto_input_force(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "out.pth", "--json", ck, "--force", *FUSE], ("ck.pth",))


@case
def fuse_output_symlink_to_input(d, a):
    ck = put(a.training, d, "ck.pth")
    (d / "link.pth").symlink_to("ck.pth")
    return Case(["fuse", ck, "-o", "link.pth", "--force", *FUSE], ("link.pth",))


@case
def fuse_output_exists(d, a):
    ck = put(a.training, d, "ck.pth")
    (d / "out.pth").write_bytes(b"precious")
    return Case(["fuse", ck, "-o", "out.pth", *FUSE], ("out.pth", "--force"))


@case
def fuse_json_exists(d, a):
    ck = put(a.training, d, "ck.pth")
    (d / "r.json").write_text("{}")
    return Case(["fuse", ck, "-o", "out.pth", "--json", "r.json", *FUSE], ("r.json", "--force"))


@case
def fuse_json_missing_folder(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "out.pth", "--json", "missing/r.json", *FUSE], ("r.json",))


@case
def fuse_json_readonly_folder(d, a):
    ck = put(a.training, d, "ck.pth")  # /proc refuses new files, also to root
    return Case(["fuse", ck, "-o", "out.pth", "--json", "/proc/r.json", *FUSE], ("/proc/r.json",))


@case
def verify_json_onto_reference(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    return Case(["verify", ck, dep, "--json", ck, *FUSE], ("ck.pth",))


@case
def verify_json_onto_artifact(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    return Case(["verify", ck, dep, "--json", dep, *FUSE], ("deploy.pth",))


@case
def bench_json_onto_model(d, a):
    m = put(a.onnx, d)
    return Case(["bench", m, "--json", m, "--batch", "1", "--runs", "1", "--warmup", "0"],
                ("model.onnx",))


@case
def onnx_output_onto_input(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["onnx", ck, "-o", ck, "--force", *FUSE], ("ck.pth",))


@case
def onnx_json_exists(d, a):
    ck = put(a.training, d, "ck.pth")
    (d / "r.json").write_text("{}")
    return Case(["onnx", ck, "-o", "m.onnx", "--json", "r.json", *FUSE], ("r.json",))


@case
def onnx_cache_readonly_folder(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["onnx", ck, "-o", "q.onnx", "--precision", "int8", "--cache", "/proc/c.json",
                 *FUSE], ("/proc/c.json",))


@case
def quantize_output_onto_input(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "fp16", "-o", m, "--force"], ("model.onnx",))


@case
def quantize_cache_onto_input(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx", "--cache", m],
                ("model.onnx",))


@case
def quantize_cache_missing_folder(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx", "--cache",
                 "missing/c.json"], ("c.json",))


@case
def quantize_json_onto_input(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "fp16", "-o", "q.onnx", "--json", m],
                ("model.onnx",))


@case
def trt_keep_onnx_onto_source(d, a):
    ck = put(a.training, d, "ck.pth")  # refused before the runtime check (exit 2, not 3)
    return Case(["trt", ck, "--keep-onnx", ck, "--force", *FUSE], ("ck.pth",))


@case
def trt_output_onto_source(d, a):
    m = put(a.onnx, d)
    return Case(["trt", m, "-o", m, "--force"], ("model.onnx",))


@case
def demo_workdir_is_a_file(d, a):
    (d / "wd").write_text("not a folder")
    return Case(["demo", "--workdir", "wd", "--img-size", "32", "--n", "1"], ("wd",))


# ---- hostile checkpoint values (tracebacks before)


@case
def epoch_nan(d, a):
    return Case(["info", ckpt_with(d, a, epoch=float("nan")), *FUSE], ("ck.pth", "epoch"))


@case
def epoch_inf(d, a):
    return Case(["fuse", ckpt_with(d, a, epoch=float("inf")), "-o", "o.pth", *FUSE],
                ("ck.pth", "epoch"))


@case
def decay_epochs_string(d, a):
    ck = ckpt_with(d, a, args=args_with(a, decay_epochs="100"))
    return Case(["info", ck, *FUSE], ("ck.pth", "decay_epochs"))


@case
def decay_epochs_inf(d, a):
    ck = ckpt_with(d, a, args=args_with(a, decay_epochs=float("inf")))
    return Case(["fuse", ck, "-o", "o.pth", *FUSE], ("ck.pth", "decay_epochs"))


@case
def args_dict_of_lists(d, a):
    ck = ckpt_with(d, a, args={"model": "custom", "decay_epochs": [100], "decay_linear": [1]})
    return Case(["info", ck, *FUSE], ("ck.pth", "decay_epochs"))


@case
def args_model_a_list(d, a):
    ck = ckpt_with(d, a, args=args_with(a, model=["vanillanet_5"]))
    return Case(["info", ck], ("ck.pth", "args.model"))


@case
def float8_weights(d, a):
    def change(sd):
        sd["stem1.0.weight"] = sd["stem1.0.weight"].to(torch.float8_e4m3fn)
    return Case(["fuse", ckpt_weights(d, a, change), "-o", "o.pth", *FUSE],
                ("ck.pth", "float8_e4m3fn"))


@case
def bool_weights(d, a):
    def change(sd):
        sd["stages.0.conv1.0.weight"] = sd["stages.0.conv1.0.weight"] > 0
    return Case(["info", ckpt_weights(d, a, change), *FUSE], ("ck.pth", "bool"))


@case
def complex_weights(d, a):
    def change(sd):
        sd["cls2.0.weight"] = sd["cls2.0.weight"].to(torch.complex64)
    return Case(["fuse", ckpt_weights(d, a, change), "-o", "o.pth", *FUSE],
                ("ck.pth", "complex64"))


@case
def huge_stride0_tensor_extra_key(d, a):
    def change(sd):  # 2**40 elements over one stored float: the key check must refuse it first
        sd["extra.huge"] = torch.zeros(1).expand(2 ** 40)
    return Case(["fuse", ckpt_weights(d, a, change), "-o", "o.pth", *FUSE],
                ("ck.pth", "extra.huge"))


@case
def pickle_calls_posix_system(d, a):
    p = d / "evil.pth"
    torch.save({"model": dict(a.obj["model"]), "hook": Payload()}, p)
    return Case(["fuse", p, "-o", "o.pth", *FUSE], ("evil.pth", "posix.system"))


@case
def notes_not_before_the_error(d, a):
    ck = ckpt_with(d, a, epoch=10)  # act_learn < 1: refused after the loader's notes
    return Case(["fuse", ck, "-o", "o.pth", *FUSE], ("ck.pth", "act_learn"))


# ---- image folders


def _bomb(folder: Path) -> None:
    _png(folder / "bomb.png", 20000, 20000, bit_depth=1)


def _wide(folder: Path) -> None:
    _png(folder / "wide.png", 1_000_000, 1)


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "x.png")


def _not_image(folder: Path) -> None:
    (folder / "y.png").write_text("not an image")


@case
def images_decompression_bomb(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", "--images", image_folder(d, a, _bomb), *FUSE],
                ("bomb.png",))


@case
def images_one_pixel_high(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", "--images", image_folder(d, a, _wide), *FUSE],
                ("wide.png",))


@case
def images_fifo(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", "--images", image_folder(d, a, _fifo), *FUSE],
                ("x.png",), timeout=60)


@case
def images_not_an_image(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", "--images", image_folder(d, a, _not_image), *FUSE],
                ("y.png",))


@case
def calib_images_fifo(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx", "--calib-images",
                 image_folder(d, a, _fifo)], ("x.png",), timeout=60)


@case
def calib_images_bomb(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["onnx", ck, "-o", "q.onnx", "--precision", "int8", "--calib-images",
                 image_folder(d, a, _bomb), *FUSE], ("bomb.png",))


@case
def verify_images_one_pixel_high(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    return Case(["verify", ck, dep, "--images", image_folder(d, a, _wide), *FUSE],
                ("wide.png",))


# ---- absurd sizes, counts and seeds


@case
def img_size_huge(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", *CK, "--img-size", "99968"], ("--img-size",))


@case
def n_huge(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", *FUSE, "--n", "1000000000"], ("--n",))


@case
def seed_huge(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["fuse", ck, "-o", "o.pth", *FUSE, "--seed", str(2 ** 70)], ("--seed",))


@case
def seed_negative(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    return Case(["verify", ck, dep, *FUSE, "--seed", "-1"], ("--seed",))


@case
def bench_batch_huge(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "100000000", "--runs", "1"], ("--batch",))


@case
def bench_runs_huge(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "1", "--runs", str(10 ** 12)], ("--runs",))


@case
def onnx_max_batch_huge(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["onnx", ck, "-o", "m.onnx", *FUSE, "--dynamic-batch", "--max-batch",
                 "1000000000"], ("--max-batch",))


@case
def quantize_calib_n_huge(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx", "--calib-n",
                 "1000000000"], ("--calib-n",))


@case
def onnx_declares_huge_input(d, a):
    return Case(["bench", put(a.huge_input_onnx, d), "--batch", "1", "--runs", "1"],
                ("huge_input.onnx", "99968"))


@case
def quantize_onnx_declares_huge_input(d, a):
    m = put(a.huge_input_onnx, d)
    return Case(["quantize", m, "--precision", "fp16", "-o", "q.onnx"],
                ("huge_input.onnx", "99968"))


# ---- ONNX files that fail at run time


@case
def quantize_runtime_failure(d, a):
    m = put(a.runtime_fail_onnx, d)
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx", "--calib-n", "2",
                 "--n", "2"], ("runtime_fail.onnx",))


@case
def quantize_fp16_runtime_failure(d, a):
    m = put(a.runtime_fail_onnx, d)
    return Case(["quantize", m, "--precision", "fp16", "-o", "q.onnx", "--n", "2"],
                ("runtime_fail.onnx",))


@case
def bench_runtime_failure(d, a):
    return Case(["bench", put(a.runtime_fail_onnx, d), "--batch", "1", "--runs", "1",
                 "--warmup", "0"], ("runtime_fail.onnx",))


# ---- files of the wrong kind or damaged (each named)


def _fp16_input(src: Path, dst: Path) -> Path:
    import onnx

    m = onnx.load(str(src))
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    onnx.save(m, str(dst))
    return dst


@case
def quantize_input_not_fp32(d, a):
    m = _fp16_input(a.onnx, d / "half.onnx")
    return Case(["quantize", m, "--precision", "int8", "-o", "q.onnx"], ("half.onnx",))


@case
def quantize_text_file(d, a):
    (d / "notes.onnx").write_text("not a model\n")
    return Case(["quantize", d / "notes.onnx", "--precision", "fp16", "-o", "q.onnx"],
                ("notes.onnx",))


@case
def info_truncated_onnx(d, a):
    data = a.onnx.read_bytes()
    (d / "cut.onnx").write_bytes(data[: len(data) // 2])
    return Case(["info", d / "cut.onnx"], ("cut.onnx",))


@case
def triton_json_onto_input(d, a):
    m = put(a.onnx, d)
    return Case(["triton", m, "-o", "repo", "--json", m, "--force"], ("model.onnx",))


@case
def verify_unknown_artifact_kind(d, a):
    ck = put(a.training, d, "ck.pth")
    (d / "model.txt").write_text("?")
    return Case(["verify", ck, d / "model.txt", *FUSE], ("model.txt",))


# ---- usage errors: one line naming the option (Typer's box before)


@case
def usage_img_size_zero(d, a):
    return Case(["onnx", put(a.training, d, "ck.pth"), *CK, "--img-size", "0"], ("--img-size",))


@case
def usage_opset_5(d, a):
    return Case(["onnx", put(a.training, d, "ck.pth"), *CK, "--opset", "5"], ("--opset",))


@case
def usage_trt_opset_99(d, a):
    # an option check, so exit 2 before the runtime check (exit 3 here, without TensorRT)
    return Case(["trt", put(a.training, d, "ck.pth"), *FUSE, "--opset", "99"], ("--opset",))


@case
def usage_bench_batch_zero(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "0"], ("--batch",))


@case
def usage_n_zero(d, a):
    return Case(["fuse", put(a.training, d, "ck.pth"), *FUSE, "--n", "0"], ("--n",))


@case
def usage_quantize_missing_output(d, a):
    return Case(["quantize", put(a.onnx, d), "--precision", "fp16"], ("--output",))


@case
def usage_unknown_option(d, a):
    return Case(["fuse", put(a.training, d, "ck.pth"), "--bogus"], ("--bogus",))


# ---- eval: labelled images (an ImageFolder)


def class_folders(d: Path, a: Arts, classes=("a", "b"), name: str = "val") -> Path:
    root = d / name
    for c in classes:
        (root / c).mkdir(parents=True)
        put(a.png, root / c)
    return root


@case
def eval_images_not_an_image_folder(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["eval", ck, "--images", image_folder(d, a), *CK, "--json", "r.json"],
                ("imgs", "not an ImageFolder"))


@case
def eval_images_empty_class_folder(d, a):
    ck = put(a.training, d, "ck.pth")
    root = class_folders(d, a)
    (root / "c").mkdir()
    return Case(["eval", ck, "--images", root, *CK, "--json", "r.json"], ("val", "'c'"))


@case
def eval_images_fifo(d, a):
    ck = put(a.training, d, "ck.pth")
    root = class_folders(d, a)
    os.mkfifo(root / "b" / "x.png")
    return Case(["eval", ck, "--images", root, *CK, "--json", "r.json"], ("x.png",),
                timeout=60)


@case
def eval_json_onto_input(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["eval", ck, "--images", class_folders(d, a), *CK, "--json", ck, "--force"],
                ("ck.pth",))


@case
def eval_reference_not_a_checkpoint(d, a):
    ck, m = put(a.training, d, "ck.pth"), put(a.onnx, d)
    return Case(["eval", m, ck, "--images", class_folders(d, a), *CK], ("model.onnx",
                                                                         "checkpoint"))


@case
def eval_crop_pct_out_of_range(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["eval", ck, "--images", class_folders(d, a), *CK, "--crop-pct", "1.5"],
                ("--crop-pct",))


@case
def usage_bad_choice(d, a):
    return Case(["fuse", put(a.training, d, "ck.pth"), "--key", "weights"], ("--key",))


@case
def usage_missing_argument(d, a):
    return Case(["verify"], ("reference",))


# --------------------------------------------------------------------------------------------
# issue 17: the newer surfaces (triton, serve, trt with TensorRT-RTX, info, caches)

SMALL = 64  # RLIMIT_FSIZE of the full-disk cases: every output is larger, so its write fails


def _engine_double(d: Path, a: Arts, name: str = "e.engine") -> Path:
    """A few bytes standing in for a plan, with a provenance naming its real source ONNX file
    (enough for `vnexport triton`, which never reads the plan)."""
    put(a.onnx, d)
    engine = d / name
    engine.write_bytes(b"TEST DOUBLE: not a TensorRT plan\n")
    (d / f"{name}.json").write_text(json.dumps({
        "source_onnx": "model.onnx", "precision": "fp32", "builder": "tensorrt",
        "profile": {"input": "input", "min": [1, 3, IMG, IMG], "opt": [1, 3, IMG, IMG],
                    "max": [4, 3, IMG, IMG]}}))
    return engine


def _external_onnx(d: Path, a: Arts, location: str, data_at: Path | None = None,
                   name: str = "ext.onnx") -> Path:
    """The small model with its weights in an external file named ``location``, the bytes
    written at ``data_at`` (None: nowhere, the file is missing)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(a.onnx))
    blob, offset = bytearray(), 0
    for t in m.graph.initializer:
        raw = numpy_helper.to_array(t).tobytes()
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = t.external_data.add()
            entry.key, entry.value = k, v
        blob += raw
        offset += len(raw)
    if data_at is not None:
        data_at.parent.mkdir(parents=True, exist_ok=True)
        data_at.write_bytes(bytes(blob))
    (d / name).write_bytes(m.SerializeToString())
    return d / name


def _input_changed(d: Path, a: Arts, name: str, change: Callable) -> Path:
    import onnx

    m = onnx.load(str(a.onnx))
    change(m.graph.input[0].type.tensor_type)
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    onnx.save(m, str(d / name))
    return d / name


def _python_repo(d: Path, a: Arts, name: str = "m") -> Path:
    """A Python-backend model repository (what `vnexport serve` loads), written here."""
    from vnexport import triton as T

    repo = d / "repo"
    facts = T.read_facts(put(a.onnx, d))
    T.write_repository(repo, T.model_folders(facts, T.ServingOptions(
        name=name, backend="python", kind="cpu")))
    return repo



def _serve_ports(*held: int) -> list[str]:
    http, grpc, metrics = list(held) + free_ports(3 - len(held))
    return ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]


def _need_server() -> None:
    from vnexport.triton_server import missing_reason

    if missing_reason() is not None:
        pytest.skip(f"Triton server cannot run here: {missing_reason()}")


def _need_rtx() -> None:
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX (trt-rtx extra) not installed")


def _badop_onnx(d: Path, a: Arts) -> Path:
    """Loads and passes the ONNX checker's schema-free parts; TensorRT's parser refuses it."""
    import onnx

    m = onnx.load(str(a.onnx))
    m.graph.node[0].op_type = "NoSuchOp"
    onnx.save(m, str(d / "badop.onnx"))
    return d / "badop.onnx"


HELD: list = []  # sockets a case holds a port with (closed after the case)


# ---- 1. never an input: model folders, repositories, folders holding inputs, links


@case
def triton_model_folder_onto_its_onnx(d, a):
    (d / "tn").mkdir()
    put(a.onnx, d / "tn", "m.v1.onnx")
    return Case(["triton", "tn/m.v1.onnx", "-o", "tn", "--name", "m.v1.onnx", "--force"],
                ("m.v1.onnx", "input"))


@case
def triton_model_folder_onto_labels(d, a):
    (d / "tn").mkdir()
    (d / "tn" / "m").write_text("".join(f"c{i}\n" for i in range(CONFIG.num_classes)))
    return Case(["triton", put(a.onnx, d), "-o", "tn", "--name", "m", "--labels", "tn/m",
                 "--force"], ("tn/m", "input"))


@case
def triton_model_folder_holds_its_input(d, a):
    (d / "repo" / "m" / "1").mkdir(parents=True)
    put(a.onnx, d / "repo" / "m" / "1")
    return Case(["triton", "repo/m/1/model.onnx", "-o", "repo", "--name", "m", "--force"],
                ("repo/m", "model.onnx"))


@case
def triton_repository_is_its_input(d, a):
    return Case(["triton", put(a.onnx, d), "-o", "model.onnx", "--force"], ("model.onnx",))


@case
def triton_model_folder_link_to_input(d, a):
    put(a.onnx, d)
    (d / "tn").mkdir()
    (d / "tn" / "m").symlink_to("../model.onnx")
    return Case(["triton", "model.onnx", "-o", "tn", "--name", "m", "--force"], ("tn/m",))


@case
def triton_model_folder_onto_engine_provenance(d, a):
    _engine_double(d, a)
    return Case(["triton", "e.engine", "-o", ".", "--name", "e.engine.json", "--force"],
                ("e.engine.json",))


@case
def triton_json_inside_model_folder(d, a):
    put(a.onnx, d)
    return Case(["triton", "model.onnx", "-o", "repo", "--json", "repo/model/r.json"],
                ("repo/model",))


@case
def verify_json_onto_an_image_read(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    image_folder(d, a)
    return Case(["verify", ck, dep, "--images", "imgs", "--json", "imgs/cat.png", "--force",
                 *FUSE], ("imgs",))


@case
def fuse_json_into_the_images_folder(d, a):
    ck = put(a.training, d, "ck.pth")
    image_folder(d, a)
    return Case(["fuse", ck, "-o", "o.pth", "--images", "imgs", "--json", "imgs/r.json", *FUSE],
                ("imgs",))


@case
def onnx_output_into_calib_images(d, a):
    ck = put(a.training, d, "ck.pth")
    image_folder(d, a, name="cal")
    return Case(["onnx", ck, "-o", "cal/m.onnx", "--precision", "int8", "--calib-images", "cal",
                 *FUSE], ("cal",))


@case
def trt_keep_onnx_into_the_images_folder(d, a):
    ck = put(a.training, d, "ck.pth")  # exit 2 before the runtime check
    image_folder(d, a)
    return Case(["trt", ck, "--keep-onnx", "imgs/k.onnx", "--images", "imgs", "--force",
                 *FUSE], ("imgs",))


@case
def quantize_cache_onto_reference(d, a):
    m, ck = put(a.onnx, d), put(a.training, d, "ck.pth")
    return Case(["quantize", m, "--int8", "-o", "q.onnx", "--cache", ck, "--reference", ck,
                 *CK], ("ck.pth",))


# ---- 2. outputs only on success: caches, kept intermediates


@case
def onnx_int8_cache_not_kept_when_verification_fails(d, a):
    ck = put(a.training, d, "ck.pth")
    return Case(["onnx", ck, "-o", "q.onnx", "--int8", "--cache", "c.json", "--calib-n", "8",
                 "--n", "8", "--max-rel-err", "0", *FUSE], ("not written: q.onnx",), code=1)


@case
def quantize_int8_cache_not_kept_when_verification_fails(d, a):
    m = put(a.onnx, d)
    return Case(["quantize", m, "--int8", "-o", "q.onnx", "--cache", "c.json", "--calib-n", "8",
                 "--n", "8", "--max-rel-err", "0"], ("not written: q.onnx",), code=1)


@case
def trt_keep_onnx_not_kept_when_the_build_fails(d, a):
    _need_rtx()
    ck = put(a.training, d, "ck.pth")  # no workspace: TensorRT-RTX's build fails
    return Case(["trt", ck, "--keep-onnx", "k.onnx", "--no-verify", "-o", "e.engine",
                 "--builder", "tensorrt-rtx", "--workspace", "1e-10", *FUSE],
                ("ck.pth", "workspace"), absent=("/tmp/tmp",), timeout=240)


# ---- 3. only regular files are read (a FIFO never blocks)


@case
def triton_labels_fifo(d, a):
    os.mkfifo(d / "labels.txt")
    return Case(["triton", put(a.onnx, d), "-o", "repo", "--labels", "labels.txt"],
                ("labels.txt",), timeout=60)


@case
def triton_engine_provenance_fifo(d, a):
    engine = _engine_double(d, a)
    (d / "e.engine.json").unlink()
    os.mkfifo(d / "e.engine.json")
    return Case(["triton", engine, "-o", "repo"], ("e.engine.json",), timeout=60)


@case
def info_engine_provenance_fifo(d, a):
    engine = _engine_double(d, a)  # read as "no provenance": a malformed plan without one
    (d / "e.engine.json").unlink()
    os.mkfifo(d / "e.engine.json")
    return Case(["info", engine], ("e.engine",), timeout=60)


@case
def fuse_checkpoint_fifo(d, a):
    os.mkfifo(d / "ck.pth")
    return Case(["fuse", "ck.pth", "-o", "o.pth", *FUSE], ("ck.pth", "regular"), timeout=60)


@case
def verify_onnx_artifact_fifo(d, a):
    ck = put(a.training, d, "ck.pth")
    os.mkfifo(d / "m.onnx")
    return Case(["verify", ck, "m.onnx", *FUSE], ("m.onnx",), timeout=60)


@case
def info_external_data_fifo(d, a):
    m = _external_onnx(d, a, "w.bin")
    os.mkfifo(d / "w.bin")
    return Case(["info", m], ("ext.onnx", "w.bin"), timeout=60)


@case
def serve_config_is_a_directory(d, a):
    _need_server()
    repo = _python_repo(d, a)
    (repo / "m" / "config.pbtxt").unlink()
    (repo / "m" / "config.pbtxt").mkdir()
    return Case(["serve", repo, *_serve_ports()], ("config.pbtxt", "directory"))


@case
def serve_config_is_binary(d, a):
    _need_server()
    repo = _python_repo(d, a)
    (repo / "m" / "config.pbtxt").write_bytes(b"\xff\xfe\x00\x81 not text")
    return Case(["serve", repo, *_serve_ports()], ("config.pbtxt",), absent=("Unicode",))


@case
def serve_users_broken_config(d, a):
    _need_server()
    repo = _python_repo(d, a)
    (repo / "m" / "config.pbtxt").write_text('name: "m"\nbackend: "python"\nmax_batch_size: {\n')
    return Case(["serve", repo, *_serve_ports()], ("config.pbtxt",), absent=("generated",))


# ---- 4. ONNX external data: inside the model's folder, existing


@case
def info_external_data_outside(d, a):
    m = _external_onnx(d, a, "../secret/x.bin", d.parent / "secret" / "x.bin")
    return Case(["info", m], ("ext.onnx", "../secret/x.bin"))


@case
def triton_external_data_outside(d, a):
    m = _external_onnx(d, a, "../secret/x.bin", d.parent / "secret" / "x.bin")
    return Case(["triton", m, "-o", "repo"], ("ext.onnx", "../secret/x.bin"))


@case
def triton_external_data_absolute(d, a):
    secret = d.parent / "abs-secret.bin"
    m = _external_onnx(d, a, str(secret), secret)
    return Case(["triton", m, "-o", "repo"], ("ext.onnx", "absolute"))


@case
def info_external_data_missing(d, a):
    m = _external_onnx(d, a, "w.bin", None)
    return Case(["info", m], ("ext.onnx", "w.bin", "no such file"))


@case
def bench_external_data_link_leaving_folder(d, a):
    m = _external_onnx(d, a, "w.bin", d.parent / "outside.bin")
    (d / "w.bin").symlink_to(d.parent / "outside.bin")
    return Case(["bench", m, "--batch", "1", "--runs", "1"], ("ext.onnx", "w.bin", "link"))


@case
def trt_external_data_outside(d, a):
    m = _external_onnx(d, a, "../secret/x.bin", d.parent / "secret" / "x.bin")
    return Case(["trt", m, "--no-verify", "-o", "e.engine"], ("ext.onnx", "../secret/x.bin"))


# ---- 5. the shared limits and input checks, trt and triton included


@case
def trt_onnx_declares_huge_input(d, a):
    return Case(["trt", put(a.huge_input_onnx, d), "--no-verify"],
                ("huge_input.onnx", "99968"))


@case
def trt_int64_input(d, a):
    import onnx

    m = _input_changed(d, a, "int64.onnx",
                       lambda tt: setattr(tt, "elem_type", onnx.TensorProto.INT64))
    return Case(["trt", m, "--no-verify", "-o", "e.engine"], ("int64.onnx", "int64"))


@case
def triton_onnx_declares_huge_input(d, a):
    return Case(["triton", put(a.huge_input_onnx, d), "-o", "repo"],
                ("huge_input.onnx", "99968"))


@case
def info_zero_dimension(d, a):
    m = _input_changed(d, a, "zero.onnx", lambda tt: setattr(tt.shape.dim[2], "dim_value", 0))
    return Case(["info", m], ("zero.onnx", "dimension"))


# ---- 6. option values: one list parser


@case
def triton_name_empty(d, a):
    return Case(["triton", put(a.onnx, d), "-o", "repo", "--name", ""], ("--name",))


@case
def triton_preferred_batch_trailing_comma(d, a):
    return Case(["triton", put(a.onnx, d), "-o", "repo", "--preferred-batch", "4,"],
                ("--preferred-batch",))


@case
def bench_batch_doubled_comma(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "1,,8", "--runs", "1"], ("--batch",))


@case
def bench_batch_with_a_space(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "1, 8", "--runs", "1"], ("--batch",))


@case
def trt_compute_capability_trailing_comma(d, a):
    return Case(["trt", put(a.onnx, d), "--no-verify", "--compute-capability", "8.0,"],
                ("--compute-capability",))


@case
def fuse_strides_empty_item(d, a):
    return Case(["fuse", put(a.training, d, "ck.pth"), "-o", "o.pth", "--strides", "2,,1",
                 "--img-size", str(IMG)], ("--strides",))


# ---- 7. third-party output folded into the one line


@case
def trt_parser_refuses_the_graph(d, a):
    _need_rtx()
    return Case(["trt", _badop_onnx(d, a), "--no-verify", "-o", "e.engine", "--builder",
                 "tensorrt-rtx"], ("badop.onnx", "NoSuchOp"), absent=("[!]", "[E]"),
                timeout=240)


@case
def trt_parser_refuses_the_graph_json_dash(d, a):
    _need_rtx()
    return Case(["trt", _badop_onnx(d, a), "--no-verify", "-o", "e.engine", "--builder",
                 "tensorrt-rtx", "--json", "-"], ("badop.onnx",), absent=("[!]", "[E]"),
                timeout=240, json_dash=True)


@case
def info_not_an_engine(d, a):
    (d / "bad.engine").write_bytes(b"garbage")
    return Case(["info", "bad.engine"], ("bad.engine",), absent=("[!]",))


# ---- 8. serve: the host and ports are checked before a server starts


@case
def serve_host_not_of_this_machine(d, a):
    _need_server()
    return Case(["serve", _python_repo(d, a), "--host", "203.0.113.7", *_serve_ports()],
                ("--host",))


@case
def serve_host_empty(d, a):
    _need_server()
    return Case(["serve", _python_repo(d, a), "--host", "", *_serve_ports()], ("--host",))


@case
def serve_port_taken(d, a):
    _need_server()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    HELD.append(s)
    port = s.getsockname()[1]
    return Case(["serve", _python_repo(d, a), *_serve_ports(port)],
                ("--http-port", str(port)), absent=("ready",))


# ---- 9. a write that fails (file size limit: EFBIG) names the output


@case
def fuse_disk_full(d, a):
    return Case(["fuse", put(a.training, d, "ck.pth"), "-o", "o.pth", *FUSE], ("o.pth",),
                absent=("ck.pth",), fsize=SMALL)


@case
def onnx_disk_full(d, a):
    return Case(["onnx", put(a.training, d, "ck.pth"), "-o", "o.onnx", *FUSE], ("o.onnx",),
                absent=("ck.pth",), fsize=SMALL)


@case
def quantize_disk_full(d, a):
    return Case(["quantize", put(a.onnx, d), "--fp16", "-o", "q.onnx", "--n", "2"],
                ("q.onnx",), absent=("model.onnx",), fsize=SMALL)


@case
def trt_disk_full(d, a):
    _need_rtx()
    return Case(["trt", put(a.onnx, d), "--no-verify", "-o", "e.engine", "--builder",
                 "tensorrt-rtx"], ("e.engine",), absent=("model.onnx",), fsize=SMALL,
                timeout=240)


@case
def triton_disk_full(d, a):
    return Case(["triton", put(a.onnx, d), "-o", "repo"], ("repo",), absent=("model.onnx",),
                fsize=SMALL)


@case
def verify_json_disk_full(d, a):
    ck, dep = put(a.training, d, "ck.pth"), put(a.deploy, d)
    return Case(["verify", ck, dep, "--n", "2", "--json", "r.json", *FUSE], ("r.json",),
                fsize=SMALL)


@case
def bench_json_disk_full(d, a):
    return Case(["bench", put(a.onnx, d), "--batch", "1", "--runs", "1", "--warmup", "0",
                 "--json", "r.json"], ("r.json",), fsize=SMALL)


@case
def demo_disk_full(d, a):
    return Case(["demo", "--workdir", "wd", "--img-size", "32", "--n", "1"], ("wd/",),
                fsize=SMALL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_keeps_the_contract(name, arts, tmp_path):
    d = tmp_path / "case"
    d.mkdir()
    c = CASES[name](d, arts)
    before = snapshot(d)
    try:
        r = vnexport(c.args, cwd=d, timeout=c.timeout, fsize=c.fsize)
    finally:
        while HELD:
            HELD.pop().close()
    assert r.returncode == c.code, f"exit {r.returncode}\n{r.stderr}"
    if c.code == 1:  # a failed check: the verdict on stdout, no error line, nothing written
        assert "Traceback" not in r.stderr + r.stdout and "error:" not in r.stderr, r.stderr
        line = r.stdout
    elif c.json_dash:  # vnexport's own report lines, then the one error line, nothing else
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert "Traceback" not in r.stderr and lines[-1].startswith("error: "), r.stderr
        assert sum(ln.startswith("error") for ln in lines) == 1, r.stderr
        assert not [ln for ln in lines if ln.startswith(("[", " "))], r.stderr
        assert r.stdout.strip() == "", r.stdout
        line = lines[-1]
    else:
        line = one_error_line(r)
    for text in c.names:
        assert text in line, f"{text!r} not named in: {line}"
    for text in c.absent:
        assert text not in r.stderr, f"{text!r} in the error output:\n{r.stderr}"
    assert snapshot(d) == before, "the case's folder changed"
    assert not (d / "PWNED").exists()


# --------------------------------------------------------------------------------------------
# good input the tool crashed on


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_calibration_count_not_a_multiple_of_8(method, arts, tmp_path):
    """README's own example: entropy/percentile calibration of a dynamic-batch model on a
    number of inputs that is not a multiple of 8 (an inhomogeneous-shape ValueError before)."""
    m = put(arts.onnx, tmp_path)
    r = vnexport(["quantize", m, "--precision", "int8", "--method", method, "--calib-n", "10",
                  "-o", "q.onnx", "--min-agreement", "0"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    # --min-agreement 0 lets any verdict pass: judge the file here, against the fp32 file
    import onnx
    import onnxruntime

    q = onnx.load(str(tmp_path / "q.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) >= 5
    x = np.random.default_rng(0).standard_normal((4, 3, IMG, IMG)).astype(np.float32)
    outs = [onnxruntime.InferenceSession(str(p), providers=["CPUExecutionProvider"])
            .run(None, {"input": x})[0].astype(np.float64) for p in (m, tmp_path / "q.onnx")]
    cos = (outs[0] * outs[1]).sum(1) / np.linalg.norm(outs[0], axis=1) / \
        np.linalg.norm(outs[1], axis=1)
    assert cos.min() > 0.9, cos  # calibrated ranges, not garbage


# --------------------------------------------------------------------------------------------
# concurrency and interrupted writes


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_two_concurrent_writers_one_wins(arts, tmp_path):
    ck = put(arts.training, tmp_path, "ck.pth")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "vnexport", "fuse", str(ck), "-o", "fresh.pth", *FUSE]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    lines = [ln for ln in loser.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fresh.pth" in lines[0], loser
    assert "Traceback" not in loser
    torch.load(tmp_path / "fresh.pth", weights_only=True)  # the winner's file, whole
    assert _temps(tmp_path) == []


WRITER = """
import sys, time
from vnexport.fileio import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"x" * 100000)
        f.flush()
        print("writing", flush=True)
        time.sleep(120)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_write_leaves_nothing_a_later_run_keeps(sig, arts, tmp_path):
    """A process killed while writing leaves no output; whatever temporary file it leaves is
    removed by the next vnexport run that writes into that folder."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "out.bin")], env=env,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(sig)
    p.wait(timeout=30)
    assert not (tmp_path / "out.bin").exists()
    ck = put(arts.training, tmp_path, "ck.pth")
    r = vnexport(["fuse", ck, "-o", "later.pth", *FUSE], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _temps(tmp_path) == []


def test_sigterm_during_a_command_leaves_nothing(arts, tmp_path):
    """SIGTERM while a command works (a bench of minutes, its --json planned, stopped inside its
    only batch size, so nothing finished: bench's interrupted report needs a finished one): it
    stops with one line and exit 130, leaving no report and no temporary file."""
    m = put(arts.onnx, tmp_path)
    before = snapshot(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "vnexport", "bench", str(m), "--batch", "64",
                          "--runs", "100000", "--warmup", "0", "--json", "r.json"],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(4.0)
    assert p.poll() is None, "the bench finished before the signal"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------
# --json - : stdout is pure JSON (the text report and notes go to stderr)


def _json_commands(a: Arts, d: Path) -> dict[str, list]:
    ck, dep, m = put(a.training, d, "ck.pth"), put(a.deploy, d), put(a.onnx, d)
    return {
        "info": ["info", ck, *FUSE, "--json"],
        "fuse": ["fuse", ck, "-o", "o.pth", *FUSE, "--json", "-"],
        "onnx": ["onnx", ck, "-o", "o.onnx", *FUSE, "--json", "-"],
        "onnx-int8": ["onnx", ck, "-o", "q8.onnx", *FUSE, "--precision", "int8", "--calib-n", "4",
                      "--n", "4", "--min-agreement", "0", "--json", "-"],
        "quantize": ["quantize", m, "--precision", "int8", "-o", "q.onnx", "--calib-n", "4",
                     "--n", "4", "--min-agreement", "0", "--json", "-"],
        "verify": ["verify", ck, dep, m, *FUSE, "--json", "-"],
        "eval": ["eval", ck, dep, m, "--images", class_folders(d, a), *CK, "--json", "-"],
        "bench": ["bench", m, "--batch", "1", "--runs", "2", "--warmup", "0", "--json", "-"],
        "triton": ["triton", m, "-o", "repo", "--json", "-"],
    }


@pytest.mark.parametrize("command", ["info", "fuse", "onnx", "onnx-int8",
                                     "quantize", "verify", "eval", "bench", "triton"])
def test_json_dash_is_pure_json(command, arts, tmp_path):
    args = _json_commands(arts, tmp_path)[command]
    r = vnexport(args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    tool = subprocess.run([sys.executable, "-m", "json.tool"], input=r.stdout,
                          capture_output=True, text=True)
    assert tool.returncode == 0, f"stdout is not JSON:\n{r.stdout[:2000]}"
    assert isinstance(json.loads(r.stdout), dict)


# --------------------------------------------------------------------------------------------
# issue 17: serve against a port another real Triton holds; signals during triton, trt, serve


def _popen(args, cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop("VNEXPORT_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "vnexport", *map(str, args)], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has installed its own SIGTERM handler (SigCgt of /proc/PID/status):
    from then on a SIGTERM is the command's interrupt, not the default death."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt")),
                 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _wait_until(cond: Callable[[], bool], proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, f"exited early ({proc.returncode}): {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _interrupted(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted", err
    return out, err


def _our_servers(repo: Path) -> list[int]:
    """tritonserver processes serving ``repo``."""
    found = []
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(part == f"--model-repository={repo}".encode() for part in cmd):
            found.append(int(status.parent.name))
    return found


def test_serve_refuses_a_port_another_triton_holds(arts, tmp_path):
    """A second real Triton listens on the HTTP port: exit 2, one line naming the port, no
    "ready", nothing left running; the other server is untouched (then stopped by its PID)."""
    _need_server()
    from vnexport.triton_server import TritonServer

    other_dir, mine_dir = tmp_path / "other", tmp_path / "mine"
    other_dir.mkdir(), mine_dir.mkdir()
    http, grpc, metrics = free_ports()
    other = TritonServer(_python_repo(other_dir, arts, "other"), http_port=http,
                         grpc_port=grpc, metrics_port=metrics)
    other.start()
    try:
        assert {m["name"] for m in other.wait_ready(240)} == {"other"}
        repo = _python_repo(mine_dir, arts, "mine")
        before = snapshot(mine_dir)
        r = vnexport(["serve", repo, *_serve_ports(http)], cwd=mine_dir, timeout=240)
        assert r.returncode == 2, r.stderr
        line = one_error_line(r)
        assert "--http-port" in line and str(http) in line, line
        assert "ready" not in r.stdout and r.stdout.strip() == "", r.stdout
        assert _our_servers(repo) == [], "a server of this repository is left running"
        assert snapshot(mine_dir) == before
        assert other.ready() and other.process.poll() is None  # the other one still serves
    finally:
        other.stop()
    assert other.process.poll() is not None


def test_sigterm_during_triton_leaves_nothing(arts, tmp_path):
    """SIGTERM while `vnexport triton` works (as soon as it handles the signal): exit 130,
    "interrupted", no repository, no staging folder."""
    for k in range(6):
        put(arts.onnx, tmp_path, f"m{k}.onnx")
    before = snapshot(tmp_path)
    proc = _popen(["triton", *[f"m{k}.onnx" for k in range(6)], "-o", "repo"], tmp_path)
    _wait_until(lambda: _handles_sigterm(proc.pid), proc)
    _interrupted(proc)
    assert snapshot(tmp_path) == before


def test_sigterm_during_a_trt_build_keeps_nothing(arts, tmp_path):
    """SIGTERM during TensorRT-RTX's build of a checkpoint's engine with --keep-onnx: exit
    130, no engine, no provenance, no kept ONNX file."""
    _need_rtx()
    ck = put(arts.training, tmp_path, "ck.pth")
    before = snapshot(tmp_path)
    proc = _popen(["trt", ck, "--keep-onnx", "k.onnx", "--no-verify", "-o", "e.engine",
                   "--builder", "tensorrt-rtx", *FUSE], tmp_path)
    _wait_until(lambda: "building" in proc.stdout.readline(), proc, timeout=180)
    _interrupted(proc)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["repository", "onnx"])
def test_sigterm_stops_serve_with_130_whatever_the_target(target, arts, tmp_path):
    """`vnexport serve` of a repository or of an ONNX file, stopped by SIGTERM once ready:
    the same exit code (130), its server gone, nothing left in the folder."""
    _need_server()
    what = _python_repo(tmp_path, arts) if target == "repository" else put(arts.onnx, tmp_path)
    before = snapshot(tmp_path)
    proc = _popen(["serve", what, "--json", "-", *_serve_ports()], tmp_path)
    try:
        report = json.loads(proc.stdout.readline() or "null")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert report and report["pid"], proc.stderr.read() if proc.poll() is not None else ""
    _interrupted(proc)
    assert not Path(f"/proc/{report['pid']}").exists()
    assert snapshot(tmp_path) == before
