"""A detector with the real ones' interface (no alibi-detect) and events as the KServe agent sends them."""

import json

import numpy as np

from bundle.observations import REQUEST
from inference.drift import events


class FakeDetector:
    """The detectors' interface without alibi-detect: keeps the request tensor ``x``, and says a window
    drifted when its mean first feature is above ``drift_above``."""

    kind = "FakeDrift"

    def __init__(self, needs=frozenset({REQUEST}), drift_above: float = 1e9, fail: bool = False):
        self.needs, self.drift_above, self.fail = needs, drift_above, fail
        self.windows = []

    def extract(self, event):
        if event.kind not in self.needs:
            return None
        return events.tensor(event.body, event.kind, "x" if event.kind == REQUEST else None)

    def verdict(self, window):
        if self.fail:
            raise RuntimeError("the detector broke")
        self.windows.append(window)
        x = window.present("inputs")
        mean = float(np.nanmean(x[:, 0])) if len(x) else 0.0
        return {"is_drift": mean > self.drift_above, "tested": True,
                "features": [{"name": "x0", "test": "KS", "p_val": 0.5, "distance": 0.1}], "score": None,
                "threshold": {"features": 0.05}, "rows_tested": {"inputs": len(x)}, "detector_seconds": 0.001}


def event(event_id: str, rows, kind: str = REQUEST) -> tuple[dict, bytes]:
    """A binary-mode CloudEvent as the KServe agent sends it, with a V2 body holding ``rows``."""
    rows = np.asarray(rows, dtype=np.float64)
    ce_type = events.REQUEST_TYPE if kind == REQUEST else events.RESPONSE_TYPE
    key = "inputs" if kind == REQUEST else "outputs"
    data = [None if np.isnan(v) else float(v) for v in rows.ravel()]
    body = {"id": event_id, key: [{"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": data}]}
    headers = {"ce-specversion": "1.0", "ce-id": event_id, "ce-type": ce_type, "ce-source": "http://predictor/",
               "content-type": "application/json", "ce-inferenceservicename": "heart-disease"}
    return headers, json.dumps(body).encode()
