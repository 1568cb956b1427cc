"""The stock KServe pattern, as a benchmark peer: a plain ``kserve.Model`` transformer forwarding over
V2 to a plain ``kserve.Model`` scikit-learn predictor (no batching, no envelope checks), over either of
the hops stock KServe offers: REST JSON (``--predictor_protocol v2``) or ``grpc-v2`` (the tensor as raw
bytes, ``raw_input_contents``).

For pneumonia, one plain ``kserve.Model`` that does what a stock custom model server does with the same
TorchScript model: base64 JPEG/PNG → Pillow decode, grey/RGB, bilinear resize → uint8 tensor → normalise →
forward → softmax, one request at a time on the server's event loop (stock KServe batches only in its agent),
at the torch thread count it is given. With ``--freeze`` it runs the graph our predictor serves on CPU instead
(``torch.jit.freeze`` in channels_last): a fairness row, not the stock peer.

``python stock_kserve_peer.py predictor --model_dir DIR --http_port P --grpc_port G``
``python stock_kserve_peer.py transformer --predictor_host H:P|H:G --predictor_protocol v2|grpc-v2 --http_port P``
``python stock_kserve_peer.py pneumonia --model_dir DIR --image C,H,W --mean M,.. --std S,.. --num_threads T [--freeze] --http_port P``
"""

from __future__ import annotations

import sys
import uuid

import numpy as np

FEATURES = ["age", "sex", "cp", "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca",
            "thal"]


def main() -> None:
    role = sys.argv.pop(1)
    import argparse

    import joblib
    import kserve
    from kserve import model_server
    from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

    class StockPredictor(kserve.Model):
        def __init__(self, name, model_dir):
            super().__init__(name)
            self.model = joblib.load(f"{model_dir}/model.joblib")
            self.ready = True

        def predict(self, payload, headers=None, response_headers=None):
            proba = self.model.predict_proba(payload.inputs[0].as_numpy())
            out = InferOutput("predict_proba", list(proba.shape), "FP64")
            out.set_data_from_numpy(proba, binary_data=False)
            return InferResponse(payload.id, self.name, [out])

    class StockTransformer(kserve.Model):
        def __init__(self, name):
            super().__init__(name)
            self.ready = True

        def preprocess(self, payload, headers=None):
            by_name = {i.name: i.as_numpy().astype(np.float64) for i in payload.inputs}
            rows = np.stack([by_name[f] for f in FEATURES], axis=1)
            tensor = InferInput("features", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows, binary_data=self.predictor_config.protocol == "grpc-v2")
            return InferRequest(self.name, [tensor], request_id=payload.id)

        def postprocess(self, result, headers=None, response_headers=None):
            p = result.outputs[0].as_numpy()[:, 1].astype(np.float32)
            outputs = []
            for name, array, datatype in (("probability", p, "FP32"),
                                          ("prediction", (p >= 0.5).astype(np.int32), "INT32")):
                out = InferOutput(name, list(array.shape), datatype)
                out.set_data_from_numpy(array, binary_data=False)
                outputs.append(out)
            return InferResponse(result.id, self.name, outputs)

    class StockPneumonia(kserve.Model):
        def __init__(self, name, model_dir, image, mean, std, threads, freeze):
            import torch

            super().__init__(name)
            torch.set_num_threads(threads)
            self.torch = torch
            self.module = torch.jit.load(f"{model_dir}/model.pt", map_location="cpu").eval()
            self.memory_format = torch.channels_last if freeze else torch.contiguous_format
            if freeze:
                self.module = torch.jit.freeze(self.module.to(memory_format=torch.channels_last))
            self.channels, self.height, self.width = image
            self.mean = torch.tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
            self.std = torch.tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
            self.ready = True

        def decode(self, data) -> np.ndarray:
            import base64
            import io

            from PIL import Image

            raw = base64.b64decode(data)
            image = Image.open(io.BytesIO(raw)).convert("L" if self.channels == 1 else "RGB")
            pixels = np.asarray(image.resize((self.width, self.height), Image.BILINEAR))
            return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

        def predict(self, payload, headers=None, response_headers=None):
            torch = self.torch
            pixels = np.stack([self.decode(item) for item in payload.inputs[0].data])
            with torch.inference_mode():
                x = torch.from_numpy(pixels).float().div_(255.0).sub_(self.mean).div_(self.std)
                x = x.contiguous(memory_format=self.memory_format)
                logits = self.module(x)
                logits = logits[0] if isinstance(logits, tuple) else logits  # a bundle's model: (logits, embedding)
                proba = torch.softmax(logits, dim=1).numpy()
            out = InferOutput("probabilities", list(proba.shape), "FP32")
            out.set_data_from_numpy(proba, binary_data=False)
            return InferResponse(payload.id or uuid.uuid4().hex, self.name, [out])  # KServe needs a response id

    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir")
    parser.add_argument("--image", type=lambda t: [int(v) for v in t.split(",")], help="C,H,W")
    parser.add_argument("--mean", type=floats)
    parser.add_argument("--std", type=floats)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--freeze", action="store_true")
    args, _ = parser.parse_known_args()
    if role == "pneumonia":
        model = StockPneumonia(args.model_name, args.model_dir, args.image, args.mean, args.std, args.num_threads,
                               args.freeze)
    elif role == "predictor":
        model = StockPredictor(args.model_name, args.model_dir)
    else:
        model = StockTransformer(args.model_name)
    kserve.ModelServer(enable_grpc=role == "predictor").start([model])


if __name__ == "__main__":
    main()
