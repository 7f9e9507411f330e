"""``vnexport demo``: every pipeline stage on a built-in, seeded training checkpoint.

The face of ``stages.demo`` for Python callers: runs it and prints its summary table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .stages import demo as demo_stage
from .stages.common import Log


def run_demo(workdir: Path, variant: str, img_size: int, n: int,
             echo: Callable[[str], None]) -> bool:
    """Run the demo in ``workdir``; its lines go to ``echo``. True when no stage failed."""
    result = demo_stage.run(demo_stage.DemoOptions(workdir, variant, img_size, n),
                            Log(echo=echo, note=echo))
    for line in result.lines():
        echo(line)
    return result.passed
