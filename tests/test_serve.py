"""A real Triton server (the nvidia-pytriton wheel's ``tritonserver``, Python backend) on free
127.0.0.1 ports, serving repositories written by ``vnexport triton``:

- the small model (+ its preprocessing ensemble), vanillanet_5 at 224x224 (+ ensemble) and
  vanillanet_5 exported at 32x32 (the same network and weights, its smallest input, so that a
  bounded load of 400 + 400 requests stays within the test budget on 2 CPU cores);
- HTTP and gRPC answers equal in-process onnxruntime on the same file (max rel err <= 1e-6) at
  batch 1 and a larger batch, and the training-form PyTorch network within fp32 tolerance;
- 400 requests from 16 concurrent clients over HTTP and 400 over gRPC: no error, none lost or
  mismatched, and the server's statistics show dynamic batching;
- the ensemble takes image bytes and answers the same top-k (labels via the classification
  extension) as vnexport's own preprocessing (verify.preprocess) plus onnxruntime;
- stopping by PID leaves no process and no shared memory behind; ``vnexport serve`` stops on
  SIGTERM the same way.

Skipped, with the reason, only where the wheel's server cannot run here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from artifacts import CONFIG, IMG, export_onnx_file, make_small_run
from triton_helpers import free_ports
from vnexport import ort
from vnexport import triton as T
from vnexport import triton_server as S
from vnexport.checkpoint import load_checkpoint
from vnexport.cli import app
from vnexport.model import get_config
from vnexport.synthetic import write_training_checkpoint
from vnexport.verify import Tolerance, compare, preprocess

pytestmark = [pytest.mark.serve,
              pytest.mark.skipif(S.missing_reason() is not None,
                                 reason=f"Triton server cannot run here: {S.missing_reason()}")]
httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] not installed")
psutil = pytest.importorskip("psutil", reason="psutil (test extra) not installed")

EXACT = Tolerance(max_rel=1e-6, min_top1=1.0)  # served vs in-process onnxruntime
ROOT = Path(__file__).resolve().parents[1]
V5 = get_config("vanillanet_5")
V5_SMALL_IMG = 32
CLIENTS, REQUESTS = 16, 400



def labels_for(n: int) -> tuple[str, ...]:
    return tuple(f"class_{k:04d}" for k in range(n))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (ONNX path, training checkpoint, strides, img size)."""
    d = tmp_path_factory.mktemp("serve")
    small = make_small_run(d)
    v5 = write_training_checkpoint(d / "v5.pth", V5, seed=3, with_ema=False)
    return {
        "small": (small.onnx, small.training, CONFIG.strides, IMG),
        "static": (export_onnx_file(small.training, d / "static.onnx", batch=1), small.training,
                   CONFIG.strides, IMG),
        "v5": (export_onnx_file(v5, d / "v5.onnx", img_size=224, strides=V5.strides),
               v5, V5.strides, 224),
        "v5_32": (export_onnx_file(v5, d / "v5_32.onnx", img_size=V5_SMALL_IMG,
                                   strides=V5.strides), v5, V5.strides, V5_SMALL_IMG),
    }


def start_server(models, folder: Path) -> S.TritonServer:
    """A Triton server of every test model (Python backend), started and ready."""
    repo = folder / "models"
    folders = []
    for name, (path, *_rest) in models.items():
        facts = T.read_facts(path)
        opts = T.ServingOptions(name=name, backend="python", kind="cpu",
                                max_queue_delay_us=2000, labels=labels_for(facts.classes),
                                preprocess=name in ("small", "v5"))
        folders += T.model_folders(facts, opts)
    T.write_repository(repo, folders)
    http, grpc, metrics = free_ports()
    srv = S.TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
    srv.start()
    try:
        srv.index = srv.wait_ready(240)
    except BaseException:
        srv.stop()
        raise
    return srv


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """The module's shared server (no test stops it: test_stop_by_pid_leaves_nothing starts its
    own, so that the tests pass in any order)."""
    srv = start_server(models, tmp_path_factory.mktemp("repo"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def sessions(models):
    return {name: ort.session(path, device="cpu") for name, (path, *_r) in models.items()}


def http_client(srv):
    return httpclient.InferenceServerClient(f"127.0.0.1:{srv.ports['http']}")


def grpc_client(srv):
    return grpcclient.InferenceServerClient(f"127.0.0.1:{srv.ports['grpc']}")


def infer(client, module, model: str, x: np.ndarray) -> np.ndarray:
    inp = module.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    out = client.infer(model, [inp], outputs=[module.InferRequestedOutput("logits")])
    return out.as_numpy("logits")


def test_repository_loads(server):
    ready = {m["name"]: m["state"] for m in server.index}
    assert ready == {n: "READY" for n in ["small", "small_preprocess", "small_ensemble", "v5",
                                          "v5_preprocess", "v5_ensemble", "v5_32",
                                          "static"]}
    assert S.shm_regions(server.shm_prefix), "the Python backend's shared memory carries the " \
        "server's prefix (what stop() cleans up)"


@pytest.mark.parametrize("model", ["small", "v5"])
@pytest.mark.parametrize("batch", [1, 4])
def test_http_and_grpc_equal_onnxruntime(server, sessions, models, model, batch):
    _path, training, strides, img = models[model]
    x = np.random.default_rng(batch).standard_normal((batch, 3, img, img)).astype(np.float32)
    ref = sessions[model].run(["logits"], {"input": x})[0]
    for module, make in ((httpclient, http_client), (grpcclient, grpc_client)):
        client = make(server)
        try:
            got = infer(client, module, model, x)
        finally:
            client.close()
        comp = compare(ref, got, EXACT)
        assert comp.passed, (module.__name__, comp.failures)
    torch_ref = load_checkpoint(training, strides=strides).build_model()(torch.from_numpy(x))
    assert compare(torch_ref.detach().numpy(), got, Tolerance(max_rel=1e-4)).passed


def test_static_batch_file_served_without_batching(server, sessions):
    """A static batch-1 file: max_batch_size 0, the request carries the file's full shape."""
    x = np.random.default_rng(5).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    ref = sessions["static"].run(["logits"], {"input": x})[0]
    client = grpc_client(server)
    try:
        assert client.get_model_config("static").config.max_batch_size == 0
        assert compare(ref, infer(client, grpcclient, "static", x), EXACT).passed
    finally:
        client.close()


def _load(server, module, make, model: str, xs: np.ndarray) -> tuple[dict, list]:
    """REQUESTS single-image requests from CLIENTS threads, each with its own client."""
    results, errors, lock = {}, [], threading.Lock()
    todo = iter(range(len(xs)))

    def worker():
        client = make(server)
        try:
            while True:
                with lock:
                    k = next(todo, None)
                if k is None:
                    return
                try:
                    out = infer(client, module, model, xs[k:k + 1])
                except Exception as e:  # counted and reported, never swallowed
                    with lock:
                        errors.append(f"request {k}: {e}")
                    continue
                with lock:
                    results.setdefault(k, []).append(out)
        finally:
            client.close()

    threads = [threading.Thread(target=worker) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results, errors


def _counts(server, model: str) -> tuple[int, int]:
    client = http_client(server)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


def _counts_after(server, model: str, before: tuple[int, int], expected: int,
                  wait_s: float = 10.0) -> tuple[int, int]:
    """The statistics' growth since ``before``. Triton updates them after it has sent a
    response, so right after the last reply they can lag by a request or two (seen: 397 of
    400): read again until the inference count has grown by ``expected`` or ``wait_s`` has
    passed, then return what was read (the assertions judge it)."""
    deadline = time.monotonic() + wait_s
    while True:
        now = _counts(server, model)
        grown = (now[0] - before[0], now[1] - before[1])
        if grown[0] >= expected or time.monotonic() > deadline:
            return grown
        time.sleep(0.05)


@pytest.mark.parametrize("model", ["small", "v5_32"])
def test_bounded_load_batches_dynamically(server, sessions, models, model):
    img = models[model][3]
    xs = np.random.default_rng(7).standard_normal((REQUESTS, 3, img, img)).astype(np.float32)
    ref = np.concatenate([sessions[model].run(["logits"], {"input": xs[k:k + 16]})[0]
                          for k in range(0, REQUESTS, 16)])
    for module, make in ((httpclient, http_client), (grpcclient, grpc_client)):
        before = _counts(server, model)
        results, errors = _load(server, module, make, model, xs)
        inferences, executions = _counts_after(server, model, before, REQUESTS)
        assert errors == [], errors[:3]
        assert sorted(results) == list(range(REQUESTS))  # none lost
        assert all(len(v) == 1 for v in results.values())  # none duplicated
        got = np.concatenate([results[k][0] for k in range(REQUESTS)])
        bad = [k for k in range(REQUESTS) if not compare(ref[k:k + 1], got[k:k + 1],
                                                         EXACT).passed]
        assert bad == [], f"{module.__name__}: {len(bad)} mismatched responses, e.g. {bad[:5]}"
        assert inferences == REQUESTS
        assert inferences / executions >= 2, (module.__name__, inferences, executions)


def _images(folder: Path, img: int) -> list[Path]:
    """Three images; at an input size of 32 or less of that size (the authors' evaluation
    transform, vnexport's and the preprocessing model's, uses them unresized there)."""
    from PIL import Image

    rng = np.random.default_rng(11)
    paths = []
    sizes = ([(300, 200, "JPEG"), (97, 64, "PNG"), (256, 256, "PNG")] if img > 32 else
             [(img, img, "JPEG"), (img, img, "PNG"), (img, img, "PNG")])
    for k, (w, h, fmt) in enumerate(sizes):
        smooth = rng.random((h // 8 + 1, w // 8 + 1, 3)) * 255
        arr = np.kron(smooth, np.ones((8, 8, 1)))[:h, :w].astype(np.uint8)
        path = folder / f"img{k}.{fmt.lower()}"
        Image.fromarray(arr).save(path, fmt)
        paths.append(path)
    return paths


@pytest.mark.parametrize("model", ["small", "v5"])
def test_ensemble_answers_image_bytes_with_the_same_top_k(server, sessions, models, model,
                                                          tmp_path):
    img, k = models[model][3], 5
    paths = _images(tmp_path, img)
    x = torch.stack([preprocess(p, img) for p in paths]).numpy()
    ref = sessions[model].run(["logits"], {"input": x})[0]
    names = labels_for(ref.shape[1])
    blobs = np.array([[p.read_bytes()] for p in paths], dtype=object)
    for module, make in ((httpclient, http_client), (grpcclient, grpc_client)):
        client = make(server)
        try:
            inp = module.InferInput("IMAGE", list(blobs.shape), "BYTES")
            inp.set_data_from_numpy(blobs)
            top = client.infer(f"{model}_ensemble", [inp], outputs=[
                module.InferRequestedOutput("logits", class_count=k)]).as_numpy("logits")
            raw = client.infer(f"{model}_ensemble", [inp], outputs=[
                module.InferRequestedOutput("logits")]).as_numpy("logits")
        finally:
            client.close()
        assert compare(ref, raw, EXACT).passed
        for row, want in zip(top, ref):
            entries = [e.decode().split(":", 2) for e in row.reshape(-1)]
            order = list(np.argsort(-want)[:k])
            assert [int(i) for _v, i, _n in entries] == order
            assert [n for _v, _i, n in entries] == [names[i] for i in order]
            assert np.allclose([float(v) for v, _i, _n in entries], want[order], rtol=0,
                               atol=1e-6)


def test_bad_image_is_an_error_response_not_a_crash(server):
    client = http_client(server)
    try:
        inp = httpclient.InferInput("IMAGE", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[b"not an image"]], dtype=object))
        with pytest.raises(Exception, match="not a readable image"):
            client.infer("small_ensemble", [inp])
        assert client.is_server_ready()
    finally:
        client.close()


def test_stop_by_pid_leaves_nothing(models, tmp_path):
    server = start_server(models, tmp_path)  # its own: stopping the shared one would end it
    try:
        proc = psutil.Process(server.pid)
        children = proc.children(recursive=True)
        assert len(children) >= 5  # one Python-backend stub per model instance
        assert S.shm_regions(server.shm_prefix)
        status = server.stop()
        assert status == 0, server.log_tail(20)
        assert not psutil.pid_exists(server.pid)
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], alive
        assert S.shm_regions(server.shm_prefix) == []
        # only this server's regions (its own prefix): other processes' entries are not ours
        mine = [n for n in os.listdir("/dev/shm") if n.startswith(server.shm_prefix)]
        assert mine == [], mine
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------
# the command


@pytest.mark.parametrize("sig, to_file", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_serve_command_stops_on_a_signal(models, tmp_path, sig, to_file):
    """``vnexport serve model.onnx``: ready report (``--json -``: one JSON line on stdout;
    ``--json FILE``: the text on stdout, the JSON in FILE once ready), an answer; SIGTERM or
    SIGINT (Ctrl-C) -> exit 130 (as every command stopped by a signal, whatever the
    target), the server and its stubs gone."""
    http, grpc, metrics = free_ports()
    json_arg = str(tmp_path / "ready.json") if to_file else "-"
    cmd = [sys.executable, "-m", "vnexport", "serve", str(models["small"][0]), "--json", json_arg,
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        if to_file:
            assert line.startswith("tritonserver (pid ") and "ready" in line, line
            report = json.loads((tmp_path / "ready.json").read_text())
            assert f"(pid {report['pid']})" in line
        else:
            report = json.loads(line)
        assert {m["name"] for m in report["models"]} == {"model", "model_preprocess",
                                                         "model_ensemble"}
        stubs = psutil.Process(report["pid"]).children(recursive=True)
        client = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
        x = np.zeros((1, 3, IMG, IMG), np.float32)
        assert infer(client, httpclient, "model", x).shape == (1, CONFIG.num_classes)
        client.close()
        proc.send_signal(sig)
        assert proc.wait(60) == 130, proc.stderr.read()
        assert "stopped" in proc.stderr.read()
        assert not psutil.pid_exists(report["pid"])
        assert psutil.wait_procs(stubs, timeout=5)[1] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_serve_refuses_what_the_wheel_cannot_load(models, tmp_path):
    """A repository with an onnxruntime_onnx model: exit 3 naming the config, no server."""
    repo = tmp_path / "repo"
    facts = T.read_facts(models["small"][0])
    T.write_repository(repo, T.model_folders(facts, T.ServingOptions(name="ort")))
    r = CliRunner().invoke(app, ["serve", str(repo)])
    assert r.exit_code == 3
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "ort/config.pbtxt" in lines[0] and "onnxruntime_onnx" in lines[0]
    r = CliRunner().invoke(app, ["serve", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "missing: no such file" in r.stderr


def test_a_killed_server_leaves_nothing_after_stop(models, tmp_path):
    """kill -9 of the server leaves its stubs and /dev/shm regions behind (Triton cannot
    clean up); stop() ends the stubs (the process group) and removes the regions with this
    server's prefix. Only this server's prefix is looked at."""
    import signal

    server = start_server({"small": models["small"]}, tmp_path)
    try:
        children = psutil.Process(server.pid).children(recursive=True)
        assert children and S.shm_regions(server.shm_prefix)
        os.kill(server.pid, signal.SIGKILL)
        psutil.Process(server.pid).wait(10)
        server.stop()
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], alive
        mine = [n for n in os.listdir("/dev/shm") if n.startswith(server.shm_prefix)]
        assert mine == [], mine
    finally:
        server.stop()
