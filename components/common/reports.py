"""Validation findings and their Markdown / HTML rendering (KFP ``Markdown`` and ``HTML`` artifacts)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Finding:
    check: str
    severity: str  # "error" fails the run; "warning" and "info" are reported only
    message: str
    count: int | None = None


@dataclass
class ValidationReport:
    title: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, object] = field(default_factory=dict)

    def add(self, check: str, severity: str, message: str, count: int | None = None) -> None:
        if severity not in {"error", "warning", "info"}:
            raise ValueError(f"unknown severity {severity!r}")
        self.findings.append(Finding(check, severity, message, count))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        if self.ok:
            return f"{self.title}: passed ({len(self.findings)} findings, none blocking)"
        lines = [f"{self.title}: {len(self.errors)} blocking problem(s)"]
        lines += [f"  - [{f.check}] {f.message}" for f in self.errors]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        status = "PASSED" if self.ok else "FAILED"
        out = [f"# {self.title}", "", f"**Status: {status}**", "", "| check | severity | count | finding |",
               "|---|---|---|---|"]
        for f in self.findings:
            out.append(f"| {f.check} | {f.severity} | {'' if f.count is None else f.count} | {f.message} |")
        if self.stats:
            out += ["", "## Statistics", "", "| statistic | value |", "|---|---|"]
            out += [f"| {k} | {v} |" for k, v in self.stats.items()]
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        colour = {"error": "#fdd", "warning": "#ffe9b3", "info": "#eef"}
        rows = "".join(
            f"<tr style='background:{colour[f.severity]}'><td>{html.escape(f.check)}</td><td>{f.severity}</td>"
            f"<td>{'' if f.count is None else f.count}</td><td>{html.escape(f.message)}</td></tr>"
            for f in self.findings
        )
        stats = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                        for k, v in self.stats.items())
        status = "PASSED" if self.ok else "FAILED"
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}"
            "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p><b>Status: {status}</b></p>"
            f"<table><tr><th>check</th><th>severity</th><th>count</th><th>finding</th></tr>{rows}</table>"
            f"<h2>Statistics</h2><table>{stats}</table></body></html>"
        )


class ValidationFailed(ValueError):
    """Raised by a validate step so that the pipeline run fails with the report's summary."""

    def __init__(self, report: ValidationReport):
        super().__init__(report.summary())
        self.report = report
