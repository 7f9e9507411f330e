"""Peak memory and wall time of ``vnexport onnx`` against the checkpoint's size.

    python benchmarks/onnx_memory.py [--models vanillanet_13] [--work DIR]
                                     [--exporters default,dynamo] [--before DIR]

For each model it writes seeded training checkpoints (vnexport.synthetic, as benchmarks/run.py
does): the training script's file (``model`` and ``model_ema``, what the script saves) and one
with ``model`` only. Then it runs ``vnexport onnx CKPT -o OUT --force`` with its default options
(verified on ONNX Runtime; opset 17) in a child process per exporter (``dynamo`` runs at
``--opset 18``, the lowest it writes), and reports the child's peak resident memory (the
kernel's high-water mark, VmHWM, which the child reads from /proc/self/status as it exits;
file-backed pages of the memory-mapped checkpoint count), its wall time and peak / file size.

Not getrusage: a child started from a large parent (pytest with torch loaded) inherits the
parent's high-water mark at fork/exec, so ru_maxrss over-reports there.

``--before DIR`` also measures another checkout of vnexport (its ``vnexport`` package first
on PYTHONPATH), e.g. a worktree of the commit before a change, on the same files.

Writes ``benchmarks/results/onnx_memory_<machine>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The child: note VmHWM (and VmRSS) of this very process at exit, into the file named first,
# and run the module named second as ``python -m`` would (from PYTHONPATH, not the working
# directory, which ``-c`` puts first on sys.path).
_CHILD = ("import atexit, importlib.util, runpy, sys\n"
          "if sys.path and sys.path[0] == '':\n"
          "    del sys.path[0]\n"
          "out = sys.argv.pop(1)\n"
          "def note():\n"
          "    with open('/proc/self/status') as f, open(out, 'w') as g:\n"
          "        g.write(f.read())\n"
          "atexit.register(note)\n"
          "module = sys.argv.pop(1)\n"
          "sys.argv[0] = module\n"
          "print('running', importlib.util.find_spec(module).origin, file=sys.stderr)\n"
          "runpy.run_module(module, run_name='__main__', alter_sys=True)\n")


def _status_kib(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ValueError(f"{key} not in /proc/self/status")


def peak_of_module(module: str, args: list[str], path: list[Path]) -> dict:
    """Run ``python -m MODULE ARGS`` in a child with ``path`` first on PYTHONPATH; its exit
    code, wall time, peak RSS (MiB) and the last lines it printed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in path]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    with tempfile.TemporaryDirectory() as tmp:
        status = Path(tmp) / "status"
        t, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(status), module, *args],
                              capture_output=True, text=True, env=env)
        wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
        text = status.read_text() if status.exists() else ""
    out = (proc.stdout + proc.stderr).strip().splitlines()
    origin = next((line.split(" ", 1)[1] for line in proc.stderr.splitlines()
                   if line.startswith("running ")), None)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "module_file": origin,
            "peak_rss_mib": round(_status_kib(text, "VmHWM") / 1024) if text else None,
            "tail": out[-3:]}


def peak_of_vnexport(args: list[str], checkout: Path | None = None) -> dict:
    """``python -m vnexport ARGS`` (of ``checkout``, default this one): :func:`peak_of_module`."""
    return peak_of_module("vnexport", args, [checkout or ROOT])


def write_checkpoints(name: str, folder: Path) -> dict[str, Path]:
    """The training script's file (model + model_ema) and a model-only one, seeded."""
    from vnexport.model import VARIANTS
    from vnexport.synthetic import write_training_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model + model_ema": folder / f"{name}_checkpoint-best.pth",
             "model only": folder / f"{name}_model_only.pth"}
    for label, path in paths.items():
        if not path.exists():
            write_training_checkpoint(path, VARIANTS[name], seed=0,
                                      with_ema=label == "model + model_ema")
    return paths


def _git_label(checkout: Path) -> str:
    r = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else str(checkout)


def measure(name: str, work: Path, exporters: list[str], checkout: Path | None) -> list[dict]:
    rows = []
    code = _git_label(checkout or ROOT)
    for label, ckpt in write_checkpoints(name, work).items():
        size = ckpt.stat().st_size
        for exporter in exporters:
            args = ["onnx", str(ckpt), "-o", str(work / f"{name}.onnx"), "--force"]
            if exporter != "default":
                args += ["--exporter", exporter] + (["--opset", "18"] if exporter == "dynamo"
                                                    else [])
            r = peak_of_vnexport(args, checkout)
            if r["rc"] != 0:
                raise SystemExit(f"vnexport onnx failed: {r['tail']}")
            rows.append({"model": name, "checkpoint": label, "file_mib": round(size / 2**20),
                         "code": code, "exporter": exporter,
                         "options": " ".join(args[5:]) or "(defaults)", **r,
                         "ratio": round(r["peak_rss_mib"] * 2**20 / size, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def slug(info: dict) -> str:
    cpu = info["cpu"].lower()
    kind = "amd-epyc" if "epyc" in cpu else "intel-xeon" if "xeon" in cpu else "cpu"
    return f"{kind}-{info['cores']}c"


def markdown(rows: list[dict], info: dict, load: dict) -> str:
    lines = [f"# `vnexport onnx`: peak memory and wall time ({info['cpu']}, {info['cores']} "
             "cores)", "",
             "`python benchmarks/onnx_memory.py` (see its docstring). Seeded checkpoints "
             "(vnexport.synthetic); every run verifies on ONNX Runtime (8 seeded inputs at "
             "224). Exporter `default`: no options (opset 17, so `auto` runs TorchScript); "
             "`dynamo`: `--exporter dynamo --opset 18`. Peak = the child's VmHWM (file-backed "
             "pages of the memory-mapped checkpoint included). Wall time includes Python "
             "start-up; CPU s is the child's user + system time (what other load on the "
             f"machine does not change); load average {load['before']} before, "
             f"{load['after']} after (other work shared the 2 cores, so wall times vary run "
             "to run).", "",
             "| code | model | checkpoint | file MiB | exporter | peak RSS MiB | peak / file "
             "| wall s | CPU s |", "|---|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['code']} | {r['model']} | {r['checkpoint']} | {r['file_mib']} "
                     f"| {r['exporter']} | {r['peak_rss_mib']} | {r['ratio']} | {r['wall_s']} "
                     f"| {r.get('cpu_s', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vanillanet_13")
    p.add_argument("--exporters", default="default,dynamo",
                   help="default (auto at opset 17: TorchScript), torchscript, dynamo")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "vnexport-mem")
    p.add_argument("--before", type=Path, default=None, help="also measure this checkout "
                   "(e.g. a worktree of the commit before a change), exporter default only")
    p.add_argument("--out", type=Path, default=None, help="result file stem")
    a = p.parse_args(argv)
    info = machine()
    load = {"before": [round(v, 2) for v in os.getloadavg()]}
    rows = []
    for name in a.models.split(","):
        if a.before:
            rows += measure(name, a.work, ["default"], a.before)
        rows += measure(name, a.work, a.exporters.split(","), None)
    load["after"] = [round(v, 2) for v in os.getloadavg()]
    out = a.out or ROOT / "benchmarks" / "results" / f"onnx_memory_{slug(info)}"
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "load": load, "rows": rows}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, info, load))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
