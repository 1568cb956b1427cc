"""A batch bigger than gRPC's usual message limit still travels transformer → predictor over gRPC."""

import base64
import json
import urllib.request

import numpy as np
import pytest
from images import encode, random_image
from support import sample_bundles

from pipelines.local_stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_sixty_four_full_size_images_in_one_request_over_grpc_to_the_predictor(tmp_path):
    bundle = sample_bundles.write_pneumonia(tmp_path / "pneumonia", height=224, width=224, channels=3)
    images = 64  # 64 x 3 x 224 x 224 UINT8 pixels: 9.6 MB, over KServe's 8 MiB gRPC default
    distinct = [encode(random_image(224, 224, 3, seed=s), "PNG") for s in range(4)]
    files = [distinct[i % 4] for i in range(images)]
    body = {"inputs": [{"name": "image", "shape": [images], "datatype": "BYTES",
                        "data": [base64.b64encode(f).decode() for f in files]}]}
    with LocalStack({"pneumonia": str(bundle)}, ports="ephemeral", predictor_protocol="grpc-v2",
                    log_dir=tmp_path / "logs", ready_timeout_s=120,
                    extra_args={"pneumonia/transformer": ["--batch_max_size", str(images)],
                                "pneumonia/predictor": ["--max_batch_size", str(images)]}) as stack:
        request = urllib.request.Request(stack.endpoints["pneumonia"].infer_url, data=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
    outputs = {o["name"]: o for o in answer["outputs"]}
    probability = np.asarray(outputs["probability"]["data"])
    assert outputs["probability"]["shape"] == [images]
    assert ((probability >= 0) & (probability <= 1)).all()
    # the same image gives the same answer wherever it sits in the batch
    np.testing.assert_allclose(probability.reshape(-1, 4), np.tile(probability[:4], (images // 4, 1)), rtol=1e-5)
    assert len(set(np.round(probability[:4], 6))) > 1  # and different images different ones
