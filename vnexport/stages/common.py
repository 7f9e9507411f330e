"""What every stage shares: where its messages go, checkpoint loading options, the result
contract (a report for JSON, closing lines, an exit code), default output names."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import EXIT_OK, VnexportError
from ..limits import split_ints
from ..model import check_img_size as _img_size_reason


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def _quiet(msg: str) -> None:
    pass


@dataclass
class Log:
    """Where a stage's lines go: ``echo`` for results; ``note`` for notes and warnings, which
    are held back (``deferred``) and printed after the result, or not at all when the command
    fails; ``progress`` for a line per long step with its elapsed time (the CLI prints them on
    a terminal only)."""

    echo: Callable[[str], None] = print
    note: Callable[[str], None] = _stderr
    progress: Callable[[str], None] = _quiet
    deferred: list[str] = field(default_factory=list)
    status: Callable[[str], None] = _quiet  # progress of a long loop, terminal or not (bench)

    def defer(self, msg: str) -> None:
        self.deferred.append(msg)

    def flush_notes(self) -> None:
        for msg in self.deferred:
            self.note(msg)
        self.deferred.clear()

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """``what ...`` when a long step starts, ``what: done in N s`` when it ends."""
        t = time.perf_counter()
        self.progress(f"{what} ...")
        yield
        self.progress(f"{what}: done in {time.perf_counter() - t:.1f} s")


@dataclass
class Result:
    """What a stage returns: ``report`` (the JSON report; None: none), ``closing`` (the lines
    printed after the report is written) and ``exit_code`` (0, or 1 when a check failed)."""

    report: Optional[dict] = None
    closing: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_OK

    def to_dict(self) -> Optional[dict]:
        return self.report

    def lines(self) -> list[str]:
        return list(self.closing)


@dataclass(frozen=True)
class Source:
    """How to read a checkpoint: the loading options every checkpoint-reading command takes
    (``strides`` and ``ada_pool`` as comma-separated text, as given)."""

    key: str = "auto"
    model: Optional[str] = None
    strides: Optional[str] = None
    ada_pool: Optional[str] = None
    act_learn: Optional[float] = None
    trust: bool = False


@contextlib.contextmanager
def torch_threads(threads: Optional[int]):
    """Run the block with PyTorch's intra-op thread count at ``threads`` (None: as it is), and
    put back the count it had: a stage called in-process (tests, the Python API) must not
    leave the caller's PyTorch on one thread."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def parse_ints(text: Optional[str], option: str) -> Optional[tuple[int, ...]]:
    """A comma-separated integer option (None: not given), by the one list parser."""
    return None if text is None else split_ints(text, option)


def load(ckpt: Path, src: Source, log: Log) -> Checkpoint:
    """Load ``ckpt`` with ``src``'s options; its notes are deferred (``log.defer``)."""
    if src.trust:
        log.defer("warning: --trust-remote-pickle: loading with weights_only=False runs code "
                  "from the file")
    loaded = load_checkpoint(ckpt, key=src.key, model=src.model,
                             strides=parse_ints(src.strides, "--strides"),
                             ada_pool=parse_ints(src.ada_pool, "--ada-pool"),
                             act_learn=src.act_learn, trust=src.trust)
    for n in loaded.notes:
        log.defer(f"{ckpt.name}: {n}")
    return loaded


def check_img_size(cfg, img_size: int) -> None:
    reason = _img_size_reason(cfg, img_size)
    if reason:
        raise VnexportError(f"--img-size: {reason}")


def onnx_img_size(runners) -> Optional[int]:
    """The input size an ONNX artifact among ``runners`` was exported for (its fixed height =
    width), or None."""
    for r in runners:
        if getattr(r, "session", None) is not None:
            shape = r.session.get_inputs()[0].shape
            if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3]:
                return shape[2]
    return None


def default_output(ckpt: Path, suffix: str) -> Path:
    stem = ckpt.name.split(".")[0]
    return ckpt.with_name(f"{stem}{suffix}")


def comparison_lines(label: str, comp) -> list[str]:
    verdict = "PASS" if comp.passed else "FAIL: " + "; ".join(comp.failures)
    return [f"{label}: {comp.summary()}", f"{label}: {verdict} (tolerance: "
            f"{comp.tolerance.describe()})"]


def precision_comparison_lines(comps: dict) -> list[str]:
    lines = []
    if "fp16 emulated" in comps:
        lines.append("ONNX Runtime's CPU provider runs float16 Conv in float32 (weights rounded "
                     "only); also checking float16 activations, emulated (every converted node's "
                     "output rounded to float16)")
    for label, comp in comps.items():
        lines += comparison_lines(f"verify {label}", comp)
    return lines
