import pytest
from support import sample_bundles

import bundle
from components.heart_disease.schema import serving_schema


@pytest.fixture(scope="session")
def heart_bundle(tmp_path_factory) -> bundle.Bundle:
    folder = sample_bundles.write_heart_disease(tmp_path_factory.mktemp("drift-heart"), serving_schema(), window=8)
    return bundle.open_bundle(folder)
