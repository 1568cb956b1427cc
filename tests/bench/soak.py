"""Soak benchmark (``make bench-soak``; not a test). One run on this machine, loopback only.

One local stack (transformer, predictor, drift sidecar per workload) on ephemeral loopback ports. Each
workload's capacity is measured alone with ``wrk`` (as in ``make bench-overload``). Half capacity is then read
as half of the machine: starting from ``BENCH_SOAK_SHARE`` (0.35) of heart-disease's capacity and
``BENCH_SOAK_PNEUMONIA_SHARE`` (0.15) of pneumonia's, offered at once, every rate is scaled by one factor, in
steps of ``BENCH_SOAK_CALIBRATE_SECONDS`` (20), until the whole machine's CPU is ``BENCH_SOAK_BUSY`` (0.5) busy,
± 5 points (at most ``BENCH_SOAK_CALIBRATE_STEPS``, 5). Shares of throughput alone are not half the machine:
below capacity the predictors form small batches, so a request costs more CPU than at capacity (0.35 and
0.15 kept 2 cores 98% busy). ``BENCH_SOAK_BUSY=0`` offers the shares as given. The chosen rates are offered for
``BENCH_SOAK_SECONDS`` by the open-loop sender of ``overload.py`` (one process per workload; wrk cannot hold a
rate). Every ``BENCH_SOAK_INTERVAL`` seconds the RSS and open file descriptors of every stack process are read
from ``/proc`` with the CPU's busy share, and each sender reports the requests completed in that interval:
answers, errors, latency p50/p99.

Verdict: RSS, the highest sample in the last third of the run against the highest in the first third, within
10% or 16 MiB (whichever is more), for every process (single samples move by hundreds of MiB in the torch
predictor as its allocator takes and returns memory; a leak raises the peaks); open descriptors, last interval
against the first, within 2 (a transformer's also within the growth of its sender's open connections, one
descriptor each); p99, last interval against the first, within 1.5x (or 5 ms) for each workload; and no
error in the whole run (any status but 200, 503 included, connection errors, timeouts). A missed one is printed
as MISS; the run still exits 0.

Other settings: ``BENCH_SOAK_INTERVAL`` (30), ``BENCH_SOAK_PNEUMONIA_SHARE=0`` soaks heart-disease alone,
``BENCH_SOAK_CAPACITY_SECONDS`` (10) and ``BENCH_SOAK_IMAGE_CAPACITY_SECONDS`` (30: the wrk runs that measure
capacity); wrk connections and the sender's limits are ``make bench-overload``'s settings. Writes
``$CLINOPS_HOME/bench/soak.json``; logs in ``$CLINOPS_HOME/bench/logs/soak``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).parent)]

import overload  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
INTERVAL_S = float(os.environ.get("BENCH_SOAK_INTERVAL", "30"))
# shares of each workload's own capacity, offered at once: the calibration's start and the ratio it keeps
SHARES = {"heart-disease": float(os.environ.get("BENCH_SOAK_SHARE", "0.35")),
          "pneumonia": float(os.environ.get("BENCH_SOAK_PNEUMONIA_SHARE", "0.15"))}
CAPACITY_SECONDS = {"heart-disease": int(os.environ.get("BENCH_SOAK_CAPACITY_SECONDS", "10")),
                    "pneumonia": int(os.environ.get("BENCH_SOAK_IMAGE_CAPACITY_SECONDS", "30"))}
RSS_TOLERANCE = (0.10, 16.0)  # relative, MiB: whichever allows more
FD_TOLERANCE = 2
P99_TOLERANCE = (1.5, 5.0)  # ratio, ms: whichever allows more
# half capacity, read as half of the machine: the rates are scaled until the CPU is this busy (0: the shares as given)
TARGET_BUSY = float(os.environ.get("BENCH_SOAK_BUSY", "0.5"))
CALIBRATE_TOLERANCE = 0.05
CALIBRATE_STEPS = int(os.environ.get("BENCH_SOAK_CALIBRATE_STEPS", "5"))
CALIBRATE_SECONDS = float(os.environ.get("BENCH_SOAK_CALIBRATE_SECONDS", "20"))
CALIBRATE_WARMUP_S = 5.0
SETTLE_BUSY, SETTLE_LIMIT_S = 0.15, 120.0  # the machine counts as settled below this busy share
ERROR_KEYS = ("shed", "bad_200", "other_5xx", "other_status", "connect_errors", "read_errors", "timeouts", "unsent")


def errors(row: dict) -> int:
    return sum(row[k] for k in ERROR_KEYS)


def within_rss(first: float, last: float) -> bool:
    return last - first <= max(RSS_TOLERANCE[0] * first, RSS_TOLERANCE[1])


def rss_peaks(series: list) -> tuple[float | None, float | None]:
    """The highest RSS in the first third of the samples and in the last third. A process's RSS moves from one
    sample to the next as its allocator takes and returns memory (the torch predictor's by a few hundred MiB
    with the batch sizes it forms); a leak raises the peaks, so peaks are compared, not two single samples.
    A process missing from any late sample (it died) has no late peak."""
    third = max(1, len(series) // 3)
    early, late = series[:third], series[-third:]
    if any(v is None for v in late) or not any(early):
        return None, None
    return max(v for v in early if v), max(late)


def within_p99(first: float | None, last: float | None) -> bool:
    if first is None or last is None:
        return False
    return last <= max(P99_TOLERANCE[0] * first, first + P99_TOLERANCE[1])


def sender_growth(run: dict, workload: str) -> int:
    """How many more connections the workload's sender held at the end of the last interval than the first."""
    series = [row for row in run["senders"].get(workload, {}).get("series", []) if row["end_s"] <= SECONDS + 1e-6]
    return max(0, series[-1]["open"] - series[0]["open"]) if series else 0


def soak(bundles: dict, workdir: Path, logs: Path) -> dict:
    from pipelines.local_stack import LocalStack

    bodies = {w: overload.request_body(w, folder) for w, (folder, _) in bundles.items()}
    with LocalStack({w: str(folder) for w, (folder, _) in bundles.items()}, ports="ephemeral", log_dir=logs,
                    drift_dir=logs / "drift") as stack:
        urls = {w: stack.endpoints[w].infer_url for w in bundles}
        capacity = {}
        for w in bundles:  # each alone, before the soak
            capacity[w] = overload.unloaded(urls[w], bodies[w], w, seconds=CAPACITY_SECONDS[w])
            print(f"{w}: capacity {capacity[w]['rps']:.0f} req/s, p99 {capacity[w]['p99_ms']:.1f} ms "
                  f"(wrk -c{overload.CONNECTIONS[w]}, {CAPACITY_SECONDS[w]} s, load {capacity[w]['load1']:.2f})",
                  flush=True)
        rates = {w: SHARES[w] * capacity[w]["rps"] for w in bundles}
        print(f"  the stack settled in {settle():.0f} s after the capacity runs", flush=True)
        calibration = calibrate(urls, bodies, rates, workdir) if TARGET_BUSY > 0 else []
        if calibration:
            rates = calibration[-1]["next_rates"]
        print("soaking: " + ", ".join(f"{w} at {r:.1f} req/s ({r / capacity[w]['rps']:.2f} of its capacity)"
                                      for w, r in rates.items())
              + f" for {SECONDS} s, a sample every {INTERVAL_S:g} s", flush=True)
        t0 = time.monotonic() + 1.0
        samples = [{"t_s": 0.0, "load1": overload.load1(), "usage": overload.stack_usage(stack), "cpu_busy": None}]
        jiffies = cpu_jiffies()
        senders = {w: overload.Sender(urls[w], bodies[w], rates[w], SECONDS, INTERVAL_S, t0, workdir) for w in bundles}
        for k in range(1, int(SECONDS // INTERVAL_S) + 1):  # bounded: one sample per interval
            time.sleep(max(0.0, t0 + k * INTERVAL_S - time.monotonic()))
            now = cpu_jiffies()  # the shares are meant to keep the machine about half busy: this says whether they did
            sample = {"t_s": k * INTERVAL_S, "load1": overload.load1(), "usage": overload.stack_usage(stack),
                      "cpu_busy": busy_share(jiffies, now)}
            jiffies = now
            samples.append(sample)
            print(f"  {sample['t_s']:>6.0f} s  load {sample['load1']:.2f}  cpu {100 * (sample['cpu_busy'] or 0):.0f}% busy  "
                  + "  ".join(f"{name.split('/')[0][:5]}/{name.split('/', 1)[1]} {u['rss_mib'] or 0:.0f} MiB "
                              f"{u['fds'] or 0} fds {cpu_percent(samples[-2]['usage'], sample['usage'], name)}"
                              for name, u in sample["usage"].items()), flush=True)
        results = {w: s.result() for w, s in senders.items()}
        alive = stack.alive()
    return {"capacity": capacity, "calibration": calibration, "rates": rates,
            "shares_of_capacity": {w: rates[w] / capacity[w]["rps"] for w in bundles},
            "samples": samples, "senders": results, "alive_after": alive}


def calibrate(urls: dict, bodies: dict, rates: dict, workdir: Path) -> list[dict]:
    """Scale every rate by one factor, a step at a time, until the whole machine's CPU is about ``TARGET_BUSY``
    busy. Below capacity a request costs more CPU than at it (the predictors form smaller batches), so shares of
    throughput say little about how busy the machine is; this is what makes the soak's "half capacity" half of
    the machine. The ratio between the workloads' rates is kept."""
    steps = []
    for step in range(1, CALIBRATE_STEPS + 1):
        waited = settle() if steps else 0.0  # what the last step left queued (the sidecars' events) is not this one's
        t0 = time.monotonic() + 1.0
        senders = {w: overload.Sender(urls[w], bodies[w], r, CALIBRATE_SECONDS, CALIBRATE_SECONDS, t0, workdir)
                   for w, r in rates.items()}
        time.sleep(max(0.0, t0 + CALIBRATE_WARMUP_S - time.monotonic()))  # read after the step's warm-up
        before = cpu_jiffies()
        time.sleep(max(0.0, t0 + CALIBRATE_SECONDS - time.monotonic()))
        busy = busy_share(before, cpu_jiffies()) or 0.0
        results = {w: s.result() for w, s in senders.items()}
        close = abs(busy - TARGET_BUSY) <= CALIBRATE_TOLERANCE
        factor = 1.0 if close else min(2.0, max(0.25, TARGET_BUSY / max(busy, 0.01)))
        steps.append({"step": step, "settled_s": waited, "rates": dict(rates), "cpu_busy": busy, "factor": factor,
                      "next_rates": {w: r * factor for w, r in rates.items()},
                      "errors": {w: errors(r) for w, r in results.items()},
                      "p99_ms": {w: r["ok_p99_ms"] for w, r in results.items()}})
        print(f"  calibration {step} (after {waited:.0f} s settling): " + ", ".join(f"{w} {r:.1f} req/s" for w, r in rates.items())
              + f" → CPU {100 * busy:.0f}% busy (target {100 * TARGET_BUSY:.0f}% ± {100 * CALIBRATE_TOLERANCE:.0f})"
              + ("" if close else f"; rates × {factor:.2f}"), flush=True)
        rates = steps[-1]["next_rates"]
        if close:
            break
    print(f"  the stack settled in {settle():.0f} s after the calibration", flush=True)
    return steps


def settle(limit_s: float = SETTLE_LIMIT_S) -> float:
    """Wait until the machine's CPU is below ``SETTLE_BUSY`` busy over a second, at most ``limit_s``: a saturating
    run leaves work queued behind it (the drift sidecars' events), which would otherwise be read as the next
    run's cost. Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        before = cpu_jiffies()
        time.sleep(1.0)
        if (busy_share(before, cpu_jiffies()) or 0.0) < SETTLE_BUSY:
            break
    return time.monotonic() - start


def cpu_percent(before: dict, after: dict, name: str) -> str:
    """The share of one core a stack process used between two samples, as text."""
    a, b = before.get(name, {}), after.get(name, {})
    if a.get("cpu_s") is None or b.get("cpu_s") is None or "t" not in a or "t" not in b or b["t"] <= a["t"]:
        return "-"
    return f"{100 * (b['cpu_s'] - a['cpu_s']) / (b['t'] - a['t']):.0f}%"


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in jiffies (``/proc/stat``; idle and iowait are not busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else None


def judge(run: dict) -> dict:
    samples = run["samples"][1:]  # the ends of the intervals
    first, last = samples[0]["usage"], samples[-1]["usage"]
    rss = {}
    for name in first:
        if not first[name].get("rss_mib"):
            continue
        early, late = rss_peaks([x["usage"].get(name, {}).get("rss_mib") for x in samples])
        rss[name] = {"first_mib": first[name]["rss_mib"], "last_mib": last.get(name, {}).get("rss_mib"),
                     "early_peak_mib": early, "late_peak_mib": late,
                     "flat": early is not None and late is not None and within_rss(early, late)}
    fds = {}
    for name in first:
        if first[name].get("fds") is None:
            continue
        # a transformer holds one descriptor per client connection: the sender's own growth is allowed
        allowance = FD_TOLERANCE + (sender_growth(run, name.split("/")[0]) if name.endswith("/transformer") else 0)
        got = last.get(name, {}).get("fds")
        fds[name] = {"first": first[name]["fds"], "last": got, "allowance": allowance,
                     "flat": got is not None and got - first[name]["fds"] <= allowance}
    latency, error_count = {}, {}
    for w, result in run["senders"].items():
        series = [row for row in result["series"] if row["end_s"] <= SECONDS + 1e-6]
        latency[w] = {"first_p99_ms": series[0]["ok_p99_ms"] if series else None,
                      "last_p99_ms": series[-1]["ok_p99_ms"] if series else None}
        latency[w]["flat"] = within_p99(latency[w]["first_p99_ms"], latency[w]["last_p99_ms"])
        error_count[w] = errors(result)  # the whole run, the drain after the last interval included
    return {"rss": rss, "fds": fds, "latency": latency, "errors": error_count,
            "verdicts": {"rss_flat": all(v["flat"] for v in rss.values()),
                         "fds_flat": all(v["flat"] for v in fds.values()),
                         "latency_flat": all(v["flat"] for v in latency.values()),
                         "no_errors": all(v == 0 for v in error_count.values()),
                         "all_processes_alive": all(run["alive_after"].values())}}


def report(run: dict, judged: dict) -> None:
    ms = overload.ms
    workloads = list(run["senders"])
    print("\nrequests per interval (completed in it)")
    print(f"  {'end':>7}" + "".join(f" | {w[:13]:>13} {'ok/s':>7} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} "
                                     f"{'lag p99':>7} {'conns':>5}" for w in workloads))
    series = {w: {round(row["end_s"], 3): row for row in run["senders"][w]["series"]} for w in workloads}
    for sample in run["samples"][1:]:
        line = f"  {sample['t_s']:>6.0f}s"
        for w in workloads:
            row = series[w].get(round(sample["t_s"], 3))
            if row is None:
                line += f" | {'-':>13} {'-':>7} {'-':>6} {'-':>8} {'-':>8} {'-':>7} {'-':>5}"
                continue
            line += (f" | {'':>13} {row['ok'] / INTERVAL_S:>7.1f} {errors(row):>6} {ms(row['ok_p50_ms']):>8} "
                     f"{ms(row['ok_p99_ms']):>8} {ms(row['send_lag_p99_ms']):>7} {row['open']:>5}")
        print(line)
    names = list(run["samples"][0]["usage"])
    print("\nRSS MiB / open descriptors of every stack process (sampled at the end of each interval; 0 s: before)")
    print(f"  {'end':>7}" + "".join(f" {n:>26}" for n in names) + f" {'load':>6}")
    for sample in run["samples"]:
        print(f"  {sample['t_s']:>6.0f}s" + "".join(
            f" {ms(sample['usage'].get(n, {}).get('rss_mib')):>17} / {sample['usage'].get(n, {}).get('fds') or '-':>6}"
            for n in names) + f" {sample['load1']:>6.2f}")
    v = judged["verdicts"]
    print("\nverdict (last interval against the first)")
    for name, r in judged["rss"].items():
        print(f"  RSS {name:<40} peak {ms(r['early_peak_mib'])} → {ms(r['late_peak_mib'])} MiB, first third "
              f"against last (tolerance {RSS_TOLERANCE[0]:.0%} or {RSS_TOLERANCE[1]:g} MiB; samples "
              f"{ms(r['first_mib'])} → {ms(r['last_mib'])}) {overload.verdict(r['flat'])}")
    for name, r in judged["fds"].items():
        why = f": {FD_TOLERANCE} + the sender's connection growth" if name.endswith("/transformer") else ""
        print(f"  fds {name:<40} {r['first']} → {r['last']} (tolerance {r['allowance']}{why}) "
              f"{overload.verdict(r['flat'])}")
    for w, r in judged["latency"].items():
        s = run["senders"][w]
        print(f"  p99 {w:<40} {ms(r['first_p99_ms'])} → {ms(r['last_p99_ms'])} ms (tolerance {P99_TOLERANCE[0]:g}x "
              f"or +{P99_TOLERANCE[1]:g} ms) {overload.verdict(r['flat'])}; whole run: {s['ok']} answered of "
              f"{s['sent']} sent, p50 {ms(s['ok_p50_ms'])} ms, p99 {ms(s['ok_p99_ms'])} ms")
    for w, n in judged["errors"].items():
        s = run["senders"][w]
        print(f"  errors {w:<37} {n} (statuses {s['statuses']}, connect {s['connect_errors']}, read "
              f"{s['read_errors']}, timeouts {s['timeouts']}, unsent {s['unsent']}) {overload.verdict(n == 0)}")
    flat = v["rss_flat"] and v["fds_flat"] and v["latency_flat"] and v["no_errors"] and v["all_processes_alive"]
    print(f"  every process alive after: {overload.verdict(v['all_processes_alive'])}")
    print("  CPU of each stack process over the soak, share of one core: " + ", ".join(
        f"{name} {cpu_percent(run['samples'][0]['usage'], run['samples'][-1]['usage'], name)}" for name in names))
    busy = [x["cpu_busy"] for x in run["samples"][1:] if x.get("cpu_busy") is not None]
    if busy:
        print(f"  the machine's CPU was {100 * sum(busy) / len(busy):.0f}% busy on average ({100 * min(busy):.0f}…"
              f"{100 * max(busy):.0f}% by interval; "
              + (f"the calibration aimed at {100 * TARGET_BUSY:.0f}%" if TARGET_BUSY > 0 else "no calibration: the shares as given")
              + "; near 100%, the soak measured a saturated machine, not a steady one)")
    print(f"  soak: {'FLAT' if flat else 'NOT FLAT'} "
          f"({', '.join(k for k, ok in v.items() if not ok) or 'every check passed'})")


def main() -> int:
    home, logs = overload.bench_home("soak")
    workloads = [w for w, share in SHARES.items() if share > 0]
    print(f"soak benchmark: {SECONDS} s, a sample every {INTERVAL_S:g} s; rates scaled until the CPU is "
          f"{100 * TARGET_BUSY:.0f}% busy (0: off), from shares of capacity "
          f"{ {w: SHARES[w] for w in workloads} }; open-loop sender (overload.py, one process per workload); capacity "
          f"from wrk ({ {w: CAPACITY_SECONDS[w] for w in workloads} } s, { {w: overload.CONNECTIONS[w] for w in workloads} } "
          f"connections); loopback only; {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {logs}", flush=True)
    if SECONDS < 2 * INTERVAL_S:
        print(f"BENCH_SOAK_SECONDS ({SECONDS}) must hold at least two intervals of {INTERVAL_S:g} s")
        return 0
    with tempfile.TemporaryDirectory(prefix="clinops-soak-") as scratch:
        workdir = Path(scratch)
        bundles = overload.bundles(workdir, workloads)
        for w, (_, source) in bundles.items():
            print(f"{w} model: {source}", flush=True)
        run = soak(bundles, workdir, logs)
    judged = judge(run)
    report(run, judged)
    out = home / "soak.json"
    out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                           "load": os.getloadavg()},
                               "settings": {"seconds": SECONDS, "interval_s": INTERVAL_S, "shares": SHARES,
                                            "target_busy": TARGET_BUSY, "calibrate_seconds": CALIBRATE_SECONDS,
                                            "capacity_seconds": CAPACITY_SECONDS,
                                            "capacity_connections": overload.CONNECTIONS,
                                            "generator": "open-loop asyncio/uvloop sender (overload.py), a process "
                                                         "per workload"},
                               "tolerances": {"rss": RSS_TOLERANCE, "fds": FD_TOLERANCE, "p99": P99_TOLERANCE},
                               "models": {w: source for w, (_, source) in bundles.items()},
                               **run, "judged": judged, "finished_at": time.time()}, indent=2))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
