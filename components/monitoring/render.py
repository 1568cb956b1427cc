"""The report as the KFP UI shows it: a Markdown summary (verdict, per-column table, counts, period) and,
when there was nothing to compare, an HTML page that says so in place of Evidently's."""

from __future__ import annotations

import html

from components.monitoring.report import Summary


def markdown(summary: Summary) -> str:
    lines = [f"# Drift report — {summary.workload}", "",
             f"**{summary.verdict()}**", "",
             "| | |", "|---|---|",
             f"| model (reference) | {summary.model} |",
             f"| period | {summary.period['text']} |",
             f"| rows: period / reference | {summary.rows_current} / {summary.rows_reference} |",
             f"| logged events read | {summary.events} |",
             f"| drifted columns | {summary.drifted_count} of {len(summary.columns)} "
             f"({summary.drifted_share:.0%}; drift at ≥ {summary.drift_share:.0%}) |"]
    if summary.skipped:
        lines.append(f"| rows skipped (width not this bundle's) | {summary.skipped} |")
    if summary.columns:
        lines += ["", "| column | type | test | score | threshold | drifted | missing (period / reference) |",
                  "|---|---|---|---:|---:|---|---:|"]
        for c in summary.columns:
            lines.append(f"| {c.column} | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:g} | "
                         f"{'**yes**' if c.drifted else 'no'} | {c.missing_current:.0%} / {c.missing_reference:.0%} |")
    notes = [*summary.notes]
    if any(c.kind == "categorical" for c in summary.columns):
        notes.append("A missing categorical code is compared as a category of its own (-1); empty numeric "
                     "cells are left out of the tests, their share is in the last column.")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def empty_html(summary: Summary) -> str:
    """The HTML artifact of a period with no observations."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Drift report — "
            f"{html.escape(summary.workload)}</title></head><body><h1>Drift report — "
            f"{html.escape(summary.workload)}</h1><p>{html.escape(summary.verdict())}</p>"
            + "".join(f"<p>{html.escape(n)}</p>" for n in summary.notes) + "</body></html>\n")
