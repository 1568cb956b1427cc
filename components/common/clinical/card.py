"""The clinical sections of a model card, built once as tables and rendered as Markdown (KFP UI) and HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass

from components.common.clinical import calibration as cal_lib
from components.common.clinical.assessment import Assessment

NAMES = {"roc_auc": "ROC-AUC", "sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV",
         "npv": "NPV", "accuracy": "accuracy", "brier": "Brier score"}


@dataclass
class Section:
    title: str
    text: str
    header: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()

    def markdown(self) -> str:
        out = [f"## {self.title}", "", self.text]
        if self.header:
            out += ["", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
            out += ["| " + " | ".join(row) + " |" for row in self.rows]
        return "\n".join(out) + "\n"

    def html(self) -> str:
        table = ""
        if self.header:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in self.rows)
            table = f"<table><tr>{head}</tr>{body}</table>"
        return f"<h2>{html.escape(self.title)}</h2><p>{html.escape(self.text)}</p>{table}"


def _ci(interval) -> str:
    return interval.text(3)


def sections(a: Assessment, outer_estimate: str | None = None) -> list[Section]:
    level = "95%"
    out = [Section(
        f"Test-split performance with {level} confidence intervals",
        f"Served threshold {a.threshold:.3f}: the highest that reaches the target sensitivity "
        f"{a.target_sensitivity:.2f} on held-out scores (never the test split). Intervals: stratified bootstrap, "
        f"{a.n_resamples} resamples, n = {len(a.y)} ({int(a.y.sum())} with the condition)."
        + (f" {outer_estimate}" if outer_estimate else ""),
        ("metric", f"value ({level} CI)"),
        tuple((NAMES.get(k, k), _ci(v)) for k, v in a.intervals.items()))]

    r = a.recalibration
    applied = ("none: no map lowered the Brier score on held-out scores" if r.method == cal_lib.IDENTITY else
               f"{r.method}, fitted on {r.n} held-out scores (Brier {r.brier_before:.4f} → {r.brier_after:.4f}); "
               f"serving applies the same map (bundle calibration.json)")
    m, s = a.calibration_model, a.calibration_served
    out.append(Section(
        "Calibration", f"Recalibration: {applied}. ECE over 10 equal-width bins; slope 1 and intercept 0 are ideal.",
        ("probability", "ECE", "slope", "intercept", "Brier"),
        tuple((name, f"{d['ece']:.3f}", f"{d['calibration_slope']:.2f}", f"{d['calibration_intercept']:+.2f}",
               f"{d['brier']:.4f}") for name, d in (("model", m), ("served", s)))))

    out.append(Section(
        "Operating points", "Thresholds chosen on held-out scores for each target sensitivity; the sensitivity and "
                            "specificity they give on the test split.",
        ("target sensitivity", "threshold", "test sensitivity", "test specificity"),
        tuple((f"{p.target_sensitivity:.2f}", f"{p.threshold:.3f}", f"{p.sensitivity:.3f}", f"{p.specificity:.3f}")
              for p in a.operating_points)))

    useful = a.decision_curve.useful_range()
    out.append(Section(
        "Decision curve", ("Net benefit above both treat-all and treat-none for threshold probabilities "
                           f"{useful[0]:.2f}–{useful[1]:.2f}." if useful else
                           "The model's net benefit is nowhere above both treat-all and treat-none.")
        + " See the decision-curve plot."))

    rows = []
    for attribute, groups in a.subgroups.items():
        for g in groups:
            if g.too_small:
                rows.append((attribute, g.group, str(g.n), f"{g.prevalence:.2f}", "too small to estimate: " + g.too_small,
                             "", ""))
            else:
                rows.append((attribute, g.group, str(g.n), f"{g.prevalence:.2f}", _ci(g.intervals["roc_auc"]),
                             _ci(g.intervals["sensitivity"]), _ci(g.intervals["specificity"])))
    missing = " ".join(f"{attr}: {why}." for attr, why in a.no_subgroups.items())
    out.append(Section(
        "Subgroups", f"At the served threshold, {level} CIs; a group with fewer than 5 patients of either class gets "
                     f"no numbers. {missing}".strip(),
        ("attribute", "group", "n", "prevalence", "ROC-AUC", "sensitivity", "specificity") if rows else (),
        tuple(rows)))
    return out


def markdown(a: Assessment, outer_estimate: str | None = None) -> str:
    return "\n".join(s.markdown() for s in sections(a, outer_estimate))


def html_sections(a: Assessment, outer_estimate: str | None = None) -> str:
    return "".join(s.html() for s in sections(a, outer_estimate))
