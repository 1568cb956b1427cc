"""The canary verdict, pure: from what Prometheus said about the canary over the observation period to
promote or roll back. :mod:`components.deploy.canary` gathers the samples and acts on the verdict."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PROMOTE = "promote"
ROLLBACK = "rollback"


@dataclass(frozen=True)
class CanaryPolicy:
    """When a canary is good enough. Defaults follow the serving alerts: error rate above 5% or p99 latency
    above 1 s is a page, so a canary showing either never takes all traffic. ``min_requests`` is the traffic
    the canary must have served before its numbers count; with less the canary is rolled back, since no
    evidence is not evidence of health (0 lets an idle canary through)."""

    max_error_rate: float = 0.05
    max_p99_latency_s: float = 1.0
    min_requests: float = 20.0

    def __post_init__(self):
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate {self.max_error_rate}: a fraction between 0 and 1")
        if self.max_p99_latency_s <= 0:
            raise ValueError(f"max_p99_latency_s {self.max_p99_latency_s}: must be positive")
        if self.min_requests < 0:
            raise ValueError(f"min_requests {self.min_requests}: must not be negative")


@dataclass(frozen=True)
class CanarySample:
    """One look at the canary: its error rate and p99 latency over the query window (None: no data) and
    the requests it served in that window."""

    error_rate: float | None
    p99_latency_s: float | None
    requests: float


@dataclass
class CanaryDecision:
    action: str
    reasons: list[str] = field(default_factory=list)
    samples: int = 0

    @property
    def promote(self) -> bool:
        return self.action == PROMOTE

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def breaches(sample: CanarySample, policy: CanaryPolicy) -> list[str]:
    """What in one sample already condemns the canary (checked at every look, so a bad canary goes early)."""
    found = []
    if sample.error_rate is not None and sample.error_rate > policy.max_error_rate:
        found.append(f"error rate {sample.error_rate:.2%} > {policy.max_error_rate:.2%}")
    if sample.p99_latency_s is not None and sample.p99_latency_s > policy.max_p99_latency_s:
        found.append(f"p99 latency {sample.p99_latency_s:.3f} s > {policy.max_p99_latency_s:.3f} s")
    return found


def decide(samples: list[CanarySample], policy: CanaryPolicy) -> CanaryDecision:
    """Roll back on the first sample that breaches a limit, or when the canary served too few requests by
    the end of the period; otherwise promote."""
    for i, sample in enumerate(samples):
        found = breaches(sample, policy)
        if found:
            return CanaryDecision(ROLLBACK, [f"sample {i + 1}: " + "; ".join(found)], len(samples))
    if not samples:
        return CanaryDecision(ROLLBACK, ["no sample of the canary was taken"], 0)
    served = max(s.requests for s in samples)
    if served < policy.min_requests:
        return CanaryDecision(ROLLBACK, [f"the canary served {served:g} requests, fewer than the "
                                         f"{policy.min_requests:g} needed to judge it"], len(samples))
    last = samples[-1]
    shown = ", ".join(part for part in (
        f"error rate {last.error_rate:.2%}" if last.error_rate is not None else "",
        f"p99 {last.p99_latency_s:.3f} s" if last.p99_latency_s is not None else "") if part)
    return CanaryDecision(PROMOTE, [f"{len(samples)} samples within limits ({shown or 'no errors or latency data'}; "
                                    f"{served:g} requests)"], len(samples))
