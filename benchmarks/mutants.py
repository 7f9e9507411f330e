"""A small mutation check: plausible bugs put into a copy of the package one at a time, and
whether the tests named for each catch it.

Each mutant is (id, file, original snippet, mutated snippet, tests to run). For each, the
repository (package, tests, README, pyproject) is copied once to a temporary folder; the
mutant replaces its original snippet there (which must occur exactly once), the named tests
run in that copy (``python -m pytest -x``, a timeout each), and the copy's file is put back.
The working tree is never edited. A mutant is *killed* when the tests fail (or time out),
*survived* when they pass. A baseline run of every named test on the unmutated copy comes
first: a mutant is only judged by tests that pass without it.

Not run in CI (it takes ~10 minutes on 2 cores); ``tests/test_benchmarks.py`` checks that
every original snippet still occurs exactly once in the current code.

    python benchmarks/mutants.py [--only ID,...] [--out benchmarks/results/mutants_<machine>.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
P = "tests/test_promises.py::"


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    original: str
    mutated: str
    tests: tuple[str, ...]
    note: str = ""  # why a survivor is equivalent, where it is


MUTANTS = [
    # fuse
    Mutant("fuse.bn_eps", "vnexport/model.py", "        bn.eps,\n", "        bn.eps * 10,\n",
           (P + "test_fold_bn_uses_the_bn_eps",
            "tests/test_fuse.py::test_fused_file_loads_strict_and_matches_training_form")),
    Mutant("fuse.merge_drops_bias", "vnexport/model.py",
           "    b = m2 @ b1.to(FUSE_DTYPE) + b2.to(FUSE_DTYPE)\n",
           "    b = m2 @ b1.to(FUSE_DTYPE)\n",
           ("tests/test_fuse.py::test_fused_file_loads_strict_and_matches_training_form",)),
    Mutant("fuse.act_learn_threshold", "vnexport/fuse.py",
           'if ckpt.form == "training" and ckpt.act_learn < 1.0:',
           'if ckpt.form == "training" and ckpt.act_learn < 0.5:',
           ("tests/test_fuse.py::test_mid_schedule_checkpoint_is_refused",
            P + "test_fuse_refuses_any_act_learn_below_1")),
    # export
    Mutant("onnx.opset_fixed", "vnexport/onnx_export.py",
           "dynamo=False, opset_version=opset,", "dynamo=False, opset_version=17,", (P + "test_onnx_opset_is_the_files_opset",)),
    Mutant("trt.ckpt_opset_fixed", "vnexport/stages/trt.py", "img_size or 224, opset,",
           "img_size or 224, 17,",
           (P + "test_trt_checkpoint_opset_and_workspace_reach_onnx_and_builder",)),
    Mutant("onnx.max_batch_metadata", "vnexport/onnx_export.py",
           '        "max_batch": max_batch,\n', '        "max_batch": None,\n',
           (P + "test_triton_config_takes_the_files_max_batch",
            P + "test_trt_default_profile_is_the_files_stored_max_batch")),
    Mutant("onnx.static_axes", "vnexport/onnx_export.py", "if dynamic_batch else None)",
           "if False else None)",
           ("tests/test_onnx_export.py::test_dynamic_batch_runs_at_1_and_4",)),
    # precision
    Mutant("int8.calibrates_on_random", "vnexport/stages/quantize.py",
           "        return imagesets.load(split.calib, img_size).numpy()\n",
           "        return np.random.default_rng(0).standard_normal(\n"
           "            (len(split.calib), 3, img_size, img_size)).astype(np.float32)\n",
           (P + "test_int8_calibrates_on_the_calibration_images",)),
    Mutant("int8.asymmetric_activations", "vnexport/precision.py",
           '"ActivationSymmetric": self.activation_type == "int8"',
           '"ActivationSymmetric": False',
           (P + "test_int8_calibrates_on_the_calibration_images",)),
    Mutant("int8.stem_always_float", "vnexport/precision.py",
           "nodes_to_exclude=([] if quantize_stem else stem_nodes(model)) + list(exclude),",
           "nodes_to_exclude=stem_nodes(model) + list(exclude),",
           (P + "test_int8_calibrates_on_the_calibration_images",)),
    Mutant("int8.method_ignored", "vnexport/precision.py",
           "cal_method = _calibration_method(method)",
           'cal_method = _calibration_method("minmax")',
           ("tests/test_overrides.py::test_method_changes_the_calibrated_scales",)),
    Mutant("fp16.tolerance_loosened", "vnexport/verify.py",
           "FP16 = Tolerance(max_rel=None, min_top1=0.99, min_cosine=0.9999)",
           "FP16 = Tolerance(max_rel=None, min_top1=0.99, min_cosine=0.999)",
           ("tests/test_verify_artifacts.py::test_tolerance_presets_by_precision",
            "tests/test_trt.py::test_onnxruntime_reference_matches_training_form")),
    # trt
    Mutant("trt.workspace_not_passed", "vnexport/cli.py", "workspace_gib=workspace,",
           "workspace_gib=None,",
           (P + "test_trt_checkpoint_opset_and_workspace_reach_onnx_and_builder",)),
    Mutant("trt.profile_ignores_stored_max", "vnexport/trt/options.py", "        mx = max(stored, op)\n",
           "        mx = max(op, mn)\n",
           (P + "test_trt_default_profile_is_the_files_stored_max_batch",)),
    Mutant("trt.profile_opt_default", "vnexport/trt/options.py", "    op = options.opt_batch or mn\n",
           "    op = options.opt_batch or 1\n",
           (P + "test_trt_batch_options_override_the_stored_max_batch",
            P + "test_profile_defaults")),
    Mutant("trt.polygraphy_version", "vnexport/trt/provenance.py",
           '"polygraphy_version": runtime.get("polygraphy"),',
           '"polygraphy_version": runtime.get("tensorrt"),',
           (P + "test_provenance_versions_are_the_installed_ones",)),
    Mutant("trt.tf32_left_on", "vnexport/trt/build.py",
           "            cfg.clear_flag(flag)  # TensorRT-RTX",
           "            pass  # TensorRT-RTX",
           ("tests/test_trt_rtx.py::test_build_engine_from_checkpoint",)),
    Mutant("trt.opt_level_dropped", "vnexport/trt/build.py",
           "builder_optimization_level=options.builder_opt_level)",
           "builder_optimization_level=None)",
           ("tests/test_trt_rtx.py::test_workspace_and_optimisation_level_reach_the_config",)),
    Mutant("trt.verify_images_ignored", "vnexport/stages/trt.py",
           "x = make_inputs(ckpt.cfg, verify.n, size, verify.seed, verify.images)",
           "x = make_inputs(ckpt.cfg, verify.n, size, verify.seed, None)",
           (P + "test_trt_images_are_what_the_engine_is_verified_on",)),
    Mutant("trt.verbose_ignored", "vnexport/trt/runtime.py",
           "G_LOGGER.INFO if verbose else G_LOGGER.WARNING",
           "G_LOGGER.WARNING if verbose else G_LOGGER.WARNING",
           (P + "test_trt_verbose_shows_the_build_log",)),
    # info
    Mutant("info.sha256_always_matches", "vnexport/trt/header.py",
           'facts["sha256_matches_provenance"] = prov.get("engine_sha256") == digest',
           'facts["sha256_matches_provenance"] = True',
           (P + "test_info_engine_sha256_check_sees_one_changed_byte",)),
    Mutant("info.opset_wrong", "vnexport/stages/info.py",
           '"opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},',
           '"opsets": {o.domain or "ai.onnx": 17 for o in model.opset_import},',
           (P + "test_onnx_opset_is_the_files_opset",)),
    # triton, serve
    Mutant("triton.ignores_stored_max", "vnexport/triton.py",
           "max_batch = declared if declared and declared > 0 else DEFAULT_MAX_BATCH",
           "max_batch = DEFAULT_MAX_BATCH",
           (P + "test_triton_config_takes_the_files_max_batch",)),
    Mutant("triton.no_dynamic_batching", "vnexport/triton.py",
           '    if max_batch:\n        text += "dynamic_batching {\\n"',
           '    if False:\n        text += "dynamic_batching {\\n"',
           (P + "test_triton_config_takes_the_files_max_batch",)),
    Mutant("serve.host_ignored", "vnexport/stages/serve.py", "TritonServer(repo, host=opts.host,",
           'TritonServer(repo, host="127.0.0.1",',
           (P + "test_serve_host_reaches_the_server",)),
    Mutant("serve.shm_not_cleaned", "vnexport/triton_server.py",
           "            leftover.unlink(missing_ok=True)\n", "            pass\n",
           ("tests/test_serve.py::test_stop_by_pid_leaves_nothing",
            "tests/test_serve.py::test_a_killed_server_leaves_nothing_after_stop")),
    # verify
    Mutant("verify.mean_cosine", "vnexport/verify.py", "cosine = float(cos_each.min())",
           "cosine = float(cos_each.mean())",
           (P + "test_verify_reports_the_lowest_per_input_cosine",)),
    Mutant("verify.max_rel_halved", "vnexport/verify.py",
           "max_rel = max_abs / scale if scale > 0", "max_rel = max_abs / (3 * scale) if scale > 0",
           ("tests/test_overrides.py::test_verify_max_rel_err_flips",)),
    Mutant("verify.top1_against_itself", "vnexport/verify.py",
           "top1 = float((a.argmax(axis=1) == b.argmax(axis=1)).mean())",
           "top1 = float((a.argmax(axis=1) == a.argmax(axis=1)).mean())",
           ("tests/test_overrides.py::test_verify_min_agreement_flips",)),
    Mutant("quantize.images_ignored", "vnexport/stages/quantize.py",
           "x = (image_inputs(opts.images, size, opts.n) if opts.images",
           "x = (image_inputs(opts.images, size, opts.n) if False",
           (P + "test_quantize_images_are_the_verification_inputs",)),
    # fileio, checkpoint, bench, shared options
    Mutant("fileio.force_ignored", "vnexport/fileio.py", "            if not (self.force or update):",
           "            if not (True or update):",
           ("tests/test_fileio.py::test_existing_file_needs_force_and_special_files_never",)),
    Mutant("fileio.input_overwritten", "vnexport/fileio.py",
           '            if same_file(path, other):\n                raise VnexportError(f"{option} '
           'would overwrite',
           '            if False:\n                raise VnexportError(f"{option} would overwrite',
           ("tests/test_fileio.py::test_an_input_is_never_an_output_also_through_links",)),
    Mutant("checkpoint.unsafe_load", "vnexport/checkpoint.py",
           'return torch.load(path, map_location="cpu", weights_only=True, mmap=True)',
           'return torch.load(path, map_location="cpu", weights_only=False, mmap=True)',
           ("tests/test_checkpoint.py::test_pickle_that_would_run_code_is_refused",
            P + "test_zip_checkpoint_that_would_run_code_is_refused")),
    Mutant("bench.p90_is_median", "vnexport/timing.py", "np.percentile(t, [50, 90, 99])",
           "np.percentile(t, [50, 50, 99])",
           ("tests/test_bench.py::test_latency_stats_percentiles",)),
    Mutant("source.key_dropped", "vnexport/stages/common.py",
           "loaded = load_checkpoint(ckpt, key=src.key,",
           'loaded = load_checkpoint(ckpt, key="auto",',
           (P + "test_source_options_reach_the_loader",)),
    Mutant("onnx_file.stored_max_unread", "vnexport/onnx_file.py",
           "    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0\n",
           "    ok = False\n",
           (P + "test_trt_default_profile_is_the_files_stored_max_batch",)),
]

COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".venv", "results",
                                     "*.engine", "*.onnx", "*.pth")


def check_snippets(root: Path = ROOT) -> list[str]:
    """Problems with the mutant list against the code at ``root``: each original snippet must
    occur exactly once in its file, and each named test file must exist."""
    problems = []
    for m in MUTANTS:
        path = root / m.file
        count = path.read_text().count(m.original) if path.is_file() else -1
        if count != 1:
            problems.append(f"{m.id}: original snippet found {count} times in {m.file}")
        for t in m.tests:
            if not (root / t.split("::")[0]).is_file():
                problems.append(f"{m.id}: no test file {t.split('::')[0]}")
    ids = [m.id for m in MUTANTS]
    if len(set(ids)) != len(ids):
        problems.append("duplicate mutant ids")
    return problems


def run_tests(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """("pass" | "fail" | "timeout", seconds, last lines) of the named tests in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::DeprecationWarning", *tests]
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t, ""
    tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-3:])
    return ("pass" if r.returncode == 0 else "fail"), time.perf_counter() - t, tail


def machine() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--check", action="store_true", help="only check the snippets")
    args = ap.parse_args(argv)
    problems = check_snippets()
    if problems or args.check:
        print("\n".join(problems) or f"{len(MUTANTS)} mutants, every snippet found once")
        return 1 if problems else 0
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only.split(",")]
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vnexport-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
        union = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        base, secs, tail = run_tests(copy, union, args.timeout * 3)
        print(f"baseline ({len(union)} tests): {base} in {secs:.0f} s", flush=True)
        if base != "pass":
            print(tail)
            return 2
        for m in chosen:
            path = copy / m.file
            text = path.read_text()
            path.write_text(text.replace(m.original, m.mutated, 1))
            try:
                verdict, secs, tail = run_tests(copy, m.tests, args.timeout)
            finally:
                path.write_text(text)
            status = "survived" if verdict == "pass" else "killed"
            rows.append((m, status, verdict, secs))
            print(f"{status:9} {m.id:32} {secs:6.1f} s", flush=True)
    killed = sum(r[1] == "killed" for r in rows)
    report = render(rows, killed, time.perf_counter() - t0)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def render(rows, killed: int, seconds: float) -> str:
    lines = ["# Mutation check (benchmarks/mutants.py)", "",
             f"Machine: {machine()}, {os.cpu_count()} CPUs; Python {platform.python_version()}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {seconds / 60:.1f} min.", "",
             f"**Score: {killed}/{len(rows)} killed** "
             f"({100 * killed / max(len(rows), 1):.0f}%).", "",
             "| mutant | file | result | seconds | tests run | note |",
             "|---|---|---|---|---|---|"]
    for m, status, verdict, secs in rows:
        tests = "<br>".join(t.replace("tests/", "") for t in m.tests)
        how = status + (" (timeout)" if verdict == "timeout" else "")
        lines.append(f"| `{m.id}` | {m.file} | {how} | {secs:.0f} | {tests} | {m.note} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
