"""Part (3c) of ``make bench-drift``: the whole heart-disease stack (transformer, predictor, drift sidecar with
fsync on) offered 10x the serving rate by the open-loop sender of ``make bench-overload``
(:class:`overload.Sender`), the stack on core 0 and the sender on the other. The transformer's
``--max_in_flight_requests`` is sized as ``make bench-overload`` sizes it (its capacity there x its unloaded
median latency, measured first on a stack of its own), so that what it cannot serve is refused at once and the
sender's connections come back to it: with the runtime's default bound, a one-core stack offered 15,500 req/s
kept 8,000 connections waiting and the sender put only 6x on the wire. What the stack answers, it answers; every
predictor call it makes is logged, as KServe's agent in front of the predictor logs every call it forwards.
The count that matters: every call's request and response event in the sidecar's observation log, once each,
with all its rows, and nothing dropped or still queued by the request logger.
"""

from __future__ import annotations

import time
from pathlib import Path

from overload import MAX_SEND_LAG_P99_MS, Sender, on_stack_cores, request_bound, stack_args, unloaded
from serve_throughput import metric_sum, per_feature_body, scrape

from bundle import observations
from pipelines.local_stack import LocalStack

DRAIN_S = 60.0  # after the sender stops: how long the logger may take to send what it has queued


def drained(transformer_metrics: str, sidecar_metrics: str, deadline: float) -> tuple[dict, dict]:
    """Both sides' metrics once the logger's queue is empty and the sidecar's count stands still (or at the
    deadline)."""
    last = None
    while True:
        t, s = scrape(transformer_metrics), scrape(sidecar_metrics)
        now = (metric_sum(s, "clinops_drift_events_processed_total"), metric_sum(t, "clinops_request_log_sent_total"))
        if (metric_sum(t, "clinops_request_log_queued") == 0 and now == last) or time.monotonic() > deadline:
            return t, s
        last = now
        time.sleep(1.0)


def logged(log_dir: Path) -> dict:
    """Records and rows in the sidecar's observation log, by event type, and ids written more than once."""
    out = {kind: {"records": 0, "rows": 0} for kind in ("request", "response")}
    ids: dict[tuple[str, str], int] = {}
    for record in observations.read(log_dir):
        out[record.type]["records"] += 1
        out[record.type]["rows"] += len(record.rows)
        ids[(record.id, record.type)] = ids.get((record.id, record.type), 0) + 1
    out["written_twice"] = sum(1 for n in ids.values() if n > 1)
    return out


def through_the_stack(bundle: Path, serve_rps: float, seconds: float, workdir: Path, logs: Path) -> dict:
    rate, body = 10 * serve_rps, per_feature_body()
    with on_stack_cores(LocalStack({"heart-disease": str(bundle)}, ports="ephemeral",
                                   log_dir=logs / "stack-10x-capacity", drift=False)) as first:
        base = unloaded(first.endpoints["heart-disease"].infer_url, body, "heart-disease")
    bound = request_bound(base)
    drift_dir = workdir / "stack-10x-drift"
    stack = LocalStack({"heart-disease": str(bundle)}, ports="ephemeral", log_dir=logs / "stack-10x",
                       drift_dir=drift_dir,
                       extra_args={**stack_args("heart-disease", bound), "heart-disease/drift": ["--fsync"]})
    with on_stack_cores(stack):
        endpoint = stack.endpoints["heart-disease"]
        sender = Sender(endpoint.infer_url, body, rate, seconds, seconds, time.monotonic() + 1.0, workdir)
        sent = sender.result()
        t, s = drained(f"{endpoint.rest_url}/metrics", f"{endpoint.drift_url}/metrics", time.monotonic() + DRAIN_S)
        alive = stack.alive()
    log = logged(drift_dir / "heart-disease")
    calls = metric_sum(t, "clinops_predictor_calls_total", outcome="ok")
    rows_predicted = metric_sum(t, "clinops_batch_size_sum")
    dropped = metric_sum(t, "clinops_request_log_dropped_total")
    result = {
        "offered_rps": rate, "seconds": seconds, "capacity_one_core": base, "max_in_flight_requests": bound,
        "on_the_wire_rps": (sent["sent"] - sent["unsent"]) / seconds,
        # the sender kept time as ``make bench-overload`` judges it: 99% of what was due sent, on time
        "kept_time": (sent["unsent"] <= 0.01 * sent["sent"]
                      and (sent["send_lag_p99_ms"] or 0) <= MAX_SEND_LAG_P99_MS),
        "sender": {k: v for k, v in sent.items() if k != "series"},
        "answered_200": sent["ok"], "predictor_calls_ok": calls, "rows_predicted": rows_predicted,
        "logger_sent": {k: metric_sum(t, "clinops_request_log_sent_total", type=k) for k in ("request", "response")},
        "logger_dropped": dropped, "logger_queued_at_end": metric_sum(t, "clinops_request_log_queued"),
        "sidecar_processed": {k: metric_sum(s, "clinops_drift_events_processed_total", type=k)
                              for k in ("request", "response")},
        "sidecar_duplicates": metric_sum(s, "clinops_drift_events_duplicate_total"),
        "sidecar_refused": {k.split('reason="')[1].split('"')[0]: v for k, v in s.items()
                            if k.startswith("clinops_drift_events_rejected_total")},
        "log": log, "alive_after": alive,
    }
    # an event is lost when a predictor call has no record of its kind in the log, or a record lacks rows
    result["lost_events"] = sum(max(0.0, calls - log[k]["records"]) for k in ("request", "response"))
    result["lost_rows"] = max(0.0, rows_predicted - log["request"]["rows"])
    result["zero_lost"] = (dropped == 0 and result["logger_queued_at_end"] == 0 and result["lost_events"] == 0
                           and result["lost_rows"] == 0 and log["written_twice"] == 0
                           and log["request"]["records"] == log["response"]["records"] == calls
                           and log["request"]["rows"] >= sent["ok"] and all(alive.values()) and result["kept_time"])
    return result


def print_through_the_stack(r: dict) -> None:
    s, log = r["sender"], r["log"]
    base = r["capacity_one_core"]
    print(f"c) the whole stack on core 0 (alone there: {base['rps']:.0f} req/s, p50 {base['p50_ms']:.1f} ms; "
          f"max_in_flight_requests {r['max_in_flight_requests']}), the open-loop sender on core 1: "
          f"{r['offered_rps']:.0f} req/s scheduled for {r['seconds']:.0f} s, {r['on_the_wire_rps']:.0f} put on the "
          f"wire (unsent {s['unsent']}, send lag p99 {s['send_lag_p99_ms'] or 0:.1f} ms: kept time "
          f"{'yes' if r['kept_time'] else 'no'}); answered 200 {s['ok']}, 503 {s['shed']}, other 5xx "
          f"{s['other_5xx']}, connection errors {s['connect_errors'] + s['read_errors'] + s['timeouts']}")
    print(f"   predictor calls {r['predictor_calls_ok']:.0f} ({r['rows_predicted']:.0f} rows); logger sent "
          f"{r['logger_sent']['request']:.0f} + {r['logger_sent']['response']:.0f}, dropped {r['logger_dropped']:.0f}, "
          f"queued at the end {r['logger_queued_at_end']:.0f}; sidecar processed {r['sidecar_processed']['request']:.0f} + "
          f"{r['sidecar_processed']['response']:.0f}, duplicates {r['sidecar_duplicates']:.0f}, refused "
          f"{r['sidecar_refused'] or 'none'}")
    print(f"   in the observation log: {log['request']['records']} requests with {log['request']['rows']} rows, "
          f"{log['response']['records']} responses with {log['response']['rows']} rows, written twice "
          f"{log['written_twice']}; lost events {r['lost_events']:.0f}, lost rows {r['lost_rows']:.0f}; every "
          f"process alive {all(r['alive_after'].values())}  {'PASS' if r['zero_lost'] else 'MISS'}")
