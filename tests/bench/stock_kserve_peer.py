"""The stock KServe pattern, as a benchmark peer: a plain ``kserve.Model`` transformer forwarding over
V2 to a plain ``kserve.Model`` scikit-learn predictor (no batching, no envelope checks), over either of
the hops stock KServe offers: REST JSON (``--predictor_protocol v2``) or ``grpc-v2`` (the tensor as raw
bytes, ``raw_input_contents``).

``python stock_kserve_peer.py predictor --model_dir DIR --http_port P --grpc_port G``
``python stock_kserve_peer.py transformer --predictor_host H:P|H:G --predictor_protocol v2|grpc-v2 --http_port P``
"""

from __future__ import annotations

import sys

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

    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir")
    args, _ = parser.parse_known_args()
    model = StockPredictor(args.model_name, args.model_dir) if role == "predictor" else StockTransformer(args.model_name)
    kserve.ModelServer(enable_grpc=role == "predictor").start([model])


if __name__ == "__main__":
    main()
