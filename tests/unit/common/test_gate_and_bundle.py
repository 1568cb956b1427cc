"""The promotion gate's decisions, the bundle contract and the local store."""

import json

import pytest

from bundle import BundleWriter, IntegrityError, layout, open_bundle
from bundle.drift import TabularDriftSettings
from components.common import gate, publish, registry
from components.heart_disease.schema import serving_schema

pytestmark = pytest.mark.unit


def test_floors_parse_and_reject_garbage():
    assert gate.parse_floors("roc_auc=0.85, recall=0.7") == {"roc_auc": 0.85, "recall": 0.7}
    assert gate.parse_floors("") == {}
    with pytest.raises(ValueError, match="name=value"):
        gate.parse_floors("roc_auc>0.8")


@pytest.mark.parametrize(("candidate", "champion_score", "promote", "reason"), [
    (0.90, None, True, "no current champion"),
    (0.80, None, False, "below the floor 0.85"),
    (0.90, 0.92, False, "loses to champion v3"),
    (0.92, 0.92, True, "not worse than champion v3"),
])
def test_gate_decisions(candidate, champion_score, promote, reason):
    champion = None if champion_score is None else "3"
    decision = gate.decide({"roc_auc": candidate}, {"roc_auc": 0.85}, "roc_auc", champion, champion_score)
    assert decision.promote is promote
    assert reason in decision.summary()


def test_gate_fails_closed_when_a_floored_metric_is_missing():
    decision = gate.decide({"roc_auc": 0.95}, {"recall": 0.5}, "roc_auc", None, None)
    assert not decision.promote
    assert "recall was not measured" in decision.summary()


# --- the gate as a critical section, and what its tags say


class FakeRegistry:
    """The registry calls run_gate makes, recording each with whether the lock was held. ``metrics``: what
    re-scoring each version gives; ``logged``: each version's run metrics by their logged names."""

    def __init__(self, champion=None, metrics=None, logged=None):
        self.aliases = {"champion": champion} if champion else {}
        self.tags: dict[str, dict[str, str]] = {}
        self.metrics = metrics or {}
        self.logged = logged or {}
        self.locked = False
        self.events: list[tuple[str, bool]] = []
        self.on_lock = None  # another run getting in between the first read and the lock

    def install(self, monkeypatch):
        import contextlib

        @contextlib.contextmanager
        def registry_lock(model_name):
            assert model_name == "m"
            if self.on_lock:
                self.on_lock()
            self.locked = True
            self.events.append(("lock", True))
            try:
                yield
            finally:
                self.locked = False
                self.events.append(("unlock", False))

        monkeypatch.setattr(gate.locks, "registry_lock", registry_lock)
        monkeypatch.setattr(gate.registry, "alias_version", self.alias_version)
        monkeypatch.setattr(gate.registry, "set_alias", self.set_alias)
        monkeypatch.setattr(gate.registry, "tag_version", self.tag_version)
        monkeypatch.setattr(gate.registry, "version_metric", lambda name, v, metric: self.logged.get(v, {}).get(metric))

    def alias_version(self, model_name, alias):
        self.events.append((f"read {alias}", self.locked))
        return self.aliases.get(alias)

    def set_alias(self, model_name, alias, version):
        self.events.append((f"alias {alias}=v{version}", self.locked))
        self.aliases[alias] = str(version)

    def tag_version(self, model_name, version, tags):
        self.events.append((f"tag v{version}", self.locked))
        self.tags.setdefault(str(version), {}).update(tags)

    def score(self, uri):
        version = uri.rsplit("/", 1)[1]
        self.events.append((f"score v{version}", self.locked))
        return self.metrics[version]


def test_gate_rereads_the_champion_inside_the_lock(monkeypatch):
    # v3 was champion when the gate started; v4 (0.95) took the alias before the lock was ours
    fake = FakeRegistry(champion="3", metrics={"3": 0.90, "4": 0.95})
    fake.on_lock = lambda: fake.aliases.update(champion="4")
    fake.install(monkeypatch)
    decision = gate.run_gate("m", "5", {"roc_auc": 0.93}, {"roc_auc": 0.85}, fake.score)
    assert not decision.promote and decision.champion_version == "4" and decision.champion_score == 0.95
    assert fake.aliases == {"champion": "4", "challenger": "5"}
    assert fake.events == [("read champion", False), ("score v3", False),  # outside: the slow part
                           ("lock", True), ("read champion", True), ("score v4", True),
                           ("tag v5", True), ("alias challenger=v5", True), ("unlock", False)]
    assert fake.tags["5"]["gate"] == "rejected" and fake.tags["5"]["gate_compared_with"] == "4"
    assert "superseded_by" not in fake.tags.get("4", {})


def test_a_promotion_supersedes_the_previous_champion_inside_the_lock(monkeypatch):
    fake = FakeRegistry(champion="3", metrics={"3": 0.90})
    fake.tags["3"] = {"gate": "promoted", "gate_at": "earlier"}
    fake.install(monkeypatch)
    decision = gate.run_gate("m", "5", {"roc_auc": 0.93}, {"roc_auc": 0.85}, fake.score)
    assert decision.promote and fake.aliases == {"champion": "5"}
    assert [e for e, locked in fake.events if locked] == [
        "lock", "read champion", "tag v5", "alias champion=v5", "tag v3"]
    assert fake.events[:2] == [("read champion", False), ("score v3", False)]  # scored once, outside
    assert fake.tags["5"]["gate"] == "promoted" and fake.tags["5"]["supersedes"] == "3"
    assert fake.tags["3"]["gate"] == "promoted"  # history stays
    assert fake.tags["3"]["superseded_by"] == "5" and fake.tags["3"]["superseded_at"] == fake.tags["5"]["gate_at"]
    assert gate.audit(fake.tags, "5") == []


def _cannot_load(uri):
    raise ValueError("another input contract")


def test_a_champion_that_cannot_be_rescored_is_judged_on_its_logged_metric(monkeypatch):
    fake = FakeRegistry(champion="3", logged={"3": {"roc_auc": 0.97}})  # pneumonia logs test metrics unprefixed
    fake.install(monkeypatch)
    decision = gate.run_gate("m", "5", {"roc_auc": 0.93}, {}, _cannot_load)
    assert not decision.promote and decision.champion_score == 0.97
    assert "roc_auc 0.9300 loses to champion v3 (0.9700)" in decision.reasons
    assert fake.aliases == {"champion": "3", "challenger": "5"}


def test_the_logged_metric_is_read_under_the_workloads_own_name(monkeypatch):
    # heart-disease's register step logs test metrics as test_<name>; its candidate metrics are unprefixed
    fake = FakeRegistry(champion="3", logged={"3": {"test_roc_auc": 0.97, "cv_roc_auc": 0.89}})
    fake.install(monkeypatch)
    decision = gate.run_gate("m", "5", {"roc_auc": 0.93}, {}, _cannot_load, logged_metric="test_roc_auc")
    assert not decision.promote and decision.champion_score == 0.97
    assert fake.aliases == {"champion": "3", "challenger": "5"} and fake.tags["5"]["gate"] == "rejected"


def test_verdict_tags_for_each_outcome():
    promoted = gate.decide({"roc_auc": 0.9}, {}, "roc_auc", "3", 0.8)
    assert gate.verdict_tags(promoted, "4", "T") == {
        "4": {"gate": "promoted", "gate_reasons": "; ".join(promoted.reasons), "gate_at": "T",
              "gate_compared_with": "3", "supersedes": "3"},
        "3": {"superseded_by": "4", "superseded_at": "T"}}
    first = gate.verdict_tags(gate.decide({"roc_auc": 0.9}, {}, "roc_auc", None, None), "1", "T")
    assert list(first) == ["1"] and first["1"]["gate_compared_with"] == "none" and "supersedes" not in first["1"]
    rejected = gate.verdict_tags(gate.decide({"roc_auc": 0.7}, {}, "roc_auc", "3", 0.8), "4", "T")
    assert list(rejected) == ["4"] and rejected["4"]["gate"] == "rejected"


def test_audit_accepts_a_truthful_chain_and_names_each_untruth():
    chain = {"1": {"gate": "promoted", "superseded_by": "3"}, "2": {"gate": "rejected"},
             "3": {"gate": "promoted", "supersedes": "1", "superseded_by": "4"},
             "4": {"gate": "promoted", "supersedes": "3"}}
    assert gate.audit(chain, "4") == []
    assert gate.audit({"1": {"gate": "rejected"}}, None) == []
    # the bug this guards against: two gates beat the same old champion, both say promoted
    both = {"1": {"gate": "promoted"}, "2": {"gate": "promoted", "supersedes": "1"},
            "3": {"gate": "promoted", "supersedes": "1"}}
    both["1"]["superseded_by"] = "3"
    assert gate.audit(both, "3") == ["v2 is tagged promoted, is not the champion and names no superseded_by"]
    assert "not tagged gate=promoted" in gate.audit({"1": {"gate": "rejected"}}, "1")[0]
    assert "no version is champion" in gate.audit({"1": {"gate": "promoted"}}, None)[0]
    assert "says it was superseded" in gate.audit({"1": {"gate": "promoted", "superseded_by": "1"}}, "1")[0]
    lie = {"1": {"gate": "promoted", "superseded_by": "2"}, "2": {"gate": "promoted"}}
    assert gate.audit(lie, "2") == ["v1 says superseded_by v2, but v2 does not say it supersedes v1"]
    never = {"1": {"gate": "rejected", "superseded_by": "2"}, "2": {"gate": "promoted", "supersedes": "1"}}
    assert "never promoted" in " ".join(gate.audit(never, "2"))
    circle = {"1": {"gate": "promoted", "superseded_by": "2", "supersedes": "2"},
              "2": {"gate": "promoted", "superseded_by": "1", "supersedes": "1"}, "3": {"gate": "promoted"}}
    assert any("circle" in p for p in gate.audit(circle, "3"))


def _bundle(folder, version="4"):
    """A complete bundle written through the contract (model bytes stand in for a pickled pipeline)."""
    writer = BundleWriter(folder, "heart-disease", layout.SKLEARN, "heart-disease", version)
    writer.model_path.write_bytes(b"model")
    writer.write_schema(serving_schema())
    writer.drift_reference_path.write_bytes(b"npz")
    writer.write_drift(TabularDriftSettings(("age",), ()))
    writer.finish()
    return folder


def test_publish_refuses_a_bundle_that_a_server_would_refuse(clinops_home, tmp_path):
    _bundle(tmp_path / "b")
    (tmp_path / "b" / "model.joblib").write_bytes(b"modal")
    with pytest.raises(IntegrityError, match=r"model\.joblib: sha256 differs"):
        publish.publish(tmp_path / "b", "heart-disease", "4", promoted=True, store=str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_the_pointer_moves_only_for_a_promoted_version_that_is_still_champion(clinops_home, tmp_path, monkeypatch):
    champion = {"version": "4"}
    monkeypatch.setattr(registry, "is_champion", lambda name, version: champion["version"] == str(version))
    _bundle(tmp_path / "b")
    store = str(tmp_path / "store")
    assert publish.champion_uri("heart-disease", store) is None
    uri = publish.publish(tmp_path / "b", "heart-disease", "4", promoted=False, store=store)
    assert (tmp_path / "store" / "heart-disease" / "4" / "model.joblib").read_bytes() == b"model"
    assert publish.champion_uri("heart-disease", store) is None
    publish.publish(tmp_path / "b", "heart-disease", "4", promoted=True, store=store)
    assert publish.champion_uri("heart-disease", store) == uri
    pointer = json.loads((tmp_path / "store" / "heart-disease" / "champion.json").read_text())
    assert pointer["model_version"] == "4" and pointer["model_name"] == "heart-disease"

    # v5 was promoted, but another run's gate made v6 champion before v5's export: v5 leaves the pointer
    champion["version"] = "6"
    _bundle(tmp_path / "b5", "5")
    uri5 = publish.publish(tmp_path / "b5", "heart-disease", "5", promoted=True, store=store)
    assert open_bundle(uri5).manifest.model_version == "5"
    assert publish.champion_uri("heart-disease", store) == uri


# --- clinical floors and the paired comparison


def test_clinical_floors_parse_and_name_an_unknown_metric():
    floors = gate.parse_floors("roc_auc.lower=0.85, sensitivity@threshold=0.90, subgroup.roc_auc.min=0.80, "
                               "ece.max=0.08")
    assert floors == {"roc_auc.lower": 0.85, "sensitivity@threshold": 0.9, "subgroup.roc_auc.min": 0.8,
                      "ece.max": 0.08}
    with pytest.raises(ValueError, match="unknown metric 'roc_auc.lowr'"):
        gate.parse_floors("roc_auc.lowr=0.8")
    with pytest.raises(ValueError, match="'ece.max': 'high' is not a number"):
        gate.parse_floors("ece.max=high")


CANDIDATE = {"roc_auc": 0.91, "roc_auc.lower": 0.86, "sensitivity": 0.92, "ece": 0.05,
             "subgroup.sex:female.roc_auc": 0.84, "subgroup.sex:male.roc_auc": 0.90,
             "subgroup.site:Switzerland.roc_auc": 0.71}


def test_a_subgroup_below_its_floor_blocks_promotion_and_is_named():
    floors = gate.parse_floors("roc_auc.lower=0.85, sensitivity@threshold=0.90, subgroup.roc_auc.min=0.80, "
                               "ece.max=0.08")
    decision = gate.decide(CANDIDATE, floors, "roc_auc", None, None)
    assert not decision.promote
    assert "subgroup site:Switzerland roc_auc 0.7100 is below the floor 0.8" in decision.reasons
    assert "roc_auc.lower 0.8600 clears the floor 0.85" in decision.reasons
    assert "ece 0.0500 is within the ceiling 0.08" in decision.reasons
    without = {k: v for k, v in CANDIDATE.items() if "Switzerland" not in k}
    assert gate.decide(without, floors, "roc_auc", None, None).promote


def test_subgroups_too_small_to_estimate_are_named_and_the_estimable_ones_decide():
    # as flat_metrics gives them: every group counted, only estimable ones with numbers (VA: 11 of 12 positive)
    counted = {**CANDIDATE, "subgroup.sex:female.roc_auc.lower": 0.78, "subgroup.sex:male.roc_auc.lower": 0.85,
               "subgroup.site:Switzerland.roc_auc.lower": 0.62, "subgroup.sex:female.n": 80,
               "subgroup.sex:male.n": 100, "subgroup.site:Switzerland.n": 40, "subgroup.site:VA_Long_Beach.n": 12,
               "subgroup.site:VA_Long_Beach.positives": 11}
    skipped = "site:VA_Long_Beach (n 12, 11 with the condition)"
    passing = gate.decide(counted, gate.parse_floors("subgroup.roc_auc.min=0.70"), "roc_auc", None, None)
    assert passing.promote
    assert passing.reasons[:2] == ["subgroup.roc_auc.min 0.7100 over 3 subgroups clears 0.7",
                                   f"subgroup.roc_auc.min passes over subgroups too small to estimate: {skipped}"]
    blocked = gate.decide(counted, gate.parse_floors("subgroup.roc_auc.lower.min=0.70"), "roc_auc", None, None)
    assert not blocked.promote
    assert blocked.reasons[:2] == ["subgroup site:Switzerland roc_auc.lower 0.6200 is below the floor 0.7",
                                   f"subgroup.roc_auc.lower.min passes over subgroups too small to estimate: {skipped}"]
    only_small = {"roc_auc": 0.9, "subgroup.site:VA_Long_Beach.n": 12, "subgroup.site:VA_Long_Beach.positives": 11}
    nothing = gate.decide(only_small, {"subgroup.roc_auc.min": 0.8}, "roc_auc", None, None)
    assert not nothing.promote and nothing.reasons[:2] == [
        "subgroup.roc_auc.min: no subgroup was large enough to measure (floor 0.8)",
        f"subgroup.roc_auc.min passes over subgroups too small to estimate: {skipped}"]
    assert gate.decide(counted, {"roc_auc": 0.85}, "roc_auc", None, None).reasons == [
        "roc_auc 0.9100 clears the floor 0.85", "no current champion"]  # only subgroup floors speak of them


def test_ceilings_and_interval_floors_block_on_their_own():
    assert not gate.decide(CANDIDATE, {"ece.max": 0.04}, "roc_auc", None, None).promote
    assert not gate.decide(CANDIDATE, {"roc_auc.lower": 0.87}, "roc_auc", None, None).promote
    bounds = {**CANDIDATE, "subgroup.sex:female.roc_auc.lower": 0.78, "subgroup.sex:male.roc_auc.lower": 0.85}
    lower = gate.decide(bounds, gate.parse_floors("subgroup.roc_auc.lower.min=0.80"), "roc_auc", None, None)
    assert not lower.promote and lower.reasons[0] == "subgroup sex:female roc_auc.lower 0.7800 is below the floor 0.8"
    no_groups = gate.decide({"roc_auc": 0.9}, {"subgroup.roc_auc.min": 0.8}, "roc_auc", None, None)
    assert not no_groups.promote and "no subgroup was large enough" in no_groups.summary()


def test_the_gate_keeps_the_champion_against_an_identical_challenger_and_tags_why(monkeypatch):
    import numpy as np

    from components.common.clinical import paired

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50, int), np.zeros(50, int)]
    p = rng.random(100) * 0.5 + 0.4 * y
    fake = FakeRegistry(champion="3")
    fake.install(monkeypatch)

    def compare(uri):
        fake.events.append((f"score {uri.rsplit('/', 1)[1]}", fake.locked))
        return paired.compare_roc_auc(y, p, p.copy(), n_resamples=200)

    decision = gate.run_gate("m", "5", {"roc_auc": 0.95}, {"roc_auc": 0.85}, compare)
    assert not decision.promote and fake.aliases == {"champion": "3", "challenger": "5"}
    assert "identical to the champion" in fake.tags["5"]["gate_reasons"]
    assert decision.champion_score == pytest.approx(decision.candidate_score, abs=0.1)
    better = paired.compare_roc_auc(y, p + 0.3 * y, p, n_resamples=200)
    fake2 = FakeRegistry(champion="3")
    fake2.install(monkeypatch)
    assert gate.run_gate("m", "6", {"roc_auc": 0.99}, {}, lambda uri: better).promote
    assert "better, and not worse beyond noise" in fake2.tags["6"]["gate_reasons"]
