"""vnexport's ONNX file vs the file a user gets by hand today, on this machine, in one run.

By hand: the authors' ``switch_to_deploy`` (our ``reparameterize``, the same maths), then
``torch.onnx.export(model, (x,), path)`` with default options. vnexport: ``export_onnx`` on the
loaded training checkpoint (fuse + export + clean + onnxslim + write).

Reports export time, file layout, op inventory and ONNX Runtime CPU latency (batch 1, median of
``--runs`` runs after warm-up, ``--threads`` intra-op threads), plus the two files' agreement.

    PYTHONPATH=. python benchmarks/onnx_vs_by_hand.py --variants vanillanet_5 vanillanet_13
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from vnexport.bench import ort_call
from vnexport.checkpoint import load_checkpoint
from vnexport.model import VARIANTS
from vnexport.onnx_export import export_onnx
from vnexport.onnx_file import op_inventory
from vnexport.ort import run as run_ort
from vnexport.ort import session as ort_session
from vnexport.synthetic import write_training_checkpoint


def by_hand(ckpt, path: Path, img_size: int) -> float:
    """switch_to_deploy, then torch.onnx.export with default options. Returns seconds."""
    t = time.perf_counter()
    model = ckpt.build_model().reparameterize().eval()
    x = torch.randn(1, 3, img_size, img_size)
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path))
    return time.perf_counter() - t


def latencies_ms(paths: dict[str, Path], x: np.ndarray, threads: int, runs: int,
                 warmup: int = 3) -> dict[str, list[float]]:
    """Batch-1 latency of each file, runs interleaved (alternating order) so that both see the
    same machine load."""
    calls = {k: ort_call(ort_session(p, threads=threads, device="cpu"), x)[0]
             for k, p in paths.items()}
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    order = list(calls)
    for i in range(runs):
        for k in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            calls[k]()
            times[k].append((time.perf_counter() - t) * 1e3)
    return times


def files_of(folder: Path) -> dict[str, float]:
    return {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(folder.iterdir())}


def bench(variant: str, img_size: int, threads: int, runs: int, work: Path) -> dict:
    cfg = VARIANTS[variant]
    ckpt_path = work / f"checkpoint-{variant}.pth"
    write_training_checkpoint(ckpt_path, cfg, seed=0, epoch=299, with_ema=False)
    t = time.perf_counter()
    ckpt = load_checkpoint(ckpt_path)
    load_s = time.perf_counter() - t
    ckpt.build_model()  # touch the (memory-mapped) weights once, so neither export pays the disk

    ours_dir, hand_dir = work / f"{variant}-vnexport", work / f"{variant}-by-hand"
    ours_dir.mkdir()
    hand_dir.mkdir()
    ours, hand = ours_dir / f"{variant}.onnx", hand_dir / f"{variant}.onnx"
    t = time.perf_counter()
    export_onnx(ckpt, ours, img_size=img_size)
    ours_s = time.perf_counter() - t
    hand_s = by_hand(ckpt, hand, img_size)

    x = np.random.default_rng(0).standard_normal((1, 3, img_size, img_size)).astype(np.float32)
    lat = latencies_ms({"vnexport": ours, "by_hand": hand}, x, threads, runs)
    ours_ms, hand_ms = statistics.median(lat["vnexport"]), statistics.median(lat["by_hand"])
    a = run_ort(ort_session(ours, threads=threads, device="cpu"), x)
    b = run_ort(ort_session(hand, threads=threads, device="cpu"), x)
    hand_model = onnx.load(str(hand), load_external_data=False)
    result = {
        "variant": variant,
        "img_size": img_size,
        "checkpoint_load_s": round(load_s, 2),
        "export_s": {"vnexport": round(ours_s, 2), "by_hand": round(hand_s, 2)},
        "files": {"vnexport": files_of(ours_dir), "by_hand": files_of(hand_dir)},
        "opset": {"vnexport": opset_of(onnx.load(str(ours), load_external_data=False)),
                   "by_hand": opset_of(hand_model)},
        "op_inventory": {"vnexport": op_inventory(ours), "by_hand": op_inventory(hand_model)},
        "ort_latency_ms_median": {"vnexport": round(ours_ms, 2), "by_hand": round(hand_ms, 2),
                                  "runs": {k: [round(t, 1) for t in v] for k, v in lat.items()}},
        "ort_latency_ms_min": {k: round(min(v), 2) for k, v in lat.items()},
        "latency_change_pct": round(100 * (ours_ms - hand_ms) / hand_ms, 1),
        "outputs_max_abs_diff": float(np.abs(a - b).max()),
    }
    for p in list(ours_dir.iterdir()) + list(hand_dir.iterdir()) + [ckpt_path]:
        p.unlink()
    return result


def opset_of(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["vanillanet_5", "vanillanet_13"])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    import onnxruntime

    env = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
           "torch": str(torch.__version__), "onnx": onnx.__version__,
           "onnxruntime": onnxruntime.__version__}
    print(json.dumps(env))
    results = []
    with tempfile.TemporaryDirectory(prefix="vnexport-bench-") as d:
        for v in args.variants:
            r = bench(v, args.img_size, args.threads, args.runs, Path(d))
            results.append(r)
            print(json.dumps(r, indent=1))
    print()
    print(f"{'variant':<16} {'export s (ours/hand)':>22} {'ORT ms b1 (ours/hand)':>24} "
          f"{'change':>8} {'min ms (ours/hand)':>20}  files by hand")
    for r in results:
        e, lat, m = r["export_s"], r["ort_latency_ms_median"], r["ort_latency_ms_min"]
        print(f"{r['variant']:<16} {e['vnexport']:>10.1f} / {e['by_hand']:<9.1f} "
              f"{lat['vnexport']:>11.1f} / {lat['by_hand']:<10.1f} "
              f"{r['latency_change_pct']:>+7.1f}% {m['vnexport']:>9.1f} / {m['by_hand']:<8.1f}"
              f"  {', '.join(r['files']['by_hand'])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
