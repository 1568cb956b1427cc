"""Validate the ingested heart-disease table and produce the clean, coded table training uses.

Hard errors (the run fails, with the report): a required column missing, no usable rows, an empty
class, a feature that leaks the target, too many rows without a required value.
Everything else is repaired and counted: unknown categories, unparsable numbers and physiologically
impossible values become missing; exact duplicates and rows without a label are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from components.common.reports import ValidationReport
from components.heart_disease.data import to_coded
from components.heart_disease.schema import FEATURES, RANGES, REQUIRED, SITE, TARGET

MIN_ROWS = 50
MIN_MINORITY_SHARE = 0.05
LEAKAGE_AUC = 0.98
MAX_DROPPED_SHARE = 0.10


def validate(raw: pd.DataFrame) -> tuple[pd.DataFrame, ValidationReport]:
    report = ValidationReport("Heart-disease data validation")
    report.stats["rows_in"] = len(raw)

    missing_columns = [c for c in [*FEATURES, TARGET] if c not in raw.columns]
    if missing_columns:
        report.add("schema", "error", f"required column(s) missing: {', '.join(missing_columns)}",
                   len(missing_columns))
        return raw.iloc[0:0], report
    extra = sorted(set(raw.columns) - {*FEATURES, TARGET, SITE, "id"})
    if extra:
        report.add("schema", "info", f"extra column(s) ignored: {', '.join(extra)}", len(extra))

    df, unknown, unparsable = to_coded(raw)
    for column, count in unparsable.items():
        report.add("types", "warning", f"{column}: {count} value(s) are not numbers; treated as missing", count)
    for column, values in unknown.items():
        count = int(raw[column].astype(str).isin(values).sum())
        report.add("categories", "warning",
                   f"{column}: unknown categor{'y' if len(values) == 1 else 'ies'} {values[:5]}; treated as missing",
                   count)

    for column, (low, high) in RANGES.items():
        impossible = (df[column] < low) | (df[column] > high)
        count = int(impossible.sum())
        if count:
            report.add("ranges", "warning",
                       f"{column}: {count} value(s) outside [{low}, {high}] cannot be real; treated as missing",
                       count)
            df.loc[impossible, column] = np.nan

    unlabeled = df[TARGET].isna()
    if unlabeled.any():
        report.add("labels", "warning", f"{int(unlabeled.sum())} row(s) without a label dropped",
                   int(unlabeled.sum()))
        df = df[~unlabeled]
    bad_label = ~df[TARGET].isin([0, 1])
    if bad_label.any():
        report.add("labels", "error", f"{int(bad_label.sum())} label(s) are not 0/1", int(bad_label.sum()))

    no_required = df[REQUIRED].isna().any(axis=1)
    if no_required.any():
        share = no_required.mean()
        report.add("nulls", "error" if share > MAX_DROPPED_SHARE else "warning",
                   f"{int(no_required.sum())} row(s) ({share:.1%}) lack a required value "
                   f"({', '.join(REQUIRED)}); dropped", int(no_required.sum()))
        df = df[~no_required]

    duplicated = df.duplicated(subset=[*FEATURES, TARGET])
    if duplicated.any():
        report.add("duplicates", "warning", f"{int(duplicated.sum())} exact duplicate row(s) dropped",
                   int(duplicated.sum()))
        df = df[~duplicated]
    conflicting = df[df.duplicated(subset=FEATURES, keep=False)][TARGET].groupby(
        [df[f].fillna(-999) for f in FEATURES]).nunique() if len(df) else pd.Series(dtype=int)
    if (conflicting > 1).any():
        report.add("duplicates", "warning",
                   f"{int((conflicting > 1).sum())} feature vector(s) appear with both labels", int((conflicting > 1).sum()))

    missing_rates = df[FEATURES].isna().mean()
    for column, rate in missing_rates.items():
        if rate > 0:
            report.add("nulls", "warning" if rate > 0.5 else "info",
                       f"{column}: {rate:.1%} missing (imputed in training)", int(round(rate * len(df))))

    if len(df) < MIN_ROWS:
        report.add("rows", "error", f"only {len(df)} usable row(s); at least {MIN_ROWS} needed", len(df))
    counts = df[TARGET].value_counts().reindex([0, 1], fill_value=0)
    for label, count in counts.items():
        if count == 0:
            report.add("balance", "error", f"class {label} is empty", 0)
    if len(df) and counts.min() / len(df) < MIN_MINORITY_SHARE and counts.min() > 0:
        report.add("balance", "warning", f"minority class is only {counts.min() / len(df):.1%} of rows",
                   int(counts.min()))

    if report.ok:
        y = df[TARGET].astype(int)
        for column in FEATURES:
            known = df[column].notna()
            if known.sum() < 20 or y[known].nunique() < 2:
                continue
            auc = roc_auc_score(y[known], df.loc[known, column])
            if max(auc, 1 - auc) >= LEAKAGE_AUC:
                report.add("leakage", "error",
                           f"{column} alone predicts the label (ROC-AUC {max(auc, 1 - auc):.3f}): target leakage", None)

    df = df.reset_index(drop=True)
    if len(df):
        df[TARGET] = df[TARGET].astype(int)
    report.stats |= {
        "rows_out": len(df),
        "prevalence": round(float(df[TARGET].mean()), 4) if len(df) else None,
        "class_counts": counts.to_dict(),
        "sites": df[SITE].value_counts().to_dict() if len(df) else {},
        "missing_rates": {k: round(float(v), 3) for k, v in missing_rates.items() if v > 0},
    }
    return df, report
