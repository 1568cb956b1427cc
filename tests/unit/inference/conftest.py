import pytest
from support import sample_bundles

from bundle.schema import TabularSchema
from components.heart_disease.schema import serving_schema


@pytest.fixture(scope="session")
def heart_schema() -> TabularSchema:
    return serving_schema()


@pytest.fixture(scope="session")
def heart_bundle(tmp_path_factory, heart_schema):
    return sample_bundles.write_heart_disease(tmp_path_factory.mktemp("heart"), heart_schema)


@pytest.fixture(scope="session")
def pneumonia_bundle(tmp_path_factory):
    return sample_bundles.write_pneumonia(tmp_path_factory.mktemp("pneumonia"), height=24, width=20, channels=1)
