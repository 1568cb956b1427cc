import sys
from pathlib import Path

import pytest
from support import sample_bundles

from components.heart_disease.schema import serving_schema
from pipelines.local_stack import LocalStack

# image helpers shared with the unit tests
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "inference"))


@pytest.fixture(scope="session")
def heart_schema():
    return serving_schema()


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, heart_schema):
    root = tmp_path_factory.mktemp("bundles")
    return {"heart-disease": sample_bundles.write_heart_disease(root / "heart", heart_schema),
            "pneumonia": sample_bundles.write_pneumonia(root / "pneumonia", height=32, width=28, channels=1)}


@pytest.fixture(scope="session")
def stack(bundles, tmp_path_factory):
    """Both workloads, transformer → predictor over V2 gRPC (the default), on free ports."""
    small_limits = ["--max_body_bytes", str(2 * 1024 * 1024)]
    with LocalStack({k: str(v) for k, v in bundles.items()}, ports="ephemeral",
                    log_dir=tmp_path_factory.mktemp("logs"), drift_dir=tmp_path_factory.mktemp("drift"),
                    ready_timeout_s=120,
                    extra_args={"heart-disease/transformer": small_limits,
                                "pneumonia/transformer": small_limits,
                                # values are compared with CPU fp32 to 1e-5: on a GPU machine too
                                "pneumonia/predictor": ["--device", "cpu"]}) as running:
        yield running
