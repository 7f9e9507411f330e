"""bench.py (timing core) and ``vnexport bench``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from artifacts import IMG, STRIDES, make_small_run
from typer.testing import CliRunner

from vnexport import bench as b
from vnexport.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("small"))


def test_latency_stats_percentiles():
    stats = b.latency_stats([float(i) for i in range(100, 0, -1)], batch=4, warmup=3)
    assert stats.runs == 100 and stats.warmup == 3
    assert stats.median_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.min_ms == 1.0 and stats.mean_ms == pytest.approx(50.5)
    assert stats.images_per_s == pytest.approx(4 / 0.0505)
    with pytest.raises(ValueError):
        b.latency_stats([], 1)


def test_time_calls_warms_up_then_times():
    calls, synced, ticks = [], [], []
    times = b.time_calls(lambda: (calls.append(1), time.sleep(0.002)), runs=4, warmup=2,
                         sync=lambda: synced.append(1), tick=lambda: ticks.append(1))
    assert len(times) == 4 and len(calls) == len(synced) == len(ticks) == 6
    assert all(t >= 2.0 for t in times)  # milliseconds, the sleep included
    with pytest.raises(ValueError):
        b.time_calls(lambda: None, runs=0)


def test_bench_batches_on_a_tiny_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())
    seen = []

    def make_call(batch):
        x = b.random_batch(batch, 8)
        call, sync = b.torch_call(model, x)
        return (lambda: seen.append(call().shape[0])), sync

    res = b.bench_batches(make_call, [1, 3], runs=3, warmup=1)
    assert [r.batch for r in res] == [1, 3]
    assert seen == [1] * 4 + [3] * 4  # each call really ran the batch
    assert all(r.median_ms > 0 and r.p99_ms >= r.p90_ms >= r.median_ms for r in res)


@pytest.mark.parametrize("name,kind", [("training", "training"), ("deploy", "deploy"),
                                       ("onnx", "onnx")])
def test_cli_bench_each_kind(small, tmp_path, name, kind):
    report = tmp_path / "bench.json"
    r = runner.invoke(app, ["bench", str(getattr(small, name)), "--batch", "1,2", "--runs", "3",
                            "--warmup", "1", "--img-size", str(IMG), "--strides", STRIDES,
                            "--threads", "1", "--json", str(report)])
    assert r.exit_code == 0, r.output
    assert "median ms" in r.output
    data = json.loads(report.read_text())
    assert data["kind"] == kind and data["threads"] == 1 and data["img_size"] == IMG
    assert [x["batch"] for x in data["results"]] == [1, 2]
    for x in data["results"]:
        assert x["runs"] == 3 and x["warmup"] == 1
        assert x["images_per_s"] == pytest.approx(x["batch"] / x["median_ms"] * 1e3)


def test_cli_bench_onnx_default_size_from_the_file(small):
    r = runner.invoke(app, ["bench", str(small.onnx), "--batch", "1", "--runs", "2",
                            "--warmup", "0", "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["img_size"] == IMG


def last_error(r) -> str:
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.output
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cli_bench_cuda_missing_exits_3(small):
    r = runner.invoke(app, ["bench", str(small.deploy), "--device", "cuda", "--runs", "1"])
    assert r.exit_code == 3
    assert "no CUDA GPU" in last_error(r)


def test_cli_bench_engine_without_tensorrt_exits_3(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00" * 16)
    r = runner.invoke(app, ["bench", str(engine), "--runs", "1"])
    assert r.exit_code == 3
    assert "TensorRT" in last_error(r)


@pytest.mark.parametrize("args,message", [
    (["--cuda-graphs"], "--cuda-graphs applies to checkpoints with --device cuda"),
    (["--batch", "0"], "positive integers"),
    (["--batch", "a,b"], "comma-separated integers"),
])
def test_cli_bench_bad_options(small, args, message):
    r = runner.invoke(app, ["bench", str(small.onnx), "--runs", "1", *args])
    assert r.exit_code == 2
    assert message in last_error(r)


def test_cli_bench_fixed_batch_onnx(small, tmp_path):
    from artifacts import export_onnx_file

    path = export_onnx_file(small.training, tmp_path / "b1.onnx", batch=1)
    r = runner.invoke(app, ["bench", str(path), "--batch", "1,8", "--runs", "1"])
    assert r.exit_code == 2
    assert "fixed batch size of 1" in last_error(r)


def test_cli_bench_onnx_wrong_size(small):
    r = runner.invoke(app, ["bench", str(small.onnx), "--img-size", str(2 * IMG), "--runs", "1"])
    assert r.exit_code == 2
    assert "see --img-size" in last_error(r)


def test_cli_bench_threads_restores_torch_threads(small):
    """--threads sets PyTorch's thread count for the measurement only: a caller's count (here
    3) is back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        r = runner.invoke(app, ["bench", str(small.deploy), "--batch", "1", "--runs", "1",
                                "--warmup", "0", "--img-size", str(IMG), "--strides", STRIDES,
                                "--threads", "1", "--json", "-"])
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["threads"] == 1
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_bench_keeps_its_finished_rows(small, tmp_path, signum):
    """A real ``vnexport bench`` process, stopped (Ctrl-C's SIGINT, or SIGTERM) once its first
    batch size's row is on stdout while the second (batch 1024, 20000 runs) is running: the
    row stays on stdout, and --json holds it, marked interrupted; exit 130."""
    report = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "vnexport", "bench", str(small.onnx), "--batch", "1,1024",
           "--runs", "20000", "--warmup", "0", "--img-size", str(IMG), "--json", str(report)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"bench ended before its first row: {proc.stderr.read()}"
            lines.append(line.rstrip("\n"))
            if line.split() and line.split()[0] == "1":
                break
        row = lines[-1]
        assert not report.exists()  # written only at the end
        proc.send_signal(signum)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    out = lines + rest.splitlines()
    assert row in out and not any(ln.split()[:1] == ["1024"] for ln in out)
    assert "interrupted: batch sizes finished: 1 (of 1, 1024)" in out
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["batches_asked"] == [1, 1024]
    (r,) = data["results"]
    assert r["batch"] == 1 and r["runs"] == 20000
    assert f"{r['median_ms']:>10.2f}" in row and f"{r['images_per_s']:>9.1f}" in row
    assert not list(tmp_path.glob(".*.tmp"))
