"""The canary verdict, both ways, and the limits parsed from the pipeline parameter."""

import pytest

from components.deploy.decision import PROMOTE, ROLLBACK, CanaryPolicy, CanarySample, decide
from components.deploy.step import parse_limits

pytestmark = pytest.mark.unit

POLICY = CanaryPolicy(max_error_rate=0.05, max_p99_latency_s=1.0, min_requests=20)


def test_a_canary_within_limits_with_enough_traffic_is_promoted():
    samples = [CanarySample(0.0, 0.12, 15), CanarySample(0.01, 0.30, 60)]
    verdict = decide(samples, POLICY)
    assert verdict.action == PROMOTE and verdict.promote and verdict.samples == 2
    assert "error rate 1.00%" in verdict.reasons[0] and "p99 0.300 s" in verdict.reasons[0]


@pytest.mark.parametrize("sample, expected", [
    (CanarySample(0.06, 0.2, 100), "error rate 6.00% > 5.00%"),
    (CanarySample(0.0, 1.5, 100), "p99 latency 1.500 s > 1.000 s"),
])
def test_a_canary_over_a_limit_is_rolled_back_naming_it(sample, expected):
    verdict = decide([CanarySample(0.0, 0.1, 50), sample, CanarySample(0.0, 0.1, 50)], POLICY)
    assert verdict.action == ROLLBACK and not verdict.promote
    assert verdict.reasons == [f"sample 2: {expected}"]


def test_limits_are_inclusive():
    assert decide([CanarySample(0.05, 1.0, 20)], POLICY).promote


def test_too_little_traffic_or_no_sample_is_no_evidence_of_health():
    verdict = decide([CanarySample(None, None, 3)], POLICY)
    assert verdict.action == ROLLBACK and "served 3 requests, fewer than the 20" in verdict.reasons[0]
    assert decide([], POLICY).reasons == ["no sample of the canary was taken"]
    assert decide([CanarySample(None, None, 0)], CanaryPolicy(min_requests=0)).promote


def test_limits_parse_and_bad_ones_are_named():
    assert parse_limits("error_rate=0.01, p99_latency_s=0.5") == CanaryPolicy(0.01, 0.5, 20)
    assert parse_limits("") == CanaryPolicy()
    with pytest.raises(ValueError, match="canary limit 'latency': unknown"):
        parse_limits("latency=1")
    with pytest.raises(ValueError, match="canary limit 'error_rate': 'x' is not a number"):
        parse_limits("error_rate=x")
    with pytest.raises(ValueError, match="max_error_rate 2.0: a fraction"):
        parse_limits("error_rate=2")
