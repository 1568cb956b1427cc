"""The Evidently data-drift report of a period's observations against the bundle's reference, and the
summary the pipeline acts on.

Evidently chooses each column's test by its type and the sample sizes (K-S or chi-square on small
samples, Wasserstein or Jensen-Shannon distances on large ones) and decides per column; a period
drifts when the share of drifted columns reaches ``drift_share`` (Evidently's dataset-drift rule).
The summary reads those decisions back from Evidently's own result, never recomputes them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pandas as pd

DEFAULT_DRIFT_SHARE = 0.5  # Evidently's own default
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COUNT = "evidently:metric_v2:DriftedColumnsCount"
FAILED = "FAIL"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # numerical | categorical
    method: str  # Evidently's test, e.g. "K-S p_value"
    score: float  # p-value or distance, as the method gives it
    threshold: float
    drifted: bool
    missing_current: float  # share of empty cells (dropped by the tests; shown for what it says)
    missing_reference: float


@dataclass
class Summary:
    workload: str
    model: str
    period: dict  # Period.to_dict()
    rows_current: int
    rows_reference: int
    events: int = 0
    skipped: int = 0
    drift_share: float = DEFAULT_DRIFT_SHARE
    columns: list[ColumnDrift] = field(default_factory=list)
    drifted_count: int = 0
    drifted_share: float = 0.0
    drift: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    @property
    def empty(self) -> bool:
        return self.rows_current == 0

    def to_dict(self) -> dict:
        return asdict(self) | {"drifted": self.drifted}

    @classmethod
    def from_dict(cls, data: dict) -> Summary:
        data = dict(data)
        data.pop("drifted", None)
        data["columns"] = [ColumnDrift(**c) for c in data.get("columns", [])]
        return cls(**data)

    def verdict(self) -> str:
        if self.empty:
            return f"No observations for {self.workload} from {self.period['text']}: nothing to compare."
        if self.drift:
            return (f"Drift: {self.drifted_count} of {len(self.columns)} columns drifted "
                    f"({self.drifted_share:.0%} ≥ {self.drift_share:.0%}): {', '.join(self.drifted)}.")
        return (f"No drift: {self.drifted_count} of {len(self.columns)} columns drifted "
                f"({self.drifted_share:.0%} < {self.drift_share:.0%})"
                + (f": {', '.join(self.drifted)}." if self.drifted else "."))


def run_report(reference: pd.DataFrame, current: pd.DataFrame, numerical: list[str], categorical: list[str],
               drift_share: float = DEFAULT_DRIFT_SHARE):
    """Evidently's ``DataDriftPreset`` of ``current`` against ``reference``; returns its snapshot."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report([DataDriftPreset(columns=[*numerical, *categorical], drift_share=drift_share)],
                    include_tests=True)
    return report.run(Dataset.from_pandas(current, data_definition=definition),
                      Dataset.from_pandas(reference, data_definition=definition))


def column_drifts(snapshot_dict: dict, reference: pd.DataFrame, current: pd.DataFrame,
                  categorical: list[str]) -> tuple[list[ColumnDrift], int, float]:
    """Per-column decisions, drifted count and share, as Evidently reported them."""
    scores = {m["id"]: m["value"] for m in snapshot_dict["metrics"]}
    count = share = None
    for metric in snapshot_dict["metrics"]:
        if metric["config"]["type"] == DRIFTED_COUNT:
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
    out = []
    for test in snapshot_dict["tests"]:
        params = test["metric_config"]["params"]
        if params.get("type") != VALUE_DRIFT:
            continue
        name = params["column"]
        out.append(ColumnDrift(name, "categorical" if name in categorical else "numerical", params["method"],
                               float(scores[test["metric_config"]["metric_id"]]), float(params["threshold"]),
                               test["status"] == FAILED, float(current[name].isna().mean()),
                               float(reference[name].isna().mean())))
    if count is None:
        raise RuntimeError("Evidently's report has no drifted-columns count")
    return out, count, share


def compare(summary: Summary, reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str]):
    """Run the report over the columns both tables have values in and fill ``summary`` with its
    decisions; returns the snapshot, or None when the period has no rows."""
    if current.empty:
        return None
    usable = [c for c in reference.columns if current[c].notna().any() and reference[c].notna().any()]
    for name in reference.columns:
        if name not in usable:
            summary.notes.append(f"{name}: no values in the period or the reference; not compared.")
    categorical = [c for c in categorical if c in usable]
    numerical = [c for c in usable if c not in categorical]
    snapshot = run_report(reference[usable], current[usable], numerical, categorical, summary.drift_share)
    data = snapshot_dict(snapshot)
    summary.columns, summary.drifted_count, summary.drifted_share = column_drifts(data, reference, current,
                                                                                  categorical)
    summary.drift = any(t["metric_config"]["params"].get("type") == DRIFTED_COUNT and t["status"] == FAILED
                        for t in data["tests"])
    return snapshot


def snapshot_dict(snapshot) -> dict:
    """The snapshot in Evidently's JSON form (plain types only)."""
    return json.loads(snapshot.json())
