"""benchmarks/run.py: child-process cost measurement, latency cells, report and chart."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_child_peak_memory_and_wall_time(run):
    code = "import time; b = bytearray(300 * 2**20); time.sleep(0.3); print('done')"
    r = run.run_child([sys.executable, "-c", code])
    assert r["rc"] == 0 and r["tail"] == ["done"]
    assert r["peak_rss_mib"] >= 300  # the child really held 300 MiB at its peak
    assert r["wall_s"] >= 0.3
    bad = run.run_child([sys.executable, "-c", "raise SystemExit(4)"])
    assert bad["rc"] == 4


def test_measure_stops_at_the_budget(run):
    from vnexport import bench as b

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten())

    def make_call(bs):
        return b.torch_call(model, b.random_batch(bs, 16))

    cell = run.measure(make_call, 2, runs=7, warmup=1, budget_s=100.0)
    assert cell["runs"] == 7 and cell["batch"] == 2
    slow = run.measure(lambda bs: ((lambda: __import__("time").sleep(0.05)), lambda: None),
                       1, runs=50, warmup=1, budget_s=0.01)
    assert slow["runs"] == 3 and slow["median_ms"] >= 50


def fake_results():
    def cell(ms, runs=5, batch=1):
        return {"batch": batch, "runs": runs, "median_ms": ms, "images_per_s": batch / ms * 1e3}

    lat = {"training": {1: cell(40.0), 8: cell(300.0, batch=8)},
           "deploy": {1: cell(20.0), 8: cell(150.0, batch=8)},
           "onnx": {1: cell(10.0), 8: cell(75.0, batch=8)},
           "by_hand": {1: cell(12.0), 8: {"error": "export failed: x"}}}
    return [{"model": "vanillanet_5", "latency": lat,
             "fuse": {"wall_s": 5.0, "peak_rss_mib": 600},
             "onnx_export": {"wall_s": 9.0, "peak_rss_mib": 700}, "onnx_exporter": "vnexport onnx --dynamic-batch (CLI)",
             "by_hand_export_s": {1: 5.0}, "by_hand_files": ["by_hand_b1.onnx"],
             "by_hand_b1_file_at_batch_8": "refused: bad dims"}]


def test_report_ratios_and_paper_figures(run, tmp_path):
    args = run.parse_args(["--models", "vanillanet_5"])
    info = {"cpu": "Test CPU", "cores": 2, "threads": 2, "memory_gib": 8, "gpu": None,
            "os": "Linux", "python": "3.11", "torch": "2.13", "onnxruntime": "1.32"}
    md = run.markdown(fake_results(), info, args, 60.0)
    assert "| vanillanet_5 | 1 | 40.0 (5) | 20.0 (5) | 10.0 (5) | 12.0 (5) | 2.00x | 2.00x | " \
           "1.20x | 100.0 |" in md
    assert "| vanillanet_5 | 8 | 300.0 (5) | 150.0 (5) | 75.0 (5) | failed | 2.00x | 2.00x | - |" in md
    assert "| vanillanet_5 | 1.61 | 0.33 | 0.27 | 4.9x | 20.0 |" in md  # the paper's A100 row
    assert "refused: bad dims" in md
    assert "Our ONNX file: vnexport onnx --dynamic-batch (CLI)." in md
    png = tmp_path / "c.png"
    run.chart(fake_results(), [1, 8], png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.machine_slug(info) == "test-2c"


def test_mutant_list_still_applies():
    """benchmarks/mutants.py is not run in CI; its mutants must still fit the code: every
    original snippet found exactly once in its file, every named test file present."""
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "benchmarks" / "mutants.py")
    mutants = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = mutants  # its dataclass looks its module up there
    try:
        spec.loader.exec_module(mutants)
    finally:
        del sys.modules["mutants"]
    assert len(mutants.MUTANTS) >= 30
    assert mutants.check_snippets(ROOT) == []
