"""The promotion gate: alias ``champion`` moves to a new version only when it clears the metric floors
and does not lose to the current champion on the same test split. Nothing is ever deleted.

The gate is a critical section: concurrent runs of one model take turns under
``locks.registry_lock(model_name)``, and each decides against the champion as it is at that moment
(re-read inside the lock), so two runs cannot both beat the same old champion and both claim the alias.

What the version tags say (the alias ``champion`` itself is the only "current" truth):

* ``gate``: this version's own verdict when its gate ran, ``promoted`` or ``rejected``; history,
  never rewritten. ``gate_reasons``, ``gate_at`` (ISO time, UTC) and ``gate_compared_with`` (the
  champion it was measured against, ``none`` if there was none) go with it.
* ``supersedes``: on a promoted version, the champion whose alias it took (absent if none).
* ``superseded_by`` / ``superseded_at``: added to a promoted version when the alias leaves it for a
  newer promoted version. So a version tagged ``gate=promoted`` is the champion exactly when it has
  no ``superseded_by``, and following ``superseded_by`` from any promoted version ends at the champion.
  :func:`audit` checks those rules on a registry's tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from components.common import locks, registry
from components.common.clinical.paired import PairedComparison


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


# What a floor may name. ``<metric>.lower`` / ``.upper`` are the 95% interval's bounds; ``<name>.max=v`` is a
# ceiling (for metrics where lower is better); ``subgroup.<metric>.min`` is the worst estimable subgroup (the
# decision names the subgroups too small to estimate, which no floor can judge).
HEADLINE = ("roc_auc", "pr_auc", "accuracy", "precision", "recall", "f1", "brier", "sensitivity", "specificity",
            "ppv", "npv", "val_roc_auc")
INTERVAL = ("roc_auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "brier")
CALIBRATION = ("ece", "calibration_slope", "calibration_intercept")
SUBGROUP_METRICS = ("roc_auc", "sensitivity", "specificity")
ALIASES = {"sensitivity@threshold": "sensitivity", "specificity@threshold": "specificity"}
CEILING = ".max"
METRICS = (*HEADLINE, *CALIBRATION, *ALIASES, *(f"{m}.{b}" for m in INTERVAL for b in ("lower", "upper")),
           *(f"subgroup.{m}.min" for m in SUBGROUP_METRICS), *(f"subgroup.{m}.lower.min" for m in SUBGROUP_METRICS))


def parse_floors(text: str | dict) -> dict[str, float]:
    """``"roc_auc.lower=0.85, sensitivity@threshold=0.9, subgroup.roc_auc.min=0.8, ece.max=0.08"`` (or a dict)
    → the same as a dict; an unknown metric or a malformed part is a ``ValueError`` that names it."""
    items = text.items() if isinstance(text, dict) else _parts(text)
    floors = {}
    for name, value in items:
        metric = name.removesuffix(CEILING)
        if metric not in METRICS:
            raise ValueError(f"metric floor {name!r}: unknown metric {metric!r}; known: {', '.join(METRICS)} "
                             f"(append {CEILING} for a ceiling)")
        try:
            floors[name] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric floor {name!r}: {value!r} is not a number") from None
    return floors


def _parts(text: str):
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"metric floor {part!r} is not of the form name=value")
        yield name.strip(), value.strip()


def _subgroup_values(candidate: dict[str, float], metric: str) -> dict[str, float]:
    """``subgroup.<metric>.min`` → every ``subgroup.<group>.<metric>`` measured (``.lower.min``: their bounds)."""
    inner = metric.removeprefix("subgroup.").removesuffix(".min")  # "roc_auc" or "roc_auc.lower"
    return {k.removeprefix("subgroup.").removesuffix(f".{inner}"): v for k, v in candidate.items()
            if k.startswith("subgroup.") and k.endswith(f".{inner}") and k.count(".") == inner.count(".") + 2}


def unestimable_subgroups(candidate: dict[str, float], name: str) -> str | None:
    """For a ``subgroup.`` floor, the reason naming the subgroups it passes over because they were too small
    to estimate (counted, ``subgroup.<group>.n``, but without the metric); ``None`` when there are none."""
    metric = ALIASES.get(name.removesuffix(CEILING), name.removesuffix(CEILING))
    if not metric.startswith("subgroup."):
        return None
    inner = metric.removeprefix("subgroup.").removesuffix(".min")
    counted = {k.removeprefix("subgroup.").removesuffix(".n"): v for k, v in candidate.items()
               if k.startswith("subgroup.") and k.endswith(".n") and k.count(".") == 2}
    skipped = {g: n for g, n in counted.items() if f"subgroup.{g}.{inner}" not in candidate}
    if not skipped:
        return None

    def described(group: str, n: float) -> str:
        positives = candidate.get(f"subgroup.{group}.positives")
        return f"{group} (n {n:.0f})" if positives is None else f"{group} (n {n:.0f}, {positives:.0f} with the condition)"

    return f"{name} passes over subgroups too small to estimate: " + ", ".join(
        described(g, n) for g, n in sorted(skipped.items()))


def check_floor(candidate: dict[str, float], name: str, bound: float) -> tuple[bool, str]:
    """Whether ``candidate`` clears one floor (or ceiling), and the reason in words."""
    ceiling = name.endswith(CEILING)
    metric = ALIASES.get(name.removesuffix(CEILING), name.removesuffix(CEILING))
    if metric.startswith("subgroup."):
        values = _subgroup_values(candidate, metric)
        if not values:
            return False, f"{name}: no subgroup was large enough to measure (floor {bound})"
        failing = {g: v for g, v in values.items() if (v > bound if ceiling else v < bound)}
        if failing:
            inner = metric.removeprefix("subgroup.").removesuffix(".min")
            return False, "; ".join(f"subgroup {g} {inner} {v:.4f} is "
                                    f"{'above the ceiling' if ceiling else 'below the floor'} {bound}"
                                    for g, v in sorted(failing.items()))
        worst = min(values.values()) if not ceiling else max(values.values())
        return True, f"{name} {worst:.4f} over {len(values)} subgroups clears {bound}"
    if metric not in candidate or candidate[metric] != candidate[metric]:  # absent or NaN
        return False, f"{name} was not measured (floor {bound})"
    value = candidate[metric]
    if ceiling:
        ok = value <= bound
        return ok, f"{name.removesuffix(CEILING)} {value:.4f} {'is within' if ok else 'is above'} the ceiling {bound}"
    ok = value >= bound
    return ok, f"{name} {value:.4f} {'clears' if ok else 'is below'} the floor {bound}"


def decide(candidate: dict[str, float], floors: dict[str, float], primary: str,
           champion_version: str | None, champion_score: float | None,
           comparison: PairedComparison | None = None) -> GateDecision:
    """Pure decision. Floors bound from below (``.max`` names from above). Against the champion: the paired
    ``comparison`` on the same patients when there is one, else the champion's ``primary`` score."""
    decision = GateDecision(promote=True, candidate_score=candidate.get(primary),
                            champion_version=champion_version, champion_score=champion_score,
                            primary_metric=primary)
    for name, floor in floors.items():
        ok, reason = check_floor(candidate, name, floor)
        decision.promote &= ok
        decision.reasons.append(reason)
        if skipped := unestimable_subgroups(candidate, name):  # said, not decided on: no estimate to compare
            decision.reasons.append(skipped)
    if champion_version is None:
        decision.reasons.append("no current champion")
    elif comparison is not None:
        decision.champion_score = comparison.champion
        decision.promote &= comparison.challenger_wins
        decision.reasons.append(comparison.reason(champion_version))
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


def verdict_tags(decision: GateDecision, version: str, at: str) -> dict[str, dict[str, str]]:
    """The tags one gate writes, by version: the candidate's verdict and, when it took the alias
    from another version, that version's ``superseded_by`` / ``superseded_at``. Pure."""
    version = str(version)
    mine = {"gate": "promoted" if decision.promote else "rejected", "gate_reasons": "; ".join(decision.reasons),
            "gate_at": at, "gate_compared_with": decision.champion_version or "none"}
    tags = {version: mine}
    previous = decision.champion_version
    if decision.promote and previous is not None and previous != version:
        mine["supersedes"] = previous
        tags[previous] = {"superseded_by": version, "superseded_at": at}
    return tags


def audit(tags: Mapping[str, Mapping[str, str]], champion: str | None) -> list[str]:
    """What is untrue in a model's version tags given the version holding ``champion`` (empty when
    they tell the truth). ``tags`` maps every version to its tags. Pure."""
    problems = []
    promoted = {v for v, t in tags.items() if t.get("gate") == "promoted"}
    if champion is not None and champion not in promoted:
        problems.append(f"champion v{champion} is not tagged gate=promoted")
    if champion is None and promoted:
        problems.append(f"versions {sorted(promoted, key=int)} are tagged promoted but no version is champion")
    for version, own in tags.items():
        after = own.get("superseded_by")
        if version == champion:
            if after is not None:
                problems.append(f"champion v{version} says it was superseded by v{after}")
            continue
        if version in promoted and after is None:
            problems.append(f"v{version} is tagged promoted, is not the champion and names no superseded_by")
        if after is not None and version not in promoted:
            problems.append(f"v{version} was never promoted but says superseded_by v{after}")
        if after is not None:
            successor = tags.get(after, {})
            if successor.get("gate") != "promoted" or successor.get("supersedes") != version:
                problems.append(f"v{version} says superseded_by v{after}, but v{after} does not say it supersedes "
                                f"v{version}")
        if version not in promoted and own.get("supersedes"):
            problems.append(f"v{version} was not promoted but says it supersedes v{own['supersedes']}")
    for version in sorted(v for v in promoted if tags[v].get("superseded_by")):  # chains end at the champion
        seen, current = {version}, version
        while tags.get(current, {}).get("superseded_by") is not None:
            current = tags[current]["superseded_by"]
            if current in seen:
                problems.append(f"superseded_by from v{version} runs in a circle")
                break
            seen.add(current)
        else:
            if champion is not None and current != champion:
                problems.append(f"superseded_by from v{version} ends at v{current}, not at the champion v{champion}")
    return problems


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_gate(model_name: str, version: str, candidate: dict[str, float], floors: dict[str, float],
             score_champion: Callable[[str], float | PairedComparison | None], primary: str = "roc_auc",
             logged_metric: str | None = None) -> GateDecision:
    """Decide and apply: move ``champion`` (or set ``challenger``), tag the versions (see the module).

    ``score_champion(model_uri)`` re-scores the current champion on this run's test split. It is
    called first outside the lock (loading a model takes time) for the champion seen then; inside
    ``registry_lock(model_name)`` the champion is read again, and only if it changed meanwhile is
    the new one scored there. The decision, the alias move and all tags happen inside the lock.
    It returns the champion's ``primary`` score, or better, a :class:`PairedComparison` of the candidate
    with the champion on the same patients (see :mod:`components.common.clinical.paired`).

    A champion that cannot be re-scored (an older input contract) is judged on the ``primary`` score its
    registration run logged, under the name ``logged_metric`` (default ``primary``): each workload names it
    as its register step does (heart-disease logs test metrics as ``test_<name>``). Looked up under another
    name it would be missing, and the floors alone would let a challenger replace an unmeasured champion.
    """
    version = str(version)
    logged_metric = logged_metric or primary
    scores: dict[str, float | PairedComparison | None] = {}

    def score(champion: str) -> float | PairedComparison | None:
        if champion not in scores:
            try:
                scores[champion] = score_champion(f"models:/{model_name}/{champion}")
            except Exception as err:  # an older champion with another input contract
                print(f"gate: champion v{champion} could not be re-scored ({err}); using its logged {logged_metric}")
                scores[champion] = registry.version_metric(model_name, champion, logged_metric)
        return scores[champion]

    seen = registry.alias_version(model_name, registry.CHAMPION)
    if seen is not None and seen != version:
        score(seen)
    with locks.registry_lock(model_name):
        champion = registry.alias_version(model_name, registry.CHAMPION)
        if champion == version:  # this version's gate runs again: judged on the floors alone
            champion = None
        measured = score(champion) if champion else None
        paired = measured if isinstance(measured, PairedComparison) else None
        decision = decide(candidate, floors, primary, champion, paired.champion if paired else measured, paired)
        tags = verdict_tags(decision, version, _now())
        registry.tag_version(model_name, version, tags.pop(version))
        registry.set_alias(model_name, registry.CHAMPION if decision.promote else registry.CHALLENGER, version)
        for previous, superseded in tags.items():
            registry.tag_version(model_name, previous, superseded)
    print(f"gate: {model_name} v{version} {decision.summary()}")
    return decision
