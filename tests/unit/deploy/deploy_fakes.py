"""A fake KServeClient (the calls the deploy step makes, recorded) and a fake Prometheus HTTP API server."""

from __future__ import annotations

import copy
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def merge(target: dict, patch: dict) -> dict:
    """JSON merge patch (RFC 7386), what the Kubernetes API applies for KServeClient.patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKServe:
    """Holds InferenceServices as the API would (dicts); each patch or create makes new revisions."""

    def __init__(self, existing: dict | None = None, ready: bool = True):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[tuple] = []
        self.ready = ready
        self.revisions = 0
        if existing is not None:
            self._revise(existing)
            self.objects[(existing["metadata"]["namespace"], existing["metadata"]["name"])] = existing

    def _revise(self, obj: dict, changed=("predictor", "transformer")) -> None:
        """A new revision of each component whose spec changed; the others keep theirs."""
        self.revisions += 1
        components = obj.setdefault("status", {}).setdefault("components", {})
        for c in ("predictor", "transformer"):
            if c in obj["spec"] and c in changed:
                components[c] = {"latestCreatedRevision": f"{obj['metadata']['name']}-{c}-{self.revisions:05d}"}

    def get(self, name, namespace=None, **_):
        self.calls.append(("get", name, namespace))
        if (namespace, name) not in self.objects:
            raise RuntimeError("Exception when calling CustomObjectsApi->get_namespaced_custom_object: (404)\n"
                               "Reason: Not Found\n")
        return copy.deepcopy(self.objects[(namespace, name)])

    def create(self, inferenceservice, namespace=None, **_):
        from kubernetes.client import ApiClient

        body = ApiClient().sanitize_for_serialization(inferenceservice)
        self.calls.append(("create", body, namespace))
        body["metadata"]["generation"] = 1
        self._revise(body)
        self.objects[(namespace, body["metadata"]["name"])] = body
        return body

    def patch(self, name, inferenceservice, namespace=None, **_):
        self.calls.append(("patch", name, copy.deepcopy(inferenceservice), namespace))
        obj = merge(self.objects[(namespace, name)], inferenceservice)
        obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1  # every spec change
        if "storageUri" in json.dumps(inferenceservice):
            self._revise(obj, [c for c, spec in inferenceservice["spec"].items() if "STORAGE_URI" in json.dumps(spec)
                               or "storageUri" in json.dumps(spec)])
        return copy.deepcopy(obj)

    def wait_isvc_ready(self, name, namespace=None, timeout_seconds=600, expected_generation=None, **_):
        self.calls.append(("wait", name, namespace))
        # without the generation just written, Ready may be the status of the spec before the write
        assert expected_generation == self.objects[(namespace, name)]["metadata"]["generation"]
        if not self.ready:
            raise RuntimeError(f"Timeout to start the InferenceService {name}. The InferenceService is as following: ...")

    def patches(self) -> list[dict]:
        return [call[2] for call in self.calls if call[0] == "patch"]


class FakePrometheus:
    """A real HTTP server speaking the /api/v1/query answer format; ``answers`` maps a substring of the
    PromQL to the value returned (None: an empty vector; ("http", code): that HTTP error)."""

    def __init__(self, answers: dict):
        self.answers = answers
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query).get("query", [""])[0]
                outer.queries.append(query)
                if url.path != "/api/v1/query":
                    return self._send(404, {"status": "error", "error": "not found"})
                for key, value in outer.answers.items():
                    if key in query:
                        if isinstance(value, tuple):
                            return self._send(value[1], {"status": "error", "errorType": "bad_data",
                                                      "error": "parse error"})
                        result = [] if value is None else [{"metric": {}, "value": [1700000000.0, str(value)]}]
                        return self._send(200, {"status": "success",
                                                "data": {"resultType": "vector", "result": result}})
                return self._send(200, {"status": "success", "data": {"resultType": "vector", "result": []}})

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
