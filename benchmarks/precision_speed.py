"""FP32 vs FP16 vs INT8 ONNX on ONNX Runtime's CPU provider: batch 1, 2 threads, same run.

    PYTHONPATH=. python benchmarks/precision_speed.py [--variants vanillanet_5 vanillanet_13]

Seeded random weights (synthetic.random_training_model), fused with fuse.deploy_model, exported
to fp32 ONNX, then converted with vnexport.precision. INT8 is calibrated on seeded random inputs
(fine for speed, not for accuracy). Every file gets its own session (intra_op_num_threads=2,
ORT_ENABLE_ALL); after 3 warm-up runs the sessions run in interleaved rounds (fp32, fp16, int8,
... then again), so that load from other processes hits all of them alike; the figure is the
median of 20 rounds. Results go to benchmarks/results/precision_speed_<machine>.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import machine_info, machine_slug  # noqa: E402 (the benchmarks' shared machine name)

from vnexport.checkpoint import load_checkpoint
from vnexport.fuse import deploy_model
from vnexport.model import VARIANTS
from vnexport import ort
from vnexport.onnx_export import fp32_onnx_from_deploy
from vnexport.precision import apply_precision, latencies_ms, to_int8
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
    sessions = {k: ort.session(p, threads=THREADS, device="cpu") for k, p in files.items()}
    return latencies_ms(sessions, x, runs=RUNS, warmup=WARMUP)


def notes(rows) -> list[str]:
    """What the table shows, written from its figures (not from an earlier machine)."""
    speed = {(v, k): r for v, k, _, _, _, r, _ in rows}
    out = [
        "- int8: ORT fuses every DQ -> Conv -> Q into QLinearConv (per-channel symmetric int8 "
        "weights); the stem conv stays float by design (see vnexport/precision.py).",
    ]
    for v in dict.fromkeys(v for v, *_ in rows):
        s8, u8 = speed.get((v, "int8")), speed.get((v, "int8-u8act"))
        if s8 is None or u8 is None:
            continue
        if u8 > s8 * 1.05:
            verdict = "faster than"
        elif u8 < s8 / 1.05:
            verdict = "slower than"
        else:
            verdict = "within 5% of"
        out.append(f"- {v}: uint8 (asymmetric) activations {u8:.2f}x vs symmetric int8 "
                   f"{s8:.2f}x: {verdict} what vnexport writes. vnexport keeps symmetric int8 "
                   "activations, which TensorRT requires.")
    fp16 = ", ".join(f"{v} {r:.2f}x" for (v, k), r in speed.items() if k == "fp16")
    out += [
        f"- fp16 vs fp32 on ORT's CPU provider: {fp16}. The fp16 file is for TensorRT and GPU "
        "providers; on a CPU its gain is the halved size, not speed (ORT's x86 CPU kernels "
        "for these Convs are float32: the graph is cast up when the session loads).",
        "- Interleaved rounds keep the ratios fair under other load on the machine (load "
        "average above); absolute times vary between runs.",
    ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["vanillanet_5", "vanillanet_13"])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--calib-n", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5, help="independent medians of 20 rounds")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file (default: results/precision_speed_<machine>.md)")
    args = ap.parse_args()
    info = machine_info(THREADS)
    if args.out is None:
        args.out = Path(__file__).parent / "results" / f"precision_speed_{machine_slug(info)}.md"
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
        f"- machine: {info['cpu']}, {info['cores']} CPUs ({info['cpu_features']}), "
        f"{info['memory_gib']} GiB; onnxruntime {onnxruntime.__version__}, onnx {onnx.__version__}",
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
    lines += ["", "Notes:"] + notes(rows) + [""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
