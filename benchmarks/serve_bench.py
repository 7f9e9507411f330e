"""Serving benchmark: Triton (the nvidia-pytriton wheel's server, the Python-backend model that
``vnexport triton --backend python`` writes) over HTTP and gRPC vs in-process onnxruntime.

    python benchmarks/serve_bench.py [--models vanillanet_5,small] [--clients 1,4,16]
                                     [--seconds 8] [--out PATH]

For each model: a seeded training-script checkpoint, ``vnexport``'s ONNX export (dynamic batch),
a repository with dynamic batching, one server on free 127.0.0.1 ports. For each transport
(in-process onnxruntime, HTTP, gRPC) and each number of concurrent clients, every client sends
single-image requests back to back for about ``--seconds``; the table gives p50/p99 latency per
request, throughput (requests/s over the cell's wall time) and, for Triton, the mean batch the
server ran (inference_count / execution_count from its statistics). Client threads, server and
onnxruntime share this machine's cores. Writes ``benchmarks/results/serve_<machine>.md`` and
``.json``.

Where Triton's own load generator runs (``perf_analyzer``: on PATH, $PERF_ANALYZER, or the
``perf-analyzer`` wheel's ``perf_analyzer/bin/perf_analyzer``), it measures the same server too
(``--concurrency-range N:N`` per client count, over HTTP and gRPC, CSV report) and its figures
are a second table. Where it does not run, the report says why: its wheels (2.58-2.60) are
``manylinux_2_38`` (glibc >= 2.38, GLIBCXX_3.4.32), so pip on an older glibc resolves
``perf-analyzer`` to the 0.1.0 placeholder that has no binary.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run import machine_info, machine_slug  # noqa: E402 (the benchmarks' shared machine name)

from vnexport import ort  # noqa: E402
from vnexport import triton as T  # noqa: E402
from vnexport.checkpoint import load_checkpoint  # noqa: E402
from vnexport.model import VanillaNetConfig, get_config  # noqa: E402
from vnexport.onnx_export import export_onnx  # noqa: E402
from vnexport.synthetic import write_training_checkpoint  # noqa: E402
from vnexport.triton_server import TritonServer, missing_reason  # noqa: E402

SMALL = VanillaNetConfig(dims=(16, 32, 64, 128), strides=(2, 2, 1), act_num=1, num_classes=100)
IMG = {"vanillanet_5": 224, "small": 32}
QUEUE_DELAY_US = 500


def free_ports(n: int = 3) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def make_onnx(name: str, folder: Path) -> Path:
    cfg = SMALL if name == "small" else get_config(name)
    ckpt = write_training_checkpoint(folder / f"{name}.pth", cfg, seed=0, with_ema=False)
    path = folder / f"{name}.onnx"
    export_onnx(load_checkpoint(ckpt, strides=cfg.strides), path, img_size=IMG[name],
                dynamic_batch=True)
    return path


def timed_clients(n_clients: int, seconds: float, make_call) -> dict:
    """``n_clients`` threads, each calling its own ``make_call()`` back to back for about
    ``seconds``; latencies of every call, errors counted."""
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(n_clients + 1)

    def worker():
        call, close = make_call()
        call()  # warm-up (connection, first batch)
        start.wait()
        mine, end = [], time.perf_counter() + seconds
        try:
            while time.perf_counter() < end:
                t = time.perf_counter()
                try:
                    call()
                except Exception:  # counted in the table
                    with lock:
                        errors[0] += 1
                    continue
                mine.append(time.perf_counter() - t)
        finally:
            close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(n_clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.asarray(lat) * 1e3
    return {"clients": n_clients, "requests": len(lat), "errors": errors[0],
            "wall_s": round(wall, 2), "throughput_rps": round(len(lat) / wall, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None}


def ort_factory(session, x):
    def make():
        return (lambda: session.run(["logits"], {"input": x})), (lambda: None)
    return make


def triton_factory(module, url: str, model: str, x):
    def make():
        client = module.InferenceServerClient(url)
        inp = module.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        out = [module.InferRequestedOutput("logits")]
        return (lambda: client.infer(model, [inp], outputs=out)), client.close
    return make


def counts(url: str, model: str) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(s["inference_count"]), int(s["execution_count"])


def bench_model(name: str, folder: Path, clients: list[int], seconds: float,
                pa: str | None = None) -> dict:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    path = make_onnx(name, folder)
    facts = T.read_facts(path)
    opts = T.ServingOptions(name=name, backend="python", kind="cpu",
                            max_queue_delay_us=QUEUE_DELAY_US)
    repo = folder / f"repo_{name}"
    T.write_repository(repo, T.model_folders(facts, opts))
    x = np.random.default_rng(0).standard_normal((1, 3, IMG[name], IMG[name])).astype(np.float32)
    session = ort.session(path, device="cpu")
    cells = []
    for c in clients:
        cells.append({"transport": "onnxruntime in-process",
                      **timed_clients(c, seconds, ort_factory(session, x))})
    del session
    http, grpc, metrics = free_ports()
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        t = time.perf_counter()
        server.wait_ready(300)
        load_s = time.perf_counter() - t
        for label, module, url in (("Triton HTTP", httpclient, f"127.0.0.1:{http}"),
                                   ("Triton gRPC", grpcclient, f"127.0.0.1:{grpc}")):
            for c in clients:
                before = counts(f"127.0.0.1:{http}", name)
                cell = timed_clients(c, seconds, triton_factory(module, url, name, x))
                inf, ex = (a - b for a, b in zip(counts(f"127.0.0.1:{http}", name), before))
                cells.append({"transport": label, **cell,
                              "mean_batch": round(inf / ex, 2) if ex else None})
        pa_cells = perf_analyzer_cells(pa, name, {"http": f"127.0.0.1:{http}",
                                                  "grpc": f"127.0.0.1:{grpc}"},
                                       clients, seconds, folder) if pa else None
    return {"model": name, "img_size": IMG[name], "precision": facts.precision,
            "onnx_mib": round(path.stat().st_size / 2**20, 1),
            "server_ready_s": round(load_s, 2), "cells": cells, "perf_analyzer": pa_cells}


def perf_analyzer() -> tuple[str | None, str]:
    """(the perf_analyzer binary, its --version line) where it runs here, else (None, why)."""
    spec = importlib.util.find_spec("perf_analyzer")
    wheel_bin = (Path(spec.origin).parent / "bin" / "perf_analyzer"
                 if spec is not None and spec.origin else None)
    candidates = [os.environ.get("PERF_ANALYZER"), shutil.which("perf_analyzer"),
                  str(wheel_bin) if wheel_bin is not None and wheel_bin.is_file() else None]
    path = next((c for c in candidates if c), None)
    if path is None:
        placeholder = " (the installed perf-analyzer is the 0.1.0 placeholder, no binary)" \
            if spec is not None else ""
        return None, ("perf_analyzer not found" + placeholder + ": `pip install perf-analyzer` "
                      "gets the binary only on glibc >= 2.38 (its wheels are manylinux_2_38); "
                      "else use Triton's SDK container "
                      "(nvcr.io/nvidia/tritonserver:<yy.mm>-py3-sdk)")
    try:
        r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as e:
        return None, f"{path} does not start here ({e})"
    text = (r.stdout + r.stderr).strip()
    if "not found (required by" in text or "error while loading shared libraries" in text:
        return None, f"{path} does not start here: {text.splitlines()[0]}"
    return path, (text.splitlines() or ["perf_analyzer"])[0]


def perf_analyzer_cells(binary: str, model: str, urls: dict, clients: list[int],
                        seconds: float, folder: Path) -> list[dict]:
    """perf_analyzer's figures for ``model`` over HTTP and gRPC at each client count
    (concurrency mode; its CSV: throughput in infer/s, latencies in microseconds)."""
    cells = []
    for proto, url in urls.items():
        for c in clients:
            out = folder / f"pa_{model}_{proto}_{c}.csv"
            cmd = [binary, "-m", model, "-u", url, "-i", proto, "--concurrency-range",
                   f"{c}:{c}", "--measurement-interval", str(int(seconds * 1000)), "-f",
                   str(out)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0 or not out.is_file():
                cells.append({"transport": f"perf_analyzer {proto}", "clients": c,
                              "error": (r.stderr or r.stdout).strip()[-300:]})
                continue
            row = next(csv.DictReader(out.open()))
            cells.append({"transport": f"perf_analyzer {proto}", "clients": c,
                          "throughput_rps": float(row["Inferences/Second"]),
                          "p50_ms": round(float(row["p50 latency"]) / 1e3, 2),
                          "p99_ms": round(float(row["p99 latency"]) / 1e3, 2)})
    return cells


def report(info: dict, results: list[dict], seconds: float, loads: tuple) -> str:
    lines = ["# Serving: Triton (Python backend, onnxruntime) over HTTP and gRPC vs "
             "in-process onnxruntime", "",
             f"- machine: {info['cpu']}, {info['cores']} CPUs ({info['cpu_features']}), "
             f"{info['memory_gib']} GiB; {info['os']}; Python {info['python']}, onnxruntime "
             f"{info['onnxruntime']}; GPU: {info['gpu'] or 'none'}",
             f"- server: nvidia-pytriton 0.7.0's tritonserver, the model.py `vnexport triton "
             f"--backend python` writes, 1 CPU instance, dynamic batching (max queue delay "
             f"{QUEUE_DELAY_US} us), started from `vnexport.triton_server.TritonServer`",
             f"- each cell: N client threads sending single-image requests back to back for "
             f"~{seconds:g} s after one warm-up request each; latency per request; "
             "throughput = requests / wall time; mean batch = the server's inference_count / "
             "execution_count over the cell",
             "- clients, server and onnxruntime share the machine's cores; the machine is shared "
             f"with other work (load average before/after: {loads[0]:.2f} / {loads[1]:.2f})",
             "- the cells run one after another (in-process, then HTTP, then gRPC); where the "
             "load average moved during the run, compare figures within a transport more than "
             "across transports",
             "- p99 over fewer than 100 requests is close to the slowest request (see the "
             "requests column)",
             "- weights: seeded random (synthetic), fp32, dynamic batch; one image per request", ""]
    lines.insert(-1, f"- perf_analyzer: {info.get('perf_analyzer')}")
    for r in results:
        lines += [f"## {r['model']} ({r['img_size']}x{r['img_size']}, {r['onnx_mib']} MiB "
                  f"ONNX; server ready in {r['server_ready_s']} s)", "",
                  "| transport | clients | requests | errors | p50 ms | p99 ms | req/s | "
                  "mean batch |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for c in r["cells"]:
            lines.append(f"| {c['transport']} | {c['clients']} | {c['requests']} | "
                         f"{c['errors']} | {c['p50_ms']} | {c['p99_ms']} | "
                         f"{c['throughput_rps']} | {c.get('mean_batch') or '-'} |")
        lines.append("")
        if r.get("perf_analyzer"):
            lines += ["perf_analyzer, the same server:", "",
                      "| transport | clients | p50 ms | p99 ms | infer/s |",
                      "|---|---:|---:|---:|---:|"]
            lines += [f"| {c['transport']} | {c['clients']} | {c.get('p50_ms', '-')} | "
                      f"{c.get('p99_ms', '-')} | {c.get('throughput_rps', c.get('error'))} |"
                      for c in r["perf_analyzer"]]
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="vanillanet_5,small")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    reason = missing_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 3
    info = machine_info(threads=0)
    pa, pa_status = perf_analyzer()
    info["perf_analyzer"] = pa_status if pa else f"not run: {pa_status}"
    print(f"perf_analyzer: {info['perf_analyzer']}", file=sys.stderr)
    out = args.out or (Path(__file__).parent / "results" / f"serve_{machine_slug(info)}.md")
    clients = [int(c) for c in args.clients.split(",")]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="serve_bench_") as tmp:
        results = [bench_model(m, Path(tmp), clients, args.seconds, pa)
                   for m in args.models.split(",")]
    loads.append(os.getloadavg()[0])
    out.write_text(report(info, results, args.seconds, tuple(loads)) + "\n")
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "slug": machine_slug(info), "seconds": args.seconds,
         "queue_delay_us": QUEUE_DELAY_US, "load_avg": loads, "results": results},
        indent=2) + "\n")
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
