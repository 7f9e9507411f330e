from __future__ import annotations

import logging
import os
import warnings

import pytest
import sympy  # noqa: F401 (imported here, not first inside some test: see below)
import torch


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A VanillaNet trained on real images (sklearn digits), saved in the training format."""
    from digits import train_digits

    return train_digits(tmp_path_factory.mktemp("digits"))


# Not a test's doing: pytest sets PYTEST_CURRENT_TEST for each phase of each test; PyTorch sets
# TORCHINDUCTOR_CACHE_DIR the first time anything asks for its compile cache (once a process).
PYTEST_OWN = {"PYTEST_CURRENT_TEST", "TORCHINDUCTOR_CACHE_DIR"}
# Libraries that add a warnings filter when first imported (sympy: "once" for its deprecation
# warnings; torch.onnx imports it lazily) are imported above, so that no test is blamed for it.


def _global_state() -> dict:
    return {"torch threads": torch.get_num_threads(),
            "torch interop threads": torch.get_num_interop_threads(),
            "os.environ": {k: v for k, v in os.environ.items() if k not in PYTEST_OWN},
            "warnings filters": list(warnings.filters),
            "root logger level": logging.getLogger().level}


def _restore(state: dict) -> None:
    if torch.get_num_threads() != state["torch threads"]:
        torch.set_num_threads(state["torch threads"])
    for k in set(os.environ) - set(state["os.environ"]) - PYTEST_OWN:
        del os.environ[k]
    os.environ.update(state["os.environ"])
    warnings.filters[:] = state["warnings filters"]
    warnings._filters_mutated()  # noqa: SLF001 (the warnings module's own cache reset)
    logging.getLogger().setLevel(state["root logger level"])


def _changes(before: dict, after: dict) -> list[str]:
    out = []
    for key in before:
        if before[key] == after[key]:
            continue
        if key == "os.environ":
            keys = sorted(k for k in before[key].keys() | after[key].keys()
                          if before[key].get(k) != after[key].get(k))
            out.append(f"os.environ: {', '.join(keys)}")
        elif key == "warnings filters":
            out.append("warnings filters (added: "
                       f"{[f for f in after[key] if f not in before[key]]})")
        else:
            out.append(f"{key}: {before[key]} -> {after[key]}")
    return out


@pytest.fixture(autouse=True)
def leaves_global_state_as_found():
    """Every test leaves PyTorch's thread counts, the environment, the warnings filters and the
    root logger level as it found them: what changed is put back (so that the order tests run
    in does not matter) and the test errors, naming it (monkeypatch's own restores happen
    before this check)."""
    before = _global_state()
    yield
    after = _global_state()
    changed = _changes(before, after)
    if changed:
        _restore(before)
        pytest.fail("the test changed global state: " + "; ".join(changed), pytrace=False)
