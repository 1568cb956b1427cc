"""The sidecar's Prometheus metrics (one registry per service, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

FEATURE_GAUGE_LIMIT = 64  # per-feature p-value gauges for tabular detectors; wide embeddings get a summary


class DriftMetrics:
    def __init__(self, workload: str):
        self.registry = CollectorRegistry()
        labels = {"workload": workload}
        r = self.registry
        self.received = Counter("clinops_drift_events_received", "Logged inference events received.",
                                ["workload", "type"], registry=r)
        self.processed = Counter("clinops_drift_events_processed", "Events kept in the observation log.",
                                 ["workload", "type"], registry=r)
        self.ignored = Counter("clinops_drift_events_ignored", "Events the detector does not need "
                               "(e.g. pneumonia requests: images are never kept); acknowledged.", ["workload", "type"],
                               registry=r)
        self.duplicates = Counter("clinops_drift_events_duplicate", "Events received again (a sender's retry); "
                                  "acknowledged, not counted twice.", ["workload"], registry=r)
        self.rejected = Counter("clinops_drift_events_rejected", "Events refused, by reason "
                                "(4xx: malformed; 429/503: backpressure, the sender retries).",
                                ["workload", "reason"], registry=r)
        self.is_drift = Gauge("clinops_drift_is_drift", "1 if the last tested window drifted.", ["workload"],
                              registry=r)
        self.windows = Counter("clinops_drift_windows", "Windows tested, by verdict.", ["workload", "drift"],
                               registry=r)
        self.p_value = Gauge("clinops_drift_p_value", "Last window's p-value per feature (and 'score').",
                             ["workload", "feature"], registry=r)
        self.min_p_value = Gauge("clinops_drift_min_p_value", "Smallest p-value of the last window.", ["workload"],
                                 registry=r)
        self.drifted_share = Gauge("clinops_drift_drifted_feature_share", "Share of features whose own p-value is "
                                   "below the corrected threshold in the last window.", ["workload"], registry=r)
        self.window_fill = Gauge("clinops_drift_window_rows", "Rows in the window being filled.", ["workload"],
                                 registry=r)
        self.window_size = Gauge("clinops_drift_window_size", "Rows that close a window.", ["workload"], registry=r)
        self.pending = Gauge("clinops_drift_pending_halves", "Requests or responses waiting for their partner.",
                             ["workload"], registry=r)
        self.backlog = Gauge("clinops_drift_windows_queued", "Closed windows waiting for the detector.",
                             ["workload"], registry=r)
        self.log_bytes = Gauge("clinops_drift_log_bytes", "Size of the observation log.", ["workload"], registry=r)
        self.latency = Histogram("clinops_drift_detector_seconds", "Detector time per window.", ["workload"],
                                 registry=r, buckets=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3))
        self.detector_errors = Counter("clinops_drift_detector_errors", "Windows the detector failed on "
                                       "(recorded as untested verdicts).", ["workload"], registry=r)
        self.alerts = Counter("clinops_drift_alerts_sent", "Drift CloudEvents delivered to the alert URL, by outcome.",
                              ["workload", "outcome"], registry=r)
        self.labels = labels
        self._p_names: set[str] = set()  # features whose p-value gauge the last verdict set

    def record_verdict(self, verdict: dict) -> None:
        w = self.labels["workload"]
        self.is_drift.labels(w).set(1 if verdict["is_drift"] else 0)
        self.windows.labels(w, "true" if verdict["is_drift"] else "false").inc()
        self.latency.labels(w).observe(verdict["detector_seconds"])
        tests = verdict["features"] + ([verdict["score"]] if verdict["score"] else [])
        if not tests:
            return
        self.min_p_value.labels(w).set(min(t["p_val"] for t in tests))
        threshold = verdict["threshold"].get("features")
        if "dims" in verdict:
            self.drifted_share.labels(w).set(verdict["drifted_dims"] / verdict["dims"])
        elif threshold is not None and verdict["features"]:
            share = sum(t["p_val"] < threshold for t in verdict["features"]) / len(verdict["features"])
            self.drifted_share.labels(w).set(share)
        if len(verdict["features"]) <= FEATURE_GAUGE_LIMIT:
            names = {t["name"] for t in tests}
            for stale in self._p_names - names:  # an embedding reports its lowest dimensions: others change
                self.p_value.remove(w, stale)
            for t in tests:
                self.p_value.labels(w, t["name"]).set(t["p_val"])
            self._p_names = names
