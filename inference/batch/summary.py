"""What a batch run found: counts by status, prediction / risk level (or label), refusals with their
reasons, a probability histogram; written as ``summary.json`` and a small ``report.md`` / ``report.html``
(the histogram as an inline PNG when matplotlib is installed, a table otherwise)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa

BINS = np.linspace(0.0, 1.0, 11)
KEEP_REFUSED = 200  # refused rows listed by name in the summary (all of them are in the Parquet)


class Summary:
    def __init__(self, workload: str, key: str, categories: tuple[str, ...]):
        self.workload, self.key, self.categories = workload, key, categories  # key: "row" or "path"
        self.rows = self.scored = self.batches = 0
        self.counts = {name: Counter() for name in categories}
        self.reasons: Counter = Counter()
        self.refused: list[dict] = []
        self.histogram = np.zeros(len(BINS) - 1, dtype=np.int64)
        self.scorers: Counter = Counter()

    def add(self, table: pa.Table) -> None:
        data = table.select([self.key, "status", "reason", "error", "probability", *self.categories,
                             "scorer"]).to_pydict()
        self.batches += 1
        self.rows += table.num_rows
        for i, status in enumerate(data["status"]):
            self.scorers[data["scorer"][i]] += 1
            if status == "scored":
                self.scored += 1
                for name in self.categories:
                    self.counts[name][str(data[name][i])] += 1
            else:
                self.reasons[data["reason"][i]] += 1
                if len(self.refused) < KEEP_REFUSED:
                    self.refused.append({self.key: data[self.key][i], "reason": data["reason"][i],
                                         "error": data["error"][i]})
        p = np.array([v for v in data["probability"] if v is not None], dtype=np.float64)
        self.histogram += np.histogram(p, bins=BINS)[0]

    def to_dict(self, **extra) -> dict:
        return {"workload": self.workload, "rows": self.rows, "scored": self.scored,
                "refused": self.rows - self.scored, "refused_by_reason": dict(self.reasons.most_common()),
                "refused_rows": self.refused, "counts": {k: dict(sorted(v.items())) for k, v in self.counts.items()},
                "probability_histogram": {"edges": BINS.round(2).tolist(), "counts": self.histogram.tolist()},
                "batches": self.batches, "rows_by_scorer": dict(sorted(self.scorers.items())), **extra}


def histogram_png(edges: list[float], counts: list[int]) -> bytes | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 2.6), dpi=100)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", edgecolor="white")
    ax.set_xlabel("probability")
    ax.set_ylabel("rows")
    ax.set_xlim(0, 1)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _headline(summary: dict) -> list[tuple[str, str]]:
    model = summary.get("model", {})
    return [("workload", summary["workload"]), ("model", f"{model.get('name')} v{model.get('version')}"),
            ("input", str(summary.get("input"))), ("rows", str(summary["rows"])),
            ("scored", str(summary["scored"])), ("refused", str(summary["refused"])),
            ("rows/s", f"{summary.get('rows_per_s', 0):.1f}"), ("actors", str(summary.get("actors")))]


def markdown(summary: dict) -> str:
    lines = [f"# Batch scoring: {summary['workload']}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in _headline(summary)]
    for name, counts in summary["counts"].items():
        lines += ["", f"## By {name}", "", f"| {name} | rows |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in counts.items()]
    hist = summary["probability_histogram"]
    lines += ["", "## Probability", "", "| from | to | rows |", "|---|---|---|"]
    lines += [f"| {a:.1f} | {b:.1f} | {c} |" for a, b, c in zip(hist["edges"], hist["edges"][1:], hist["counts"],
                                                               strict=False)]
    lines += ["", "## Refused rows", ""]
    if not summary["refused"]:
        lines.append("None.")
    else:
        lines += ["| reason | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in summary["refused_by_reason"].items()]
        key = "path" if summary["workload"] == "pneumonia" else "row"
        lines += ["", f"| {key} | reason | error |", "|---|---|---|"]
        lines += [f"| {r[key]} | {r['reason']} | {r['error']} |" for r in summary["refused_rows"]]
        if summary["refused"] > len(summary["refused_rows"]):
            lines.append(f"\n… and {summary['refused'] - len(summary['refused_rows'])} more in the Parquet "
                         f"(status = refused).")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def html_page(summary: dict) -> str:
    parts = [f"<h1>Batch scoring: {html.escape(summary['workload'])}</h1>",
             _table(["", ""], [list(pair) for pair in _headline(summary)])]
    for name, counts in summary["counts"].items():
        parts += [f"<h2>By {html.escape(name)}</h2>", _table([name, "rows"], [list(i) for i in counts.items()])]
    hist = summary["probability_histogram"]
    parts.append("<h2>Probability</h2>")
    png = histogram_png(hist["edges"], hist["counts"])
    if png is not None:
        parts.append(f'<img alt="probability histogram" src="data:image/png;base64,{base64.b64encode(png).decode()}">')
    else:
        parts.append(_table(["from", "to", "rows"], [[f"{a:.1f}", f"{b:.1f}", c] for a, b, c in
                                                      zip(hist["edges"], hist["edges"][1:], hist["counts"], strict=False)]))
    parts.append("<h2>Refused rows</h2>")
    if not summary["refused"]:
        parts.append("<p>None.</p>")
    else:
        key = "path" if summary["workload"] == "pneumonia" else "row"
        parts += [_table(["reason", "rows"], [list(i) for i in summary["refused_by_reason"].items()]),
                  _table([key, "reason", "error"], [[r[key], r["reason"], r["error"]] for r in summary["refused_rows"]])]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}" \
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>" \
           f"{''.join(parts)}</body></html>\n"


def write(summary: dict, out_dir: Path) -> dict[str, Path]:
    paths = {"summary": out_dir / "summary.json", "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str))
    paths["markdown"].write_text(markdown(summary))
    paths["html"].write_text(html_page(summary))
    return paths
