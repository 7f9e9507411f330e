"""`vnexport eval` on real labelled images, run as a user would: the small VanillaNet the tests
train on scikit-learn's digits (tests/digits.py: 8 epochs, the authors' deep-training schedule),
its 540 held-out digits written as an ImageFolder of 32x32 PNGs (class folders 0..9), and every
artifact made by the CLI: deploy checkpoint (fuse), fp32 / fp16 / int8 ONNX (onnx; int8
calibrated on 256 training-split digits, also an ImageFolder, spread over the classes).

    PYTHONPATH=. python benchmarks/eval_digits.py

Writes benchmarks/results/eval_digits_<machine>.md (the commands, their eval table) and .json
(eval's report).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests")]

from digits import load_digits_tensors, train_digits, write_image_folder  # noqa: E402
from run import machine_info, machine_slug  # noqa: E402


def vnexport(*args: str, cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "vnexport", *args], cwd=cwd, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"vnexport {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
    return r.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        run = train_digits(d)
        write_image_folder(run.x_test, run.y_test, d / "val")
        x_tr, y_tr, _, _ = load_digits_tensors()
        write_image_folder(x_tr, y_tr, d / "train")
        common = ["--strides", "2,2", "--img-size", "32"]
        commands = [
            ["fuse", "checkpoint-best.pth", "-o", "deploy.pth", *common],
            ["onnx", "checkpoint-best.pth", "-o", "digits_fp32.onnx", "--dynamic-batch", *common],
            ["onnx", "checkpoint-best.pth", "-o", "digits_fp16.onnx", "--dynamic-batch",
             "--precision", "fp16", *common],
            ["onnx", "checkpoint-best.pth", "-o", "digits_int8.onnx", "--dynamic-batch",
             "--precision", "int8", "--calib-images", "train", "--calib-n", "256",
             "--images", "val", "--n", "256", *common],
        ]
        for c in commands:
            vnexport(*c, cwd=d)
        ev = ["eval", "checkpoint-best.pth", "deploy.pth", "digits_fp32.onnx",
              "digits_fp16.onnx", "digits_int8.onnx", "--images", "val", "--strides", "2,2",
              "--threads", "2", "--json", "eval.json"]
        table = vnexport(*ev, cwd=d)
        report = json.loads((d / "eval.json").read_text())
    info = machine_info(2)
    slug = machine_slug(info)
    out = HERE / "results" / f"eval_digits_{slug}"
    text = ["# vnexport eval: the digits model (tests/digits.py), 540 held-out digits", "",
            f"Machine: {info['cpu']}, {info['cores']} cores", "", "```", *[f"vnexport {' '.join(c)}"
                                                    for c in commands + [ev]], "```", "",
            "```", table.rstrip(), "```", ""]
    out.with_suffix(".md").write_text("\n".join(text))
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
