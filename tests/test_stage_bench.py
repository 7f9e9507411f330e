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
