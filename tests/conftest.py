from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """A VanillaNet trained on real images (sklearn digits), saved in the training format."""
    from digits import train_digits

    return train_digits(tmp_path_factory.mktemp("digits"))
