"""The ``vnexport fuse`` stage called directly (vnexport/stages/fuse.py): its Result and files,
compared with the training form where numbers are involved."""

from __future__ import annotations

import pytest

from stage_helpers import CONFIG, IMG, SRC, lines, small, training_outputs  # noqa: F401 (fixtures)
from vnexport.checkpoint import load_checkpoint
from vnexport.errors import EXIT_CHECK_FAILED, VnexportError
from vnexport.stages import fuse
from vnexport.stages.common import Source
from vnexport.verify import compare, random_inputs, run_torch


def test_fuse_writes_a_deploy_file_that_matches_the_training_form(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "d.pth"
    r = fuse.run(fuse.FuseOptions(small.training, dst, SRC, n=4, img_size=IMG), log)
    assert r.exit_code == 0 and r.to_dict()["written"] is True
    assert r.lines()[0].startswith(f"wrote {dst}")
    x = random_inputs(CONFIG, 4, IMG, seed=5)
    deployed = load_checkpoint(dst, strides=CONFIG.strides)
    assert deployed.form == "deploy"
    comp = compare(training_outputs(small, x), run_torch(deployed.build_model(), x))
    assert comp.passed, comp.summary()
    assert any(line.startswith("verify deploy vs training: PASS") for line in out)


def test_fuse_refuses_and_writes_nothing_when_the_check_fails(small, tmp_path, lines):
    out, log = lines
    dst = tmp_path / "d.pth"
    # a tolerance no float32 merge meets: the check fails, exit 1, nothing written
    r = fuse.run(fuse.FuseOptions(small.training, dst, SRC, n=4, img_size=IMG,
                                  max_rel_err=0.0), log)
    assert r.exit_code == EXIT_CHECK_FAILED and r.to_dict()["written"] is False
    assert r.lines() == [f"not written: {dst}"] and not dst.exists()


def test_fuse_bad_input_is_an_error_before_any_output(small, tmp_path, lines):
    with pytest.raises(VnexportError, match="overwrite the input"):
        fuse.run(fuse.FuseOptions(small.training, small.training, SRC, force=True), lines[1])
    with pytest.raises(VnexportError, match="--strides takes comma-separated integers"):
        fuse.run(fuse.FuseOptions(small.training, tmp_path / "o.pth",
                                  Source(strides="2,x")), lines[1])
    assert list(tmp_path.iterdir()) == []
