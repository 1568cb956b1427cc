"""The serving part of ``make run``: start the local stack for every workload with a champion bundle,
send a few example V2 requests to each, print the answers, stop the stack.

Heart-disease examples are records a client would send; pneumonia examples are phantom X-rays of the
kind the embedded default trains on (a client's files, drawn from the training side's phantom
generator), in the channels of the bundle's schema.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from bundle import locate, open_bundle
from bundle.schema import ImageSchema
from components.pneumonia.phantom import render
from pipelines import drift_demo
from pipelines.local_stack import LocalStack, Ports, champion_bundles, home_log_dir, s3_config

HEART_EXAMPLES = [
    {"age": 63, "sex": "male", "cp": "asymptomatic", "trestbps": 145, "chol": 233, "fbs": "true",
     "restecg": "lv hypertrophy", "thalach": 150, "exang": "no", "oldpeak": 2.3, "slope": "downsloping",
     "ca": "0", "thal": "fixed defect"},
    {"age": 41, "sex": "female", "cp": "atypical angina", "trestbps": 130, "chol": 204, "fbs": "false",
     "restecg": "normal", "thalach": 172, "exang": "no", "oldpeak": 1.4, "slope": "upsloping", "ca": None,
     "thal": "normal"},
    {"age": 67, "sex": "male", "cp": "asymptomatic", "trestbps": 160, "chol": 286, "fbs": "false",
     "restecg": "lv hypertrophy", "thalach": 108, "exang": "yes", "oldpeak": 1.5, "slope": "flat", "ca": "3",
     "thal": "normal"},
]


def _post(url: str, body: dict, timeout: float = 60) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _outputs(answer: dict) -> dict:
    return {o["name"]: o["data"] for o in answer.get("outputs", [])}


def heart_request(records: list[dict]) -> dict:
    names = list(records[0])
    inputs = []
    for name in names:
        values = [r[name] for r in records]
        text = any(isinstance(v, str) for v in values)
        inputs.append({"name": name, "shape": [len(values)], "datatype": "BYTES" if text else "FP64", "data": values})
    return {"id": "demo-heart-disease", "inputs": inputs}


def bundle_schema(uri: str, workload: str):
    """The typed input schema of the bundle at ``uri`` (an ``s3://`` bundle is fetched into a scratch
    folder, removed once it is read)."""
    return served_bundle(uri, workload).schema


def served_bundle(uri: str, workload: str):
    """The bundle at ``uri``, read (an ``s3://`` bundle is fetched into a scratch folder, removed once read)."""
    with tempfile.TemporaryDirectory(prefix=f"clinops-demo-{workload}-") as scratch:
        folder = locate(uri, workload, s3=s3_config(), cache_dir=Path(scratch))
        return open_bundle(folder, workload)


def example_images(schema: ImageSchema) -> list[tuple[str, bytes]]:
    """Chest-X-ray phantoms like those the embedded default trains on (one NORMAL, two with
    opacities), of assorted sizes, as PNG or JPEG files a client would send."""
    from PIL import Image

    rng = np.random.default_rng(7)
    files = []
    for truth, (h, w), fmt in (("NORMAL", (256, 224), "PNG"), ("PNEUMONIA", (300, 260), "JPEG"),
                               ("PNEUMONIA", (224, 224), "PNG")):
        pixels = (render(rng, h, w, pneumonia=truth == "PNEUMONIA") * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert("L" if schema.image.channels == 1 else "RGB").save(buffer, fmt)
        files.append((f"phantom {truth} {w}x{h} {fmt}", buffer.getvalue()))
    return files


def _heart(endpoint) -> dict:
    status, answer = _post(endpoint.infer_url, heart_request(HEART_EXAMPLES))
    out = _outputs(answer)
    examples = []
    print(f"\n[heart-disease] POST {endpoint.infer_url} → {status}")
    for i, record in enumerate(HEART_EXAMPLES):
        if status != 200:
            break
        example = {"input": record, "probability": out["probability"][i], "prediction": out["prediction"][i],
                   "risk_level": out["risk_level"][i]}
        examples.append(example)
        print(f"  patient {i + 1}: age {record['age']}, {record['sex']}, {record['cp']:<16} → "
              f"P(disease) {example['probability']:.3f}  prediction {example['prediction']}  "
              f"risk {example['risk_level']}")
    bad = dict(HEART_EXAMPLES[0], chol=900)
    bad_status, bad_answer = _post(endpoint.infer_url, heart_request([bad]))
    print(f"  malformed (chol 900) → {bad_status}: {bad_answer.get('error')}")
    return {"status": status, "examples": examples, "rejected_example": {"status": bad_status, **bad_answer}}


def _pneumonia(endpoint, uri: str) -> dict:
    files = example_images(bundle_schema(uri, "pneumonia"))
    body = {"id": "demo-pneumonia", "inputs": [{"name": "image", "shape": [len(files)], "datatype": "BYTES",
                                                 "data": [base64.b64encode(f).decode() for _, f in files]}]}
    status, answer = _post(endpoint.infer_url, body)
    out = _outputs(answer)
    print(f"\n[pneumonia] POST {endpoint.infer_url} → {status}")
    examples = []
    for i, (name, _) in enumerate(files):
        if status != 200:
            break
        example = {"input": name, "probability": out["probability"][i],
                   "label": out["label"][i]}
        examples.append(example)
        print(f"  {example['input']:<32} → P(pneumonia) {example['probability']:.3f}  label {example['label']}")
    bad_status, bad_answer = _post(endpoint.infer_url, {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                                                    "data": [base64.b64encode(b"not a png").decode()]}]})
    print(f"  malformed (not an image) → {bad_status}: {bad_answer.get('error')}")
    return {"status": status, "examples": examples, "rejected_example": {"status": bad_status, **bad_answer}}


def demo_drift_dir() -> Path:
    """The demo's sidecars log apart from those of a ``make serve`` that may be running (two sidecars must
    never append to one buffer), and start empty each time (a window left open by an earlier demo would mix
    into this one's); the folder stays for a look, or ``clinops monitor --log-dir``, afterwards."""
    folder = home_log_dir("demo-drift")
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def run_demo(bundles: dict[str, str] | None = None, ports: dict[str, Ports] | str = "ephemeral") -> dict:
    """Returns ``{"status": "succeeded"|"failed", "workloads": {name: {...}}}`` for the run summary.

    Free ports by default, so the demo never collides with a ``make serve`` already running.
    """
    bundles = bundles if bundles is not None else champion_bundles()
    if not bundles:
        print("[serving] no champion bundle: nothing to serve")
        return {"status": "failed", "error": "no champion bundle", "workloads": {}}
    summary: dict = {"status": "succeeded", "workloads": {}}
    started = time.monotonic()
    try:
        with LocalStack(bundles, ports=ports, log_dir=home_log_dir("demo-logs"), drift_dir=demo_drift_dir()) as stack:
            print(f"[serving] stack up in {time.monotonic() - started:.1f} s:\n{stack.describe()}")
            for workload, endpoint in stack.endpoints.items():
                try:
                    result = _heart(endpoint) if workload == "heart-disease" else _pneumonia(endpoint, bundles[workload])
                except Exception as err:  # keep going: the summary says what failed
                    result = {"status": "error", "error": f"{type(err).__name__}: {err}", "examples": []}
                ok = result.get("status") == 200 and result["rejected_example"]["status"] == 400
                summary["workloads"][workload] = {"endpoint": endpoint.infer_url, "grpc": endpoint.grpc_target,
                                                  "bundle": bundles[workload], "ok": ok, **result}
                if not ok:
                    summary["status"] = "failed"
            for workload, endpoint in stack.endpoints.items():
                try:
                    served = served_bundle(bundles[workload], workload)
                    drift = drift_demo.run(endpoint, workload, served.schema, served.drift.window.size)
                except Exception as err:  # the summary says what failed
                    drift = {"error": f"{type(err).__name__}: {err}", "complete": False}
                summary["workloads"][workload]["drift"] = drift
                if not drift.get("complete"):
                    summary["status"] = "failed"
    except (RuntimeError, TimeoutError) as err:
        print(f"[serving] the stack did not start: {err}")
        return {"status": "failed", "error": str(err), "workloads": summary["workloads"]}
    print(f"[serving] stack stopped; demo {summary['status']} in {time.monotonic() - started:.1f} s")
    return summary


if __name__ == "__main__":
    print(json.dumps(run_demo(), indent=2, default=str))
