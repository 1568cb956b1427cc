"""Small but complete serving bundles, built in seconds: for tests, benchmarks and trying the stack
without a trained champion. They follow the bundle contract of ``components.common.bundle`` exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from components.common.bundle import BundleManifest, write_json


def _drift(folder: Path, x: np.ndarray, names: list[str]) -> None:
    (folder / "drift").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "drift" / "reference.npz", x=x)
    write_json(folder, "drift/settings.json", {"detector": "TabularDrift", "p_val": 0.05, "feature_names": names})


def heart_rows(schema: dict, n: int, seed: int = 0) -> np.ndarray:
    """Plausible rows in ``feature_order`` with UCI codes; a few NaN in nullable features."""
    rng = np.random.default_rng(seed)
    columns = []
    for name in schema["feature_order"]:
        spec = schema["features"][name]
        if spec["type"] == "categorical":
            codes = np.array([float(c) for c in spec["codes"]])
            column = rng.choice(codes, size=n)
        else:
            low, high = spec["min"], spec["max"]
            mid, spread = (low + high) / 2, (high - low) / 6
            column = np.clip(rng.normal(mid, spread, size=n), low, high).round(1)
        if spec["nullable"]:
            column[rng.random(n) < 0.05] = np.nan
        columns.append(column)
    return np.stack(columns, axis=1)


def write_heart_disease(folder: Path, schema: dict, estimator: str = "logreg", n_rows: int = 400,
                        seed: int = 0) -> Path:
    """A heart-disease bundle: sklearn Pipeline(imputer, estimator) on synthetic rows."""
    import joblib
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x = heart_rows(schema, n_rows, seed)
    order = schema["feature_order"]
    score = np.nan_to_num(x[:, order.index("age")] - 55) / 10 + np.nan_to_num(x[:, order.index("cp")] - 2.5)
    y = (score + np.random.default_rng(seed + 1).normal(0, 0.7, n_rows) > 0).astype(int)
    model = (GradientBoostingClassifier(n_estimators=100, random_state=seed) if estimator == "gbm"
             else LogisticRegression(max_iter=500))
    pipeline = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
                         ("model", model)]).fit(x, y)
    joblib.dump(pipeline, folder / "model.joblib")
    (folder / "schema.json").write_text(json.dumps(schema, indent=2))
    _drift(folder, x[:100], order)
    BundleManifest(workload="heart-disease", model_name="heart-disease-sample", model_version="1",
                   framework="sklearn", model_file="model.joblib").write(folder)
    return folder


def pneumonia_schema(height: int = 32, width: int = 32, channels: int = 1, threshold: float = 0.5) -> dict:
    return {
        "workload": "pneumonia", "kind": "image", "input": {"name": "image", "datatype": "BYTES"},
        "image": {"height": height, "width": width, "channels": channels, "mean": [0.5] * channels,
                  "std": [0.25] * channels, "resize": "resize"},
        "classes": ["NORMAL", "PNEUMONIA"], "positive_class": "PNEUMONIA", "threshold": threshold,
        "max_pixels": 4096 * 4096,
    }


def tiny_image_net(channels: int, embedding_dim: int = 16, width: int = 8):
    """A small CNN whose forward returns ``(logits [N,2], embedding [N,D])`` like the real bundles."""
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.embed = nn.Linear(width * 2, embedding_dim)
            self.head = nn.Linear(embedding_dim, 2)

        def forward(self, x):
            embedding = torch.relu(self.embed(self.features(x)))
            return self.head(embedding), embedding

    torch.manual_seed(0)
    return TinyNet().eval()


def write_pneumonia(folder: Path, height: int = 32, width: int = 32, channels: int = 1, module=None,
                    embedding_dim: int = 16, variant: str = "tiny-cnn") -> Path:
    """A pneumonia bundle: TorchScript ``model.pt`` + ``model_config.json`` + ``schema.json``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    module = module if module is not None else tiny_image_net(channels, embedding_dim)
    example = torch.zeros(1, channels, height, width)
    scripted = torch.jit.trace(module.eval(), example)
    scripted.save(str(folder / "model.pt"))
    write_json(folder, "model_config.json", {"variant": variant, "num_classes": 2, "classes": ["NORMAL", "PNEUMONIA"],
                                             "embedding_dim": embedding_dim, "outputs": ["logits", "embedding"]})
    (folder / "schema.json").write_text(json.dumps(pneumonia_schema(height, width, channels), indent=2))
    _drift(folder, np.random.default_rng(0).normal(size=(50, embedding_dim)).astype("float32"),
           [f"e{i}" for i in range(embedding_dim)])
    BundleManifest(workload="pneumonia", model_name="pneumonia-sample", model_version="1", framework="pytorch",
                   model_file="model.pt", extra_files=["model_config.json"]).write(folder)
    return folder
