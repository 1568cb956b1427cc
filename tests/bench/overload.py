"""Overload benchmark (``make bench-overload``; not a test). One run on this machine, loopback only.

For each workload (heart-disease: the champion bundle when ``$CLINOPS_HOME`` has one, else the sample
gradient-boosting pipeline; pneumonia: the champion, else the sample EfficientNet-B0, as ``make bench-serve``
picks them) a local stack (transformer, predictor, drift sidecar) starts on ephemeral loopback ports, its
processes on core 0 and the load generators (wrk, the sender) on the other cores, as when clients call a server
from machines of their own (``BENCH_OVERLOAD_PIN=0``: all share every core, and the sender, reniced ahead of
the stack, then takes its CPU: on 2 cores that, not the server, decides the accepted tail), then:

1. unloaded: ``wrk`` (8 connections for heart-disease, 128 for pneumonia) gives the capacity (req/s) and the
   unloaded p99;
2. overload: ``BENCH_OVERLOAD_FACTOR`` (10) times that capacity is offered for ``BENCH_OVERLOAD_SECONDS``
   (60) by an open-loop sender (:func:`send`: a request leaves at its scheduled time whatever the server
   has not answered yet, on an idle keep-alive connection or a new one; wrk keeps one request per
   connection, so it cannot offer more than the server answers). It runs in a process of its own (asyncio
   on uvloop, hand-written HTTP/1.1) and reports whether it kept time: requests sent against scheduled, and
   how late they left, and how late its own loop wakes (an answer waits that long in its socket, so that much of
   each latency it measures is the client's);
3. after: whether the stack answers one request normally (200, the workload's outputs, one value each)
   within 1 s of the last scheduled send, and the RSS and open descriptors of every stack process before
   and after (``/proc``).

Targets: accepted requests' p99 within 2x the unloaded p99; no 5xx other than 503; no connection errors
(refused, reset, timed out); a normal answer within 1 s after the load stops; RSS after within 1.5x
before. A missed target is printed as MISS; the run still exits 0.

Settings: ``BENCH_OVERLOAD_SECONDS`` (60), ``BENCH_OVERLOAD_FACTOR`` (10), ``BENCH_OVERLOAD_CAPACITY_SECONDS``
(10: heart-disease's wrk run), ``BENCH_OVERLOAD_IMAGE_CAPACITY_SECONDS`` (30: pneumonia's, whose batches take
a second or more on a CPU), ``BENCH_OVERLOAD_CONNECTIONS`` (8: wrk connections for heart-disease's capacity),
``BENCH_OVERLOAD_IMAGE_CONNECTIONS`` (128: pneumonia's, twice the transformer's batch),
``BENCH_OVERLOAD_WORKLOADS`` (``heart-disease,pneumonia``), ``BENCH_OVERLOAD_PIN`` (1: the placement above), ``BENCH_OVERLOAD_MAX_CONNECTIONS`` (8000:
connections the sender may hold open; a request due when all are busy is counted as unsent),
``BENCH_OVERLOAD_TIMEOUT`` (30 s per request), ``BENCH_OVERLOAD_INTERVAL`` (10 s: rows of the series),
``BENCH_OVERLOAD_MAX_IN_FLIGHT_ROWS`` / ``BENCH_OVERLOAD_MAX_IN_FLIGHT_PIXELS`` (unset: the runtimes'
defaults; else passed to both transformer and predictor as ``--max_in_flight_rows`` / ``--max_in_flight_pixels``),
``BENCH_OVERLOAD_MAX_IN_FLIGHT_REQUESTS`` (auto: the capacity is measured on a first stack, and the overload runs
on a second one whose transformer's ``--max_in_flight_requests`` is :func:`request_bound` of it; ``default``: the
runtime's; or a number).
Writes ``$CLINOPS_HOME/bench/overload.json``; logs in ``$CLINOPS_HOME/bench/logs/overload``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter, deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

SECONDS = int(os.environ.get("BENCH_OVERLOAD_SECONDS", "60"))
FACTOR = float(os.environ.get("BENCH_OVERLOAD_FACTOR", "10"))
# wrk's window must hold many answers: a pneumonia batch on a CPU takes a second or more
CAPACITY_SECONDS = {"heart-disease": int(os.environ.get("BENCH_OVERLOAD_CAPACITY_SECONDS", "10")),
                    "pneumonia": int(os.environ.get("BENCH_OVERLOAD_IMAGE_CAPACITY_SECONDS", "30"))}
WARMUP_S = {"heart-disease": 0, "pneumonia": 10}
# pneumonia: twice the transformer's batch (64), so that one full batch computes while the next fills
CONNECTIONS = {"heart-disease": int(os.environ.get("BENCH_OVERLOAD_CONNECTIONS", "8")),
               "pneumonia": int(os.environ.get("BENCH_OVERLOAD_IMAGE_CONNECTIONS", "128"))}
WORKLOADS = [w.strip() for w in os.environ.get("BENCH_OVERLOAD_WORKLOADS", "heart-disease,pneumonia").split(",")
             if w.strip()]
MAX_CONNECTIONS = int(os.environ.get("BENCH_OVERLOAD_MAX_CONNECTIONS", "8000"))
TIMEOUT_S = float(os.environ.get("BENCH_OVERLOAD_TIMEOUT", "30"))
INTERVAL_S = float(os.environ.get("BENCH_OVERLOAD_INTERVAL", "10"))
# auto: capacity (req/s) x unloaded p50 (s), measured on a first stack, for the transformer; default: the
# runtimes' own bound; a number: that bound
MAX_IN_FLIGHT_REQUESTS = os.environ.get("BENCH_OVERLOAD_MAX_IN_FLIGHT_REQUESTS", "auto")
MAX_IN_FLIGHT = {"heart-disease": ("--max_in_flight_rows", os.environ.get("BENCH_OVERLOAD_MAX_IN_FLIGHT_ROWS")),
                 "pneumonia": ("--max_in_flight_pixels", os.environ.get("BENCH_OVERLOAD_MAX_IN_FLIGHT_PIXELS"))}
TARGET_P99_RATIO = 2.0
TARGET_RECOVERY_S = 1.0
TARGET_RSS_RATIO = 1.5
SETTLE_S = 5.0  # after the sender's exit, before usage is read again
PROBE_WINDOW_S = 10.0  # how long after the load stops the recovery probe keeps trying
OUTPUTS = {"heart-disease": {"probability", "prediction", "risk_level"}, "pneumonia": {"probability", "label"}}
MAX_SEND_LAG_P99_MS = 50.0  # the sender kept time: 99% of what was due sent, 99% of it no later than this
# the stack on core 0, the load generators (wrk, the sender) and this process on the others, as when clients
# call a server from machines of their own: what is measured is the server, not which of them the scheduler
# favoured; 0: everything shares every core
PIN = os.environ.get("BENCH_OVERLOAD_PIN", "1") != "0" and len(os.sched_getaffinity(0)) >= 2
ALL_CORES = sorted(os.sched_getaffinity(0))
STACK_CORES = set(ALL_CORES[:1]) if PIN else set(ALL_CORES)
LOAD_CORES = set(ALL_CORES[1:]) if PIN else set(ALL_CORES)
LOOP_TICK_S = 0.005  # the sender's loop-lag watch: how often it sleeps
IDLE_REUSE_S = 3.0  # idle keep-alive connections older than this are closed, not reused (uvicorn closes at 5 s)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def load1() -> float:
    return os.getloadavg()[0]


# -- the open-loop sender (runs in its own process: ``overload.py --send CONFIG``) ------------------------
class Tally:
    """What came back for requests completed in one span of time."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.statuses: Counter = Counter()
        self.error_kinds: Counter = Counter()  # read errors by exception
        self.ok_s = array("d")  # latency of 200s, from the moment the request left (connect included)
        self.shed_s = array("d")  # latency of 503s
        self.lag_s = array("d")  # how late requests left against their schedule
        self.loop_lag_s = array("d")  # how late the sender's own event loop woke from a short sleep

    def summary(self) -> dict:
        def pct(values, q):
            return float(np.percentile(np.frombuffer(values, dtype=np.float64), q)) * 1000 if len(values) else None

        return {**{k: self.counts.get(k, 0) for k in ("sent", "ok", "shed", "shed_without_retry_after", "bad_200",
                                                       "other_5xx", "other_status", "connect_errors", "read_errors",
                                                       "timeouts", "unsent", "stale_retries")},
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "read_error_kinds": dict(self.error_kinds),
                "ok_p50_ms": pct(self.ok_s, 50), "ok_p99_ms": pct(self.ok_s, 99),
                "shed_p50_ms": pct(self.shed_s, 50), "shed_p99_ms": pct(self.shed_s, 99),
                "send_lag_p99_ms": pct(self.lag_s, 99),
                "send_lag_max_ms": max(self.lag_s) * 1000 if len(self.lag_s) else None,
                "loop_lag_p99_ms": pct(self.loop_lag_s, 99)}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        for _ in range(100_000):  # bounded: a response of more chunks than this is a broken server
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        return status, headers, b"".join(chunks)
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


async def send(config: dict) -> None:
    """Offer ``rate`` requests/s from ``t0`` (the system's monotonic clock) for ``seconds``, whatever comes
    back; print a JSON line per ``interval`` (requests completed in it), one when sending stops, one at the end."""
    loop = asyncio.get_running_loop()
    host, port, rate = config["host"], config["port"], config["rate"]
    body = Path(config["body_file"]).read_bytes()
    request = (f"POST {config['path']} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    t0, seconds, interval, timeout = config["t0"], config["seconds"], config["interval"], config["timeout"]
    max_connections = config["max_connections"]
    idle: deque = deque()  # (reader, writer, idle since): last in, first out, so that cold ones age out
    state = {"open": 0, "peak_open": 0, "in_flight": 0, "peak_in_flight": 0}
    total, current = Tally(), [Tally()]

    def emit(event: str, **fields) -> None:
        sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
        sys.stdout.flush()

    def count(key: str, n: int = 1) -> None:
        total.counts[key] += n
        current[0].counts[key] += n

    def close(writer) -> None:
        state["open"] -= 1
        writer.close()

    async def connection():
        while idle:
            reader, writer, since = idle.pop()
            if loop.time() - since < IDLE_REUSE_S and not reader.at_eof():
                return reader, writer, True
            close(writer)
        if state["open"] >= max_connections:
            return None
        state["open"] += 1
        state["peak_open"] = max(state["peak_open"], state["open"])
        try:
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        except OSError:
            state["open"] -= 1
            raise
        return reader, writer, False

    async def one(scheduled: float) -> None:
        started = time.monotonic()  # the clock itself: uvloop's loop.time() is cached per loop turn, in ms
        for tally in (total, current[0]):
            tally.lag_s.append(started - scheduled)
        state["in_flight"] += 1
        state["peak_in_flight"] = max(state["peak_in_flight"], state["in_flight"])
        holding = None  # the writer of the connection this request has, until it is closed or given back
        try:
            async with asyncio.timeout(timeout):
                for attempt in range(2):  # a second try only for a reused connection the server had just closed
                    try:
                        got = await connection()
                    except OSError:
                        count("connect_errors")
                        return
                    if got is None:
                        count("unsent")
                        return
                    reader, holding, reused = got
                    try:
                        holding.write(request)
                        status, headers, answer = await read_response(reader)
                        break
                    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
                        close(holding)
                        holding = None
                        stale = reused and attempt == 0 and (
                            isinstance(e, ConnectionResetError | BrokenPipeError)
                            or (isinstance(e, asyncio.IncompleteReadError) and not e.partial))
                        if not stale:
                            count("read_errors")
                            for tally in (total, current[0]):
                                tally.error_kinds[type(e).__name__] += 1
                            return
                        count("stale_retries")
                else:
                    return
        except TimeoutError:
            if holding is not None:
                close(holding)
            count("timeouts")
            return
        finally:
            state["in_flight"] -= 1
        took = time.monotonic() - started
        for tally in (total, current[0]):
            tally.statuses[status] += 1
        if status == 200:
            count("ok" if b'"outputs"' in answer else "bad_200")
            for tally in (total, current[0]):
                tally.ok_s.append(took)
        elif status == 503:
            count("shed")
            if "retry-after" not in headers:
                count("shed_without_retry_after")
            for tally in (total, current[0]):
                tally.shed_s.append(took)
        elif status >= 500:
            count("other_5xx")
        else:
            count("other_status")
        if headers.get("connection", "").lower() == "close":
            close(holding)
        else:
            idle.append((reader, holding, loop.time()))

    async def intervals() -> None:
        k = 1
        while True:
            await asyncio.sleep(max(0.0, t0 + k * interval - time.monotonic()))
            done, current[0] = current[0], Tally()
            emit("interval", index=k - 1, end_s=k * interval, open=state["open"], in_flight=state["in_flight"],
                 **done.summary())
            k += 1

    async def loop_lag() -> None:  # an answer waits about this long in its socket before this loop reads it
        while True:
            due = time.monotonic() + LOOP_TICK_S
            await asyncio.sleep(LOOP_TICK_S)
            for tally in (total, current[0]):
                tally.loop_lag_s.append(max(0.0, time.monotonic() - due))

    reporter = asyncio.create_task(intervals())
    lag_watch = asyncio.create_task(loop_lag())
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    tasks: set = set()
    sent, end = 0, t0 + seconds
    while (now := time.monotonic()) < end:  # bounded by the clock
        due = min(int((now - t0) * rate) + 1, int(seconds * rate))  # requests 0 … due-1 are scheduled by now
        while sent < due:
            task = asyncio.create_task(one(t0 + sent / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            count("sent")
        await asyncio.sleep(0.001)
    emit("stopped", scheduled=int(seconds * rate), sent=sent, open=state["open"], in_flight=state["in_flight"])
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout + 1)  # each request is bounded by its timeout
    reporter.cancel()
    lag_watch.cancel()
    drain = current[0].summary()
    for task in list(tasks):
        task.cancel()
    for _reader, writer, _since in idle:
        writer.close()
    emit("done", rate=rate, seconds=seconds, drain=drain, peak_open=state["peak_open"],
         peak_in_flight=state["peak_in_flight"], cpu_s=time.process_time(), **total.summary())


def sender_main(config_json: str) -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:  # ahead of the stack it overloads, so that what it offers keeps to the schedule (root only)
        os.nice(-5)
    except OSError:
        pass
    config = json.loads(config_json)
    config["max_connections"] = min(config["max_connections"], hard - 64)
    try:
        import uvloop

        uvloop.run(send(config))
    except ImportError:
        asyncio.run(send(config))
    return 0


class Sender:
    """The sender as a child process; its JSON lines are read on a thread of ours, in order."""

    def __init__(self, url: str, body: dict, rate: float, seconds: float, interval: float, t0: float,
                 workdir: Path, on_line=None):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        body_file = workdir / f"body-{parts.port}.json"
        body_file.write_text(json.dumps(body))
        config = {"host": parts.hostname, "port": parts.port, "path": parts.path, "body_file": str(body_file),
                  "rate": rate, "seconds": seconds, "interval": interval, "t0": t0, "timeout": TIMEOUT_S,
                  "max_connections": MAX_CONNECTIONS}
        self.lines: list[dict] = []
        self.on_line = on_line
        self.stopped = threading.Event()
        self.deadline = t0 + seconds + TIMEOUT_S + 30
        self.errors = open(workdir / f"sender-{parts.port}.err", "w+")
        self.popen = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--send", json.dumps(config)],
                                      stdout=subprocess.PIPE, stderr=self.errors, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:  # ends when the sender exits (its life is bounded by its deadline)
            record = json.loads(line)
            self.lines.append(record)
            if record["event"] == "stopped":
                self.stopped.set()
            if self.on_line:
                self.on_line(record)

    def result(self) -> dict:
        try:
            self.popen.wait(max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.reader.join(10)
        self.stopped.set()
        done = next((x for x in self.lines if x["event"] == "done"), None)
        if done is None:
            raise RuntimeError(f"the sender ended without a result (rc {self.popen.returncode}): "
                               f"{Path(self.errors.name).read_text()[-2000:]}")
        return {**done, "series": [x for x in self.lines if x["event"] == "interval"],
                "stopped": next(x for x in self.lines if x["event"] == "stopped")}


# -- the stack's processes ------------------------------------------------------------------------------------
@contextlib.contextmanager
def on_stack_cores(stack):
    """Enter ``stack`` (its processes start) with this process on the stack's cores, which they inherit; then
    back on the load generators' cores."""
    with contextlib.ExitStack() as exits:
        os.sched_setaffinity(0, STACK_CORES)
        try:
            entered = exits.enter_context(stack)
        finally:
            os.sched_setaffinity(0, LOAD_CORES)
        yield entered


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo and len(found) < 256:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text().split()
                found.extend(int(c) for c in children)
                todo.extend(int(c) for c in children)
        except OSError:
            continue
    return found


def usage(pid: int) -> dict | None:
    """RSS (MiB), open file descriptors and CPU seconds used so far (user + system) of one process, or None once
    it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()  # after the command's name
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        return {"rss_mib": rss_kib / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": cpu_s}
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def stack_usage(stack) -> dict:
    """Every stack process (and whatever it started) by name: RSS in MiB, open descriptors, CPU seconds, and
    ``t``, the monotonic time of reading (CPU seconds over a time difference give a share of a core)."""
    out, t = {}, time.monotonic()
    for key, process in stack.processes.items():
        for pid in [process.popen.pid, *descendants(process.popen.pid)]:
            got = usage(pid)
            name = key if pid == process.popen.pid else f"{key} child {pid}"
            out[name] = {"pid": pid, "t": t, **(got or {"rss_mib": None, "fds": None, "cpu_s": None, "gone": True})}
    return out


def shed_counts(stack, workload: str) -> dict:
    """``clinops_shed_total`` as each of the workload's transformer and predictor counts it."""
    endpoint = stack.endpoints[workload]
    out = {}
    for name, base in (("transformer", endpoint.rest_url), ("predictor", endpoint.predictor_rest_url)):
        try:
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
                text = response.read().decode()
            out[name] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                            if line.startswith("clinops_shed_total{"))
        except (OSError, ValueError):
            out[name] = None
    return out


# -- requests ------------------------------------------------------------------------------------------------
def image_body(folder: Path) -> dict:
    """One JPEG of the bundle's input size (random pixels), base64 in V2 JSON."""
    from PIL import Image

    from bundle import open_bundle

    image = open_bundle(folder, "pneumonia").schema.image
    pixels = (np.random.default_rng(0).random((image.height, image.width, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert("L" if image.channels == 1 else "RGB").save(buffer, "JPEG", quality=90)
    return {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                        "data": [base64.b64encode(buffer.getvalue()).decode()]}]}


def bundles(workdir: Path, workloads: list[str]) -> dict[str, tuple[Path, str]]:
    """The champion of each workload when there is one, else its sample model (as ``make bench-serve``)."""
    from serve_throughput import champion_bundle, heart_bundle, sample_pneumonia_bundle

    out = {}
    if "heart-disease" in workloads:
        out["heart-disease"] = heart_bundle(workdir)
    if "pneumonia" in workloads:
        out["pneumonia"] = champion_bundle("pneumonia", workdir) or sample_pneumonia_bundle(workdir, "no champion yet")
    return out


def request_body(workload: str, folder: Path) -> dict:
    from serve_throughput import per_feature_body

    return per_feature_body() if workload == "heart-disease" else image_body(folder)


def normal_answer(url: str, body: bytes, workload: str, timeout: float = 1.0) -> tuple[bool, str]:
    """One request on a fresh connection: (200 with the workload's outputs, one value each; what came back)."""
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return False, type(e).__name__
    outputs = {o.get("name"): o for o in answer.get("outputs", [])}
    if set(outputs) != OUTPUTS[workload] or any(len(o.get("data") or []) != 1 for o in outputs.values()):
        return False, f"200 with outputs {sorted(outputs)}"
    return True, "200"


def recovery(url: str, body: dict, workload: str, stopped_at: float) -> dict:
    """From the moment the load stopped: probe on fresh connections until one normal answer (bounded)."""
    data = json.dumps(body).encode()
    probes = []
    for _ in range(int(PROBE_WINDOW_S / 0.05)):
        if time.monotonic() - stopped_at > PROBE_WINDOW_S:
            break
        ok, what = normal_answer(url, data, workload)
        answered = time.monotonic() - stopped_at
        probes.append([round(answered, 3), what])
        if ok:
            return {"normal_after_s": answered, "probes": probes}
        time.sleep(0.05)
    return {"normal_after_s": None, "probes": probes}


def request_bound(base: dict) -> int | None:
    """The transformer's ``--max_in_flight_requests`` for the overload: the requests in flight at capacity
    (Little's law: capacity x the unloaded median latency), never fewer than wrk's connections, which reached that
    capacity; a larger bound adds only queueing. None: the runtime's default."""
    if MAX_IN_FLIGHT_REQUESTS == "default":
        return None
    if MAX_IN_FLIGHT_REQUESTS != "auto":
        return int(MAX_IN_FLIGHT_REQUESTS)
    return max(base["connections"], math.ceil(base["rps"] * base["p50_ms"] / 1000))


def stack_args(workload: str, requests: int | None = None) -> dict[str, list[str]]:
    flag, value = MAX_IN_FLIGHT[workload]
    args = {f"{workload}/transformer": [flag, value], f"{workload}/predictor": [flag, value]} if value else {}
    if requests is not None:
        args.setdefault(f"{workload}/transformer", []).extend(["--max_in_flight_requests", str(requests)])
    return args


def unloaded(url: str, body: dict, workload: str, seconds: int | None = None) -> dict:
    """wrk's req/s and latency at the workload's connections; pneumonia warms up first for WARMUP_S (its
    first batches at a new size are slow, and wrk's own 2 s warm-up holds barely one)."""
    from serve_throughput import wrk

    if WARMUP_S[workload]:
        wrk(url, body, seconds=WARMUP_S[workload], connections=CONNECTIONS[workload])
    result = wrk(url, body, seconds=seconds or CAPACITY_SECONDS[workload], connections=CONNECTIONS[workload])
    return {**result, "connections": CONNECTIONS[workload]}


# -- one workload ---------------------------------------------------------------------------------------------
def overload(workload: str, folder: Path, source: str, workdir: Path, logs: Path) -> dict:
    from pipelines.local_stack import LocalStack

    body = request_body(workload, folder)
    with on_stack_cores(LocalStack({workload: str(folder)}, ports="ephemeral", log_dir=logs / f"{workload}-unloaded",
                                   drift_dir=logs / f"{workload}-unloaded-drift",
                                   extra_args=stack_args(workload))) as stack:
        base = unloaded(stack.endpoints[workload].infer_url, body, workload)
    bound = request_bound(base)
    rate = FACTOR * base["rps"]
    print(f"{workload}: unloaded {base['rps']:.0f} req/s, p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms "
          f"(wrk -c{CONNECTIONS[workload]}, {CAPACITY_SECONDS[workload]} s, load {base['load1']:.2f}); a stack with "
          f"the transformer's max_in_flight_requests {bound or 'default'} takes {rate:.0f} req/s for {SECONDS} s …",
          flush=True)
    with on_stack_cores(LocalStack({workload: str(folder)}, ports="ephemeral", log_dir=logs / workload,
                                   drift_dir=logs / f"{workload}-drift",
                                   extra_args=stack_args(workload, bound))) as stack:
        url = stack.endpoints[workload].infer_url
        if WARMUP_S[workload]:
            from serve_throughput import wrk

            wrk(url, body, seconds=WARMUP_S[workload], connections=CONNECTIONS[workload])
        before = stack_usage(stack)
        shed_before = shed_counts(stack, workload)
        load_before = load1()
        sender = Sender(url, body, rate, SECONDS, min(INTERVAL_S, SECONDS), time.monotonic() + 1.0, workdir)
        sender.stopped.wait(SECONDS + 30)
        stopped_at = next((x["t"] for x in sender.lines if x["event"] == "stopped"), time.monotonic())
        after_load = recovery(url, body, workload, stopped_at)
        result = sender.result()
        load_after = load1()
        after = stack_usage(stack)
        time.sleep(SETTLE_S)  # closed connections leave the servers' descriptor tables
        settled = stack_usage(stack)
        shed_after = shed_counts(stack, workload)
        alive = stack.alive()
    return {"model": source, "url": url, "unloaded": base, "offered_rps": rate, "seconds": SECONDS,
            "sender": result, "recovery": after_load, "usage_before": before, "usage_after": after,
            "usage_settled": settled,
            "server_shed": {k: (shed_after[k] - shed_before[k]) if shed_after[k] is not None
                            and shed_before[k] is not None else None for k in shed_after},
            "alive_after": alive, "load1_before": load_before, "load1_after": load_after,
            "max_in_flight": dict([MAX_IN_FLIGHT[workload]]) if MAX_IN_FLIGHT[workload][1] else "runtime defaults",
            "transformer_max_in_flight_requests": bound or "runtime default"}


def judge(r: dict) -> dict:
    s = r["sender"]
    completed = s["ok"] + s["shed"] + s["other_5xx"] + s["other_status"] + s["bad_200"]
    connection_errors = s["connect_errors"] + s["read_errors"] + s["timeouts"]
    ratio = s["ok_p99_ms"] / r["unloaded"]["p99_ms"] if s["ok_p99_ms"] is not None else None
    rss = {k: v["rss_mib"] / r["usage_before"][k]["rss_mib"] for k, v in r["usage_settled"].items()
           if v.get("rss_mib") and r["usage_before"].get(k, {}).get("rss_mib")}
    sent_share = s["sent"] / max(1, s["stopped"]["scheduled"])
    unsent = s["unsent"]
    return {
        "accepted_p99_over_unloaded": ratio,
        "shed_share": s["shed"] / completed if completed else None,
        "completed": completed, "connection_errors": connection_errors,
        "rss_after_over_before": rss,
        "generator_kept_time": (sent_share >= 0.99 and unsent <= 0.01 * s["sent"]
                                and (s["send_lag_p99_ms"] or 0) <= MAX_SEND_LAG_P99_MS),
        "offered_rps_achieved": (s["sent"] - unsent) / r["seconds"],
        "targets": {
            "p99_within_2x_unloaded": ratio is not None and ratio <= TARGET_P99_RATIO,
            "no_5xx_but_503": s["other_5xx"] == 0,
            "no_connection_errors": connection_errors == 0,
            "normal_answer_within_1s": (r["recovery"]["normal_after_s"] is not None
                                        and r["recovery"]["normal_after_s"] <= TARGET_RECOVERY_S),
            "rss_within_1.5x": all(v <= TARGET_RSS_RATIO for v in rss.values()),
            "all_processes_alive": all(r["alive_after"].values()),
        },
    }


def ms(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: dict) -> None:
    for workload, r in results.items():
        s, j = r["sender"], r["judged"]
        print(f"\n{workload}: {r['model']}")
        print(f"  unloaded (wrk -c{CONNECTIONS[workload]}): {r['unloaded']['rps']:.0f} req/s, p50 "
              f"{r['unloaded']['p50_ms']:.1f} ms, p99 {r['unloaded']['p99_ms']:.1f} ms")
        print(f"  offered {r['offered_rps']:.0f} req/s ({FACTOR:g}x) for {r['seconds']} s by the open-loop sender: sent "
              f"{s['sent']} of {s['stopped']['scheduled']} scheduled, {s['unsent']} unsent (all {MAX_CONNECTIONS} "
              f"connections busy), send lag p99 {ms(s['send_lag_p99_ms'])} ms max {ms(s['send_lag_max_ms'])} ms, "
              f"peak {s['peak_open']} connections / {s['peak_in_flight']} in flight, sender CPU {s['cpu_s']:.0f} s, "
              f"its loop's lag p99 {ms(s['loop_lag_p99_ms'])} ms (part of every latency it measures): "
              f"{'kept time' if j['generator_kept_time'] else 'FELL BEHIND'} (99% of what was due sent, at most 1% "
              f"unsent, lag p99 ≤ {MAX_SEND_LAG_P99_MS:g} ms)")
        print(f"  {'interval':>9} {'ok':>8} {'503':>8} {'other':>6} {'conn err':>8} {'ok p50':>8} {'ok p99':>8} "
              f"{'503 p99':>8} {'open':>6}")
        for row in s["series"]:
            errors = row["connect_errors"] + row["read_errors"] + row["timeouts"]
            print(f"  {row['end_s']:>8.0f}s {row['ok']:>8} {row['shed']:>8} {row['other_5xx'] + row['other_status']:>6} "
                  f"{errors:>8} {ms(row['ok_p50_ms']):>8} {ms(row['ok_p99_ms']):>8} {ms(row['shed_p99_ms']):>8} "
                  f"{row['open']:>6}")
        d = s["drain"]
        print(f"  {'drain':>9} {d['ok']:>8} {d['shed']:>8} {d['other_5xx'] + d['other_status']:>6} "
              f"{d['connect_errors'] + d['read_errors'] + d['timeouts']:>8} {ms(d['ok_p50_ms']):>8} "
              f"{ms(d['ok_p99_ms']):>8} {ms(d['shed_p99_ms']):>8}")
        t = j["targets"]
        shed = j["shed_share"]
        print(f"  accepted: {s['ok']} requests, p50 {ms(s['ok_p50_ms'])} ms, p99 {ms(s['ok_p99_ms'])} ms = "
              f"{ms(j['accepted_p99_over_unloaded'])}x unloaded (target ≤ {TARGET_P99_RATIO:g}x) "
              f"{verdict(t['p99_within_2x_unloaded'])}")
        print(f"  shed with 503: {s['shed']} = {100 * shed if shed is not None else 0:.1f}% of answers "
              f"({s['shed_without_retry_after']} without Retry-After; the servers counted {r['server_shed']}), "
              f"503 p99 {ms(s['shed_p99_ms'])} ms")
        print(f"  5xx other than 503: {s['other_5xx']} {verdict(t['no_5xx_but_503'])}; other statuses "
              f"{s['other_status']}; 200 without outputs {s['bad_200']}; statuses {s['statuses']}")
        print(f"  connection errors: {j['connection_errors']} (connect {s['connect_errors']}, read/reset "
              f"{s['read_errors']}, timed out after {TIMEOUT_S:g} s {s['timeouts']}) "
              f"{verdict(t['no_connection_errors'])}")
        after = r["recovery"]["normal_after_s"]
        when = f"none within {PROBE_WINDOW_S:g} s" if after is None else f"{after:.2f} s"
        print(f"  normal answer after the load stopped: {when} ({len(r['recovery']['probes'])} probes) "
              f"{verdict(t['normal_answer_within_1s'])}")
        print(f"  {'process':<34} {'RSS before':>11} {'after':>10} {f'+{SETTLE_S:g} s':>10} {'fds before':>11} "
              f"{'after':>6} {f'+{SETTLE_S:g} s':>6}")
        for name, b in r["usage_before"].items():
            a, c = r["usage_after"].get(name, {}), r["usage_settled"].get(name, {})
            print(f"  {name:<34} {ms(b.get('rss_mib')):>7} MiB {ms(a.get('rss_mib')):>6} MiB {ms(c.get('rss_mib')):>6} MiB "
                  f"{b.get('fds') or '-':>11} {a.get('fds') or '-':>6} {c.get('fds') or '-':>6}")
        print(f"  RSS {SETTLE_S:g} s after within {TARGET_RSS_RATIO:g}x before: {verdict(t['rss_within_1.5x'])}; every process alive "
              f"after: {verdict(t['all_processes_alive'])}; load {r['load1_before']:.2f} → {r['load1_after']:.2f}")


def bench_home(name: str) -> tuple[Path, Path]:
    """Where a load benchmark writes: ``$CLINOPS_HOME/bench`` for its JSON, and its own logs folder under
    it, emptied first (wrk is installed here when it is missing)."""
    from serve_throughput import ensure_wrk

    from components.common.settings import get_settings

    ensure_wrk()
    home = get_settings().home / "bench"
    logs = home / "logs" / name
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    return home, logs


def placement() -> str:
    if not PIN:
        return f"stack and load generators share cores {sorted(STACK_CORES)} (BENCH_OVERLOAD_PIN=0)"
    return (f"stack on core {sorted(STACK_CORES)}, load generators on cores {sorted(LOAD_CORES)} "
            f"(BENCH_OVERLOAD_PIN=0 shares them)")


def main() -> int:
    home, logs = bench_home("overload")
    os.sched_setaffinity(0, LOAD_CORES)  # wrk and the sender inherit it
    print(f"overload benchmark: workloads {','.join(WORKLOADS)}; {FACTOR:g}x the unloaded capacity for {SECONDS} s; "
          f"{placement()}; "
          f"open-loop sender (asyncio/uvloop, its own process, up to {MAX_CONNECTIONS} connections, {TIMEOUT_S:g} s "
          f"timeout); capacity from wrk for {CAPACITY_SECONDS} s with {CONNECTIONS} connections; admission: "
          f"{ {w: v or 'default' for w, (_, v) in MAX_IN_FLIGHT.items()} }; loopback only; "
          f"{os.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {logs}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="clinops-overload-") as scratch:
        workdir = Path(scratch)
        for workload, (folder, source) in bundles(workdir, WORKLOADS).items():
            result = overload(workload, folder, source, workdir, logs)
            result["judged"] = judge(result)
            results[workload] = result
    report(results)
    out = home / "overload.json"
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "load": os.getloadavg()},
                               "settings": {"seconds": SECONDS, "factor": FACTOR, "capacity_seconds": CAPACITY_SECONDS,
                                            "capacity_connections": CONNECTIONS, "max_connections": MAX_CONNECTIONS,
                                            "timeout_s": TIMEOUT_S, "interval_s": INTERVAL_S,
                                            "stack_cores": sorted(STACK_CORES), "load_cores": sorted(LOAD_CORES),
                                            "generator": "open-loop asyncio/uvloop sender, own process"},
                               "targets": {"p99_ratio": TARGET_P99_RATIO, "recovery_s": TARGET_RECOVERY_S,
                                           "rss_ratio": TARGET_RSS_RATIO},
                               "workloads": results, "finished_at": time.time()}, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--send":
        sys.exit(sender_main(sys.argv[2]))
    sys.exit(main())
