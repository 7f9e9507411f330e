"""The ``vnexport bench`` stage called directly (vnexport/stages/bench.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

import pytest

from stage_helpers import IMG, lines, small  # noqa: F401 (fixtures)
from vnexport.errors import VnexportError
from vnexport.stages import bench


def test_bench_stage_reports_each_batch(small, lines):
    out, log = lines
    r = bench.run(bench.BenchOptions(small.onnx, batch="1,2", runs=3, warmup=1), log)
    d = r.to_dict()
    assert d["kind"] == "onnx" and d["img_size"] == IMG
    assert [x["batch"] for x in d["results"]] == [1, 2]
    assert all(x["runs"] == 3 and x["median_ms"] > 0 for x in d["results"])


def test_bench_stage_option_rules(small, lines):
    with pytest.raises(VnexportError, match="--batch takes positive integers"):
        bench.run(bench.BenchOptions(small.onnx, batch="0"), lines[1])
    with pytest.raises(VnexportError, match="--cuda-graphs applies to checkpoints"):
        bench.run(bench.BenchOptions(small.onnx, cuda_graphs=True), lines[1])


def test_rows_come_as_measured_and_an_estimate_before_a_long_run(small, monkeypatch):
    """Each row is echoed before the next batch size starts (seen from inside the timed call);
    a run expected above ESTIMATE_ABOVE_S (set to 0 here) is announced on log.status."""
    from vnexport import bench as b
    from vnexport.stages.common import Log

    out, status, seen_at_batch = [], [], {}
    real = b.ort_call

    def spy(session, x):
        seen_at_batch[x.shape[0]] = list(out)
        return real(session, x)

    monkeypatch.setattr(b, "ort_call", spy)
    monkeypatch.setattr(bench, "ESTIMATE_ABOVE_S", 0.0)
    r = bench.run(bench.BenchOptions(small.onnx, batch="1,2", runs=3, warmup=1),
                  Log(echo=out.append, note=out.append, status=status.append))
    first = bench.row_text(bench.latency_stats([0.0], 1))  # a row's shape, batch column first
    assert out[1] == bench.HEADER and len(first) == len(out[2])
    assert seen_at_batch[2][-1].split()[0] == "1"  # batch 1's row printed before batch 2 ran
    assert [line.split()[0] for line in out[2:]] == ["1", "2"]
    assert r.to_dict()["results"][0]["median_ms"] == pytest.approx(float(out[2].split()[1]),
                                                                   abs=0.006)
    assert len(status) == 1 and status[0].startswith("estimated time: about ")
    assert "interrupted" not in r.to_dict() and r.exit_code == 0


def test_progress_lines_off_a_terminal_at_most_every_10_s(monkeypatch):
    from vnexport.stages.common import Log

    clock = iter([0.0, 3.0, 9.9, 10.0, 12.0, 20.5, 21.0])
    monkeypatch.setattr(bench.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(bench.sys.stderr, "isatty", lambda: False, raising=False)
    status: list[str] = []
    p = bench.Progress(Log(status=status.append), total=6, name="m.onnx")
    p.batch = 8
    for _ in range(6):
        p.tick()
    p.close()
    assert status == ["bench m.onnx: batch 8, 3/6 runs, 10 s",
                      "bench m.onnx: batch 8, 5/6 runs, 20 s"]
