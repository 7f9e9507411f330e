"""int8 within an accuracy budget: top-1 and CPU latency of each artifact of a VanillaNet with a
planted wide-range channel, trained on real digits.

    PYTHONPATH=. python benchmarks/int8_budget.py

The model is the test suite's (tests/digits.py: dims 16/32/64, 32x32, trained ~8 epochs on
scikit-learn's digits). One channel of stage 0 is planted x1000 (its BN's gamma and beta), the
activation's depthwise kernel / 1000 and BN x1000, the next conv's input channel / 1000: the same
network in fp32. Every file is written by the CLI (``python -m vnexport onnx``), calibrated on
200 training digits (20 per class) as PNGs, judged on the 540 held-out digits as an ImageFolder.
Accuracy is computed here (PIL + numpy preprocessing, the authors' transform at 32x32: no
resize, ImageNet mean/std; ONNX Runtime; argmax). Latency: batch 1, intra_op_num_threads=2,
median of interleaved rounds (``precision.latencies_ms``). Results go to
benchmarks/results/int8_budget_<machine>.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from digits import (CONFIG, IMG, STRIDES, load_digits_tensors, load_image_folder,  # noqa: E402
                    plant_wide_channel, train_digits, write_image_folder)
from run import machine_info, machine_slug  # noqa: E402

from vnexport import ort  # noqa: E402
from vnexport.model import VanillaNet  # noqa: E402
from vnexport.precision import latencies_ms  # noqa: E402

THREADS, RUNS, WARMUP = 2, 200, 20
K, CHANNEL = 1000.0, 3


def cli(*args) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "vnexport", *map(str, args)], env=env,
                       capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def top1(path: Path, x, y) -> float:
    out = ort.run(ort.session(path, device="cpu"), x, batch=64)
    return float((out.argmax(1) == y).mean() * 100)


def int8_convs(path: Path) -> str:
    m = onnx.load(str(path))
    inits = {t.name: t.data_type for t in m.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in m.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    k = sum(inits.get(dq.get(n.input[1])) == onnx.TensorProto.INT8 for n in convs)
    return f"{k} of {len(convs)}"


def artifacts(d: Path, ck: Path, calib: Path, evals: Path) -> dict:
    """label -> (path, the CLI's extra options); each written by ``vnexport onnx``."""
    base = ["onnx", ck, "--strides", STRIDES, "--img-size", IMG]
    i8 = ["--int8", "--calib-images", calib]
    budget = ["--eval-images", evals]
    specs = {
        "fp32 ONNX": [],
        "plain int8 (no --max-drop)": i8 + ["--min-agreement", "0"],
        "equalized int8 (--equalize)": i8 + ["--equalize"],
        "budgeted int8 (--max-drop 1)": i8 + budget + ["--max-drop", "1"],
        "budgeted int8 (--max-drop 0)": i8 + budget + ["--max-drop", "0"],
    }
    out = {}
    for i, (label, extra) in enumerate(specs.items()):
        path = d / f"a{i}.onnx"
        t = time.perf_counter()
        code, text = cli(*base, *extra, "-o", path)
        out[label] = (path if code == 0 else None, time.perf_counter() - t, code, text)
        print(f"{label}: exit {code} in {out[label][1]:.1f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    info = machine_info(THREADS)
    args.out = args.out or ROOT / "benchmarks" / "results" / \
        f"int8_budget_{machine_slug(info)}.md"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run = train_digits(d)
        x_tr, y_tr, x_te, y_te = load_digits_tensors(0)
        calib = write_image_folder(x_tr, y_tr.numpy(), d / "calib", per_class=20)
        evals = write_image_folder(x_te, y_te.numpy(), d / "eval")
        raw = torch.load(run.final, weights_only=False)
        planted = plant_wide_channel(raw["model"], c=CHANNEL, k=K)
        torch.save(dict(raw, model=planted), d / "planted.pth")
        x, y = load_image_folder(evals)
        model = VanillaNet(CONFIG).eval()
        model.load_state_dict(planted)
        with torch.no_grad():
            ref = float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean() * 100)
        arts = artifacts(d, d / "planted.pth", calib, evals)
        files = {k: v[0] for k, v in arts.items() if v[0] is not None}
        sessions = {k: ort.session(p, threads=THREADS, device="cpu") for k, p in files.items()}
        times = latencies_ms(sessions, x[:1], runs=RUNS, warmup=WARMUP)
        rows = [(k, top1(p, x, y), int8_convs(p), float(np.median(times[k])),
                 p.stat().st_size / 1024) for k, p in files.items()]
        logs = {k: v[3] for k, v in arts.items()}
        failed = {k: v for k, v in arts.items() if v[0] is None}
    write_report(args.out, info, ref, rows, logs, failed, len(y))


def notes(ref: float, rows, logs) -> list[str]:
    """What the table shows, from its own figures."""
    said = [ln for text in logs.values() for ln in text.splitlines()
            if ln.startswith("int8 budget: reference top-1")]
    fp32_ms = next((ms for k, _, _, ms, _ in rows if k == "fp32 ONNX"), None)
    out = ["## Notes", ""]
    if said:
        out.append(f"- vnexport's own figures (the budget is judged on them): \"{said[0]}\". "
                   "They can differ from this script's: vnexport's preprocessing "
                   "(verify.preprocess) is used for the eval images there, this script's "
                   "(no resize at 32x32) here.")
    plain = next((t for k, t, *_ in rows if k.startswith("plain")), None)
    equal = next((t for k, t, *_ in rows if k.startswith("equalized")), None)
    if plain is not None and equal is not None:
        out.append(f"- the planted channel: plain per-tensor int8 {plain:.2f}% against "
                   f"{ref:.2f}% fp32; cross-layer equalization alone brings it to "
                   f"{equal:.2f}% (weights only, no float layers).")
    if fp32_ms:
        out.append("- latency: at this size (tens of KiB, 32x32) the Q/DQ work is not paid "
                   "back by int8 arithmetic on ORT's CPU provider; see "
                   "precision_speed_<machine>.md for full-size VanillaNets.")
    return out


def write_report(out: Path, info: dict, ref: float, rows, logs, failed, n: int) -> None:
    lines = [
        "# int8 within an accuracy budget: a VanillaNet with a planted wide-range channel",
        "",
        f"- machine: {info['cpu']}, {info['cores']} CPUs; onnxruntime {onnxruntime.__version__}",
        f"- model: tests/digits.py (dims 16/32/64, {IMG}x{IMG}, trained on scikit-learn's "
        "digits), stage 0 channel 3 planted x1000 (same network in fp32)",
        f"- top-1 on the {n} held-out digits (ImageFolder of PNGs), computed by this script; "
        "calibration: 200 training digits (20 per class)",
        f"- latency: batch 1, intra_op_num_threads={THREADS}, median of {RUNS} interleaved "
        "rounds",
        "",
        "| artifact | top-1 % | drop vs fp32 (points) | Convs with int8 weights | median ms | "
        "size KiB |",
        "|---|---:|---:|---|---:|---:|",
        f"| fp32 training form (PyTorch) | {ref:.2f} | 0.00 | - | - | - |",
    ]
    lines += [f"| {k} | {t:.2f} | {ref - t:.2f} | {c} | {ms:.3f} | {kib:.0f} |"
              for k, t, c, ms, kib in rows]
    lines += [f"| {k} | not written (exit {v[2]}) | | | | |" for k, v in failed.items()]
    lines += ["", *notes(ref, rows, logs), "", "## What the CLI said (int8 lines)", ""]
    for k, text in logs.items():
        keep = [ln for ln in text.splitlines() if ln.startswith(("int8", "equalized",
                                                                  "verify", "verifying"))]
        if keep:
            lines += [f"### {k}", "", "```", *keep, "```", ""]
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
