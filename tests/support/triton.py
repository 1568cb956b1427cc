"""The Triton gRPC client, called in a child process: its protobuf names clash with kserve's in one process."""

from __future__ import annotations

import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parents[1] / "integration" / "serving" / "triton_grpc_probe.py"


def triton_grpc(target: str, model: str, inputs: list[tuple[str, str, object]]) -> dict:
    """Call ``tritonclient.grpc`` in a child process (see triton_grpc_probe.py)."""
    import base64
    import io
    import json
    import subprocess

    import numpy as np

    encoded = []
    for name, datatype, array in inputs:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        encoded.append({"name": name, "datatype": datatype, "npy": base64.b64encode(buffer.getvalue()).decode()})
    done = subprocess.run([sys.executable, str(PROBE)], input=json.dumps({"target": target, "model": model,
                                                                          "inputs": encoded}),
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])
