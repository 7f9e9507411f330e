"""Wall time and peak memory of `vnexport fuse` on a full-size training-script checkpoint.

    python benchmarks/fuse_bench.py [--variant vanillanet_13] [--workdir /tmp/vnexport-bench]

Writes a seeded checkpoint in the official training-script format (model + model_ema, epoch,
args), then runs the real CLI in a child process (default options: 8 verification images at
224) and reads the child's peak RSS from getrusage. Prints a markdown row and appends nothing
anywhere else; the figures in the README and the closing notes come from this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="vanillanet_13")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vnexport-bench"))
    ap.add_argument("--extra", default="", help="extra arguments for vnexport fuse")
    a = ap.parse_args()

    from vnexport.model import VARIANTS
    from vnexport.synthetic import write_training_checkpoint

    a.workdir.mkdir(parents=True, exist_ok=True)
    ckpt = a.workdir / f"checkpoint-{a.variant}.pth"
    if not ckpt.exists():
        write_training_checkpoint(ckpt, VARIANTS[a.variant], seed=0, epoch=299)
    out = a.workdir / f"{a.variant}_deploy.pth"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "vnexport", "fuse", str(ckpt), "-o", str(out), "--force",
           *a.extra.split()]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    size = ckpt.stat().st_size
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    print("| variant | checkpoint | fuse + verify wall | peak RSS | peak / checkpoint |")
    print("|---|---|---|---|---|")
    print(f"| {a.variant} | {size / 2**20:.0f} MiB | {wall:.1f} s | {peak / 2**20:.0f} MiB | "
          f"{peak / size:.2f}x |")


if __name__ == "__main__":
    main()
