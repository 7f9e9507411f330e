#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and TensorRT >= 10.12 (e.g. inside the docker/ image): run the
# GPU tests and the latency benchmark in one go, within 10 minutes, and put everything in one
# folder: env.txt, gpu-tests.log, gpu-tests.xml (JUnit), latency.json, latency.log, summary.json.
#
#   benchmarks/gpu_check.sh [OUT_DIR]          # default ./gpu-results
#   docker run --gpus all --rm -v "$PWD/gpu-results":/out vnexport-trt benchmarks/gpu_check.sh /out
#
# Exit status: 0 when the tests and the benchmark passed, 1 otherwise (a GPU test that fails,
# or one that is SKIPPED: on the GPU machine this script is for, a skip means something the
# tests need is missing, e.g. tensorrt_rtx for the TensorRT-RTX engine test), 3 when TensorRT or
# a GPU is missing (then only env.txt and summary.json are written).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="$(python3 -c 'import os,sys; print(os.path.abspath(sys.argv[1]))' "${1:-./gpu-results}")"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
TESTS_BUDGET=${TESTS_BUDGET:-360}   # seconds; benchmark gets BENCH_BUDGET; both < 600 in all
BENCH_BUDGET=${BENCH_BUDGET:-200}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv 2>&1 || true
  "$PY" -c 'import tensorrt as t; print("tensorrt", t.__version__)' 2>&1 || true
  "$PY" -c 'import tensorrt_rtx as t; print("tensorrt_rtx", t.__version__)' 2>&1 || true
  "$PY" -c 'import polygraphy as p; print("polygraphy", p.__version__)' 2>&1 || true
  "$PY" -c 'import torch, onnx, onnxruntime as o; print("torch", torch.__version__, "onnx", onnx.__version__, "onnxruntime", o.__version__)' 2>&1 || true
} > "$OUT/env.txt"
cat "$OUT/env.txt"

summary() {  # rc_tests rc_bench reason
  "$PY" - "$OUT" "$1" "$2" "$3" "$(( $(date +%s) - START ))" <<'PYEOF'
import json, os, sys, xml.etree.ElementTree as ET
out, rt, rb, reason, secs = sys.argv[1:]
s = {"tests_rc": int(rt), "bench_rc": int(rb), "seconds": int(secs), "note": reason or None}
x = os.path.join(out, "gpu-tests.xml")
if os.path.exists(x):
    r = ET.parse(x).getroot()
    r = r if r.tag == "testsuite" else r.find("testsuite")
    s["tests"] = {k: int(r.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
lj = os.path.join(out, "latency.json")
if os.path.exists(lj):
    lat = json.load(open(lj))
    s["gpu"], s["tensorrt"] = lat.get("gpu"), lat.get("tensorrt")
    s["latency_ms"] = {f"{e.get('variant')}/{e.get('precision')}/b{r['batch']}":
                       {"median": round(r["median_ms"], 4), "p90": round(r["p90_ms"], 4)}
                       for e in lat["results"] for r in e.get("latency", []) if "median_ms" in r}
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps(s, indent=2))
PYEOF
}

if ! WHY=$("$PY" -c 'from vnexport.trt import runtime_missing_reason as r; w = r(); print(w or ""); raise SystemExit(1 if w else 0)'); then
  echo "gpu_check: cannot run here: $WHY" | tee -a "$OUT/env.txt"
  summary 3 3 "$WHY"
  exit 3
fi

timeout "$TESTS_BUDGET" "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider \
  --junitxml="$OUT/gpu-tests.xml" tests 2>&1 | tee "$OUT/gpu-tests.log"
RC_TESTS=${PIPESTATUS[0]}
# a skipped GPU test on a GPU machine is a failure too (pytest itself exits 0 on skips)
SKIPPED=$("$PY" - "$OUT/gpu-tests.xml" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except (OSError, ET.ParseError):
    print("no-report")
    raise SystemExit
print(sum(1 for _ in root.iter("skipped")))
PYEOF
)
if [ "$SKIPPED" != "0" ]; then
  echo "gpu_check: GPU tests skipped on a GPU machine: $SKIPPED (see 'SKIPPED' in gpu-tests.log)" \
    | tee -a "$OUT/gpu-tests.log"
  [ "$RC_TESTS" -eq 0 ] && RC_TESTS=1
fi

timeout "$BENCH_BUDGET" "$PY" benchmarks/trt_latency.py --variant vanillanet_5 \
  --precisions fp32,fp16 --batches 1,8 --workdir "$OUT/engines" --out "$OUT/latency.json" \
  2>&1 | tee "$OUT/latency.log"
RC_BENCH=${PIPESTATUS[0]}
rm -f "$OUT"/engines/*.onnx "$OUT"/engines/*.pth   # keep engines + provenance, not the inputs

summary "$RC_TESTS" "$RC_BENCH" ""
[ "$RC_TESTS" -eq 0 ] && [ "$RC_BENCH" -eq 0 ]
