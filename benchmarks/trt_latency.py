"""TensorRT engine latency for VanillaNet, batch 1 and 8: median and p90, as JSON.

Either measures engines you have (--engine PATH, repeatable), or builds them first: a seeded
training checkpoint of --variant, exported to ONNX per --precisions, built strongly typed with
one profile (min 1, opt 1, max = the largest --batches) and verified against the fp32 training
form before it is timed (an engine that fails verification is reported, not timed).

Timing: vnexport.trt.measure_latency, wall clock of execute_async_v3 + stream synchronize with
inputs already on the GPU, after warm-up; so it includes the launch overhead that trtexec's
"GPU compute time" leaves out. Needs TensorRT >= 10.12 and a CUDA GPU.

    python benchmarks/trt_latency.py --variant vanillanet_5 --precisions fp32,fp16 \
        --out gpu-results/latency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vnexport import trt as vt  # noqa: E402
from vnexport.errors import VnexportError  # noqa: E402

# The authors' README, batch 1 on an A100 (ms): for comparison only, on other hardware.
AUTHORS_A100_MS = {"vanillanet_5": {"fp32": 0.33, "fp16": 0.27},
                   "vanillanet_13": {"fp32": 0.82, "fp16": 0.67}}


def build_verified(variant: str, precision: str, batches: list[int], img: int, workdir: Path,
                   cache: Path, runtime: dict) -> dict:
    from vnexport.checkpoint import load_checkpoint
    from vnexport.model import VARIANTS
    from vnexport.synthetic import write_training_checkpoint
    from vnexport.stages.trt import export_for_engine
    from vnexport.verify import compare, random_inputs, run_torch, tolerance_for

    cfg = VARIANTS[variant]
    ckpt_path = workdir / f"checkpoint-{variant}.pth"
    if not ckpt_path.exists():
        write_training_checkpoint(ckpt_path, cfg, seed=0)
    ckpt = load_checkpoint(ckpt_path)
    options = vt.BuildOptions(min_batch=1, opt_batch=1, max_batch=max(batches),
                              timing_cache=cache)
    onnx_path = workdir / f"{variant}_{precision}.onnx"
    try:
        export_for_engine(ckpt, onnx_path, precision, options, img_size=img)
        producer = "vnexport.onnx_export"
    except VnexportError as e:
        if precision == "fp32":
            raise
        return {"variant": variant, "precision": precision, "skipped": str(e)}
    x = random_inputs(cfg, 8, img, seed=1)
    ref = run_torch(ckpt.build_model(), x)
    tol = tolerance_for(precision)
    engine = workdir / f"{variant}_{precision}.engine"
    for p in (engine, vt.provenance_path(engine)):
        p.unlink(missing_ok=True)
    res = vt.build_engine(onnx_path, engine, options, runtime=runtime,
                          check=lambda run: compare(ref, run(x.numpy()), tol),
                          reference="training form (PyTorch fp32)")
    out = {"variant": variant, "precision": precision, "engine": str(engine),
           "onnx_producer": producer, "build_seconds": res.provenance["build_seconds"],
           "verification": res.comparison.to_dict()}
    if not res.written:
        out["skipped"] = "verification failed: " + "; ".join(res.comparison.failures)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", action="append", default=[], help="Engine to time (repeatable); "
                    "when given, nothing is built.")
    ap.add_argument("--variant", default="vanillanet_5")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=Path("gpu-results/engines"))
    ap.add_argument("--out", type=Path, default=Path("gpu-results/latency.json"))
    a = ap.parse_args(argv)
    batches = [int(b) for b in a.batches.split(",") if b]
    try:
        runtime = vt.require_runtime()
    except VnexportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    a.workdir.mkdir(parents=True, exist_ok=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if a.engine:
        entries = [{"engine": e} for e in a.engine]
    else:
        entries = [build_verified(a.variant, p, batches, a.img_size, a.workdir,
                                  a.workdir / "trt.cache", runtime)
                   for p in a.precisions.split(",") if p]
    for entry in entries:
        if "skipped" in entry:
            print(f"{entry.get('variant')} {entry.get('precision')}: skipped: {entry['skipped']}")
            continue
        entry["latency"] = [vt.measure_latency(entry["engine"], b, a.iters, a.warmup)
                            for b in batches]
        for r in entry["latency"]:
            label = f"{entry.get('variant', entry['engine'])} {entry.get('precision', '')}"
            if "skipped" in r:
                print(f"{label} batch {r['batch']}: skipped ({r['skipped']})")
            else:
                print(f"{label} batch {r['batch']}: median {r['median_ms']:.3f} ms, "
                      f"p90 {r['p90_ms']:.3f} ms, {r['images_per_s']:.0f} images/s")
    report = {"tensorrt": runtime["tensorrt"], "polygraphy": runtime["polygraphy"],
              "gpu": runtime["gpu"], "img_size": a.img_size, "iters": a.iters,
              "warmup": a.warmup, "timing": "perf_counter around execute_async_v3 + "
              "stream synchronize, inputs on the GPU", "results": entries,
              "authors_a100_batch1_ms": AUTHORS_A100_MS.get(a.variant),
              "seconds": round(time.perf_counter() - t0, 1)}
    a.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {a.out}")
    failed = [e for e in entries if str(e.get("skipped", "")).startswith("verification failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
