"""The ``vnexport info`` stage called directly (vnexport/stages/info.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

from stage_helpers import CONFIG, IMG, SRC, lines, small  # noqa: F401 (fixtures)
from vnexport.stages import info


def test_info_reports_form_and_cost(small, lines):
    out, log = lines
    r = info.run(info.InfoOptions(small.training, SRC, img_size=IMG), log)
    d = r.to_dict()
    assert d["form"] == "training" and d["config"]["strides"] == list(CONFIG.strides)
    assert d["params_deploy"] < d["params_training"] and d["mergeable"] is True
    assert r.exit_code == 0 and r.lines()[1] == "form        training"
