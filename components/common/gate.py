"""The promotion gate: alias ``champion`` moves to a new version only when it clears the metric floors
and does not lose to the current champion on the same test split. Nothing is ever deleted."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from components.common import registry


@dataclass
class GateDecision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate_score: float | None = None
    champion_version: str | None = None
    champion_score: float | None = None
    primary_metric: str = "roc_auc"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def summary(self) -> str:
        verdict = "promoted to champion" if self.promote else "kept as challenger"
        return f"{verdict}: " + "; ".join(self.reasons)


def parse_floors(text: str | dict) -> dict[str, float]:
    """``"roc_auc=0.85,recall=0.7"`` (or a dict) → ``{"roc_auc": 0.85, "recall": 0.7}``."""
    if isinstance(text, dict):
        return {k: float(v) for k, v in text.items()}
    floors = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"metric floor {part!r} is not of the form name=value")
        floors[name.strip()] = float(value)
    return floors


def decide(candidate: dict[str, float], floors: dict[str, float], primary: str,
           champion_version: str | None, champion_score: float | None) -> GateDecision:
    """Pure decision; higher is better for every floored metric and for ``primary``."""
    decision = GateDecision(promote=True, candidate_score=candidate.get(primary),
                            champion_version=champion_version, champion_score=champion_score,
                            primary_metric=primary)
    for name, floor in floors.items():
        if name not in candidate:
            decision.promote = False
            decision.reasons.append(f"{name} was not measured (floor {floor})")
        elif candidate[name] < floor:
            decision.promote = False
            decision.reasons.append(f"{name} {candidate[name]:.4f} is below the floor {floor}")
        else:
            decision.reasons.append(f"{name} {candidate[name]:.4f} clears the floor {floor}")
    if champion_version is None:
        decision.reasons.append("no current champion")
    elif champion_score is None:
        decision.reasons.append(f"champion v{champion_version} could not be scored; floors alone decide")
    elif candidate.get(primary, float("-inf")) < champion_score:
        decision.promote = False
        decision.reasons.append(
            f"{primary} {candidate.get(primary):.4f} loses to champion v{champion_version} ({champion_score:.4f})"
        )
    else:
        decision.reasons.append(
            f"{primary} {candidate.get(primary):.4f} is not worse than champion v{champion_version} "
            f"({champion_score:.4f})"
        )
    return decision


def run_gate(model_name: str, version: str, candidate: dict[str, float], floors: dict[str, float],
             score_champion: Callable[[str], float | None], primary: str = "roc_auc") -> GateDecision:
    """Decide and apply: move ``champion`` (or set ``challenger``), tag the version with the verdict.

    ``score_champion(model_uri)`` re-scores the current champion on this run's test split.
    """
    champion = registry.alias_version(model_name, registry.CHAMPION)
    champion_score = None
    if champion is not None and champion != str(version):
        try:
            champion_score = score_champion(f"models:/{model_name}/{champion}")
        except Exception as err:  # an older champion with another input contract
            print(f"gate: champion v{champion} could not be re-scored ({err}); using its logged {primary}")
            champion_score = registry.version_metric(model_name, champion, primary)
    elif champion == str(version):
        champion = None
    decision = decide(candidate, floors, primary, champion, champion_score)
    registry.set_alias(model_name, registry.CHAMPION if decision.promote else registry.CHALLENGER, version)
    registry.tag_version(model_name, version, {"gate": "promoted" if decision.promote else "rejected",
                                               "gate_reasons": "; ".join(decision.reasons)})
    print(f"gate: {model_name} v{version} {decision.summary()}")
    return decision
