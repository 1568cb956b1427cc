"""KFP components of the monitoring pipeline: one thin step each over this package's modules.

Bodies import their libraries inside the function (KFP ships only the function's source) and run in
the project's image, so no package is installed at run time.
"""

# No `from __future__ import annotations` here: KFP reads the real annotation objects.

import functools
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output

from components.common.image import CLINOPS_IMAGE

component = functools.partial(dsl.component, base_image=CLINOPS_IMAGE, install_kfp_package=False)


@component
def load_reference(workload: str, bundle_uri: str, store: str, reference: Output[Dataset]
                   ) -> NamedTuple("Reference", columns=str, model=str):
    """The champion bundle's drift reference (or ``bundle_uri``'s), through the bundle contract."""
    import json
    from collections import namedtuple

    from components.monitoring.reference import load_reference as load

    ref = load(workload, bundle_uri, store)
    ref.frame.to_csv(reference.path, index=False)
    reference.metadata |= {"rows": len(ref.frame), "model": ref.model, "source": ref.source}
    print(f"reference: {ref.model} from {ref.source}, {len(ref.frame)} rows × {ref.frame.shape[1]} columns")
    return namedtuple("Reference", ["columns", "model"])(json.dumps(ref.columns.to_dict()), ref.model)


@component
def read_observations(workload: str, log_dir: str, hours: float, since: float, until: float, columns: str,
                      current: Output[Dataset]) -> NamedTuple("Observations", period=str, counts=str):
    """The drift sidecar's logged rows for the period, as a table with the reference's columns."""
    import json
    from collections import namedtuple

    from components.monitoring import log
    from components.monitoring.columns import Columns
    from components.monitoring.frames import current_frame
    from components.monitoring.period import resolve

    period = resolve(hours, since, until)
    folder = log.resolve_log_dir(workload, log_dir)
    frame, counts = current_frame(log.records_in(folder, period), Columns.from_dict(json.loads(columns)))
    frame.to_csv(current.path, index=False)
    current.metadata |= {"rows": len(frame), "log_dir": str(folder)}
    counts_out = counts.to_dict()
    if frame.empty:
        counts_out["why"] = log.absence(folder) or f"no logged rows in {folder} from {period.describe()}"
        print(f"observations: none — {counts_out['why']}")
    else:
        print(f"observations: {counts.rows} rows from {counts.events} events in {folder}, {period.describe()}")
    return namedtuple("Observations", ["period", "counts"])(json.dumps(period.to_dict()), json.dumps(counts_out))


@component
def drift_report(workload: str, model: str, columns: str, period: str, counts: str, reference: Input[Dataset],
                 current: Input[Dataset], drift_share: float, max_dims: int, report_html: Output[HTML],
                 report_json: Output[Artifact], summary_md: Output[Markdown]
                 ) -> NamedTuple("DriftReport", drift=bool, summary=str):
    """Evidently's data-drift report of the period against the reference: HTML, JSON and a Markdown summary."""
    import json
    from collections import namedtuple

    import pandas as pd

    from components.monitoring.columns import EMBEDDING, Columns
    from components.monitoring.reduce import reduce_embedding
    from components.monitoring.render import empty_html, markdown
    from components.monitoring.report import Summary, compare, snapshot_dict

    spec = Columns.from_dict(json.loads(columns))
    ref, cur = pd.read_csv(reference.path), pd.read_csv(current.path)
    read = json.loads(counts)
    summary = Summary(workload, model, json.loads(period), len(cur), len(ref), read["events"], read["skipped"],
                      drift_share)
    if "why" in read:
        summary.notes.append(read["why"])
    if spec.kind == EMBEDDING:
        reduced = reduce_embedding(ref, cur, max_dims)
        ref, cur = reduced.reference, reduced.current
        summary.notes.append(reduced.note)
    snapshot = compare(summary, ref, cur, list(spec.categorical))
    if snapshot is None:
        with open(report_html.path, "w") as f:
            f.write(empty_html(summary))
    else:
        snapshot.save_html(report_html.path)
    with open(report_json.path, "w") as f:
        json.dump({"summary": summary.to_dict(), "evidently": snapshot_dict(snapshot) if snapshot else None}, f)
    with open(summary_md.path, "w") as f:
        f.write(markdown(summary))
    print(summary.verdict())
    out = summary.to_dict() | {"verdict": summary.verdict(), "artifacts": {"html": report_html.uri, "json": report_json.uri,
                                             "markdown": summary_md.uri}}
    return namedtuple("DriftReport", ["drift", "summary"])(summary.drift, json.dumps(out))


@component
def retrain(workload: str, drift: bool, retrain_on_drift: bool, summary: str, kfp_host: str, kfp_namespace: str,
            profile: str, launcher: str) -> str:
    """Start the workload's training pipeline when drift was found and the run allows it."""
    import json

    from components.monitoring import trigger

    decision = trigger.decide(drift, retrain_on_drift)
    outcome = trigger.act(decision, lambda: trigger.start_training(workload, kfp_host, kfp_namespace, profile,
                                                                   launcher))
    print(f"retrain: {outcome}")
    return json.dumps(json.loads(summary) | {"decision": decision.to_dict(), "outcome": outcome})
