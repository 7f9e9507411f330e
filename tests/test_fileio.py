"""The output contract (vnexport.fileio) in-process: planning refuses what would destroy or
clash, publishing is exclusive without --force, temporary files are named and cleaned."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vnexport.errors import VnexportError
from vnexport.fileio import (OutputPlan, atomic_output, clean_stale_temps, command_outputs,
                             temp_path, write_text)


def test_an_input_is_never_an_output_also_through_links(tmp_path):
    src = tmp_path / "in.pth"
    src.write_bytes(b"weights")
    os.link(src, tmp_path / "hard.pth")
    (tmp_path / "soft.pth").symlink_to(src)
    for name in ("in.pth", "hard.pth", "soft.pth", "sub/../in.pth"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(VnexportError, match="would overwrite the input"):
            OutputPlan([src], force=True).add(tmp_path / name, "--json")
    assert src.read_bytes() == b"weights"


def test_existing_file_needs_force_and_special_files_never(tmp_path):
    old = tmp_path / "old.json"
    old.write_text("{}")
    with pytest.raises(VnexportError, match="--force"):
        OutputPlan().add(old, "--json")
    assert OutputPlan(force=True).add(old, "--json") == old
    assert OutputPlan().add(old, "--cache", update=True) == old  # a cache is updated
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(VnexportError, match="not a regular file"):
        OutputPlan(force=True).add(tmp_path / "pipe.json", "--json")
    with pytest.raises(VnexportError, match="is a directory"):
        OutputPlan(force=True).add(tmp_path, "-o")
    with pytest.raises(VnexportError, match="folder does not exist"):
        OutputPlan().add(tmp_path / "missing" / "r.json", "--json")
    with pytest.raises(VnexportError, match="not writable"):
        OutputPlan().add("/proc/vnexport-test.json", "--json")
    assert OutputPlan().add("-", "--json") is None and OutputPlan().add(None) is None


def test_outputs_of_one_command_must_differ(tmp_path):
    with command_outputs():
        OutputPlan().add(tmp_path / "a.json", "--json")
        with pytest.raises(VnexportError, match="another output"):
            OutputPlan().add(tmp_path / "a.json", "--output")
    OutputPlan().add(tmp_path / "a.json", "--output")  # outside the command: no clash


def test_publishing_without_force_never_replaces(tmp_path):
    out = tmp_path / "o.bin"
    with command_outputs():
        OutputPlan().add(out)
        out.write_bytes(b"appeared meanwhile")  # e.g. a concurrent run
        with pytest.raises(VnexportError, match="appeared while this command ran"):
            with atomic_output(out) as tmp:
                tmp.write_bytes(b"mine")
    assert out.read_bytes() == b"appeared meanwhile"
    assert [p.name for p in tmp_path.iterdir()] == ["o.bin"]
    with command_outputs():
        OutputPlan(force=True).add(out)
        write_text(out, "replaced")
    assert out.read_text() == "replaced\n"


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "o.bin"
    with pytest.raises(RuntimeError):
        with atomic_output(out) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("work failed")
    assert list(tmp_path.iterdir()) == []


def test_temp_files_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".o.bin.vnexport-{dead}-0a1b2c3d.tmp"
    live = temp_path(tmp_path / "o.bin")  # this process: alive
    other = tmp_path / ".o.bin.0a1b2c3d.tmp"  # not ours: never touched
    for p in (stale, live, other):
        p.write_bytes(b"x")
    assert live.name.startswith(f".o.bin.vnexport-{os.getpid()}-")
    assert clean_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


# --------------------------------------------------------------------------------------------
# the Python API keeps the contract: an existing file only with an explicit overwrite


def test_library_writers_never_replace_without_overwrite(tmp_path):
    """export_onnx, save_onnx, save_deploy, write_training_checkpoint and write_json_atomic
    called as a library (no OutputPlan): an existing file is refused, left byte for byte as it
    was, with no temporary file beside it; overwrite=True replaces it."""
    from artifacts import CONFIG
    from vnexport.checkpoint import load_checkpoint
    from vnexport.fileio import write_json_atomic
    from vnexport.fuse import deploy_model, provenance, save_deploy
    from vnexport.onnx_export import export_onnx
    from vnexport.onnx_file import load_onnx, save_onnx
    from vnexport.synthetic import write_training_checkpoint

    ckpt_path = write_training_checkpoint(tmp_path / "ck.pth", CONFIG, seed=0)
    ckpt = load_checkpoint(ckpt_path, strides=CONFIG.strides)
    onnx_path = tmp_path / "m.onnx"
    export_onnx(ckpt, onnx_path, img_size=32)
    proto = load_onnx(onnx_path)
    writers = {
        ckpt_path: lambda **k: write_training_checkpoint(ckpt_path, CONFIG, seed=1, **k),
        onnx_path: lambda **k: export_onnx(ckpt, onnx_path, img_size=64, **k),
        tmp_path / "s.onnx": lambda **k: save_onnx(proto, tmp_path / "s.onnx", **k),
        tmp_path / "d.pth": lambda **k: save_deploy(tmp_path / "d.pth", deploy_model(ckpt),
                                                   provenance(ckpt, None), **k),
        tmp_path / "r.json": lambda **k: write_json_atomic(tmp_path / "r.json", {"a": 1}, **k),
    }
    for path, write in writers.items():
        if not path.exists():
            path.write_bytes(b"earlier file")
        before = path.read_bytes()
        with pytest.raises(VnexportError, match="exists|not replaced"):
            write()
        assert path.read_bytes() == before, path
        assert not list(tmp_path.glob(".*.tmp"))
        write(overwrite=True)
        assert path.read_bytes() != before, path


def test_onnx_stage_run_refuses_an_existing_output_without_force(tmp_path):
    from artifacts import make_small_run
    from vnexport.stages import onnx as stage
    from vnexport.stages.common import Log, Source

    run = make_small_run(tmp_path)
    out = tmp_path / "again.onnx"
    out.write_bytes(b"earlier file")
    opts = stage.OnnxOptions(run.training, output=out, source=Source(strides="2,2,1"),
                             export=stage.Export(img_size=32))
    quiet = Log(echo=lambda s: None, note=lambda s: None)
    with pytest.raises(VnexportError, match="output exists; pass --force"):
        stage.run(opts, quiet)
    assert out.read_bytes() == b"earlier file"
    import dataclasses

    assert stage.run(dataclasses.replace(opts, force=True), quiet).exit_code == 0
    assert out.read_bytes()[:2] != b"ea"
    with pytest.raises(VnexportError, match="output exists"):  # the plan was not left behind
        stage.run(opts, quiet)
