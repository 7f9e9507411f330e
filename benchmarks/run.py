"""The project's own comparison table, measured on the machine at hand, in one run.

    python benchmarks/run.py [--models vanillanet_5,vanillanet_13] [--batches 1,8] [--runs 20]
                             [--warmup 2] [--budget-s 20] [--threads N] [--quick]

For each model it writes a seeded training-script checkpoint, then measures

- ``vnexport fuse`` and the ONNX export, each as a child process: wall time and peak RSS
  (the child's VmHWM and polled RSS);
- latency at each batch size (median of timed runs after warm-up) of
  the training form (PyTorch), the deploy form (PyTorch), our ONNX file on ONNX Runtime, and
  the do-it-by-hand path: the authors' switch_to_deploy (``VanillaNet.reparameterize``, the same
  arithmetic), then ``torch.onnx.export(model, (x,), path)`` with its default options, on ONNX
  Runtime;

and writes ``benchmarks/results/<machine>.md`` (tables with ratios, and the paper's reference
figures), ``<machine>.json`` (every number) and ``<machine>.png`` (chart).

The latency cells of a model (4 paths x batch sizes) are measured interleaved, round-robin, one
timed run of each per round, so that other load on the machine slows all of them alike. Each
cell takes at most ``--runs`` timed runs but stops after about ``--budget-s`` seconds of them
(never fewer than 3), so the slow cells (the training form of vanillanet_13 at batch 8 takes
seconds per run on a small CPU) finish; the table says how many runs each median is of.

"Our ONNX" is ``vnexport onnx --dynamic-batch`` (the CLI, in a child process).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ("training", "deploy", "onnx", "by_hand")
PATH_LABELS = {"training": "training form (PyTorch)", "deploy": "deploy form (PyTorch)",
               "onnx": "ONNX, ours (ORT)", "by_hand": "ONNX, by hand (ORT)"}


# --------------------------------------------------------------------------------------------
# the machine


def machine_info(threads: int) -> dict:
    import onnxruntime
    import psutil
    import torch

    model = flags = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model is None:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and flags is None:
                flags = line.split(":", 1)[1].split()
    except OSError:
        pass
    cpu = model or platform.processor() or "cpu"
    # the x86 features that decide the conv and int8 kernels (AVX-512, VNNI, AMX)
    wanted = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"]
    features = (platform.machine() if flags is None
                else ", ".join(f for f in wanted if f in flags) or "no AVX2")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cpu_features": features, "cores": os.cpu_count(), "threads": threads,
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1), "gpu": gpu,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}


def machine_slug(info: dict) -> str:
    cpu = re.sub(r"\(.*?\)|cpu|processor|@.*", "", info["cpu"], flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "-", cpu.lower()).strip("-") or "cpu"
    slug = f"{slug}-{info['cores']}c"
    if info["gpu"]:
        slug += "-" + re.sub(r"[^a-z0-9]+", "-", info["gpu"].lower()).strip("-")
    return slug


# --------------------------------------------------------------------------------------------
# exports


def export_ours(training_ckpt: Path, out: Path, img_size: int) -> str:
    """vnexport's ONNX stage (``export_onnx``, dynamic batch). Returns what wrote ``out``."""
    from vnexport.checkpoint import load_checkpoint
    from vnexport.onnx_export import export_onnx

    export_onnx(load_checkpoint(training_ckpt), out, img_size=img_size, dynamic_batch=True)
    return "vnexport.onnx_export.export_onnx (dynamic batch)"


def export_by_hand(training_ckpt: Path, out: Path, batch: int, img_size: int) -> float:
    """What a user does by hand: switch_to_deploy, then torch.onnx.export with its defaults."""
    import torch

    from vnexport.checkpoint import load_checkpoint

    model = load_checkpoint(training_ckpt).build_model()
    model.reparameterize()  # = the authors' switch_to_deploy (same folding and merging)
    x = torch.randn(batch, 3, img_size, img_size)
    t = time.perf_counter()
    torch.onnx.export(model, (x,), str(out))
    return time.perf_counter() - t


# --------------------------------------------------------------------------------------------
# child processes: wall time and peak memory


def _vm_hwm(pid: int) -> int:
    """The process's resident-memory high-water mark (VmHWM, bytes), 0 if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def run_child(cmd: list[str], poll_s: float = 0.05) -> dict:
    """Run ``cmd``; wall time, and peak RSS: the largest of the child's own high-water mark
    (VmHWM, read while it runs) and psutil's polled RSS of its process tree.

    (Not getrusage/wait4's ru_maxrss: on Linux a child's maxrss starts from the parent's RSS
    at fork, so it over-reports when the parent is large.)"""
    import psutil

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=env) as proc:
        ps = psutil.Process(proc.pid)
        os.set_blocking(proc.stdout.fileno(), False)
        peak, chunks = 0, []
        while proc.poll() is None:
            try:
                rss = ps.memory_info().rss + sum(c.memory_info().rss
                                                 for c in ps.children(recursive=True))
                peak = max(peak, rss, _vm_hwm(proc.pid))
            except psutil.Error:
                pass
            chunks.append(proc.stdout.read() or b"")
            time.sleep(poll_s)
        wall = time.perf_counter() - t
        chunks.append(proc.stdout.read() or b"")
    text = b"".join(chunks).decode(errors="replace")
    return {"cmd": " ".join(Path(c).name if i < 2 else c for i, c in enumerate(cmd)),
            "rc": proc.returncode, "wall_s": round(wall, 2), "peak_rss_mib": round(peak / 2**20),
            "tail": text.strip().splitlines()[-3:]}


def vnexport_has(command: str) -> bool:
    r = subprocess.run([sys.executable, "-m", "vnexport", command, "--help"],
                       capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return r.returncode == 0


# --------------------------------------------------------------------------------------------
# latency


def measure(make_call, batch: int, runs: int, warmup: int, budget_s: float) -> dict:
    """One cell on its own: warm-up, then up to ``runs`` timed runs, stopping after about
    ``budget_s`` seconds (at least 3)."""
    return measure_interleaved({"cell": lambda: make_call(batch)}, {"cell": batch}, runs,
                               warmup, budget_s)["cell"]


def measure_interleaved(makers: dict, batches: dict, runs: int, warmup: int,
                        budget_s: float, log=None) -> dict:
    """Several cells measured round-robin, one timed run of each per round, so that anything
    else loading the machine meanwhile slows every cell alike rather than one of them.

    ``makers[key]() -> (call, sync)``; a cell stops at ``runs`` timed runs or once its timed
    runs add up to ``budget_s`` (at least 3 runs). A cell that raises is recorded as its error.
    """
    from vnexport import bench as b

    cells, out, times = {}, {}, {}
    for key, make in makers.items():
        try:
            call, sync = make()
            b.time_calls(call, runs=max(warmup, 1), warmup=0, sync=sync)
            cells[key], times[key] = (call, sync), []
        except Exception as e:  # a path that does not run at this batch size: record why
            out[key] = {"error": (str(e).splitlines() or ["?"])[0][:200]}

    def active(key) -> bool:
        t = times[key]
        return len(t) < 3 or (len(t) < runs and sum(t) / 1e3 < budget_s)

    while any(active(k) for k in cells):
        for key, (call, sync) in cells.items():
            if active(key):
                times[key] += b.time_calls(call, runs=1, warmup=0, sync=sync)
    for key in cells:
        out[key] = b.latency_stats(times[key], batches[key], warmup=max(warmup, 1)).to_dict()
        if log:
            log(f"  {key}: median {out[key]['median_ms']:.1f} ms of {out[key]['runs']} runs")
    return out


def latency_table(name: str, files: dict, batches: list[int], args, log) -> dict:
    """Latency of the four paths at each batch size: {path: {batch: stats or {"error": ...}}},
    all cells of the model measured interleaved."""
    from vnexport import bench as b
    from vnexport.checkpoint import load_checkpoint
    from vnexport.ort import session as ort_session

    models = {p: load_checkpoint(files[p]).build_model() for p in ("training", "deploy")}
    sessions: dict = {}

    def session(f):
        if f not in sessions:
            sessions[f] = ort_session(f, threads=args.threads, device="cpu")
        return sessions[f]

    def maker(path, batch):
        x = b.random_batch(batch, args.img_size)
        if path in models:
            return lambda: b.torch_call(models[path], x)
        f = files["onnx"] if path == "onnx" else files["by_hand"][batch]
        if isinstance(f, str):  # the export failed: its error
            def fail():
                raise RuntimeError(f)
            return fail
        return lambda: b.ort_call(session(f), x)

    makers = {(p, bs): maker(p, bs) for p in PATHS for bs in batches}
    log(f"{name}: latency of {len(makers)} cells, interleaved")
    cells = measure_interleaved(makers, {k: k[1] for k in makers}, args.runs, args.warmup,
                                args.budget_s, log)
    out: dict = {p: {} for p in PATHS}
    for (p, bs), cell in cells.items():
        out[p][bs] = cell
    models.clear()
    sessions.clear()
    gc.collect()
    return out


def by_hand_batch1_at_batch8(path: Path, img_size: int, threads: int) -> str:
    """What happens when the by-hand batch-1 file gets a batch of 8."""
    import numpy as np

    from vnexport.ort import session as ort_session

    s = ort_session(path, threads=threads, device="cpu")
    try:
        s.run(None, {s.get_inputs()[0].name: np.zeros((8, 3, img_size, img_size), np.float32)})
    except Exception as e:
        return "refused: " + (str(e).splitlines() or ["?"])[0][:160]
    return "runs"


# --------------------------------------------------------------------------------------------
# one model


def bench_model(name: str, args, work: Path, log) -> dict:
    from vnexport.model import VARIANTS
    from vnexport.synthetic import write_training_checkpoint

    cfg = VARIANTS[name]
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    training = folder / "checkpoint-best.pth"
    if not training.exists():
        log(f"{name}: writing a seeded training checkpoint")
        write_training_checkpoint(training, cfg, seed=0, with_ema=False)
    res: dict = {"model": name, "img_size": args.img_size}

    deploy = folder / "deploy.pth"
    log(f"{name}: vnexport fuse (child process)")
    res["fuse"] = run_child([sys.executable, "-m", "vnexport", "fuse", str(training), "-o",
                             str(deploy), "--force", "--img-size", str(args.img_size)])
    if res["fuse"]["rc"] != 0:
        raise SystemExit(f"vnexport fuse failed: {res['fuse']['tail']}")

    onnx_path = folder / "model.onnx"
    onnx_path.unlink(missing_ok=True)
    if vnexport_has("onnx"):
        log(f"{name}: vnexport onnx (child process)")
        res["onnx_export"] = run_child([sys.executable, "-m", "vnexport", "onnx", str(training),
                                        "-o", str(onnx_path), "--force", "--dynamic-batch",
                                        "--max-batch", str(max(args.batches)),
                                        "--img-size", str(args.img_size)])
        res["onnx_exporter"] = "vnexport onnx --dynamic-batch (CLI)"
    if not onnx_path.exists():
        log(f"{name}: ONNX export (child process)")
        res["onnx_export"] = run_child([sys.executable, __file__, "--export-child", str(training),
                                        str(onnx_path), str(args.img_size)])
        tail = res["onnx_export"]["tail"]
        res["onnx_exporter"] = tail[-1] if tail else "?"

    by_hand: dict = {}
    res["by_hand_export_s"] = {}
    for batch in args.batches:
        f = folder / f"by_hand_b{batch}.onnx"
        log(f"{name}: by hand: switch_to_deploy + torch.onnx.export defaults, batch {batch}")
        try:
            res["by_hand_export_s"][batch] = round(export_by_hand(training, f, batch,
                                                                  args.img_size), 2)
            by_hand[batch] = f
        except Exception as e:
            by_hand[batch] = "export failed: " + (str(e).splitlines() or ["?"])[0][:160]
    first = by_hand.get(1)
    if isinstance(first, Path) and 8 in args.batches:
        res["by_hand_b1_file_at_batch_8"] = by_hand_batch1_at_batch8(first, args.img_size,
                                                                     args.threads)
    res["by_hand_files"] = sorted(p.name for p in folder.glob("by_hand_b*"))
    files = {"training": training, "deploy": deploy, "onnx": onnx_path, "by_hand": by_hand}
    res["load_before"] = [round(v, 2) for v in os.getloadavg()]
    res["latency"] = latency_table(name, files, args.batches, args, log)
    res["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return res


# --------------------------------------------------------------------------------------------
# report


def paper_figures() -> dict:
    """The authors' batch-1 A100 latencies, read from shared/vanillanet.md if present."""
    figures = {}
    for base in (ROOT / "shared", ROOT.parent / "shared"):
        f = base / "vanillanet.md"
        if f.exists():
            for line in f.read_text().splitlines():
                m = re.match(r"\|\s*(vanillanet_\w+)\s*\|\s*([\d.]+)\s*\|\s*([\d.-]+)\s*\|"
                             r"\s*([\d.-]+)\s*\|", line)
                if m:
                    figures[m.group(1)] = [None if v == "-" else float(v) for v in m.groups()[1:]]
            break
    return figures or PAPER


# The authors' README (batch 1, A100): PyTorch ms, TensorRT FP32 ms, TensorRT FP16 ms.
PAPER = {"vanillanet_5": [1.61, 0.33, 0.27], "vanillanet_6": [2.01, 0.40, 0.33],
         "vanillanet_7": [2.27, 0.47, 0.39], "vanillanet_8": [2.56, 0.52, 0.45],
         "vanillanet_9": [2.91, 0.58, 0.49], "vanillanet_10": [3.24, 0.63, 0.53],
         "vanillanet_11": [3.59, 0.69, 0.58], "vanillanet_12": [3.82, 0.75, 0.62],
         "vanillanet_13": [4.26, 0.82, 0.67]}


def ms(cell: dict) -> str:
    if "median_ms" not in cell:
        return "failed"
    return f"{cell['median_ms']:.1f} ({cell['runs']})"


def ratio(a: dict, b: dict) -> str:
    if "median_ms" not in a or "median_ms" not in b:
        return "-"
    return f"{a['median_ms'] / b['median_ms']:.2f}x"


def markdown(results: list[dict], info: dict, args, elapsed: float) -> str:
    lines = [f"# vnexport benchmark: {info['cpu']}, {info['cores']} cores", "",
             f"Machine: {info['cpu']}, {info['cores']} logical cores, {info['memory_gib']} GiB, "
             f"{'GPU ' + info['gpu'] if info['gpu'] else 'no GPU'}; {info['os']}; Python "
             f"{info['python']}, torch {info['torch']}, onnxruntime {info['onnxruntime']}; "
             f"{info['threads']} threads for PyTorch and ONNX Runtime.", "",
             f"Command: `python benchmarks/run.py {' '.join(args.argv)}` "
             f"({elapsed / 60:.1f} min in all). Input {args.img_size}x{args.img_size}, fp32, "
             "seeded weights (latency does not depend on their values).", "",
             "## Latency", "",
             "Median ms per batch (timed runs in brackets, after warm-up; the cells of a model "
             "measured interleaved, round-robin). Ratios: deploy form "
             "over training form, our ONNX on ONNX Runtime over the PyTorch deploy form, and "
             "the by-hand ONNX over ours (above 1: ours is faster).", "",
             "| model | batch | training form | deploy form | ONNX, ours | ONNX, by hand | "
             "training / deploy | deploy / ONNX ours | by hand / ours | ours img/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lat = r["latency"]
        for batch in args.batches:
            c = {p: lat[p].get(batch, lat[p].get(str(batch), {})) for p in PATHS}
            ips = f"{c['onnx']['images_per_s']:.1f}" if "images_per_s" in c["onnx"] else "-"
            lines.append(f"| {r['model']} | {batch} | {ms(c['training'])} | {ms(c['deploy'])} | "
                         f"{ms(c['onnx'])} | {ms(c['by_hand'])} | "
                         f"{ratio(c['training'], c['deploy'])} | "
                         f"{ratio(c['deploy'], c['onnx'])} | "
                         f"{ratio(c['by_hand'], c['onnx'])} | {ips} |")
    loads = "; ".join(f"{r['model']} {r['load_before']} -> {r['load_after']}" for r in results
                      if r.get("load_before"))
    if loads:
        lines += ["", f"Load average (1, 5, 15 min) before -> after each model's latency cells: "
                      f"{loads} ({info['cores']} cores; a 1-min figure well above the "
                      f"{info['threads']} threads used means other work shared the machine)."]
    paper = paper_figures()
    lines += ["", "## Against the paper's figures", "",
              "The authors' batch-1 latencies are on an A100 GPU (PyTorch, TensorRT); this "
              "machine's absolute figures are not comparable with them, the ratios are.", "",
              "| model | paper PyTorch A100 ms | paper TRT FP32 ms | paper TRT FP16 ms | "
              "paper PyTorch / TRT FP32 | here deploy ms (b1) | here deploy / ONNX ours (b1) | "
              "paper vs vanillanet_5 | here vs vanillanet_5 |", "|---|---|---|---|---|---|---|---|---|"]
    base_here = base_paper = None
    for r in results:
        p = paper.get(r["model"], [None, None, None])
        d = r["latency"]["deploy"].get(1, {})
        o = r["latency"]["onnx"].get(1, {})
        if r["model"] == "vanillanet_5":
            base_paper, base_here = p[0], d.get("median_ms")
        rel_p = f"{p[0] / base_paper:.2f}x" if p[0] and base_paper else "-"
        rel_h = (f"{d['median_ms'] / base_here:.2f}x" if "median_ms" in d and base_here
                 else "-")
        fmt = [("-" if v is None else f"{v}") for v in p]
        speedup = f"{p[0] / p[1]:.1f}x" if p[0] and p[1] else "-"
        here = f"{d['median_ms']:.1f}" if "median_ms" in d else "-"
        lines.append(f"| {r['model']} | {fmt[0]} | {fmt[1]} | {fmt[2]} | {speedup} | {here} | "
                     f"{ratio(d, o)} | {rel_p} | {rel_h} |")
    lines += ["", "## Pipeline cost", "",
              "Wall time and peak resident memory of each stage as a child process (Python "
              "start-up and imports included). `fuse` verifies by default (8 random inputs at "
              f"{args.img_size}, training form against deploy form).", "",
              "| model | stage | command | wall s | peak RSS MiB |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | fuse | `vnexport fuse` | {r['fuse']['wall_s']} | "
                     f"{r['fuse']['peak_rss_mib']} |")
        e = r["onnx_export"]
        lines.append(f"| {r['model']} | onnx | {r['onnx_exporter']} | {e['wall_s']} | "
                     f"{e['peak_rss_mib']} |")
    lines += ["", "## The by-hand path", ""]
    for r in results:
        times = ", ".join(f"batch {b}: {s} s" for b, s in r["by_hand_export_s"].items())
        lines.append(f"- {r['model']}: `torch.onnx.export(model, (x,), path)` export time "
                     f"(in process) {times}; files {', '.join(r['by_hand_files'])}."
                     + (f" The batch-1 file given a batch of 8: "
                        f"{r['by_hand_b1_file_at_batch_8']}."
                        if r.get("by_hand_b1_file_at_batch_8") else ""))
    lines += ["", "With its defaults (the torch.export-based exporter since PyTorch 2.9) the "
              "by-hand file has the example's fixed batch size and its weights in a separate "
              "`.onnx.data` file: each batch size needs its own export, here done once per "
              "batch measured.", ""]
    exporters = sorted({r["onnx_exporter"] for r in results})
    lines.append(f"Our ONNX file: {'; '.join(exporters)}.")
    return "\n".join(lines) + "\n"


def chart(results: list[dict], batches: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = [(r, b) for r in results for b in batches]
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(groups)), 4.5))
    width = 0.8 / len(PATHS)
    xs = np.arange(len(groups))
    for k, p in enumerate(PATHS):
        vals = [r["latency"][p].get(b, {}).get("median_ms", np.nan) for r, b in groups]
        bars = ax.bar(xs + (k - (len(PATHS) - 1) / 2) * width, vals, width,
                      label=PATH_LABELS[p])
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
    ax.set_xticks(xs, [f"{r['model'].replace('vanillanet_', 'VanillaNet-')}\nbatch {b}"
                       for r, b in groups])
    ax.set_ylabel("median latency, ms (log)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str]):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="vanillanet_5,vanillanet_13",
                    help="comma-separated variant names")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--runs", type=int, default=20, help="most timed runs per latency cell")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up runs per latency cell")
    ap.add_argument("--budget-s", type=float, default=20.0,
                    help="stop adding timed runs to a cell after about this many seconds "
                    "(at least 3 runs)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for PyTorch and ONNX Runtime")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--quick", action="store_true",
                    help="a fast check: vanillanet_5 only, 3 runs, 1 warm-up, 5 s budget")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vnexport-bench"),
                    help="where checkpoints and exported files go")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                    help="folder for <machine>.md/.json/.png")
    ap.add_argument("--export-child", nargs=3, metavar=("CKPT", "OUT", "IMG"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.models, args.runs, args.warmup, args.budget_s = "vanillanet_5", 3, 1, 5.0
    args.models = [m for m in args.models.split(",") if m]
    args.batches = [int(b) for b in args.batches.split(",") if b]
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.export_child:
        src, dst, img = args.export_child
        print(export_ours(Path(src), Path(dst), int(img)))
        return
    import torch

    from vnexport.model import VARIANTS

    unknown = [m for m in args.models if m not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown model(s): {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    info = machine_info(args.threads)
    slug = machine_slug(info)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    results = [bench_model(m, args, args.workdir, log) for m in args.models]
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / f"{slug}.md"
    md.write_text(markdown(results, info, args, elapsed))
    (args.out / f"{slug}.json").write_text(json.dumps(
        {"machine": info, "argv": argv, "elapsed_s": round(elapsed, 1), "results": results},
        indent=2, default=str) + "\n")
    chart(results, args.batches, args.out / f"{slug}.png",
          f"VanillaNet latency on {info['cpu']} ({info['cores']} cores), {args.img_size}x"
          f"{args.img_size}, fp32")
    print(md.read_text())
    log(f"wrote {md}, {md.with_suffix('.json')}, {md.with_suffix('.png')} "
        f"in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
