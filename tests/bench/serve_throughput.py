"""Serving benchmark (``make bench-serve``; not a test). One run on this machine, loopback only:

1. our scikit-learn predictor alone vs MLServer 1.7.1 + mlserver-sklearn (own venv) in every mode that
   matters on this machine: ``parallel_workers`` 0 (inference on the server's own event loop), 1 (its
   default: one worker process) and 2 (a worker per core), each with adaptive batching off and on — the
   same ``model.joblib``, single-row V2 requests; ours is compared against MLServer's best;
2. our full path (transformer → predictor) vs the stock KServe pattern (plain ``kserve.Model``
   transformer forwarding to a plain ``kserve.Model`` predictor, no batching) with the hop over V2 REST
   JSON and over ``grpc-v2``; ours is compared against the faster, on the same work (ours without its
   request logger: the peer logs nothing) and, beside it, as served (every predictor call logged to the
   drift sidecar, whose process takes its share of the same 2 cores);
3. pneumonia full path images/s vs the raw batched forward pass of the same model on the same device,
   both in steady state (see :func:`bench_pneumonia`; at least ``BENCH_PNEUMONIA_SECONDS``, default 30,
   on a CPU, where one batch takes about a second), and vs the stock KServe peer (a plain ``kserve.Model``
   doing the same decode + forward with as many torch threads, :mod:`stock_kserve_peer`). Both sides take the
   same two request streams: one image per request over twice the batch in connections, and the predictor's
   batch of images per request over two; the target compares each side at its best stream, on the peer's
   work (ours without request logging, like (2)); every stream's own ratio and ours as served (responses
   logged to the drift sidecar) are printed beside.
   On a CPU our predictor serves a frozen channels_last copy of the graph (its ``freeze`` setting) and raw
   runs that graph; two rows beside them show the saved graph's raw forward (what the stock peer runs) and
   the peer given our frozen graph (not stock KServe: a fairness row, reported, not the target).

Load comes from ``wrk`` (the same generator, connections and duration for both sides of a
comparison). Prints a table and ratios; writes ``$CLINOPS_HOME/bench/serve.json``.
Settings: ``BENCH_SECONDS`` (default 10), ``BENCH_CONNECTIONS`` (default 8), ``BENCH_ROUNDS`` (default 2:
ours and the peer alternate, each measured once per round; the table shows the mean and every round),
``BENCH_PNEUMONIA_SAMPLE`` (default 1; 0: (3) on the champion only),
``BENCH_ONLY`` (default ``1,2,3,4``: which comparisons to run; 4 is the explanations' latency,
:mod:`explain_latency`), ``BENCH_TORCH_THREADS`` (torch intra-op
threads of both the raw forward and the predictor in (3); default torch's own, the cores).
(1) and (2) run on the heart-disease champion that ``make run`` promotes when there is one (the model users
serve), and always on the sample gradient-boosting pipeline as a second row; (3) likewise uses the pneumonia
champion bundle when there is one and also reports the sample EfficientNet-B0.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project, and the tests' support package

from support import sample_bundles  # noqa: E402

from bundle import champion, locate, open_bundle  # noqa: E402
from components.common.settings import get_settings  # noqa: E402
from pipelines.local_stack import LocalStack, free_ports, http_ok, s3_config  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
TORCH_THREADS = int(os.environ.get("BENCH_TORCH_THREADS", "0"))  # 0: torch's default (the cores)
# (3) on a CPU: a batch of 32 takes about a second, so a window needs many of them
PNEUMONIA_MIN_SECONDS = int(os.environ.get("BENCH_PNEUMONIA_SECONDS", "30"))
ONLY = {x.strip() for x in os.environ.get("BENCH_ONLY", "1,2,3,4").split(",") if x.strip()}
# uvloop 0.22+ makes MLServer 1.7.1 parallel workers die at start (asyncio.get_event_loop without a loop)
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
ROW = [63.0, 1, 4, 145, 233, 1, 2, 150, 0, 2.3, 3, 0, 6]
FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca",
            "thal"]
WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open("%(body)s", "rb"); wrk.body = f:read("*a"); f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def load1() -> float:
    return os.getloadavg()[0]


# -- load generator -------------------------------------------------------------------------------------
def wrk_files(body: dict, delay_ms: int = 0) -> Path:
    """A folder with the request body and the wrk script that posts it (``body.json``, ``post.lua``);
    ``delay_ms``: each connection waits that long after an answer before its next request (a fixed offered
    rate of about connections × 1000 / delay_ms, instead of as fast as the server answers)."""
    workdir = Path(tempfile.mkdtemp(prefix="clinops-wrk-"))
    (workdir / "body.json").write_text(json.dumps(body))
    script = WRK_SCRIPT % {"body": workdir / "body.json"}
    if delay_ms:
        script += f"delay = function() return {int(delay_ms)} end\n"
    (workdir / "post.lua").write_text(script)
    return workdir


def wrk_result(stdout: str) -> dict:
    """The numbers of the script's ``RESULT`` line: requests, req/s, errors, non-2xx, p50/p99 in ms."""
    line = next(x for x in stdout.splitlines() if x.startswith("RESULT"))
    requests, duration_us, errors, non2xx, p50, p99 = line.split()[1:]
    return {"requests": int(requests), "rps": int(requests) / (int(duration_us) / 1e6), "errors": int(errors),
            "non_2xx": int(non2xx), "p50_ms": float(p50) / 1000, "p99_ms": float(p99) / 1000, "load1": load1()}


def wrk(url: str, body: dict, seconds: int = SECONDS, connections: int = CONNECTIONS, delay_ms: int = 0,
        on_window=None) -> dict:
    """wrk's figures after a 2 s warm-up; ``on_window(True)`` / ``on_window(False)`` just before and after the
    measured run."""
    workdir = wrk_files(body, delay_ms)
    deadline = time.monotonic() + 60  # a 503 while an earlier run's requests are still being answered: retry
    while (status := subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                                     "content-type: application/json", "--data-binary", f"@{workdir / 'body.json'}",
                                     url], capture_output=True, text=True).stdout) == "503" \
            and time.monotonic() < deadline:
        time.sleep(1)
    if status != "200":
        raise RuntimeError(f"{url} answered {status} to the benchmark request")
    subprocess.run(["wrk", "-t1", f"-c{connections}", "-d2s", "-s", str(workdir / "post.lua"), url],
                   capture_output=True, text=True)  # warm-up
    if on_window:
        on_window(True)
    done = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
                           str(workdir / "post.lua"), url], capture_output=True, text=True, timeout=seconds + 60)
    if on_window:
        on_window(False)
    shutil.rmtree(workdir, ignore_errors=True)
    return wrk_result(done.stdout)


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    print("installing wrk (Debian) …", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


# -- processes --------------------------------------------------------------------------------------------
class Proc:
    def __init__(self, argv: list[str], ready_url: str, log: Path, env: dict | None = None, cwd: Path | None = None):
        self.log = open(log, "wb")
        self.popen = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                      cwd=cwd, start_new_session=True)
        deadline = time.monotonic() + 180
        while not http_ok(ready_url):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[:3]} did not become ready; see {log}")
            time.sleep(0.3)

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def mlserver_python() -> Path:
    """MLServer's own venv under $CLINOPS_HOME/bench/venvs/mlserver, (re)installed when its pins change."""
    import sklearn

    venv = get_settings().home / "bench" / "venvs" / "mlserver"
    python = venv / "bin" / "python"
    # the same scikit-learn as the main environment, so that both load the same pickle identically
    wanted = [*MLSERVER, f"scikit-learn=={sklearn.__version__}"]
    marker = venv / "clinops-requirements.txt"
    if not marker.exists() or marker.read_text().split() != wanted:
        print(f"setting up {venv} with {' '.join(wanted)} …", flush=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted], check=True)
        marker.write_text("\n".join(wanted))
    return python


# (parallel_workers, adaptive batching): MLServer 1.7.1's default is one worker process, batching off
MLSERVER_MODES = [(workers, adaptive) for workers in (0, 1, 2) for adaptive in (False, True)]


def mlserver_label(workers: int, adaptive: bool) -> str:
    default = " (default)" if workers == 1 else ""
    return f"MLServer 1.7.1, parallel_workers {workers}{default}, adaptive batching {'on' if adaptive else 'off'}"


def start_mlserver(model_dir: Path, adaptive: bool, logs: Path, workers: int = 1) -> tuple[Proc, str]:
    http_port, grpc_port, metrics_port = free_ports(3)
    repo = Path(tempfile.mkdtemp(prefix="clinops-mlserver-"))
    (repo / "settings.json").write_text(json.dumps({"http_port": http_port, "grpc_port": grpc_port,
                                                    "metrics_port": metrics_port, "debug": False,
                                                    "parallel_workers": workers}))
    model = repo / "heart-disease"
    model.mkdir()
    shutil.copy(model_dir / "model.joblib", model / "model.joblib")
    settings = {"name": "heart-disease", "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"}}
    if adaptive:
        settings.update({"max_batch_size": 64, "max_batch_time": 0.002})
    (model / "model-settings.json").write_text(json.dumps(settings))
    mlserver = mlserver_python().parent / "mlserver"
    url = f"http://127.0.0.1:{http_port}"
    proc = Proc([str(mlserver), "start", str(repo)], f"{url}/v2/models/heart-disease/ready",
                logs / f"mlserver-workers{workers}-{'adaptive' if adaptive else 'plain'}.log")
    return proc, url


# -- bundles ----------------------------------------------------------------------------------------------
def champion_bundle(workload: str, workdir: Path) -> tuple[Path, str] | None:
    """The workload's champion bundle as a local folder (verified), or None when none was promoted."""
    pointer = champion.read(get_settings().bundles, workload, s3_config())
    if pointer is None:
        return None
    folder = locate(pointer.bundle_uri, workload, s3=s3_config(), cache_dir=workdir / f"{workload}-champion")
    open_bundle(folder, workload)
    return folder, f"champion {pointer.bundle_uri}"


def heart_bundles(workdir: Path) -> list[tuple[Path, str]]:
    """The champion first when there is one, then the sample pipeline (always, as the second row)."""
    from components.heart_disease.schema import serving_schema

    found = champion_bundle("heart-disease", workdir)
    sample = sample_bundles.write_heart_disease(workdir / "heart", serving_schema(), estimator="gbm")
    why = "for comparison" if found else "no champion yet"
    return [*([found] if found else []), (sample, f"sample GradientBoosting pipeline ({why})")]


def heart_bundle(workdir: Path) -> tuple[Path, str]:
    found = champion_bundle("heart-disease", workdir)
    if found:
        return found
    from components.heart_disease.schema import serving_schema

    folder = sample_bundles.write_heart_disease(workdir / "heart", serving_schema(), estimator="gbm")
    return folder, "sample GradientBoosting pipeline (no champion yet)"


def pneumonia_bundles(workdir: Path) -> list[tuple[Path, str]]:
    """The champion bundle first when there is one, then the sample model (for comparison; left out with
    ``BENCH_PNEUMONIA_SAMPLE=0`` when there is a champion)."""
    found = champion_bundle("pneumonia", workdir)
    if found and os.environ.get("BENCH_PNEUMONIA_SAMPLE", "1") == "0":
        return [found]
    return [*([found] if found else []), sample_pneumonia_bundle(workdir, "for comparison" if found else "no champion yet")]


def sample_pneumonia_bundle(workdir: Path, why: str) -> tuple[Path, str]:
    import torch
    from torchvision.models import efficientnet_b0

    class WithEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            net = efficientnet_b0(weights=None, num_classes=2)
            self.features, self.pool, self.classifier = net.features, net.avgpool, net.classifier

        def forward(self, x):
            embedding = torch.flatten(self.pool(self.features(x)), 1)
            return self.classifier(embedding), embedding

    folder = sample_bundles.write_pneumonia(workdir / "pneumonia", 224, 224, 3, module=WithEmbedding().eval(),
                                            embedding_dim=1280, variant="efficientnet_b0")
    return folder, f"EfficientNet-B0 224x224 RGB, untrained weights ({why})"


def features_body() -> dict:
    return {"inputs": [{"name": "features", "shape": [1, 13], "datatype": "FP64", "data": ROW}]}


def per_feature_body() -> dict:
    return {"inputs": [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in zip(FEATURES, ROW,
                                                                                              strict=True)]}


# -- the three comparisons --------------------------------------------------------------------------------
def bench_predictors(model_dir: Path, logs: Path) -> dict:
    results = {}
    with LocalStack({"heart-disease": str(model_dir)}, ports="ephemeral", log_dir=logs,
                    drift_dir=logs / "predictor-drift") as stack:
        url = f"{stack.endpoints['heart-disease'].predictor_rest_url}/v2/models/heart-disease/infer"
        results["clinops sklearn predictor"] = wrk(url, features_body())
    body = dict(features_body(), outputs=[{"name": "predict_proba"}])
    for workers, adaptive in MLSERVER_MODES:
        proc, base = start_mlserver(model_dir, adaptive, logs, workers)
        try:
            results[mlserver_label(workers, adaptive)] = wrk(f"{base}/v2/models/heart-disease/infer", body)
        finally:
            proc.stop()
    return results


OURS_FULL = "clinops transformer → predictor"
OURS_FULL_SAME_WORK = "clinops transformer → predictor, no request logging (the peer's work)"


def bench_full_path(model_dir: Path, logs: Path) -> dict:
    """Ours as served (every predictor call logged to the drift sidecar, whose process shares the cores), ours
    without the request logger (the work the stock peer does: it logs nothing), then the stock peer."""
    results = {}
    for label, drift in ((OURS_FULL, True), (OURS_FULL_SAME_WORK, False)):
        with LocalStack({"heart-disease": str(model_dir)}, ports="ephemeral", log_dir=logs, drift=drift,
                        drift_dir=logs / "full-path-drift") as stack:
            results[label] = wrk(stack.endpoints["heart-disease"].infer_url, per_feature_body())
    predictor_port, predictor_grpc, transformer_port = free_ports(3)
    peer = str(Path(__file__).with_name("stock_kserve_peer.py"))
    predictor = Proc([sys.executable, peer, "predictor", "--model_name", "heart-disease", "--model_dir", str(model_dir),
                      "--http_port", str(predictor_port), "--grpc_port", str(predictor_grpc)],
                     f"http://127.0.0.1:{predictor_port}/v2/models/heart-disease/ready", logs / "stock-predictor.log")
    try:
        for protocol, port in (("v2", predictor_port), ("grpc-v2", predictor_grpc)):
            transformer = Proc([sys.executable, peer, "transformer", "--model_name", "heart-disease", "--predictor_host",
                                f"127.0.0.1:{port}", "--predictor_protocol", protocol, "--http_port",
                                str(transformer_port)],
                               f"http://127.0.0.1:{transformer_port}/v2/models/heart-disease/ready",
                               logs / f"stock-transformer-{protocol}.log")
            try:
                results[stock_label(protocol)] = wrk(
                    f"http://127.0.0.1:{transformer_port}/v2/models/heart-disease/infer", per_feature_body())
            finally:
                transformer.stop()
    finally:
        predictor.stop()
    return results


def stock_label(protocol: str) -> str:
    return f"stock KServe transformer → predictor, {'REST JSON' if protocol == 'v2' else 'grpc-v2'} hop"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_forward(module, x, seconds: float, cpu: dict | None = None, prepare=None) -> float:
    """Images/s of back-to-back forward passes of ``x`` (the predictor's batch size and precision);
    ``prepare(x)`` runs before each pass (the predictor's normalisation of UINT8 pixels, so that raw
    pays what the predictor pays); ``cpu`` gets ``images_per_cpu_s`` (this process's CPU time: robust
    to other load on the machine)."""
    import torch

    prepare = prepare or (lambda t: t)

    cpu_start = time.process_time()
    device = x.device
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        module(prepare(x))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            module(prepare(x))
            count += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        if cpu is not None:
            cpu["images_per_cpu_s"] = (count + len(x)) / (time.process_time() - cpu_start)
        return count / elapsed


def scrape(metrics_url: str) -> dict[str, float]:
    """Every sample of a process's ``/metrics``, by its series (name and labels as written there)."""
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def metric_sum(metrics: dict[str, float], name: str, **labels) -> float:
    """The sum of ``name``'s series in a :func:`scrape` that carry every one of ``labels``."""
    return sum(v for k, v in metrics.items() if k.split("{")[0] == name
               and all(f'{a}="{b}"' in k for a, b in labels.items()))


def batch_counts(metrics_url: str) -> tuple[float, float]:
    """(batches, rows) of the process's dynamic batcher so far, from its ``clinops_batch_size`` histogram."""
    values = {series.split("{")[0]: value for series, value in scrape(metrics_url).items()
              if series.startswith("clinops_batch_size_")}
    return values.get("clinops_batch_size_count", 0.0), values.get("clinops_batch_size_sum", 0.0)


def mean_batch(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Mean batch over a window (start-up and warm-up batches excluded)."""
    batches, rows = after[0] - before[0], after[1] - before[1]
    return rows / batches if batches else None


def answered(metrics_url: str, model: str) -> float:
    """Requests the transformer has answered with 200 so far (its ``clinops_requests_total``)."""
    return scrape(metrics_url).get(f'clinops_requests_total{{model="{model}",status="200"}}', 0.0)


def steady_window(count, seconds: float, poll_s: float = 0.1) -> tuple[float, float, float]:
    """Poll ``count()`` for ``seconds`` and return (answers, seconds, rate) between the first and the last
    change seen. Under batching, answers come in bursts (a whole batch at once, about a second apart on
    a CPU): measured from burst to burst, the window holds whole batch intervals only, so the rate is
    the steady state's, not skewed by where the window's edges fall between bursts."""
    samples = [(time.perf_counter(), count())]
    end = samples[0][0] + seconds
    while time.perf_counter() < end:
        time.sleep(poll_s)
        samples.append((time.perf_counter(), count()))
    changes = [samples[i] for i in range(1, len(samples)) if samples[i][1] != samples[i - 1][1]]
    if len(changes) < 2:
        raise RuntimeError(f"fewer than two bursts of answers in {seconds} s: lengthen BENCH_SECONDS")
    (t0, c0), (t1, c1) = changes[0], changes[-1]
    return c1 - c0, t1 - t0, (c1 - c0) / (t1 - t0)


def wrk_steady(url: str, body: dict, connections: int, warmup: float, seconds: float, count, on_window=None) -> dict:
    """One continuous ``wrk`` run: ``warmup`` seconds to fill the pipeline, then the steady-state
    window (:func:`steady_window` over the server's own answer counter), then a short tail so that the
    window never sees the load stop. wrk's own latency percentiles and its request count over the whole
    run (ramp-up included) come along. ``on_window(start: bool)`` runs at the window's edges."""
    workdir = wrk_files(body)
    total = int(warmup + seconds + 3)
    proc = subprocess.Popen(["wrk", "-t1", f"-c{connections}", f"-d{total}s", "--timeout", "30s", "-s",
                             str(workdir / "post.lua"), url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        time.sleep(warmup)
        if on_window:
            on_window(True)
        answers, window_s, rate = steady_window(count, seconds)
        if on_window:
            on_window(False)
        out, _ = proc.communicate(timeout=total + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    run = wrk_result(out)  # over wrk's whole run, ramp-up included
    run["wrk_whole_run_rps"] = run.pop("rps")
    run.update(images_per_s=rate, window_answers=answers, window_s=window_s)
    return run


def bench_pneumonia(model_dir: Path, logs: Path, batch: int = 32) -> dict:
    """Full path vs raw forward, like with like: the same batch size (the predictor's maximum, which
    enough concurrent requests fill: 2 x batch connections, so one batch computes while the next
    queues), precision, device and torch thread count. Both are steady-state rates: raw counts
    back-to-back passes after a warm-up pass; the full path counts the transformer's answers from burst
    to burst inside one continuous load (:func:`wrk_steady`). Raw and full path alternate over
    ``ROUNDS`` rounds with a last raw after them (raw runs while the idle stack is up), so that a change
    in machine load shows in both; the ratio is mean full path over mean raw."""
    import base64
    import io

    import torch
    from PIL import Image

    schema = open_bundle(model_dir, "pneumonia").schema
    image = schema.image
    c, h, w = image.channels, image.height, image.width
    rng = np.random.default_rng(0)
    pixels = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("L" if c == 1 else "RGB").save(buffer, "JPEG", quality=90)
    body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(buffer.getvalue()).decode()]}]}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if TORCH_THREADS:
        torch.set_num_threads(TORCH_THREADS)
    threads = torch.get_num_threads()
    module = torch.jit.load(str(model_dir / "model.pt"), map_location=device).eval()
    # raw runs the graph our predictor serves: on CPU by default the frozen channels_last copy (its freeze
    # setting); the saved graph, what the stock peer runs, has a raw row of its own
    frozen = device.type == "cpu"
    served = torch.jit.freeze(torch.jit.load(str(model_dir / "model.pt"), map_location=device).eval()
                              .to(memory_format=torch.channels_last)) if frozen else module
    # the very tensor the transformer sends for this image (UINT8 pixels), batch x, on the device, and the
    # predictor's own normalisation of it in torch before every pass: the same input, values and work
    from inference.torch_predictor.model import normalise_pixels
    from inference.transformer.pneumonia import PneumoniaCodec
    from inference.transformer.settings import TransformerSettings

    codec = PneumoniaCodec(schema, TransformerSettings(workload="pneumonia"))
    x = torch.from_numpy(np.repeat(codec.encode_files([buffer.getvalue()]), batch, axis=0)).to(device)
    mean = torch.tensor(image.mean, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    std = torch.tensor(image.std, dtype=torch.float32, device=device).reshape(-1, 1, 1)
    seconds = max(SECONDS, PNEUMONIA_MIN_SECONDS) if device.type == "cpu" else SECONDS
    results = {"device": device.type, "torch_threads": threads, "batch": batch, "image": [c, h, w],
               "seconds": seconds,
               "raw_context": "one worker thread, like the predictor's batcher; the transformer's UINT8 tensor, "
                              "normalised in torch before each pass as the predictor does",
               "served_graph": "frozen, channels_last" if frozen else "as saved"}
    raws, saved_raws = [], []
    # the request streams both sides are measured on: one image per request over many connections (what a
    # PACS integration sends) and a whole batch per request over two (the stock peer's best, since it forms
    # no batches itself); each side is compared at its best, and stream by stream
    shapes = request_shapes(batch)
    stock_modes = {f"stock KServe kserve.Model, {shape_label(*shape)}": shape for shape in shapes}
    stocks: dict[str, list[dict]] = {mode: [] for mode in stock_modes}
    peer, peer_url = start_stock_pneumonia(model_dir, image, threads, logs)
    frozen_mode = f"peer given our frozen graph (not stock): kserve.Model, {batch} images/request, 2 connections"
    frozen_peer, frozen_url = start_stock_pneumonia(model_dir, image, threads, logs, freeze=True) if frozen \
        else (contextlib.nullcontext(), None)
    frozen_peers: list[dict] = []
    # every pass of this process on one thread, as the predictor does: a pass on a second thread gives it an
    # OpenMP team of its own, and the first thread's passes then ran on 0.8 cores of 2
    from concurrent.futures import ThreadPoolExecutor

    torch_thread = ThreadPoolExecutor(1, thread_name_prefix="raw-forward")

    def softmax_of_first() -> np.ndarray:
        with torch.inference_mode():  # like with like: the peer answers what the model gives for our pixels
            return torch.softmax(module(normalise_pixels(x[:1], mean, std))[0].float(), dim=1).cpu().numpy()

    expected = torch_thread.submit(softmax_of_first).result()
    # the peer logs nothing: ours also without its request logger and drift sidecar (the embeddings' tests)
    ours = {f"clinops full path, {shape_label(*shape)}": (shape, "served") for shape in shapes}
    ours.update({f"clinops full path, no request logging (the peer's work), {shape_label(*shape)}": (shape, "bare")
                 for shape in shapes})
    fulls: dict[str, list[dict]] = {label: [] for label in ours}
    # the same threads, arranged as each runs best: our predictor on CPU runs as many single-threaded forward
    # passes at once as raw and the peer have torch threads (its forward_workers); the peer answers one request
    # at a time on its event loop (KServe's --workers would spawn processes by pickling the loaded model, and a
    # TorchScript module does not pickle), so its best is all threads in one pass
    threads_args = ["--num_threads", "1", "--forward_workers", str(threads)] if device.type == "cpu" else \
        ["--num_threads", str(threads)]
    results["predictor_threads"] = " ".join(threads_args)
    stack_args = {"ports": "ephemeral",
                  "extra_args": {"pneumonia/predictor": ["--max_batch_size", str(batch), *threads_args],
                                 "pneumonia/transformer": ["--batch_max_size", str(batch)]}}
    with peer, frozen_peer, LocalStack({"pneumonia": str(model_dir)}, log_dir=logs, drift_dir=logs / "pneumonia-drift",
                          **stack_args) as stack, \
            LocalStack({"pneumonia": str(model_dir)}, log_dir=logs / "no-logging", drift=False, **stack_args) as bare:
        check_stock_pneumonia(peer, peer_url, body, expected)
        if frozen_url:
            check_stock_pneumonia(frozen_peer, frozen_url, body, expected)
        # what our predictors really serve (their load check may refuse the frozen copy): raw runs the same
        served_frozen = {serves_frozen_graph(folder / "pneumonia-predictor.log") for folder in (logs, logs / "no-logging")}
        if len(served_frozen) != 1:
            raise RuntimeError(f"the two stacks' predictors serve different graphs; see {logs}")
        if not served_frozen.pop():
            served = module
            results["served_graph"] = "as saved (the predictor's freeze check refused the frozen copy; see its log)"

        def raw(graph=served) -> dict:  # in a worker thread, as the predictor runs its forward passes
            cpu: dict = {}
            images_per_s = torch_thread.submit(raw_forward, graph, x, seconds, cpu,
                                               lambda t: normalise_pixels(t, mean, std)).result()
            return {"images_per_s": images_per_s, "load1": load1(), **cpu}

        stacks = {"served": stack, "bare": bare}
        for _ in range(ROUNDS):
            raws.append(raw())
            for label, ((images, connections), which) in ours.items():
                fulls[label].append(full_path_run(stacks[which], body, batch, seconds, images, connections))
            for mode, (images, connections) in stock_modes.items():
                stocks[mode].append(stock_pneumonia_run(peer, peer_url, body, images, connections, seconds))
            if frozen_url:
                saved_raws.append(raw(module))
                frozen_peers.append(stock_pneumonia_run(frozen_peer, frozen_url, body, batch, 2, seconds))
        raws.append(raw())
    torch_thread.shutdown()
    mean = lambda runs, key: sum(r[key] for r in runs) / len(runs)  # noqa: E731
    for label, runs in fulls.items():
        results[label] = {"images_per_s": mean(runs, "images_per_s"), "load1": mean(runs, "load1"),
                          "images_per_cpu_s": mean(runs, "images_per_cpu_s"),
                          "wrk_whole_run_rps": mean(runs, "wrk_whole_run_rps"),
                          "p50_ms": mean(runs, "p50_ms"), "p99_ms": mean(runs, "p99_ms"),
                          "errors": sum(r["errors"] + r["non_2xx"] for r in runs), "rounds": runs}
        for k in ("transformer", "predictor"):
            values = [r[f"mean_{k}_batch"] for r in runs if r.get(f"mean_{k}_batch")]
            results[label][f"mean_{k}_batch"] = sum(values) / len(values) if values else None
    for mode, runs in stocks.items():
        results[mode] = {key: mean(runs, key) for key in ("images_per_s", "images_per_cpu_s", "load1", "p50_ms",
                                                          "p99_ms")}
        results[mode].update(errors=sum(r["errors"] + r["non_2xx"] for r in runs), rounds=runs)
    results[f"raw forward, batch {batch} on {device.type}"] = {
        "images_per_s": mean(raws, "images_per_s"), "load1": mean(raws, "load1"),
        "images_per_cpu_s": mean(raws, "images_per_cpu_s"), "rounds": raws}
    if frozen_peers:
        results["saved graph's raw forward (what the stock peer runs)"] = {
            key: mean(saved_raws, key) for key in ("images_per_s", "load1", "images_per_cpu_s")}
        results["saved graph's raw forward (what the stock peer runs)"]["rounds"] = saved_raws
        results[frozen_mode] = {key: mean(frozen_peers, key) for key in ("images_per_s", "images_per_cpu_s", "load1",
                                                                         "p50_ms", "p99_ms")}
        results[frozen_mode].update(errors=sum(r["errors"] + r["non_2xx"] for r in frozen_peers), rounds=frozen_peers)
    # each round's full path (one image per request, as served) against the raw runs either side of it
    one_per_request = fulls[f"clinops full path, {shape_label(*shapes[0])}"]
    results["round_ratios"] = [f["images_per_s"] / ((raws[i]["images_per_s"] + raws[i + 1]["images_per_s"]) / 2)
                               for i, f in enumerate(one_per_request)]
    return results


def request_shapes(batch: int) -> list[tuple[int, int]]:
    """(images per request, connections) of the request streams (3) measures every side on."""
    return [(1, 2 * batch), (batch, 2)]


def shape_label(images: int, connections: int) -> str:
    return f"{images} image{'s' if images > 1 else ''}/request, {connections} connections"


def images_body(body: dict, images: int) -> dict:
    """``body`` (one image) as a request of ``images`` copies of it."""
    element = body["inputs"][0]
    return {"inputs": [dict(element, shape=[images], data=element["data"] * images)]}


def full_path_run(stack: LocalStack, body: dict, batch: int, seconds: float, images: int = 1,
                  connections: int | None = None) -> dict:
    """One steady-state window of a pneumonia stack's full path, with ``images`` copies of the image per
    request over ``connections`` (default: twice the batch): images/s, and per CPU-second of its predictor
    and transformer (the load generator's excluded, as in raw), with the mean batch each formed."""
    endpoint = stack.endpoints["pneumonia"]
    urls = {"predictor": f"{endpoint.predictor_rest_url}/metrics", "transformer": f"{endpoint.rest_url}/metrics"}
    pids = [stack.processes[f"pneumonia/{k}"].popen.pid for k in ("predictor", "transformer")]
    marks: dict = {}

    def window(start: bool):
        marks["start" if start else "end"] = {**{k: batch_counts(u) for k, u in urls.items()},
                                              "cpu": sum(cpu_seconds(p) for p in pids)}

    run = wrk_steady(endpoint.infer_url, images_body(body, images), connections or 2 * batch,
                     warmup=max(5.0, seconds / 4), seconds=seconds,
                     count=lambda: answered(urls["transformer"], "pneumonia"), on_window=window)
    run["images_per_s"] *= images  # the transformer counts answered requests
    cpu = marks["end"]["cpu"] - marks["start"]["cpu"]
    run["images_per_cpu_s"] = (marks["end"]["transformer"][1] - marks["start"]["transformer"][1]) / cpu
    for k in urls:
        run[f"mean_{k}_batch"] = mean_batch(marks["start"][k], marks["end"][k])
    return run


def serves_frozen_graph(log: Path) -> bool:
    """Whether the torch predictor that writes ``log`` serves its frozen graph, from its last load line."""
    found = re.findall(r"frozen graph (True|False)", log.read_text(errors="replace"))
    if not found:
        raise RuntimeError(f"no load line in {log}")
    return found[-1] == "True"


def start_stock_pneumonia(model_dir: Path, image, threads: int, logs: Path, freeze: bool = False) -> tuple[Proc, str]:
    """The pneumonia peer (:mod:`stock_kserve_peer`) on the same model, image size and torch threads, and its
    infer URL; ``freeze``: running the frozen graph our predictor serves on CPU (a fairness row)."""
    port = free_ports(1)[0]
    join = lambda values: ",".join(str(v) for v in values)  # noqa: E731
    peer = str(Path(__file__).with_name("stock_kserve_peer.py"))
    proc = Proc([sys.executable, peer, "pneumonia", "--model_name", "pneumonia", "--model_dir", str(model_dir),
                 "--image", join([image.channels, image.height, image.width]), "--mean", join(image.mean),
                 "--std", join(image.std), "--num_threads", str(threads), "--http_port", str(port),
                 *(["--freeze"] if freeze else [])],
                f"http://127.0.0.1:{port}/v2/models/pneumonia/ready",
                logs / f"stock-pneumonia{'-frozen' if freeze else ''}.log")
    return proc, f"http://127.0.0.1:{port}/v2/models/pneumonia/infer"


def check_stock_pneumonia(peer: Proc, url: str, body: dict, expected: np.ndarray) -> None:
    """The peer's answer for ``body`` is the model's softmax on the pixels our transformer decodes."""
    import urllib.request

    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        got = np.asarray(json.load(answer)["outputs"][0]["data"], dtype=np.float32).reshape(expected.shape)
    if not np.allclose(got, expected, atol=1e-4):
        peer.stop()
        raise RuntimeError(f"the stock KServe peer answers {got.tolist()}, the model {expected.tolist()}: "
                           f"not the same work")


def stock_pneumonia_run(peer: Proc, url: str, body: dict, images: int, connections: int, seconds: float) -> dict:
    """The peer's images/s (requests of ``images`` copies of the image) and images per CPU-second of its process."""
    marks = {}
    run = wrk(url, images_body(body, images), seconds=int(seconds),
              connections=connections, on_window=lambda start: marks.__setitem__(start, cpu_seconds(peer.popen.pid)))
    run["images_per_s"] = run["rps"] * images
    run["images_per_cpu_s"] = run["requests"] * images / (marks[False] - marks[True])
    return run


def versus_best(section: dict, ours: str, peer_prefix: str) -> tuple[dict, dict, dict]:
    """Our summary, the peers' summaries, and the fastest peer's (by req/s) in one comparison."""
    peers = {k: v for k, v in section.items() if k.startswith(peer_prefix)}
    return section[ours], peers, peers[max(peers, key=lambda k: peers[k]["rps"])]


def heart_ratios(one: dict, two: dict, prefix: str) -> dict:
    """Ours over the peer's best configuration (by req/s), and our p99 over every configuration's."""
    ratios = {}
    if one:
        ours, peers, best = versus_best(one, "clinops sklearn predictor", "MLServer")
        ratios[f"1_{prefix}predictor_vs_best_mlserver_rps"] = ours["rps"] / best["rps"]
        ratios[f"1_{prefix}p99_ours_over_best_mlserver"] = ours["p99_ms"] / best["p99_ms"]
        for name, peer in peers.items():  # the p99 against every MLServer configuration, not only the fastest
            mode = name.split(", ", 1)[1].replace(" (default)", "").replace(", ", "_").replace(" ", "_")
            ratios[f"1_{prefix}p99_ours_over_mlserver_{mode}"] = ours["p99_ms"] / peer["p99_ms"]
    if two:
        ours, _, best = versus_best(two, OURS_FULL_SAME_WORK, "stock KServe")
        ratios[f"2_{prefix}full_path_vs_best_stock_kserve_rps"] = ours["rps"] / best["rps"]
        ratios[f"2_{prefix}p99_ours_over_best_stock"] = ours["p99_ms"] / best["p99_ms"]
        logged = two[OURS_FULL]  # what the drift sidecar costs on these shared cores, beside the peer's figures
        ratios[f"2_{prefix}full_path_with_request_logging_vs_best_stock_kserve_rps"] = logged["rps"] / best["rps"]
        ratios[f"2_{prefix}p99_with_request_logging_over_best_stock"] = logged["p99_ms"] / best["p99_ms"]
    return ratios


def pneumonia_ratios(three: dict, prefix: str) -> dict:
    """(3)'s ratios: each side at its best request stream (the target), stream by stream, and the one-image
    path against raw forward. "Same work": ours without request logging, as the peer logs nothing."""
    shapes = request_shapes(three["batch"])
    ours = {shape: three[f"clinops full path, {shape_label(*shape)}"] for shape in shapes}
    bare = {shape: three[f"clinops full path, no request logging (the peer's work), {shape_label(*shape)}"]
            for shape in shapes}
    stock = {shape: three[f"stock KServe kserve.Model, {shape_label(*shape)}"] for shape in shapes}
    best = lambda runs: max(r["images_per_s"] for r in runs.values())  # noqa: E731
    raw = three[f"raw forward, batch {three['batch']} on {three['device']}"]
    one = ours[shapes[0]]
    ratios = {f"{prefix}full_path_over_raw_forward": one["images_per_s"] / raw["images_per_s"],
              f"{prefix}full_path_over_raw_per_cpu_second": one["images_per_cpu_s"] / raw["images_per_cpu_s"],
              f"{prefix}best_full_path_same_work_over_best_stock_kserve": best(bare) / best(stock),
              f"{prefix}best_full_path_as_served_over_best_stock_kserve": best(ours) / best(stock)}
    for shape in shapes:
        ratios[f"{prefix}same_work_{shape[0]}_per_request_over_stock_{shape[0]}_per_request"] = (
            bare[shape]["images_per_s"] / stock[shape]["images_per_s"])
    ratios[f"{prefix}same_work_1_per_request_over_best_stock_kserve"] = (
        bare[shapes[0]]["images_per_s"] / best(stock))
    frozen_peer = next((v for k, v in three.items() if k.startswith("peer given our frozen graph")), None)
    if frozen_peer:  # reported beside the target, not the target (the peer runs what we serve)
        ratios[f"{prefix}best_full_path_same_work_over_peer_with_our_graph"] = (
            best(bare) / frozen_peer["images_per_s"])
    return ratios


def print_heart_table(source: str, one: dict, two: dict) -> None:
    if not (one or two):
        return
    print(f"\nheart-disease: {source}")
    print("{:<72} {:>8} {:>8} {:>8} {:>7} {:>5}".format("configuration (mean of rounds)", "req/s", "p50 ms", "p99 ms",
                                                       "errors", "load"))
    for section in (one, two):
        peers = {k: v["rps"] for k, v in section.items() if not k.startswith("clinops")}
        best = max(peers, key=peers.get) if peers else None
        for name, r in section.items():
            print(f"{name + (' *best peer' if name == best else ''):<72} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>7} "
                  f"{r['load1']:>5.2f}")
            rps = [run["rps"] for run in r["rounds"]]
            for i, run in enumerate(r["rounds"], 1):
                print(f"{'  round ' + str(i):<72} {run['rps']:>8.0f} {run['p50_ms']:>8.2f} {run['p99_ms']:>8.2f} "
                      f"{run['errors'] + run['non_2xx']:>7} {run['load1']:>5.2f}")
            if len(rps) > 1:
                print(f"{'  spread of req/s over rounds':<72} {min(rps):>8.0f} … {max(rps):.0f}")


def summarise(runs: list[dict]) -> dict:
    """Mean over rounds of each measure, with the rounds themselves."""
    keys = ("rps", "p50_ms", "p99_ms", "load1")
    summary = {k: sum(r[k] for r in runs) / len(runs) for k in keys}
    summary["errors"] = sum(r["errors"] + r["non_2xx"] for r in runs)
    summary["rounds"] = runs
    return summary


def main() -> int:
    """Scratch (bundles, wrk files, MLServer model repositories) goes with the run; the logs stay under
    ``$CLINOPS_HOME/bench/logs`` for a look afterwards, replaced by the next run."""
    ensure_wrk()
    logs = get_settings().home / "bench" / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="clinops-bench-") as scratch:
        tempfile.tempdir = scratch  # this process's every mkdtemp lands inside and is removed with it
        try:
            return run(Path(scratch), logs)
        finally:
            tempfile.tempdir = None


def progress(where: str, name: str, r: dict) -> None:
    """One line per measurement as it lands: the whole run takes a quarter of an hour."""
    print(f"  {where}: {name}: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms", flush=True)


def run(workdir: Path, logs: Path) -> int:
    hearts = heart_bundles(workdir)
    heart = hearts[0][0]
    pneumonias = pneumonia_bundles(workdir) if "3" in ONLY else []
    print(f"heart-disease models: {'; '.join(s for _, s in hearts)}\n"
          f"pneumonia models: {'; '.join(s for _, s in pneumonias) or '-'}\n"
          f"wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, single-row requests, loopback, {ROUNDS} interleaved rounds; "
          f"comparisons {','.join(sorted(ONLY))}; load now {load1():.2f}; logs in {logs}", flush=True)
    ones, twos = {}, {}  # per heart-disease model: configuration -> summary over rounds
    for folder, source in hearts:
        rounds_one, rounds_two = {}, {}
        for round_ in range(1, ROUNDS + 1):  # ours and the peers alternate, so that a change in load hits both
            if "1" in ONLY:
                for name, r in bench_predictors(folder, logs).items():
                    rounds_one.setdefault(name, []).append(r)
                    progress(f"(1) {source.split(';')[0]}, round {round_}/{ROUNDS}", name, r)
            if "2" in ONLY:
                for name, r in bench_full_path(folder, logs).items():
                    rounds_two.setdefault(name, []).append(r)
                    progress(f"(2) {source.split(';')[0]}, round {round_}/{ROUNDS}", name, r)
        ones[source] = {name: summarise(runs) for name, runs in rounds_one.items()}
        twos[source] = {name: summarise(runs) for name, runs in rounds_two.items()}
    one, two = ones[hearts[0][1]], twos[hearts[0][1]]
    threes = {source: bench_pneumonia(folder, logs) for folder, source in pneumonias}
    explained = {}
    if "4" in ONLY:
        import explain_latency

        champion_xray = champion_bundle("pneumonia", workdir)
        explained = explain_latency.bench_explain(heart, champion_xray[0] if champion_xray else None, logs, ROW,
                                                  FEATURES)

    ratios = {}
    for i, (_, source) in enumerate(hearts):
        ratios.update(heart_ratios(ones[source], twos[source], "" if i == 0 else "sample_model_"))
    for i, three in enumerate(threes.values()):
        ratios.update(pneumonia_ratios(three, "3_" if i == 0 else "3_sample_model_"))
    for _, source in hearts:
        print_heart_table(source, ones[source], twos[source])
    for source, three in threes.items():
        print(f"\npneumonia: {source}; image {three['image']}, batch {three['batch']}, {three['device']}, "
              f"torch threads {three['torch_threads']} (raw forward and stock peer; predictor "
              f"{three['predictor_threads']}), served graph {three['served_graph']}")
        for name, r in three.items():
            if isinstance(r, dict) and "images_per_s" in r:
                extra = "".join(f", mean {k} batch {r[f'mean_{k}_batch']:.1f}" for k in ("transformer", "predictor")
                                if r.get(f"mean_{k}_batch"))
                load = f", load {r['load1']:.2f}" if "load1" in r else ""
                print(f"  {name:<46} {r['images_per_s']:>10.1f} images/s{extra}{load}")
                print(f"  {'':<46} {r['images_per_cpu_s']:>10.2f} images per CPU-second")
                for i, run in enumerate(r.get("rounds", []), 1):
                    whole = (f", wrk over its whole run {run['wrk_whole_run_rps']:.1f}/s" if "wrk_whole_run_rps" in run
                             else "") + (f", p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms" if "p99_ms" in run
                                         else "")
                    print(f"  {'  run ' + str(i):<46} {run['images_per_s']:>10.1f} images/s, "
                          f"{run['images_per_cpu_s']:.2f} per CPU-s, load {run['load1']:.2f}{whole}")
        print("  full path / adjacent raw, per round: " + ", ".join(f"{v:.2f}" for v in three["round_ratios"]))
    if explained:
        import explain_latency

        explain_latency.report(explained)
    print("\nratios (targets: 1 ≥ 1.5 on the champion and ≥ 2.0 on the sample model, 2 ≥ 2.0 on the peer's work "
          "(no request logging; the figure with ours logging every call to its drift sidecar on the same cores is "
          "beside it), each with the p99 ratio ≤ 1.0; 3 ≥ 0.80 over raw forward and ≥ 1.5 over the best stock "
          "KServe peer, each side at its best of the same request streams and on the same work)")
    for name, value in ratios.items():
        print(f"  {name:<60} {value:.2f}")
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "load": {"generator": "wrk", "connections": CONNECTIONS, "seconds": SECONDS, "rounds": ROUNDS,
                       "comparisons": sorted(ONLY)},
              "models": {"heart-disease": [s for _, s in hearts], "pneumonia": [s for _, s in pneumonias]},
              "predictor_vs_mlserver": one, "full_path_vs_stock_kserve": two,
              "heart_by_model": {source: {"predictor_vs_mlserver": ones[source], "full_path_vs_stock_kserve": twos[source]}
                                 for _, source in hearts},
              "pneumonia_vs_raw_forward": next(iter(threes.values()), {}), "pneumonia_by_model": threes,
              "explanations": explained, "ratios": ratios, "finished_at": time.time()}
    out = get_settings().home / "bench" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
