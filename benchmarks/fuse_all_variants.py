"""Verification figures of `fuse` for every published variant, at full size (224x224, 8 images).

    python benchmarks/fuse_all_variants.py [--n 8] [--img-size 224] [--out FILE.md]

Default output: benchmarks/results/fuse_all_variants_<machine>.md.

For each variant: a seeded training-script checkpoint (model + model_ema, non-trivial BN
statistics) is written, loaded through vnexport's loader, fused, and the deploy form is compared
with the training form on the same seeded inputs. Prints (and writes) a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--variants", default="all")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from run import machine_info, machine_slug

    info = machine_info(threads=0)
    if a.out is None:
        a.out = ROOT / "benchmarks" / "results" / f"fuse_all_variants_{machine_slug(info)}.md"

    from vnexport.checkpoint import load_checkpoint
    from vnexport.fuse import fuse
    from vnexport.model import VARIANTS
    from vnexport.synthetic import write_training_checkpoint
    from vnexport.verify import make_inputs

    names = list(VARIANTS) if a.variants == "all" else a.variants.split(",")
    rows = [f"machine: {info['cpu']}, {info['cores']} cores; {a.n} seeded random "
            f"inputs at {a.img_size}x{a.img_size}; reference: the training form (model_ema)",
            "",
            "| variant | max abs err | max rel err | cosine | top-1 agreement | fuse+verify s |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            path = Path(tmp) / f"{name}.pth"
            write_training_checkpoint(path, VARIANTS[name], seed=0, epoch=299)
            t = time.perf_counter()
            ckpt = load_checkpoint(path, model=name)
            x = make_inputs(ckpt.cfg, a.n, a.img_size, seed=0)
            c = fuse(ckpt, x).comparison
            secs = time.perf_counter() - t
            rows.append(f"| {name} | {c.max_abs:.2e} | {c.max_rel:.2e} | {c.cosine:.8f} | "
                        f"{c.top1_agreement:.0%} | {secs:.1f} |")
            print(rows[-1], flush=True)
            path.unlink()
            del ckpt
    a.out.write_text("\n".join(rows) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
