"""Bounds on the sizes, counts and seeds a user may ask for, and the one parser of
comma-separated option values (light imports: the CLI's option declarations use them without
loading torch). Beyond the bounds a run would only exhaust memory or time; every refusal names
the limit."""

import re

from .errors import VnexportError

MAX_IMG_SIZE = 2048  # input height/width
MAX_BATCH = 1024  # one batch (bench, TensorRT profiles, export)
MAX_INPUTS = 4096  # verification or calibration inputs
MAX_RUNS = 100_000  # timed or warm-up runs
MAX_SEED = 2 ** 32 - 1
MAX_THREADS = 1024
MAX_IMAGE_PIXELS = 64_000_000  # one image file, as stored and as resized (8000 x 8000)



def split_list(text: str, option: str) -> tuple[str, ...]:
    """The one parser of comma-separated option values (--batch, --preferred-batch, --strides,
    --ada-pool, --compute-capability): "4,8" -> ("4", "8"). An empty value, an empty item
    (a leading, trailing or doubled comma) or whitespace is refused naming the option."""
    text = str(text)
    if not text:
        raise VnexportError(f"{option}: empty value; give comma-separated values (e.g. 4,8)")
    if any(c.isspace() for c in text):
        raise VnexportError(f"{option} {text!r}: no spaces; give comma-separated values "
                            "(e.g. 4,8)")
    items = tuple(text.split(","))
    if "" in items:
        raise VnexportError(f"{option} {text!r}: an empty item (a leading, trailing or doubled "
                            "comma)")
    return items


def split_ints(text: str, option: str) -> tuple[int, ...]:
    """``split_list`` of decimal integers."""
    items = split_list(text, option)
    bad = [t for t in items if not re.fullmatch(r"-?[0-9]+", t)]
    if bad:
        raise VnexportError(f"{option} takes comma-separated integers, got {bad[0]!r}")
    return tuple(int(t) for t in items)
