"""Seeded, stratified train/test split; optionally hold out whole sites as the test set."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from components.heart_disease.schema import SITE, TARGET


def parse_sites(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def split(df: pd.DataFrame, test_size: float = 0.2, seed: int = 42,
          holdout_sites: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    if holdout_sites:
        unknown = sorted(set(holdout_sites) - set(df[SITE]))
        if unknown:
            raise ValueError(f"hold-out site(s) {unknown} not in the data; sites: {sorted(set(df[SITE]))}")
        test_mask = df[SITE].isin(holdout_sites)
        train, test = df[~test_mask], df[test_mask]
        if train.empty:
            raise ValueError("holding out every site leaves no training data")
    else:
        if not 0 < test_size < 1:
            raise ValueError(f"test_size must be in (0, 1), got {test_size}")
        train, test = train_test_split(df, test_size=test_size, stratify=df[TARGET], random_state=seed)
    for name, part in (("train", train), ("test", test)):
        if part[TARGET].nunique() < 2:
            raise ValueError(f"the {name} split has a single class; choose other sites or a larger test_size")
    return train.reset_index(drop=True), test.reset_index(drop=True)
