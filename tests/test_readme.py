"""The README's examples, run as written: every fenced ``bash`` block of its Commands section
(each command line as a shell command, in order, in a fresh folder holding small generated
stand-ins for the files the examples name) and its Python API blocks (the Triton client block
against a real server the test starts, where the server can run). Only lines that need a GPU,
TensorRT or Docker are skipped, each with the reason. Also: every CLI option has a row in
tests/PROMISES.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from artifacts import CONFIG, export_onnx_file
from triton_helpers import free_ports

from vnexport.checkpoint import load_checkpoint
from vnexport.fuse import deploy_model, provenance, save_deploy
from vnexport.synthetic import random_training_model, training_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CLASSES = CONFIG.num_classes  # of the stand-in model files
README = (ROOT / "README.md").read_text()
NEEDS_GPU = [(re.compile(p), why) for p, why in [
    (r"\bdocker\b", "needs Docker and an NVIDIA GPU"),
    (r"^vnexport trt\b(?!.*--builder tensorrt-rtx.*--no-verify)(?!.*--no-verify.*--builder "
     r"tensorrt-rtx)", "datacenter TensorRT builds and verifies on a CUDA GPU (a "
     "TensorRT-RTX build with --no-verify runs here)"),
    (r"--device cuda", "needs a CUDA GPU"),
    (r"^pip install\b", "installs packages from the package index"),
    (r"^vnexport serve\b", "serves until stopped (tests/test_serve.py starts and stops it)"),
]]
NEEDS_SERVER = ("InferenceServerClient", "needs a running Triton server (vnexport serve; "
                "tests/test_serve.py runs these client calls)")


def commands_section() -> str:
    start = README.index("\n## Commands\n")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", commands_section(), re.S)


def command_lines(block: str) -> list[str]:
    """The block's commands, continuation lines joined, comments and blank lines dropped."""
    text = block.replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


DEMO = ("vnexport demo", "the small stand-in network takes the demo's checkpoint's place "
        "(tests/test_demo.py runs the demo; VNEXPORT_SLOW=1 runs this block from the real one)")
ENGINE = re.compile(r"(\S+\.(?:engine|plan))\b")


def skip_reason(line: str, folder: Path | None = None, written: set[str] = frozenset(),
                full: bool = False) -> str | None:
    """Why a line does not run here: it needs a GPU, Docker or the index; it reads an engine
    that no earlier line built (only a GPU builds it); or (not ``full``) it is the demo."""
    why = next((why for pattern, why in NEEDS_GPU if pattern.search(line)), None)
    outputs = set(re.findall(r"(?:-o|--output)\s+(\S+)", line))
    missing = [e for e in ENGINE.findall(line) if e not in written and e not in outputs
               and not (folder is not None and (folder / e).exists())]
    if why is None and missing:
        why = f"reads {missing[0]}, an engine only a GPU builds (TensorRT and a CUDA GPU)"
    if why is None and not full and line.startswith(DEMO[0]):
        why = DEMO[1]
    return why


def prepare(folder: Path, full: bool = False) -> dict:
    """./calib (10 images, the user's images of the examples), a ``vnexport`` on PATH running
    this checkout and, unless ``full`` (the block run from the real demo's files): the small
    stand-ins checkpoint-best.pth (a small training checkpoint whose vnexport metadata names
    its config, so the examples need no --strides), model.onnx (its fp32 export), deploy.pth
    (its deploy form)."""
    from PIL import Image

    (folder / "calib").mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):  # seeded noise: the stand-in model's random weights give near-tied
        # logits on flat images, which int8 (verified on these images) would not keep
        Image.fromarray(rng.integers(0, 256, (240, 256, 3), dtype=np.uint8)).save(
            folder / f"calib/{i}.png")
    bin_dir = folder / ".bin"
    bin_dir.mkdir()
    shim = bin_dir / "vnexport"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vnexport "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    if not full:
        _stand_ins(folder)
    return env


def _stand_ins(folder: Path) -> None:
    obj = training_checkpoint(random_training_model(CONFIG, 0), epoch=299)
    obj["vnexport"] = {"config": CONFIG.to_dict()}
    torch.save(obj, folder / "checkpoint-best.pth")
    export_onnx_file(folder / "checkpoint-best.pth", folder / "model.onnx", img_size=224,
                     strides=None)
    ckpt = load_checkpoint(folder / "checkpoint-best.pth")
    save_deploy(folder / "deploy.pth", deploy_model(ckpt), provenance(ckpt, None))


def test_the_commands_section_has_examples():
    assert len(blocks("bash")) >= 4 and blocks("python")
    lines = [ln for b in blocks("bash") for ln in command_lines(b)]
    assert sum(skip_reason(ln) is None for ln in lines) >= 15


def stand_in(line: str, folder: Path, written: set[str]) -> None:
    """Each file a command reads that the block has not written before (the examples' own
    model files) is put there as a copy of the small generated one of its kind."""
    outputs = set(re.findall(r"(?:-o|--output|--json|--keep-onnx)\s+(\S+)", line))
    for name in re.findall(r"(\S+\.(?:onnx|pth))\b", line):
        if name in outputs or name in written or (folder / name).exists():
            continue
        src = "model.onnx" if name.endswith(".onnx") else (
            "deploy.pth" if "deploy" in name else "checkpoint-best.pth")
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes((folder / src).read_bytes())
    written.update(outputs)


def user_files(line: str, folder: Path) -> None:
    """The user's own files a line reads (image folders, a labels file), made where missing:
    with the stand-in models and with the real demo's files alike."""
    from PIL import Image

    for name in re.findall(r"--images\s+(\S+)", line):  # an ImageFolder: 2 classes of 3
        if not (folder / name).exists():
            for c in range(2):
                (folder / name / f"class{c}").mkdir(parents=True)
                for i in range(3):
                    Image.new("RGB", (256, 240), (40 * i, 100 * c, 90)).save(
                        folder / name / f"class{c}" / f"{i}.png")
    for name in re.findall(r"--labels\s+(\S+)", line):  # one class name per line
        if not (folder / name).exists():
            (folder / name).write_text("".join(f"class {i}\n" for i in range(CLASSES)))
    rng = np.random.default_rng(1)
    for name in re.findall(r"--eval-images\s+(\S+)", line):  # an ImageFolder: 2 classes
        for c in range(2):
            (folder / name / f"class_{c}").mkdir(parents=True, exist_ok=True)
            for i in range(4):
                path = folder / name / f"class_{c}" / f"{i}.png"
                if not path.exists():  # seeded noise, as ./calib
                    Image.fromarray(rng.integers(0, 256, (240, 256, 3), dtype=np.uint8)).save(
                        path)


def run_block(block: str, folder: Path, full: bool = False) -> tuple[list, list]:
    """Each line in order (stand-ins first unless ``full``); every line that runs must exit 0
    and print something (what its comment says it shows)."""
    env = prepare(folder, full)
    ran, skipped, written = [], [], set()
    for line in command_lines(block):
        why = skip_reason(line, folder, written, full)
        if why:
            skipped.append(f"{line}: {why}")
            continue
        if not full:
            stand_in(line, folder, written)
        user_files(line, folder)
        written.update(re.findall(r"(?:-o|--output|--json)\s+(\S+)", line))
        r = subprocess.run(["bash", "-c", line], cwd=folder, env=env, capture_output=True,
                           text=True, timeout=1200)
        assert r.returncode == 0, f"{line}\nexit {r.returncode}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr
        if line.startswith("vnexport ") and "--json -" not in line:
            assert r.stdout.strip() or "--json" in line, f"{line} printed nothing"
        ran.append(line)
    return ran, skipped


@pytest.mark.parametrize("index", range(len(blocks("bash"))))
def test_bash_block_runs_as_written(index, tmp_path):
    ran, skipped = run_block(blocks("bash")[index], tmp_path)
    if not ran:
        pytest.skip("every line skipped: " + "; ".join(skipped))



def readme_server(folder: Path, name: str):
    """The wheel's Triton server on free 127.0.0.1 ports, serving the stand-in model.onnx as
    ``name`` (Python backend, labels, the preprocessing ensemble), as ``vnexport triton
    --backend python --preprocess`` writes it; skips where the server cannot run here."""
    from vnexport import triton as T
    from vnexport import triton_server as S

    why = S.missing_reason()
    if why is not None:
        pytest.skip(f"{NEEDS_SERVER[1]}; the Triton server cannot run here: {why}")
    facts = T.read_facts(folder / "model.onnx")
    labels = tuple(f"class {i}" for i in range(facts.classes))
    opts = T.ServingOptions(name=name, backend="python", kind="cpu", labels=labels,
                            preprocess=True)
    T.write_repository(folder / "models", T.model_folders(facts, opts))
    http, grpc, metrics = free_ports()
    srv = S.TritonServer(folder / "models", http_port=http, grpc_port=grpc,
                         metrics_port=metrics)
    srv.start()
    try:
        srv.wait_ready(240)
    except BaseException:
        srv.stop()
        raise
    return srv, labels


def run_client_block(code: str, folder: Path, index: int) -> None:
    """The README's client block against a real server: its address rewritten to the server's
    free port, dog.jpg a generated image. The first request's top-5 answers are checked
    against ONNX Runtime run here on the same inputs; the ensemble's label against the
    labels the repository was written with."""
    import numpy as np
    import onnxruntime
    from PIL import Image

    name = re.search(r'client\.infer\("(\w+)"', code).group(1)
    head, tail = code.split("\nimages = ", 1)
    srv, labels = readme_server(folder, name)
    scope = {"__name__": "readme"}
    try:
        Image.new("RGB", (300, 260), (200, 120, 40)).save(folder / "dog.jpg")
        head = head.replace("127.0.0.1:8000", f"127.0.0.1:{srv.ports['http']}")
        exec(compile(head, f"README.md python block {index}", "exec"), scope)
        first = scope["out"].as_numpy("logits")
        exec(compile("images = " + tail, f"README.md python block {index}", "exec"), scope)
        last = scope["out"].as_numpy("logits")
    finally:
        if "client" in scope:
            scope["client"].close()  # an open keep-alive connection delays Triton's exit
        status = srv.stop()
    assert status == 0, srv.log_text[-3000:]
    sess = onnxruntime.InferenceSession(str(folder / "model.onnx"),
                                        providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": scope["x"]})[0]
    assert first.shape == (len(ref), 5)
    for row, logits in zip(first, ref):
        got = [r.decode().split(":", 2) for r in row]
        assert [int(i) for _, i, _ in got] == list(np.argsort(-logits)[:5])
        assert np.allclose([float(v) for v, _, _ in got], np.sort(logits)[::-1][:5],
                           rtol=1e-4, atol=1e-4)
        assert all(lab == labels[int(i)] for _, i, lab in got)
    assert last.shape == (1, 5)
    _, i, lab = last[0][0].decode().split(":", 2)
    assert lab == labels[int(i)]


def test_commands_block_chains_without_a_gpu():
    """The first block (the Commands chain) skips nothing but the demo (stood in here) on a
    machine without a GPU: every later line reads files an earlier line wrote."""
    lines = command_lines(blocks("bash")[0])
    assert lines[0].startswith("vnexport demo")
    assert [ln for ln in lines if skip_reason(ln, None, set(lines_outputs(lines)))] == \
        [lines[0]]


def lines_outputs(lines: list[str]) -> list[str]:
    return [o for ln in lines for o in re.findall(r"(?:-o|--output)\s+(\S+)", ln)]


@pytest.mark.slow  # .ci/run's slow job: VNEXPORT_SLOW=1 pytest -m slow
@pytest.mark.skipif(not os.environ.get("VNEXPORT_SLOW"), reason="runs the real demo and the "
                    "block on vanillanet_5 at 224 (~85 s on 2 idle cores); set VNEXPORT_SLOW=1")
def test_commands_block_runs_from_the_real_demo(tmp_path):
    ran, skipped = run_block(blocks("bash")[0], tmp_path, full=True)
    assert skipped == [] and ran[0].startswith("vnexport demo")


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_block_runs_as_written(index, tmp_path, monkeypatch):
    prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = blocks("python")[index]
    if NEEDS_SERVER[0] in code:
        run_client_block(code, tmp_path, index)
        return
    exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})


# ------------------------------------------------------------------------------------------
# tests/PROMISES.md: a row for every option of every command, naming tests that exist

PROMISES = ROOT / "tests" / "PROMISES.md"


def command_options() -> list[tuple[str, str]]:
    """(command, option) for every option of every command of the Typer app (its primary
    name, as ``vnexport <cmd> --help`` lists it first), --help excepted."""
    import typer.main

    from vnexport.cli import app

    group = typer.main.get_command(app)
    return [(name, p.opts[0]) for name, cmd in group.commands.items() for p in cmd.params
            if p.param_type_name == "option" and p.opts[0] != "--help"]


def test_every_command_option_has_a_promises_row():
    rows = set(re.findall(r"^\| ([\w-]+) \| `(--[\w-]+)` \|", PROMISES.read_text(), re.M))
    missing = [f"vnexport {c} {o}" for c, o in command_options() if (c, o) not in rows]
    assert not missing, ("no row in tests/PROMISES.md for: " + ", ".join(missing)
                         + " (add '| <command> | `<option>` | <promise> | `<test file>::"
                         "<test>` |' under its command)")


def test_promises_name_tests_that_exist():
    named = set(re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`", PROMISES.read_text()))
    assert len(named) > 50
    gone = []
    for file, func in named:
        path = ROOT / "tests" / file
        if not path.is_file() or (func and not re.search(rf"^def {func}\(", path.read_text(),
                                                         re.M)):
            gone.append(f"{file}::{func}" if func else file)
    assert not gone, "tests/PROMISES.md names tests that do not exist: " + ", ".join(sorted(gone))
