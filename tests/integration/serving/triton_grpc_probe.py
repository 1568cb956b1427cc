"""Runs one ``tritonclient.grpc`` inference in its own process.

tritonclient.grpc and kserve register the same protobuf symbols (``inference.*``) in the default
descriptor pool, so the two cannot be imported into one interpreter. Usage:
``python triton_grpc_probe.py < request.json`` → JSON on stdout.
"""

import base64
import io
import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main() -> None:
    spec = json.load(sys.stdin)
    client = grpcclient.InferenceServerClient(spec["target"])
    inputs = []
    for item in spec["inputs"]:
        array = np.load(io.BytesIO(base64.b64decode(item["npy"])), allow_pickle=True)
        tensor = grpcclient.InferInput(item["name"], list(array.shape), item["datatype"])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        result = client.infer(spec["model"], inputs, client_timeout=30)
    except InferenceServerException as err:
        print(json.dumps({"status": err.status(), "message": err.message()}))
        return
    outputs = {}
    for output in result.get_response().outputs:
        values = result.as_numpy(output.name)
        outputs[output.name] = [v.decode() if isinstance(v, bytes) else v for v in values.tolist()]
    print(json.dumps({"status": "OK", "outputs": outputs, "ready": client.is_model_ready(spec["model"])}))


if __name__ == "__main__":
    main()
