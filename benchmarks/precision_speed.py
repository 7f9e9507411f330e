"""FP32 vs FP16 vs INT8 ONNX on ONNX Runtime's CPU provider: batch 1, 2 threads, same run.

    PYTHONPATH=. python benchmarks/precision_speed.py [--variants vanillanet_5 vanillanet_13]

Seeded random weights (synthetic.random_training_model), fused with fuse.deploy_model, exported
to fp32 ONNX, then converted with vnexport.precision. INT8 is calibrated on seeded random inputs
(fine for speed, not for accuracy). Every file gets its own session (intra_op_num_threads=2,
ORT_ENABLE_ALL); after 3 warm-up runs the sessions run in interleaved rounds (fp32, fp16, int8,
... then again), so that load from other processes hits all of them alike; the figure is the
median of 20 rounds. Results go to benchmarks/results/precision_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from vnexport.checkpoint import load_checkpoint
from vnexport.fuse import deploy_model
from vnexport.model import VARIANTS
from vnexport.precision import (apply_precision, fp32_onnx_from_deploy, latencies_ms, session,
                                to_int8)
from vnexport.synthetic import write_training_checkpoint
from vnexport.verify import random_inputs

RUNS, WARMUP, THREADS = 20, 3, 2


def build_files(variant: str, folder: Path, img_size: int, n_calib: int) -> dict[str, Path]:
    cfg = VARIANTS[variant]
    ckpt = load_checkpoint(write_training_checkpoint(folder / f"{variant}.pth", cfg, seed=0))
    fp32 = fp32_onnx_from_deploy(deploy_model(ckpt), img_size)
    calib = random_inputs(cfg, n=n_calib, img_size=img_size, seed=1).numpy()
    files = {}
    for name, make in [
        ("fp32", lambda: fp32),
        ("fp16", lambda: apply_precision(fp32, "fp16", calib_x=calib)[0]),
        ("int8", lambda: apply_precision(fp32, "int8", calib_x=calib, calib_is_random=True)[0]),
        # not what vnexport writes (TensorRT needs symmetric int8 activations): measured to see
        # whether ORT's x86 kernels prefer uint8 activations
        ("int8-u8act", lambda: to_int8(fp32, calib, activation_type="uint8")),
    ]:
        path = folder / f"{variant}_{name}.onnx"
        onnx.save(make(), path)
        files[name] = path
    return files


def measure(files: dict[str, Path], img_size: int) -> dict[str, list[float]]:
    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size), dtype=np.float32)
    sessions = {k: session(p, threads=THREADS) for k, p in files.items()}
    return latencies_ms(sessions, x, runs=RUNS, warmup=WARMUP)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["vanillanet_5", "vanillanet_13"])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--calib-n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="independent medians of 20 rounds")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" /
                    "precision_speed.md")
    args = ap.parse_args()
    rows = []
    load_before = os.getloadavg()
    for variant in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            files = build_files(variant, Path(tmp), args.img_size, args.calib_n)
            sizes = {k: p.stat().st_size / 2**20 for k, p in files.items()}
            reps = [measure(files, args.img_size) for _ in range(args.repeats)]
        for k in files:
            meds = [float(np.median(t[k])) for t in reps]
            ratios = [float(np.median(t["fp32"]) / np.median(t[k])) for t in reps]
            best = min(min(t[k]) for t in reps)
            rows.append((variant, k, sizes[k], float(np.median(meds)), best,
                         float(np.median(ratios)), ratios))
            print(f"{variant:<14} {k:<11} {sizes[k]:8.1f} MiB  median {np.median(meds):8.1f} ms  "
                  f"min {best:8.1f} ms  speed-up vs fp32 {np.median(ratios):.2f}x "
                  f"(repeats: {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)
    load_after = os.getloadavg()
    lines = [
        "# Precision speed on ONNX Runtime's CPU provider",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}",
        f"- batch 1, {args.img_size}x{args.img_size}, intra_op_num_threads={THREADS}, "
        f"ORT_ENABLE_ALL, {WARMUP} warm-up runs, median of {RUNS} interleaved rounds "
        "(same process, same run)",
        f"- load average before/after (other processes on the machine): "
        f"{load_before[0]:.2f} / {load_after[0]:.2f}",
        "- int8 = what vnexport writes: Q/DQ, int8 weights symmetric per channel, int8 "
        "activations symmetric per tensor (TensorRT's requirement); int8-u8act = uint8 "
        "asymmetric activations, for comparison only",
        "- weights: seeded random (synthetic.random_training_model), fused; int8 calibrated on "
        f"{args.calib_n} random inputs (speed only)",
        "",
        f"- {args.repeats} repeats, each the median of {RUNS} interleaved rounds; the table "
        "gives the median over repeats, and each repeat's speed-up",
        "",
        "| variant | file | size MiB | median ms | min ms | speed-up vs fp32 | per repeat |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    lines += [f"| {v} | {k} | {s:.1f} | {m:.1f} | {mn:.1f} | {r:.2f}x | "
              f"{', '.join(f'{x:.2f}' for x in rs)} |" for v, k, s, m, mn, r, rs in rows]
    lines += [
        "",
        "Notes (from profiling these files with ORT's profiler on this machine):",
        "- int8: ORT fuses every DQ -> Conv -> Q into QLinearConv (per-channel symmetric int8 "
        "weights); MaxPool runs on int8 between Q/DQ; the Relu after it stays a float op "
        "between DQ and Q (symmetric activations keep it: ORT drops Relu/Clip only for "
        "asymmetric ones). The stem conv stays float by design (see vnexport/precision.py).",
        "- uint8 (asymmetric) activations, often advised for x86, were slower here (an AVX2 CPU "
        "without VNNI): ORT adds layout Transposes/ReorderInput around the u8 convs. vnexport "
        "writes symmetric int8 activations, which TensorRT requires, and which were faster too.",
        "- fp16 brings no speed on ORT's x86 CPU provider: it has no float16 Conv kernel and "
        "runs the graph in float32 (weights cast up at load). The fp16 file is for TensorRT / "
        "GPU providers; its value is half the size here.",
        "- The machine is shared (load average above); interleaved rounds keep the ratios fair "
        "but absolute times vary between runs.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
