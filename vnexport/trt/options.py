"""What ``vnexport trt`` asks of a builder, checked on the CPU: the build options, the
optimization profile, and the constants (builders, install hints) the other modules share.
Imports nothing of TensorRT. References [TAG]: ``vnexport/trt/__init__.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VnexportError
from ..onnx_file import OnnxInput


MIN_TRT = (10, 12)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # what vnexport takes as an engine file
INSTALL_HINT = ("pip install 'vnexport[trt]' on a machine with an NVIDIA GPU, or use the image "
                "from docker/Dockerfile (see README, 'vnexport trt')")

# --hardware-compat value -> trt.HardwareCompatibilityLevel member name [TRT-HWCOMPAT]
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}

# builders: datacenter TensorRT (module ``tensorrt``, builds on the GPU it targets) and TensorRT
# for RTX (module ``tensorrt_rtx``, builds ahead of time on the CPU for listed compute
# capabilities) [RTX-AOT]. "auto": what the options call for, else TensorRT where installed,
# else TensorRT-RTX.
BUILDERS = ("auto", "tensorrt", "tensorrt-rtx")
BUILDER_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
RTX_INSTALL_HINT = ("pip install 'vnexport[trt-rtx]' (TensorRT for RTX: builds engines without "
                    "a GPU, for --compute-capability targets)")
# Polygraphy reads this once, when polygraphy.config is first imported [PG-RTX]
POLYGRAPHY_RTX_ENV = "POLYGRAPHY_USE_TENSORRT_RTX"
RTX_DEFAULT_TARGETS = ("TensorRT-RTX's default portable set (its documentation: compute "
                       "capability 8.0, 8.6, 8.9, 12.0 and later; 7.5 only when asked for)")
NO_GPU_TO_VERIFY = ("built nothing: no CUDA GPU to verify the engine on; add --no-verify to "
                    "build it unverified")


# ------------------------------------------------------------------------------------------
# options and profile decisions (CPU)


@dataclass(frozen=True)
class BuildOptions:
    """What ``vnexport trt`` asks of the builder. ``None`` means TensorRT's own default."""

    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    workspace_gib: float | None = None
    timing_cache: Path | None = None
    hardware_compat: str = "none"
    builder_opt_level: int | None = None
    strongly_typed: bool = True
    verbose: bool = False
    builder: str = "auto"
    compute_capabilities: tuple[str, ...] | None = None  # "8.0", ...: TensorRT-RTX targets
    version_compatible: bool = False  # BuilderFlag.VERSION_COMPATIBLE [TRT-VERCOMPAT]
    exclude_lean_runtime: bool = False  # BuilderFlag.EXCLUDE_LEAN_RUNTIME (needs the above)

    def validate(self) -> "BuildOptions":
        self._validate_builder()
        for name in ("min_batch", "opt_batch", "max_batch"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise VnexportError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.workspace_gib is not None and not self.workspace_gib > 0:
            raise VnexportError(f"--workspace must be > 0 GiB, got {self.workspace_gib}")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise VnexportError(f"--hardware-compat must be one of {', '.join(HARDWARE_COMPAT)}, "
                                f"got {self.hardware_compat!r}")
        if self.builder_opt_level is not None and not 0 <= self.builder_opt_level <= 5:
            raise VnexportError(
                f"--builder-opt-level must be 0..5, got {self.builder_opt_level}")
        if self.exclude_lean_runtime and not self.version_compatible:
            raise VnexportError("--exclude-lean-runtime applies to version-compatible engines: "
                                "add --version-compatible")
        if not self.strongly_typed:
            raise VnexportError("only strongly typed engines are built: TensorRT 11 builds "
                                "nothing else, and the precision comes from the ONNX file")
        if self.timing_cache is not None:
            cache = Path(self.timing_cache)
            if cache.is_dir():
                raise VnexportError("--timing-cache is a directory, not a file", cache)
            if not (cache.parent if str(cache.parent) else Path(".")).is_dir():
                raise VnexportError("--timing-cache: its folder does not exist", cache)
        return self

    def _validate_builder(self) -> None:
        if self.builder not in BUILDERS:
            raise VnexportError(f"--builder must be one of {', '.join(BUILDERS)}, "
                                f"got {self.builder!r}")
        if self.compute_capabilities is not None:
            parse_compute_capabilities(",".join(self.compute_capabilities))
        wanted = self.builder_wanted
        if wanted == "tensorrt" and self.compute_capabilities:
            raise VnexportError("--compute-capability applies to --builder tensorrt-rtx; "
                                "datacenter TensorRT builds for the GPU it runs on (see "
                                "--hardware-compat)")
        if wanted == "tensorrt-rtx":
            lacking = self.rtx_lacks()
            if lacking:
                raise VnexportError(f"{lacking[0]}: TensorRT-RTX has no such setting, so the "
                                    "option would be ignored; drop it, or use --builder "
                                    "tensorrt")

    @property
    def builder_wanted(self) -> str:
        """The builder the options call for: --builder, else tensorrt-rtx when compute
        capabilities are given, tensorrt when --hardware-compat or --timing-cache is (options
        only one of them has), else "auto". Options of both: exit 2."""
        if self.builder != "auto":
            return self.builder
        rtx = bool(self.compute_capabilities)
        dc = self.rtx_lacks()
        if rtx and dc:
            raise VnexportError(f"--compute-capability (TensorRT-RTX only) and {dc[0]} "
                                "(datacenter TensorRT only) cannot be combined")
        return "tensorrt-rtx" if rtx else "tensorrt" if dc else "auto"

    def rtx_lacks(self) -> list[str]:
        """Options given that TensorRT-RTX does not have [RTX-AOT]: it logs a hardware
        compatibility level as unsupported, and its timing cache operations are no-ops."""
        out = []
        if self.hardware_compat != "none":
            out.append(f"--hardware-compat {self.hardware_compat}")
        if self.timing_cache is not None:
            out.append("--timing-cache")
        if self.version_compatible:
            out.append("--version-compatible")
        if self.exclude_lean_runtime:
            out.append("--exclude-lean-runtime")
        return out

    @property
    def workspace_bytes(self) -> int | None:
        return None if self.workspace_gib is None else int(self.workspace_gib * 2**30)


def parse_compute_capabilities(text: str | None) -> tuple[str, ...] | None:
    """ "8.0,8.6" -> ("8.0", "8.6"); each must be MAJOR.MINOR (exit 2 otherwise). Whether
    TensorRT-RTX has a target for it is checked against its ComputeCapability enum
    (``rtx_compute_capabilities``)."""
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        major, dot, minor = part.partition(".")
        if not (dot and major.isdigit() and minor.isdigit()):
            raise VnexportError(f"--compute-capability takes MAJOR.MINOR values separated by "
                                f"commas (e.g. 8.0,8.6), got {part!r}")
        out.append(f"{int(major)}.{int(minor)}")
    if not out:
        raise VnexportError("--compute-capability: no value given")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True)
class Profile:
    """One optimization profile for the input: min/opt/max shapes (NCHW)."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    origin: str = field(default="", compare=False)  # where each batch size came from

    @property
    def max_batch(self) -> int:
        return self.max[0]

    def to_dict(self) -> dict:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}


def resolve_profile(inp: OnnxInput, options: BuildOptions, img_size: int | None = None,
                    source: object = None, stored_max: int | None = None) -> Profile:
    """min/opt/max shapes from the batch options, the ONNX input and the file's stored
    ``max_batch`` (``stored_max``: ``onnx --dynamic-batch --max-batch N`` writes it).

    Dynamic batch: min defaults to 1, opt to min, max to the stored max batch (at least opt),
    else to opt; they must satisfy 1 <= min <= opt <= max. Static batch B: every batch option
    given must equal B (a static graph cannot run any other batch), else the file is refused
    with the way out. Spatial dims come from the file; dynamic ones need --img-size.
    ``Profile.origin`` says where each batch size came from.
    """
    c, h, w = inp.shape[1:]
    if c is None:
        raise VnexportError(f"input {inp.name!r} has a dynamic channel dimension", source)
    if h is None or w is None:
        if img_size is None:
            raise VnexportError(f"input {inp.name!r} has dynamic height/width; pass --img-size",
                                source)
        h, w = h or img_size, w or img_size
    elif img_size is not None and (h, w) != (img_size, img_size):
        raise VnexportError(f"--img-size {img_size} does not match the file's input "
                            f"{h}x{w}", source)
    if inp.batch is not None:
        mn = op = mx = _static_batch(inp.batch, options, source)
        origin = f"batch {mx}: the file's static batch"
    else:
        mn, op, mx, origin = _dynamic_batches(options, stored_max)
        if not mn <= op <= mx:
            raise VnexportError(f"batch sizes must satisfy min <= opt <= max, got "
                                f"min {mn}, opt {op}, max {mx}", source)
    return Profile(inp.name, (mn, c, h, w), (op, c, h, w), (mx, c, h, w), origin)


def _static_batch(b: int, options: BuildOptions, source: object) -> int:
    asked = {"--min-batch": options.min_batch, "--opt-batch": options.opt_batch,
             "--max-batch": options.max_batch}
    bad = [f"{k} {v}" for k, v in asked.items() if v is not None and v != b]
    if bad:
        raise VnexportError(
            f"the ONNX file has a static batch of {b}, which does not fit {', '.join(bad)}; "
            f"export it with a dynamic batch (vnexport onnx --dynamic-batch --max-batch N) "
            f"or drop the batch options", source)
    return b


def _dynamic_batches(options: BuildOptions, stored_max: int | None):
    """(min, opt, max, origin) of a dynamic batch: options first, then the defaults."""
    stored = stored_max if isinstance(stored_max, int) and stored_max > 0 else None
    mn = options.min_batch or 1
    op = options.opt_batch or mn
    if options.max_batch is not None:
        mx, max_from = options.max_batch, "--max-batch"
    elif stored is not None:
        mx = max(stored, op)
        max_from = (f"the file's stored max_batch {stored}" if mx == stored else
                    f"--opt-batch (above the file's stored max_batch {stored})")
    else:
        mx = max(op, mn)
        max_from = ("= opt; the file stores no max_batch, pass --max-batch N for larger "
                    "batches")
    origin = (f"min {mn} ({'--min-batch' if options.min_batch else 'default 1'}), "
              f"opt {op} ({'--opt-batch' if options.opt_batch else '= min'}), "
              f"max {mx} ({max_from})")
    return mn, op, mx, origin
