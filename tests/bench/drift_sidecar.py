"""Drift sidecar benchmark (``make bench-drift``; not a test). One run on this machine, loopback only:

1. events/s one sidecar (``python -m inference.drift`` under the drift environment) sustains pinned to
   ONE core (``taskset -c 0``), durability on, fsync off and on: binary-mode CloudEvents as KServe's
   logger sends them (request + response with a shared, unique ``ce-id``; V2 JSON bodies of the
   heart-disease sample bundle's 13 features) from wrk (a Lua script) pinned to the other core;
   the windows tested during the run are counted, and the sidecar's accepted count is checked against
   what was sent and acknowledged;
2. the p99 the request logger adds to the transformer's path: two heart-disease local stacks, logger on
   (``--drift_url`` to a sidecar) and off (no ``drift_url``), the same wrk load, alternating rounds, at a
   fixed offered rate of ``BENCH_DRIFT_LOAD_SHARE`` (default 0.5) of the logger-off stack's capacity
   measured first (each wrk connection waits between an answer and its next request: the load of a
   serving fleet sized with headroom, where the target applies), and at saturation (as fast as each stack
   answers: what the logger's CPU costs when there is none to spare; reported, not judged). Both stacks'
   transformer and predictor run on core 0; the sidecar and the transformer's request-log agent (the process
   that encodes and sends the events) run on core 1 with the load generator, as in a cluster, where the
   sidecar and KServe's agent are containers of their own with their own CPU: what is measured is what the
   logger costs the request path (handing each call to the agent), not the detector's or the agent's CPU
   taken from it; every process's CPU per request is printed, the agent's too;
3. zero events lost at 10x the full-path req/s of ``make bench-serve`` (``$CLINOPS_HOME/bench/serve.json``,
   else measured here with wrk), three ways, fsync on:
   a) that many request/response pairs per second scheduled for a sidecar of its own for a bounded time by
      Python senders that retry on 429/502/503/504 and refused connections as KServe's agent does (they put
      what one core of Python can on the wire, not the schedule; printed): every event acknowledged, every
      acknowledged event in the sidecar's ``clinops_drift_events_processed`` count;
   b) wrk floods a sidecar of its own on the other core (``BENCH_DRIFT_FLOOD_CONNECTIONS`` connections,
      default 64, as fast as it answers, unique ids, no retries), once with ``--max_in_flight_events`` (the
      default, or ``BENCH_DRIFT_FLOOD_MAX_IN_FLIGHT``) and once with no bound: every event answered 200 must be
      counted processed (429/503 answers are the sender's to retry), ``/healthz`` is probed throughout, and the
      bounded sidecar must go on taking events at no less than half the unbounded one's rate (refusing is not
      its job). wrk is a closed loop that sends a refused event's successor at once: it offers no more than the
      sidecar answers, so the events offered per second are printed as a multiple of the serving rate (one
      Python process on one core answering an HTTP POST per event does not reach 10x on this machine);
   c) the whole stack (:mod:`drift_through_stack`) offered 10x the serving rate by ``make bench-overload``'s
      open-loop sender for ``BENCH_DRIFT_FLOOD_SECONDS``: every predictor call the stack made must have its
      request and its response event in the sidecar's observation log once, with all its rows, and the request
      logger must have dropped nothing and have nothing left queued. This is the traffic a sidecar sees: the
      logger in front of the predictor logs each call, and a stack offered 10x what it serves answers what it
      can and refuses the rest.
   The target holds when a), b) and c) all do.

Settings: ``BENCH_DRIFT_SECONDS`` (default 15: each throughput run of (1) and each wrk run of (2)),
``BENCH_DRIFT_ROUNDS`` (default 8: rounds of (2), logger on and off alternating; rounds vary by more than the
effect on this kind of machine, so the ratio is printed with a bootstrap interval over the rounds),
``BENCH_DRIFT_CONNECTIONS`` (default 8: wrk connections in (1) and (2)),
``BENCH_DRIFT_FLOOD_SECONDS`` (default 20: the 10x run of (3)), ``BENCH_DRIFT_FLOOD_SENDERS`` (default 16),
``BENCH_DRIFT_FLOOD_MAX_PENDING`` (default 8: the retrying senders' sidecar's ``--max_pending``, small so
that its 429 backpressure is exercised), ``BENCH_DRIFT_FLOOD_MAX_IN_FLIGHT`` (default: the sidecar's own), ``BENCH_DRIFT_WINDOW`` (default 200: rows per drift window of the sample bundle),
``BENCH_DRIFT_ONLY`` (default ``1,2,3``). Writes ``$CLINOPS_HOME/bench/drift.json``; scratch is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).parent)]

from drift_through_stack import print_through_the_stack, through_the_stack  # noqa: E402
from serve_throughput import Proc, ensure_wrk, load1, metric_sum, per_feature_body, wrk, wrk_result  # noqa: E402
from serve_throughput import scrape as read_metrics  # noqa: E402
from support import sample_bundles  # noqa: E402

from components.common.settings import get_settings  # noqa: E402
from components.heart_disease.schema import serving_schema  # noqa: E402
from pipelines.local_stack import DRIFT_RUNTIME, LocalStack, drift_python, free_ports  # noqa: E402

SECONDS = int(os.environ.get("BENCH_DRIFT_SECONDS", "15"))
ROUNDS = int(os.environ.get("BENCH_DRIFT_ROUNDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_DRIFT_CONNECTIONS", "8"))
FLOOD_SECONDS = int(os.environ.get("BENCH_DRIFT_FLOOD_SECONDS", "20"))
FLOOD_SENDERS = int(os.environ.get("BENCH_DRIFT_FLOOD_SENDERS", "16"))
WINDOW = int(os.environ.get("BENCH_DRIFT_WINDOW", "200"))
FLOOD_MAX_PENDING = int(os.environ.get("BENCH_DRIFT_FLOOD_MAX_PENDING", "8"))
FLOOD_MAX_IN_FLIGHT = os.environ.get("BENCH_DRIFT_FLOOD_MAX_IN_FLIGHT", "")  # "": the sidecar's default
FLOOD_CONNECTIONS = int(os.environ.get("BENCH_DRIFT_FLOOD_CONNECTIONS", "64"))
ONLY = {x.strip() for x in os.environ.get("BENCH_DRIFT_ONLY", "1,2,3").split(",") if x.strip()}
LOAD_SHARE = float(os.environ.get("BENCH_DRIFT_LOAD_SHARE", "0.5"))
TARGET_EVENTS_PER_S = 1000  # (1): events/s on one core
TARGET_P99_RATIO = 1.05  # (2): p99 logger on / off
ACCEPTED_SHARE = 0.5  # (3): events taken under the flood, at least this share of the unbounded sidecar's rate
RETRY_STATUS = {429, 502, 503, 504}
ACK = 200
SIDECAR_CORE, SENDER_CORE = 0, 1
HEADERS = {"ce-specversion": "1.0", "ce-source": "http://heart-disease-predictor.bench/",
           "ce-inferenceservicename": "heart-disease", "ce-namespace": "bench", "ce-component": "predictor",
           "ce-endpoint": "default", "content-type": "application/json"}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


WRK_EVENTS = """
local bodies, prefix, counter = {}, "x", 0
init = function(args)
  prefix = args[1]
  for line in io.lines(args[2]) do bodies[#bodies + 1] = line end
end
request = function()
  local n = math.floor(counter / 2)
  local kind = (counter %% 2 == 0) and "request" or "response"
  counter = counter + 1
  local headers = %(headers)s
  headers["ce-id"] = prefix .. "-" .. n
  headers["ce-type"] = "org.kubeflow.serving.inference." .. kind
  local pair = (n %% (#bodies / 2)) * 2
  return wrk.format("POST", "/", headers, bodies[pair + ((kind == "request") and 1 or 2)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%f %%f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_events(url: str, bodies, seconds: int, connections: int, workdir: Path) -> dict:
    """wrk on the sender core posting request/response pairs with a run-unique ``ce-id`` per pair (ids
    repeat only within a pair, so the sidecar dedupes nothing); one connection each, pairs in order."""
    (workdir / "bodies.jsonl").write_bytes(b"".join(r + b"\n" + p + b"\n" for r, p in bodies))
    lua_headers = "{" + ", ".join(f'["{k}"] = "{v}"' for k, v in HEADERS.items()) + "}"
    (workdir / "events.lua").write_text(WRK_EVENTS % {"headers": lua_headers})
    done = subprocess.run(["taskset", "-c", str(SENDER_CORE), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                           "--timeout", "10s", "-s", str(workdir / "events.lua"), url, "--", uuid.uuid4().hex,
                           str(workdir / "bodies.jsonl")], capture_output=True, text=True, timeout=seconds + 60)
    return wrk_result(done.stdout)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- events -----------------------------------------------------------------------------------------------
def event_bodies(model_dir: Path, n: int = 512) -> list[tuple[bytes, bytes]]:
    """``n`` (request, response) V2 JSON body pairs: single rows and the model's own probabilities."""
    import joblib

    rows = sample_bundles.heart_rows(serving_schema(), n, seed=3)
    proba = joblib.load(model_dir / "model.joblib").predict_proba(rows)
    pairs = []
    for row, p in zip(rows, proba, strict=True):
        request = {"inputs": [{"name": "features", "shape": [1, len(row)], "datatype": "FP64",
                               "data": [None if np.isnan(v) else float(v) for v in row]}]}
        response = {"model_name": "heart-disease", "outputs": [{"name": "predict_proba", "shape": [1, len(p)],
                                                                "datatype": "FP64", "data": p.tolist()}]}
        pairs.append((json.dumps(request).encode(), json.dumps(response).encode()))
    return pairs


class Tally:
    def __init__(self):
        self.sent = self.acked = self.retried = self.refused = self.errors = 0
        self.by_status: dict[int, int] = {}

    def as_dict(self) -> dict:
        return {"sent": self.sent, "acked": self.acked, "retried": self.retried, "refused_4xx": self.refused,
                "connection_errors": self.errors, "by_status": {str(k): v for k, v in sorted(self.by_status.items())}}


async def send_event(client, url: str, kind: str, event_id: str, body: bytes, tally: Tally,
                     give_up: float) -> None:
    """POST one event until it is acknowledged, retrying backpressure and refused connections with a
    doubling backoff (as KServe's agent does), or until ``give_up`` (a monotonic time) has passed."""
    import httpx

    headers = {**HEADERS, "ce-id": event_id, "ce-type": f"org.kubeflow.serving.inference.{kind}"}
    backoff = 0.01
    tally.sent += 1
    while True:
        try:
            response = await client.post(url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        tally.by_status[status] = tally.by_status.get(status, 0) + 1
        if status == ACK:
            tally.acked += 1
            return
        if status and status not in RETRY_STATUS:
            tally.refused += 1
            return
        if not status:
            tally.errors += 1
        if time.monotonic() > give_up:
            return
        tally.retried += 1
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 1.0)


async def closed_loop(url: str, bodies, seconds: float, senders: int, tally: Tally) -> float:
    """``senders`` loops each sending pairs back to back for ``seconds``; the elapsed seconds."""
    import httpx

    stop = time.monotonic() + seconds
    counter = iter(range(10**12))

    async def loop(client):
        while time.monotonic() < stop:
            i = next(counter)
            request, response = bodies[i % len(bodies)]
            event_id = uuid.uuid4().hex
            await send_event(client, url, "request", event_id, request, tally, stop + 30)
            await send_event(client, url, "response", event_id, response, tally, stop + 30)

    limits = httpx.Limits(max_connections=senders, max_keepalive_connections=senders)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.monotonic()
        await asyncio.gather(*(loop(client) for _ in range(senders)))
        return time.monotonic() - start


async def open_loop(url: str, bodies, pairs_per_s: float, seconds: float, senders: int, tally: Tally) -> dict:
    """Offer ``pairs_per_s`` request/response pairs a second for ``seconds`` on a schedule (not a closed
    loop). Like KServe's agent, the sender has a bounded queue (``4 × senders`` pairs) and ``senders``
    workers; a pair due while that queue is full is shed by the sender (counted, never sent). Each worker
    sends a pair's request and response concurrently (the sidecar pairs them) and retries both until
    acknowledged or 60 s past the schedule."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue(maxsize=4 * senders)
    total = int(pairs_per_s * seconds)
    give_up = time.monotonic() + seconds + 60
    shed = 0

    async def schedule():
        nonlocal shed
        start, issued = time.monotonic(), 0
        while issued < total:  # every 5 ms: the pairs now due go into the queue, or are shed if it is full
            due = min(total, int((time.monotonic() - start) * pairs_per_s)) - issued
            room = min(due, queue.maxsize - queue.qsize())
            for i in range(issued, issued + room):
                queue.put_nowait(i)
            shed += due - room
            issued += due
            await asyncio.sleep(0.005)
        for _ in range(senders):
            await queue.put(None)
        return time.monotonic() - start

    async def worker(client):
        while (i := await queue.get()) is not None:
            request, response = bodies[i % len(bodies)]
            event_id = uuid.uuid4().hex
            await asyncio.gather(send_event(client, url, "request", event_id, request, tally, give_up),
                                 send_event(client, url, "response", event_id, response, tally, give_up))

    limits = httpx.Limits(max_connections=2 * senders, max_keepalive_connections=2 * senders)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.monotonic()
        scheduled, *_ = await asyncio.gather(schedule(), *(worker(client) for _ in range(senders)))
        return {"pairs_scheduled": total, "pairs_shed_by_sender": shed, "schedule_s": scheduled,
                "drained_s": time.monotonic() - start}


# -- the sidecar ------------------------------------------------------------------------------------------
class Sidecar:
    def __init__(self, bundle: Path, log_dir: Path, logs: Path, name: str, fsync: bool, extra: list[str] = ()):
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        argv = ["taskset", "-c", str(SIDECAR_CORE), drift_python(), "-m", DRIFT_RUNTIME, "--workload",
                "heart-disease", "--bundle", str(bundle), "--port", str(self.port), "--log_dir", str(log_dir),
                "--fsync" if fsync else "--no-fsync", *extra]
        self.proc = Proc(argv, f"{self.url}/healthz", logs / f"{name}.log",
                         env={"PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}, cwd=ROOT)

    def metrics(self) -> dict[str, float]:
        return read_metrics(f"{self.url}/metrics")

    def status(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/v1/drift", timeout=10).json()

    def stop(self) -> None:
        self.proc.stop()


def sidecar_throughput(bundle: Path, bodies, workdir: Path, logs: Path, fsync: bool) -> dict:
    name = f"sidecar-fsync-{'on' if fsync else 'off'}"
    sidecar = Sidecar(bundle, workdir / name, logs, name, fsync)
    try:
        asyncio.run(closed_loop(sidecar.url + "/", bodies, 2, CONNECTIONS, Tally()))  # warm-up
        before = sidecar.metrics()
        load_before = load1()
        cpu_before = cpu_seconds(sidecar.proc.popen.pid)
        r = wrk_events(sidecar.url + "/", bodies, SECONDS, CONNECTIONS, workdir)
        cpu_share = (cpu_seconds(sidecar.proc.popen.pid) - cpu_before) / SECONDS
        time.sleep(1)
        after = sidecar.metrics()
        windows_during = (metric_sum(after, "clinops_drift_windows_total")
                          - metric_sum(before, "clinops_drift_windows_total"))
        processed = (metric_sum(after, "clinops_drift_events_processed_total")
                     - metric_sum(before, "clinops_drift_events_processed_total"))
        acked = r["requests"] - r["non_2xx"]
        status = sidecar.status()
        # wrk counts only answered requests: up to one in flight per connection at the cut-off may be
        # processed without being counted as acknowledged, never the other way round
        return {"fsync": fsync, "events_per_s": acked / SECONDS, "acked": acked, "non_2xx": r["non_2xx"],
                "errors": r["errors"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "processed": processed,
                "lost": max(0.0, acked - processed), "in_flight_at_cutoff": processed - acked,
                "windows_tested_during_run": windows_during, "windows_tested_total": status["windows_tested"],
                "sidecar_cpu_share": cpu_share, "load1": (load_before + load1()) / 2}
    finally:
        sidecar.stop()


# -- (2) logger on vs off -----------------------------------------------------------------------------
def logger_overhead(bundle: Path, workdir: Path, logs: Path) -> dict:
    on_stack = LocalStack({"heart-disease": str(bundle)}, ports="ephemeral", log_dir=logs / "stack-logger-on",
                          drift=True, drift_dir=workdir / "stack-drift")
    off_stack = LocalStack({"heart-disease": str(bundle)}, ports="ephemeral", log_dir=logs / "stack-logger-off",
                           drift=False)
    with on_stack, off_stack:
        stacks = {"logger on": on_stack, "logger off": off_stack}
        pids = {name: stack_pids(stack) for name, stack in stacks.items()}
        for name in stacks:  # every thread of each process (taskset -a), those running already too
            for key, pid in pids[name].items():
                core = SENDER_CORE if key.endswith(("/drift", "/agent")) else SIDECAR_CORE
                subprocess.run(["taskset", "-a", "-p", "-c", str(core), str(pid)], check=True, capture_output=True)
        capacity = wrk(off_stack.endpoints["heart-disease"].infer_url, per_feature_body(), seconds=5,
                       connections=CONNECTIONS)["rps"]
        # each connection: one request, then delay_ms of quiet; the answer's latency is small beside it
        delay_ms = max(1, round(CONNECTIONS * 1000 / (LOAD_SHARE * capacity)))
        fixed = alternate(stacks, pids, delay_ms)
        saturated = alternate(stacks, pids, 0)
        endpoint = on_stack.endpoints["heart-disease"]
        time.sleep(2)  # let the logger's queue drain
        transformer = read_metrics(f"{endpoint.rest_url}/metrics")
        sidecar = read_metrics(f"{endpoint.drift_url}/metrics")
    served = sum(r["requests"] for rounds in (fixed, saturated) for r in rounds["logger on"])
    return {"rounds": fixed, "saturated_rounds": saturated, "capacity_rps": capacity, "delay_ms": delay_ms,
            "offered_rps": CONNECTIONS * 1000 / delay_ms,
            "logger_sent": metric_sum(transformer, "clinops_request_log_sent_total"),
            "logger_dropped": metric_sum(transformer, "clinops_request_log_dropped_total"),
            "logger_queued": metric_sum(transformer, "clinops_request_log_queued"),
            "sidecar_processed": metric_sum(sidecar, "clinops_drift_events_processed_total"),
            "sidecar_windows": metric_sum(sidecar, "clinops_drift_windows_total"),
            "requests_served_logger_on": served}


def stack_pids(stack: LocalStack) -> dict[str, int]:
    """The stack's processes by name; a transformer's request-log agent (its child) as ``<model>/agent``."""
    pids = {key: proc.popen.pid for key, proc in stack.processes.items()}
    for key, pid in list(pids.items()):
        if key.endswith("/transformer"):
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if children:
                pids[key.rsplit("/", 1)[0] + "/agent"] = int(children[0])
    return pids


def alternate(stacks: dict[str, LocalStack], pids: dict[str, dict[str, int]], delay_ms: int) -> dict[str, list[dict]]:
    """ROUNDS of the same wrk load on each stack; on and off alternate and swap which goes first, so that
    drifts of the machine's load hit both. Each round also records the CPU-seconds of every process."""
    rounds: dict[str, list[dict]] = {name: [] for name in stacks}
    with load_generator_first():
        _alternate(stacks, pids, delay_ms, rounds)
    return rounds


@contextlib.contextmanager
def load_generator_first():
    """wrk (a child of this process, which it inherits this from) is served first on the core it shares with
    the sidecar and the request-log agent: real-time (``SCHED_FIFO``) where allowed, else reniced. Else a
    logger-on round counts their turns on that core in wrk's own latencies, which a logger-off round, with
    neither, does not: the client's delays, not the transformer's path. In a cluster the client is on another
    machine. The stacks, started before, keep their policy."""
    policy, niceness = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        print("wrk runs real-time (SCHED_FIFO 10) ahead of the sidecar and the agent on its core", flush=True)
    except (OSError, AttributeError):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, niceness - 5)
            print("wrk runs reniced (-5) ahead of the sidecar and the agent on its core", flush=True)
        except OSError:
            print("wrk shares its core with the sidecar and the agent at equal priority (no right to change it)",
                  flush=True)
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, os.sched_param(0))
        os.setpriority(os.PRIO_PROCESS, 0, niceness)


def _alternate(stacks: dict[str, LocalStack], pids: dict[str, dict[str, int]], delay_ms: int,
               rounds: dict[str, list[dict]]) -> None:
    for i in range(ROUNDS):
        for name in (list(stacks) if i % 2 == 0 else list(reversed(stacks))):
            before = {k: cpu_seconds(pid) for k, pid in pids[name].items()}
            r = wrk(stacks[name].endpoints["heart-disease"].infer_url, per_feature_body(), seconds=SECONDS,
                    connections=CONNECTIONS, delay_ms=delay_ms)
            r["cpu_s"] = {k.split("/")[1]: cpu_seconds(pid) - before[k] for k, pid in pids[name].items()}
            rounds[name].append(r)


def bootstrap_interval(on: list[float], off: list[float], draws: int = 4000) -> tuple[float, float]:
    """The 5th and 95th percentiles of mean(on) / mean(off) over the round pairs drawn with replacement: how
    far the ratio could move with other rounds of the same machine."""
    rng = np.random.default_rng(0)
    pairs = np.array([on, off])
    picks = rng.integers(0, pairs.shape[1], size=(draws, pairs.shape[1]))
    ratios = pairs[0][picks].mean(axis=1) / pairs[1][picks].mean(axis=1)
    return float(np.percentile(ratios, 5)), float(np.percentile(ratios, 95))


def overhead_table(title: str, rounds: dict[str, list[dict]]) -> tuple[float, list[float], float, tuple]:
    """Prints the rounds; returns the p99 ratio on/off (of the means), per round, the relative spread, and the
    ratio's bootstrap interval."""
    on = [r["p99_ms"] for r in rounds["logger on"]]
    off = [r["p99_ms"] for r in rounds["logger off"]]
    ratio = statistics.mean(on) / statistics.mean(off)
    interval = bootstrap_interval(on, off)
    per_round = [a / b for a, b in zip(on, off, strict=True)]
    noise = max(max(off) - min(off), max(on) - min(on)) / statistics.mean(off)
    print(title)
    print(f"{'':<12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'load':>5}")
    for name, runs in rounds.items():
        for i, r in enumerate(runs, 1):
            print(f"{name + ' r' + str(i):<12} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['errors'] + r['non_2xx']:>7} {r['load1']:>5.2f}")
    for name, runs in rounds.items():
        cpu = {k: statistics.mean(r["cpu_s"][k] for r in runs) for k in runs[0]["cpu_s"]}
        # wrk's 2 s warm-up runs at about the same rate: requests over both ≈ requests × (SECONDS + 2) / SECONDS
        per_request = {k: statistics.mean(r["cpu_s"][k] / (r["requests"] * (SECONDS + 2) / SECONDS) * 1000
                                          for r in runs) for k in runs[0]["cpu_s"]}
        print(f"CPU-seconds per round ({SECONDS}s + 2s warm-up), {name}: "
              + ", ".join(f"{k} {v:.1f} ({per_request[k]:.3f} ms per request)" for k, v in cpu.items()))
    print(f"p99 on / off (means) {ratio:.3f} (90% bootstrap interval over the rounds {interval[0]:.3f}–"
          f"{interval[1]:.3f}); per round {', '.join(f'{x:.2f}' for x in per_round)}; "
          f"p99 spread on {spread(on)} ms, off {spread(off)} ms"
          + ("; the spread across rounds is larger than the effect" if noise > abs(ratio - 1) else ""))
    return ratio, per_round, noise, interval


# -- (3) 10x the serving rate ---------------------------------------------------------------------------
def serving_rate(bundle: Path, logs: Path, off_rounds: list[dict] | None) -> tuple[float, str]:
    """The full path's req/s: ``make bench-serve``'s figure, else (2)'s logger-off rounds (the same wrk
    load on the same path), else a wrk run here."""
    serve = get_settings().home / "bench" / "serve.json"
    if serve.exists():
        data = json.loads(serve.read_text())
        found = find_full_path_rps(data)
        if found:
            return found, f"from {serve}"
    if off_rounds:
        return (statistics.mean(r["rps"] for r in off_rounds),
                "no serve.json: the mean of (2)'s logger-off rounds in this run, same wrk load on the full path")
    with LocalStack({"heart-disease": str(bundle)}, ports="ephemeral", log_dir=logs / "stack-rate",
                    drift=False) as stack:
        r = wrk(stack.endpoints["heart-disease"].infer_url, per_feature_body(), seconds=10, connections=8)
    return r["rps"], "measured in this run (no serve.json): wrk -c8 -d10s on the full path, logger off"


def find_full_path_rps(data) -> float | None:
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "clinops transformer → predictor" and isinstance(value, dict) and "rps" in value:
                return float(value["rps"])
            found = find_full_path_rps(value)
            if found:
                return found
    return None


def flood(bundle: Path, bodies, workdir: Path, logs: Path, serve_rps: float) -> dict:
    pairs_per_s = 10 * serve_rps
    sidecar = Sidecar(bundle, workdir / "sidecar-flood", logs, "sidecar-flood", fsync=True,
                      extra=["--max_pending", str(FLOOD_MAX_PENDING)])
    try:
        tally = Tally()
        load_before = load1()
        run = asyncio.run(open_loop(sidecar.url + "/", bodies, pairs_per_s, FLOOD_SECONDS, FLOOD_SENDERS, tally))
        time.sleep(1)
        m = sidecar.metrics()
        processed = metric_sum(m, "clinops_drift_events_processed_total")
        rejected = {k.split('reason="')[1].split('"')[0]: v for k, v in m.items()
                    if k.startswith("clinops_drift_events_rejected_total")}
        result = {"pairs_per_s_offered": pairs_per_s, **run, **tally.as_dict(), "processed": processed,
                  "duplicates": metric_sum(m, "clinops_drift_events_duplicate_total"),
                  "rejected_by_sidecar": rejected, "lost": tally.acked - processed,
                  "unacknowledged": tally.sent - tally.acked,
                  "windows_tested": metric_sum(m, "clinops_drift_windows_total"),
                  "achieved_events_per_s": tally.acked / run["drained_s"], "load1": (load_before + load1()) / 2}
    finally:
        sidecar.stop()
    result["wrk"] = {bound: wire_flood(bundle, bodies, workdir, logs, serve_rps, bound)
                     for bound in (FLOOD_MAX_IN_FLIGHT, "0")}
    return result


class Prober:
    """GET /healthz every 50 ms from a thread during a flood: the longest wait says whether the sidecar stays
    answerable (probes, metrics) while refusing."""

    def __init__(self, url: str):
        import threading

        self.url, self.waits, self.failures = url, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.05):
                start = time.perf_counter()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.waits.append(time.perf_counter() - start)
                self.failures += not ok

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(15)
        waits = sorted(self.waits) or [float("nan")]
        return {"probes": len(self.waits), "failures": self.failures, "max_ms": waits[-1] * 1e3,
                "p99_ms": waits[min(len(waits) - 1, int(0.99 * len(waits)))] * 1e3}


def wire_flood(bundle: Path, bodies, workdir: Path, logs: Path, serve_rps: float, bound: str) -> dict:
    """wrk as fast as the sidecar answers (the rate a sender in C reaches) on a sidecar of its own, fsync on, with
    ``--max_in_flight_events bound`` ("": the default; "0": no bound): every 200 must be counted processed, and
    the 429s are the sender's to retry. wrk does not retry, so the other half of a refused pair has no partner
    coming: ``--pair_timeout_s 1`` lets such halves go alone after a second instead of filling the pending set
    (a retrying sender completes them)."""
    extra = ["--pair_timeout_s", "1"] + (["--max_in_flight_events", bound] if bound else [])
    name = f"sidecar-wrk-{bound or 'default'}"
    sidecar = Sidecar(bundle, workdir / name, logs, name, fsync=True, extra=extra)
    try:
        prober = Prober(sidecar.url + "/healthz")
        run = wrk_events(sidecar.url + "/", bodies, FLOOD_SECONDS, FLOOD_CONNECTIONS, workdir)
        probes = prober.stop()
        time.sleep(1.5)
        m = sidecar.metrics()
    finally:
        sidecar.stop()
    processed = metric_sum(m, "clinops_drift_events_processed_total")
    acked = run["requests"] - run["non_2xx"]
    return {**run, "connections": FLOOD_CONNECTIONS, "max_in_flight_events": bound or "default",
            "events_offered_per_s": run["rps"], "times_serving_rate": run["rps"] / 2 / serve_rps, "acked": acked,
            "acked_per_s": acked / FLOOD_SECONDS, "not_acked_to_retry": run["non_2xx"],
            "refused_in_flight": metric_sum(m, "clinops_drift_events_rejected_total", reason="in_flight"),
            "refused_backpressure": metric_sum(m, "clinops_drift_events_rejected_total", reason="backpressure"),
            "processed": processed, "lost": acked - processed, "healthz": probes,
            # a request wrk timed out on, or still had out when its run ended (one per connection), may have
            # been acknowledged too: processed may exceed acked by as many
            "unexplained": max(0.0, processed - acked - run["errors"] - FLOOD_CONNECTIONS)}


# -- report ---------------------------------------------------------------------------------------------
def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def main() -> int:
    ensure_wrk()
    if not Path(drift_python()).exists():
        print(f"no drift environment at {drift_python()}: `make venv` builds it", file=sys.stderr)
        return 2
    if (os.cpu_count() or 1) < 2:
        print("needs two cores: the sidecar on one, the load generator on the other", file=sys.stderr)
        return 2
    logs = get_settings().home / "bench" / "logs-drift"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="clinops-bench-drift-") as scratch:
        tempfile.tempdir = scratch
        try:
            return run(Path(scratch), logs)
        finally:
            tempfile.tempdir = None


def run(workdir: Path, logs: Path) -> int:
    bundle = sample_bundles.write_heart_disease(workdir / "heart", serving_schema(), window=WINDOW)
    bodies = event_bodies(bundle)
    os.sched_setaffinity(0, {SENDER_CORE})  # the load generator; the sidecar gets core 0 with taskset
    print(f"heart-disease sample bundle, drift window {WINDOW} rows; sidecar pinned to core {SIDECAR_CORE}, "
          f"load generators (wrk, httpx) on core {SENDER_CORE}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {load1():.2f}\n(1) wrk -t1 -c{CONNECTIONS} -d{SECONDS}s per fsync setting; "
          f"(2) wrk -t1 -c{CONNECTIONS} -d{SECONDS}s, {ROUNDS} alternating rounds; (3) {FLOOD_SENDERS} retrying "
          f"senders x {FLOOD_SECONDS}s; logs in {logs}", flush=True)
    result: dict = {"settings": {"seconds": SECONDS, "rounds": ROUNDS, "connections": CONNECTIONS,
                                 "flood_seconds": FLOOD_SECONDS, "flood_senders": FLOOD_SENDERS, "window": WINDOW,
                                 "flood_max_pending": FLOOD_MAX_PENDING},
                    "machine": {"cores": os.cpu_count(), "processor": platform.processor() or platform.machine()}}
    ok = True
    if "1" in ONLY:
        one = {f"fsync {'on' if f else 'off'}": sidecar_throughput(bundle, bodies, workdir, logs, f)
               for f in (False, True)}
        result["1_one_core"] = one
        print(f"\n(1) one sidecar on one core, target ≥ {TARGET_EVENTS_PER_S} events/s")
        print(f"{'':<10} {'events/s':>9} {'acked':>8} {'processed':>9} {'lost':>5} {'non-2xx':>8} "
              f"{'p99 ms':>7} {'windows':>8} {'cpu':>5} {'load':>5}")
        for name, r in one.items():
            good = (r["events_per_s"] >= TARGET_EVENTS_PER_S and r["lost"] == 0 and r["non_2xx"] == 0
                    and r["windows_tested_during_run"] > 0 and 0 <= r["in_flight_at_cutoff"] <= CONNECTIONS)
            ok &= good
            print(f"{name:<10} {r['events_per_s']:>9.0f} {r['acked']:>8} {r['processed']:>9.0f} {r['lost']:>5.0f} "
                  f"{r['non_2xx']:>8} {r['p99_ms']:>7.2f} {r['windows_tested_during_run']:>8.0f} {r['sidecar_cpu_share']:>5.2f} {r['load1']:>5.2f}  "
                  f"{verdict(good)}")
        print("cpu: the sidecar's CPU-seconds per second of the run (1.00: its core is saturated, the sidecar is "
              "the bottleneck; below: the load generator is)")
        result["1_fsync_on_over_off"] = one["fsync on"]["events_per_s"] / one["fsync off"]["events_per_s"]
        print(f"fsync on / off: {result['1_fsync_on_over_off']:.2f}", flush=True)
    if "2" in ONLY:
        two = logger_overhead(bundle, workdir, logs)
        print(f"\n(2) the request logger on the transformer's path, target p99 on ≤ {TARGET_P99_RATIO} × off at "
              f"{LOAD_SHARE:.0%} of capacity (logger off, saturated: {two['capacity_rps']:.0f} req/s)")
        ratio, per_round, noise, interval = overhead_table(
            f"fixed rate: {CONNECTIONS} connections, {two['delay_ms']} ms between an answer and the next request "
            f"(about {two['offered_rps']:.0f} req/s offered)", two["rounds"])
        good = ratio <= TARGET_P99_RATIO and two["logger_dropped"] == 0
        ok &= good
        print(f"  {verdict(good)}")
        sat_ratio, sat_per_round, sat_noise, _ = overhead_table("\nsaturated (as fast as each stack answers; reported, "
                                                             "not judged)", two["saturated_rounds"])
        sat = two["saturated_rounds"]
        rps_ratio = (statistics.mean(r["rps"] for r in sat["logger on"])
                     / statistics.mean(r["rps"] for r in sat["logger off"]))
        print(f"req/s on / off at saturation {rps_ratio:.3f}")
        two.update({"p99_ratio_on_over_off": ratio, "p99_ratio_per_round": per_round, "p99_relative_spread": noise,
                    "p99_ratio_interval_90": list(interval),
                    "saturated_p99_ratio_on_over_off": sat_ratio, "saturated_p99_ratio_per_round": sat_per_round,
                    "saturated_p99_relative_spread": sat_noise, "saturated_rps_ratio_on_over_off": rps_ratio})
        result["2_logger_overhead"] = two
        print(f"logger: {two['logger_sent']:.0f} events sent, {two['logger_dropped']:.0f} dropped, "
              f"{two['logger_queued']:.0f} queued at the end; {two['requests_served_logger_on']} requests served with "
              f"it on; sidecar processed {two['sidecar_processed']:.0f}, windows {two['sidecar_windows']:.0f}",
              flush=True)
    if "3" in ONLY:
        off_rounds = result.get("2_logger_overhead", {}).get("saturated_rounds", {}).get("logger off")
        serve_rps, source = serving_rate(bundle, logs, off_rounds)
        three = flood(bundle, bodies, workdir, logs, serve_rps)
        three.update({"serve_rps": serve_rps, "serve_rps_source": source})
        stack = through_the_stack(bundle, serve_rps, FLOOD_SECONDS, workdir, logs)
        three["through_the_stack"] = stack
        result["3_ten_times_serving"] = three
        gated, ungated = three["wrk"][FLOOD_MAX_IN_FLIGHT], three["wrk"]["0"]
        # the target: at 10x the serving rate nothing lost: every acknowledged event processed, the rest refused at
        # once for the sender to retry (no connection error, no timeout), the sidecar answerable throughout, and
        # through the whole stack every predictor call's events in the log (how near wrk alone came to 10x on the
        # wire is printed: a closed loop offers what the sidecar answers)
        reached = gated["times_serving_rate"] >= 10
        retried_all = three["lost"] == 0 and three["unacknowledged"] == 0
        # refusing is not the job: the sidecar must go on taking events at no less than half the rate it takes
        # with no bound (wrk sends a refused event's successor at once, where a sender honouring Retry-After waits)
        kept_taking = gated["acked_per_s"] >= ACCEPTED_SHARE * ungated["acked_per_s"]
        good = (retried_all and kept_taking and gated["lost"] <= 0 and not gated["unexplained"]
                and gated["errors"] == 0 and gated["healthz"]["failures"] == 0 and stack["zero_lost"])
        ok &= good
        print(f"\n(3) 10 × serving rate ({serve_rps:.0f} req/s, {source}) = {2 * three['pairs_per_s_offered']:.0f} "
              f"events/s; fsync on")
        print(f"a) retrying Python senders ({FLOOD_SENDERS}, open loop, {FLOOD_SECONDS}s; sidecar --max_pending "
              f"{FLOOD_MAX_PENDING}): they put {three['achieved_events_per_s']:.0f} events/s on the wire, not the "
              f"schedule ({three['pairs_shed_by_sender']} of {three['pairs_scheduled']} pairs never sent, counted); "
              f"sent {three['sent']}, acknowledged {three['acked']} after {three['retried']} retries "
              f"{three['by_status']}, processed {three['processed']:.0f}, lost {three['lost']:.0f}, unacknowledged "
              f"{three['unacknowledged']}; windows tested {three['windows_tested']:.0f}; load {three['load1']:.2f}",
              flush=True)
        print(f"b) wrk, {FLOOD_CONNECTIONS} connections x {FLOOD_SECONDS}s, no retries, a sidecar of its own each:")
        print(f"   {'max_in_flight':<14} {'offered/s':>10} {'x serving':>9} {'200/s':>7} {'429 to retry':>13} "
              f"{'conn err':>8} {'processed':>10} {'lost':>5} {'p99 ms':>7} {'healthz max ms':>15}")
        for r in (gated, ungated):
            print(f"   {r['max_in_flight_events']:<14} {r['events_offered_per_s']:>10.0f} {r['times_serving_rate']:>9.1f} "
                  f"{r['acked_per_s']:>7.0f} {r['not_acked_to_retry']:>13} {r['errors']:>8} {r['processed']:>10.0f} "
                  f"{r['lost']:>5.0f} {r['p99_ms']:>7.1f} {r['healthz']['max_ms']:>15.1f}")
        print(f"   10x offered on the wire by wrk: {'yes' if reached else 'no'} ({gated['times_serving_rate']:.1f}x); "
              f"events taken at {gated['acked_per_s'] / ungated['acked_per_s']:.2f} of the unbounded sidecar's rate "
              f"(≥ {ACCEPTED_SHARE} needed)")
        print_through_the_stack(stack)
        print(f"every 200 processed, no connection error, healthz answered throughout, the retrying senders' events all "
              f"acknowledged, every predictor call of the stack logged  {verdict(good)}", flush=True)
    out = get_settings().home / "bench" / "drift.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result["all_targets_met"] = ok
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nall targets met: {'yes' if ok else 'no (see MISS above)'}\nwrote {out}")
    return 0  # a benchmark reports; it does not fail the build


if __name__ == "__main__":
    sys.exit(main())
