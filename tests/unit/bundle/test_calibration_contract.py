"""calibration.json: typed round trip, refusals naming the field, and the reference map agreeing with
training's recalibration."""

import json

import numpy as np
import pytest
from scipy import special

from bundle import MalformedFile
from bundle.calibration import Calibration, OperatingPoint
from components.common.clinical import calibration as clinical

pytestmark = pytest.mark.unit


def fitted(method: str, seed: int = 0) -> clinical.Recalibration:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.99, 400)
    y = (rng.random(400) < p).astype(int)
    return clinical.fit(method, y, special.expit(2 * special.logit(p) + 0.5))


@pytest.mark.parametrize("method", [clinical.PLATT, clinical.ISOTONIC, clinical.IDENTITY])
def test_the_contract_round_trips_and_maps_as_training_did(tmp_path, method):
    recal = fitted(method)
    contract = clinical.to_contract(recal, 0.9, 0.3, fitted_on="out-of-fold training scores")
    contract.write(tmp_path)
    back = Calibration.read(tmp_path)
    assert back == contract and back.operating_point == OperatingPoint(0.9, 0.3)
    grid = np.r_[0.0, 1e-9, np.linspace(0.001, 0.999, 301), 1.0]
    np.testing.assert_allclose([back.apply_one(float(v)) for v in grid], recal.apply(grid), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("payload", "message"), [
    ({"method": "beta"}, "method: 'beta' is not one of"),
    ({"method": "platt"}, "platt: missing"),
    ({"method": "platt", "platt": {"a": -1.0, "b": 0.0}}, "must be positive"),
    ({"method": "isotonic", "isotonic": {"x": [0.1, 0.5], "y": [0.6, 0.2]}}, "non-decreasing"),
    ({"method": "identity", "operating_point": {"target_sensitivity": 0.9, "threshold": 1.5}},
     "operating_point.threshold: 1.5 is outside"),
])
def test_a_malformed_calibration_is_refused_naming_the_field(tmp_path, payload, message):
    (tmp_path / "calibration.json").write_text(json.dumps(payload))
    with pytest.raises(MalformedFile, match=message):
        Calibration.read(tmp_path)
